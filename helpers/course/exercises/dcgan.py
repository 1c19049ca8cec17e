"""DCGAN exercises (weeks 3-4): the generator, the discriminator, weight initialization, one
training step and spherical interpolation. The §3 architecture rules come from
:func:`helpers.dcgan.guideline_violations`."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers import dcgan as _dcgan
from helpers.course.exercises.base import call, diagnose, fail, register


def _guidelines(name: str, net, role: str) -> None:
    """Fail on the first §3 rule the learner's net breaks (the rules of
    :func:`helpers.dcgan.guideline_problems`)."""
    for what, fix in _dcgan.guideline_problems(net, role):
        fail(name, what + ".", fix)


def _weights_count(net) -> int:
    """Parameters, without the biases of Linear layers (Figure 1's projection may have one)."""
    return sum(p.numel() for m in net.modules() for n, p in m.named_parameters(recurse=False)
               if not (isinstance(m, nn.Linear) and n == "bias"))


def _run_generator(cls) -> int:
    name = "generator"
    torch.manual_seed(0)
    G = call(name, cls, 16, 8, 3)
    _guidelines(name, G, "G")
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(1))
    out = call(name, G, z.view(4, 16, 1, 1), on_error=[("expected input", "a layer's input channels do not "
                "match the previous layer's output channels", "ngf*8 -> ngf*4 -> ngf*2 -> ngf -> nc")])
    if tuple(out.shape) != (4, 3, 64, 64):
        fail(name, f"G(z) has shape {tuple(out.shape)}, expected (4, 3, 64, 64).",
              "1x1 -> 4x4 with ConvTranspose2d(nz, ngf*8, 4, 1, 0), then four ConvTranspose2d(.., 4, 2, 1), "
              "each doubling the size: 8, 16, 32, 64")
    ref = _dcgan.Generator(16, 8, 3, 64)
    n_mine, n_ref = _weights_count(G), _weights_count(ref)
    if n_mine != n_ref:
        fail(name, f"{n_mine:,} parameters where Figure 1's layout has {n_ref:,}.",
              "channels ngf*8, ngf*4, ngf*2, ngf, then nc; bias=False in convolutions followed by BatchNorm")
    return 7


def _run_discriminator(cls) -> int:
    name = "discriminator"
    torch.manual_seed(0)
    D = call(name, cls, 3, 8)
    _guidelines(name, D, "D")
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    out = call(name, D, x)
    if tuple(out.shape) == (4, 1, 1, 1):
        fail(name, "D(x) has shape (4, 1, 1, 1).", "flatten the last convolution's output: one logit per image, shape [batch]")
    if tuple(out.shape) != (4,):
        fail(name, f"D(x) has shape {tuple(out.shape)}, expected (4,).",
              "four Conv2d(.., 4, 2, 1) halve 64 -> 4, then Conv2d(ndf*8, 1, 4, 1, 0) gives 1x1; flatten")
    return 8


def _generator_fallback(cls):
    class ReferenceGenerator(_dcgan.Generator):
        def __init__(self, nz=100, ngf=64, nc=3):
            super().__init__(nz, ngf, nc, 64)
    return ReferenceGenerator


def _discriminator_fallback(cls):
    class ReferenceDiscriminator(_dcgan.Discriminator):
        def __init__(self, nc=3, ndf=64):
            super().__init__(nc, ndf, 64)
    return ReferenceDiscriminator


register(name="generator", title="the DCGAN generator (Figure 1)", where="DCGAN week 3",
          hint="ConvTranspose2d(nz, ngf*8, 4, 1, 0) to 4x4, then (.., 4, 2, 1) layers halving the channels "
               "and doubling the size to 64x64; BatchNorm2d + ReLU after each but the last; end with Tanh.",
          run=_run_generator, fallback=_generator_fallback, fallback_name="helpers.dcgan.Generator",
          mistakes=("BatchNorm on the output layer", "missing Tanh", "Sigmoid output", "wrong output size",
                    "LeakyReLU in G", "Linear layer", "pooling/upsampling", "wrong widths"))
