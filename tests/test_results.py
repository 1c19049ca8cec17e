"""tools/results.py: the results page is generated from metrics.json and execution.json files."""

import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

from helpers.runtime.metrics import write_metrics

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("results", ROOT / "tools" / "results.py")
results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results)


def _execution(runs, track, notebook, **fields):
    record = {"track": track, "notebook": notebook, "profile": "local", "passed": True, "error": None,
              "wall_s": 754.0, "load_average": 3.2, "hardware": "CPU: Test CPU (2 cores)",
              "finished_at": "2026-11-29T02:00:00+00:00", **fields}
    folder = runs / track / notebook
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "execution.json").write_text(json.dumps(record))


@pytest.fixture
def runs(tmp_path):
    runs = tmp_path / "runs" / "local"
    config = {"profile": "local", "d_model": 256}
    write_metrics("transformer", "week3_transformer",
                           {"test_bleu_beam": 31.23, "test_bleu_greedy": 29.5, "train_steps": 2400},
                           config=config, extra={"dataset": "multi30k: local from /data/multi30k"}, runs=runs)
    _execution(runs, "transformer", "week3_transformer")
    write_metrics("dcgan", "week5_final_project",
                           {"fid_kind": "classifier", "fid": 12.5, "fid_untrained_G": 900.0,
                            "probe_dataset": "fashion_mnist", "probe_raw_pixels": 0.71,
                            "probe_DCGAN_D_features": 0.74},
                           config=config, extra={"dataset": "fashion_mnist: local from /d: 60000 images"},
                           runs=runs)
    _execution(runs, "dcgan", "week5_final_project", passed=False,
               error="CheckFailed: probe gain: -0.02 is below the required 0")
    _execution(runs, "dcgan", "week2_data", wall_s=95.0)  # a notebook without metrics.json
    # smoke runs of `make test` are left out unless asked for
    write_metrics("transformer", "week3_transformer", {"test_bleu_beam": 99.0},
                           config={"profile": "smoke"}, runs=tmp_path / "runs" / "make-test")
    return tmp_path / "runs"


def test_table_has_one_row_per_run_with_headline_paper_time_and_checks(runs):
    text = results.table(results.find_runs([runs]))
    rows = [line for line in text.splitlines() if line.startswith("| transformer") or line.startswith("| dcgan")]
    assert len(rows) == 3, text
    week3 = next(r for r in rows if "week3_transformer" in r)
    assert "| local |" in week3 and "multi30k (real, local copy)" in week3
    assert "test2016 sacreBLEU 31.2 (beam 4)" in week3 and "29.5 greedy" in week3
    assert "27.3 BLEU EN-DE" in week3  # the paper's figure beside it
    assert "12.6 min (load 3.2)" in week3 and "all passed" in week3
    # the row's date is the day metrics.json was written (not a date fixed in this test, so the
    # test passes on any day; CI also runs the unit tests under a clock a year ahead)
    written = json.loads((runs / "local" / "transformer" / "week3_transformer" / "metrics.json").read_text())
    assert "CPU: Test CPU (2 cores)" in week3 and f"| {written['written_at'][:10]} |" in week3
    final = next(r for r in rows if "week5_final_project" in r)
    assert "FAILED: CheckFailed: probe gain" in final and "82.8 %" in final
    assert "DCGAN D features 74.0%" in final
    week2 = next(r for r in rows if "week2_data" in r)
    assert "no metrics.json" in week2 and "1.6 min" in week2
    assert "99.0" not in text  # the make-test smoke run is not on the page


def test_make_test_runs_are_read_when_asked_for(runs):
    found = results.find_runs([runs / "make-test"])
    assert list(found) == [("smoke", "transformer", "week3_transformer")]


def test_page_keeps_the_hand_written_text_and_replaces_only_the_table(runs, tmp_path):
    page = tmp_path / "RESULTS.md"
    assert results.main(["table", "--runs", str(runs), "--out", str(page)]) == 0
    text = page.read_text()
    assert text.startswith("# Results") and "week3_transformer" in text
    page.write_text(text.replace("# Results", "# Results\n\nOur notes.") + "\nMore notes.\n")
    write_metrics("transformer", "week3_transformer", {"test_bleu_beam": 33.0},
                           config={"profile": "local"}, runs=runs / "local")
    assert results.main(["table", "--runs", str(runs), "--out", str(page)]) == 0
    text = page.read_text()
    assert "Our notes." in text and text.endswith("More notes.\n")
    assert "sacreBLEU 33.0" in text and "sacreBLEU 31.2" not in text
    assert text.count(results.BEGIN) == 1 and text.count(results.END) == 1


