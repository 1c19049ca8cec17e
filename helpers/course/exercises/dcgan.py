"""DCGAN exercises (weeks 3-4): the generator, the discriminator, weight initialization, one
training step and spherical interpolation. The §3 architecture rules come from
:func:`helpers.dcgan.guideline_violations`."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers import dcgan as _dcgan
from helpers.course.exercises.base import call, fail, register
from helpers.course.exercises.diagnose import Case, Raised, attempt, judge

_WEIGHTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
_PROBED = (*_WEIGHTED, nn.BatchNorm2d, nn.BatchNorm1d)


def _guidelines(name: str, net, role: str, skip: tuple[str, ...] = ()) -> None:
    """Fail on the first §3 rule the learner's net breaks (the rules of
    :func:`helpers.dcgan.guideline_problems`); ``skip``: rules the behaviour showed are kept (an
    activation written as a function in ``forward`` is not a module)."""
    for what, fix in _dcgan.guideline_problems(net, role):
        if not any(k in what for k in skip):
            fail(name, what + ".", fix)


def _weights_count(net) -> int:
    """Weights of the convolutions and Linear layers plus BatchNorm parameters; biases of
    convolutions and Linear layers are left out (a bias before BatchNorm is redundant, not wrong)."""
    return sum(p.numel() for m in net.modules() for n, p in m.named_parameters(recurse=False)
               if not (isinstance(m, _WEIGHTED) and n == "bias"))


def _probe(net, x):
    """Run ``net(x)`` recording every weighted or BatchNorm layer's input and output, in call order."""
    records, hooks = [], []
    for m in net.modules():
        if isinstance(m, _PROBED):
            hooks.append(m.register_forward_hook(
                lambda mod, inp, out: records.append((mod, inp[0].detach().clone(), out.detach().clone()))))
    try:
        out = net(x)
    finally:
        for h in hooks:
            h.remove()
    return out, records


def _slope(pre, post):
    """The activation between two recorded tensors: the slope on negative inputs (1 = none)."""
    if pre.shape != post.shape:
        return None
    neg, pos = pre < -1e-3, pre > 1e-3
    if neg.sum() < 10 or not torch.allclose(post[pos], pre[pos], rtol=1e-3, atol=1e-4):
        return None
    ratio = (post[neg] / pre[neg])
    s = float(ratio.median())
    return s if bool(((ratio - s).abs() < 1e-3).all()) else None


def _activations(records):
    """For each weighted layer after the first: the slope of the activation feeding it (from the
    output recorded just before), or None when it is not a (leaky) ReLU."""
    out = []
    for i, (mod, inp, _) in enumerate(records):
        if isinstance(mod, _WEIGHTED) and i > 0:
            out.append((i, mod, inp, _slope(records[i - 1][2], inp)))
    return out


def _call_net(name, net, x, on_error=()):
    return call(name, net, x, on_error=on_error)


def _grad_flow(name, net, out, role):
    out.float().mean().backward()
    dead = [n for n, p in net.named_parameters() if p.requires_grad and (p.grad is None or not bool(p.grad.abs().sum() > 0))]
    if dead:
        fail(name, f"{role}'s parameters {dead[:4]} get no gradient: they do not take part in the output "
                   f"(a layer that is built but not used in forward, or a .detach()/torch.no_grad() inside)",
             "every layer built in __init__ must be used in forward, without detaching")


