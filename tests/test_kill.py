"""Atomic checkpoints under SIGKILL: whatever moment the writer dies, the checkpoint on disk
loads (temp file + fsync + rename; the previous version stays until the new one is complete).

Half the kills come at a random moment, half while a write is under way (the writer writes in
small pieces and says when it starts one). A kill that leaves a new temp file behind landed
mid-write; the test requires at least MIN_MID_WRITE of those, so it cannot pass without
testing the case it is about."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from helpers.runtime.checkpoints import load_checkpoint

pytestmark = pytest.mark.robustness  # minutes of SIGKILLs: `make robustness` (CI), not `make test`

KILLS, MIN_MID_WRITE = 20, 8

WRITER = textwrap.dedent("""
    import io, sys, time, torch
    from helpers.runtime.checkpoints import save_checkpoint
    real_save = torch.save

    def save_in_pieces(obj, f):  # what atomic_save calls: a slow disk, so a kill can land inside
        buf = io.BytesIO()
        real_save(obj, buf)
        data = buf.getvalue()
        print("writing", flush=True)
        for i in range(0, len(data), 16384):
            f.write(data[i:i + 16384])
            f.flush()
            time.sleep(0.002)

    torch.save = save_in_pieces
    path = sys.argv[1]
    model = torch.nn.Linear(256, 256)   # ~260 kB per checkpoint: 17 pieces
    step = 0
    print("ready", flush=True)
    while True:
        step += 1
        with torch.no_grad():
            model.weight.fill_(step)
        save_checkpoint(path, model=model, step=step, config={"width": 256})
""")


def test_checkpoint_survives_being_killed_mid_write(tmp_path):
    path = tmp_path / "ckpt.pt"
    rng = random.Random(0)
    last_step, mid_write, temps_seen = 0, 0, set()
    for kill in range(KILLS):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline().strip() == "ready"
        if kill % 2:
            time.sleep(rng.uniform(0.05, 0.4))  # any moment
        else:  # inside the second write (the first one leaves nothing to load yet)
            for _ in range(1 if path.is_file() else 2):
                assert proc.stdout.readline().strip() == "writing"
            time.sleep(rng.uniform(0.0, 0.02))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        temps = {p.name for p in tmp_path.glob(".ckpt.pt.*.tmp")}
        mid_write += bool(temps - temps_seen)  # this kill left a half-written temp file
        temps_seen |= temps
        model = torch.nn.Linear(256, 256)
        state = load_checkpoint(path, model=model, config={"width": 256}, restore_rng=False)
        assert torch.all(model.weight == state["step"]), "weights and step from different writes"
        assert state["step"] >= 1
        last_step = state["step"]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "ckpt.pt"]
    assert len(leftovers) <= KILLS  # at most one stale temp file per kill, never a broken ckpt
    print(f"{KILLS} kills, {mid_write} of them mid-write (temp file left behind), last step {last_step}")
    assert mid_write >= MIN_MID_WRITE, f"only {mid_write} of {KILLS} kills landed mid-write"