def test_bad_files_get_a_message_naming_them(runs, tmp_path, capsys):
    bad = runs / "local" / "transformer" / "week4a_finetuning" / "metrics.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    assert results.main(["table", "--runs", str(runs), "--out", str(tmp_path / "R.md")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "Fix:" in err
    page = tmp_path / "nomarkers.md"
    page.write_text("# my own page\n")
    bad.unlink()
    assert results.main(["table", "--runs", str(runs), "--out", str(page)]) == 2
    assert "markers" in capsys.readouterr().err and page.read_text() == "# my own page\n"
    assert results.main(["table", "--runs", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_run_records_wall_time_and_the_failed_check(tmp_path, monkeypatch):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import os\nx = 1 + 1\nprint(os.environ['CURRICULUM_DATA_DIR'])"),
        nbformat.v4.new_code_cell("from helpers.course import checks\n"
                                  "checks.check_at_least(x, 3, 'two plus two')"),
    ])
    path = tmp_path / "demo" / "failing.ipynb"
    path.parent.mkdir()
    nbformat.write(nb, path)
    monkeypatch.setenv("CURRICULUM_PROFILE", "smoke")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CURRICULUM_DATA_DIR", "data")  # relative: the kernel starts in demo/
    record = results.execute(path, runs_dir=tmp_path / "runs", timeout=120)
    assert record["passed"] is False
    assert record["error"].startswith("CheckFailed: two plus two: 2 is below the required 3")
    assert record["wall_s"] > 0 and record["profile"] == "smoke" and "cores" in record["hardware"]
    assert record["kernel_cpu_s"] > 0  # the kernel's CPU time: comparable across loaded machines
    saved = json.loads((tmp_path / "runs" / "demo" / "failing" / "execution.json").read_text())
    assert saved["error"] == record["error"]
    executed = nbformat.read(record["executed_notebook"], as_version=4)
    assert any(o.get("ename") == "CheckFailed" for o in executed.cells[1].outputs)
    assert executed.cells[0].outputs[0]["text"].strip() == str(tmp_path / "data")  # made absolute


# --------------------------------------------------------------------------- commit, hardware, staleness
def _git(repo, *args):
    import subprocess

    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout.strip()


def test_a_record_names_the_commit_and_the_hardware(tmp_path):
    import shutil
    import subprocess

    from helpers.runtime import metrics

    path = write_metrics("transformer", "week3_transformer", {"bleu": 1.0}, config={"profile": "smoke"},
                         runs=tmp_path)
    env = json.loads(path.read_text())["environment"]
    assert env["hardware"] and env["helpers"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if shutil.which("git") and head.returncode == 0 and metrics.PACKAGE_ROOT == ROOT:
        assert env["commit"] == head.stdout.strip() and isinstance(env["dirty"], bool)
    # outside a git checkout (a pip install on Colab): no commit, the package version, no error
    outside = metrics.code_version(tmp_path)
    assert outside == {"commit": None, "dirty": None, "helpers": env["helpers"]}


@pytest.fixture
def repo(tmp_path):
    repo = tmp_path / "repo"
    (repo / "notebooks" / "transformer").mkdir(parents=True)
    (repo / "helpers").mkdir()
    (repo / "notebooks" / "transformer" / "week3_transformer.py").write_text("x = 1\n")
    (repo / "helpers" / "translation.py").write_text("y = 1\n")
    (repo / "README.md").write_text("hello\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "first")
    return repo


def _record(commit, dirty=False):
    return {"environment": {"commit": commit, "dirty": dirty, "helpers": "0.1.0", "hardware": "CPU: Test, 2 cores"}}


def test_a_row_is_stale_when_its_notebook_or_helpers_changed_since_its_commit(repo):
    first = _git(repo, "rev-parse", "HEAD")
    assert results.staleness(_record(first), "transformer", "week3_transformer", repo) == "current"
    (repo / "README.md").write_text("changed\n")  # neither the notebook nor helpers/
    _git(repo, "commit", "-qam", "readme")
    assert results.staleness(_record(first), "transformer", "week3_transformer", repo) == "current"
    (repo / "helpers" / "translation.py").write_text("y = 2\n")
    _git(repo, "commit", "-qam", "helpers")
    stale = results.staleness(_record(first), "transformer", "week3_transformer", repo)
    assert stale.startswith("STALE") and "helpers/translation.py" in stale
    second = _git(repo, "rev-parse", "HEAD")
    (repo / "notebooks" / "transformer" / "week3_transformer.py").write_text("x = 2\n")
    _git(repo, "commit", "-qam", "notebook")
    stale = results.staleness(_record(second), "transformer", "week3_transformer", repo)
    assert "notebooks/transformer/week3_transformer.py" in stale and "helpers" not in stale
    # another notebook's row is not made stale by this notebook's change
    assert results.staleness(_record(second), "dcgan", "week4_training", repo) == "current"


def test_staleness_says_unknown_and_never_crashes(repo, tmp_path):
    head = _git(repo, "rev-parse", "HEAD")
    assert results.staleness({}, "transformer", "week3_transformer", repo) == "unknown (no commit recorded)"
    assert results.staleness(_record(None), "transformer", "week3_transformer", repo).startswith("unknown")
    assert results.staleness(_record("0" * 40), "transformer", "week3_transformer", repo).startswith("unknown")
    assert results.staleness(_record(head), "transformer", "week3_transformer", None).startswith("unknown")
    not_git = tmp_path / "plain"
    not_git.mkdir()
    assert results.staleness(_record(head), "transformer", "week3_transformer", not_git).startswith("unknown")
    assert results.staleness(_record(head, dirty=True), "transformer", "week3_transformer", repo) \
        == "unknown (run with uncommitted changes)"


def test_the_table_shows_commit_hardware_and_staleness(repo, tmp_path):
    head = _git(repo, "rev-parse", "HEAD")
    runs = {("local", "transformer", "week3_transformer"): {"metrics": {
                "metrics": {"test_bleu_beam": 30.0}, **_record(head)}},
            ("local", "dcgan", "week4_training"): {"metrics": {
                "metrics": {}, "environment": {"commit": None, "dirty": None, "helpers": "0.1.0"}}},
            ("local", "dcgan", "week4b_ablations"): {"metrics": {"metrics": {}, "environment": {}}}}
    text = results.table(runs, repo=repo)
    header = text.splitlines()[0]
    assert "| hardware | commit | code since | date |" in header
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()[2:]}
    assert f"| {head[:7]} | current |" in rows["transformer/week3_transformer"]
    assert "CPU: Test, 2 cores" in rows["transformer/week3_transformer"]
    assert "helpers 0.1.0 (not a git checkout)" in rows["dcgan/week4_training"]
    assert "| unknown | unknown (no commit recorded) |" in rows["dcgan/week4b_ablations"]
    assert all(line.count("|") == header.count("|") for line in text.splitlines())


def test_the_page_says_what_reproduces_where(runs, tmp_path):
    page = tmp_path / "RESULTS.md"
    assert results.main(["table", "--runs", str(runs), "--out", str(page)]) == 0
    text = " ".join(page.read_text().split())
    assert "What reproduces where" in text and "bit for bit" in text and "as ranges" in text
    # the page in docs/ carries the generated note (it was regenerated with this generator)
    assert results.REPRODUCIBILITY.strip() in (ROOT / "docs" / "RESULTS.md").read_text()


# --------------------------------------------------------------------------- figures (issue #23)
def _figure(color):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [1, 0], color=color)
    return fig


