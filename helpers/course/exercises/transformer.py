"""Transformer exercises (weeks 2-3): attention, masks, multi-head split/merge, positional
encoding, the learning-rate schedule and label smoothing. Each check runs the learner's code on
the shapes and values the course uses (several conditions per exercise), names the matching
classic mistake, and otherwise localizes the difference (:mod:`.diagnose`)."""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F

from helpers import transformer as _T
from helpers.course.exercises.base import call, fail, register
from helpers.course.exercises.diagnose import Case, Raised, attempt, close, judge, name_value


def _call(name, fn, *args, on_error=()):
    """Run once for the checks that need a value before judging (a pair, a tensor)."""
    return call(name, fn, *args, on_error=on_error)


# ---------------------------------------------------------------- attention (§3.2.1, week 2)
def _attention_variant(q, k, v, mask, *, scale="sqrt", axis=-1, mask_mode="ok", transpose=True,
                       after="", transpose_w=False):
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
    if after == "scale":
        weights = weights / math.sqrt(d_k)
    elif after == "mask" and mask is not None:
        weights = weights.masked_fill(~mask, 0.0)
    return weights @ v, (weights.transpose(-2, -1) if transpose_w else weights)


def _attention_extra(q, k, v, mask):
    """Findings only attention can compute: the softmax axis from the weights' sums, blocked keys
    that get weight, the effective scale of the scores, scores returned as weights."""
    d_k, d_v, n_q, n_k = q.size(-1), v.size(-1), q.size(-2), k.size(-2)
    factors = {"1 (no scaling)": 1.0, "√d_k": math.sqrt(d_k), "d_k": d_k, "√d_v": math.sqrt(d_v), "d_v": d_v,
               "√n_k (the number of keys)": math.sqrt(n_k), "√n_q (the number of queries)": math.sqrt(n_q),
               "1/√d_k (multiplied by √d_k instead of divided)": 1 / math.sqrt(d_k)}
    raw = q @ k.transpose(-2, -1)
    allowed = torch.ones_like(raw, dtype=torch.bool) if mask is None else mask.expand_as(raw)
    names = {q.dim() - 1: "the keys (last axis)", q.dim() - 2: "the queries (axis -2)"}
    if q.dim() == 4:
        names.update({0: "the batch (axis 0)", 1: "the heads (axis 1)"})
    else:
        names.update({0: "the batch (axis 0)"})

    def extra(got, expected):
        out = []
        if not (isinstance(got, tuple) and len(got) == 2 and torch.is_tensor(got[1])):
            return out
        w = got[1].detach().double()
        if w.shape != raw.shape:
            return out
        if (w < -1e-6).any():
            out.append((f"some weights are negative (min {float(w.min()):.3g}): a softmax gives values in [0, 1] "
                        f"(log_softmax? scores returned instead of weights?)",
                        "weights = scores.softmax(dim=-1)"))
        ref_s = raw.double() / math.sqrt(d_k)
        for fill in (float("-inf"), -1e9, 0.0):
            s = ref_s if mask is None else ref_s.masked_fill(~allowed, fill)
            if close(w, s, rtol=1e-4, atol=1e-4):
                out.append(("the weights are the scaled scores before the softmax",
                            "return the softmax of the scores as the weights"))
                return out
        if mask is not None and float(w.masked_select(~allowed).abs().max()) > 1e-6:
            out.append((f"blocked keys receive weight (up to {float(w.masked_select(~allowed).abs().max()):.3g})",
                        "mask the scores before the softmax: masked_fill(~mask, float('-inf'))"))
        sums = {ax: w.sum(ax) for ax in range(w.dim())}
        if not close(sums[w.dim() - 1], torch.ones_like(sums[w.dim() - 1]), rtol=1e-4, atol=1e-4):
            other = [ax for ax, s in sums.items() if ax != w.dim() - 1 and w.shape[ax] > 1
                     and close(s, torch.ones_like(s), rtol=1e-4, atol=1e-4)]
            flat = w.sum((-2, -1))
            if other:
                out.append((f"the weights sum to 1 over {names.get(other[0], f'axis {other[0]}')}, not over the keys: "
                            f"the softmax runs over the wrong axis",
                            "softmax(dim=-1): a negative axis works for 3-D and 4-D (multi-head) inputs alike"))
            elif close(flat, torch.ones_like(flat), rtol=1e-4, atol=1e-4):
                out.append(("all weights of each [n_q, n_k] matrix together sum to 1: the softmax runs over a "
                            "flattened axis", "softmax over the keys only: dim=-1"))
            else:
                s = sums[w.dim() - 1]
                out.append((f"the weights' rows (over the keys) do not sum to 1 (sums from {float(s.min()):.3g} to "
                            f"{float(s.max()):.3g}): something changes them after the softmax, or it is not a "
                            f"softmax", "return exactly scores.softmax(dim=-1) as the weights"))
            return out
        # the effective scale: log w = c * raw + row constant on the allowed entries
        lw = torch.where(allowed & (w > 0), w.clamp_min(1e-300).log(), torch.zeros_like(w))
        keep = allowed & (w > 0)
        cnt = keep.sum(-1, keepdim=True).clamp_min(1)
        rs = torch.where(keep, raw.double(), torch.zeros_like(w))
        lc = torch.where(keep, lw - lw.sum(-1, keepdim=True) / cnt, torch.zeros_like(w))
        sc = torch.where(keep, rs - rs.sum(-1, keepdim=True) / cnt, torch.zeros_like(w))
        c = float((lc * sc).sum() / (sc * sc).sum())
        if c > 0 and float((lc - c * sc).abs().max()) < 1e-3 * max(1.0, float(lc.abs().max())):
            divisor = 1 / c
            if not math.isclose(divisor, math.sqrt(d_k), rel_tol=1e-3):
                nm = name_value(divisor, factors)
                out.append((f"the weights are softmax(Q K^T / s) with s = {divisor:.4g}"
                            + (f" = {nm}" if nm else "") + f", not √d_k = {math.sqrt(d_k):.4g} (d_k = {d_k}, d_v = {d_v})",
                            "scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)): d_k is the size of the "
                            "queries' and keys' last axis"))
        return out
    return extra