def _run_generator(cls) -> int:
    name = "generator"
    torch.manual_seed(0)
    G = call(name, cls, 16, 8, 3)
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(1))
    channels_error = [("expected input", "a layer's input channels do not match the previous layer's output "
                       "channels", "ngf*8 -> ngf*4 -> ngf*2 -> ngf -> nc")]
    out = _call_net(name, G, z.view(4, 16, 1, 1), channels_error)
    if tuple(out.shape) != (4, 3, 64, 64):
        fail(name, f"G(z) has shape {tuple(out.shape)}, expected (4, 3, 64, 64).",
             "1x1 -> 4x4 with ConvTranspose2d(nz, ngf*8, 4, 1, 0), then four ConvTranspose2d(.., 4, 2, 1), "
             "each doubling the size: 8, 16, 32, 64")
    probed = attempt(_probe, G, z)
    if isinstance(probed, Raised):
        fail(name, f"G(z) fails for z of shape [batch, nz] = (4, 16), the way the notebooks and the training "
                   f"step call it ({probed.text})",
             "reshape inside forward: z.view(z.size(0), -1, 1, 1) accepts both [batch, nz] and [batch, nz, 1, 1]")
    out2, records = probed
    if tuple(out2.shape) != (4, 3, 64, 64):
        fail(name, f"G(z) for z of shape [batch, nz] = (4, 16) gives {tuple(out2.shape)}, expected (4, 3, 64, 64)",
             "reshape inside forward: z.view(z.size(0), -1, 1, 1)")
    weighted = [(m, i, o) for m, i, o in records if isinstance(m, _WEIGHTED)]
    last = weighted[-1][2] if weighted else None
    tanh_ok = last is not None and last.shape == out2.shape and torch.allclose(out2, torch.tanh(last), atol=1e-5)
    _guidelines(name, G, "G", skip=("has no Tanh",))   # judged below by what G's output is
    if last is not None and last.shape == out2.shape and not tanh_ok:
        if torch.allclose(out2, torch.sigmoid(last), atol=1e-5):
            fail(name, "G's output goes through a Sigmoid (pixels in [0, 1])", "use Tanh: the data is scaled to [-1, 1] (§4)")
        if torch.allclose(out2, torch.tanh(torch.relu(last)), atol=1e-5):
            fail(name, "a ReLU before the final Tanh: G's outputs are never negative, while the data is in [-1, 1]",
                 "the last ConvTranspose2d goes straight into Tanh")
        if float(out2.min()) >= 0:
            fail(name, f"G's outputs lie in [{float(out2.min()):.2f}, {float(out2.max()):.2f}]: never negative, "
                       f"while the data is scaled to [-1, 1] (a rescale to [0, 1] after the Tanh?)",
                 "return tanh(last layer) as is")
        if torch.allclose(out2, last, atol=1e-5):
            fail(name, "G's output layer has no Tanh: pixels are not confined to [-1, 1] like the data",
                 "end with torch.tanh / nn.Tanh() after the last layer (§3)")
        fail(name, f"G's output is not tanh(last layer's output) (range [{float(out2.min()):.2f}, "
                   f"{float(out2.max()):.2f}])", "the last ConvTranspose2d goes straight into Tanh")
    # a Linear first layer (Figure 1's projection) is reshaped to [ngf*8, 4, 4]: count its channels so
    chans = [o.shape[1] if o.dim() == 4 else o.shape[-1] // 16 for _, _, o in weighted]
    if chans != [64, 32, 16, 8, 3]:
        fail(name, f"the layers' output channels are {chans}; Figure 1's layout with ngf = 8, nc = 3 gives "
                   f"[64, 32, 16, 8, 3] (ngf*8, ngf*4, ngf*2, ngf, nc: halving at every layer)",
             "channels ngf*8 -> ngf*4 -> ngf*2 -> ngf -> nc")
    for _i, mod, inp, _slope in _activations(records):
        if float(inp.min()) < -1e-6:
            fail(name, f"negative values reach layer {type(mod).__name__} #{[m for m, _, _ in weighted].index(mod) + 1}: "
                       f"the hidden layer before it has no ReLU (or its BatchNorm comes after the ReLU)",
                 "ConvTranspose2d -> BatchNorm2d -> ReLU for every layer but the last (§3)")
    ref = _dcgan.Generator(16, 8, 3, 64)
    n_mine, n_ref = _weights_count(G), _weights_count(ref)
    if n_mine != n_ref:
        fail(name, f"{n_mine:,} parameters (weights and BatchNorm, biases left out) where Figure 1's layout "
                   f"has {n_ref:,}.", "channels ngf*8, ngf*4, ngf*2, ngf, then nc; BatchNorm2d after each "
                                       "ConvTranspose2d but the last, on its output channels")
    _grad_flow(name, G, out2, "G")
    G.eval()
    one = call(name, G, z[:1])
    if tuple(one.shape) != (1, 3, 64, 64) or not torch.isfinite(one).all():
        fail(name, "G in eval mode on a batch of 1 does not give one finite (1, 3, 64, 64) image",
             "nothing in forward should depend on the batch size")
    return 12


def _run_discriminator(cls) -> int:
    name = "discriminator"
    torch.manual_seed(0)
    D = call(name, cls, 3, 8)
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    out, records = call(name, _probe, D, x)
    raw = out.detach()
    if tuple(out.shape) == (4, 1, 1, 1):
        fail(name, "D(x) has shape (4, 1, 1, 1).", "flatten the last convolution's output: one logit per image, shape [batch]")
    if tuple(out.shape) != (4,):
        fail(name, f"D(x) has shape {tuple(out.shape)}, expected (4,).",
             "four Conv2d(.., 4, 2, 1) halve 64 -> 4, then Conv2d(ndf*8, 1, 4, 1, 0) gives 1x1; flatten")
    acts = _activations(records)
    _guidelines(name, D, "D", skip=("has no LeakyReLU",))  # judged below by the measured slopes
    weighted = [(m, i, o) for m, i, o in records if isinstance(m, _WEIGHTED)]
    idx_last = max(i for i, r in enumerate(records) if isinstance(r[0], _WEIGHTED))
    last = weighted[-1][2]
    tail = [type(m).__name__ for m, _, _ in records[idx_last + 1:]]
    if tail:
        fail(name, f"{' and '.join(tail)} after D's last layer: the output must be the last layer's raw logit",
             "nothing after the last Conv2d: no BatchNorm, no activation (the loss applies the sigmoid)")
    if last.numel() == out.numel() and not torch.allclose(raw, last.flatten(), atol=1e-5):
        flat = last.flatten()
        if torch.allclose(raw, torch.sigmoid(flat), atol=1e-5):
            what = "D's output is the sigmoid of its last layer (a Sigmoid in forward)"
        elif float(raw.min()) >= 0 or torch.allclose(raw, F.leaky_relu(flat, 0.2), atol=1e-5):
            what = "an activation after D's last layer (its outputs are clipped or bent)"
        else:
            what = "D's output is not its last layer's output"
        fail(name, what + ": the output must be the raw logit, one number per image",
             "return self.last_conv(...).flatten() - BCEWithLogitsLoss applies the sigmoid itself")
    chans = [o.shape[1] for _, _, o in weighted]
    if chans != [8, 16, 32, 64, 1]:
        fail(name, f"the layers' output channels are {chans}; with ndf = 8 the paper's layout gives "
                   f"[8, 16, 32, 64, 1]: the channels double at every layer while the size halves",
             "Conv2d(nc, ndf) -> (ndf, ndf*2) -> (ndf*2, ndf*4) -> (ndf*4, ndf*8) -> (ndf*8, 1)")
    for (_i, mod, _inp, slope) in acts:
        if slope is None or abs(slope - 0.2) > 1e-3:
            k = [m for m, _, _ in weighted].index(mod) + 1
            if slope is None:
                what = f"the activation feeding D's layer #{k} is not a LeakyReLU"
            elif abs(slope) < 1e-6:
                what = f"the activation feeding D's layer #{k} has slope 0 on negative inputs: a ReLU, not LeakyReLU(0.2)"
            elif abs(slope - 1) < 1e-6:
                what = f"no activation before D's layer #{k}"
            else:
                what = (f"the LeakyReLU feeding D's layer #{k} has slope {slope:.3g}, the paper uses 0.2"
                        + (" (0.01 is F.leaky_relu's and nn.LeakyReLU's default)" if abs(slope - 0.01) < 1e-4 else ""))
            fail(name, what, "F.leaky_relu(x, 0.2) or nn.LeakyReLU(0.2) after every layer but the last")
    n_mine, n_ref = _weights_count(D), _weights_count(_dcgan.Discriminator(3, 8, 64))
    if n_mine != n_ref:
        fail(name, f"{n_mine:,} parameters (weights and BatchNorm, biases left out) where the paper's layout "
                   f"has {n_ref:,}.", "channels ndf, ndf*2, ndf*4, ndf*8, then 1; BatchNorm2d on every layer "
                                      "but the first and the last")
    _grad_flow(name, D, out, "D")
    D.eval()
    one = call(name, D, x[:1])
    if tuple(one.shape) != (1,):
        fail(name, f"D in eval mode on a batch of 1 gives shape {tuple(one.shape)}, expected (1,)",
             "flatten to [batch]: .flatten() or .view(-1); .squeeze() also drops the batch axis of size 1")
    return 12


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
    convs = [m for m in list(G.modules()) + list(D.modules()) if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    bn = [m for m in list(G.modules()) + list(D.modules()) if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():   # sentinels: what the learner's function leaves untouched keeps 0.5
        for m in convs + bn:
            m.weight.fill_(0.5)
        for m in bn:
            m.bias.fill_(0.5)
    call(name, G.apply, fn)
    call(name, D.apply, fn)
    untouched = {type(m).__name__ for m in convs if bool((m.weight == 0.5).all())}
    if "ConvTranspose2d" in untouched:
        fail(name, "the generator's ConvTranspose2d layers were not touched.",
             "match both kinds: isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) - ConvTranspose2d is not a "
             "subclass of Conv2d")
    if "Conv2d" in untouched:
        fail(name, "the discriminator's Conv2d layers were not touched.",
             "match both kinds: isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))")
    g_conv = torch.cat([m.weight.detach().flatten() for m in G.modules() if isinstance(m, nn.ConvTranspose2d)])
    d_conv = torch.cat([m.weight.detach().flatten() for m in D.modules() if isinstance(m, nn.Conv2d)])
    for label, w in (("generator conv", g_conv), ("discriminator conv", d_conv)):
        if abs(float(w.mean())) > 0.005:
            fail(name, f"{label} weights have mean {float(w.mean()):+.3f}.",
                 "§4: zero-centred: nn.init.normal_(m.weight, 0.0, 0.02)")
        if abs(float(w.std()) - 0.02) > 0.003:
            fail(name, f"{label} weights have std {float(w.std()):.4f}, not 0.02.",
                 "§4: nn.init.normal_(m.weight, mean=0.0, std=0.02) - the second argument is the mean, "
                 "the third the std")
    for m in convs:   # every layer, not only all together (fan-dependent inits such as Xavier)
        w = m.weight.detach()
        if w.numel() >= 500 and abs(float(w.std()) - 0.02) > 0.004:
            fail(name, f"the {type(m).__name__} with {w.shape[0]}x{w.shape[1]} channels has weight std "
                       f"{float(w.std()):.4f}, not 0.02: the std depends on the layer (a fan-based init such as "
                       f"Xavier/Kaiming?)", "§4: every convolution from N(0, 0.02): nn.init.normal_(m.weight, 0.0, 0.02)")
    bn_w = torch.cat([m.weight.detach() for m in bn])
    bn_b = torch.cat([m.bias.detach() for m in bn])
    if bool((bn_w == 0.5).all()):
        fail(name, "the BatchNorm layers were not initialized (their scales kept the values they had).",
             "add a branch for nn.BatchNorm2d: normal_(m.weight, 1.0, 0.02), zeros_(m.bias)")
    if torch.equal(bn_w, torch.ones_like(bn_w)):
        fail(name, "the BatchNorm scales are set to exactly 1 (constant_/fill_): §4 draws them from N(1, 0.02).",
             "nn.init.normal_(m.weight, 1.0, 0.02) for BatchNorm2d")
    if abs(float(bn_w.mean()) - 1.0) > 0.01:
        fail(name, f"BatchNorm scales have mean {float(bn_w.mean()):.3f}, not 1: a scale near 0 switches "
                   f"the layer's output off.", "nn.init.normal_(m.weight, 1.0, 0.02) for BatchNorm2d")
    if abs(float(bn_w.std()) - 0.02) > 0.005:
        fail(name, f"BatchNorm scales have std {float(bn_w.std()):.4f}, not 0.02.", "nn.init.normal_(m.weight, 1.0, 0.02)")
    if float(bn_b.abs().max()) > 0:
        fail(name, "BatchNorm shifts are not zero" + (" (they were not set at all)." if bool((bn_b == 0.5).all())
                                                      else "."), "nn.init.zeros_(m.bias) for BatchNorm2d")
    return 8


register(name="weights_init", title="DCGAN weight initialization (§4)", where="DCGAN week 3",
         hint="for nn.Conv2d and nn.ConvTranspose2d: normal_(m.weight, 0.0, 0.02); for nn.BatchNorm2d: "
              "normal_(m.weight, 1.0, 0.02) and zeros_(m.bias).",
         run=_run_init, fallback=lambda c: _dcgan.weights_init, fallback_name="helpers.dcgan.weights_init",
         mistakes=("wrong std", "not zero-centred", "ConvTranspose2d skipped", "BatchNorm not initialized",
                   "BatchNorm scale exactly 1", "BatchNorm scale around 0", "BatchNorm shift not zero",
                   "per-layer std (Xavier/Kaiming)"))


# ---------------------------------------------------------------- one training step (§3-4, week 3)
def _step_variant(G, D, opt_g, opt_d, real, nz, rng, variant=""):
    b = real.size(0)
    ones, zeros = torch.ones(b), torch.zeros(b)
    fake = G(torch.randn(b, nz, generator=rng))
    if variant != "no_zero_d":
        opt_d.zero_grad(set_to_none=True)
    real_label, fake_label = (zeros, ones) if variant == "swapped" else (ones, zeros)
    d = (lambda x: torch.sigmoid(D(x))) if variant == "double_sigmoid" else D
    loss_d = (F.binary_cross_entropy_with_logits(d(real), real_label)
              + F.binary_cross_entropy_with_logits(d(fake.detach()), fake_label))
    loss_d.backward()
    opt_d.step()
    if variant != "no_zero_g":
        opt_g.zero_grad(set_to_none=True)
    if variant == "saturating":
        loss_g = -F.binary_cross_entropy_with_logits(d(fake), zeros)
    elif variant == "swapped":
        loss_g = F.binary_cross_entropy_with_logits(d(fake), zeros)
    else:
        loss_g = F.binary_cross_entropy_with_logits(d(fake), ones)
    loss_g.backward()
    opt_g.step()
    return loss_d.item(), loss_g.item()


_STEP_PARTS = ("loss_d at step 1", "loss_g at step 1", "loss_d at step 2", "loss_g at step 2", "D's weights",
               "G's weights")


def _step_outcome(step_fn):
    """Two steps of ``step_fn`` from a fixed start: the four losses, D's and G's weights after."""
    torch.manual_seed(0)
    G, D = _dcgan.Generator(8, 4, 1, 16), _dcgan.Discriminator(1, 4, 16)
    opt_g, opt_d = _dcgan.dcgan_optimizers(G, D)
    gen = torch.Generator().manual_seed(1)
    real = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    losses = []
    for _ in range(2):
        out = step_fn(G, D, opt_g, opt_d, real, 8, gen)
        if isinstance(out, Raised):
            return out
        losses += [float(v) for v in out]
    return (*losses, torch.cat([p.detach().flatten() for p in D.parameters()]),
            torch.cat([p.detach().flatten() for p in G.parameters()]))


def _start_weights():
    torch.manual_seed(0)
    G, D = _dcgan.Generator(8, 4, 1, 16), _dcgan.Discriminator(1, 4, 16)
    return (torch.cat([p.detach().flatten() for p in D.parameters()]),
            torch.cat([p.detach().flatten() for p in G.parameters()]))


def _step_extra(got, expected):
    if not (isinstance(got, tuple) and len(got) == 6):
        return []
    d0, g0 = _start_weights()
    out = []
    for label, w, w0 in (("D", got[4], d0), ("G", got[5], g0)):
        if torch.equal(w, w0):
            out.append((f"{label}'s weights did not change in two steps: {label} was never updated (no step of its "
                        f"optimizer, zero_grad between backward and step, or its loss detached from it)",
                        f"opt_{label.lower()}.zero_grad(); loss_{label.lower()}.backward(); opt_{label.lower()}.step(), "
                        f"in this order"))
    return out


def _run_train_step(fn) -> int:
    name = "train_step"

    def learner(*args):
        return attempt(fn, *args)
    got = _step_outcome(learner)
    expected = _step_outcome(_train_step_fallback(None))
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
        ("double_sigmoid", "a sigmoid goes into BCEWithLogitsLoss, which applies its own: a double sigmoid "
                           "(the losses can never get near 0)",
         "pass D's raw logits to binary_cross_entropy_with_logits (or the sigmoid to binary_cross_entropy, not both)"),
    ]:
        variants.append((lambda v=v: _step_outcome(lambda *a, v=v: _step_variant(*a, variant=v)), message, fix))
    on_error = [("backward through the graph a second time", "D's loss backpropagates into G, which frees G's "
                 "graph before G's own backward", "use D(fake.detach()) in the discriminator's loss"),
                ("all elements of input should be between 0 and 1", "F.binary_cross_entropy / nn.BCELoss get D's "
                 "raw logits; they expect probabilities in [0, 1] (BCE on logits)",
                 "F.binary_cross_entropy_with_logits(D(x), labels): it applies the sigmoid itself, stably"),
                ("modified by an inplace operation", "an optimizer step changed weights that a later backward still "
                 "needs: a step runs between a forward and its backward (the wrong optimizer, or the steps out of "
                 "order)", "D: zero_grad, backward, opt_d.step(); then G: zero_grad, backward, opt_g.step()")]
    case = Case("two steps from a fixed start", got, expected, variants, parts=_STEP_PARTS, extra=_step_extra,
                rtol=1e-4, atol=1e-5, factors={"0.5 (the two D terms averaged, not summed)": 0.5, "2": 2.0})
    return judge(name, [case], what="two steps (losses and the updated weights)", on_error=on_error,
                 fix="one D step on real (label 1) and fake.detach() (label 0), then one G step with label 1 "
                     "on D(fake) (the same fake); zero each optimizer's gradients before its backward") + 4


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
                   "fake not detached", "double sigmoid", "BCE on logits"))


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


