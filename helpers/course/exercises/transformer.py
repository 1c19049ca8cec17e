"""Transformer exercises (weeks 2-3): attention, masks, multi-head split/merge, positional
encoding, the learning-rate schedule and label smoothing. Each check compares the learner's
result with the classic mistakes' results and names the match."""

from __future__ import annotations

import math

import torch

from helpers import transformer as _T
from helpers.course.exercises.base import call, close, diagnose, fail, register


# ---------------------------------------------------------------- attention (§3.2.1, week 2)
def _attention_variant(q, k, v, mask, *, scale="sqrt", axis=-1, mask_mode="ok", transpose=True):
    kt = k.transpose(-2, -1) if transpose else k
    scores = q @ kt
    d_k = q.size(-1)
    if scale == "sqrt":
        scores = scores / math.sqrt(d_k)
    elif scale == "d_k":
        scores = scores / d_k
    if mask is not None and mask_mode == "ok":
        scores = scores.masked_fill(~mask, float("-inf"))
    elif mask is not None and mask_mode == "inverted":
        scores = scores.masked_fill(mask, float("-inf"))
    elif mask is not None and mask_mode == "zero":
        scores = scores.masked_fill(~mask, 0.0)
    weights = scores.softmax(axis)
    return weights @ v, weights


def _run_attention(fn) -> int:
    name = "attention"
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 4, generator=g) * 2, torch.randn(2, 5, 4, generator=g) * 2,
               torch.randn(2, 5, 6, generator=g))
    mask = torch.ones(2, 1, 5, dtype=torch.bool)
    mask[0, :, 4] = False            # every row keeps some keys and blocks some,
    mask[1, :, 3:] = False           # so an inverted mask is never all-blocked
    on_error = [("mat1 and mat2", "K is not transposed: Q K^T needs k.transpose(-2, -1)",
                 "scores = q @ k.transpose(-2, -1)"),
                ("must match the size", "K is not transposed: Q K^T needs k.transpose(-2, -1)",
                 "scores = q @ k.transpose(-2, -1)"),
                ("expected self and mask to be on the same", "mask dtype", "use a bool mask"),
                ("bool", "the mask must be boolean, True = may attend; masked_fill(~mask, -inf)",
                 "scores.masked_fill(~mask, float('-inf'))")]
    # square inputs first: there a missing transpose is not a shape error, so it shows in the values
    qs, ks, vs = (torch.randn(1, 4, 4, generator=g) for _ in range(3))
    try:
        square = fn(qs, ks, vs, None)
    except NotImplementedError:
        raise
    except Exception:  # noqa: BLE001 - diagnosed on the rectangular inputs below
        square = None
    if square is not None and close(square, _attention_variant(qs, ks, vs, None, transpose=False)):
        fail(name, "K is not transposed (q @ k instead of q @ k^T): on square inputs this even runs.",
              "scores = q @ k.transpose(-2, -1)")
    passed = 0
    for m in (None, mask):
        result = call(name, fn, q, k, v, m, on_error=on_error)
        if not (isinstance(result, tuple) and len(result) == 2):
            fail(name, f"it returned {type(result).__name__}, not a pair.",
                  "return (output, weights): the weights are needed for the heatmaps.")
        out, weights = result
        exp_out, exp_w = _T.scaled_dot_product_attention(q, k, v, m)
        if tuple(weights.shape) != tuple(exp_w.shape):
            if tuple(weights.shape) == (2, 3, 4) or weights.shape[-1] == q.size(-1):
                fail(name, f"weights have shape {tuple(weights.shape)}, expected {tuple(exp_w.shape)}.",
                      "K is not transposed: scores = q @ k.transpose(-2, -1) gives [.., n_q, n_k].")
            fail(name, f"weights have shape {tuple(weights.shape)}, expected [batch, n_q, n_k] = "
                        f"{tuple(exp_w.shape)}.", "scores = q @ k.transpose(-2, -1); softmax over the keys.")
        variants = [
            (_attention_variant(q, k, v, m, scale="none"), "the scores are not divided by sqrt(d_k)",
             "scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  (§3.2.1: keeps the softmax out of "
             "its flat regions)"),
            (_attention_variant(q, k, v, m, scale="d_k"), "the scores are divided by d_k, not sqrt(d_k)",
             "divide by math.sqrt(q.size(-1))"),
            (_attention_variant(q, k, v, m, axis=-2), "the softmax runs over the queries (dim=-2)",
             "softmax over the keys: scores.softmax(dim=-1), so each query's weights sum to 1"),
        ]
        if m is not None:
            variants += [
                (_attention_variant(q, k, v, None), "the mask is ignored: padded keys still get weight",
                 "scores = scores.masked_fill(~mask, float('-inf')) before the softmax"),
                (_attention_variant(q, k, v, m, mask_mode="inverted"),
                 "the mask is inverted: it blocks the keys that may be attended",
                 "our masks are True = may attend, so fill where ~mask is True"),
                (_attention_variant(q, k, v, m, mask_mode="zero"),
                 "blocked scores are set to 0, which still gets weight exp(0) after the softmax",
                 "fill with float('-inf') (or a large negative number), not 0"),
            ]
        passed += diagnose(name, (out, weights), (exp_out, exp_w), variants,
                            "(output, weights)" + (" with a padding mask" if m is not None else ""),
                            "compare line by line with Eq. 1: softmax(Q K^T / sqrt(d_k)) V")
    return passed


