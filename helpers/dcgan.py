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

import torch
import torch.nn.functional as F
from torch import nn

from helpers.runtime.failures import explain_out_of_memory
from helpers.runtime.history import History
from helpers.runtime.run import ResumableRun, architecture, run_settings


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
    logit. No BatchNorm on the input layer, LeakyReLU(0.2) everywhere. The paper's D ends in
    "a single sigmoid output" (§3); we leave the sigmoid to the loss, ``BCEWithLogitsLoss``:
    the same model, computed in a numerically safer way (our choice, not the paper's).
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
    deviation 0.02" (week 3). BatchNorm scales start at N(1, 0.02) and shifts at 0: the choice
    of PyTorch's DCGAN example (pytorch/examples, dcgan/main.py); the paper says nothing about
    BatchNorm's parameters. Use as ``net.apply(weights_init)``."""
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


def _layers(net: nn.Module) -> list[nn.Module]:
    """The leaf modules of ``net`` in the order they were registered (= forward order for
    ``nn.Sequential`` stacks)."""
    return [m for m in net.modules() if not list(m.children())]


_WEIGHTS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
                nn.Mish, nn.PReLU, nn.RReLU, nn.ReLU6, nn.Hardtanh, nn.Softplus)


def guideline_problems(net: nn.Module, role: str) -> list[tuple[str, str]]:
    """The §3 guidelines that ``net`` breaks as ``role`` ("G" or "D"): ``(what, fix)`` pairs.

    §3 allows one fully connected layer at each end: G's first layer "could be called fully
    connected as it is just a matrix multiplication, but the result is reshaped into a
    4-dimensional tensor", and D's last convolution "is flattened and then fed into a single
    sigmoid output". Only fully connected *hidden* layers break the guideline.
    """
    layers = _layers(net)
    weights = [m for m in layers if isinstance(m, _WEIGHTS)]
    allowed = weights[:1] if role == "G" else weights[-1:]
    out = []
    if any(isinstance(m, nn.Linear) and all(m is not a for a in allowed) for m in weights):
        where = "after the first layer" if role == "G" else "before the last layer"
        out.append((f"{role} has a fully connected hidden layer (a Linear layer {where})",
                    "§3: no fully connected hidden layers; only G's first layer (z projected and "
                    "reshaped to a 4x4 map) and D's last (one output per image) may be Linear"))
    if any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Upsample))
           for m in layers):  # global average pooling too: §3 found it "hurt convergence speed"
        out.append((f"{role} uses pooling or upsampling layers",
                    "§3: strided convolutions (D) and fractional-strided convolutions "
                    "(ConvTranspose2d with stride 2, G) instead of pooling"))
    tail = layers[layers.index(weights[-1]) + 1:] if weights else []
    if role == "G":
        if any(isinstance(m, nn.BatchNorm2d) for m in tail):
            out.append(("G has BatchNorm on the output layer",
                        "§3: no batchnorm on the generator output layer; the last ConvTranspose2d "
                        "goes straight into Tanh"))
        if any(isinstance(m, nn.Sigmoid) for m in tail):
            out.append(("G's output goes through a Sigmoid (pixels in [0, 1])",
                        "use nn.Tanh(): the data is scaled to [-1, 1] (§4)"))
        elif not any(isinstance(m, nn.Tanh) for m in tail):
            out.append(("G's output layer has no Tanh: pixels are not confined to [-1, 1] like the data",
                        "end with nn.Tanh() after the last layer (§3)"))
        if any(isinstance(m, nn.LeakyReLU) for m in layers):
            out.append(("G uses LeakyReLU", "§3: ReLU in the generator, LeakyReLU in the discriminator"))
        others = sorted({type(m).__name__ for m in layers if isinstance(m, _ACTIVATIONS)
                         and not isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid))})
        if others:
            out.append((f"G uses {', '.join(others)} instead of ReLU",
                        "§3: ReLU in every generator layer but the output (Tanh)"))
    else:
        normed = [m for m in layers if isinstance(m, (*_WEIGHTS, nn.BatchNorm2d))]
        if normed and isinstance(normed[0], nn.BatchNorm2d):
            out.append(("D has BatchNorm on its raw input (before the first convolution)",
                        "§3: no batchnorm on the discriminator input layer: the images go straight "
                        "into the first Conv2d"))
        elif len(normed) > 1 and isinstance(normed[1], nn.BatchNorm2d):
            out.append(("D has BatchNorm on the input layer",
                        "§3: no batchnorm on the discriminator input layer; the first Conv2d goes "
                        "straight into LeakyReLU(0.2)"))
        relu = any(type(m) is nn.ReLU for m in layers)
        if relu:
            out.append(("D uses ReLU", "§3: LeakyReLU with slope 0.2 in the discriminator"))
        slopes = sorted({m.negative_slope for m in layers if isinstance(m, nn.LeakyReLU)})
        if not slopes and not relu:  # one change, one line: ReLU in place of LeakyReLU is said above
            out.append(("D has no LeakyReLU", "nn.LeakyReLU(0.2) after every layer but the last (§3)"))
        elif any(abs(s - 0.2) > 1e-9 for s in slopes):
            wrong = [s for s in slopes if abs(s - 0.2) > 1e-9]
            out.append((f"D's LeakyReLU slope {wrong}, the paper uses 0.2", "nn.LeakyReLU(0.2)"))
        if any(isinstance(m, nn.Sigmoid) for m in layers):
            out.append(("D ends in a Sigmoid", "output the logit; the loss is BCEWithLogitsLoss, the "
                                               "numerically safe form of sigmoid + BCE (week 3)"))
    if not any(isinstance(m, nn.BatchNorm2d) for m in layers):
        out.append((f"{role} has no BatchNorm", "§3: BatchNorm2d after every layer except G's "
                                                "output and D's input"))
    return out