def _attention_mistakes(q, k, v, m) -> list:
    """The catalogued attention mistakes on these inputs: (a function computing the mistaken result, what, fix)."""
    variants = [
        (lambda q=q, k=k, v=v, m=m: _attention_variant(q, k, v, m, scale="none"),
         "the scores are not divided by sqrt(d_k)",
         "scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  (§3.2.1: keeps the softmax out of its flat regions)"),
        (lambda q=q, k=k, v=v, m=m: _attention_variant(q, k, v, m, scale="d_k"),
         "the scores are divided by d_k, not sqrt(d_k)", "divide by math.sqrt(q.size(-1))"),
        (lambda q=q, k=k, v=v, m=m: _attention_variant(q, k, v, m, axis=-2),
         "the softmax runs over the queries (dim=-2; on 4-D multi-head inputs softmax(dim=2) is this axis)",
         "softmax over the keys: scores.softmax(dim=-1), so each query's weights sum to 1"),
        (lambda q=q, k=k, v=v, m=m: _attention_variant(q, k, v, m, scale="none", after="scale"),
         "the weights are divided by sqrt(d_k) after the softmax instead of the scores before it (they no longer sum to 1)",
         "scale the scores before the softmax: softmax(q @ k^T / sqrt(d_k))"),
        (lambda q=q, k=k, v=v, m=m: _attention_variant(q, k, v, m, transpose_w=True),
         "the output is right but the weights are returned transposed ([.., n_k, n_q])",
         "return the weights as computed, [.., n_q, n_k]: the same matrix you multiply with v"),
    ]
    if m is not None:
        variants += [
            (lambda q=q, k=k, v=v: _attention_variant(q, k, v, None),
             "the mask is ignored: padded keys still get weight",
             "scores = scores.masked_fill(~mask, float('-inf')) before the softmax"),
            (lambda q=q, k=k, v=v, m=m: _attention_variant(q, k, v, m, mask_mode="inverted"),
             "the mask is inverted: it blocks the keys that may be attended",
             "our masks are True = may attend, so fill where ~mask is True"),
            (lambda q=q, k=k, v=v, m=m: _attention_variant(q, k, v, m, mask_mode="zero"),
             "blocked scores are set to 0, which still gets weight exp(0) after the softmax",
             "fill with float('-inf') (or a large negative number), not 0"),
            (lambda q=q, k=k, v=v, m=m: _attention_variant(q, k, v, m, mask_mode="none", after="mask"),
             "the mask is applied after the softmax: blocked weights are zeroed but the rest no longer sum to 1",
             "mask the scores before the softmax: scores.masked_fill(~mask, float('-inf')).softmax(-1)"),
        ]
    return variants


