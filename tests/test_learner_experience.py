"""What a learner sees first (issue #23): Colab opens on a GPU, the README lists every notebook
with its Colab badge and exercise version, each notebook links the next, the setup cell's
PROFILE field, a `helpers` of someone else's is named instead of imported, the progress bar
shows the loss."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("nbtools", ROOT / "tools" / "nbtools.py")
nbtools = importlib.util.module_from_spec(spec)
spec.loader.exec_module(nbtools)

ALL_IPYNB = sorted(p for folder in ("notebooks", "exercises") for p in (ROOT / folder).rglob("*.ipynb")
                   if ".ipynb_checkpoints" not in p.parts)


@pytest.mark.parametrize("path", ALL_IPYNB, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_notebook_asks_colab_for_a_t4_gpu(path):
    meta = nbformat.read(str(path), as_version=4).metadata
    assert meta.get("accelerator") == "GPU" and meta.get("colab", {}).get("gpuType") == "T4", meta


def test_the_check_catches_a_notebook_that_lost_its_gpu_request(tmp_path):
    import shutil
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for req in ROOT.glob("requirements*.txt"):
        shutil.copy(req, tmp_path / req.name)
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copytree(ROOT / "exercises", tmp_path / "exercises")
    target = tmp_path / "notebooks" / "dcgan" / "week2_data.ipynb"
    nb = nbformat.read(str(target), as_version=4)
    del nb.metadata["accelerator"]
    nbformat.write(nb, str(target))
    problems = nbtools.check(tmp_path)
    assert any("week2_data.ipynb: its metadata does not ask Colab for a T4 GPU" in p for p in problems), problems


def test_readme_lists_every_notebook_with_badge_and_exercise_version():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert nbtools.readme_with_weeks(readme) == readme, "README's table is stale: run `make sync`"
    for order in nbtools.track_order().values():
        for rel in order:
            assert f"]({rel})" in readme and nbtools.colab_url(rel) in readme, rel
            if nbtools.has_exercise_version(rel):
                assert nbtools.colab_url(nbtools.student_rel(rel)) in readme, rel
    assert nbtools.colab_url("exercises/transformer/week2_attention.ipynb") in readme
    # the first screen (before the table) has no maintainer material
    first = readme[:readme.index(nbtools.README_BEGIN)]
    for word in ("make sync", "constraint", "fork", "CI", "nbval", "<this repository>"):
        assert word not in first, word


def test_a_stale_readme_table_is_reported(tmp_path):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    begin = text.index(nbtools.README_BEGIN)
    stale = text[:begin] + text[begin:].replace("Week 3: The full model", "Week 3: an old title", 1)
    assert nbtools.readme_with_weeks(stale) == text


def test_each_notebook_ends_with_a_link_to_the_next():
    tracks = nbtools.track_order()
    assert list(tracks)[0] == "transformer" and tracks["transformer"][0].endswith("week0_prerequisites.ipynb")
    for order in tracks.values():
        for here, following in zip(order, order[1:] + [None]):
            last = nbformat.read(str(ROOT / here), as_version=4).cells[-1]
            assert last.cell_type == "markdown" and last.source.startswith(nbtools.NEXT_MARK), here
            if following:
                assert nbtools.colab_url(following) in last.source, (here, following)
            else:
                assert "last notebook of the track" in last.source, here
    start = nbformat.read(str(ROOT / "notebooks" / "00_start_here.ipynb"), as_version=4).cells[-1].source
    assert all(nbtools.colab_url(order[0]) in start for order in tracks.values())
    # an exercise notebook's next is the next exercise version where there is one
    ex = nbformat.read(str(ROOT / "exercises" / "transformer" / "week2_attention.ipynb"), as_version=4).cells[-1]
    assert nbtools.colab_url("exercises/transformer/week3_transformer.ipynb") in ex.source


def _run_setup_cell(cwd: Path, env_extra: dict, *flags: str) -> subprocess.CompletedProcess:
    source = nbtools.setup_source("notebooks/transformer/week2_attention.ipynb")
    env = {**os.environ, **env_extra}
    env.pop("CURRICULUM_PROFILE", None) if "CURRICULUM_PROFILE" not in env_extra else None
    code = source + "\nimport os\nprint('PROFILE_NOW', os.environ.get('CURRICULUM_PROFILE'))\n"
    return subprocess.run([sys.executable, *flags, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_setup_cell_profile_field_sets_the_profile(tmp_path):
    out = _run_setup_cell(tmp_path, {})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "PROFILE_NOW None" in out.stdout  # "auto": nothing set, the default applies
    source = nbtools.setup_source("notebooks/transformer/week2_attention.ipynb")
    assert 'PROFILE = "auto"  # @param ["auto", "smoke", "local", "full"]' in source
    picked = source.replace('PROFILE = "auto"', 'PROFILE = "local"', 1)
    out = subprocess.run([sys.executable, "-c", picked + "\nimport os\nprint(os.environ['CURRICULUM_PROFILE'])"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("local"), out.stderr[-2000:]


@pytest.mark.parametrize("shadow", ["helpers.py", "helpers"])
def test_setup_cell_names_a_helpers_that_is_not_ours(tmp_path, shadow):
    if shadow.endswith(".py"):
        (tmp_path / shadow).write_text("def my_function():\n    return 1\n")
    else:
        (tmp_path / shadow).mkdir()
        (tmp_path / shadow / "__init__.py").write_text("")
    # -S: no site-packages, as on a runtime where the course package is not installed yet (an
    # editable install's finder would otherwise win over the learner's file here)
    out = _run_setup_cell(tmp_path, {"PYTHONPATH": f"{tmp_path}:{ROOT / 'tools' / 'setup'}"}, "-S")
    assert out.returncode != 0
    assert "not this course's package" in out.stderr and str(tmp_path / shadow) in out.stderr, out.stderr[-2000:]
    assert "Fix: rename or move it" in out.stderr
    # ours (the editable install of this checkout) is recognized by its mark
    import helpers
    assert helpers.__curriculum__ and _run_setup_cell(tmp_path.parent, {}).returncode == 0


def test_progress_bar_shows_the_latest_loss(capsys):
    from helpers.runtime.run import ResumableRun

    run = ResumableRun(steps=3, model=torch.nn.Linear(2, 1), desc="demo")
    postfixes = []
    for step in run:
        run.log(step, train_loss=torch.tensor(1.0 / step), lr=0.5, grad_norm=2.0)
        if step == 2:
            run.log(step, val_loss=0.75)
        postfixes.append(dict(run._postfix))
    assert postfixes[0] == {"train_loss": "1"} and postfixes[-1] == {"train_loss": "0.3333", "val_loss": "0.75"}
    assert "train_loss=0.333" in capsys.readouterr().err


def test_tensorboard_hint_names_the_real_folder(tmp_path, monkeypatch, capsys):
    from helpers.runtime import env

    monkeypatch.setenv("CURRICULUM_RUNS_DIR", str(tmp_path / "drive" / "runs"))  # as KEEP_ON_DRIVE sets it
    log_dir = env.runs_dir() / "dcgan" / "week4_training" / "tensorboard" / "smoke"
    text = env.tensorboard_hint(log_dir)
    assert f'--logdir "{log_dir.resolve()}"' in text and "%tensorboard" in text
    assert text in capsys.readouterr().out


LIVE_CELLS = [
    "import time, torch\n"
    "from helpers.runtime import config\n"
    "from helpers.runtime.run import ResumableRun\n"
    "config.PROFILE_SETTINGS[config.get_profile(warn=False)]['live_plot_every_s'] = 0.2\n"
    "model = torch.nn.Linear(1, 1)\n"
    "run = ResumableRun(steps=12, model=model, desc='toy')\n"
    "from helpers.runtime.history import LiveCurve\n"
    "draws, draw = [], LiveCurve.draw\n"
    "LiveCurve.draw = lambda self: (draws.append(len(self.history)), draw(self))\n"
    "for step in run:\n"
    "    time.sleep(0.05)\n"
    "    run.log(step, loss=1.0 / step)\n"
    "print('draws', len(draws))\n",
]


def test_the_loss_curve_redraws_in_place_while_a_notebook_trains():
    """In a notebook kernel (not CI) the loss curve is drawn under the bar and then updated in
    the same output (display_id), at most every `live_plot_every_s`; in plain Python, in CI and
    in the smoke profile there is none."""
    from nbclient import NotebookClient

    from helpers.runtime import config
    from helpers.runtime.history import History, LiveCurve

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in LIVE_CELLS])
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    NotebookClient(nb, timeout=120, kernel_name="python3").execute(env=env)
    outputs = nb.cells[0].outputs
    shown = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    draws = int(printed.split("draws ")[1].split()[0])
    assert 2 <= draws <= 12 * 0.05 / 0.2 + 1, printed  # redrawn, throttled by live_plot_every_s
    assert len(shown) == 1, [o.output_type for o in outputs]  # one figure, updated in place
    assert LiveCurve.maybe(History(), every_s=1) is None  # plain Python: no kernel
    assert config.PROFILE_SETTINGS["smoke"]["live_plot_every_s"] == 0


@pytest.mark.parametrize("markdown, flagged", [
    ("Our run reached BLEU 27.4 after 600 steps.", "27.4"),                    # a stale result
    ("Pooling came within 3 % of the base.", "3 %"),
    ("The full run takes about 15 minutes on a T4.", "15 minutes"),             # an unmeasured time
    ("Without BatchNorm the distance was 9 to 14 times the base's.", "14 times"),
    ("The paper reports BLEU 27.3 (Table 2).", None),                           # cited
    ("Lucic et al. (2018) report an FID of 6.8 on MNIST.", None),                # cited across 'al.'
    ("The full run takes about 15 minutes on a T4 (an estimate: counted FLOPs).", None),
    ("A recorded run (docs/RESULTS.md) reached 29.2.", None),                    # names its run
    ("Why is the accuracy near 50 %?", None),                                   # a question
    ("Adam with lr 0.0002 and β₁ = 0.5 on 64 × 64 images; 1.05 M weights.", None),  # structural
    ("> We used a beam size of 4 and 0.6 as the penalty.", None),               # a quote of the paper
    ("`print(27.4)` prints it; so does $x = 0.5$.", None),                      # code and maths
])
def test_numbers_in_prose_need_a_source(markdown, flagged):
    """`nbtools check` (in `make test`) lists a number in markdown that reads like a result and
    is neither cited, nor an estimate, nor a named recorded run (issue #25)."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(markdown)])
    problems = nbtools.number_problems(nb, "nb")
    if flagged is None:
        assert problems == []
    else:
        assert len(problems) == 1 and repr(flagged) in problems[0] and "Fix:" in problems[0], problems
