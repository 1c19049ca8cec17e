import json
import os
import random
import stat

import numpy as np
import pytest
import torch

from helpers.runtime.checkpoints import CheckpointError, atomic_save, load_checkpoint, save_checkpoint
from helpers.runtime.config import profile_config
from helpers.runtime.history import History, progress, report_run
from helpers.runtime.metrics import read_metrics, write_metrics


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))


def test_history_logs_plots_and_round_trips():
    h = History()
    for step in range(5):
        h.log(step, loss=torch.tensor(1.0 / (step + 1)), lr=0.1)
    assert h["loss"][0] == 1.0 and h.last("lr") == 0.1 and len(h) == 5
    assert h.steps("loss") == [0, 1, 2, 3, 4]
    with pytest.raises(KeyError, match="logged: loss, lr"):
        h["acc"]
    h2 = History()
    h2.load_state_dict(json.loads(json.dumps(h.state_dict())))
    assert h2["loss"] == h["loss"]
    import matplotlib
    matplotlib.use("Agg")
    ax = h.plot("loss", smooth=2, logy=True, title="t")
    assert len(ax.lines) == 1
    with pytest.raises(KeyError, match="no series 'val_loss'"):  # a typo is an error...
        h.plot("loss", "val_loss")
    h.run_summary = {"steps_done": 5, "steps_planned": 100, "stopped_early": "time limit"}
    ax = h.plot("loss", "val_loss")  # ...but a run stopped early plots what it logged
    assert len(ax.lines) == 1 and "not logged yet: val_loss" in ax.texts[0].get_text()


