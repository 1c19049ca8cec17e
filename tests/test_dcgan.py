"""helpers.dcgan and the GAN parts of helpers.course.data.images / helpers.gan_metrics."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from helpers import dcgan
from helpers.course.data import DataLayoutError, load_dataset
from helpers.course.data.images import ImageFolderDataset, gan_dataset, to_gan_tensors
from helpers.gan_metrics import diversity_report, frechet_distance, linear_probe
from helpers.runtime.config import profile_config


@pytest.mark.parametrize("size, nc", [(64, 3), (32, 1), (16, 3)])
def test_shapes_and_range(size, nc):
    G, D = dcgan.Generator(100, 8, nc, size), dcgan.Discriminator(nc, 8, size)
    x = G(torch.randn(5, 100))
    assert x.shape == (5, nc, size, size) and x.min() >= -1 and x.max() <= 1
    assert D(x).shape == (5,)


def test_bad_sizes_have_clear_errors():
    with pytest.raises(ValueError, match="power of two"):
        dcgan.Generator(image_size=48)
    D = dcgan.Discriminator(3, 8, 64)
    with pytest.raises(ValueError, match=r"expects images of shape \[batch, 3, 64, 64\].*resize"):
        D(torch.zeros(2, 1, 32, 32))


def test_figure1_parameter_count():
    channels = [100, 1024, 512, 256, 128, 3]
    expected = sum(a * b * 16 for a, b in zip(channels, channels[1:])) + 2 * sum(channels[1:-1])
    assert dcgan.count_parameters(dcgan.Generator(100, 128, 3, 64)) == expected


def test_weights_init_statistics():
    torch.manual_seed(0)
    G = dcgan.Generator(100, 64, 3, 64)
    G.apply(dcgan.weights_init)
    w = torch.cat([m.weight.flatten() for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]).detach()
    assert abs(float(w.mean())) < 1e-3 and abs(float(w.std()) - 0.02) < 1e-3
    bn = torch.cat([m.weight.flatten() for m in G.modules() if isinstance(m, nn.BatchNorm2d)]).detach()
    assert abs(float(bn.mean()) - 1) < 5e-3


def test_guidelines_pass_for_dcgan_and_catch_each_violation():
    G, D = dcgan.Generator(100, 8, 3, 32), dcgan.Discriminator(3, 8, 32)
    assert dcgan.guideline_violations(G, D) == []
    bad_D = dcgan.Discriminator(3, 8, 32)
    bad_D.features.insert(1, nn.BatchNorm2d(8))
    assert any("BatchNorm on the input layer" in p for p in dcgan.guideline_violations(G, bad_D))
    bad_G = dcgan.Generator(100, 8, 3, 32)
    bad_G.net.insert(len(bad_G.net) - 1, nn.BatchNorm2d(3))
    assert any("BatchNorm on the output layer" in p for p in dcgan.guideline_violations(bad_G, D))
    slope_D = dcgan.Discriminator(3, 8, 32)
    slope_D.features[1] = nn.LeakyReLU(0.01)
    assert any("slope [0.01]" in p for p in dcgan.guideline_violations(G, slope_D))
    no_tanh = dcgan.Generator(100, 8, 3, 32)
    no_tanh.net[-1] = nn.Identity()
    assert any("Tanh" in p for p in dcgan.guideline_violations(no_tanh, D))



def test_guidelines_catch_global_pooling_other_activations_in_g_and_batchnorm_on_raw_input():
    """Holes found in review (issue #25): each is named, and only it."""
    G, D = dcgan.Generator(100, 8, 3, 32), dcgan.Discriminator(3, 8, 32)
    gap_D = dcgan.Discriminator(3, 8, 32)
    gap_D.features.append(nn.AdaptiveAvgPool2d(1))  # global average pooling
    found = dcgan.guideline_violations(G, gap_D)
    assert len(found) == 1 and "pooling" in found[0], found
    elu_G = dcgan.Generator(100, 8, 3, 32)
    relu = next(i for i, m in enumerate(elu_G.net) if isinstance(m, nn.ReLU))
    elu_G.net[relu] = nn.ELU()
    found = dcgan.guideline_violations(elu_G, D)
    assert len(found) == 1 and "ELU instead of ReLU" in found[0], found
    raw_bn_D = dcgan.Discriminator(3, 8, 32)
    raw_bn_D.features.insert(0, nn.BatchNorm2d(3))
    found = dcgan.guideline_violations(G, raw_bn_D)
    assert len(found) == 1 and "raw input" in found[0], found

class ProjectedGenerator(nn.Module):
    """Figure 1 as drawn: z is projected by a matrix multiplication (a Linear layer) and
    reshaped to a 4x4 map, then fractional-strided convolutions."""

    def __init__(self, nz=100, ngf=8, nc=3, hidden_fc=False):
        super().__init__()
        self.c = ngf * 8
        self.project = nn.Linear(nz, self.c * 16, bias=False)
        self.hidden = nn.Linear(self.c * 16, self.c * 16) if hidden_fc else nn.Identity()
        layers, c = [nn.BatchNorm2d(self.c), nn.ReLU()], self.c
        for _ in range(3):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU()]
            c //= 2
        self.net = nn.Sequential(*layers, nn.ConvTranspose2d(c, nc, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z):
        x = self.hidden(self.project(z.flatten(1)))
        return self.net(x.view(-1, self.c, 4, 4))


class FlattenedDiscriminator(nn.Module):
    """§3: "the last convolution layer is flattened and then fed into a single sigmoid output"
    (here the logit: a Linear layer with one output)."""

    def __init__(self, nc=3, ndf=8):
        super().__init__()
        layers, c = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2)], ndf
        for _ in range(3):
            layers += [nn.Conv2d(c, c * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c * 2), nn.LeakyReLU(0.2)]
            c *= 2
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(c * 16, 1)

    def forward(self, x):
        return self.out(self.features(x).flatten(1)).flatten()


