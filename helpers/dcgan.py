"""DCGAN, "Unsupervised Representation Learning with Deep Convolutional Generative
Adversarial Networks" (Radford, Metz & Chintala, 2015), in one file.

Written in the open in the DCGAN track's week 3 (networks) and week 4 (training); this is the
tested version later notebooks import. Section numbers refer to the paper.

The architecture guidelines of §3:
- replace pooling with strided convolutions (D) and fractional-strided convolutions (G);
- use batch normalization in both nets, except G's output layer and D's input layer;
- no fully connected hidden layers;
- ReLU in G (Tanh at the output), LeakyReLU (slope 0.2) in D.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from . import training


def _check_size(image_size: int) -> int:
    if image_size < 16 or image_size & (image_size - 1):
        raise ValueError(f"image_size={image_size}: the nets double or halve the size at every "
                         f"layer from 4x4, so use a power of two >= 16 (the paper: 64; 32 for "
                         f"MNIST-sized runs). Fix: resize your images, e.g. image_size=64.")
    return int(math.log2(image_size)) - 2  # number of stride-2 steps between 4x4 and the image


class Generator(nn.Module):
    """z ``[batch, nz]`` -> image ``[batch, nc, size, size]`` in [-1, 1] (§3, Figure 1; week 3).

    A ``ConvTranspose2d`` projects z to a 4x4 map with ``ngf * size/8`` channels; each further
    fractional-strided convolution doubles the size and halves the channels. With nz=100,
    ngf=128, size=64 this is Figure 1 of the paper (1024 -> 512 -> 256 -> 128 -> 3 channels).
    """

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, image_size: int = 64):
        super().__init__()
        steps = _check_size(image_size)
        self.nz, self.nc, self.image_size = nz, nc, image_size
        channels = [ngf * 2 ** i for i in reversed(range(steps))]  # e.g. [512, 256, 128, 64]
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz, channels[0], 4, 1, 0, bias=False),  # 1x1 -> 4x4
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(True),
        ]
        for c_in, c_out in zip(channels, channels[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),  # doubles H, W
                       nn.BatchNorm2d(c_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(channels[-1], nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        if z.dim() == 2:
            z = z[:, :, None, None]
        return self.net(z)


class Discriminator(nn.Module):
    """image -> one real/fake *logit* per image (§3; week 3).

    Strided 4x4 convolutions halve the size down to 4x4, then a 4x4 convolution gives the
    logit. No BatchNorm on the input layer, LeakyReLU(0.2) everywhere, no sigmoid: the loss
    is ``BCEWithLogitsLoss``, which is numerically safer than sigmoid + BCE.
    """

    def __init__(self, nc: int = 3, ndf: int = 64, image_size: int = 64):
        super().__init__()
        steps = _check_size(image_size)
        self.nc, self.image_size = nc, image_size
        channels = [ndf * 2 ** i for i in range(steps)]  # e.g. [64, 128, 256, 512]
        layers: list[nn.Module] = [nn.Conv2d(nc, channels[0], 4, 2, 1, bias=False),
                                   nn.LeakyReLU(0.2, inplace=True)]
        for c_in, c_out in zip(channels, channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out),
                       nn.LeakyReLU(0.2, inplace=True)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(channels[-1], 1, 4, 1, 0, bias=False)  # 4x4 -> 1x1

    def forward(self, x):
        if x.shape[1:] != (self.nc, self.image_size, self.image_size):
            raise ValueError(f"discriminator expects images of shape [batch, {self.nc}, "
                             f"{self.image_size}, {self.image_size}], got {tuple(x.shape)}. Fix: "
                             f"resize the data to {self.image_size}x{self.image_size} with "
                             f"{self.nc} channel(s), or build the nets for your size.")
        return self.head(self.features(x)).flatten()

    def layer_features(self, x) -> list[torch.Tensor]:
        """Activations after every LeakyReLU (used by the representation probe, §5.1)."""
        out = []
        for layer in self.features:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                out.append(x)
        return out


def weights_init(module: nn.Module) -> None:
    """§4: "All weights were initialized from a zero-centered Normal distribution with standard
    deviation 0.02"; BatchNorm scales start at N(1, 0.02), shifts at 0 (week 3).
    Use as ``net.apply(weights_init)``."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def build_dcgan(cfg, nc: int):
    """G and D sized by a ``dcgan`` config, initialized per §4 (week 3)."""
    G = Generator(cfg.nz, cfg.ngf, nc, cfg.image_size)
    D = Discriminator(nc, cfg.ndf, cfg.image_size)
    G.apply(weights_init)
    D.apply(weights_init)
    return G, D