def guideline_violations(G: nn.Module | None = None, D: nn.Module | None = None) -> list[str]:
    """Which §3 architecture guidelines a generator and/or discriminator breaks, one line
    each with its fix (empty list = none). See :func:`guideline_problems`."""
    return [f"{what}. Fix: {fix}" for role, net in (("G", G), ("D", D)) if net is not None
            for what, fix in guideline_problems(net, role)]


# --------------------------------------------------------------------------- training
def train_step(G, D, opt_g, opt_d, real, *, nz: int, rng: torch.Generator | None = None):
    """One DCGAN update (week 4): first D on a real and a fake batch, then G with the
    non-saturating loss ``-log D(G(z))`` (Goodfellow et al., 2014, as used in the paper).

    Returns plain floats: ``loss_d``, ``loss_g``, ``d_real`` = mean D(x), ``d_fake`` = mean
    D(G(z)) before the G update.
    """
    b = real.size(0)
    ones = torch.ones(b, device=real.device)
    zeros = torch.zeros(b, device=real.device)
    z = torch.randn(b, nz, device=real.device, generator=rng)
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


ARCHITECTURE_KEYS = ("nz", "ngf", "ndf", "image_size", "channels")


@explain_out_of_memory("batch_size", "dcgan")
def train_dcgan(G, D, loader, cfg, *, device, checkpoint_path=None, history: History | None = None,
                writer=None, stop_after: int | None = None, fixed_noise=None, on_sample=None) -> History:
    """§4's training procedure (week 4): ``cfg.train_steps`` alternating D and G updates with
    Adam(lr 0.0002, beta1 0.5) on mini-batches of ``cfg.batch_size`` images.

    Logs the losses, D(x) and D(G(z)) every ``cfg.log_every`` steps to ``history`` (and
    TensorBoard if ``writer``); every ``cfg.sample_every`` steps calls
    ``on_sample(step, images)`` with G's images for ``fixed_noise``.

    The same shape as :func:`helpers.translation.train_translation`: models, data, ``cfg``, then
    where the run is kept; every run setting comes from ``cfg``
    (:func:`helpers.runtime.run.run_settings`: with ``checkpoint_path`` the run is resumable,
    saved every ``cfg.checkpoint_every`` steps, stopped and saved by ``cfg.time_limit_s``,
    continued exactly on the next call). Returns the :class:`History`;
    ``history.optimizers`` holds both optimizers.
    """
    G.to(device)
    D.to(device)
    opt_g, opt_d = dcgan_optimizers(G, D, cfg.lr, cfg.beta1)
    noise = torch.Generator(device=device).manual_seed(cfg.seed)
    run = ResumableRun(checkpoint_path, steps=cfg.train_steps, config=architecture(cfg, dataset=cfg.dataset),
                       architecture=(*ARCHITECTURE_KEYS, "dataset"), model=G, optimizer=opt_g,
                       others={"D": D, "opt_d": opt_d, "noise_rng": noise}, history=history,
                       stop_after=stop_after, desc="DCGAN", lr_hint="cfg.lr", **run_settings(cfg, checkpoint_path))
    run.history.optimizers = {"generator": opt_g, "discriminator": opt_d}
    batches = run.batches(loader, what="images")
    for step in run:
        real = next(batches)
        real = (real[0] if isinstance(real, (list, tuple)) else real).to(device, non_blocking=True)
        G.train()
        D.train()
        stats = train_step(G, D, opt_g, opt_d, real, nz=cfg.nz, rng=noise)
        run.check_finite(stats)
        if step % cfg.log_every == 0 or step == 1:
            run.log(step, **stats)
            if writer is not None:
                writer.add_scalars("loss", {"D": stats["loss_d"], "G": stats["loss_g"]}, step)
                writer.add_scalars("D_output", {"real": stats["d_real"], "fake": stats["d_fake"]}, step)
        if on_sample is not None and fixed_noise is not None and (
                step % cfg.sample_every == 0 or step == cfg.train_steps):
            G.eval()
            with torch.no_grad():
                on_sample(step, G(fixed_noise.to(device)).cpu())
    return run.history


