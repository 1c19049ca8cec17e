"""The pieces behind the DCGAN ablations (week 4b), the RGB 64x64 `full` default, and the
summarization helpers of week 4e and the Transformer final project."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import dcgan, summarization
from helpers.course.data.images import choose_dataset, gan_dataset
from helpers.dcgan_ablations import ABLATIONS, build_ablation
from helpers.runtime.config import profile_config


# --------------------------------------------------------------------------- week 4b ablations
@pytest.mark.parametrize("name", list(ABLATIONS))
def test_every_ablation_is_flagged_by_the_single_source_of_the_rules(name):
    cfg = profile_config("dcgan_ablations", "smoke")
    G, D, row_cfg = build_ablation(name, cfg, nc=1)
    found = [what for what, _ in dcgan.guideline_problems(G, "G") + dcgan.guideline_problems(D, "D")]
    for expected in ABLATIONS[name].flagged:
        assert any(expected in f for f in found), (expected, found)
    if not ABLATIONS[name].flagged:
        assert found == []  # the base and the optimizer row break no architecture rule
    x = G(torch.randn(4, cfg.nz))
    assert x.shape == (4, 1, 32, 32) and D(x).shape == (4,)
    assert row_cfg.beta1 == (0.9 if name == "Adam β1 = 0.9" else 0.5)


def test_ablations_keep_the_base_initialization():
    """Only the layers an ablation adds are new: the base's weights stay the same, so every
    row starts from the same point."""
    cfg = profile_config("dcgan_ablations", "smoke")
    torch.manual_seed(0)
    G_base, _, _ = build_ablation("base", cfg, nc=1)
    torch.manual_seed(0)
    G_bn, _, _ = build_ablation("BatchNorm everywhere", cfg, nc=1)
    base_convs = [m.weight for m in G_base.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    bn_convs = [m.weight for m in G_bn.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert all(torch.equal(a, b) for a, b in zip(base_convs, bn_convs, strict=True))


@pytest.mark.filterwarnings("ignore:Profile 'full'")
def test_the_ablation_notebook_config_names_only_known_rows():
    for profile in ("smoke", "local", "full"):
        assert set(profile_config("dcgan_ablations", profile).rows) <= set(ABLATIONS)
    with pytest.raises(KeyError, match="known"):
        build_ablation("no such row", profile_config("dcgan_ablations", "smoke"), nc=1)


# --------------------------------------------------------------------------- RGB 64x64 in full
@pytest.mark.filterwarnings("ignore:Profile 'full'")
def test_full_dcgan_is_rgb_64_and_the_others_stay_grayscale():
    full = profile_config("dcgan", "full")
    assert (full.dataset, full.channels, full.image_size) == ("celeba|cifar10", 3, 64)
    for profile in ("smoke", "local"):
        cfg = profile_config("dcgan", profile)
        assert cfg.channels == 1 and "|" not in cfg.dataset


def _celeba_standin(root, n=3):
    folder = root / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    for i in range(n):  # CelebA's aligned faces are 178x218 JPEGs
        Image.fromarray(np.full((218, 178, 3), 40 * i, dtype=np.uint8)).save(folder / f"{i + 1:06d}.jpg")


def _cifar_standin(root, n=4):
    """CIFAR-10's python layout: pickled dicts of uint8 rows (3072 = 3 x 32 x 32) and labels."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(range(n))}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"class{i}" for i in range(10)]}))


def test_full_picks_celeba_when_present_in_its_layout(clean_env, monkeypatch):
    data = clean_env / "data"
    _celeba_standin(data)
    _cifar_standin(data)
    monkeypatch.setenv("CURRICULUM_DATA_DIR", str(data))
    monkeypatch.setenv("CURRICULUM_PROFILE", "local")  # real data, no GPU warning
    assert choose_dataset("celeba|cifar10") == "celeba"
    ds, text = gan_dataset("celeba|cifar10", image_size=64, channels=3)
    assert "celeba" in text and len(ds) == 3 and ds[0].shape == (3, 64, 64)


def test_full_falls_back_to_cifar10_resized_to_64(clean_env, monkeypatch):
    import torchvision

    data = clean_env / "data"
    _cifar_standin(data)
    (data / "celeba").mkdir()  # an empty CelebA folder is not CelebA
    monkeypatch.setenv("CURRICULUM_DATA_DIR", str(data))
    monkeypatch.setenv("CURRICULUM_PROFILE", "local")
    assert choose_dataset("celeba|cifar10") == "cifar10"
    # the stand-in cannot match the real files' MD5s, which torchvision checks (and must keep
    # checking for real copies); here only the layout and the resizing are under test
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)
    ds, text = gan_dataset("celeba|cifar10", image_size=64, channels=3)
    image, label = ds[0]
    assert "cifar10" in text and image.shape == (3, 64, 64) and image.min() >= -1 and image.max() <= 1
    assert len(ds) == 5 * 4 and int(label) == 0


def test_neither_present_means_cifar10_and_other_sources_pass_through(clean_env, monkeypatch):
    monkeypatch.setenv("CURRICULUM_DATA_DIR", str(clean_env))
    assert choose_dataset("celeba|cifar10") == "cifar10"
    assert choose_dataset("mnist") == "mnist"
    assert choose_dataset("my|folder") == "my|folder"  # not registered names: a path


def test_celeba_in_the_download_cache_counts_as_present(clean_env, monkeypatch):
    monkeypatch.setenv("CURRICULUM_DATA_DIR", str(clean_env))
    _celeba_standin(clean_env / "cache" / "celeba")
    assert choose_dataset("celeba|cifar10") == "celeba"


# --------------------------------------------------------------------------- summarization
def test_lead_and_sentence_split():
    text = 'The cat sat. Then it slept! Why? "Nobody knows," he said. 3 dogs agreed.'
    assert summarization.sentences(text)[:3] == ["The cat sat.", "Then it slept!", "Why?"]
    assert summarization.lead(text, 2) == "The cat sat. Then it slept!"
    assert summarization.lead("No full stop at all", 3) == "No full stop at all"
    assert summarization.sentences("one.\ntwo") == ["one.", "two"]  # CNN/DailyMail highlights: one per line


def test_rouge_identical_and_disjoint():
    same = summarization.rouge(["A man walks a dog."], ["A man walks a dog."])
    assert all(v == pytest.approx(1.0) for v in same.values())
    none = summarization.rouge(["A man walks a dog."], ["Rain fell yesterday."])
    assert all(v == 0.0 for v in none.values())


def test_saved_finetuned_model_is_reused_only_with_the_same_settings(tmp_path):
    cfg = profile_config("summarization", "smoke")
    model, tokenizer, prefix = summarization.load_seq2seq(cfg.model, seed=0)
    assert summarization.load_finetuned(tmp_path / "none", cfg) is None
    summarization.save_finetuned(model, tokenizer, tmp_path / "s", cfg, prefix=prefix)
    loaded, _, loaded_prefix = summarization.load_finetuned(tmp_path / "s", cfg)
    assert loaded_prefix == prefix
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    assert summarization.load_finetuned(tmp_path / "s", cfg.replace(n_train=cfg.n_train + 1)) is None
    out = summarization.generate_summaries(loaded, tokenizer, [("A dog sees a cat.", "")], cfg)
    assert len(out) == 1 and isinstance(out[0], str)
