"""The DCGAN guidelines switched off one at a time (DCGAN track, week 4b).

Each ablation starts from :func:`helpers.dcgan.build_dcgan` and changes one thing the paper
chose (§3's architecture guidelines, §4's Adam β₁), so every row of the week 4b table differs
from the base run in exactly that. :func:`helpers.dcgan.guideline_problems` must flag every
architectural variant (tested); β₁ is a training setting and is visible in the config instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from helpers import dcgan


@dataclass(frozen=True)
class Ablation:
    what: str  # the change, in a few words
    paper: str  # what the paper says about it (section)
    flagged: tuple[str, ...]  # words of the guideline_problems lines this variant must produce
    change: Callable  # (G, D, cfg) -> cfg; edits the nets in place


def _swap(seq: nn.Sequential, match: Callable[[nn.Module], bool], make: Callable[[nn.Module], list]):
    """Rebuild ``seq`` with every module for which ``match`` is true replaced by ``make(module)``."""
    layers = []
    for m in seq:
        layers += make(m) if match(m) else [m]
    return nn.Sequential(*layers)


def _new(module: nn.Module) -> nn.Module:
    """A layer added by an ablation, initialized like the rest (§4: N(0, 0.02)); the base
    layers keep their weights, so every row starts from the same base initialization."""
    module.apply(dcgan.weights_init)
    return module


def _beta1(G, D, cfg):
    return cfg.replace(beta1=0.9)


def _no_batchnorm(G, D, cfg):
    is_bn = lambda m: isinstance(m, nn.BatchNorm2d)  # noqa: E731
    G.net = _swap(G.net, is_bn, lambda m: [])
    D.features = _swap(D.features, is_bn, lambda m: [])
    return cfg


def _batchnorm_everywhere(G, D, cfg):
    G.net = nn.Sequential(*G.net[:-1], _new(nn.BatchNorm2d(G.nc)), G.net[-1])  # before the Tanh
    first = D.features[0]
    D.features = nn.Sequential(first, _new(nn.BatchNorm2d(first.out_channels)), *D.features[1:])
    return cfg


def _relu_in_d(G, D, cfg):
    D.features = _swap(D.features, lambda m: isinstance(m, nn.LeakyReLU), lambda m: [nn.ReLU(inplace=True)])
    return cfg


def _pooling(G, D, cfg):
    strided = lambda m: isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.stride == (2, 2)  # noqa: E731
    D.features = _swap(D.features, strided, lambda m: [
        _new(nn.Conv2d(m.in_channels, m.out_channels, 3, 1, 1, bias=False)), nn.MaxPool2d(2)])
    G.net = _swap(G.net, strided, lambda m: [
        nn.Upsample(scale_factor=2, mode="nearest"),
        _new(nn.Conv2d(m.in_channels, m.out_channels, 3, 1, 1, bias=False))])
    return cfg


def _fc_hidden(G, D, cfg):
    hidden = 8 * cfg.ndf
    project = G.net[0]  # z (1x1) -> 4x4 map
    c0 = project.out_channels
    G.net = nn.Sequential(nn.Flatten(), _new(nn.Linear(cfg.nz, hidden)), _new(nn.BatchNorm1d(hidden)),
                          nn.ReLU(True), _new(nn.Linear(hidden, c0 * 16)), nn.Unflatten(1, (c0, 4, 4)),
                          *G.net[1:])
    D.head = nn.Sequential(nn.Flatten(), _new(nn.Linear(D.head.in_channels * 16, hidden)),
                           nn.LeakyReLU(0.2, inplace=True), _new(nn.Linear(hidden, 1)))
    return cfg


ABLATIONS: dict[str, Ablation] = {
    "base": Ablation("the paper's DCGAN", "§3 guidelines, §4 Adam(2e-4, β₁ = 0.5)", (), lambda G, D, cfg: cfg),
    "Adam β1 = 0.9": Ablation(
        "Adam's default momentum instead of 0.5",
        "§4: \"leaving the momentum term β₁ at the suggested value of 0.9 resulted in training "
        "oscillation and instability while reducing it to 0.5 helped stabilize training\"",
        (), _beta1),
    "no BatchNorm": Ablation(
        "no BatchNorm in either net",
        "§3: batchnorm \"proved critical to get deep generators to begin learning, preventing the "
        "generator from collapsing all samples to a single point\"",
        ("G has no BatchNorm", "D has no BatchNorm"), _no_batchnorm),
    "BatchNorm everywhere": Ablation(
        "BatchNorm also on G's output and D's input layer",
        "§3: \"Directly applying batchnorm to all layers however, resulted in sample oscillation "
        "and model instability\"",
        ("G has BatchNorm on the output layer", "D has BatchNorm on the input layer"), _batchnorm_everywhere),
    "ReLU in D": Ablation(
        "ReLU instead of LeakyReLU(0.2) in D",
        "§3: \"Within the discriminator we found the leaky rectified activation to work well, "
        "especially for higher resolution modeling\"",
        ("D uses ReLU",), _relu_in_d),
    "pooling": Ablation(
        "max-pooling in D and upsampling in G instead of (fractional-)strided convolutions",
        "§3: strided convolutions let each net \"learn its own spatial downsampling\" "
        "(upsampling in G) instead of a fixed one",
        ("G uses pooling or upsampling", "D uses pooling or upsampling"), _pooling),
    "FC hidden layer": Ablation(
        "a fully connected hidden layer after G's projection and before D's output",
        "§3: \"Eliminate fully connected layers on top of convolutional features\"; only G's "
        "projection of z and D's single output may be fully connected",
        ("G has a fully connected hidden layer", "D has a fully connected hidden layer"), _fc_hidden),
}


def build_ablation(name: str, cfg, nc: int):
    """``(G, D, cfg)`` for one row of week 4b: the base nets of ``cfg`` (initialized per §4)
    with the change ``name`` applied; ``cfg`` changes only for optimizer settings."""
    if name not in ABLATIONS:
        raise KeyError(f"unknown ablation {name!r}; known: {', '.join(ABLATIONS)}")
    G, D = dcgan.build_dcgan(cfg, nc=nc)
    cfg = ABLATIONS[name].change(G, D, cfg)
    return G, D, cfg
