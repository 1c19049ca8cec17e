import random

import numpy as np
import pytest
import torch

from helpers.course import env


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


@pytest.mark.parametrize("bf16, expected, scaler", [(True, torch.bfloat16, False),
                                                    (False, torch.float16, True)])
def test_amp_settings_cuda_choice(monkeypatch, bf16, expected, scaler):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    amp = env.amp_settings(torch.device("cuda"))
    assert amp.dtype == expected and amp.use_grad_scaler is scaler and amp.enabled


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
    monkeypatch.setenv("CURRICULUM_PROFILE", "local")
    path = env.checkpoint_dir("dcgan", "week4")
    assert path == clean_env / "runs" / "dcgan" / "week4" / "checkpoints" / "local" and path.is_dir()
    assert env.checkpoint_dir("dcgan", "week4", "smoke") == path.parent / "smoke"  # profiles apart
    monkeypatch.setenv("COLAB_RELEASE_TAG", "test")
    monkeypatch.setattr(env, "DRIVE_ROOT", clean_env / "MyDrive")
    with pytest.warns(UserWarning, match="mount_drive"):
        env.checkpoint_dir("dcgan", "week4")
    (clean_env / "MyDrive").mkdir()
    assert env.checkpoint_dir("dcgan", "week4") == (
        clean_env / "MyDrive" / "curriculum-runs" / "dcgan" / "week4" / "checkpoints" / "local")


def test_environment_report(clean_env, monkeypatch):
    monkeypatch.setenv("CURRICULUM_PROFILE", "smoke")
    report = env.environment_report()
    for key in ("python", "torch", "numpy", "profile", "device", "cpu_count", "ram_gb", "gpus",
                "colab", "helpers", "torchvision"):
        assert key in report
    assert report["profile"] == "smoke" and report["device"] == "cpu"
    assert report["torch"] == torch.__version__
