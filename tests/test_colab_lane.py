"""The Colab-like lane's checks fail when they must (the lane itself runs in CI: `make colab`):
an upgraded or removed preinstalled package, a second run of the setup cell that installs
again, a wrong-repository message that lacks what to do. Also the setup cell's logic, run here
in-process: a no-op where helpers imports, and one clear error when the install fails."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import colab_lane  # noqa: E402
import nbtools  # noqa: E402

BEFORE = {"torch": "2.14.1", "ipywidgets": "7.7.5", "numpy": "2.4.6"}


def test_an_upgraded_or_removed_preinstalled_package_is_caught():
    assert colab_lane.changed_packages(BEFORE, {**BEFORE, "sacrebleu": "2.6.0"}) == []
    assert colab_lane.changed_packages(BEFORE, {**BEFORE, "ipywidgets": "8.1.9"}) == ["ipywidgets: 7.7.5 -> 8.1.9"]
    assert colab_lane.changed_packages(BEFORE, {"torch": "2.14.1", "numpy": "2.4.6"}) == [
        "ipywidgets: 7.7.5 -> removed"]
    assert colab_lane.added_packages(BEFORE, {**BEFORE, "sacrebleu": "2.6.0"}) == ["sacrebleu 2.6.0"]


def test_a_second_install_is_caught():
    assert colab_lane.reinstall_problems("", BEFORE, BEFORE) == []
    assert colab_lane.reinstall_problems("Installing the course package from x", BEFORE, BEFORE)
    assert colab_lane.reinstall_problems("", BEFORE, {**BEFORE, "onnx": "1.23"}) == ["added onnx 1.23"]


def test_a_wrong_repo_message_without_the_fix_is_caught():
    url = "https://github.com/nobody/nothing"
    assert "how to set it" in colab_lane.wrong_repo_problems(f"RuntimeError: could not install {url}", url)
    assert "the repository it tried" in colab_lane.wrong_repo_problems("RuntimeError: failed", url)


def run_setup_cell(tmp_path, rel="notebooks/00_start_here.ipynb", repo=None, cwd=None):
    """The generated setup cell in a fresh Python, as a script (no kernel needed)."""
    script = tmp_path / "setup_cell.py"
    script.write_text(nbtools.setup_source(rel))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": f"{ROOT}:{ROOT / 'tools' / 'setup'}"}
    if repo:
        env["CURRICULUM_REPO"] = repo
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=cwd or tmp_path, env=env, timeout=300)


def test_setup_cell_is_a_no_op_where_helpers_imports(tmp_path):
    run = run_setup_cell(tmp_path)
    assert run.returncode == 0, run.stderr
    assert "Installing" not in run.stdout + run.stderr


@pytest.mark.parametrize("installer", ["found", "downloaded"])
def test_setup_cell_failure_gives_the_one_clear_message(tmp_path, installer):
    """helpers not importable (a Python without it) and a repository that does not exist: the
    message names what it tried, how to set it, and the two alternatives, whether it is the
    installer (tools/setup, on a hosted runtime: downloaded first) or the course package that
    cannot be installed. The venv has no pip packages at all, so nothing is at risk."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    python = tmp_path / "venv" / "bin" / "python"
    script = tmp_path / "setup_cell.py"
    script.write_text(nbtools.setup_source("notebooks/transformer/week4f_deploy.ipynb"))
    wrong = f"file://{tmp_path}/no-such-repo"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CURRICULUM_REPO": wrong}
    if installer == "found":
        env["PYTHONPATH"] = str(ROOT / "tools" / "setup")
    run = subprocess.run([str(python), str(script)], capture_output=True, text=True, cwd=tmp_path,
                         env=env, timeout=300)
    assert run.returncode != 0
    assert colab_lane.wrong_repo_problems(run.stdout + run.stderr, wrong) == [], run.stderr[-2000:]
    if installer == "found":
        assert "[deploy]" in run.stderr  # the Drive alternative installs this notebook's extras too