def _run_attention(fn) -> int:
    name = "attention"
    g = torch.Generator().manual_seed(0)
    # square inputs first: there a missing transpose is not a shape error, so it shows in the values
    qs, ks, vs = (torch.randn(1, 4, 4, generator=g) for _ in range(3))
    square = attempt(fn, qs, ks, vs, None)
    if not isinstance(square, Raised) and close(square, _attention_variant(qs, ks, vs, None, transpose=False)):
        fail(name, "K is not transposed (q @ k instead of q @ k^T): on square inputs this even runs.",
             "scores = q @ k.transpose(-2, -1)")
    q3, k3, v3 = torch.randn(2, 3, 4, generator=g) * 2, torch.randn(2, 5, 4, generator=g) * 2, torch.randn(2, 5, 6, generator=g)
    m3 = torch.ones(2, 1, 5, dtype=torch.bool)
    m3[0, :, 4] = False            # every row keeps some keys and blocks some,
    m3[1, :, 3:] = False           # so an inverted mask is never all-blocked
    q4, k4, v4 = torch.randn(2, 3, 4, 8, generator=g) * 2, torch.randn(2, 3, 6, 8, generator=g) * 2, torch.randn(2, 3, 6, 5, generator=g)
    m4 = torch.ones(2, 1, 1, 6, dtype=torch.bool)
    m4[0, ..., 5] = False
    m4[1, ..., 2:] = False
    x = torch.randn(3, 2, 2, 5, 4, generator=g) * 2
    qc, kc, vc = x[0], x[1], x[2]
    mc = torch.ones(5, 5, dtype=torch.bool).tril()
    conditions = [("3-D inputs without a mask", q3, k3, v3, None),
                  ("3-D inputs with a padding mask [batch, 1, n_k]", q3, k3, v3, m3),
                  ("4-D multi-head inputs [batch, heads, n, d] with a padding mask [batch, 1, 1, n_k]", q4, k4, v4, m4),
                  ("4-D self-attention with a causal mask [n, n]", qc, kc, vc, mc)]
    on_error = [("mat1 and mat2", "K is not transposed: Q K^T needs k.transpose(-2, -1)",
                 "scores = q @ k.transpose(-2, -1)"),
                ("expected self and mask to be on the same", "mask dtype", "use a bool mask"),
                ("all elements of input should be between", "", ""),
                ("masked_fill_ only supports boolean", "the mask must be boolean, True = may attend",
                 "scores.masked_fill(~mask, float('-inf'))")]
    first = _call(name, fn, q3, k3, v3, None, on_error=on_error)
    if not (isinstance(first, tuple) and len(first) == 2):
        fail(name, f"it returned {type(first).__name__}, not a pair.",
             "return (output, weights): the weights are needed for the heatmaps.")
    again = attempt(fn, q3, k3, v3, None)
    if not close(first, again):
        fail(name, "two calls with the same inputs give different results: something random is applied - "
                   "dropout left on (F.dropout defaults to training=True, and an nn.Dropout made inside the "
                   "function is always in training mode)",
             "no dropout inside this function; in the model, dropout is an nn.Dropout module that model.eval() "
             "switches off")
    cases = []
    for label, q, k, v, m in conditions:
        got = attempt(fn, q, k, v, m)
        expected = _T.scaled_dot_product_attention(q, k, v, m)
        if isinstance(got, tuple) and len(got) == 2 and torch.is_tensor(got[1]) and \
                tuple(got[1].shape) != tuple(expected[1].shape) and got[1].shape[-1] == q.size(-1) and \
                q.size(-1) != k.size(-2):
            fail(name, f"weights have shape {tuple(got[1].shape)}, expected {tuple(expected[1].shape)} ({label}).",
                 "K is not transposed: scores = q @ k.transpose(-2, -1) gives [.., n_q, n_k].")
        variants = _attention_mistakes(q, k, v, m)
        cases.append(Case(label, got, expected, variants, parts=("output", "weights"),
                          extra=_attention_extra(q, k, v, m), rtol=1e-4, atol=1e-5,
                          sizes={"n_q": q.size(-2), "n_k": k.size(-2), "d_k": q.size(-1), "d_v": v.size(-1)}))
    four_d = ("4-D inputs: axes counted from the front (transpose(1, 2), softmax(dim=2), bmm) only work for "
              "3-D tensors; use negative axes (-2, -1) and @ / torch.matmul")
    return judge(name, cases, what="(output, weights)", on_error=on_error,
                 fix="compare line by line with Eq. 1: softmax(Q K^T / sqrt(d_k)) V, masked_fill(~mask, -inf) "
                     "before the softmax",
                 look={conditions[2][0]: four_d, conditions[3][0]: four_d,
                       conditions[1][0]: "the mask: True = may attend, applied to the scores before the softmax"})


register(name="attention", title="scaled dot-product attention (Eq. 1)", where="Transformer week 2",
         hint="scores = Q K^T / sqrt(d_k) (use k.transpose(-2, -1)); masked_fill(~mask, -inf); "
              "softmax over the last axis (the keys); return (weights @ v, weights).",
         run=_run_attention, fallback=lambda c: _T.scaled_dot_product_attention,
         fallback_name="helpers.transformer.scaled_dot_product_attention",
         mistakes=("no 1/sqrt(d_k) scaling", "scaling by d_k", "softmax over the queries",
                   "mask ignored", "mask inverted", "blocked scores set to 0", "K not transposed",
                   "not returning (output, weights)", "scaling after the softmax", "masking after the softmax",
                   "dropout on at eval", "weights returned transposed"))


# ---------------------------------------------------------------- masks (§3.2.3, week 2)
def _padding_extra(tokens, pad_id):
    def extra(got, expected):
        if not (torch.is_tensor(got) and got.shape == expected.shape):
            return []
        bad = (got.bool() != expected) if got.dtype == torch.bool else (got != expected)
        ids = sorted({int(t) for t in tokens[bad[:, 0, :]]})
        if not ids:
            return []
        return [(f"the mask is wrong exactly at the positions holding token ids {ids} (pad_id here is {pad_id}; "
                 f"the other ids are right)",
                 "compare every token with the pad_id argument, for equality: tokens != pad_id")]
    return extra


