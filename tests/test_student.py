"""Exercise (student) notebooks: generated from the solutions, in sync, and when run with
every blank left blank (up to the last exercise check), each blank is caught by its check with
a friendly message and nothing else fails (the checks fall back to the tested versions)."""

import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import nbtools  # noqa: E402

from helpers.course import exercises  # noqa: E402

STUDENT_ROOT = ROOT / nbtools.STUDENT_DIR
# exercise notebook -> its solution notebook (the .py side)
SOLUTIONS = {path: nbtools.jupytext.read(str((ROOT / "notebooks" / path.relative_to(STUDENT_ROOT)).with_suffix(".py")))
             for path in sorted(STUDENT_ROOT.rglob("*.ipynb"))}


def test_stubs_replace_every_solution_block_and_keep_the_code_valid():
    source = ("import math\n\n"
              "def f(x):\n    # BEGIN SOLUTION attention\n    secret = x * 42\n    return secret\n"
              "    # END SOLUTION\n\n"
              "class C:\n    def g(self):\n        # BEGIN SOLUTION slerp\n        return 'secret'\n"
              "        # END SOLUTION\n")
    stubbed = nbtools.stub_source(source)
    assert "secret" not in stubbed and "import math" in stubbed
    compile(stubbed, "<stub>", "exec")
    namespace = {}
    exec(stubbed, namespace)
    with pytest.raises(NotImplementedError, match="Exercise 'attention' is not done yet"):
        namespace["f"](1)
    assert exercises.hint("slerp") in stubbed


@pytest.mark.parametrize("source, message", [
    ("# BEGIN SOLUTION attention\nx = 1\n", "never closed"),
    ("x = 1\n# END SOLUTION\n", "without a BEGIN"),
    ("# BEGIN SOLUTION attention\n# BEGIN SOLUTION slerp\n# END SOLUTION\n", "inside another block"),
])
def test_broken_markers_are_reported_with_the_line(source, message):
    with pytest.raises(ValueError, match=message):
        nbtools.stub_source(source)


def test_unknown_exercise_name_is_reported(tmp_path):
    with pytest.raises(ValueError, match="names no exercise"):
        nbtools._known_exercise("atention", "nb.ipynb")


def test_every_solution_notebook_with_exercises_has_a_fresh_student_version():
    assert nbtools.check_students() == []
    assert len(SOLUTIONS) >= 4
    names = {n for nb in SOLUTIONS.values() for n in nbtools.exercise_names(nb)}
    assert names == set(exercises.EXERCISES), "every exercise is used in a notebook, and only those"


def test_a_stale_student_notebook_is_caught(tmp_path):
    path = next(iter(SOLUTIONS))
    nb = nbformat.read(str(path), as_version=4)
    nb.cells[-1].source += "\n# edited by hand"
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    for folder in ("notebooks", nbtools.STUDENT_DIR):
        shutil.copytree(ROOT / folder, root / folder)
    nbformat.write(nb, str(root / path.relative_to(ROOT)))
    problems = nbtools.check_students(root)
    assert any("stale" in p and "make student" in p for p in problems), problems
    nbtools.write_students(root)
    assert nbtools.check_students(root) == []


SHORT_TIME_LIMIT = """from helpers.runtime import config as _config
for _family in _config.FAMILIES.values():
    if "time_limit_s" in {**_family.get("common", {}), **_family["smoke"]}:
        _family["smoke"]["time_limit_s"] = 5.0"""


@pytest.mark.parametrize("path", list(SOLUTIONS), ids=lambda p: str(p.relative_to(ROOT)))
def test_student_notebook_runs_and_every_blank_is_caught(path, tmp_path, monkeypatch):
    monkeypatch.setenv("CURRICULUM_PROFILE", "smoke")
    monkeypatch.setenv("CURRICULUM_RUNS_DIR", str(tmp_path / "runs"))  # never touch the real runs/
    monkeypatch.delenv(exercises.REQUIRE_SOLUTIONS_ENV, raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(str(path), as_version=4)
    # Run through the last exercise check: the cells after it hold no blank and are the same
    # code as the solution notebook, which `make test` runs in full.
    last_check = max(i for i, c in enumerate(nb.cells) if "exercises.check(" in c.source)
    nb.cells = nb.cells[:last_check + 1]
    # Training before a check is stopped by a short time limit: an early stop is a normal outcome
    # every cell handles ("not judged"), `make notebooks` trains the same cells to the end, and
    # what is tested here is the blanks (DCGAN week 4 trains 600 steps before its last check).
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    nb.cells.insert(first_code + 1, nbformat.v4.new_code_cell(SHORT_TIME_LIMIT))
    # any error in any cell fails here (CellExecutionError names the cell and the exception); the
    # timeout only catches a hang (DCGAN week 4 trains before its last check and passed 300 s on a
    # loaded 2-core machine here while passing in CI), it is not a speed test
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    printed = "\n".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                        for out in cell.get("outputs", []) if out.get("output_type") == "stream")
    caught = re.findall(r"Exercise '(\w+)' \([^\n]*\) is not done yet", printed)
    expected = nbtools.exercise_names(SOLUTIONS[path])
    assert sorted(caught) == sorted(expected), f"caught {caught}, expected each of {expected} once"
    for name in expected:
        assert f"Hint: {exercises.hint(name)}" in printed
    assert "✓ Exercise" not in printed, "a blank passed its check"


def test_every_colab_link_in_every_badge_row_points_at_an_existing_notebook():
    settings = nbtools.repo_settings()
    prefix = f"https://colab.research.google.com/github/{settings['repo']}/blob/{settings['ref']}/"
    paths = list(ROOT.glob("notebooks/**/*.ipynb")) + list(STUDENT_ROOT.rglob("*.ipynb"))
    seen = 0
    for path in paths:
        nb = nbformat.read(str(path), as_version=4)
        badge = next(c.source for c in nb.cells if nbtools.BADGE_MARK in c.source)
        targets = re.findall(re.escape(prefix) + r"([^)\s]+)", badge)
        assert targets and targets[0] == str(path.relative_to(ROOT)), f"{path}: badge opens {targets[:1]}"
        for target in targets:
            assert (ROOT / target).exists(), f"{path}: badge row links missing {target}"
            seen += 1
    assert seen >= len(paths) + 2 * len(SOLUTIONS)  # own badge + solution <-> exercise links
