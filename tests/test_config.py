import warnings

import pytest

from helpers.runtime import config
from helpers.runtime.config import PROFILES, Config, ProfileError, get_profile, profile_config


def test_default_profile_follows_cuda(clean_env, monkeypatch):
    monkeypatch.setattr(config, "_cuda_available", lambda: False)
    assert get_profile() == "local"
    monkeypatch.setattr(config, "_cuda_available", lambda: True)
    assert get_profile() == "full"


@pytest.mark.parametrize("name", PROFILES)
def test_env_var_selects_profile(clean_env, monkeypatch, name):
    monkeypatch.setenv("CURRICULUM_PROFILE", name.upper())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert get_profile() == name


def test_bogus_profile_names_the_valid_ones_and_the_fix(clean_env, monkeypatch):
    monkeypatch.setenv("CURRICULUM_PROFILE", "bogus")
    with pytest.raises(ProfileError) as info:
        get_profile()
    message = str(info.value)
    assert "'bogus'" in message
    assert "smoke, local, full" in message
    assert "export CURRICULUM_PROFILE=local" in message
    with pytest.raises(ProfileError):  # the config entry point says the same
        profile_config("start_here")


def test_full_without_gpu_warns_and_says_how_to_switch(clean_env, monkeypatch):
    monkeypatch.setattr(config, "_cuda_available", lambda: False)
    with pytest.warns(UserWarning, match="CURRICULUM_PROFILE=local"):
        assert get_profile("full") == "full"


def test_profile_config_merges_common_and_profile_values(clean_env):
    for name in PROFILES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cfg = profile_config("start_here", name)
        expected = {**config.FAMILIES["start_here"]["common"], **config.FAMILIES["start_here"][name]}
        assert dict(cfg) == expected
        assert cfg.profile == name and cfg.family == "start_here"
    smoke = profile_config("start_here", "smoke")
    local = profile_config("start_here", "local")
    assert smoke.matmul_size < local.matmul_size


def test_every_family_defines_every_profile_with_the_same_keys():
    for family, spec in config.FAMILIES.items():
        keys = None
        for name in PROFILES:
            assert name in spec, f"{family} lacks profile {name}"
            merged = set(spec.get("common", {})) | set(spec[name])
            keys = merged if keys is None else keys
            assert merged == keys, f"{family}/{name} has different settings than the others"


def test_overrides_and_read_only(clean_env):
    cfg = profile_config("start_here", "smoke", matmul_size=8)
    assert cfg.matmul_size == 8 and cfg["matmul_size"] == 8
    with pytest.raises(ProfileError, match="matmul_sise"):
        profile_config("start_here", "smoke", matmul_sise=8)
    with pytest.raises(AttributeError, match="read-only"):
        cfg.matmul_size = 3
    with pytest.raises(AttributeError, match="has no setting 'nope'"):
        cfg.nope
    assert cfg.replace(seed=5).seed == 5 and cfg.seed == 0
    assert cfg.to_dict()["profile"] == "smoke"


def test_unknown_family():
    with pytest.raises(ProfileError, match="known families"):
        profile_config("nonexistent", "smoke")


def test_config_is_a_mapping():
    cfg = Config("x", "smoke", {"a": 1})
    assert list(cfg) == ["a"] and len(cfg) == 1 and "Config('x'" in repr(cfg)


def test_readme_describes_the_full_translation_run_as_configured(clean_env):
    """README says what `full` trains (not "paper-faithful"); the numbers must be the config's."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    full = Config("translation", "full", {**config.FAMILIES["translation"]["common"],
                                          **config.FAMILIES["translation"]["full"]})  # no GPU warning
    assert "paper-faithful" not in readme
    assert f"about {full.max_tokens:,} tokens per batch" in readme
    assert f"for {full.train_steps:,}\nsteps" in readme or f"for {full.train_steps:,} steps" in readme
    assert f"stopped after {full.time_limit_s // 60} minutes" in readme
    assert (full.d_model, full.n_layers, full.n_heads, full.d_ff) == (512, 6, 8, 2048)  # "the base model"