def test_figure_1_projection_and_flattened_output_follow_the_guidelines():
    G, D = ProjectedGenerator(), FlattenedDiscriminator()
    assert G(torch.randn(2, 100)).shape == (2, 3, 64, 64) and D(torch.randn(2, 3, 64, 64)).shape == (2,)
    assert dcgan.guideline_violations(G, D) == []
    hidden = dcgan.guideline_violations(ProjectedGenerator(hidden_fc=True), D)
    assert len(hidden) == 1 and "fully connected hidden layer" in hidden[0]


def test_train_step_updates_both_nets_deterministically():
    cfg = profile_config("dcgan", "smoke")
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        G, D = dcgan.build_dcgan(cfg, nc=1)
        og, od = dcgan.dcgan_optimizers(G, D)
        g0 = [p.clone() for p in G.parameters()]
        d0 = [p.clone() for p in D.parameters()]
        real = torch.rand(8, 1, 32, 32) * 2 - 1
        stats = dcgan.train_step(G, D, og, od, real, nz=100, rng=torch.Generator().manual_seed(1))
        assert all(not torch.equal(a, b) for a, b in zip(g0, G.parameters()))
        assert all(not torch.equal(a, b) for a, b in zip(d0, D.parameters()))
        assert set(stats) == {"loss_d", "loss_g", "d_real", "d_fake"}
        results.append(stats)
    assert results[0] == results[1]


def test_train_dcgan_logs_and_samples():
    cfg = profile_config("dcgan", "smoke", train_steps=6, log_every=2, sample_every=3)
    torch.manual_seed(0)
    G, D = dcgan.build_dcgan(cfg, nc=1)
    data = torch.utils.data.TensorDataset(torch.rand(32, 1, 32, 32) * 2 - 1)
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    seen = []
    history = dcgan.train_dcgan(G, D, loader, cfg, device=torch.device("cpu"), fixed_noise=torch.randn(4, 100),
                                on_sample=lambda step, imgs: seen.append((step, imgs.shape)))
    assert history.steps("loss_d") == [1, 2, 4, 6]
    assert {name: opt.defaults["betas"] for name, opt in history.optimizers.items()} == {
        "generator": (0.5, 0.999), "discriminator": (0.5, 0.999)}  # §4: Adam, beta1 0.5
    assert seen == [(3, (4, 1, 32, 32)), (6, (4, 1, 32, 32))]
    assert history.last("seconds") > 0


