"""Exact resume after a real disconnect: a training process is SIGKILLed at a random (seeded,
printed) step, a new process resumes from the last checkpoint, and the final state (weights,
optimizers, schedule, GradScaler, RNG states, data position, history) is bit-identical to an
uninterrupted run. Both loops: translation (Transformer week 3) and DCGAN (week 4)."""

import os
import random
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

pytestmark = pytest.mark.robustness  # minutes of SIGKILLs: `make robustness` (CI), not `make test`

STEPS, EVERY = 30, 3

CHILD = textwrap.dedent(f"""
    import sys, time, torch
    from helpers.runtime import env
    from helpers.runtime.history import History
    from helpers.runtime.config import profile_config

    loop, ckpt, report = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    cpu = torch.device("cpu")


    class Reporting(History):  # prints each step so the parent can kill at one
        def log(self, step, **values):
            super().log(step, **values)
            if report and ("train_loss" in values or "loss_d" in values):
                print(step, flush=True)
                time.sleep(0.03)


    if loop == "translation":
        from helpers.course.data.text import synthetic_translation
        from helpers.translation import build_model, prepare_translation, train_translation

        cfg = profile_config("translation", "smoke", train_steps={STEPS}, eval_every=10,
                             dropout=0.1, max_tokens=300, d_model=32, d_ff=64)
        data = prepare_translation(synthetic_translation(120, 10, 10), 200, name="kill")
        env.seed_everything(0)
        model = build_model(cfg, data.tokenizer.vocab_size)
        train_translation(model, data, cfg.replace(log_every=1, checkpoint_every={EVERY}), device=cpu,
                          history=Reporting(), checkpoint_path=ckpt)
    else:
        from torch.utils.data import DataLoader, TensorDataset
        from helpers.dcgan import build_dcgan, train_dcgan

        cfg = profile_config("dcgan", "smoke", image_size=16, ngf=4, ndf=4, nz=8, batch_size=8,
                             train_steps={STEPS}, log_every=1, channels=1)
        env.seed_everything(0)
        images = torch.rand(44, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
        order = torch.Generator().manual_seed(0) if loop == "dcgan" else None  # None: global RNG
        loader = DataLoader(TensorDataset(images, torch.zeros(44)), batch_size=8, shuffle=True,
                            drop_last=True, generator=order)  # 5 batches: 6 epochs in 30 steps
        G, D = build_dcgan(cfg, nc=1)
        train_dcgan(G, D, loader, cfg.replace(checkpoint_every={EVERY}), device=cpu, history=Reporting(),
                    checkpoint_path=ckpt)
""")


def _env(tmp_path):
    return {**os.environ, "CURRICULUM_PROFILE": "smoke", "CURRICULUM_CACHE_DIR": str(tmp_path / "cache"),
            "CURRICULUM_RUNS_DIR": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1"}


def _run(loop, ckpt, tmp_path):
    subprocess.run([sys.executable, "-c", CHILD, loop, str(ckpt), "0"], env=_env(tmp_path),
                   check=True, capture_output=True, timeout=120)


def assert_identical(a, b, where="checkpoint"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert sorted(a) == sorted(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_identical(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize("loop", ["translation", "dcgan", "dcgan_global_rng"])
def test_sigkill_at_a_random_step_then_resume_is_bit_identical(loop, tmp_path):
    reference = tmp_path / "reference.pt"
    _run(loop, reference, tmp_path)  # uninterrupted (also builds the cached tokenizer)

    kill_at = random.Random(f"SIGKILL {loop}").randint(EVERY + 1, STEPS - EVERY - 1)
    ckpt = tmp_path / "run.pt"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, loop, str(ckpt), "1"], env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen = 0
    for line in proc.stdout:
        seen = int(line)
        if seen >= kill_at:
            os.kill(proc.pid, signal.SIGKILL)  # no cleanup code runs: a Colab disconnect
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill (last step {seen})"
    interrupted = torch.load(ckpt, weights_only=True)
    assert EVERY <= interrupted["step"] < STEPS
    print(f"{loop}: SIGKILL after step {seen} (drawn: {kill_at}), resumed from the checkpoint "
          f"of step {interrupted['step']}")

    _run(loop, ckpt, tmp_path)  # a new process resumes from the last checkpoint
    final, expected = torch.load(ckpt, weights_only=True), torch.load(reference, weights_only=True)
    assert final["step"] == STEPS
    for part in ("model", "optimizer", "scheduler", "scaler", "rng", "extra", "config"):
        assert (part in final) == (part in expected), part
        if part in expected:
            assert_identical(final[part], expected[part], part)
    assert_identical(final, expected)
