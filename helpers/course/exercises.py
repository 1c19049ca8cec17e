"""Exercise checks that diagnose the mistake, not just say "wrong" (both tracks).

Every week's notebook marks the core pieces the seed asks you to write as exercises::

    def attention(q, k, v, mask=None):
        # BEGIN SOLUTION attention
        ...
        # END SOLUTION

    attention = exercises.check("attention", attention)

``make student`` turns the solution notebooks into exercise notebooks (``exercises/``) where
each solution block is a stub that raises ``NotImplementedError`` with a hint. The check cell
then does one of three things:

* your code is right: it says so and returns your code, which the rest of the notebook uses;
* your code is wrong: it raises :class:`ExerciseError` naming the most likely mistake
  (e.g. "softmax over the wrong axis"), found by comparing your result with the results of
  the classic mistakes on the same small inputs;
* the blank is still a blank: it prints a friendly "not done yet" with the hint and returns
  the tested version from ``helpers``, so you can run the rest of the notebook and come back.

Each exercise lists the mistakes it recognizes in :data:`EXERCISES`; ``tests/test_exercises.py``
feeds a learner-style implementation of every one of them to the check and asserts its message.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers import dcgan as _dcgan
from helpers import transformer as _T


class ExerciseError(AssertionError):
    """Your exercise gives a wrong result; the message names the likely mistake and the fix."""


NOT_DONE = "is not done yet"
REQUIRE_SOLUTIONS_ENV = "CURRICULUM_REQUIRE_SOLUTIONS"  # set by `make test` for the solution notebooks


@dataclass(frozen=True)
class Exercise:
    """One exercise: where it is taught, a hint for the blank, how to check and diagnose it,
    and what the rest of the notebook uses until it is done."""

    name: str
    title: str
    where: str                      # track and week, e.g. "Transformer week 2"
    hint: str
    run: Callable[[Any], int]       # raises ExerciseError; returns the number of checks passed
    fallback: Callable[[Any], Any]  # candidate -> what the notebook uses while it is a blank
    fallback_name: str
    mistakes: Sequence[str] = field(default_factory=tuple)  # what the diagnosis recognizes


EXERCISES: dict[str, Exercise] = {}


def _register(**kwargs) -> None:
    ex = Exercise(**kwargs)
    EXERCISES[ex.name] = ex


def hint(name: str) -> str:
    """The hint for exercise ``name`` (used by ``make student`` for the stubs)."""
    return _get(name).hint


def _get(name: str) -> Exercise:
    if name not in EXERCISES:
        raise KeyError(f"no exercise named {name!r}; known: {', '.join(sorted(EXERCISES))}")
    return EXERCISES[name]


def check(name: str, candidate: Any, *, verbose: bool = True) -> Any:
    """Check your solution of exercise ``name`` and return what the notebook should use next
    (your code when it is right; the tested version while it is still a blank). Raises
    :class:`ExerciseError` with a diagnosis when it is wrong. Introduced in the week of each
    exercise (see :data:`EXERCISES`)."""
    ex = _get(name)
    try:
        passed = ex.run(candidate)
    except NotImplementedError as blank:
        if os.environ.get(REQUIRE_SOLUTIONS_ENV, "").strip() not in ("", "0"):
            raise ExerciseError(f"Exercise '{name}' is a blank, but ${REQUIRE_SOLUTIONS_ENV} is set "
                                f"(the solution notebooks must solve every exercise): {blank}") from blank
        if verbose:
            print(f"⏸ Exercise '{name}' ({ex.title}, {ex.where}) {NOT_DONE}.\n"
                  f"  Hint: {ex.hint}\n"
                  f"  Until you write it, the rest of this notebook uses the tested version, "
                  f"{ex.fallback_name}.")
            if str(blank) and ex.hint not in str(blank):
                print(f"  ({blank})")
        return ex.fallback(candidate)
    if verbose:
        print(f"✓ Exercise '{name}' ({ex.title}): all {passed} checks passed")
    return candidate


# --------------------------------------------------------------------------- diagnosis
def _fail(name: str, what: str, fix: str) -> None:
    raise ExerciseError(f"Exercise '{name}': {what}\n  Fix: {fix}")


def _close(a, b, atol: float = 1e-5) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_close(x, y, atol) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-5, abs_tol=atol)
    if isinstance(a, (tuple, list)) != isinstance(b, (tuple, list)):
        return False
    try:
        a, b = torch.as_tensor(a), torch.as_tensor(b)
    except (TypeError, ValueError, RuntimeError):
        return False
    if a.shape != b.shape:
        return False
    a, b = a.double(), b.double()
    both_nan = torch.isnan(a) & torch.isnan(b)
    same_inf = torch.isinf(a) & (a == b)
    ok = both_nan | same_inf | ((a - b).abs() <= atol + 1e-5 * b.abs())
    return bool(ok.all())


def _max_err(a, b) -> str:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) and len(a) == len(b):
        return ", ".join(_max_err(x, y) for x, y in zip(a, b))
    try:
        return f"{float((torch.as_tensor(a).double() - torch.as_tensor(b).double()).abs().max()):.3g}"
    except Exception:  # shapes differ
        return "n/a"


def _diagnose(name: str, got, expected, mistakes: Sequence[tuple[Any, str, str]], what: str,
              generic_fix: str) -> int:
    """Pass if ``got`` matches ``expected``; otherwise name the first mistake whose result
    ``got`` matches; otherwise report the difference and list the usual suspects."""
    if _close(got, expected):
        return 1
    for mistake_result, message, fix in mistakes:
        if mistake_result is not None and _close(got, mistake_result):
            _fail(name, f"{what} matches a classic mistake: {message}", fix)
    _fail(name, f"{what} differs from the reference (max abs error {_max_err(got, expected)}) and "
                f"matches none of the classic mistakes this check knows.", generic_fix)


def _call(name: str, fn, *args, on_error: Sequence[tuple[str, str, str]] = (), **kwargs):
    """Call the learner's code; NotImplementedError passes through (a blank), any other
    exception becomes an ExerciseError naming the likely cause."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as error:  # noqa: BLE001 - we translate every learner error
        text = f"{type(error).__name__}: {error}"
        for needle, message, fix in on_error:
            if needle.lower() in text.lower():
                _fail(name, f"your code raised {text.splitlines()[0]!r}. Likely: {message}", fix)
        _fail(name, f"your code raised {text.splitlines()[0]!r}.",
              "run it on the small inputs in the cell above and print the shapes at each line.")


