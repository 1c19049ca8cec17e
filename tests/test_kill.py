"""Atomic checkpoints under SIGKILL: whatever moment the writer dies, the checkpoint on disk
loads (temp file + fsync + rename; the previous version stays until the new one is complete)."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import torch

from helpers.course.training import load_checkpoint

WRITER = textwrap.dedent("""
    import sys, torch
    from helpers.course.training import save_checkpoint
    path = sys.argv[1]
    model = torch.nn.Linear(256, 256)   # ~260 kB per checkpoint: writes take a moment
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
    kills, last_step = 0, 0
    while kills < 20:
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.4))  # die at a random point, often mid-write
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        model = torch.nn.Linear(256, 256)
        state = load_checkpoint(path, model=model, config={"width": 256}, restore_rng=False)
        assert torch.all(model.weight == state["step"]), "weights and step from different writes"
        assert state["step"] >= 1
        last_step = state["step"]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "ckpt.pt"]
    assert len(leftovers) <= kills  # at most one stale temp file per kill, never a broken ckpt
    assert last_step >= 1
    print(f"{kills} kills, {len(leftovers)} of them mid-write (temp file left behind), last step {last_step}")
