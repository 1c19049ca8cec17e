"""Issue #21: the exercise checks run the learner's code under several conditions (3-D and 4-D
attention, ids below and above the pad id, several sizes, train and eval mode), name the newer
classic mistakes, localize unknown ones (helpers.course.exercises.diagnose), and still pass
correct solutions written in other styles."""

import math
import time

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers import dcgan
from helpers.course import exercises
from helpers.course.exercises import ExerciseError
from helpers.course.exercises.diagnose import MARK, Case, close, findings, judge


def diagnosis(name, candidate):
    with pytest.raises(ExerciseError) as info:
        exercises.check(name, candidate, verbose=False)
    return str(info.value)


def passes(name, candidate):
    assert exercises.check(name, candidate, verbose=False) is candidate


# --------------------------------------------------------------------------- the diagnosis layer
def found(got, expected, **kw):
    return " | ".join(w for w, _ in findings(got, expected, Case("c", got, expected, **kw)))


def test_findings_name_the_kind_of_difference():
    e = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    assert "= √d_k" in found(e * 0.5, e, factors={"√d_k": 2.0})           # divided by a known factor
    assert "times 3" in found(e * 3, e)
    assert "constant offset" in found(e + 0.25, e)
    sq = torch.randn(5, 5)
    assert "transposed" in found(sq.T, sq)
    assert "permuted" in found(e.T.contiguous(), e)                          # non-square: shape is a permutation
    assert "only the shape is wrong" in found(e[None], e)
    assert "odd" in found(torch.cat([e[:, :1], e[:, 1:2] + 1, e[:, 2:3], e[:, 3:4] + 1, e[:, 4:5], e[:, 5:] + 1], 1), e)
    seq = torch.arange(10.0) ** 2
    assert "off by one" in found(torch.cat([seq[:1] * 0, seq[:-1]]), seq)
    blocks = torch.arange(24.0).view(2, 3, 4)
    assert "another order" in found(blocks.flip(1), blocks, axes=("batch", "heads", "features"))
    assert "NaN" in found(torch.full((3,), float("nan")), torch.ones(3))


def test_scalars_only_report_known_factors():
    assert found(torch.tensor(2.0), torch.tensor(1.0)) == ""
    assert "= mean over V" in found(torch.tensor(0.5), torch.tensor(1.0), factors={"mean over V": 0.5})


def test_judge_localizes_the_condition_and_keeps_the_catalogue_first():
    a, b = torch.ones(3), torch.zeros(3)
    with pytest.raises(ExerciseError, match="right for plain - wrong for masked") as info:
        judge("x", [Case("plain", a, a), Case("masked", b, a)], what="it", fix="f", look={"masked": "the mask"})
    assert MARK in str(info.value) and "Look at: the mask" in str(info.value)
    with pytest.raises(ExerciseError, match="classic mistake: the classic one"):
        judge("x", [Case("c", b, a, [(lambda: b, "the classic one", "fix it")])], what="it", fix="f")
    assert judge("x", [Case("c", a, a), Case("d", a.clone(), a)], what="it", fix="f") == 2


def test_relative_tolerance_for_tiny_values():
    assert not close([1.7e-7], [1.7e-7 * 1.01], rtol=1e-4, atol=1e-12)
    assert close([1.7e-7], [1.7e-7 * (1 + 1e-6)], rtol=1e-4, atol=1e-12)


# --------------------------------------------------------------------------- attention
def attn(post=None, dim=-1, scale_after=False, mask_after=False, hard3d=False, transpose_w=False):
    def f(q, k, v, mask=None):
        s = q @ (k.transpose(1, 2) if hard3d else k.transpose(-2, -1))
        if not scale_after:
            s = s / math.sqrt(q.size(-1))
        if mask is not None and not mask_after:
            s = s.masked_fill(~mask, float("-inf"))
        w = s.softmax(dim)
        if scale_after:
            w = w / math.sqrt(q.size(-1))
        if mask is not None and mask_after:
            w = w.masked_fill(~mask, 0.0)
        if post:
            w = post(w)
        return w @ v, (w.transpose(-2, -1) if transpose_w else w)
    return f