def dcgan_optimizers(G: nn.Module, D: nn.Module, lr: float = 2e-4, beta1: float = 0.5):
    """Adam with lr 0.0002 and beta1 = 0.5 ("0.9 resulted in training oscillation", §4)."""
    return (torch.optim.Adam(G.parameters(), lr=lr, betas=(beta1, 0.999)),
            torch.optim.Adam(D.parameters(), lr=lr, betas=(beta1, 0.999)))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def guideline_violations(G: nn.Module, D: nn.Module) -> list[str]:
    """Which of the §3 architecture guidelines a G/D pair breaks (empty list = none)."""
    problems = []
    for name, net in (("G", G), ("D", D)):
        mods = list(net.modules())
        if any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in mods):
            problems.append(f"{name} uses pooling; use strided convolutions instead")
        if any(isinstance(m, nn.Linear) for m in mods):
            problems.append(f"{name} has fully connected layers; the paper uses none in hidden layers")
        if not any(isinstance(m, nn.BatchNorm2d) for m in mods):
            problems.append(f"{name} has no BatchNorm")
    g_mods = [m for m in G.modules() if not isinstance(m, (nn.Sequential, Generator))]
    if not g_mods or not isinstance(g_mods[-1], nn.Tanh):
        problems.append("G does not end with Tanh (images must be in [-1, 1])")
    if isinstance(g_mods[-1], nn.Tanh) and len(g_mods) > 1 and isinstance(g_mods[-2], nn.BatchNorm2d):
        problems.append("G has BatchNorm on its output layer")
    if any(isinstance(m, nn.LeakyReLU) for m in G.modules()):
        problems.append("G uses LeakyReLU; the paper uses ReLU in G")
    d_mods = [m for m in D.modules() if not isinstance(m, (nn.Sequential, Discriminator))]
    if len(d_mods) > 1 and isinstance(d_mods[1], nn.BatchNorm2d):
        problems.append("D has BatchNorm on its input layer")
    slopes = [m.negative_slope for m in D.modules() if isinstance(m, nn.LeakyReLU)]
    if not slopes:
        problems.append("D has no LeakyReLU")
    elif any(abs(s - 0.2) > 1e-9 for s in slopes):
        problems.append(f"D's LeakyReLU slope is {slopes[0]}, the paper uses 0.2")
    if any(isinstance(m, nn.Sigmoid) for m in D.modules()):
        problems.append("D ends in a Sigmoid; output logits and use BCEWithLogitsLoss")
    return problems


# --------------------------------------------------------------------------- training
def train_step(G, D, opt_g, opt_d, real, *, nz: int, generator: torch.Generator | None = None):
    """One DCGAN update (week 4): first D on a real and a fake batch, then G with the
    non-saturating loss ``-log D(G(z))`` (Goodfellow et al., 2014, as used in the paper).

    Returns plain floats: ``loss_d``, ``loss_g``, ``d_real`` = mean D(x), ``d_fake`` = mean
    D(G(z)) before the G update.
    """
    b = real.size(0)
    ones = torch.ones(b, device=real.device)
    zeros = torch.zeros(b, device=real.device)
    z = torch.randn(b, nz, device=real.device, generator=generator)
    fake = G(z)

    # Discriminator: maximize log D(x) + log(1 - D(G(z)))
    opt_d.zero_grad(set_to_none=True)
    logits_real = D(real)
    logits_fake = D(fake.detach())
    loss_d = (F.binary_cross_entropy_with_logits(logits_real, ones)
              + F.binary_cross_entropy_with_logits(logits_fake, zeros))
    loss_d.backward()
    opt_d.step()

    # Generator: maximize log D(G(z)) (non-saturating)
    opt_g.zero_grad(set_to_none=True)
    loss_g = F.binary_cross_entropy_with_logits(D(fake), ones)
    loss_g.backward()
    opt_g.step()
    return {"loss_d": loss_d.item(), "loss_g": loss_g.item(),
            "d_real": torch.sigmoid(logits_real).mean().item(),
            "d_fake": torch.sigmoid(logits_fake).mean().item()}