def test_figures_are_recorded_with_their_run_and_shown_in_the_gallery(tmp_path, capsys):
    from helpers.runtime.metrics import save_figure

    runs = tmp_path / "runs" / "local"
    saved = save_figure(_figure("red"), "dcgan", "week4_training", "progress", "the grids", runs=runs)
    write_metrics("dcgan", "week4_training", {"fid": 20.0}, config={"profile": "local"}, runs=runs)
    page, readme = tmp_path / "docs" / "RESULTS.md", tmp_path / "README.md"
    readme.write_text(f"# Course\n{results.GALLERY_BEGIN}\nold\n{results.GALLERY_END}\nrest\n")
    assert results.main(["table", "--runs", str(runs.parent), "--out", str(page), "--readme", str(readme)]) == 0
    recorded = tmp_path / "docs" / "recorded" / "local" / "dcgan" / "week4_training"
    assert (recorded / "figures" / "progress.png").read_bytes() == saved.read_bytes()
    assert json.loads((recorded / "metrics.json").read_text())["metrics"]["fid"] == 20.0
    text = page.read_text()
    assert "![the grids](recorded/local/dcgan/week4_training/figures/progress.png)" in text
    assert 'src="docs/recorded/local/dcgan/week4_training/figures/progress.png"' in readme.read_text()
    assert readme.read_text().endswith("rest\n") and "old" not in readme.read_text()
    # the same figure saved again gives the same bytes (no timestamp in the PNG)
    again = save_figure(_figure("red"), "dcgan", "week4_training", "progress", "the grids", runs=tmp_path / "x")
    assert again.read_bytes() == saved.read_bytes()
    # A later kernel overwrote the figure without writing metrics.json: it no longer matches its
    # record, so it is left out (and said), not shown beside numbers it was not drawn with.
    save_figure(_figure("blue"), "dcgan", "week4_training", "progress", "the grids", runs=runs)
    record = json.loads((runs / "dcgan" / "week4_training" / "metrics.json").read_text())
    record["written_at"] = "2999-01-01T00:00:00+00:00"  # newer than the recorded one
    (runs / "dcgan" / "week4_training" / "metrics.json").write_text(json.dumps(record))
    capsys.readouterr()
    assert results.main(["table", "--runs", str(runs.parent), "--out", str(page)]) == 0
    assert "overwritten after its metrics.json was written" in capsys.readouterr().out
    assert not (recorded / "figures" / "progress.png").exists()
    assert "progress.png" not in page.read_text().split(results.GALLERY_BEGIN)[1]
    # an older run does not replace a newer record
    record["written_at"] = "2000-01-01T00:00:00+00:00"
    (runs / "dcgan" / "week4_training" / "metrics.json").write_text(json.dumps(record))
    assert results.main(["table", "--runs", str(runs.parent), "--out", str(page)]) == 0
    assert "kept the newer record" in capsys.readouterr().out
    assert json.loads((recorded / "metrics.json").read_text())["written_at"].startswith("2999")