@pytest.mark.parametrize("fn, needle", [
    (attn(scale_after=True), "divided by sqrt(d_k) after the softmax"),
    (attn(mask_after=True), "the mask is applied after the softmax"),
    (attn(post=lambda w: F.dropout(w, 0.1)), "dropout left on"),
    (attn(dim=2), "softmax runs over the queries"),                 # right on 3-D, wrong on 4-D
    (attn(transpose_w=True), "weights are returned transposed"),
])
def test_attention_new_catalogue(fn, needle):
    assert needle in diagnosis("attention", fn)


def test_attention_hard_coded_3d_axes_are_localized_to_4d():
    msg = diagnosis("attention", attn(hard3d=True))
    assert MARK in msg and "right for 3-D inputs without a mask" in msg and "negative axes" in msg


def test_attention_wrong_scale_is_named_by_its_factor():
    def by_dv(q, k, v, mask=None):
        s = q @ k.transpose(-2, -1) / math.sqrt(v.size(-1))
        if mask is not None:
            s = s.masked_fill(~mask, float("-inf"))
        return s.softmax(-1) @ v, s.softmax(-1)
    assert "= √d_v" in diagnosis("attention", by_dv)


# --------------------------------------------------------------------------- masks, heads, PE
def test_padding_mask_new_catalogue():
    assert "only ids above pad_id" in diagnosis("padding_mask", lambda t, p: (t > p)[:, None, :])
    assert "4-D" in diagnosis("padding_mask", lambda t, p: (t != p)[:, None, None, :])
    msg = diagnosis("padding_mask", lambda t, p: (t != 1)[:, None, :])   # a hard-coded pad id
    assert "token ids [1, 3]" in msg and MARK in msg


def test_causal_mask_tril_1_and_hard_coded_size():
    assert "may also see the next one" in diagnosis("causal_mask", lambda n: torch.ones(n, n, dtype=torch.bool).tril(1))
    msg = diagnosis("causal_mask", lambda n: torch.ones(5, 5, dtype=torch.bool).tril())
    assert "right for n = 5 - wrong for" in msg and "argument n" in msg


def test_multihead_heads_merged_in_reverse_order():
    class M(nn.Module):
        def __init__(self, d_model, h):
            super().__init__()
            self.h, self.d_k = h, d_model // h

        def split(self, x):
            return x.view(x.size(0), x.size(1), self.h, self.d_k).transpose(1, 2)

        def merge(self, x):
            return torch.cat([x[:, i] for i in reversed(range(self.h))], dim=-1)
    assert "heads together in the wrong order" in diagnosis("multihead", M)


def test_pe_j_over_d_for_every_dimension():
    def pe(n, d):
        pos = torch.arange(n)[:, None].float()
        j = torch.arange(d).float()
        angle = pos / 10000 ** (j / d)
        out = torch.zeros(n, d)
        out[:, 0::2], out[:, 1::2] = angle[:, 0::2].sin(), angle[:, 1::2].cos()
        return out
    assert "its own index in the exponent" in diagnosis("positional_encoding", pe)


# --------------------------------------------------------------------------- LR, label smoothing
def test_lr_off_by_one_and_relative_tolerance():
    ref = lambda s, d, w: d ** -0.5 * min(s ** -0.5, s * w ** -1.5)  # noqa: E731
    assert "step + 1" in diagnosis("lr_schedule", lambda s, d, w: ref(s + 1, d, w))
    assert "rate at step 1 is 0" in diagnosis("lr_schedule", lambda s, d, w: ref(s - 1, d, w) if s > 1 else 0.0)
    # 1 % off everywhere: far below the old absolute tolerance of 1e-5, caught relatively
    assert "times 1.01" in diagnosis("lr_schedule", lambda s, d, w: 1.01 * ref(s, d, w))


def smoothed(no_plus=False, kl_probs=False):
    def f(logits, target, eps, pad_id):
        V = logits.size(-1)
        keep = target != pad_id
        dist = torch.full_like(logits, eps / V).scatter(-1, target[..., None], 1 - eps + (0 if no_plus else eps / V))
        if kl_probs:
            return nn.KLDivLoss(reduction="batchmean")(logits.softmax(-1)[keep], dist[keep])
        return -(dist * logits.log_softmax(-1)).sum(-1)[keep].mean()
    return f