register(name="attention", title="scaled dot-product attention (Eq. 1)", where="Transformer week 2",
          hint="scores = Q K^T / sqrt(d_k) (use k.transpose(-2, -1)); masked_fill(~mask, -inf); "
               "softmax over the last axis (the keys); return (weights @ v, weights).",
          run=_run_attention, fallback=lambda c: _T.scaled_dot_product_attention,
          fallback_name="helpers.transformer.scaled_dot_product_attention",
          mistakes=("no 1/sqrt(d_k) scaling", "scaling by d_k", "softmax over the queries",
                    "mask ignored", "mask inverted", "blocked scores set to 0", "K not transposed",
                    "not returning (output, weights)"))


# ---------------------------------------------------------------- masks (§3.2.3, week 2)
def _run_padding_mask(fn) -> int:
    name = "padding_mask"
    tokens = torch.tensor([[5, 7, 2, 9, 3], [4, 8, 6, 1, 1]])
    got = call(name, fn, tokens, 1)
    expected = (tokens != 1)[:, None, :]
    if not torch.is_tensor(got):
        fail(name, f"it returned {type(got).__name__}.", "return a bool tensor: (tokens != pad_id)[:, None, :]")
    if got.dtype != torch.bool:
        fail(name, f"the mask has dtype {got.dtype}, not torch.bool.",
              "compare, don't multiply: (tokens != pad_id) is already bool; masked_fill(~mask) needs bool")
    if tuple(got.shape) == (2, 5):
        fail(name, "the mask is [batch, keys]: it has no query axis, so it does not broadcast "
                    "against scores [batch, n_q, n_k].", "add the query axis: (tokens != pad_id)[:, None, :]")
    if tuple(got.shape) == (2, 5, 1):
        fail(name, "the mask is [batch, length, 1]: it masks queries, not keys.",
              "put the length on the last (keys) axis: (tokens != pad_id)[:, None, :]")
    return diagnose(name, got, expected, [
        ((tokens == 1)[:, None, :], "the mask is inverted: True at the padding",
         "True = may attend, so True at real tokens: tokens != pad_id"),
        ((tokens != 0)[:, None, :], "it uses pad id 0 instead of the pad_id argument",
         "compare with pad_id, the tokenizer's padding id (not always 0)"),
    ], "the padding mask", "mask = (tokens != pad_id)[:, None, :]")


