"""End to end in a real browser (issue #8): headless Chromium (Debian's `chromium` and
`chromium-driver` packages, driven by Selenium) types a sentence into the demo page, gets a
translation, and asks for an image grid.

Skipped when Chromium or its driver is missing, except in CI (CI=true), where that fails:
`.ci/run` installs both.
"""

import os
import shutil
from pathlib import Path

import pytest
from deploy_server import demo_bundle, running_server

SENTENCE = "The small dog sees the red car."
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
FIX = "install them with `apt-get install chromium chromium-driver` (Debian; .ci/run does this)"


def _find(candidates, name):
    for path in candidates:
        if Path(path).is_file() and os.access(path, os.X_OK):
            return path
    return shutil.which(name)


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
    except ImportError:
        webdriver = None
    chromium, driver = _find(CHROMIUM, "chromium"), _find(CHROMEDRIVER, "chromedriver")
    if not (chromium and driver and webdriver):
        missing = " and ".join(n for n, p in (("the selenium package", webdriver), ("chromium", chromium),
                                              ("chromedriver", driver)) if not p)
        message = f"{missing} not found: {FIX}; selenium comes with `make setup`"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test, but {message}")
        pytest.skip(message)
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not try to download
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1000,1400", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    drv = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


def test_translate_and_generate_in_chromium(browser, tmp_path_factory):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    bundle = demo_bundle(tmp_path_factory)
    with running_server(bundle) as url:
        browser.get(url + "/")
        assert "Transformer + DCGAN demo" in browser.title
        wait = WebDriverWait(browser, 60)

        browser.find_element(By.ID, "text").send_keys(SENTENCE)
        browser.find_element(By.ID, "translate-button").click()
        wait.until(lambda d: d.find_element(By.ID, "translation").text.strip()
                   or d.find_element(By.ID, "translate-error").text.strip())
        assert browser.find_element(By.ID, "translate-error").text == ""
        translation = browser.find_element(By.ID, "translation").text.strip()
        assert translation, "the page showed no translation"

        count = browser.find_element(By.ID, "count")
        count.clear()
        count.send_keys("9")
        browser.find_element(By.ID, "generate-button").click()
        image = wait.until(EC.visibility_of_element_located((By.ID, "grid")))
        wait.until(lambda d: d.execute_script(
            "const i = arguments[0]; return i.complete && i.naturalWidth > 0;", image))
        width, height = browser.execute_script(
            "const i = arguments[0]; return [i.naturalWidth, i.naturalHeight];", image)
        assert width == height > 0  # a 3x3 grid of square images
        assert browser.find_element(By.ID, "generate-error").text == ""

        # a server-side error is shown on the page, not swallowed
        text = browser.find_element(By.ID, "text")
        text.clear()
        browser.find_element(By.ID, "translate-button").click()
        wait.until(lambda d: d.find_element(By.ID, "translate-error").text.strip())
        assert "422" in browser.find_element(By.ID, "translate-error").text
        assert "empty" in browser.find_element(By.ID, "translate-error").text
        text.send_keys(SENTENCE)
        browser.find_element(By.ID, "translate-button").click()
        wait.until(lambda d: d.find_element(By.ID, "translation").text.strip() == translation)

        shots = Path(os.environ.get("DEMO_SCREENSHOT_DIR") or tmp_path_factory.mktemp("screens"))
        shots.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(shots / "demo.png"))
        print(f"translation: {translation!r}; screenshot: {shots / 'demo.png'}")