register(name="discriminator", title="the DCGAN discriminator", where="DCGAN week 3",
          hint="Conv2d(nc, ndf, 4, 2, 1) + LeakyReLU(0.2) (no BatchNorm here), then three "
               "Conv2d(.., 4, 2, 1) + BatchNorm2d + LeakyReLU(0.2), then Conv2d(ndf*8, 1, 4, 1, 0); "
               "return the flattened logits.",
          run=_run_discriminator, fallback=_discriminator_fallback, fallback_name="helpers.dcgan.Discriminator",
          mistakes=("BatchNorm on the input layer", "ReLU instead of LeakyReLU", "wrong slope", "Sigmoid output",
                    "output not flattened", "wrong output size", "Linear layer", "pooling"))


# ---------------------------------------------------------------- weight init (§4)
def _run_init(fn) -> int:
    name = "weights_init"
    torch.manual_seed(0)
    G, D = _dcgan.Generator(100, 32, 3, 64), _dcgan.Discriminator(3, 32, 64)
    default_g = [m.weight.detach().clone() for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    call(name, G.apply, fn)
    call(name, D.apply, fn)
    g_conv = torch.cat([m.weight.detach().flatten() for m in G.modules() if isinstance(m, nn.ConvTranspose2d)])
    d_conv = torch.cat([m.weight.detach().flatten() for m in D.modules() if isinstance(m, nn.Conv2d)])
    bn = [m for m in list(G.modules()) + list(D.modules()) if isinstance(m, nn.BatchNorm2d)]
    bn_w = torch.cat([m.weight.detach() for m in bn])
    bn_b = torch.cat([m.bias.detach() for m in bn])
    if all(torch.equal(a, m.weight) for a, m in zip(default_g, [m for m in G.modules()
                                                                 if isinstance(m, nn.ConvTranspose2d)])):
        fail(name, "the generator's ConvTranspose2d layers were not touched.",
              "match both kinds: isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) - ConvTranspose2d is not a "
              "subclass of Conv2d")
    for label, w in (("generator conv", g_conv), ("discriminator conv", d_conv)):
        if abs(float(w.mean())) > 0.005:
            fail(name, f"{label} weights have mean {float(w.mean()):+.3f}.",
                  "§4: zero-centred: nn.init.normal_(m.weight, 0.0, 0.02)")
        if abs(float(w.std()) - 0.02) > 0.003:
            fail(name, f"{label} weights have std {float(w.std()):.4f}, not 0.02.",
                  "§4: nn.init.normal_(m.weight, mean=0.0, std=0.02) - the second argument is the mean, "
                  "the third the std")
    if torch.equal(bn_w, torch.ones_like(bn_w)):
        fail(name, "BatchNorm scales are all exactly 1: the BatchNorm layers were not initialized.",
              "add a branch for nn.BatchNorm2d: normal_(m.weight, 1.0, 0.02), zeros_(m.bias)")
    if abs(float(bn_w.mean()) - 1.0) > 0.01:
        fail(name, f"BatchNorm scales have mean {float(bn_w.mean()):.3f}, not 1: a scale near 0 switches "
                    f"the layer's output off.", "nn.init.normal_(m.weight, 1.0, 0.02) for BatchNorm2d")
    if abs(float(bn_w.std()) - 0.02) > 0.005:
        fail(name, f"BatchNorm scales have std {float(bn_w.std()):.4f}, not 0.02.", "nn.init.normal_(m.weight, 1.0, 0.02)")
    if float(bn_b.abs().max()) > 0:
        fail(name, "BatchNorm shifts are not zero.", "nn.init.zeros_(m.bias) for BatchNorm2d")
    return 6


register(name="weights_init", title="DCGAN weight initialization (§4)", where="DCGAN week 3",
          hint="for nn.Conv2d and nn.ConvTranspose2d: normal_(m.weight, 0.0, 0.02); for nn.BatchNorm2d: "
               "normal_(m.weight, 1.0, 0.02) and zeros_(m.bias).",
          run=_run_init, fallback=lambda c: _dcgan.weights_init, fallback_name="helpers.dcgan.weights_init",
          mistakes=("wrong std", "not zero-centred", "ConvTranspose2d skipped", "BatchNorm not initialized",
                    "BatchNorm scale around 0", "BatchNorm shift not zero"))


# ---------------------------------------------------------------- one training step (§3-4, week 3)
def _step_variant(G, D, opt_g, opt_d, real, nz, rng, variant=""):
    b = real.size(0)
    ones, zeros = torch.ones(b), torch.zeros(b)
    fake = G(torch.randn(b, nz, generator=rng))
    if variant != "no_zero_d":
        opt_d.zero_grad(set_to_none=True)
    real_label, fake_label = (zeros, ones) if variant == "swapped" else (ones, zeros)
    loss_d = (F.binary_cross_entropy_with_logits(D(real), real_label)
              + F.binary_cross_entropy_with_logits(D(fake.detach()), fake_label))
    loss_d.backward()
    opt_d.step()
    if variant != "no_zero_g":
        opt_g.zero_grad(set_to_none=True)
    if variant == "saturating":
        loss_g = -F.binary_cross_entropy_with_logits(D(fake), zeros)
    elif variant == "swapped":
        loss_g = F.binary_cross_entropy_with_logits(D(fake), zeros)
    else:
        loss_g = F.binary_cross_entropy_with_logits(D(fake), ones)
    loss_g.backward()
    opt_g.step()
    return loss_d.item(), loss_g.item()


def _step_outcome(step_fn):
    """Two steps of ``step_fn`` from a fixed start: the four losses and every weight after."""
    torch.manual_seed(0)
    G, D = _dcgan.Generator(8, 4, 1, 16), _dcgan.Discriminator(1, 4, 16)
    opt_g, opt_d = _dcgan.dcgan_optimizers(G, D)
    gen = torch.Generator().manual_seed(1)
    real = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    losses = []
    on_error = [("backward through the graph a second time", "D's loss backpropagates into G, which frees G's "
                 "graph before G's own backward", "use D(fake.detach()) in the discriminator's loss")]
    for _ in range(2):
        out = call("train_step", step_fn, G, D, opt_g, opt_d, real, 8, gen, on_error=on_error)
        losses += [float(v) for v in out]
    params = torch.cat([p.detach().flatten() for p in list(G.parameters()) + list(D.parameters())])
    return losses, params


def _run_train_step(fn) -> int:
    name = "train_step"
    got = _step_outcome(fn)
    variants = []
    for v, message, fix in [
        ("saturating", "the generator minimizes log(1 - D(G(z))), the saturating loss",
         "non-saturating loss (week 1): loss_g = BCEWithLogits(D(fake), ones), i.e. maximize log D(G(z))"),
        ("swapped", "the labels are swapped (real -> 0, fake -> 1)", "real images are labelled 1, fakes 0 for D; "
                                                                     "G wants D(fake) labelled 1"),
        ("no_zero_d", "the discriminator's gradients are never zeroed, so they pile up across steps",
         "opt_d.zero_grad() before loss_d.backward()"),
        ("no_zero_g", "the generator's gradients are not zeroed before its step",
         "opt_g.zero_grad() before loss_g.backward() (D's step may also have left gradients in G)"),
    ]:
        variants.append((_step_outcome(lambda *a, v=v: _step_variant(*a, variant=v)), message, fix))
    expected = _step_outcome(_train_step_fallback(None))
    return diagnose(name, got, expected, variants, "two steps (losses and the updated weights)",
                     "one D step on real (label 1) and fake.detach() (label 0), then one G step with label 1 "
                     "on D(fake); zero each optimizer's gradients before its backward")


def _train_step_fallback(c):
    def step(G, D, opt_g, opt_d, real, nz, rng):
        stats = _dcgan.train_step(G, D, opt_g, opt_d, real, nz=nz, rng=rng)
        return stats["loss_d"], stats["loss_g"]
    return step


register(name="train_step", title="one DCGAN update (D, then G)", where="DCGAN week 3",
          hint="fake = G(z); D: zero_grad, BCE(D(real), 1) + BCE(D(fake.detach()), 0), backward, step; "
               "G: zero_grad, BCE(D(fake), 1), backward, step; return (loss_d, loss_g) as floats.",
          run=_run_train_step, fallback=_train_step_fallback, fallback_name="helpers.dcgan.train_step",
          mistakes=("saturating G loss", "labels swapped", "D grads not zeroed", "G grads not zeroed",
                    "fake not detached"))


# ---------------------------------------------------------------- latent interpolation (§6.1, week 4)
def _slerp(z0, z1, steps, variant=""):
    if variant == "endpoints":
        t = torch.linspace(0, 1, steps + 2)[1:-1, None]
    elif variant == "no_end":
        t = (torch.arange(steps) / steps)[:, None]
    else:
        t = torch.linspace(0, 1, steps)[:, None]
    if variant == "linear":
        return (1 - t) * z0 + t * z1
    a, b = z0 / z0.norm(), z1 / z1.norm()
    omega = torch.acos((a * b).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    so = 1.0 if variant == "no_sin" else torch.sin(omega)
    if variant == "unit":
        z0, z1 = a, b
    return (torch.sin((1 - t) * omega) / so) * z0 + (torch.sin(t * omega) / so) * z1


def _run_slerp(fn) -> int:
    name = "slerp"
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(32, generator=g), torch.randn(32, generator=g)
    got = call(name, fn, z0, z1, 7)
    if not torch.is_tensor(got) or tuple(got.shape) != (7, 32):
        fail(name, f"expected a [steps, nz] = (7, 32) tensor, got "
                    f"{tuple(got.shape) if torch.is_tensor(got) else type(got).__name__}.",
              "t = torch.linspace(0, 1, steps)[:, None] broadcasts against z0 [nz]")
    return diagnose(name, got, _dcgan.interpolate(z0, z1, 7), [
        (_slerp(z0, z1, 7, "linear"), "it interpolates on a straight line; midpoints have a smaller norm than "
                                      "typical Gaussian samples",
         "slerp: sin((1 - t)ω)/sin ω · z0 + sin(tω)/sin ω · z1, with ω the angle between z0 and z1"),
        (torch.flip(_slerp(z0, z1, 7), [0]), "it runs from z1 to z0",
         "t = 0 must give z0 (first row), t = 1 gives z1 (last row)"),
        (_slerp(z0, z1, 7, "endpoints"), "the endpoints z0 and z1 are left out",
         "t = torch.linspace(0, 1, steps) includes both 0 and 1"),
        (_slerp(z0, z1, 7, "no_end"), "the path stops before z1 (t goes 0, 1/steps, ..., not up to 1)",
         "t = torch.linspace(0, 1, steps)"),
        (_slerp(z0, z1, 7, "no_sin"), "the weights are not divided by sin(ω): the path does not reach z0 or z1",
         "divide both weights by sin(omega)"),
        (_slerp(z0, z1, 7, "unit"), "it interpolates the unit vectors, so the result has norm 1 instead of "
                                    "the norm of z", "use the normalized vectors only to compute ω; "
                                                     "interpolate z0 and z1 themselves"),
    ], "the path", "see helpers.dcgan.interpolate's formula")


register(name="slerp", title="spherical interpolation in latent space (§6.1)", where="DCGAN week 4",
          hint="omega = arccos(<z0/|z0|, z1/|z1|>); t = linspace(0, 1, steps)[:, None]; "
               "sin((1 - t)·omega)/sin(omega)·z0 + sin(t·omega)/sin(omega)·z1.",
          run=_run_slerp, fallback=lambda c: _dcgan.interpolate, fallback_name="helpers.dcgan.interpolate",
          mistakes=("linear interpolation", "reversed", "endpoints left out", "stops before z1",
                    "no division by sin(omega)", "unit-norm result"))