# --------------------------------------------------------------------------- latent space
def interpolate(z0: torch.Tensor, z1: torch.Tensor, steps: int, spherical: bool = True):
    """Points between two latent vectors (§6.1, "walking in the latent space"; week 4).
    Spherical interpolation (slerp; White, 2016, "Sampling Generative Networks", not the
    DCGAN paper) keeps the norm typical of Gaussian samples; ``spherical=False`` walks the
    straight line."""
    t = torch.linspace(0, 1, steps)[:, None]
    if not spherical:
        return (1 - t) * z0 + t * z1
    a, b = z0 / z0.norm(), z1 / z1.norm()
    omega = torch.acos((a * b).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * z0 + (torch.sin(t * omega) / so) * z1


def vector_arithmetic(z_a: torch.Tensor, z_b: torch.Tensor, z_c: torch.Tensor, *,
                      noise: float = 0.25, samples: int = 8, generator: torch.Generator | None = None):
    """§6.3.2 and Figure 7: ``Y = mean(z_a) - mean(z_b) + mean(z_c)`` (each ``[k, nz]``, the
    paper averages k = 3 exemplars per concept: single vectors "were unstable"), then ``Y``
    and ``samples`` more points ``Y + U(-noise, noise)`` ("uniform noise sampled with scale
    +-0.25 was added to Y to produce the 8 other samples"). Returns ``[1 + samples, nz]``."""
    means = [z.reshape(-1, z.shape[-1]).float().mean(0) for z in (z_a, z_b, z_c)]
    y = means[0] - means[1] + means[2]
    jitter = (torch.rand(samples, y.numel(), generator=generator) * 2 - 1) * noise
    return torch.cat([y[None], y[None] + jitter.to(y.device)])


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