def _run_padding_mask(fn) -> int:
    name = "padding_mask"
    conditions = [("pad_id = 3, ids below and above it", torch.tensor([[5, 0, 7, 3, 2, 3], [1, 4, 3, 3, 3, 3]]), 3),
                  ("pad_id = 0, batch of 3", torch.tensor([[4, 9, 2, 0, 0], [7, 0, 0, 0, 0], [6, 5, 8, 1, 3]]), 0)]
    cases = []
    for label, tokens, pad_id in conditions:
        got = _call(name, fn, tokens, pad_id)
        b, n = tokens.shape
        if not torch.is_tensor(got):
            fail(name, f"it returned {type(got).__name__}.", "return a bool tensor: (tokens != pad_id)[:, None, :]")
        if got.dtype != torch.bool:
            fail(name, f"the mask has dtype {got.dtype}, not torch.bool.",
                 "compare, don't multiply: (tokens != pad_id) is already bool; masked_fill(~mask) needs bool")
        if tuple(got.shape) == (b, n):
            fail(name, "the mask is [batch, keys]: it has no query axis, so it does not broadcast "
                       "against scores [batch, n_q, n_k].", "add the query axis: (tokens != pad_id)[:, None, :]")
        if tuple(got.shape) == (b, n, 1):
            fail(name, "the mask is [batch, length, 1]: it masks queries, not keys.",
                 "put the length on the last (keys) axis: (tokens != pad_id)[:, None, :]")
        if tuple(got.shape) == (b, 1, 1, n) and torch.equal(got.reshape(b, 1, n), (tokens != pad_id)[:, None, :]):
            fail(name, f"the values are right but the mask is 4-D {tuple(got.shape)}: that is the multi-head "
                       f"version (helpers.transformer.padding_mask); this exercise's mask is [batch, 1, length]",
                 "drop one size-1 axis: (tokens != pad_id)[:, None, :]")
        cases.append(Case(label, got, (tokens != pad_id)[:, None, :], [
            ((tokens == pad_id)[:, None, :], "the mask is inverted: True at the padding",
             "True = may attend, so True at real tokens: tokens != pad_id"),
            ((tokens != 0)[:, None, :], "it uses pad id 0 instead of the pad_id argument",
             "compare with pad_id, the tokenizer's padding id (not always 0)"),
            ((tokens > pad_id)[:, None, :], "it keeps only ids above pad_id (tokens > pad_id): real tokens with "
                                            "smaller ids are masked too",
             "test for equality with the pad id: tokens != pad_id"),
        ], axes=("batch", "query axis", "positions"), extra=_padding_extra(tokens, pad_id)))
    return judge(name, cases, what="the padding mask", fix="mask = (tokens != pad_id)[:, None, :]")


def _run_causal_mask(fn) -> int:
    name = "causal_mask"
    cases = []
    for n in (5, 1, 4, 7):
        got = _call(name, fn, n)
        ones = torch.ones(n, n)
        if not torch.is_tensor(got):
            fail(name, f"it returned {type(got).__name__}.", "return torch.ones(n, n, dtype=torch.bool).tril()")
        if got.dtype != torch.bool:
            if close(got, ones.tril()):
                fail(name, "the mask holds 0/1 numbers, not booleans.", "add dtype=torch.bool to torch.ones")
            fail(name, f"the mask has dtype {got.dtype}: an additive (-inf) mask is another convention.",
                 "this course uses boolean masks, True = may attend: torch.ones(n, n, dtype=torch.bool).tril()")
        if n == 5 and tuple(got.shape) != (5, 5) and got.numel() != 25:
            fail(name, f"shape {tuple(got.shape)}, expected [n, n] = (5, 5).", "torch.ones(n, n, dtype=torch.bool).tril()")
        cases.append(Case(f"n = {n}", got, ones.tril().bool(), [
            (ones.triu().bool(), "it is the upper triangle: every position sees the future, not the past",
             "use .tril(): row i (a query) may see columns (keys) 0..i"),
            (ones.tril(-1).bool(), "the diagonal is blocked: a position cannot attend to itself "
                                   "(and the first row is all blocked, so its softmax is NaN)",
             "use .tril() (diagonal included), not .tril(-1)"),
            (ones.triu(1).bool(), "it marks exactly the future: that is the blocked set, not the allowed set",
             "invert it (~mask) or use .tril(): True = may attend"),
            (ones.tril(1).bool(), "each position may also see the next one (tril(1) / diagonal=1): one future "
                                  "token leaks into every prediction",
             "use .tril() with the default diagonal=0"),
        ], axes=("queries (rows)", "keys (columns)")))
    return judge(name, cases, what="the causal mask", fix="torch.ones(n, n, dtype=torch.bool).tril()",
                 look={f"n = {n}": "a size written into the code? build the mask from the argument n"
                       for n in (1, 4, 7)})


register(name="padding_mask", title="the padding mask", where="Transformer week 2",
         hint="True at real tokens, False at pad_id; add a query axis of size 1: shape [batch, 1, length].",
         run=_run_padding_mask, fallback=lambda c: (lambda tokens, pad_id: (tokens != pad_id)[:, None, :]),
         fallback_name="(tokens != pad_id)[:, None, :] (helpers.transformer.padding_mask is the 4-D version)",
         mistakes=("inverted", "no query axis", "masks queries", "ignores pad_id", "not bool", "tokens > pad_id",
                   "4-D mask"))
register(name="causal_mask", title="the causal (subsequent) mask", where="Transformer week 2",
         hint="row i (a query) may attend to columns 0..i (keys), diagonal included: a lower triangle of "
              "booleans, shape [n, n].",
         run=_run_causal_mask, fallback=lambda c: (lambda n: torch.ones(n, n, dtype=torch.bool).tril()),
         fallback_name="helpers.transformer.causal_mask (here 2-D)",
         mistakes=("upper triangle", "diagonal blocked", "marks the blocked set", "0/1 not bool", "additive mask",
                   "tril(1)"))


# ---------------------------------------------------------------- multi-head split/merge (§3.2.2)
def _ref_split(x, h):
    b, n, d = x.shape
    return x.view(b, n, h, d // h).transpose(1, 2)


def _ref_merge(x):
    b, h, n, d_k = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d_k)