def _run_causal_mask(fn) -> int:
    name = "causal_mask"
    got = call(name, fn, 5)
    if not torch.is_tensor(got):
        fail(name, f"it returned {type(got).__name__}.", "return torch.ones(n, n, dtype=torch.bool).tril()")
    ones = torch.ones(5, 5)
    if got.dtype != torch.bool:
        if close(got, ones.tril()):
            fail(name, "the mask holds 0/1 numbers, not booleans.", "add dtype=torch.bool to torch.ones")
        fail(name, f"the mask has dtype {got.dtype}: an additive (-inf) mask is another convention.",
              "this course uses boolean masks, True = may attend: torch.ones(n, n, dtype=torch.bool).tril()")
    if tuple(got.shape) != (5, 5):
        fail(name, f"shape {tuple(got.shape)}, expected [n, n] = (5, 5).", "torch.ones(n, n, dtype=torch.bool).tril()")
    return diagnose(name, got, ones.tril().bool(), [
        (ones.triu().bool(), "it is the upper triangle: every position sees the future, not the past",
         "use .tril(): row i (a query) may see columns (keys) 0..i"),
        (ones.tril(-1).bool(), "the diagonal is blocked: a position cannot attend to itself "
                               "(and the first row is all blocked, so its softmax is NaN)",
         "use .tril() (diagonal included), not .tril(-1)"),
        (ones.triu(1).bool(), "it marks exactly the future: that is the blocked set, not the allowed set",
         "invert it (~mask) or use .tril(): True = may attend"),
    ], "the causal mask", "torch.ones(n, n, dtype=torch.bool).tril()")


register(name="padding_mask", title="the padding mask", where="Transformer week 2",
          hint="True at real tokens, False at pad_id; add a query axis of size 1: shape [batch, 1, length].",
          run=_run_padding_mask, fallback=lambda c: (lambda tokens, pad_id: (tokens != pad_id)[:, None, :]),
          fallback_name="(tokens != pad_id)[:, None, :] (helpers.transformer.padding_mask is the 4-D version)",
          mistakes=("inverted", "no query axis", "masks queries", "ignores pad_id", "not bool"))
register(name="causal_mask", title="the causal (subsequent) mask", where="Transformer week 2",
          hint="row i (a query) may attend to columns 0..i (keys), diagonal included: a lower triangle of "
               "booleans, shape [n, n].",
          run=_run_causal_mask, fallback=lambda c: (lambda n: torch.ones(n, n, dtype=torch.bool).tril()),
          fallback_name="helpers.transformer.causal_mask (here 2-D)",
          mistakes=("upper triangle", "diagonal blocked", "marks the blocked set", "0/1 not bool", "additive mask"))


# ---------------------------------------------------------------- multi-head split/merge (§3.2.2)
def _ref_split(x, h):
    b, n, d = x.shape
    return x.view(b, n, h, d // h).transpose(1, 2)


def _ref_merge(x):
    b, h, n, d_k = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d_k)