def test_label_smoothing_new_catalogue():
    assert "without the + eps/V" in diagnosis("label_smoothing", smoothed(no_plus=True))
    assert "KLDivLoss gets probabilities" in diagnosis("label_smoothing", smoothed(kl_probs=True))


# --------------------------------------------------------------------------- DCGAN nets by behaviour
def G_of(*, act=nn.ReLU, relu_before_tanh=False):
    class G(nn.Module):
        def __init__(self, nz=100, ngf=64, nc=3):
            super().__init__()
            ch = [nz, ngf * 8, ngf * 4, ngf * 2, ngf]
            mods = []
            for i, (a, b) in enumerate(zip(ch, ch[1:])):
                mods += [nn.ConvTranspose2d(a, b, 4, 1 if i == 0 else 2, 0 if i == 0 else 1, bias=False),
                         nn.BatchNorm2d(b), act()]
            mods += [nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False)] + ([nn.ReLU()] if relu_before_tanh else [])
            self.net = nn.Sequential(*mods, nn.Tanh())

        def forward(self, z):
            return self.net(z.view(z.size(0), -1, 1, 1))
    return G


def D_of(*, widths=(1, 2, 4, 8), tail=(), slope=0.2):
    class D(nn.Module):
        def __init__(self, nc=3, ndf=64):
            super().__init__()
            ch = [nc] + [ndf * w for w in widths]
            mods = []
            for i, (a, b) in enumerate(zip(ch, ch[1:])):
                mods += [nn.Conv2d(a, b, 4, 2, 1, bias=False)] + ([nn.BatchNorm2d(b)] if i else []) + [nn.LeakyReLU(slope)]
            self.net = nn.Sequential(*mods, nn.Conv2d(ch[-1], 1, 4, 1, 0, bias=False), *[t() for t in tail])

        def forward(self, x):
            return self.net(x).flatten()
    return D


@pytest.mark.parametrize("cls, needle", [
    (G_of(act=nn.Identity), "no ReLU"),
    (G_of(relu_before_tanh=True), "ReLU before the final Tanh"),
])
def test_generator_behaviour(cls, needle):
    assert needle in diagnosis("generator", cls)


@pytest.mark.parametrize("cls, needle", [
    (D_of(tail=(lambda: nn.LeakyReLU(0.2),)), "an activation after D's last layer"),
    (D_of(tail=(lambda: nn.BatchNorm2d(1),)), "BatchNorm2d after D's last layer"),
    (D_of(widths=(1, 1, 1, 1)), "channels double"),
])
def test_discriminator_behaviour(cls, needle):
    assert needle in diagnosis("discriminator", cls)


def test_functional_activations_are_judged_by_what_they_do():
    class D(nn.Module):
        def __init__(self, nc=3, ndf=64, slope=0.2):
            super().__init__()
            self.slope = slope
            self.convs = nn.ModuleList([nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
                                        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
                                        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False)])
            self.bns = nn.ModuleList([nn.Identity()] + [nn.BatchNorm2d(ndf * m) for m in (2, 4, 8)])
            self.head = nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False)

        def forward(self, x):
            for c, bn in zip(self.convs, self.bns):
                x = F.leaky_relu(bn(c(x)), self.slope)
            return self.head(x).view(-1)
    passes("discriminator", D)

    class DefaultSlope(D):
        def __init__(self, nc=3, ndf=64):
            super().__init__(nc, ndf, slope=0.01)
    assert "slope 0.01" in diagnosis("discriminator", DefaultSlope)


# --------------------------------------------------------------------------- init, train step, slerp
def test_init_batchnorm_scale_exactly_one_is_named_as_such():
    def init(m):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1.0)
            nn.init.zeros_(m.bias)
    msg = diagnosis("weights_init", init)
    assert "exactly 1" in msg and "not initialized" not in msg