def _source_extra(src_shape, src_names, out_names):
    """For outputs made by moving elements of an arange input: which input element an output
    element holds, against the one it should hold."""
    def where(v):
        idx = []
        for size in reversed(src_shape):
            idx.append(v % size)
            v //= size
        return tuple(reversed(idx))

    def extra(got, expected):
        if not (torch.is_tensor(got) and got.shape == expected.shape):
            return []
        bad = (got != expected).nonzero()
        if len(bad) == 0:
            return []
        i = tuple(int(t) for t in bad[0])
        gv, ev = got[i], expected[i]
        if float(gv) != int(gv) or not 0 <= int(gv) < math.prod(src_shape):
            return []
        gs, es = where(int(gv)), where(int(ev))
        diff = [nm for nm, a, b in zip(src_names, gs, es) if a != b]
        return [(f"element {list(i)} ({', '.join(f'{nm} {a}' for nm, a in zip(out_names, i))}) holds the input's "
                 f"{list(gs)} where it should hold {list(es)}: the {' and '.join(diff)} get mixed up",
                 "heads are blocks of d_k consecutive features: view as [b, n, h, d_k] and swap only the n and h "
                 "axes (merge: the same steps in reverse)")]
    return extra


def _run_multihead(cls) -> int:
    name = "multihead"
    view_error = [("view size is not compatible", "merge calls .view on a transposed (non-contiguous) tensor",
                   "use .reshape(...) or .contiguous().view(...) after the transpose")]
    cases_split, cases_merge, cases_round = [], [], []
    for d_model, h, b, n in ((12, 3, 2, 5), (12, 4, 3, 2)):
        label = f"d_model={d_model}, heads={h}, batch={b}, n={n}"
        d_k = d_model // h
        module = _call(name, cls, d_model, h)
        x = torch.arange(b * n * d_model, dtype=torch.float32).view(b, n, d_model)
        got = attempt(module.split, x)
        expected = _ref_split(x, h)
        if not cases_split and torch.is_tensor(got) and tuple(got.shape) != tuple(expected.shape):
            fail(name, f"split gives shape {tuple(got.shape)}, expected [batch, heads, n, d_k] = "
                       f"{tuple(expected.shape)}.", "x.view(b, n, h, d_k).transpose(1, 2)")
        sizes = {"batch": b, "n": n, "heads": h, "d_k": d_k, "d_model": d_model, "heads×n": h * n, "n×d_model": n * d_model}
        cases_split.append(Case(label, got, expected, [
            (x.view(b, h, n, d_k), "split reshapes straight to [b, h, n, d_k] without a transpose: "
                                   "each 'head' mixes features of different tokens",
             "view as [b, n, h, d_k] first (heads are slices of the feature axis), then .transpose(1, 2)"),
            (x.view(b, n, d_k, h).permute(0, 3, 1, 2), "split interleaves the heads: head i takes every "
                                                       "h-th feature instead of a block of d_k",
             "view as [b, n, h, d_k] (h blocks of d_k consecutive features), then .transpose(1, 2)"),
        ], axes=("batch", "heads", "positions", "features"), sizes=sizes,
            extra=_source_extra((b, n, d_model), ("batch", "token", "feature"), ("batch", "head", "position", "feature"))))
        y = torch.arange(b * h * n * d_k, dtype=torch.float32).view(b, h, n, d_k)
        got = attempt(module.merge, y)
        expected = _ref_merge(y)
        if torch.is_tensor(got) and tuple(got.shape) != tuple(expected.shape) and not cases_merge \
                and got.numel() == expected.numel() and got.dim() == 3:
            fail(name, f"merge gives shape {tuple(got.shape)}, expected [batch, n, d_model] = "
                       f"{tuple(expected.shape)}.", "x.transpose(1, 2).reshape(b, n, h * d_k)")
        cases_merge.append(Case(label, got, expected, [
            (y.reshape(b, n, d_model), "merge reshapes [b, h, n, d_k] to [b, n, d_model] without transposing "
                                       "back: tokens and heads get mixed",
             "x.transpose(1, 2).reshape(b, n, h * d_k)"),
            (y.permute(0, 2, 3, 1).reshape(b, n, d_model), "merge interleaves the heads' features",
             "concatenate whole heads: x.transpose(1, 2).reshape(b, n, h * d_k)"),
            (torch.cat(list(reversed(y.unbind(1))), -1), "merge puts the heads together in the wrong order "
                                                          "(last head first)",
             "head i must land on features i*d_k .. (i+1)*d_k - 1: x.transpose(1, 2).reshape(b, n, h * d_k)"),
        ], axes=("batch", "positions", "features"), sizes=sizes,
            extra=_source_extra((b, h, n, d_k), ("batch", "head", "token", "feature"), ("batch", "position", "feature"))))
        if not isinstance(cases_split[-1].got, Raised):
            cases_round.append(Case(label, attempt(module.merge, cases_split[-1].got), x, (),
                                    axes=("batch", "positions", "features")))
    passed = judge(name, cases_split, what="split(x)", on_error=view_error,
                   fix="x.view(b, n, h, d_k).transpose(1, 2)")
    passed += judge(name, cases_merge, what="merge(heads)", on_error=view_error,
                    fix="x.transpose(1, 2).reshape(b, n, h * d_k)")
    passed += judge(name, cases_round, what="merge(split(x))", on_error=view_error, fix="merge must undo split exactly")
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
                   "interleaved heads in merge", ".view on a non-contiguous tensor", "wrong shape",
                   "heads merged in the wrong order"))