@pytest.mark.parametrize("where", ["notebooks", "notebooks/transformer"])
def test_setup_cell_in_a_clone_without_setup_says_make_setup(tmp_path, where):
    clone = tmp_path / "clone"
    (clone / "helpers").mkdir(parents=True)
    shutil.copytree(ROOT / "tools" / "setup", clone / "tools" / "setup")  # a clone has its installer
    (clone / where).mkdir(parents=True, exist_ok=True)
    script = tmp_path / "setup_cell.py"
    script.write_text(nbtools.setup_source("notebooks/00_start_here.ipynb"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    run = subprocess.run([str(tmp_path / "venv" / "bin" / "python"), str(script)], capture_output=True,
                         text=True, cwd=clone / where, env={"PATH": "/usr/bin:/bin"}, timeout=120)
    assert run.returncode != 0 and "make setup" in run.stderr and "Installing" not in run.stdout


# --------------------------------------------------------------------------- Colab's list (issue #20, item 4)
def test_colab_freeze_is_parsed_like_pip_freeze():
    text = "# comment\nabsl-py==1.4.0\nJinja2==3.1.6\ntorch==2.11.0+cu128\ngoogle-colab @ file:///x.tar.gz\n\n"
    assert colab_lane.parse_freeze(text) == {"absl-py": "1.4.0", "jinja2": "3.1.6", "torch": "2.11.0+cu128"}
    assert colab_lane.parse_python("Ubuntu 22.04.5 LTS\nPython 3.13.15\nR version 4.6.1\n") == "3.13.15"
    with pytest.raises(ValueError):
        colab_lane.parse_python("Ubuntu 22.04.5 LTS\n")


def test_stored_colab_list_is_dated_and_consistent():
    """tools/colab/ holds a dated copy (source commit, date, Python) that the lane can use."""
    import datetime
    import re

    colab = colab_lane.load_colab()
    assert colab["source"] == colab_lane.COLAB_SOURCE
    assert re.fullmatch(r"[0-9a-f]{40}", colab["commit"])
    datetime.date.fromisoformat(colab["date"])
    assert colab["python"].count(".") == 2
    assert colab["packages"]["ipywidgets"].startswith("7.7.")
    assert {"torch", "torchvision", "numpy", "transformers", "ipykernel"} <= set(colab["packages"])
    assert colab["date"] in colab_lane.colab_label(colab) and colab["commit"][:7] in colab_lane.colab_label(colab)


def test_colabs_versions_satisfy_our_requirements():
    """Floors at or below what Colab ships: the setup cell adds packages and never changes Colab's."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    colab = colab_lane.load_colab()["packages"]
    for file in colab_lane.REQUIREMENT_FILES:
        for line in (ROOT / file).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            req = Requirement(line)
            version = colab.get(canonicalize_name(req.name))
            if version is not None:
                assert Version(version).public in req.specifier, f"{file}: {req} excludes Colab's {req.name} {version}"


def test_refresh_copies_colabs_files_with_commit_date_and_python(tmp_path):
    source = tmp_path / "backend-info"
    source.mkdir()
    (source / "pip-freeze.gpu.txt").write_text("# generated\nnumpy==2.1.3\nipywidgets==7.7.1\n")
    (source / "os-info-gpu.txt").write_text("Ubuntu 22.04.5 LTS\nPython 3.12.11\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "list"]):
        subprocess.run(git + args, cwd=source, check=True, capture_output=True)
    folder = tmp_path / "colab"
    info = colab_lane.refresh(source, folder, today="2026-12-03")
    assert info["python"] == "3.12.11" and len(info["commit"]) == 40 and info["fetched"] == "2026-12-03"
    loaded = colab_lane.load_colab(folder)
    assert loaded["packages"] == {"numpy": "2.1.3", "ipywidgets": "7.7.1"} and loaded["date"] == info["date"]


def test_version_differences_name_colabs_version():
    colab = {"torch": "2.11.0+cu128", "numpy": "2.1.3"}
    assert colab_lane.version_differences(colab, {"torch": "2.14.1", "numpy": "2.1.3"}, ["torch", "numpy"]) == [
        "torch 2.14.1 (Colab: 2.11.0+cu128)"]


def test_the_lane_says_which_python_it_uses():
    python, why = colab_lane.choose_python("3.13.15")
    assert python == sys.executable and colab_lane.platform_version() in why and "3.13.15" in why


def test_watchdog_reports_a_stall_and_stops_the_kernel():
    """A busy cell with no message for `stall` seconds: recorded as a stall, the kernel killed
    (here a sleeping process stands in for it); a cell that keeps talking is not a stall."""
    import threading
    import time

    dog = colab_lane.Watchdog(stall=1.0, grace=0.5)
    dog.busy(7, "interact(f, x=3)\nmore")
    assert dog.stalled_for(time.monotonic()) == 0.0
    assert dog.stalled_for(time.monotonic() + 5) >= 5
    dog.alive()
    dog.idle()
    assert dog.stalled_for(time.monotonic() + 5) == 0.0  # no cell running: never a stall

    kernel = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dog = colab_lane.Watchdog(stall=1.0, grace=0.5)
    thread = threading.Thread(target=dog.watch, args=(lambda: kernel.pid,), daemon=True)
    thread.start()
    dog.busy(3, "w = widgets.IntSlider()")
    try:
        assert kernel.wait(timeout=20) != 0
    finally:
        kernel.kill()
        dog.stop()
        thread.join()
    assert len(dog.stalls) == 1 and "cell 3" in dog.stalls[0] and "stalled" in dog.stalls[0]