def test_interpolation_and_features():
    z0, z1 = torch.randn(100), torch.randn(100)
    path = dcgan.interpolate(z0, z1, 5)
    assert torch.allclose(path[0], z0, atol=1e-5) and torch.allclose(path[-1], z1, atol=1e-5)
    lin = dcgan.interpolate(z0, z1, 3, spherical=False)
    assert torch.allclose(lin[1], (z0 + z1) / 2)
    D = dcgan.Discriminator(1, 8, 32)
    feats = dcgan.discriminator_features(D, torch.zeros(3, 1, 32, 32))
    assert feats.shape == (3, (8 + 16 + 32) * 16)


def test_to_gan_tensors():
    x = to_gan_tensors(torch.tensor([[[0, 255], [255, 0]]], dtype=torch.uint8), 4, channels=3)
    assert x.shape == (1, 3, 4, 4) and float(x.min()) >= -1 and float(x.max()) <= 1
    rgb = to_gan_tensors(torch.full((2, 8, 8, 3), 255, dtype=torch.uint8), 8, channels=1)
    assert rgb.shape == (2, 1, 8, 8) and torch.allclose(rgb, torch.ones_like(rgb))


def test_image_folder_reports_broken_files_and_mixes_modes(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / "a.jpg")
    Image.fromarray(rng.integers(0, 255, (30, 30), dtype=np.uint8), mode="L").save(tmp_path / "b.png")
    Image.fromarray(rng.integers(0, 255, (30, 30, 4), dtype=np.uint8), mode="RGBA").save(tmp_path / "c.png")
    (tmp_path / "d.jpg").write_bytes(b"nope")
    with pytest.raises(DataLayoutError, match=r"1 unreadable image\(s\).*d\.jpg"):
        ImageFolderDataset(tmp_path, 16)
    (tmp_path / "d.jpg").unlink()
    ds = ImageFolderDataset(tmp_path, 16)
    assert len(ds) == 3 and all(ds[i].shape == (3, 16, 16) for i in range(3))
    gray = ImageFolderDataset(tmp_path, 16, channels=1)
    assert gray[0].shape == (1, 16, 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataLayoutError, match="no images"):
        ImageFolderDataset(tmp_path / "empty", 16)
    with pytest.raises(DataLayoutError, match="does not exist"):
        ImageFolderDataset(tmp_path / "missing", 16)


def test_truncated_image_found_by_full_check(tmp_path):
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataLayoutError, match="cut.png"):
        ImageFolderDataset(tmp_path, 16, check="full")


def test_celeba_local_layout_and_gan_dataset(clean_env, monkeypatch, tmp_path):
    monkeypatch.setenv("CURRICULUM_PROFILE", "local")
    folder = tmp_path / "data" / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((218, 178, 3), i * 40, dtype=np.uint8)).save(folder / f"{i:06d}.jpg")
    monkeypatch.setenv("CURRICULUM_DATA_DIR", str(tmp_path / "data"))
    ds, text = gan_dataset("celeba", image_size=64)
    assert "local" in text and len(ds) == 3 and ds[0].shape == (3, 64, 64)


