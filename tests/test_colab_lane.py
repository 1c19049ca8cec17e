"""The Colab-like lane's checks fail when they must (the lane itself runs in CI: `make colab`):
an upgraded or removed preinstalled package, a second run of the setup cell that installs
again, a wrong-repository message that lacks what to do. Also the setup cell's logic, run here
in-process: a no-op where helpers imports, and one clear error when the install fails."""

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
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    if repo:
        env["CURRICULUM_REPO"] = repo
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=cwd or tmp_path, env=env, timeout=300)


def test_setup_cell_is_a_no_op_where_helpers_imports(tmp_path):
    run = run_setup_cell(tmp_path)
    assert run.returncode == 0, run.stderr
    assert "Installing" not in run.stdout + run.stderr


def test_setup_cell_failure_gives_the_one_clear_message(tmp_path):
    """helpers not importable (no PYTHONPATH, a Python without it) and a repository that does
    not exist: the message names what it tried, how to set it, and the two alternatives. The
    venv has no pip packages at all, so nothing is at risk."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    python = tmp_path / "venv" / "bin" / "python"
    script = tmp_path / "setup_cell.py"
    script.write_text(nbtools.setup_source("notebooks/transformer/week4f_deploy.ipynb"))
    wrong = f"file://{tmp_path}/no-such-repo"
    run = subprocess.run([str(python), str(script)], capture_output=True, text=True, cwd=tmp_path,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CURRICULUM_REPO": wrong},
                         timeout=300)
    assert run.returncode != 0
    assert colab_lane.wrong_repo_problems(run.stdout + run.stderr, wrong) == [], run.stderr[-2000:]
    assert "[deploy]" in run.stderr  # the Drive alternative installs this notebook's extras too


@pytest.mark.parametrize("where", ["notebooks", "notebooks/transformer"])
def test_setup_cell_in_a_clone_without_setup_says_make_setup(tmp_path, where):
    clone = tmp_path / "clone"
    (clone / "helpers").mkdir(parents=True)
    (clone / where).mkdir(parents=True, exist_ok=True)
    script = tmp_path / "setup_cell.py"
    script.write_text(nbtools.setup_source("notebooks/00_start_here.ipynb"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    run = subprocess.run([str(tmp_path / "venv" / "bin" / "python"), str(script)], capture_output=True,
                         text=True, cwd=clone / where, env={"PATH": "/usr/bin:/bin"}, timeout=120)
    assert run.returncode != 0 and "make setup" in run.stderr and "Installing" not in run.stdout