# ---------------------------------------------------------------- positional encoding (§3.5, week 3)
def _pe(max_len, d_model, *, swap=False, per_dim=False, concat=False, start=0, multiply=False, each_j=False):
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
    if each_j:
        odd = pos / torch.pow(10000.0, torch.arange(1, d_model, 2, dtype=torch.float64) / d_model)
        pe[:, 1::2] = second(odd)
    return pe.float()


def _run_pe(fn) -> int:
    name = "positional_encoding"
    cases = []
    for max_len, d in ((50, 16), (9, 6), (1, 4)):
        got = _call(name, fn, max_len, d)
        if not torch.is_tensor(got):
            fail(name, f"it returned {type(got).__name__}.", "return a [max_len, d_model] tensor")
        if tuple(got.shape) == (d, max_len) and d != max_len:
            fail(name, f"shape {tuple(got.shape)}: positions and dimensions are swapped.",
                 "rows are positions: return a [max_len, d_model] tensor")
        kw = (max_len, d)
        cases.append(Case(f"max_len={max_len}, d_model={d}", got.float() if got.is_floating_point() else got,
                          _T.sinusoidal_encoding(max_len, d), [
            (lambda kw=kw: _pe(*kw, swap=True), "sin and cos are swapped",
             "even dimensions (0, 2, ...) get sin, odd get cos"),
            (lambda kw=kw: _pe(*kw, per_dim=True), "the exponent uses i/d_model where the paper has 2i/d_model",
             "the exponent of 10000 is 2i/d_model, where 2i = 0, 2, 4, ...: torch.arange(0, d_model, 2) / d_model"),
            (lambda kw=kw: _pe(*kw, each_j=True), "each dimension j uses its own index in the exponent "
                                                  "(10000^(j/d_model)); the sin/cos pair 2i, 2i+1 must share "
                                                  "one frequency, 10000^(2i/d_model)",
             "compute angle once per pair: pos / 10000 ** (torch.arange(0, d_model, 2) / d_model), then "
             "pe[:, 0::2] = sin(angle), pe[:, 1::2] = cos(angle)"),
            (lambda kw=kw: _pe(*kw, concat=True), "sin and cos are concatenated as two halves instead of interleaved",
             "interleave: pe[:, 0::2] = sin(angle), pe[:, 1::2] = cos(angle)"),
            (lambda kw=kw: _pe(*kw, start=1), "positions start at 1",
             "pos = torch.arange(max_len): the first position is 0"),
            (lambda kw=kw: _pe(*kw, multiply=True), "pos is multiplied by 10000^(2i/d) instead of divided",
             "angle = pos / 10000^(2i/d_model): wavelengths grow from 2π to 10000·2π"),
        ], axes=("positions (rows)", "dimensions (columns)"), rtol=1e-4, atol=1e-4))
    return judge(name, cases, what="the encoding",
                 fix="PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(same angle)")


register(name="positional_encoding", title="sinusoidal positional encoding (§3.5)", where="Transformer week 3",
         hint="angle = pos / 10000^(2i/d_model) for 2i = 0, 2, 4, ...; pe[:, 0::2] = sin(angle), "
              "pe[:, 1::2] = cos(angle); shape [max_len, d_model].",
         run=_run_pe, fallback=lambda c: _T.sinusoidal_encoding,
         fallback_name="helpers.transformer.sinusoidal_encoding",
         mistakes=("sin/cos swapped", "i instead of 2i", "halves not interleaved", "positions from 1",
                   "multiplied instead of divided", "transposed shape", "j/d for every dimension"))


# ---------------------------------------------------------------- learning-rate schedule (Eq. 3)
_LR_CONFIGS = ((512, 4000, (1, 2, 3, 10, 100, 1000, 3999, 4000, 4001, 8000, 100000)),
               (256, 100, (1, 2, 50, 99, 100, 101, 1000, 5000)))


def _lr(step, d_model, warmup, variant=""):
    if variant == "plus1":
        step = step + 1
    if variant == "minus1":
        step = step - 1
        if step <= 0:
            return 0.0
    scale = 1.0 if variant == "no_scale" else d_model ** -0.5
    warm = step * warmup ** (-0.5 if variant == "warm_exp" else -1.5)
    decay = step ** -0.5
    return scale * (max(decay, warm) if variant == "max" else min(decay, warm))


def _lr_extra(fn, d_model, warmup, steps):
    def extra(got, expected):
        out = []
        g = [float(x) for x in got]
        for k, words in ((1, "step + 1"), (-1, "step - 1")):
            ref = [_T.transformer_lr(s + k, d_model, warmup) if s + k > 0 else 0.0 for s in steps]
            if all(math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-12) for a, b in zip(g, ref)):
                return [(f"off by one step: your rate at every step s is the reference's at {words}",
                         "use step exactly as given (steps count from 1); no +1/-1 inside the formula")]
        ok = [math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-12) for a, b in zip(g, expected)]
        warm = [o for s, o in zip(steps, ok) if s < warmup]
        decay = [o for s, o in zip(steps, ok) if s > warmup]
        if all(warm) and not all(decay):
            out.append(("the warmup phase (steps < warmup) is right, the decay after it is wrong",
                        "the decay term: step ** -0.5"))
        elif all(decay) and not all(warm):
            out.append(("the decay phase (steps > warmup) is right, the warmup before it is wrong",
                        "the warmup term: step * warmup ** -1.5"))
        return out
    return extra