def step_of(*, double_sigmoid=False, bce_on_logits=False):
    def step(G, D, opt_g, opt_d, real, nz, rng):
        b = real.size(0)
        d = (lambda x: torch.sigmoid(D(x))) if double_sigmoid else D
        loss = F.binary_cross_entropy if bce_on_logits else F.binary_cross_entropy_with_logits
        fake = G(torch.randn(b, nz, generator=rng))
        opt_d.zero_grad()
        ld = loss(d(real), torch.ones(b)) + loss(d(fake.detach()), torch.zeros(b))
        ld.backward()
        opt_d.step()
        opt_g.zero_grad()
        lg = loss(d(fake), torch.ones(b))
        lg.backward()
        opt_g.step()
        return ld.item(), lg.item()
    return step


def test_train_step_double_sigmoid_and_bce_on_logits():
    assert "double sigmoid" in diagnosis("train_step", step_of(double_sigmoid=True))
    assert "BCE on logits" in diagnosis("train_step", step_of(bce_on_logits=True))


def test_slerp_missing_column_axis_is_named():
    def no_col(z0, z1, steps):
        t = torch.linspace(0, 1, steps)
        om = torch.acos((z0 / z0.norm()) @ (z1 / z1.norm()))
        return (torch.sin((1 - t) * om) * z0 + torch.sin(t * om) * z1) / torch.sin(om)
    msg = diagnosis("slerp", no_col)
    assert "do not broadcast" in msg and "[:, None]" in msg


# --------------------------------------------------------------------------- no false alarms
def _mha(split, merge):
    class M(nn.Module):
        def __init__(self, d_model, h):
            super().__init__()
            self.h, self.d_k = h, d_model // h
    M.split, M.merge = split, merge
    return M


class GFunctional(nn.Module):
    """Correct G with functional activations and a Linear projection (Figure 1)."""

    def __init__(self, nz=100, ngf=64, nc=3):
        super().__init__()
        self.c = ngf * 8
        self.proj = nn.Linear(nz, self.c * 16, bias=False)
        self.bn0 = nn.BatchNorm2d(self.c)
        self.ups = nn.ModuleList(nn.ConvTranspose2d(a, b, 4, 2, 1) for a, b in
                                 ((ngf * 8, ngf * 4), (ngf * 4, ngf * 2), (ngf * 2, ngf)))
        self.bns = nn.ModuleList(nn.BatchNorm2d(c) for c in (ngf * 4, ngf * 2, ngf))
        self.out = nn.ConvTranspose2d(ngf, nc, 4, 2, 1)

    def forward(self, z):
        x = F.relu(self.bn0(self.proj(z.flatten(1)).view(-1, self.c, 4, 4)))
        for up, bn in zip(self.ups, self.bns):
            x = F.relu(bn(up(x)))
        return torch.tanh(self.out(x))