def test_atomic_save_keeps_old_file_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    atomic_save({"v": torch.tensor(1)}, path)

    def broken_save(obj, f):
        f.write(b"partial")
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(RuntimeError, match="killed"):
        atomic_save({"v": torch.tensor(2)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["v"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temp file left


def test_disk_full_is_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    atomic_save({"v": 1}, path)

    def full(obj, f):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointError, match="disk is full.*previous version is untouched"):
        atomic_save({"v": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["v"] == 1


def test_checkpoint_resume_restores_everything(tmp_path):
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    x = torch.randn(16, 4)
    for _ in range(3):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
        sched.step()
    cfg = profile_config("start_here", "smoke")
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    path = save_checkpoint(tmp_path / "c.pt", model=model, optimizer=opt, scheduler=sched,
                           step=3, config=cfg)
    expected_draws = (random.random(), float(np.random.rand()), torch.rand(3))

    model2 = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-2)
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=1, gamma=0.5)
    state = load_checkpoint(path, model=model2, optimizer=opt2, scheduler=sched2, config=cfg)
    assert state["step"] == 3
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)
    assert sched2.get_last_lr() == sched.get_last_lr()
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    draws = (random.random(), float(np.random.rand()), torch.rand(3))
    assert draws[0] == expected_draws[0] and draws[1] == expected_draws[1]
    assert torch.equal(draws[2], expected_draws[2])


def test_checkpoint_refuses_a_different_config_naming_the_field(tmp_path):
    model = _model()
    cfg = {"d_model": 512, "heads": 8}
    path = save_checkpoint(tmp_path / "c.pt", model=model, step=1, config=cfg)
    with pytest.raises(CheckpointError, match=r"d_model: checkpoint 512, config 256"):
        load_checkpoint(path, model=model, config={"d_model": 256, "heads": 8})
    load_checkpoint(path, model=model, config={"d_model": 512, "heads": 8, "lr": 1},
                    config_keys=["d_model", "heads"])


def test_checkpoint_errors_for_missing_or_corrupt_files(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(bad)
    path = save_checkpoint(tmp_path / "c.pt", model=_model(), step=1)
    with pytest.raises(CheckpointError, match="holds no optimizer state"):
        model = _model()
        load_checkpoint(path, model=model,
                        optimizer=torch.optim.SGD(model.parameters(), lr=0.1))


def test_checkpoints_load_with_weights_only(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", model=_model(), step=1, config={"a": 1})
    torch.load(path, weights_only=True)  # raises if anything needs pickle code


def test_write_metrics(clean_env, monkeypatch):
    monkeypatch.setenv("CURRICULUM_PROFILE", "smoke")
    cfg = profile_config("start_here")
    path = write_metrics("transformer", "week3_translation",
                         {"bleu": torch.tensor(12.5), "loss": np.float32(1.5), "bad": float("nan")},
                         config=cfg, extra={"seconds": 3})
    assert path == clean_env / "runs" / "transformer" / "week3_translation" / "metrics.json"
    record = json.loads(path.read_text())
    assert record["metrics"] == {"bleu": 12.5, "loss": 1.5, "bad": "nan"}
    assert record["profile"] == "smoke"
    assert record["settings"]["matmul_size"] == cfg.matmul_size
    assert record["environment"]["torch"] == torch.__version__
    assert read_metrics("transformer", "week3_translation")["track"] == "transformer"
    with pytest.raises(ValueError, match="plain folder name"):
        write_metrics("../x", "y", {})


def test_progress_bar_iterates():
    assert list(progress(range(3), desc="t", disable=True)) == [0, 1, 2]


def test_atomic_writes_get_normal_permissions(tmp_path):
    """mkstemp's private 0600 must not leak into checkpoints others (containers, a study
    group's shared folder) need to read."""
    from helpers.runtime.files import atomic_write_text

    old = os.umask(0o022)
    try:
        path = atomic_write_text("x", tmp_path / "shared.json")
        saved = atomic_save({"v": 1}, tmp_path / "shared.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(saved.stat().st_mode) == 0o644


def test_resumable_run_keeps_the_newest_weight_snapshots(tmp_path):
    from helpers.runtime.run import ResumableRun

    model = torch.nn.Linear(2, 1)
    run = ResumableRun(tmp_path / "m.pt", steps=10, model=model, every=2, keep=3)
    for _ in run:
        with torch.no_grad():
            model.weight.add_(1.0)
    names = [p.name for p in run.snapshots()]
    assert names == ["m.step0000006.pt", "m.step0000008.pt", "m.step0000010.pt"]
    saved = torch.load(run.snapshots()[-1], weights_only=True)
    assert torch.equal(saved["weight"], model.weight.detach())
    assert run.summary() == {"steps_done": 10, "steps_planned": 10, "stopped_early": None,
                             "time_limit_s": None}


def test_time_limit_stop_is_reported_plainly_and_resumed(tmp_path, capsys):
    """Issue #13, item 8: the run says it stopped early (steps done of planned, how to
    continue), the record for metrics.json says so too, and the next run resumes there."""
    from helpers.runtime.config import Config
    from helpers.runtime.run import ResumableRun

    cfg = Config("translation", "smoke", {"time_limit_s": 0.0})
    model = torch.nn.Linear(2, 1)
    run = ResumableRun(tmp_path / "m.pt", steps=10, model=model, every=5, time_limit_s=0.0)
    for _ in run:
        pass
    record = report_run(run.history, cfg)
    out = capsys.readouterr().out
    assert record == {"steps_done": 1, "steps_planned": 10, "stopped_early": "time limit"}
    assert "STOPPED EARLY (time limit" in out and "1 of 10 steps done" in out
    assert "run this cell again to continue from step 1, or lift the limit" in out
    assert "profile_config('translation', time_limit_s=None)" in out
    again = ResumableRun(tmp_path / "m.pt", steps=10, model=model, every=5)
    for _ in again:
        pass
    record = report_run(again.history, cfg)
    out = capsys.readouterr().out
    assert "Resuming from step 1 of 10" in out and "continued from step 1" in out
    assert record == {"steps_done": 10, "steps_planned": 10, "stopped_early": None}
    for _ in ResumableRun(tmp_path / "m.pt", steps=10, model=model):
        pass
    assert "Already trained (10 steps" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no run summary"):
        report_run(History())


def test_a_stop_mid_interval_adds_no_snapshot(tmp_path):
    """A run stopped by its time limit (or a disconnect) at step 3 saves its checkpoint there, but
    keeps snapshots only on the schedule: resumed, it averages the same weights as a run that
    was never interrupted (found by make determinism: week 3 averaged steps 31, 100, 200, 250)."""
    from helpers.runtime.run import ResumableRun, snapshot_paths

    model = torch.nn.Linear(2, 1)
    for _ in ResumableRun(tmp_path / "m.pt", steps=8, model=model, every=2, keep=5, stop_after=3):
        pass
    assert [p.name for p in snapshot_paths(tmp_path / "m.pt")] == ["m.step0000002.pt"]
    for _ in ResumableRun(tmp_path / "m.pt", steps=8, model=model, every=2, keep=5):
        pass
    assert [p.name for p in snapshot_paths(tmp_path / "m.pt")] == [f"m.step000000{i}.pt" for i in (2, 4, 6, 8)]


def test_a_fresh_run_removes_snapshots_left_from_a_deleted_checkpoint(tmp_path):
    """Otherwise checkpoint averaging would mix an old run's weights into the new one's."""
    from helpers.runtime.run import ResumableRun, snapshot_paths

    model = torch.nn.Linear(2, 1)
    for _ in ResumableRun(tmp_path / "m.pt", steps=8, model=model, every=2, keep=5):
        pass
    assert len(snapshot_paths(tmp_path / "m.pt")) == 4
    (tmp_path / "m.pt").unlink()  # the learner deletes the checkpoint to train again
    for _ in ResumableRun(tmp_path / "m.pt", steps=3, model=model, every=2, keep=5):
        pass
    assert [p.name for p in snapshot_paths(tmp_path / "m.pt")] == ["m.step0000002.pt", "m.step0000003.pt"]
    for _ in ResumableRun(tmp_path / "m.pt", steps=3, model=model, every=2, keep=5):  # resumes: kept
        pass
    assert len(snapshot_paths(tmp_path / "m.pt")) == 2