def test_rows_of_an_earlier_page_without_records_are_kept_and_marked(runs, tmp_path):
    page = tmp_path / "RESULTS.md"
    old_row = ("| transformer/week4f_deploy | local | - | ONNX identical | - | 0.7 min | all passed | CPU: X "
               "| unknown | unknown (no commit recorded) | 2026-11-29 |")
    page.write_text(results.PAGE_TEMPLATE.replace(results.END, f"| notebook | x |\n{old_row}\n{results.END}"))
    assert results.main(["table", "--runs", str(runs), "--out", str(page)]) == 0
    rows = [r for r in page.read_text().splitlines() if r.startswith("| transformer/")]
    assert [r.split(" | ")[0] for r in rows] == ["| transformer/week3_transformer", "| transformer/week4f_deploy"]
    assert results.KEPT_NOTE in rows[1] and "ONNX identical" in rows[1]


def _section(text: str, begin: str, end: str) -> str:
    assert text.count(begin) == 1 and text.count(end) == 1, f"missing markers {begin!r}"
    return text.split(begin, 1)[1].split(end, 1)[0].strip("\n")


def _mask_code_since(table: str) -> list[str]:
    rows = []
    for line in table.splitlines():
        cells = line.split(" | ")
        if len(cells) == 11 and line.startswith("| ") and not line.startswith("| notebook"):
            cells[9] = "(masked)"  # 'code since' depends on the checkout, not on the run
        rows.append(" | ".join(cells))
    return rows


def test_the_committed_results_page_and_readme_rebuild_from_the_recorded_runs():
    """docs/RESULTS.md's table and figures and the README's figures are what `make results` makes
    from docs/recorded/: no number or figure was edited in by hand, every figure is the one its
    run's metrics.json names (same checksum), and every image the pages link to exists."""
    docs = ROOT / "docs"
    recorded = docs / results.RECORDED
    runs = results.find_runs([recorded])
    assert runs, "docs/recorded/ holds no runs: run notebooks, then `make results`"
    page, readme = (docs / "RESULTS.md").read_text(), (ROOT / "README.md").read_text()
    named = set()
    for (profile, track, notebook), entry in runs.items():
        for figure in ((entry.get("metrics") or {}).get("figures") or {}).values():
            path = recorded / profile / track / notebook / figure["file"]
            assert path.is_file(), f"{path} is named by its run's metrics.json but missing"
            assert results._sha256(path) == figure["sha256"], f"{path} differs from the figure its run saved"
            named.add(path)
    stray = {p for p in recorded.rglob("*.png")} - named
    assert not stray, f"figures no run names (added by hand?): {sorted(map(str, stray))}"
    assert results.gallery(runs, docs).strip("\n") == _section(page, results.GALLERY_BEGIN, results.GALLERY_END), \
        "docs/RESULTS.md's figures are not what `make results` makes from docs/recorded/: run `make results`"
    assert results.readme_gallery(runs, ROOT).strip("\n") == _section(readme, results.GALLERY_BEGIN,
                                                                      results.GALLERY_END), \
        "README.md's figures are not what `make results` makes from docs/recorded/: run `make results`"
    assert readme.count("<img src=") >= 2, "the README shows no figures of our runs"
    generated = results.REPRODUCIBILITY + results.table(runs, repo=None, kept=results.kept_rows(page))
    assert _mask_code_since(generated.strip("\n")) == _mask_code_since(_section(page, results.BEGIN, results.END)), \
        "docs/RESULTS.md's table is not what `make results` makes from docs/recorded/: run `make results`"
    import re
    for source, text in (("README.md", readme), ("docs/RESULTS.md", page)):
        base = ROOT if source == "README.md" else docs
        for link in re.findall(r'!\[[^\]]*\]\(([^)]+)\)|<img src="([^"]+)"', text):
            if "://" in (link[0] or link[1]):
                continue  # a badge or an image elsewhere on the web
            target = base / (link[0] or link[1])
            assert target.is_file(), f"{source} shows {target}, which does not exist"
