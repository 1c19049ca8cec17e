import os
import random
import sys
import types
import warnings

import numpy as np
import pytest
import torch

from helpers.runtime import config, env


def test_smoke_profile_uses_cpu(clean_env, monkeypatch):
    monkeypatch.setenv("CURRICULUM_PROFILE", "smoke")
    assert env.get_device() == torch.device("cpu")


def test_device_override(clean_env, monkeypatch):
    monkeypatch.setenv("CURRICULUM_DEVICE", "cpu")
    assert env.get_device("full") == torch.device("cpu")


def test_seed_everything_repeats_all_generators(clean_env):
    env.seed_everything(7)
    a = (random.random(), np.random.rand(), torch.rand(2))
    env.seed_everything(7)
    b = (random.random(), np.random.rand(), torch.rand(2))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])
    env.seed_everything(8)
    assert not torch.equal(torch.rand(2), a[2])
    torch.use_deterministic_algorithms(False)


def test_amp_settings_cpu_is_fp32():
    amp = env.amp_settings("cpu")
    assert amp.dtype == torch.float32 and not amp.enabled and not amp.use_grad_scaler
    with env.autocast(amp):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32
    assert not env.grad_scaler(amp).is_enabled()


def fake_gpu(monkeypatch, capability, bf16_supported=True):
    """Pretend a CUDA GPU of this compute capability is present. ``is_bf16_supported`` answers
    True by default, as it does on a real T4 (its default ``including_emulation=True``)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_supported)


@pytest.mark.parametrize("gpu, capability, expected, scaler", [
    ("T4", (7, 5), torch.float16, True),
    ("V100", (7, 0), torch.float16, True),
    ("A100", (8, 0), torch.bfloat16, False),
    ("L4", (8, 9), torch.bfloat16, False),
    ("H100", (9, 0), torch.bfloat16, False),
    ("P100", (6, 0), torch.float32, False),
])
def test_amp_settings_by_compute_capability(monkeypatch, gpu, capability, expected, scaler):
    """A T4 says bf16 is supported (emulated, slow): it must still get fp16 + GradScaler."""
    fake_gpu(monkeypatch, capability)
    amp = env.amp_settings(torch.device("cuda"))
    assert amp.dtype == expected, gpu
    assert amp.use_grad_scaler is scaler and amp.enabled is (expected != torch.float32)
    assert env.amp_dtype("cuda") == expected


def test_amp_dtype_off_cuda_is_fp32_even_with_a_gpu_present(monkeypatch):
    fake_gpu(monkeypatch, (9, 0))
    assert env.amp_dtype("cpu") == torch.float32 and env.amp_dtype("mps") == torch.float32


def test_bench_and_report_pick_the_same_dtype_on_a_fake_t4_and_a100(monkeypatch):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    import bench  # tools/bench.py, not part of the package

    for capability, expected in (((7, 5), torch.float16), ((8, 0), torch.bfloat16)):
        fake_gpu(monkeypatch, capability)
        assert bench._amp_for(torch.device("cuda"), True).dtype == expected
        assert bench._amp_for(torch.device("cuda"), True).use_grad_scaler is (expected == torch.float16)


@pytest.mark.parametrize("profile, deterministic", [("smoke", True), ("local", True), ("full", False)])
def test_seed_everything_follows_the_profile_setting(clean_env, monkeypatch, profile, deterministic):
    monkeypatch.setenv("CURRICULUM_PROFILE", profile)
    monkeypatch.setattr(config, "_cuda_available", lambda: True)  # no 'full without GPU' warning
    try:
        env.seed_everything(0)
        assert torch.backends.cudnn.benchmark is (not deterministic)
        assert torch.backends.cudnn.deterministic is deterministic
        assert torch.are_deterministic_algorithms_enabled() is deterministic
        assert ("autotuning on" in env.reproducibility_note()) is (not deterministic)
        env.seed_everything(0, deterministic=True)  # the explicit argument wins
        assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = False


def test_data_dir_default_and_missing_env_dir(clean_env, monkeypatch, tmp_path):
    assert env.data_dir() == env.project_root() / "data"
    monkeypatch.setenv("CURRICULUM_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(env.DataDirError) as info:
        env.data_dir()
    message = str(info.value)
    assert "CURRICULUM_DATA_DIR" in message and "does not exist" in message
    assert "mkdir -p" in message and "unset it" in message
    (tmp_path / "nowhere").mkdir()
    assert env.data_dir() == tmp_path / "nowhere"


def test_colab_detection_and_checkpoint_dir(clean_env, monkeypatch):
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    assert env.in_colab() is False
    assert env.mount_drive() is None
    assert env.keep_on_drive() is None and "CURRICULUM_RUNS_DIR" in os.environ  # unchanged
    monkeypatch.setenv("CURRICULUM_PROFILE", "local")
    path = env.checkpoint_dir("dcgan", "week4")
    assert path == clean_env / "runs" / "dcgan" / "week4" / "checkpoints" / "local" and path.is_dir()
    assert env.checkpoint_dir("dcgan", "week4", "smoke") == path.parent / "smoke"  # profiles apart
    monkeypatch.setenv("COLAB_RELEASE_TAG", "test")
    monkeypatch.setattr(env, "DRIVE_ROOT", clean_env / "MyDrive")
    with pytest.warns(UserWarning, match="KEEP_ON_DRIVE = True"):
        env.checkpoint_dir("dcgan", "week4")


def test_keep_on_drive_moves_runs_and_cache_to_drive(clean_env, monkeypatch):
    """The setup cell's KEEP_ON_DRIVE: Drive is mounted once, then runs/ (checkpoints included)
    and the download cache live there, and no disconnect warning is given."""
    mounted = []
    drive_root = clean_env / "content" / "drive" / "MyDrive"
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=lambda where: (mounted.append(where), drive_root.mkdir(parents=True)))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(env, "DRIVE_ROOT", drive_root)
    monkeypatch.setenv("CURRICULUM_PROFILE", "smoke")
    base = env.keep_on_drive()
    assert mounted == [str(drive_root.parent)] and base == drive_root / "curriculum"
    assert env.runs_dir() == base / "runs" and env.cache_dir() == base / "cache"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = env.checkpoint_dir("transformer", "week3_transformer")
    assert path == base / "runs" / "transformer" / "week3_transformer" / "checkpoints" / "smoke"
    env.keep_on_drive()
    assert len(mounted) == 1  # already mounted: not asked again


def test_show_port_uses_colabs_port_proxy_on_colab(monkeypatch, capsys):
    calls = []
    colab = types.ModuleType("google.colab")
    colab.output = types.SimpleNamespace(
        serve_kernel_port_as_iframe=lambda port, path="/", height=0: calls.append((port, path)))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert "port proxy" in env.show_port(8123, "/")
    assert calls == [(8123, "/")]
    monkeypatch.delitem(sys.modules, "google.colab")
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    assert env.show_port(8123) == "http://127.0.0.1:8123/" and calls == [(8123, "/")]


def test_environment_report(clean_env, monkeypatch):
    monkeypatch.setenv("CURRICULUM_PROFILE", "smoke")
    report = env.environment_report()
    for key in ("python", "torch", "numpy", "profile", "device", "cpu_count", "ram_gb", "gpus",
                "colab", "helpers", "torchvision"):
        assert key in report
    assert report["profile"] == "smoke" and report["device"] == "cpu"
    assert report["torch"] == torch.__version__