# =========================================================================== Transformer
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
    if square is not None and _close(square, _attention_variant(qs, ks, vs, None, transpose=False)):
        _fail(name, "K is not transposed (q @ k instead of q @ k^T): on square inputs this even runs.",
              "scores = q @ k.transpose(-2, -1)")
    passed = 0
    for m in (None, mask):
        result = _call(name, fn, q, k, v, m, on_error=on_error)
        if not (isinstance(result, tuple) and len(result) == 2):
            _fail(name, f"it returned {type(result).__name__}, not a pair.",
                  "return (output, weights): the weights are needed for the heatmaps.")
        out, weights = result
        exp_out, exp_w = _T.scaled_dot_product_attention(q, k, v, m)
        if tuple(weights.shape) != tuple(exp_w.shape):
            if tuple(weights.shape) == (2, 3, 4) or weights.shape[-1] == q.size(-1):
                _fail(name, f"weights have shape {tuple(weights.shape)}, expected {tuple(exp_w.shape)}.",
                      "K is not transposed: scores = q @ k.transpose(-2, -1) gives [.., n_q, n_k].")
            _fail(name, f"weights have shape {tuple(weights.shape)}, expected [batch, n_q, n_k] = "
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
        passed += _diagnose(name, (out, weights), (exp_out, exp_w), variants,
                            "(output, weights)" + (" with a padding mask" if m is not None else ""),
                            "compare line by line with Eq. 1: softmax(Q K^T / sqrt(d_k)) V")
    return passed


_register(name="attention", title="scaled dot-product attention (Eq. 1)", where="Transformer week 2",
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
    got = _call(name, fn, tokens, 1)
    expected = (tokens != 1)[:, None, :]
    if not torch.is_tensor(got):
        _fail(name, f"it returned {type(got).__name__}.", "return a bool tensor: (tokens != pad_id)[:, None, :]")
    if got.dtype != torch.bool:
        _fail(name, f"the mask has dtype {got.dtype}, not torch.bool.",
              "compare, don't multiply: (tokens != pad_id) is already bool; masked_fill(~mask) needs bool")
    if tuple(got.shape) == (2, 5):
        _fail(name, "the mask is [batch, keys]: it has no query axis, so it does not broadcast "
                    "against scores [batch, n_q, n_k].", "add the query axis: (tokens != pad_id)[:, None, :]")
    if tuple(got.shape) == (2, 5, 1):
        _fail(name, "the mask is [batch, length, 1]: it masks queries, not keys.",
              "put the length on the last (keys) axis: (tokens != pad_id)[:, None, :]")
    return _diagnose(name, got, expected, [
        ((tokens == 1)[:, None, :], "the mask is inverted: True at the padding",
         "True = may attend, so True at real tokens: tokens != pad_id"),
        ((tokens != 0)[:, None, :], "it uses pad id 0 instead of the pad_id argument",
         "compare with pad_id, the tokenizer's padding id (not always 0)"),
    ], "the padding mask", "mask = (tokens != pad_id)[:, None, :]")


def _run_causal_mask(fn) -> int:
    name = "causal_mask"
    got = _call(name, fn, 5)
    if not torch.is_tensor(got):
        _fail(name, f"it returned {type(got).__name__}.", "return torch.ones(n, n, dtype=torch.bool).tril()")
    ones = torch.ones(5, 5)
    if got.dtype != torch.bool:
        if _close(got, ones.tril()):
            _fail(name, "the mask holds 0/1 numbers, not booleans.", "add dtype=torch.bool to torch.ones")
        _fail(name, f"the mask has dtype {got.dtype}: an additive (-inf) mask is another convention.",
              "this course uses boolean masks, True = may attend: torch.ones(n, n, dtype=torch.bool).tril()")
    if tuple(got.shape) != (5, 5):
        _fail(name, f"shape {tuple(got.shape)}, expected [n, n] = (5, 5).", "torch.ones(n, n, dtype=torch.bool).tril()")
    return _diagnose(name, got, ones.tril().bool(), [
        (ones.triu().bool(), "it is the upper triangle: every position sees the future, not the past",
         "use .tril(): row i (a query) may see columns (keys) 0..i"),
        (ones.tril(-1).bool(), "the diagonal is blocked: a position cannot attend to itself "
                               "(and the first row is all blocked, so its softmax is NaN)",
         "use .tril() (diagonal included), not .tril(-1)"),
        (ones.triu(1).bool(), "it marks exactly the future: that is the blocked set, not the allowed set",
         "invert it (~mask) or use .tril(): True = may attend"),
    ], "the causal mask", "torch.ones(n, n, dtype=torch.bool).tril()")


_register(name="padding_mask", title="the padding mask", where="Transformer week 2",
          hint="True at real tokens, False at pad_id; add a query axis of size 1: shape [batch, 1, length].",
          run=_run_padding_mask, fallback=lambda c: (lambda tokens, pad_id: (tokens != pad_id)[:, None, :]),
          fallback_name="(tokens != pad_id)[:, None, :] (helpers.transformer.padding_mask is the 4-D version)",
          mistakes=("inverted", "no query axis", "masks queries", "ignores pad_id", "not bool"))
_register(name="causal_mask", title="the causal (subsequent) mask", where="Transformer week 2",
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
    module = _call(name, cls, d_model, h)
    x = torch.arange(b * n * d_model, dtype=torch.float32).view(b, n, d_model)
    view_error = [("view size is not compatible", "merge calls .view on a transposed (non-contiguous) tensor",
                   "use .reshape(...) or .contiguous().view(...) after the transpose")]
    got = _call(name, module.split, x, on_error=view_error)
    expected = _ref_split(x, h)
    if tuple(got.shape) != tuple(expected.shape):
        _fail(name, f"split gives shape {tuple(got.shape)}, expected [batch, heads, n, d_k] = "
                    f"{tuple(expected.shape)}.", "x.view(b, n, h, d_k).transpose(1, 2)")
    passed = _diagnose(name, got, expected, [
        (x.view(b, h, n, d_model // h), "split reshapes straight to [b, h, n, d_k] without a transpose: "
                                        "each 'head' mixes features of different tokens",
         "view as [b, n, h, d_k] first (heads are slices of the feature axis), then .transpose(1, 2)"),
        (x.view(b, n, d_model // h, h).permute(0, 3, 1, 2), "split interleaves the heads: head i takes every "
                                                            "h-th feature instead of a block of d_k",
         "view as [b, n, h, d_k] (h blocks of d_k consecutive features), then .transpose(1, 2)"),
    ], "split(x)", "x.view(b, n, h, d_k).transpose(1, 2)")
    y = torch.randn(b, h, n, d_model // h, generator=torch.Generator().manual_seed(1))
    got = _call(name, module.merge, y, on_error=view_error)
    expected = _ref_merge(y)
    if tuple(got.shape) != tuple(expected.shape):
        _fail(name, f"merge gives shape {tuple(got.shape)}, expected [batch, n, d_model] = "
                    f"{tuple(expected.shape)}.", "x.transpose(1, 2).reshape(b, n, h * d_k)")
    passed += _diagnose(name, got, expected, [
        (y.reshape(b, n, d_model), "merge reshapes [b, h, n, d_k] to [b, n, d_model] without transposing "
                                   "back: tokens and heads get mixed",
         "x.transpose(1, 2).reshape(b, n, h * d_k)"),
        (y.permute(0, 2, 3, 1).reshape(b, n, d_model), "merge interleaves the heads' features",
         "concatenate whole heads: x.transpose(1, 2).reshape(b, n, h * d_k)"),
    ], "merge(heads)", "x.transpose(1, 2).reshape(b, n, h * d_k)")
    passed += _diagnose(name, _call(name, module.merge, _call(name, module.split, x, on_error=view_error),
                                    on_error=view_error), x, [],
                        "merge(split(x))", "merge must undo split exactly")
    return passed


def _multihead_fallback(cls):
    return type(cls.__name__, (cls,), {"split": lambda self, x: _ref_split(x, self.h),
                                       "merge": lambda self, x: _ref_merge(x)})


_register(name="multihead", title="multi-head split and merge (§3.2.2)", where="Transformer week 2",
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
    got = _call(name, fn, 50, 16)
    if not torch.is_tensor(got):
        _fail(name, f"it returned {type(got).__name__}.", "return a [max_len, d_model] tensor")
    if tuple(got.shape) == (16, 50):
        _fail(name, "shape (16, 50): positions and dimensions are swapped.",
              "rows are positions: return a [max_len, d_model] tensor")
    if tuple(got.shape) != (50, 16):
        _fail(name, f"shape {tuple(got.shape)}, expected [max_len, d_model] = (50, 16).",
              "pe = torch.zeros(max_len, d_model)")
    return _diagnose(name, got.float(), _T.sinusoidal_encoding(50, 16), [
        (_pe(50, 16, swap=True), "sin and cos are swapped", "even dimensions (0, 2, ...) get sin, odd get cos"),
        (_pe(50, 16, per_dim=True), "the exponent uses i/d_model where the paper has 2i/d_model",
         "the exponent of 10000 is 2i/d_model, where 2i = 0, 2, 4, ...: torch.arange(0, d_model, 2) / d_model"),
        (_pe(50, 16, concat=True), "sin and cos are concatenated as two halves instead of interleaved",
         "interleave: pe[:, 0::2] = sin(angle), pe[:, 1::2] = cos(angle)"),
        (_pe(50, 16, start=1), "positions start at 1", "pos = torch.arange(max_len): the first position is 0"),
        (_pe(50, 16, multiply=True), "pos is multiplied by 10000^(2i/d) instead of divided",
         "angle = pos / 10000^(2i/d_model): wavelengths grow from 2π to 10000·2π"),
    ], "the encoding", "PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(same angle)")


_register(name="positional_encoding", title="sinusoidal positional encoding (§3.5)", where="Transformer week 3",
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
    got = [float(_call(name, fn, s, 512, 4000, on_error=on_error)) for s in _LR_STEPS]
    return _diagnose(name, got, [_T.transformer_lr(s, 512, 4000) for s in _LR_STEPS], [
        ([_lr(s, 512, 4000, "no_scale") for s in _LR_STEPS], "the d_model^-0.5 factor is missing",
         "multiply by d_model ** -0.5"),
        ([_lr(s, 512, 4000, "warm_exp") for s in _LR_STEPS], "the warmup term uses warmup^-0.5, not warmup^-1.5",
         "step * warmup_steps ** -1.5: the two terms must meet at step = warmup_steps"),
        ([_lr(s, 512, 4000, "max") for s in _LR_STEPS], "it takes the max of the two terms instead of the min",
         "min(step ** -0.5, step * warmup ** -1.5): warmup, then decay"),
    ], "the learning rates at steps " + ", ".join(map(str, _LR_STEPS)),
        "lrate = d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)")


_register(name="lr_schedule", title="the learning-rate schedule (Eq. 3)", where="Transformer week 3",
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
    got = _call(name, fn, *args)
    if not torch.is_tensor(got) or got.dim() != 0:
        _fail(name, f"it returned {tuple(got.shape) if torch.is_tensor(got) else type(got).__name__}, "
                    f"not a scalar.", "average over the non-padding tokens: loss[target != pad_id].mean()")
    return _diagnose(name, got, _T.label_smoothed_loss(*args), [
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


_register(name="label_smoothing", title="label-smoothed cross-entropy (§5.4)", where="Transformer week 3",
          hint="log_probs = logits.log_softmax(-1); target distribution eps/V everywhere and "
               "1 - eps + eps/V at the right token; loss = -(dist * log_probs).sum(-1), mean over "
               "non-padding tokens.",
          run=_run_smoothing, fallback=lambda c: _T.label_smoothed_loss,
          fallback_name="helpers.transformer.label_smoothed_loss",
          mistakes=("no smoothing", "padding counted", "sum not mean", "probabilities not log-probabilities",
                    "mass not spread", "spread over V-1"))


# =========================================================================== DCGAN
def _modules(net):
    return [m for m in net.modules() if not isinstance(m, (nn.Sequential, nn.ModuleList)) and m is not net]


def _run_generator(cls) -> int:
    name = "generator"
    torch.manual_seed(0)
    G = _call(name, cls, 16, 8, 3)
    mods = _modules(G)
    if any(isinstance(m, nn.Linear) for m in mods):
        _fail(name, "it has a Linear layer.", "§3: all-convolutional; project z with a ConvTranspose2d(nz, ngf*8, 4, 1, 0)")
    if any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.Upsample)) for m in mods):
        _fail(name, "it uses pooling or upsampling layers.", "§3: use fractionally-strided convolutions "
                                                            "(ConvTranspose2d with stride 2) to upsample")
    convs = [i for i, m in enumerate(mods) if isinstance(m, nn.ConvTranspose2d)]
    if not convs:
        _fail(name, "no ConvTranspose2d layers.", "see Figure 1: five ConvTranspose2d layers")
    after_last = mods[convs[-1] + 1:]
    if any(isinstance(m, nn.BatchNorm2d) for m in after_last):
        _fail(name, "BatchNorm on the output layer.", "§3: no batchnorm on the generator output layer; "
                                                      "the last ConvTranspose2d goes straight into Tanh")
    if any(isinstance(m, nn.Sigmoid) for m in after_last):
        _fail(name, "the output goes through a Sigmoid (pixels in [0, 1]).",
              "use nn.Tanh(): the data is scaled to [-1, 1] (§3)")
    if not any(isinstance(m, nn.Tanh) for m in after_last):
        _fail(name, "the output layer has no Tanh: pixels are not confined to [-1, 1] like the data.",
              "end with nn.Tanh() after the last ConvTranspose2d (§3)")
    if any(isinstance(m, nn.LeakyReLU) for m in mods):
        _fail(name, "the generator uses LeakyReLU.", "§3: ReLU in the generator, LeakyReLU in the discriminator")
    if not any(isinstance(m, nn.BatchNorm2d) for m in mods):
        _fail(name, "no BatchNorm in the generator.", "BatchNorm2d after every ConvTranspose2d except the last (§3)")
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(1))
    out = _call(name, G, z.view(4, 16, 1, 1), on_error=[("expected input", "a layer's input channels do not "
                "match the previous layer's output channels", "ngf*8 -> ngf*4 -> ngf*2 -> ngf -> nc")])
    if tuple(out.shape) != (4, 3, 64, 64):
        _fail(name, f"G(z) has shape {tuple(out.shape)}, expected (4, 3, 64, 64).",
              "1x1 -> 4x4 with ConvTranspose2d(nz, ngf*8, 4, 1, 0), then four ConvTranspose2d(.., 4, 2, 1), "
              "each doubling the size: 8, 16, 32, 64")
    ref = _dcgan.Generator(16, 8, 3, 64)
    n_mine, n_ref = sum(p.numel() for p in G.parameters()), sum(p.numel() for p in ref.parameters())
    if n_mine != n_ref:
        _fail(name, f"{n_mine:,} parameters where Figure 1's layout has {n_ref:,}.",
              "channels ngf*8, ngf*4, ngf*2, ngf, then nc; bias=False in convolutions followed by BatchNorm")
    return 7


def _run_discriminator(cls) -> int:
    name = "discriminator"
    torch.manual_seed(0)
    D = _call(name, cls, 3, 8)
    mods = _modules(D)
    if any(isinstance(m, nn.Linear) for m in mods):
        _fail(name, "it has a Linear layer.", "§3: all-convolutional; the last layer is Conv2d(ndf*8, 1, 4, 1, 0)")
    if any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in mods):
        _fail(name, "it uses pooling.", "§3: replace pooling with strided convolutions (Conv2d(.., 4, 2, 1))")
    layers = [m for m in mods if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    if len(layers) > 1 and isinstance(layers[0], nn.Conv2d) and isinstance(layers[1], nn.BatchNorm2d):
        _fail(name, "BatchNorm on the input layer.", "§3: no batchnorm on the discriminator input layer; "
                                                     "the first Conv2d goes straight into LeakyReLU(0.2)")
    if any(isinstance(m, nn.ReLU) for m in mods):
        _fail(name, "the discriminator uses ReLU.", "§3: LeakyReLU with slope 0.2 in the discriminator")
    slopes = {m.negative_slope for m in mods if isinstance(m, nn.LeakyReLU)}
    if not slopes:
        _fail(name, "no LeakyReLU.", "nn.LeakyReLU(0.2) after every convolution but the last (§3)")
    if slopes != {0.2}:
        _fail(name, f"LeakyReLU slope {sorted(slopes)}, the paper uses 0.2.", "nn.LeakyReLU(0.2)")
    if any(isinstance(m, nn.Sigmoid) for m in mods):
        _fail(name, "it ends in a Sigmoid.", "output the logit; the loss is BCEWithLogitsLoss (week 3, section 4)")
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    out = _call(name, D, x)
    if tuple(out.shape) == (4, 1, 1, 1):
        _fail(name, "D(x) has shape (4, 1, 1, 1).", "flatten the last convolution's output: one logit per image, shape [batch]")
    if tuple(out.shape) != (4,):
        _fail(name, f"D(x) has shape {tuple(out.shape)}, expected (4,).",
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


_register(name="generator", title="the DCGAN generator (Figure 1)", where="DCGAN week 3",
          hint="ConvTranspose2d(nz, ngf*8, 4, 1, 0) to 4x4, then (.., 4, 2, 1) layers halving the channels "
               "and doubling the size to 64x64; BatchNorm2d + ReLU after each but the last; end with Tanh.",
          run=_run_generator, fallback=_generator_fallback, fallback_name="helpers.dcgan.Generator",
          mistakes=("BatchNorm on the output layer", "missing Tanh", "Sigmoid output", "wrong output size",
                    "LeakyReLU in G", "Linear layer", "pooling/upsampling", "wrong widths"))
_register(name="discriminator", title="the DCGAN discriminator", where="DCGAN week 3",
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
    _call(name, G.apply, fn)
    _call(name, D.apply, fn)
    g_conv = torch.cat([m.weight.detach().flatten() for m in G.modules() if isinstance(m, nn.ConvTranspose2d)])
    d_conv = torch.cat([m.weight.detach().flatten() for m in D.modules() if isinstance(m, nn.Conv2d)])
    bn = [m for m in list(G.modules()) + list(D.modules()) if isinstance(m, nn.BatchNorm2d)]
    bn_w = torch.cat([m.weight.detach() for m in bn])
    bn_b = torch.cat([m.bias.detach() for m in bn])
    if all(torch.equal(a, m.weight) for a, m in zip(default_g, [m for m in G.modules()
                                                                 if isinstance(m, nn.ConvTranspose2d)])):
        _fail(name, "the generator's ConvTranspose2d layers were not touched.",
              "match both kinds: isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) - ConvTranspose2d is not a "
              "subclass of Conv2d")
    for label, w in (("generator conv", g_conv), ("discriminator conv", d_conv)):
        if abs(float(w.mean())) > 0.005:
            _fail(name, f"{label} weights have mean {float(w.mean()):+.3f}.",
                  "§4: zero-centred: nn.init.normal_(m.weight, 0.0, 0.02)")
        if abs(float(w.std()) - 0.02) > 0.003:
            _fail(name, f"{label} weights have std {float(w.std()):.4f}, not 0.02.",
                  "§4: nn.init.normal_(m.weight, mean=0.0, std=0.02) - the second argument is the mean, "
                  "the third the std")
    if torch.equal(bn_w, torch.ones_like(bn_w)):
        _fail(name, "BatchNorm scales are all exactly 1: the BatchNorm layers were not initialized.",
              "add a branch for nn.BatchNorm2d: normal_(m.weight, 1.0, 0.02), zeros_(m.bias)")
    if abs(float(bn_w.mean()) - 1.0) > 0.01:
        _fail(name, f"BatchNorm scales have mean {float(bn_w.mean()):.3f}, not 1: a scale near 0 switches "
                    f"the layer's output off.", "nn.init.normal_(m.weight, 1.0, 0.02) for BatchNorm2d")
    if abs(float(bn_w.std()) - 0.02) > 0.005:
        _fail(name, f"BatchNorm scales have std {float(bn_w.std()):.4f}, not 0.02.", "nn.init.normal_(m.weight, 1.0, 0.02)")
    if float(bn_b.abs().max()) > 0:
        _fail(name, "BatchNorm shifts are not zero.", "nn.init.zeros_(m.bias) for BatchNorm2d")
    return 6


_register(name="weights_init", title="DCGAN weight initialization (§4)", where="DCGAN week 3",
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
        out = _call("train_step", step_fn, G, D, opt_g, opt_d, real, 8, gen, on_error=on_error)
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
    return _diagnose(name, got, expected, variants, "two steps (losses and the updated weights)",
                     "one D step on real (label 1) and fake.detach() (label 0), then one G step with label 1 "
                     "on D(fake); zero each optimizer's gradients before its backward")


def _train_step_fallback(c):
    def step(G, D, opt_g, opt_d, real, nz, rng):
        stats = _dcgan.train_step(G, D, opt_g, opt_d, real, nz=nz, rng=rng)
        return stats["loss_d"], stats["loss_g"]
    return step


_register(name="train_step", title="one DCGAN update (D, then G)", where="DCGAN week 3",
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
    got = _call(name, fn, z0, z1, 7)
    if not torch.is_tensor(got) or tuple(got.shape) != (7, 32):
        _fail(name, f"expected a [steps, nz] = (7, 32) tensor, got "
                    f"{tuple(got.shape) if torch.is_tensor(got) else type(got).__name__}.",
              "t = torch.linspace(0, 1, steps)[:, None] broadcasts against z0 [nz]")
    return _diagnose(name, got, _dcgan.interpolate(z0, z1, 7), [
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


_register(name="slerp", title="spherical interpolation in latent space (§6.1)", where="DCGAN week 4",
          hint="omega = arccos(<z0/|z0|, z1/|z1|>); t = linspace(0, 1, steps)[:, None]; "
               "sin((1 - t)·omega)/sin(omega)·z0 + sin(t·omega)/sin(omega)·z1.",
          run=_run_slerp, fallback=lambda c: _dcgan.interpolate, fallback_name="helpers.dcgan.interpolate",
          mistakes=("linear interpolation", "reversed", "endpoints left out", "stops before z1",
                    "no division by sin(omega)", "unit-norm result"))