def _slerp_extra(z0, z1):
    def extra(got, expected):
        if not (torch.is_tensor(got) and got.shape == expected.shape and got.dim() == 2):
            return []
        ends = [(label, torch.allclose(got[i].double(), z.double(), rtol=1e-4, atol=1e-4))
                for label, i, z in (("the first row (t = 0) is{} z0", 0, z0), ("the last row (t = 1) is{} z1", -1, z1))]
        if all(ok for _, ok in ends):
            norms = got.double().norm(dim=-1)
            ref = expected.double().norm(dim=-1)
            return [("both endpoints are right; the rows in between differ (norms "
                     + ", ".join(f"{float(a):.3g}" for a in norms[1:-1][:4]) + " where slerp gives "
                     + ", ".join(f"{float(b):.3g}" for b in ref[1:-1][:4]) + ")",
                     "the weights sin((1 - t)ω)/sin ω and sin(tω)/sin ω, and ω = arccos of the cosine between z0 and z1")]
        return [("; ".join(label.format("" if ok else " not") for label, ok in ends),
                 "at t = 0 the weights must be (1, 0) and at t = 1 (0, 1): check sin((1 - t)·ω) (brackets) and "
                 "the division by sin ω")]
    return extra


def _run_slerp(fn) -> int:
    name = "slerp"
    g = torch.Generator().manual_seed(0)
    cases = []
    for nz, steps in ((32, 7), (100, 2), (5, 11)):
        z0, z1 = torch.randn(nz, generator=g), torch.randn(nz, generator=g)
        got = attempt(fn, z0, z1, steps)
        if isinstance(got, Raised) and f"({steps}) must match the size of tensor b ({nz})" in got.text:
            fail(name, f"t has shape [steps] = ({steps},) and z0 [nz] = ({nz},): they do not broadcast "
                       f"({got.text}).", "make t a column: t = torch.linspace(0, 1, steps)[:, None], shape [steps, 1]")
        if not isinstance(got, Raised) and not torch.is_tensor(got):
            fail(name, f"expected a [steps, nz] = ({steps}, {nz}) tensor, got {type(got).__name__}.",
                 "build the whole path at once with t = torch.linspace(0, 1, steps)[:, None], or torch.stack a list")
        if torch.is_tensor(got) and tuple(got.shape) == (nz, steps):
            fail(name, f"expected a [steps, nz] = ({steps}, {nz}) tensor, got ({nz}, {steps}): transposed.",
                 "t = torch.linspace(0, 1, steps)[:, None] broadcasts against z0 [nz] into [steps, nz]")
        expected = _dcgan.interpolate(z0, z1, steps)
        ts = torch.linspace(0, 1, steps)
        cases.append(Case(f"nz = {nz}, steps = {steps}", got, expected, extra=_slerp_extra(z0, z1), mistakes=[
            (_slerp(z0, z1, steps, "linear"), "it interpolates on a straight line; midpoints have a smaller norm "
                                              "than typical Gaussian samples",
             "slerp: sin((1 - t)ω)/sin ω · z0 + sin(tω)/sin ω · z1, with ω the angle between z0 and z1"),
            (torch.flip(_slerp(z0, z1, steps), [0]), "it runs from z1 to z0",
             "t = 0 must give z0 (first row), t = 1 gives z1 (last row)"),
            (_slerp(z0, z1, steps, "endpoints"), "the endpoints z0 and z1 are left out",
             "t = torch.linspace(0, 1, steps) includes both 0 and 1"),
            (_slerp(z0, z1, steps, "no_end"), "the path stops before z1 (t goes 0, 1/steps, ..., not up to 1)",
             "t = torch.linspace(0, 1, steps)"),
            (_slerp(z0, z1, steps, "no_sin"), "the weights are not divided by sin(ω): the path does not reach z0 or z1",
             "divide both weights by sin(omega)"),
            (_slerp(z0, z1, steps, "unit"), "it interpolates the unit vectors, so the result has norm 1 instead of "
                                            "the norm of z", "use the normalized vectors only to compute ω; "
                                                             "interpolate z0 and z1 themselves"),
        ], axes=("rows (t values)", "latent dimensions"), labels={0: [f"t = {float(t):.2g}" for t in ts]},
            rtol=1e-4, atol=1e-4))
    return judge(name, cases, what="the path", fix="see helpers.dcgan.interpolate's formula",
                 shapes={"z0": "[nz]", "z1": "[nz]", "t": "[steps] (or [steps, 1] with [:, None])"})


register(name="slerp", title="spherical interpolation in latent space (§6.1)", where="DCGAN week 4",
         hint="omega = arccos(<z0/|z0|, z1/|z1|>); t = linspace(0, 1, steps)[:, None]; "
              "sin((1 - t)·omega)/sin(omega)·z0 + sin(t·omega)/sin(omega)·z1.",
         run=_run_slerp, fallback=lambda c: _dcgan.interpolate, fallback_name="helpers.dcgan.interpolate",
         mistakes=("linear interpolation", "reversed", "endpoints left out", "stops before z1",
                   "no division by sin(omega)", "unit-norm result", "t without [:, None]", "transposed"))