def _run_multihead(cls) -> int:
    name = "multihead"
    d_model, h, b, n = 12, 3, 2, 5
    module = call(name, cls, d_model, h)
    x = torch.arange(b * n * d_model, dtype=torch.float32).view(b, n, d_model)
    view_error = [("view size is not compatible", "merge calls .view on a transposed (non-contiguous) tensor",
                   "use .reshape(...) or .contiguous().view(...) after the transpose")]
    got = call(name, module.split, x, on_error=view_error)
    expected = _ref_split(x, h)
    if tuple(got.shape) != tuple(expected.shape):
        fail(name, f"split gives shape {tuple(got.shape)}, expected [batch, heads, n, d_k] = "
                    f"{tuple(expected.shape)}.", "x.view(b, n, h, d_k).transpose(1, 2)")
    passed = diagnose(name, got, expected, [
        (x.view(b, h, n, d_model // h), "split reshapes straight to [b, h, n, d_k] without a transpose: "
                                        "each 'head' mixes features of different tokens",
         "view as [b, n, h, d_k] first (heads are slices of the feature axis), then .transpose(1, 2)"),
        (x.view(b, n, d_model // h, h).permute(0, 3, 1, 2), "split interleaves the heads: head i takes every "
                                                            "h-th feature instead of a block of d_k",
         "view as [b, n, h, d_k] (h blocks of d_k consecutive features), then .transpose(1, 2)"),
    ], "split(x)", "x.view(b, n, h, d_k).transpose(1, 2)")
    y = torch.randn(b, h, n, d_model // h, generator=torch.Generator().manual_seed(1))
    got = call(name, module.merge, y, on_error=view_error)
    expected = _ref_merge(y)
    if tuple(got.shape) != tuple(expected.shape):
        fail(name, f"merge gives shape {tuple(got.shape)}, expected [batch, n, d_model] = "
                    f"{tuple(expected.shape)}.", "x.transpose(1, 2).reshape(b, n, h * d_k)")
    passed += diagnose(name, got, expected, [
        (y.reshape(b, n, d_model), "merge reshapes [b, h, n, d_k] to [b, n, d_model] without transposing "
                                   "back: tokens and heads get mixed",
         "x.transpose(1, 2).reshape(b, n, h * d_k)"),
        (y.permute(0, 2, 3, 1).reshape(b, n, d_model), "merge interleaves the heads' features",
         "concatenate whole heads: x.transpose(1, 2).reshape(b, n, h * d_k)"),
    ], "merge(heads)", "x.transpose(1, 2).reshape(b, n, h * d_k)")
    passed += diagnose(name, call(name, module.merge, call(name, module.split, x, on_error=view_error),
                                    on_error=view_error), x, [],
                        "merge(split(x))", "merge must undo split exactly")
    return passed


def _multihead_fallback(cls):
    return type(cls.__name__, (cls,), {"split": lambda self, x: _ref_split(x, self.h),
                                       "merge": lambda self, x: _ref_merge(x)})


register(name="multihead", title="multi-head split and merge (§3.2.2)", where="Transformer week 2",
          hint="split: view as [b, n, h, d_k] (each head is a block of d_k consecutive features), then swap "
               "the n and h axes; merge: undo both steps in reverse order (reshape needs a contiguous "
               "tensor, .view does not work after a transpose).",
          run=_run_multihead, fallback=_multihead_fallback,
          fallback_name="the reference split/merge (as in helpers.transformer.MultiHeadAttention)",
          mistakes=("split without transpose", "interleaved heads in split", "merge without transpose",
                    "interleaved heads in merge", ".view on a non-contiguous tensor", "wrong shape"))


# ---------------------------------------------------------------- positional encoding (§3.5, week 3)
def _pe(max_len, d_model, *, swap=False, per_dim=False, concat=False, start=0, multiply=False):
    pos = torch.arange(start, start + max_len, dtype=torch.float64)[:, None]
    if per_dim:
        expo = torch.arange(0, d_model // 2, dtype=torch.float64) / d_model  # i/d instead of 2i/d
    else:
        expo = torch.arange(0, d_model, 2, dtype=torch.float64) / d_model
    angle = pos * torch.pow(10000.0, expo) if multiply else pos / torch.pow(10000.0, expo)
    first, second = (torch.cos, torch.sin) if swap else (torch.sin, torch.cos)
    if concat:
        return torch.cat([first(angle), second(angle)], dim=1).float()
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = first(angle), second(angle)
    return pe.float()


def _run_pe(fn) -> int:
    name = "positional_encoding"
    got = call(name, fn, 50, 16)
    if not torch.is_tensor(got):
        fail(name, f"it returned {type(got).__name__}.", "return a [max_len, d_model] tensor")
    if tuple(got.shape) == (16, 50):
        fail(name, "shape (16, 50): positions and dimensions are swapped.",
              "rows are positions: return a [max_len, d_model] tensor")
    if tuple(got.shape) != (50, 16):
        fail(name, f"shape {tuple(got.shape)}, expected [max_len, d_model] = (50, 16).",
              "pe = torch.zeros(max_len, d_model)")
    return diagnose(name, got.float(), _T.sinusoidal_encoding(50, 16), [
        (_pe(50, 16, swap=True), "sin and cos are swapped", "even dimensions (0, 2, ...) get sin, odd get cos"),
        (_pe(50, 16, per_dim=True), "the exponent uses i/d_model where the paper has 2i/d_model",
         "the exponent of 10000 is 2i/d_model, where 2i = 0, 2, 4, ...: torch.arange(0, d_model, 2) / d_model"),
        (_pe(50, 16, concat=True), "sin and cos are concatenated as two halves instead of interleaved",
         "interleave: pe[:, 0::2] = sin(angle), pe[:, 1::2] = cos(angle)"),
        (_pe(50, 16, start=1), "positions start at 1", "pos = torch.arange(max_len): the first position is 0"),
        (_pe(50, 16, multiply=True), "pos is multiplied by 10000^(2i/d) instead of divided",
         "angle = pos / 10000^(2i/d_model): wavelengths grow from 2π to 10000·2π"),
    ], "the encoding", "PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(same angle)")


register(name="positional_encoding", title="sinusoidal positional encoding (§3.5)", where="Transformer week 3",
          hint="angle = pos / 10000^(2i/d_model) for 2i = 0, 2, 4, ...; pe[:, 0::2] = sin(angle), "
               "pe[:, 1::2] = cos(angle); shape [max_len, d_model].",
          run=_run_pe, fallback=lambda c: _T.sinusoidal_encoding,
          fallback_name="helpers.transformer.sinusoidal_encoding",
          mistakes=("sin/cos swapped", "i instead of 2i", "halves not interleaved", "positions from 1",
                    "multiplied instead of divided", "transposed shape"))


# ---------------------------------------------------------------- learning-rate schedule (Eq. 3)
_LR_STEPS = (1, 10, 100, 1000, 3999, 4000, 4001, 8000, 100000)


def _lr(step, d_model, warmup, variant=""):
    scale = 1.0 if variant == "no_scale" else d_model ** -0.5
    warm = step * warmup ** (-0.5 if variant == "warm_exp" else -1.5)
    decay = step ** -0.5
    return scale * (max(decay, warm) if variant == "max" else min(decay, warm))


def _run_lr(fn) -> int:
    name = "lr_schedule"
    on_error = [("division by zero", "step 0: step ** -0.5 divides by zero",
                 "steps count from 1 (LambdaLR's counter starts at 0: pass i + 1)")]
    got = [float(call(name, fn, s, 512, 4000, on_error=on_error)) for s in _LR_STEPS]
    return diagnose(name, got, [_T.transformer_lr(s, 512, 4000) for s in _LR_STEPS], [
        ([_lr(s, 512, 4000, "no_scale") for s in _LR_STEPS], "the d_model^-0.5 factor is missing",
         "multiply by d_model ** -0.5"),
        ([_lr(s, 512, 4000, "warm_exp") for s in _LR_STEPS], "the warmup term uses warmup^-0.5, not warmup^-1.5",
         "step * warmup_steps ** -1.5: the two terms must meet at step = warmup_steps"),
        ([_lr(s, 512, 4000, "max") for s in _LR_STEPS], "it takes the max of the two terms instead of the min",
         "min(step ** -0.5, step * warmup ** -1.5): warmup, then decay"),
    ], "the learning rates at steps " + ", ".join(map(str, _LR_STEPS)),
        "lrate = d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)")


register(name="lr_schedule", title="the learning-rate schedule (Eq. 3)", where="Transformer week 3",
          hint="d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5), step counting from 1.",
          run=_run_lr, fallback=lambda c: _T.transformer_lr, fallback_name="helpers.transformer.transformer_lr",
          mistakes=("missing d_model^-0.5", "warmup^-0.5", "max instead of min", "step 0 division"))


# ---------------------------------------------------------------- label smoothing (§5.4)
def _smooth(logits, target, eps, pad_id, variant=""):
    vocab = logits.size(-1)
    logp = logits.softmax(-1) if variant == "probs" else logits.log_softmax(-1)
    if variant == "others":
        dist = torch.full_like(logp, eps / (vocab - 1))
        dist.scatter_(-1, target[..., None], 1 - eps)
    elif variant == "no_spread":
        dist = torch.zeros_like(logp).scatter_(-1, target[..., None], 1 - eps)
    else:
        dist = torch.full_like(logp, eps / vocab)
        dist.scatter_(-1, target[..., None], 1 - eps + eps / vocab)
    loss = -(dist * logp).sum(-1)
    keep = target != pad_id
    if variant == "no_pad":
        return loss.mean()
    if variant == "sum":
        return loss[keep].sum()
    return loss[keep].mean()


def _run_smoothing(fn) -> int:
    name = "label_smoothing"
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 9, generator=g) * 2
    target = torch.tensor([[3, 4, 5, 8, 1, 1], [2, 2, 7, 6, 5, 4]])
    args = (logits, target, 0.1, 1)
    got = call(name, fn, *args)
    if not torch.is_tensor(got) or got.dim() != 0:
        fail(name, f"it returned {tuple(got.shape) if torch.is_tensor(got) else type(got).__name__}, "
                    f"not a scalar.", "average over the non-padding tokens: loss[target != pad_id].mean()")
    return diagnose(name, got, _T.label_smoothed_loss(*args), [
        (_smooth(logits, target, 0.0, 1), "there is no smoothing: this is plain cross-entropy",
         "the target puts 1 - eps + eps/V on the right token and eps/V on every token"),
        (_smooth(*args, variant="no_pad"), "padding positions are counted in the loss",
         "keep = target != pad_id; return loss[keep].mean()"),
        (_smooth(*args, variant="sum"), "the loss is summed over tokens, not averaged",
         "take the mean over the non-padding tokens (the scale of the loss sets the effective LR)"),
        (_smooth(*args, variant="probs"), "it uses probabilities (softmax) where the loss needs log-probabilities",
         "log_probs = logits.log_softmax(-1)"),
        (_smooth(*args, variant="no_spread"), "the eps mass is removed from the right token but not spread "
                                              "over the vocabulary",
         "fill the target with eps / V first, then put 1 - eps + eps / V on the right token"),
        (_smooth(*args, variant="others"), "eps is spread over the V - 1 wrong tokens only (the Annotated "
                                           "Transformer's variant); this course follows PyTorch, which "
                                           "spreads it over all V",
         "true_dist = full(eps / V); scatter 1 - eps + eps / V at the target"),
    ], "the loss", "compare with F.cross_entropy(logits.flatten(0, 1), target.flatten(), "
                   "label_smoothing=eps, ignore_index=pad_id)")


register(name="label_smoothing", title="label-smoothed cross-entropy (§5.4)", where="Transformer week 3",
          hint="log_probs = logits.log_softmax(-1); target distribution eps/V everywhere and "
               "1 - eps + eps/V at the right token; loss = -(dist * log_probs).sum(-1), mean over "
               "non-padding tokens.",
          run=_run_smoothing, fallback=lambda c: _T.label_smoothed_loss,
          fallback_name="helpers.transformer.label_smoothed_loss",
          mistakes=("no smoothing", "padding counted", "sum not mean", "probabilities not log-probabilities",
                    "mass not spread", "spread over V-1"))