def infinite_batches(loader: Iterable):
    while True:
        yield from loader


DCGAN_ARCHITECTURE_KEYS = ("nz", "ngf", "ndf", "image_size", "channels")


def _loader_generators(loader) -> list[torch.Generator]:
    """The torch.Generators that decide a DataLoader's order (its own, its sampler's)."""
    found: list[torch.Generator] = []
    for obj in (loader, getattr(loader, "sampler", None),
                getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        g = getattr(obj, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not f for f in found):
            found.append(g)
    return found


def _order_state(loader) -> dict:
    """What fixes the order of the next pass over ``loader``: torch's global RNG (a loader
    without a generator draws its shuffle seed there) and the loader's generators."""
    return {"torch": torch.get_rng_state(),
            "loader": [g.get_state() for g in _loader_generators(loader)]}


def _set_order_state(loader, state: dict) -> None:
    torch.set_rng_state(state["torch"])
    gens = _loader_generators(loader)
    if len(gens) != len(state["loader"]):
        raise training.CheckpointError("the checkpoint was written with a DataLoader built differently "
                              "(another generator setup). Fix: build the loader as before "
                              "(same shuffle and generator), or start a fresh run.")
    for g, s in zip(gens, state["loader"]):
        g.set_state(s)


@training.explain_out_of_memory("batch_size", "dcgan")
def train_dcgan(G, D, loader, cfg, *, device, fixed_noise=None, history=None, writer=None,
                on_sample=None, start_step: int = 0, opt_g=None, opt_d=None,
                checkpoint_path=None, checkpoint_every: int = 0, stop_after: int | None = None):
    """Train for ``cfg.train_steps`` alternating updates (week 4). Logs losses and D(x),
    D(G(z)) to ``history`` (and TensorBoard if ``writer``); every ``cfg.sample_every`` steps
    calls ``on_sample(step, images)`` with G's images for ``fixed_noise``.

    With ``checkpoint_path`` it saves every ``checkpoint_every`` steps and at the end
    (atomically: G, D, both optimizers, the noise generator, the RNG states of Python, NumPy
    and torch, the position in the data order, step, history, config and versions) and,
    when the file exists, *resumes* from it exactly: an interrupted run ends bit-identical
    to an uninterrupted one (for a loader whose order depends only on its seeded generator
    or torch's RNG, as with ``shuffle=True``). ``stop_after`` ends early (a simulated
    disconnect). A NaN/inf loss stops the run before anything is saved
    (:class:`helpers.training.NonFiniteLossError`).

    Returns ``(history, opt_g, opt_d)``.
    """
    from .training import History, progress

    history = history if history is not None else History()  # an empty History is falsy
    G.to(device)
    D.to(device)
    if opt_g is None or opt_d is None:
        opt_g, opt_d = dcgan_optimizers(G, D, cfg.lr, cfg.beta1)
    try:
        n_batches = len(loader)
    except TypeError:  # an iterable-style loader: its length is unknown
        n_batches = None
    if n_batches == 0:
        raise ValueError(
            f"the data loader yields no batches ({len(loader.dataset)} images, batch_size="
            f"{getattr(loader, 'batch_size', '?')}, drop_last={getattr(loader, 'drop_last', '?')}). "
            f"Fix: add images, or lower batch_size below the number of images.")
    gen = torch.Generator(device=device).manual_seed(cfg.seed + start_step)
    step, epoch, skip = start_step, 0, 0
    settings = dict(cfg)
    order = _order_state(loader)
    resumed = None
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        resumed = training.load_checkpoint(checkpoint_path, config=settings,  # checks only
                                           config_keys=DCGAN_ARCHITECTURE_KEYS, restore_rng=False)
        extra = resumed["extra"]
        missing = [k for k in ("optimizer",) if k not in resumed] + [
            k for k in ("D", "opt_d", "noise_rng", "epoch", "batch_in_epoch", "order", "history")
            if k not in extra]
        if missing:
            raise training.CheckpointError(
                f"{checkpoint_path} holds trained nets but not the state to resume training "
                f"(no {', '.join(missing)}): it was not written by train_dcgan(checkpoint_path=...). "
                f"Fix: pass another checkpoint_path for this run (that file stays as it is), or "
                f"load it with helpers.training.load_checkpoint to use the nets.")
        G.load_state_dict(resumed["model"])
        opt_g.load_state_dict(resumed["optimizer"])
        D.load_state_dict(extra["D"])
        opt_d.load_state_dict(extra["opt_d"])
        gen.set_state(extra["noise_rng"])
        history.load_state_dict(extra["history"])
        step, epoch, skip, order = resumed["step"], extra["epoch"], extra["batch_in_epoch"], extra["order"]
        _set_order_state(loader, order)
    batches = iter(loader)
    for _ in range(skip):  # resuming: the batches this epoch used before the interruption
        next(batches)
    if resumed is not None:
        training.set_rng_state(resumed["rng"])
    batch_in_epoch = skip

    def save():
        bad = training.non_finite_tensors(D.state_dict())
        if bad:
            raise training.non_finite_loss_error(step, f"finite but D's weights are not "
                                                 f"({', '.join(bad[:3])})", checkpoint_path,
                                                 lr_hint="cfg.lr")
        training.save_checkpoint(
            checkpoint_path, model=G, optimizer=opt_g, step=step, config=settings,
            extra={"D": D.state_dict(), "opt_d": opt_d.state_dict(), "noise_rng": gen.get_state(),
                   "epoch": epoch, "batch_in_epoch": batch_in_epoch, "order": order,
                   "history": history.state_dict()})

    start = time.perf_counter()
    for step in progress(range(step + 1, cfg.train_steps + 1), desc="DCGAN"):
        try:
            real = next(batches)
        except StopIteration:  # next epoch: remember what fixes its order, then reshuffle
            epoch += 1
            order = _order_state(loader)
            batches = iter(loader)
            real = next(batches)
            batch_in_epoch = 0
        batch_in_epoch += 1
        real = (real[0] if isinstance(real, (list, tuple)) else real).to(device, non_blocking=True)
        G.train()
        D.train()
        stats = train_step(G, D, opt_g, opt_d, real, nz=cfg.nz, generator=gen)
        if not all(math.isfinite(v) for v in stats.values()):
            bad = ", ".join(f"{k}={v}" for k, v in stats.items() if not math.isfinite(v))
            raise training.non_finite_loss_error(step, bad, checkpoint_path, lr_hint="cfg.lr")
        if step % cfg.log_every == 0 or step == start_step + 1:
            history.log(step, **stats)
            if writer is not None:
                writer.add_scalars("loss", {"D": stats["loss_d"], "G": stats["loss_g"]}, step)
                writer.add_scalars("D_output", {"real": stats["d_real"], "fake": stats["d_fake"]}, step)
        if on_sample is not None and fixed_noise is not None and (
                step % cfg.sample_every == 0 or step == cfg.train_steps):
            G.eval()
            with torch.no_grad():
                on_sample(step, G(fixed_noise.to(device)).cpu())
        stopping = step >= cfg.train_steps or step == stop_after
        if checkpoint_path is not None and (stopping or (checkpoint_every and step % checkpoint_every == 0)):
            save()
        if stopping:
            break
    history.log(step, seconds=time.perf_counter() - start)
    return history, opt_g, opt_d


# --------------------------------------------------------------------------- latent space
def interpolate(z0: torch.Tensor, z1: torch.Tensor, steps: int, spherical: bool = True):
    """Points between two latent vectors (§6.1, "walking in the latent space"). Spherical
    interpolation keeps the norm typical of Gaussian samples."""
    t = torch.linspace(0, 1, steps)[:, None]
    if not spherical:
        return (1 - t) * z0 + t * z1
    a, b = z0 / z0.norm(), z1 / z1.norm()
    omega = torch.acos((a * b).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * z0 + (torch.sin(t * omega) / so) * z1


def discriminator_features(D: Discriminator, images: torch.Tensor, batch_size: int = 256):
    """§5.1: every D layer's activations max-pooled to a 4x4 grid, flattened and concatenated:
    the feature vector the paper feeds to a linear classifier."""
    D.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            feats = D.layer_features(images[start:start + batch_size])
            out.append(torch.cat([F.adaptive_max_pool2d(f, 4).flatten(1) for f in feats], 1))
    return torch.cat(out)
