"""Profiles never collide (issue #13, item 7): every notebook that loads a checkpoint, run in
`smoke` and then in `local` in one checkout (one runs folder), just works: the `local` run
neither loads nor trips over the `smoke` checkpoint, trains its own, and leaves the `smoke`
one as it was.

Fast version: each notebook runs up to and including the cell that trains or loads from a
checkpoint, in a kernel where `local` is a miniature of `smoke` with another vocabulary and
other network widths (so a shared checkpoint would be refused: "saved with different
settings"), a few dozen training steps, and the offline stand-in data (CI has no real data).
The checks of those tiny runs (e.g. "the loss dropped by half") may fail (the run goes on); any
other error may not. Week 4b is not here: it deletes its checkpoint before writing it, so it never loads another
run's.

`make test` runs it after the notebooks (`make profiles`), on their runs folder: the `smoke`
half is then the real smoke run of every notebook, exactly the situation of the bug report
("after make test, week 3 in local stops with CheckpointError"), and only the `local` half
runs here. Standalone: `CURRICULUM_SWITCH_RUNS=fresh pytest tests/test_profile_switch.py` runs
both halves in a temporary folder.
"""

import hashlib
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
SWITCH_RUNS = os.environ.get("CURRICULUM_SWITCH_RUNS", "")
pytestmark = pytest.mark.skipif(not SWITCH_RUNS, reason="run by `make profiles` after `make notebooks` (or "
                                "CURRICULUM_SWITCH_RUNS=fresh for a standalone run)")
# notebook -> (a text that marks its checkpoint cell, the checkpoints it owns)
NOTEBOOKS = {
    "transformer/week3_transformer": ("checkpoint_path=ckpt_path", ["transformer/week3_transformer/translator.pt"]),
    "dcgan/week4_training": ("checkpoint_path=ckpt_path", ["dcgan/week4_training/dcgan.pt"]),
    "dcgan/week5_final_project": ("checkpoint_path=ckpt_path", []),
    "transformer/week4f_deploy": ("notebook_translator(", []),
}
MINIATURE = '''
from helpers.runtime import config as _config
from helpers.course.data import registry as _registry

_registry.get_profile = lambda profile=None, warn=True: "smoke"  # stand-in data in every profile
_F = _config.FAMILIES
_F["toy_seq2seq"]["common"].update(min_accuracy=0.0)
for _name in ("smoke", "local"):
    _F["toy_seq2seq"][_name] = {"train_steps": 5}
_F["translation"]["smoke"].update(train_steps=24, eval_every=24, checkpoint_every=10, test_sentences=20)
_F["translation"]["local"] = {**_F["translation"]["smoke"], "vocab_size": 420, "d_ff": 128}
_F["dcgan"]["smoke"].update(train_steps=12, sample_every=6, eval_samples=100, classifier_epochs=1)
_F["dcgan"]["local"] = {**_F["dcgan"]["smoke"], "ngf": 8, "ndf": 8}
for _name in ("smoke", "local"):
    _F["deploy"][_name].update(translator_steps=5, generator_steps=5)
'''


def run_until_checkpoint(rel: str, runs: Path, profile: str, cache: Path) -> str:
    """Execute ``rel`` up to and including its checkpoint cell; returns the text it printed."""
    marker, _ = NOTEBOOKS[rel]
    nb = nbformat.read(ROOT / "notebooks" / f"{rel}.ipynb", as_version=4)
    last = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and marker in c.source)
    setup = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    cells = nb.cells[:last + 1]
    cells.insert(setup + 1, nbformat.v4.new_code_cell(MINIATURE))
    nb.cells = cells
    client = NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(ROOT / "notebooks")}})
    env = {**os.environ, "CURRICULUM_PROFILE": profile, "CURRICULUM_RUNS_DIR": str(runs),
           "CURRICULUM_CACHE_DIR": str(cache), "CURRICULUM_DEVICE": "cpu"}
    client.execute(env=env)
    for i, cell in enumerate(nb.cells):  # only a failed check of a tiny run is acceptable
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error" and (
                    out.get("ename") != "CheckFailed" or "checkpoint" in str(out.get("evalue", "")).lower()):
                raise AssertionError(f"{rel} ({profile}), cell {i}: {out.get('ename')}: {out.get('evalue')}")
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", [])
                   if o.get("output_type") == "stream")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_smoke_then_local_in_one_checkout(tmp_path):
    """(The cache is always a temporary one: the miniature's tokenizers must not reach yours.)"""
    runs = tmp_path / "runs" if SWITCH_RUNS == "fresh" else Path(SWITCH_RUNS).resolve()
    profiles = ("smoke", "local") if SWITCH_RUNS == "fresh" else ("local",)
    printed = {}
    smoke = {p: digest(p) for p in runs.rglob("checkpoints/smoke/*.pt")}
    for profile in profiles:
        for rel in NOTEBOOKS:
            printed[rel, profile] = run_until_checkpoint(rel, runs, profile, tmp_path / "cache")
        if profile == "smoke":
            smoke = {p: digest(p) for p in runs.rglob("checkpoints/smoke/*.pt")}
    owned = [(track, nb, name) for _, files in NOTEBOOKS.values() for track, nb, name in
             (f.split("/") for f in files)]
    for track, nb, name in owned:  # the smoke runs' checkpoints, and the local runs' own beside them
        for profile in ("smoke", "local"):
            assert (runs / track / nb / "checkpoints" / profile / name).is_file(), (nb, profile)
    assert {p: digest(p) for p in smoke} == smoke, "a local run changed a smoke checkpoint"
    # the later notebooks found the checkpoints of their own profile
    final = printed["dcgan/week5_final_project", "local"]
    assert "week 4's checkpoint is at step 12 of 12" in final and "checkpoints/local/dcgan.pt)" in final, final[-2000:]
    deploy = printed["transformer/week4f_deploy", "local"]
    assert "checkpoints/local/translator.pt (week 3, step 24)" in deploy, deploy[-2000:]
    assert "checkpoints/local/dcgan.pt (week 4, step 12)" in deploy, deploy[-2000:]
