"""The exercise checks diagnose the mistake: every common mistake, written the way a learner
would write it (not copied from the checker), must get its own message; correct solutions
written differently from the reference must pass; a blank must fall back with a friendly note."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers import dcgan
from helpers.course import exercises
from helpers.course.exercises import ExerciseError


def diagnosis(name, candidate):
    with pytest.raises(ExerciseError) as info:
        exercises.check(name, candidate, verbose=False)
    return str(info.value)


def passes(name, candidate):
    assert exercises.check(name, candidate, verbose=False) is candidate


# --------------------------------------------------------------------------- attention
def att_einsum(q, k, v, mask=None):                    # correct, written differently
    s = torch.einsum("...qd,...kd->...qk", q, k) * q.shape[-1] ** -0.5
    if mask is not None:
        s = s.masked_fill(mask.logical_not(), -1e9)
    w = F.softmax(s, dim=-1)
    return torch.einsum("...qk,...kd->...qd", w, v), w


def att_no_scale(q, k, v, mask=None):
    s = torch.matmul(q, k.transpose(1, 2))
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    w = s.softmax(-1)
    return w @ v, w


def att_dk(q, k, v, mask=None):
    s = q @ k.transpose(-1, -2) / q.size(-1)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    return s.softmax(-1) @ v, s.softmax(-1)


def att_axis(q, k, v, mask=None):
    s = q @ k.mT / math.sqrt(k.shape[-1])
    if mask is not None:
        s = s.masked_fill(~mask, -1e9)
    w = torch.softmax(s, dim=1)
    return w @ v, w


def att_mask_ignored(q, k, v, mask=None):
    w = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).softmax(-1)
    return w @ v, w


def att_mask_inverted(q, k, v, mask=None):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        s = s.masked_fill(mask, -1e9)
    w = s.softmax(-1)
    return w @ v, w


def att_mask_zero(q, k, v, mask=None):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        s = s * mask
    w = s.softmax(-1)
    return w @ v, w


def att_no_transpose(q, k, v, mask=None):
    s = q @ k / math.sqrt(q.size(-1))
    w = s.softmax(-1)
    return w @ v, w


def att_output_only(q, k, v, mask=None):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


@pytest.mark.parametrize("fn, needle", [
    (att_no_scale, "not divided by sqrt(d_k)"),
    (att_dk, "divided by d_k, not sqrt(d_k)"),
    (att_axis, "softmax runs over the queries"),
    (att_mask_ignored, "the mask is ignored"),
    (att_mask_inverted, "the mask is inverted"),
    (att_mask_zero, "set to 0"),
    (att_no_transpose, "K is not transposed"),
    (att_output_only, "not a pair"),
])
def test_attention_mistakes(fn, needle):
    assert needle in diagnosis("attention", fn)


def test_attention_correct_variants_pass():
    passes("attention", att_einsum)
    from helpers.transformer import scaled_dot_product_attention
    passes("attention", scaled_dot_product_attention)


# --------------------------------------------------------------------------- masks
@pytest.mark.parametrize("fn, needle", [
    (lambda t, pad: (t == pad).unsqueeze(1), "inverted"),
    (lambda t, pad: t != pad, "no query axis"),
    (lambda t, pad: (t != pad).unsqueeze(-1), "masks queries"),
    (lambda t, pad: (t != 0)[:, None], "pad id 0 instead of the pad_id"),
    (lambda t, pad: (t != pad).float()[:, None], "not torch.bool"),
])
def test_padding_mask_mistakes(fn, needle):
    assert needle in diagnosis("padding_mask", fn)


@pytest.mark.parametrize("fn, needle", [
    (lambda n: torch.triu(torch.ones(n, n)).bool(), "upper triangle"),
    (lambda n: torch.tril(torch.ones(n, n, dtype=torch.bool), diagonal=-1), "cannot attend to itself"),
    (lambda n: torch.ones(n, n, dtype=torch.bool).triu(1), "exactly the future"),
    (lambda n: torch.ones(n, n).tril(), "0/1 numbers"),
    (lambda n: torch.full((n, n), float("-inf")).triu(1), "additive"),
])
def test_causal_mask_mistakes(fn, needle):
    assert needle in diagnosis("causal_mask", fn)


def test_masks_correct_variants_pass():
    passes("padding_mask", lambda t, pad: t.ne(pad).unsqueeze(1))
    passes("causal_mask", lambda n: torch.arange(n)[:, None] >= torch.arange(n)[None, :])


# --------------------------------------------------------------------------- multi-head
def mha_class(split, merge):
    class M(nn.Module):
        def __init__(self, d_model, n_heads):
            super().__init__()
            self.h, self.d_k = n_heads, d_model // n_heads
    M.split, M.merge = split, merge
    return M


def good_split(self, x):
    return x.unflatten(-1, (self.h, self.d_k)).permute(0, 2, 1, 3)


def good_merge(self, x):
    return x.permute(0, 2, 1, 3).flatten(2)


@pytest.mark.parametrize("split, merge, needle", [
    (lambda self, x: x.reshape(x.size(0), self.h, x.size(1), self.d_k), good_merge, "without a transpose"),
    (lambda self, x: x.reshape(x.size(0), x.size(1), self.d_k, self.h).permute(0, 3, 1, 2), good_merge,
     "interleaves the heads"),
    (lambda self, x: x.view(x.size(0), x.size(1), self.h, self.d_k), good_merge, "expected [batch, heads, n, d_k]"),
    (good_split, lambda self, x: x.reshape(x.size(0), x.size(2), -1), "without transposing back"),
    (good_split, lambda self, x: x.transpose(1, 2).view(x.size(0), x.size(2), -1), "non-contiguous"),
    (good_split, lambda self, x: x.permute(0, 2, 3, 1).reshape(x.size(0), x.size(2), -1), "interleaves the heads' features"),
])
def test_multihead_mistakes(split, merge, needle):
    assert needle in diagnosis("multihead", mha_class(split, merge))


def test_multihead_correct_passes_and_blank_falls_back(capsys):
    passes("multihead", mha_class(good_split, good_merge))

    def blank(self, x):
        raise NotImplementedError("Exercise 'multihead': write split")
    cls = mha_class(blank, blank)
    fixed = exercises.check("multihead", cls)
    assert exercises.NOT_DONE in capsys.readouterr().out
    x = torch.randn(2, 5, 12)
    module = fixed(12, 3)
    assert torch.equal(module.merge(module.split(x)), x) and issubclass(fixed, cls)


# --------------------------------------------------------------------------- positional encoding
def pe_loop(max_len, d, *, swap=False, two_i=True, concat=False, start=0, mult=False, transpose=False):
    pe = torch.zeros(max_len, d)
    for pos in range(max_len):
        for i in range(d // 2):
            rate = 10000 ** ((2 * i if two_i else i) / d)
            angle = (pos + start) * rate if mult else (pos + start) / rate
            s, c = math.sin(angle), math.cos(angle)
            if swap:
                s, c = c, s
            if concat:
                pe[pos, i], pe[pos, d // 2 + i] = s, c
            else:
                pe[pos, 2 * i], pe[pos, 2 * i + 1] = s, c
    return pe.T if transpose else pe


@pytest.mark.parametrize("kwargs, needle", [
    ({"swap": True}, "sin and cos are swapped"),
    ({"two_i": False}, "i/d_model where the paper has 2i/d_model"),
    ({"concat": True}, "concatenated as two halves"),
    ({"start": 1}, "positions start at 1"),
    ({"mult": True}, "multiplied by 10000"),
    ({"transpose": True}, "swapped"),
])
def test_positional_encoding_mistakes(kwargs, needle):
    assert needle in diagnosis("positional_encoding", lambda n, d: pe_loop(n, d, **kwargs))


def test_positional_encoding_loop_passes():
    passes("positional_encoding", pe_loop)


# --------------------------------------------------------------------------- LR schedule
@pytest.mark.parametrize("fn, needle", [
    (lambda s, d, w: min(s ** -0.5, s * w ** -1.5), "d_model^-0.5 factor is missing"),
    (lambda s, d, w: d ** -0.5 * min(s ** -0.5, s / math.sqrt(w)), "warmup^-0.5"),
    (lambda s, d, w: d ** -0.5 * max(1 / math.sqrt(s), s * w ** -1.5), "max of the two terms"),
])
def test_lr_mistakes(fn, needle):
    assert needle in diagnosis("lr_schedule", fn)


def test_lr_correct_passes():
    passes("lr_schedule", lambda s, d, w: (d ** -0.5) * (s ** -0.5 if s > w else s * w ** -1.5))


# --------------------------------------------------------------------------- label smoothing
def ls(logits, target, eps, pad_id, *, no_pad=False, summed=False, probs=False, spread="all", smooth=True):
    V = logits.shape[-1]
    lp = torch.softmax(logits, -1) if probs else torch.log_softmax(logits, -1)
    onehot = F.one_hot(target, V).float()
    if not smooth:
        dist = onehot
    elif spread == "all":
        dist = onehot * (1 - eps) + eps / V
    elif spread == "others":
        dist = onehot * (1 - eps) + (1 - onehot) * eps / (V - 1)
    else:
        dist = onehot * (1 - eps)
    per_token = -(dist * lp).sum(-1)
    if no_pad:
        return per_token.mean()
    mask = (target != pad_id).float()
    return (per_token * mask).sum() if summed else (per_token * mask).sum() / mask.sum()


@pytest.mark.parametrize("kwargs, needle", [
    ({"smooth": False}, "no smoothing"),
    ({"no_pad": True}, "padding positions are counted"),
    ({"summed": True}, "summed over tokens"),
    ({"probs": True}, "probabilities (softmax)"),
    ({"spread": "none"}, "not spread"),
    ({"spread": "others"}, "V - 1 wrong tokens"),
])
def test_label_smoothing_mistakes(kwargs, needle):
    assert needle in diagnosis("label_smoothing", lambda lo, t, e, p: ls(lo, t, e, p, **kwargs))


def test_label_smoothing_correct_passes():
    passes("label_smoothing", ls)
    passes("label_smoothing", lambda lo, t, e, p: F.cross_entropy(lo.flatten(0, 1), t.flatten(),
                                                                  ignore_index=p, label_smoothing=e))


# --------------------------------------------------------------------------- DCGAN G and D
def gen_class(*, bn_out=False, act_out="tanh", leaky=False, layers=5, linear=False):
    class G(nn.Module):
        def __init__(self, nz=100, ngf=64, nc=3):
            super().__init__()
            chans = [nz, ngf * 8, ngf * 4, ngf * 2, ngf][: layers]
            mods = [nn.Linear(nz, nz), nn.ReLU(), nn.Linear(nz, nz)] if linear else []  # a hidden FC layer
            for i, (a, b) in enumerate(zip(chans, chans[1:])):
                mods += [nn.ConvTranspose2d(a, b, 4, 1 if i == 0 else 2, 0 if i == 0 else 1, bias=False),
                         nn.BatchNorm2d(b), nn.LeakyReLU(0.2) if leaky else nn.ReLU()]
            mods.append(nn.ConvTranspose2d(chans[-1], nc, 4, 2, 1, bias=False))
            if bn_out:
                mods.append(nn.BatchNorm2d(nc))
            mods += {"tanh": [nn.Tanh()], "sigmoid": [nn.Sigmoid()], "none": []}[act_out]
            self.main = nn.Sequential(*mods)

        def forward(self, z):
            if isinstance(self.main[0], nn.Linear):
                z = self.main[:3](z.flatten(1))
                return self.main[3:](z[:, :, None, None])
            return self.main(z.reshape(z.shape[0], -1, 1, 1))
    return G


@pytest.mark.parametrize("kwargs, needle", [
    ({"bn_out": True}, "BatchNorm on the output layer"),
    ({"act_out": "none"}, "has no Tanh"),
    ({"act_out": "sigmoid"}, "Sigmoid"),
    ({"layers": 4}, "expected (4, 3, 64, 64)"),
    ({"leaky": True}, "uses LeakyReLU"),
    ({"linear": True}, "Linear layer"),
])
def test_generator_mistakes(kwargs, needle):
    assert needle in diagnosis("generator", gen_class(**kwargs))


def disc_class(*, bn_in=False, relu=False, slope=0.2, sigmoid=False, flatten=True, pool=False):
    class D(nn.Module):
        def __init__(self, nc=3, ndf=64):
            super().__init__()
            act = (lambda: nn.ReLU()) if relu else (lambda: nn.LeakyReLU(slope))
            mods = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False)] + ([nn.BatchNorm2d(ndf)] if bn_in else []) + [act()]
            c = ndf
            for _ in range(3):
                mods += [nn.Conv2d(c, c * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c * 2), act()]
                c *= 2
            if pool:
                mods.append(nn.MaxPool2d(1))
            mods.append(nn.Conv2d(c, 1, 4, 1, 0, bias=False))
            if sigmoid:
                mods.append(nn.Sigmoid())
            self.main = nn.Sequential(*mods)

        def forward(self, x):
            out = self.main(x)
            return out.view(-1) if flatten else out
    return D


@pytest.mark.parametrize("kwargs, needle", [
    ({"bn_in": True}, "BatchNorm on the input layer"),
    ({"relu": True}, "uses ReLU"),
    ({"slope": 0.01}, "slope [0.01]"),
    ({"sigmoid": True}, "ends in a Sigmoid"),
    ({"flatten": False}, "(4, 1, 1, 1)"),
    ({"pool": True}, "pooling"),
])
def test_discriminator_mistakes(kwargs, needle):
    assert needle in diagnosis("discriminator", disc_class(**kwargs))


def test_nets_correct_pass():
    passes("generator", gen_class())
    passes("discriminator", disc_class())


def test_figure_1_linear_projection_passes():
    """§3: G's first layer may be a matrix multiplication reshaped to 4x4 (Figure 1)."""
    class ProjectedG(nn.Module):
        def __init__(self, nz=100, ngf=64, nc=3):
            super().__init__()
            self.c = ngf * 8
            self.project = nn.Linear(nz, self.c * 16)
            chans = [self.c, ngf * 4, ngf * 2, ngf]
            mods = [nn.BatchNorm2d(self.c), nn.ReLU()]
            for a, b in zip(chans, chans[1:]):
                mods += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
            self.main = nn.Sequential(*mods, nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

        def forward(self, z):
            return self.main(self.project(z.flatten(1)).view(-1, self.c, 4, 4))
    passes("generator", ProjectedG)


# --------------------------------------------------------------------------- weight init
def init_fn(*, std=0.02, mean=0.0, types=(nn.Conv2d, nn.ConvTranspose2d), bn="ok"):
    def init(m):
        if type(m) in types:
            m.weight.data.normal_(mean, std)
        elif isinstance(m, nn.BatchNorm2d) and bn != "skip":
            m.weight.data.normal_(1.0 if bn != "zero_centred" else 0.0, 0.02)
            m.bias.data.fill_(0.1 if bn == "bias" else 0.0)
    return init


@pytest.mark.parametrize("kwargs, needle", [
    ({"std": 0.2}, "std 0.2"),
    ({"mean": 0.02, "std": 0.0}, "mean +0.020"),
    ({"types": (nn.Conv2d,)}, "ConvTranspose2d layers were not touched"),
    ({"bn": "skip"}, "BatchNorm layers were not initialized"),
    ({"bn": "zero_centred"}, "not 1"),
    ({"bn": "bias"}, "shifts are not zero"),
])
def test_init_mistakes(kwargs, needle):
    assert needle in diagnosis("weights_init", init_fn(**kwargs))


def test_init_correct_passes():
    passes("weights_init", init_fn())
    passes("weights_init", dcgan.weights_init)


# --------------------------------------------------------------------------- training step
def step_fn(*, detach=True, zero_d=True, zero_g=True, saturating=False, swap=False):
    def step(G, D, opt_g, opt_d, real, nz, generator):
        bce = nn.BCEWithLogitsLoss()
        n = len(real)
        fake = G(torch.randn(n, nz, generator=generator))
        y_real, y_fake = torch.full((n,), 0.0 if swap else 1.0), torch.full((n,), 1.0 if swap else 0.0)
        if zero_d:
            D.zero_grad()
        d_loss = bce(D(real), y_real) + bce(D(fake.detach() if detach else fake), y_fake)
        d_loss.backward()
        opt_d.step()
        if zero_g:
            G.zero_grad()
        if saturating:
            g_loss = -bce(D(fake), torch.zeros(n))
        else:
            g_loss = bce(D(fake), y_real)
        g_loss.backward()
        opt_g.step()
        return d_loss.item(), g_loss.item()
    return step


@pytest.mark.parametrize("kwargs, needle", [
    ({"saturating": True}, "saturating loss"),
    ({"swap": True}, "labels are swapped"),
    ({"zero_d": False}, "discriminator's gradients are never zeroed"),
    ({"zero_g": False}, "generator's gradients are not zeroed"),
    ({"detach": False}, "fake.detach()"),
])
def test_train_step_mistakes(kwargs, needle):
    assert needle in diagnosis("train_step", step_fn(**kwargs))


def test_train_step_correct_passes():
    passes("train_step", step_fn())


# --------------------------------------------------------------------------- slerp
def slerp_fn(z0, z1, steps, *, kind="slerp", ts=None, divide=True, unit=False, reverse=False):
    ts = torch.linspace(0, 1, steps) if ts is None else ts
    out = []
    u0, u1 = z0 / torch.linalg.norm(z0), z1 / torch.linalg.norm(z1)
    omega = torch.arccos(torch.clamp(torch.dot(u0, u1), -1, 1))
    for t in ts:
        if kind == "lerp":
            out.append(z0 + t * (z1 - z0))
            continue
        a, b = (u0, u1) if unit else (z0, z1)
        d = torch.sin(omega) if divide else 1.0
        out.append(torch.sin((1 - t) * omega) / d * a + torch.sin(t * omega) / d * b)
    path = torch.stack(out)
    return path.flip(0) if reverse else path


@pytest.mark.parametrize("kwargs, needle", [
    ({"kind": "lerp"}, "straight line"),
    ({"reverse": True}, "from z1 to z0"),
    ({"ts": torch.linspace(0, 1, 9)[1:-1]}, "endpoints z0 and z1 are left out"),
    ({"ts": torch.arange(7) / 7}, "stops before z1"),
    ({"divide": False}, "not divided by sin"),
    ({"unit": True}, "unit vectors"),
])
def test_slerp_mistakes(kwargs, needle):
    assert needle in diagnosis("slerp", lambda z0, z1, steps: slerp_fn(z0, z1, steps, **kwargs))


def test_slerp_correct_passes():
    passes("slerp", slerp_fn)


# --------------------------------------------------------------------------- every exercise
@pytest.mark.parametrize("name", sorted(exercises.EXERCISES))
def test_every_exercise_has_three_mistakes_a_hint_and_a_working_fallback(name, capsys):
    ex = exercises.EXERCISES[name]
    assert len(ex.mistakes) >= 3 and ex.hint and ex.where

    def blank(*args, **kwargs):
        raise NotImplementedError(f"Exercise '{name}': {ex.hint}")
    if name in ("generator", "discriminator"):
        class Blank(nn.Module):
            def __init__(self, *args):
                super().__init__()
                raise NotImplementedError("blank")
        blank = Blank
    if name == "multihead":
        blank = mha_class(blank, blank)
    fallback = exercises.check(name, blank)
    out = capsys.readouterr().out
    assert exercises.NOT_DONE in out and ex.hint in out and ex.fallback_name in out
    # the fallback itself passes the check: the notebook goes on with a correct implementation
    exercises.check(name, fallback, verbose=False)


def test_unknown_exercise_lists_known_names():
    with pytest.raises(KeyError, match="known: attention"):
        exercises.check("atention", lambda: None)