def _run_lr(fn) -> int:
    name = "lr_schedule"
    on_error = [("division by zero", "step 0: step ** -0.5 divides by zero",
                 "steps count from 1 (LambdaLR's counter starts at 0: pass i + 1)")]
    cases = []
    for d, w, steps in _LR_CONFIGS:
        got = []
        for s in steps:
            r = attempt(fn, s, d, w)
            if isinstance(r, Raised):
                got = r
                break
            got.append(float(r))
        expected = [_T.transformer_lr(s, d, w) for s in steps]
        variants = [
            ([_lr(s, d, w, "no_scale") for s in steps], "the d_model^-0.5 factor is missing",
             "multiply by d_model ** -0.5"),
            ([_lr(s, d, w, "warm_exp") for s in steps], "the warmup term uses warmup^-0.5, not warmup^-1.5",
             "step * warmup_steps ** -1.5: the two terms must meet at step = warmup_steps"),
            ([_lr(s, d, w, "max") for s in steps], "it takes the max of the two terms instead of the min",
             "min(step ** -0.5, step * warmup ** -1.5): warmup, then decay"),
            ([_lr(s, d, w, "plus1") for s in steps], "off by one: the formula uses step + 1 (the rate of the "
                                                     "next step)",
             "the function receives the step counted from 1; use it as is (the +1 belongs where LambdaLR's "
             "0-based counter is passed in, not inside the formula)"),
            ([_lr(s, d, w, "minus1") for s in steps], "off by one: the formula uses step - 1, so the rate at "
                                                      "step 1 is 0 and the first update does nothing",
             "use the step as given: steps count from 1"),
        ]
        if not isinstance(got, Raised):
            got = torch.tensor(got, dtype=torch.float64)
        expected = torch.tensor(expected, dtype=torch.float64)
        variants = [(torch.tensor(r, dtype=torch.float64), m, f) for r, m, f in variants]
        cases.append(Case(f"d_model={d}, warmup={w}", got, expected, variants, axes=("steps",),
                          labels={0: [f"{s}" for s in steps]}, rtol=1e-4, atol=1e-12,
                          factors={"d_model ** -0.5 (applied twice?)": d ** -0.5,
                                   "d_model ** 0.5 (the d_model ** -0.5 factor missing?)": d ** 0.5,
                                   "d_model (d_model ** 0.5 instead of d_model ** -0.5?)": d,
                                   "sqrt(warmup)": w ** 0.5, "warmup": w, "2": 2.0, "0.5": 0.5},
                          extra=_lr_extra(fn, d, w, steps)))
    return judge(name, cases, what="the learning rates", on_error=on_error,
                 fix="lrate = d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)",
                 look={"d_model=256, warmup=100": "a constant written into the formula (512? 4000?): use the "
                                                  "arguments d_model and warmup"})


register(name="lr_schedule", title="the learning-rate schedule (Eq. 3)", where="Transformer week 3",
         hint="d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5), step counting from 1.",
         run=_run_lr, fallback=lambda c: _T.transformer_lr, fallback_name="helpers.transformer.transformer_lr",
         mistakes=("missing d_model^-0.5", "warmup^-0.5", "max instead of min", "step 0 division",
                   "step + 1 inside the formula", "step - 1 (rate 0 at step 1)"))


# ---------------------------------------------------------------- label smoothing (§5.4)
def _smooth(logits, target, eps, pad_id, variant=""):
    vocab = logits.size(-1)
    logp = logits.softmax(-1) if variant == "probs" else logits.log_softmax(-1)
    if variant == "others":
        dist = torch.full_like(logp, eps / (vocab - 1))
        dist.scatter_(-1, target[..., None], 1 - eps)
    elif variant == "no_spread":
        dist = torch.zeros_like(logp).scatter_(-1, target[..., None], 1 - eps)
    elif variant == "no_plus":
        dist = torch.full_like(logp, eps / vocab)
        dist.scatter_(-1, target[..., None], 1 - eps)
    else:
        dist = torch.full_like(logp, eps / vocab)
        dist.scatter_(-1, target[..., None], 1 - eps + eps / vocab)
    keep = target != pad_id
    if variant.startswith("kl_probs"):
        reduction = variant.split(":")[1]
        with warnings.catch_warnings():   # 'mean' is the learner's likely choice; its deprecation note is noise
            warnings.simplefilter("ignore")
            return F.kl_div(logits.softmax(-1)[keep], dist[keep], reduction=reduction)
    loss = -(dist * logp).sum(-1)
    if variant == "no_pad":
        return loss.mean()
    if variant == "sum":
        return loss[keep].sum()
    return loss[keep].mean()


def _entropy(logits, target, eps, pad_id):
    vocab = logits.size(-1)
    dist = torch.full_like(logits, eps / vocab).scatter(-1, target[..., None], 1 - eps + eps / vocab)
    h = -(dist * dist.clamp_min(1e-30).log()).sum(-1)
    return float(h[target != pad_id].mean())