CORRECT = {
    "attention": [
        lambda q, k, v, mask=None: (lambda w: (w @ v, w))(
            (torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(k.size(-1))).masked_fill(
                torch.zeros((), dtype=torch.bool) if mask is None else ~mask, -1e9).softmax(-1)),
        lambda q, k, v, mask=None: (lambda s: (F.softmax(s, -1) @ v, F.softmax(s, -1)))(
            torch.where(torch.ones((), dtype=torch.bool) if mask is None else mask,
                        torch.einsum("...id,...jd->...ij", q, k) / q.shape[-1] ** 0.5, float("-inf"))),
    ],
    "padding_mask": [lambda t, p: torch.ne(t, p).unsqueeze(-2), lambda t, p: (t - p).bool()[:, None, :]],
    "causal_mask": [lambda n: ~torch.ones(n, n, dtype=torch.bool).triu(1),
                    lambda n: torch.tril(torch.ones(n, n, dtype=torch.bool), diagonal=0)],
    "multihead": [_mha(lambda s, x: x.reshape(*x.shape[:2], s.h, -1).permute(0, 2, 1, 3),
                       lambda s, x: x.permute(0, 2, 1, 3).contiguous().view(x.size(0), x.size(2), -1)),
                  _mha(lambda s, x: torch.stack(x.chunk(s.h, dim=-1), dim=1),
                       lambda s, x: torch.cat(x.unbind(1), dim=-1))],
    "positional_encoding": [
        lambda n, d: torch.stack([torch.sin(torch.arange(n)[:, None] / 10000 ** (torch.arange(0, d, 2) / d)),
                                  torch.cos(torch.arange(n)[:, None] / 10000 ** (torch.arange(0, d, 2) / d))],
                                 dim=-1).flatten(1),
        lambda n, d: torch.tensor([[math.sin(p / 10000 ** (2 * (j // 2) / d)) if j % 2 == 0 else
                                    math.cos(p / 10000 ** (2 * (j // 2) / d)) for j in range(d)] for p in range(n)]),
    ],
    "lr_schedule": [lambda s, d, w: (d * min(s, w) ** 2 / (w ** 3 if s <= w else s * w ** 2)) ** -0.5 * (min(s, w) / w) ** 2
                    if False else d ** -0.5 * (s * w ** -1.5 if s < w else s ** -0.5),
                    lambda s, d, w: math.pow(d, -0.5) * min(math.pow(s, -0.5), s * math.pow(w, -1.5))],
    "label_smoothing": [
        lambda lo, t, e, p: F.cross_entropy(lo.transpose(1, 2), t, ignore_index=p, label_smoothing=e),
        lambda lo, t, e, p: (lambda lp, keep: (-(1 - e) * lp.gather(-1, t[..., None]).squeeze(-1)
                                                - e * lp.mean(-1))[keep].mean())(lo.log_softmax(-1), t != p),
    ],
    "generator": [GFunctional, dcgan.Generator.__subclasses__ and (lambda nz=100, ngf=64, nc=3: dcgan.Generator(nz, ngf, nc, 64))],
    "discriminator": [lambda nc=3, ndf=64: dcgan.Discriminator(nc, ndf, 64), D_of()],
    "weights_init": [dcgan.weights_init,
                     lambda m: (nn.init.normal_(m.weight, 0, 0.02) if "Conv" in type(m).__name__ else
                                (nn.init.normal_(m.weight, 1, 0.02), nn.init.constant_(m.bias, 0))
                                if "BatchNorm" in type(m).__name__ else None)],
    "train_step": [step_of(),
                   lambda G, D, og, od, real, nz, rng: (lambda b, fake: (
                       od.zero_grad(),
                       (ld := F.binary_cross_entropy(torch.sigmoid(D(real)), torch.ones(b))
                        + F.binary_cross_entropy(torch.sigmoid(D(fake.detach())), torch.zeros(b))).backward(),
                       od.step(), og.zero_grad(),
                       (lg := nn.BCEWithLogitsLoss()(D(fake), torch.ones(b))).backward(), og.step(),
                       (ld.item(), lg.item()))[-1])(real.size(0), G(torch.randn(real.size(0), nz, generator=rng)))],
    "slerp": [
        lambda z0, z1, steps: torch.stack([(math.sin((1 - t) * om) * z0 + math.sin(t * om) * z1) / math.sin(om)
                                           for om in [float(torch.acos(F.cosine_similarity(z0, z1, dim=0)))]
                                           for t in torch.linspace(0, 1, steps).tolist()]),
        lambda z0, z1, steps: dcgan.interpolate(z0, z1, steps),
    ],
}


@pytest.mark.parametrize("name, i", [(n, i) for n, fns in CORRECT.items() for i in range(len(fns))])
def test_correct_alternatives_pass(name, i):
    passes(name, CORRECT[name][i])


def test_every_exercise_has_two_correct_alternatives():
    assert set(CORRECT) == set(exercises.EXERCISES) and all(len(v) >= 2 for v in CORRECT.values())


# --------------------------------------------------------------------------- cost
def test_checks_call_the_learner_a_bounded_number_of_times():
    """Sane, not speed-dependent: count the learner's calls; report wall time only as a bound far
    above what 2 busy cores need (measured: < 0.7 s per check, train step included)."""
    calls = {"n": 0}
    ref = CORRECT["train_step"][0]

    def counted(*args):
        calls["n"] += 1
        return ref(*args)
    start = time.perf_counter()
    passes("train_step", counted)
    assert calls["n"] == 2                      # two steps, no replays of the learner's code
    calls["n"] = 0
    from helpers.transformer import scaled_dot_product_attention as sdpa

    def att(*args):
        calls["n"] += 1
        return sdpa(*args)
    passes("attention", att)
    assert calls["n"] <= 7                      # square inputs, a repeat (randomness), 4 conditions + the pair check
    assert time.perf_counter() - start < 60
