"""Multi-GPU path (helpers.runtime.distributed, helpers.translation.shard_batch): torchrun with 2 CPU processes (gloo) trains the same
weights as one process on the same global batches."""

import json
import os
import subprocess
import sys

import pytest
import torch

from helpers.runtime.distributed import Context, setup
from helpers.translation import PAD, collate, shard_batch

# Small enough for ~10 s per run on 2 shared cores; dropout 0 (masks are drawn per rank).
OVERRIDES = ["train_steps=8", "d_model=32", "d_ff=64", "eval_every=100", "dataset_size=600",
             "vocab_size=300", "max_tokens=400", "dropout=0.0"]
# Float sums over a split batch run in another order: allow 1e-5 (observed about 1e-6).
TOLERANCE = 1e-5


def _batch():
    return collate([([5, 6, 7, 2], [1, 8, 9, 2]), ([5, 2], [1, 8, 2]), ([5, 6, 2], [1, 2]),
                    ([5, 6, 7, 8, 9, 2], [1, 8, 9, 10, 11, 12, 2]), ([4, 2], [1, 7, 7, 2])])


def test_single_process_context_changes_nothing(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    ctx = setup("cpu")
    assert not ctx.enabled and ctx.is_main and ctx.device == torch.device("cpu")
    model = torch.nn.Linear(2, 2)
    assert ctx.wrap(model) is model
    src, tgt_in, tgt_out = _batch()
    out = shard_batch(ctx, src, tgt_in, tgt_out, PAD)
    assert out[0] is src and out[1] is tgt_in and out[2] is tgt_out and out[3] == 1.0
    loss = torch.tensor(2.5)
    assert ctx.scale_loss(loss, 1.0) is loss and ctx.global_mean(loss) == 2.5


def test_shards_partition_the_batch_and_shares_make_the_global_mean():
    src, tgt_in, tgt_out = _batch()
    shards = [shard_batch(Context(rank=r, world_size=2), src, tgt_in, tgt_out, PAD) for r in range(2)]
    assert [s[0].size(0) for s in shards] == [3, 2]
    rows = [src[0::2], src[1::2]]
    for (s_src, s_in, s_out, _), full in zip(shards, rows):
        assert torch.equal(s_src, full[:, :s_src.size(1)])  # only all-padding columns dropped
        assert (full[:, s_src.size(1):] == PAD).all() and (s_src[:, -1] != PAD).any()
        assert s_in.shape == s_out.shape and (s_out[:, -1] != PAD).any()
    # mean over ranks of (rank mean * share) == global mean, for any per-token losses
    per_token = torch.rand(tgt_out.shape)
    mask = tgt_out != PAD
    global_mean = per_token[mask].mean()
    parts = []
    for r, (_, _, s_out, share) in enumerate(shards):
        local = per_token[r::2][:, :s_out.size(1)][s_out != PAD]
        parts.append(local.mean() * share)
    assert torch.stack(parts).mean() == pytest.approx(float(global_mean), rel=1e-6)
    with pytest.raises(ValueError, match="cannot be split over 8 processes"):
        shard_batch(Context(rank=0, world_size=8), src, tgt_in, tgt_out, PAD)


def _train(tmp_path, name, nproc):
    out = tmp_path / name
    cmd = [sys.executable]
    if nproc > 1:
        cmd += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd += ["-m", "helpers.ops.launch", "--profile", "smoke", "--out", str(out),
            "--log-every", "2"]
    for item in OVERRIDES:
        cmd += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "CURRICULUM_CACHE_DIR": str(tmp_path / "cache"), "CURRICULUM_RUNS_DIR": str(tmp_path / "runs")}
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "CURRICULUM_DEVICE"):
        env.pop(var, None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    history = json.loads((out / "history.json").read_text())
    return torch.load(out / "model.pt", weights_only=True), history, proc.stdout


def test_torchrun_two_processes_match_one_process(tmp_path):
    single, single_hist, _ = _train(tmp_path, "one", 1)
    double, double_hist, stdout = _train(tmp_path, "two", 2)
    assert "2 process(es)" in stdout and stdout.count("done:") == 1  # rank 0 alone reports
    assert single.keys() == double.keys()
    diffs = {k: float((single[k] - double[k]).abs().max()) for k in single}
    # The key projection's bias has a gradient of exactly 0 in theory (softmax ignores a
    # constant added to every score of a query), so both runs only see rounding noise there,
    # which Adam rescales to full-size steps: those biases cannot agree and are left out.
    compared = {k: d for k, d in diffs.items() if not k.endswith("w_k.bias")}
    assert len(compared) > 40 and max(compared.values()) <= TOLERANCE, compared
    assert any(d > 0 for d in diffs.values())  # two real runs, not one file read twice
    steps = [s for s, _ in single_hist["train_loss"]]
    assert steps == [s for s, _ in double_hist["train_loss"]] == [1, 2, 4, 6, 8]
    for (_, a), (_, b) in zip(single_hist["train_loss"], double_hist["train_loss"]):
        assert a == pytest.approx(b, rel=1e-5)