def _run_smoothing(fn) -> int:
    name = "label_smoothing"
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 9, generator=g) * 2
    logits3 = torch.randn(3, 4, 11, generator=g) * 2
    conditions = [("eps = 0.1 with padding (pad_id = 1)", logits, torch.tensor([[3, 4, 5, 8, 1, 1], [2, 2, 7, 6, 5, 4]]), 0.1, 1),
                  ("eps = 0 with padding", logits, torch.tensor([[3, 4, 5, 8, 1, 1], [2, 2, 7, 6, 5, 4]]), 0.0, 1),
                  ("eps = 0.1 without padding", logits, torch.tensor([[3, 4, 5, 8, 0, 2], [2, 2, 7, 6, 5, 4]]), 0.1, 1),
                  ("eps = 0.2, pad_id = 0, batch 3, vocabulary 11", logits3,
                   torch.tensor([[3, 4, 0, 0], [1, 2, 3, 4], [5, 0, 0, 0]]), 0.2, 0)]
    cases = []
    for label, lo, t, eps, pad in conditions:
        args = (lo, t, eps, pad)
        got = attempt(fn, *args)
        if not isinstance(got, Raised) and (not torch.is_tensor(got) or got.dim() != 0):
            fail(name, f"it returned {tuple(got.shape) if torch.is_tensor(got) else type(got).__name__}, "
                       f"not a scalar.", "average over the non-padding tokens: loss[target != pad_id].mean()")
        keep, total, V = int((t != pad).sum()), t.numel(), lo.size(-1)
        cases.append(Case(label, got, _T.label_smoothed_loss(*args), [
            (lambda a=args: _smooth(a[0], a[1], 0.0, a[3]), "there is no smoothing: this is plain cross-entropy",
             "the target puts 1 - eps + eps/V on the right token and eps/V on every token"),
            (lambda a=args: _smooth(*a, variant="no_pad"), "padding positions are counted in the loss",
             "keep = target != pad_id; return loss[keep].mean()"),
            (lambda a=args: _smooth(*a, variant="sum"), "the loss is summed over tokens, not averaged",
             "take the mean over the non-padding tokens (the scale of the loss sets the effective LR)"),
            (lambda a=args: _smooth(*a, variant="probs"), "it uses probabilities (softmax) where the loss needs "
                                                          "log-probabilities",
             "log_probs = logits.log_softmax(-1)"),
            (lambda a=args: _smooth(*a, variant="no_spread"), "the eps mass is removed from the right token but "
                                                              "not spread over the vocabulary",
             "fill the target with eps / V first, then put 1 - eps + eps / V on the right token"),
            (lambda a=args: _smooth(*a, variant="no_plus"), "the right token gets 1 - eps, without the + eps/V "
                                                            "that every token gets: the target sums to 1 - eps/V",
             "true_dist = full(eps / V), then scatter 1 - eps + eps / V at the target"),
            (lambda a=args: _smooth(*a, variant="others"), "eps is spread over the V - 1 wrong tokens only (the "
                                                           "Annotated Transformer's variant); this course follows "
                                                           "PyTorch, which spreads it over all V",
             "true_dist = full(eps / V); scatter 1 - eps + eps / V at the target"),
            (lambda a=args: _smooth(*a, variant="kl_probs:batchmean"),
             "KLDivLoss gets probabilities: nn.KLDivLoss / F.kl_div expect log-probabilities as input",
             "use log_probs = logits.log_softmax(-1) (and this exercise asks for the cross-entropy: "
             "-(true_dist * log_probs).sum(-1))"),
            (lambda a=args: _smooth(*a, variant="kl_probs:mean"),
             "KLDivLoss gets probabilities: nn.KLDivLoss / F.kl_div expect log-probabilities as input",
             "use log_probs = logits.log_softmax(-1) (and this exercise asks for the cross-entropy)"),
        ], rtol=1e-4, atol=1e-5,
            factors={f"1/V = 1/{V} (averaged over the vocabulary as well)": 1 / V,
                     f"{keep}, the number of non-padding tokens (a sum, not a mean)": keep,
                     f"{keep}/{total}: divided by all {total} positions, padding included, instead of the "
                     f"{keep} non-padding ones": keep / total},
            offsets={"minus the entropy of the smoothed target: a KL divergence, not the cross-entropy "
                     "(same gradients, different value)": -_entropy(*args)}))
    return judge(name, cases, what="the loss",
                 fix="compare with F.cross_entropy(logits.flatten(0, 1), target.flatten(), "
                     "label_smoothing=eps, ignore_index=pad_id)",
                 on_error=[("expected target size", "F.cross_entropy takes the classes on axis 1: logits "
                            "[batch, length, vocab] must be flattened to [batch*length, vocab]",
                            "F.cross_entropy(logits.flatten(0, 1), target.flatten(), ...)")],
                 look_right={conditions[1][0]: "without smoothing it is right: look at the target distribution "
                                               "(eps/V everywhere, 1 - eps + eps/V at the right token)",
                             conditions[2][0]: "without padding it is right: look at how padding positions are "
                                               "left out and what the mean divides by"})

register(name="label_smoothing", title="label-smoothed cross-entropy (§5.4)", where="Transformer week 3",
         hint="log_probs = logits.log_softmax(-1); target distribution eps/V everywhere and "
              "1 - eps + eps/V at the right token; loss = -(dist * log_probs).sum(-1), mean over "
              "non-padding tokens.",
         run=_run_smoothing, fallback=lambda c: _T.label_smoothed_loss,
         fallback_name="helpers.transformer.label_smoothed_loss",
         mistakes=("no smoothing", "padding counted", "sum not mean", "probabilities not log-probabilities",
                   "mass not spread", "spread over V-1", "no + eps/V", "KLDivLoss on probabilities"))
