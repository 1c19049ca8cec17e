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


def test_every_setting_is_declared_once_with_its_kind_and_type(clean_env):
    """Issue #22: architecture, data, run settings and checks kept apart, typed (SCHEMA)."""
    for family, spec in config.FAMILIES.items():
        declared = [key for fields in config.SCHEMA[family].values() for key in fields]
        assert len(declared) == len(set(declared)), f"{family}: a setting declared under two kinds"
        assert set(config.SCHEMA[family]) <= set(config.KINDS), family
        for name in PROFILES:
            keys = set(spec.get("common", {})) | set(spec[name])
            assert keys == set(declared), f"{family}/{name}: undeclared {keys - set(declared)}, unused {set(declared) - keys}"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cfg = profile_config(family, name)  # every value has its declared type
            parts = {}
            for kind in config.KINDS:
                section = cfg.section(kind)
                parts.update(vars(section))
                with pytest.raises(AttributeError):  # frozen
                    section.seed = 1
            assert parts == dict(cfg)  # the kinds together are the whole config
            # no setting hides a method of Config (cfg.model must stay week 4a's model name)
            assert not {k for k in keys if hasattr(Config, k)}, family


def test_a_value_of_the_wrong_type_is_refused_with_the_fix(clean_env):
    with pytest.raises(ProfileError, match=r"d_model='128' is a str, but d_model is a int\. Fix: pass a int"):
        profile_config("translation", "smoke", d_model="128")
    with pytest.raises(ProfileError, match="fast_attention"):
        profile_config("translation", "smoke").replace(fast_attention=1)
    assert profile_config("translation", "smoke", time_limit_s=5).time_limit_s == 5
    assert profile_config("translation", "smoke", dropout=0).dropout == 0  # an int where a float is declared
    with pytest.raises(ProfileError, match="kinds: model, data, run, checks"):
        profile_config("translation", "smoke").section("thresholds")


def test_a_checkpoint_stores_the_architecture_not_the_run_settings(tmp_path, clean_env):
    import torch

    from helpers import dcgan
    from helpers.runtime.checkpoints import load_checkpoint

    cfg = profile_config("dcgan", "smoke", train_steps=2, batch_size=4, checkpoint_every=1)
    G, D = dcgan.Generator(cfg.nz, cfg.ngf, cfg.channels, cfg.image_size), dcgan.Discriminator(cfg.channels, cfg.ndf, cfg.image_size)
    images = torch.randn(8, cfg.channels, cfg.image_size, cfg.image_size)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.zeros(8)), batch_size=4)
    dcgan.train_dcgan(G, D, loader, cfg, device=torch.device("cpu"), checkpoint_path=tmp_path / "g.pt")
    saved = load_checkpoint(tmp_path / "g.pt", restore_rng=False)["config"]
    assert saved == {**vars(cfg.section("model")), "dataset": cfg.dataset}
    assert "train_steps" not in saved and "min_judge_accuracy" not in saved