def test_corrupt_cifar_is_reported(clean_env, monkeypatch, tmp_path):
    monkeypatch.setenv("CURRICULUM_PROFILE", "local")
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_bytes(pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [0]}))
    monkeypatch.setenv("CURRICULUM_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(DataLayoutError, match="corrupt or incomplete.*download cifar-10-python.tar.gz again"):
        load_dataset("cifar10")


def test_smoke_standin_for_every_image_dataset(clean_env, monkeypatch):
    monkeypatch.setenv("CURRICULUM_PROFILE", "smoke")
    for name in ("mnist", "fashion_mnist", "cifar10", "celeba"):
        ds, text = gan_dataset(name, image_size=32, channels=3)
        assert "standin" in text and ds[0][0].shape == (3, 32, 32)


def test_frechet_distance():
    torch.manual_seed(0)
    a = torch.randn(2000, 4)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-4)
    shifted = a + torch.tensor([3.0, 0, 0, 0])
    assert frechet_distance(a, shifted) == pytest.approx(9.0, rel=1e-3)
    assert frechet_distance(a, torch.zeros(500, 4)) > 3  # no spread at all: far away


def test_diversity_report_flags_collapse_only_when_collapsed():
    torch.manual_seed(0)
    real = torch.rand(200, 1, 8, 8) * 2 - 1

    class Fixed(nn.Module):  # "classifier" that reads the class from the first pixel
        def forward(self, x):
            return nn.functional.one_hot(((x[:, 0, 0, 0] + 1) * 4.99).long().clamp(0, 9), 10).float()

    collapsed = real[:1].repeat(200, 1, 1, 1)
    bad = diversity_report(collapsed, real, Fixed())
    assert bad["classes_covered"] == 1 and bad["duplicates"] == 1.0
    assert any("mode collapse" in w for w in bad["warnings"]) and any("varied" in w for w in bad["warnings"])
    good = diversity_report(real.flip(0), real, Fixed())
    assert good["warnings"] == [] and good["classes_covered"] == 10


def test_linear_probe_separable():
    x = torch.cat([torch.randn(50, 5) + 4, torch.randn(50, 5) - 4])
    y = torch.cat([torch.zeros(50), torch.ones(50)]).long()
    assert linear_probe(x, y, x, y) == 1.0


def test_registered_names_win_over_same_named_folders(clean_env, monkeypatch, tmp_path):
    monkeypatch.setenv("CURRICULUM_PROFILE", "smoke")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mnist").mkdir()  # a folder that happens to share the dataset's name
    ds, text = gan_dataset("mnist", image_size=16)
    assert "standin" in text
    ds, text = gan_dataset("FashionMNIST", image_size=16)
    assert "standin" in text
    with pytest.raises(DataLayoutError, match="no images"):
        gan_dataset(str(tmp_path / "mnist"), image_size=16)


def test_vector_arithmetic_averages_three_exemplars_and_adds_small_uniform_noise():
    """§6.3.2 / Figure 7: Y = mean(A) - mean(B) + mean(C), then Y + U(-0.25, 0.25) eight times."""
    from helpers.dcgan import vector_arithmetic

    a, b, c = torch.randn(3, 100), torch.randn(3, 100), torch.randn(3, 100)
    out = vector_arithmetic(a, b, c, generator=torch.Generator().manual_seed(0))
    assert out.shape == (9, 100)
    assert torch.allclose(out[0], a.mean(0) - b.mean(0) + c.mean(0), atol=1e-6)
    jitter = out[1:] - out[0]
    assert jitter.abs().max() <= 0.25 and jitter.abs().max() > 0.1  # uniform over the whole range
    assert not torch.allclose(out[0], a[0] - b[0] + c[0])  # not single exemplars
    again = vector_arithmetic(a, b, c, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_pixel_features_are_label_free_thumbnails():
    from helpers.gan_metrics import frechet_distance, pixel_features

    images = torch.rand(64, 3, 32, 32) * 2 - 1
    feats = pixel_features(images)
    assert feats.shape == (64, 3 * 8 * 8)
    assert torch.allclose(feats[0, :64].view(8, 8)[0, 0], images[0, 0, :4, :4].mean())
    assert frechet_distance(feats, feats) < 1e-3
    assert frechet_distance(feats, pixel_features(torch.zeros(64, 3, 32, 32))) > 1.0
