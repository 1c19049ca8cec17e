"""Diagnosis of the unknown mistake: when the learner's result matches no catalogued mistake,
say *where* it differs from the reference and *what kind* of difference it is.

Every tensor-valued exercise runs its check as a list of :class:`Case` (one per condition: 3-D
or 4-D inputs, with or without a mask, another ``d_model``, train or eval mode, ...) and hands
them to :func:`judge`, which

1. passes when every case matches the reference (``rtol``/``atol`` per case, so tiny values such
   as learning rates are compared relatively);
2. otherwise names the first catalogued mistake that reproduces the learner's result;
3. otherwise localizes the difference: *which condition* (right for some cases, wrong or raising
   for others), *which output* (e.g. the weights are wrong, the output is right) and *what kind*
   of difference (:func:`findings`): a shape that is a permutation or a squeeze of the expected
   one, a constant scale factor named from the exercise's known factors (``√d_k``, ``d_k``,
   ...), a constant offset, transposed axes, a slice order (heads in the wrong order), a shift by
   one along an axis, NaN, and which indices along which axis differ (only the odd columns, only
   the steps after warmup, ...). Exercise-specific analyzers (``Case.extra``) add findings only
   they can compute (the softmax axis from the weights' sums, the effective scale of the scores,
   blocked keys that still get weight, the token a split element came from, ...).

The message then reads ``Found: ...`` and ``Look at: ...`` instead of only "compare line by line".
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from helpers.course.exercises.base import ExerciseError, max_err

MARK = "Found:"


class Raised:
    """The learner's code raised ``error`` (kept so one condition can raise while others run)."""

    def __init__(self, error: BaseException):
        self.error = error
        self.text = f"{type(error).__name__}: {error}".splitlines()[0]

    def __repr__(self) -> str:
        return f"Raised({self.text!r})"


def attempt(fn: Callable, *args, **kwargs):
    """Run the learner's ``fn``: its result, or :class:`Raised`. A blank (NotImplementedError)
    passes through."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as error:  # noqa: BLE001 - every learner error is diagnosed
        return Raised(error)


@dataclass
class Case:
    """One condition of a check: the learner's result ``got`` and the reference ``expected``."""

    label: str
    got: Any
    expected: Any
    mistakes: Sequence[tuple[Any, str, str]] = ()   # (result or zero-arg callable, message, fix)
    parts: Sequence[str] | None = None              # names of the items when results are tuples
    axes: Sequence[str] | None = None               # names of the axes of a tensor result
    labels: Mapping[int, Sequence[Any]] = field(default_factory=dict)  # axis -> what each index is
    factors: Mapping[str, float] = field(default_factory=dict)  # known scale factors, by name
    offsets: Mapping[str, float] = field(default_factory=dict)  # known constant offsets, by name
    sizes: Mapping[str, int] = field(default_factory=dict)      # named sizes, to read shapes
    extra: Callable[[Any, Any], list[tuple[str, str]]] | None = None  # (got, expected) -> findings
    rtol: float = 1e-5
    atol: float = 1e-5


# --------------------------------------------------------------------------- comparison
def as_tensor(x):
    if torch.is_tensor(x):
        return x.detach()
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError):
        return None


def close(a, b, *, rtol: float = 1e-5, atol: float = 1e-5) -> bool:
    if isinstance(a, Raised) or isinstance(b, Raised):
        return False
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(close(x, y, rtol=rtol, atol=atol) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)
    if isinstance(a, (tuple, list)) != isinstance(b, (tuple, list)):
        return False
    a, b = as_tensor(a), as_tensor(b)
    if a is None or b is None or a.shape != b.shape:
        return False
    if a.dtype == torch.bool or b.dtype == torch.bool:
        return a.dtype == b.dtype and bool((a == b).all())
    a, b = a.double(), b.double()
    both_nan = torch.isnan(a) & torch.isnan(b)
    same_inf = torch.isinf(a) & (a == b)
    ok = both_nan | same_inf | ((a - b).abs() <= atol + rtol * b.abs())
    return bool(ok.all())


def shape_of(x) -> str:
    if isinstance(x, Raised):
        return "an error"
    t = x if torch.is_tensor(x) else None
    if t is None:
        return type(x).__name__
    return str(tuple(t.shape))


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _ranges(idx: Sequence[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8'."""
    out, start, prev = [], None, None
    for i in list(idx) + [None]:
        if start is None:
            start = prev = i
        elif i is not None and i == prev + 1:
            prev = i
        else:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = i
    return ", ".join(out[:6]) + (", ..." if len(out) > 6 else "")


def name_value(value: float, known: Mapping[str, float], rtol: float = 2e-3) -> str | None:
    for name, v in known.items():
        if v and math.isclose(value, v, rel_tol=rtol):
            return name
    return None


# --------------------------------------------------------------------------- findings
def shape_findings(got, expected, case: Case) -> list[tuple[str, str]]:
    g, e = as_tensor(got), as_tensor(expected)
    if g is None or e is None or g.shape == e.shape:
        return []
    gs, es = tuple(g.shape), tuple(e.shape)
    if g.numel() == e.numel() and g.numel() > 0:
        if g.dtype != torch.bool and e.dtype != torch.bool:
            g2, e2 = g.double(), e.double()
        else:
            g2, e2 = g, e
        if g.squeeze().shape == e.squeeze().shape and close(g2.squeeze(), e2.squeeze(),
                                                             rtol=case.rtol, atol=case.atol):
            return [(f"the values are right, only the shape is wrong: {gs} instead of {es} "
                     f"(axes of size 1 added or missing)",
                     f"return exactly shape {es}: add or drop the size-1 axes ([:, None], .unsqueeze, .squeeze)")]
        if g.dim() == e.dim():
            if g.dim() <= 5:
                for perm in itertools.permutations(range(e.dim())):
                    if perm != tuple(range(e.dim())) and tuple(e.shape[p] for p in perm) == gs and \
                            close(g2, e2.permute(perm), rtol=case.rtol, atol=case.atol):
                        swapped = [i for i, p in enumerate(perm) if p != i]
                        names = case.axes
                        where = (", ".join(names[i] for i in swapped) if names and len(names) == e.dim()
                                 else ", ".join(str(i - e.dim()) for i in swapped))
                        return [(f"the values are right but the axes are permuted (transposed): shape {gs} "
                                 f"instead of {es}; the axes {where} are swapped",
                                 "check every .transpose/.permute/.T and the order of the axes you return")]
    # read the wrong sizes with the named sizes
    named = {v: k for k, v in case.sizes.items()}
    notes = []
    if g.dim() == e.dim():
        for i, (a, b) in enumerate(zip(gs, es)):
            if a != b:
                notes.append(f"axis {i} has size {a}" + (f" (= {named[a]})" if a in named else "")
                             + f" where {b}" + (f" (= {named[b]})" if b in named else "") + " is expected")
    else:
        notes.append(f"{g.dim()} axes where {e.dim()} are expected")
    return [(f"shape {gs} instead of {es}: " + "; ".join(notes),
             "print the shapes after each line and compare with the expected shape")]


def value_findings(got, expected, case: Case) -> list[tuple[str, str]]:
    """Kinds of difference between two same-shape tensors."""
    g, e = as_tensor(got), as_tensor(expected)
    if g is None or e is None or g.shape != e.shape or g.numel() == 0:
        return []
    if g.dtype == torch.bool or e.dtype == torch.bool:
        g, e = g.to(torch.float64), e.to(torch.float64)
    g, e = g.double(), e.double()
    out: list[tuple[str, str]] = []
    gnan, enan = torch.isnan(g), torch.isnan(e)
    if (gnan & ~enan).any():
        n = int((gnan & ~enan).sum())
        out.append((f"{n} of {g.numel()} values are NaN where the reference has numbers",
                    "a NaN comes from 0/0, inf - inf, a softmax over a row that is all -inf, or acos/sqrt/log "
                    "outside their domain: print the intermediate values"))
        return out
    fin = torch.isfinite(g) & torch.isfinite(e)
    if not fin.all():
        if (torch.isinf(g) & ~torch.isinf(e)).any():
            out.append(("some values are infinite where the reference is finite",
                        "an infinite value comes from dividing by 0 or from -inf that is not removed by a softmax"))
        gf, ef = g[fin], e[fin]
    else:
        gf, ef = g.flatten(), e.flatten()
    tol = case.atol + case.rtol * ef.abs()
    # a constant factor
    nz = ef.abs() > 1e-12
    ratio = None
    if nz.sum() >= 1 and ((gf == 0) == (ef == 0)).all():
        r = gf[nz] / ef[nz]
        ratio = float(r.median())
        if abs(ratio - 1) > 1e-4 and ((r - ratio).abs() <= 1e-3 * abs(ratio) + 1e-9).all():
            name = name_value(ratio, case.factors)
            inv = name_value(1 / ratio, case.factors) if ratio else None
            if g.numel() == 1 and not (name or inv):
                ratio = None  # any two numbers have a ratio: only a known factor says something
        if ratio is not None and abs(ratio - 1) > 1e-4 and ((r - ratio).abs() <= 1e-3 * abs(ratio) + 1e-9).all():
            if name:
                what = f"a constant factor: your values are the reference times {_fmt(ratio)} = {name}"
            elif inv:
                what = f"a constant factor: your values are the reference divided by {_fmt(1 / ratio)} = {inv}"
            elif math.isclose(ratio, -1, rel_tol=1e-4):
                what = "the sign is flipped: your values are minus the reference"
            else:
                what = f"a constant factor: your values are the reference times {_fmt(ratio)}"
            out.append((what, "look for a factor (a scale, a mean instead of a sum, a missing or extra "
                              "division) applied to the whole result"))
            return out
    # a constant offset
    d = gf - ef
    off = float(d.median())
    if abs(off) > 1e-6 and ((d - off).abs() <= tol + 1e-6).all() and \
            (g.numel() > 1 or name_value(off, case.offsets, rtol=1e-3)):
        name = name_value(off, case.offsets, rtol=1e-3)
        out.append((f"a constant offset: your values are the reference {'+' if off > 0 else '-'} {_fmt(abs(off))}"
                    + (f" = {name}" if name else ""),
                    "look for a term added to (or missing from) the whole result"))
        return out
    if g.dim() >= 2 and g.shape[-1] == g.shape[-2] and g.shape[-1] > 1 and \
            close(g, e.transpose(-2, -1), rtol=case.rtol, atol=case.atol):
        out.append(("your result is the reference transposed (its last two axes swapped)",
                    "check which axis is which: rows are the first of the last two axes"))
        return out
    found = _axis_findings(g, e, case)
    if found:
        return found
    out += where_findings(g, e, case)
    return out


def _axis_findings(g, e, case: Case) -> list[tuple[str, str]]:
    """Along one axis: a shift by one, or the slices (heads, rows, columns) in another order."""
    names = case.axes if case.axes and len(case.axes) == g.dim() else None
    for ax in range(g.dim()):
        n = g.shape[ax]
        if n < 2:
            continue
        axname = names[ax] if names else f"axis {ax}"
        # a shift by one along this axis
        for k, words in ((1, "one later"), (-1, "one earlier")):
            a = g.narrow(ax, k if k > 0 else 0, n - 1)
            b = e.narrow(ax, 0 if k > 0 else 1, n - 1)
            if not close(g, e) and close(a, b, rtol=case.rtol, atol=case.atol):
                return [(f"off by one: along the {axname} your result is the reference shifted by one "
                            f"(each entry holds the reference's value from {words})",
                            "check where the count starts (0 or 1) and every +1/-1")]
        # slices in another order (heads, rows, columns permuted)
        if 2 <= n <= 16:
            gs = [g.select(ax, i) for i in range(n)]
            es = [e.select(ax, i) for i in range(n)]
            order = []
            for s in gs:
                j = next((j for j, t in enumerate(es) if close(s, t, rtol=case.rtol, atol=case.atol)), None)
                order.append(j)
            if None not in order and sorted(order) == list(range(n)) and order != list(range(n)):
                return [(f"the {axname} come in another order: your slices {list(range(n))} along the "
                            f"{axname} are the reference's {order}",
                            "the pieces are right but put together in the wrong order (cat/stack/reshape order)")]
    return []


def where_findings(g, e, case: Case) -> list[tuple[str, str]]:
    """Which indices along which axes differ (when the differences are confined)."""
    fin_g = torch.nan_to_num(g, nan=1e300, posinf=1e300, neginf=-1e300)
    fin_e = torch.nan_to_num(e, nan=1e300, posinf=1e300, neginf=-1e300)
    bad = (fin_g - fin_e).abs() > case.atol + case.rtol * fin_e.abs()
    if not bad.any() or bad.all():
        return []
    names = case.axes if case.axes and len(case.axes) == g.dim() else None
    notes = []
    for ax in range(g.dim()):
        n = g.shape[ax]
        if n < 2:
            continue
        per = bad.transpose(0, ax).reshape(n, -1).any(1)
        wrong = [i for i in range(n) if per[i]]
        if len(wrong) == n:
            continue
        if not names and n > 32:
            continue  # a long unnamed axis (a flat parameter vector): index ranges say nothing
        axname = names[ax] if names else f"axis {ax}"
        labels = case.labels.get(ax)
        if n >= 4 and wrong == list(range(1, n, 2)):
            desc = f"only the odd {axname} (1, 3, 5, ...) are wrong; the even ones are right"
        elif n >= 4 and wrong == list(range(0, n, 2)):
            desc = f"only the even {axname} (0, 2, 4, ...) are wrong; the odd ones are right"
        elif labels is not None:
            desc = (f"wrong at {axname} " + ", ".join(str(labels[i]) for i in wrong[:8])
                    + ("..." if len(wrong) > 8 else "") + "; right at "
                    + ", ".join(str(labels[i]) for i in range(n) if not per[i])[:120])
        else:
            desc = f"wrong at {axname} {_ranges(wrong)}; right at {_ranges([i for i in range(n) if not per[i]])}"
        notes.append(desc)
    if not notes:
        return []
    frac = float(bad.double().mean())
    return [("the difference is confined: " + "; ".join(notes) + f" ({frac:.0%} of the values differ)",
             "look at the part of the code that produces those entries")]


def findings(got, expected, case: Case) -> list[tuple[str, str]]:
    """Everything :mod:`diagnose` can say about ``got`` against ``expected``."""
    out: list[tuple[str, str]] = []
    if isinstance(got, (tuple, list)) and isinstance(expected, (tuple, list)) and len(got) == len(expected):
        parts = case.parts or [f"item {i}" for i in range(len(expected))]
        ok = [close(g, e, rtol=case.rtol, atol=case.atol) for g, e in zip(got, expected)]
        if any(ok):
            out.append((", ".join(f"the {p} {'is right' if o else 'differs'}" for p, o in zip(parts, ok)), ""))
        for p, g, e, o in zip(parts, got, expected, ok):
            if not o:
                for what, look in shape_findings(g, e, case) or value_findings(g, e, case):
                    out.append((f"{p}: {what}", look))
    else:
        out += shape_findings(got, expected, case) or value_findings(got, expected, case)
    if case.extra is not None:
        try:
            out = case.extra(got, expected) + out
        except Exception:  # noqa: BLE001 - an analyzer must never hide the diagnosis
            pass
    return out


# --------------------------------------------------------------------------- errors
def error_findings(raised: Raised, shapes: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    text = raised.text
    m = re.search(r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\) at non-singleton "
                  r"dimension (\d+)", text)
    if m:
        a, b, dim = m.groups()
        where = ""
        if shapes:
            where = " Inputs here: " + ", ".join(f"{k} {v}" for k, v in shapes.items()) + "."
        return [(f"a broadcasting error: two tensors meet with sizes {a} and {b} on the same axis "
                 f"(axis {dim} of the result).{where}",
                 "line up the axes before an elementwise operation: add the missing axis with [:, None] "
                 "(or .unsqueeze) so each size meets a 1 or the same size")]
    if "mat1 and mat2" in text or "size mismatch" in text:
        return [("a matrix product with mismatched inner sizes: " + text, "print the shapes of both operands")]
    return []


# --------------------------------------------------------------------------- judge
def _fail(name: str, what: str, fix: str, found: Sequence[tuple[str, str]] = ()):
    text = f"Exercise '{name}': {what}"
    found = [(w, lk) for w, lk in found if w]
    if found:
        text += f"\n  {MARK} " + "\n         ".join(w for w, _ in found)
        looks = list(dict.fromkeys(lk for _, lk in found if lk))
        if looks:
            text += "\n  Look at: " + "\n           ".join(looks[:3])
    raise ExerciseError(text + f"\n  Fix: {fix}")


def _matches(got, mistake, case: Case) -> bool:
    result = mistake() if callable(mistake) else mistake
    return result is not None and not isinstance(result, Raised) and close(got, result, rtol=case.rtol,
                                                                               atol=case.atol)


def judge(name: str, cases: Sequence[Case], *, what: str, fix: str,
          on_error: Sequence[tuple[str, str, str]] = (), look: Mapping[str, str] | None = None,
          look_right: Mapping[str, str] | None = None, shapes: Mapping[str, Any] | None = None) -> int:
    """Pass when every case matches; else name a catalogued mistake; else localize (see module doc).
    ``look`` maps a case label to where to look when that condition goes wrong while the first case
    is right; ``look_right`` to where to look when that condition is right and others are wrong."""
    ok = [close(c.got, c.expected, rtol=c.rtol, atol=c.atol) for c in cases]
    if all(ok):
        return len(cases)
    bad = [c for c, o in zip(cases, ok) if not o]
    # 1. a catalogued mistake
    for c in bad:
        if isinstance(c.got, Raised):
            continue
        for mistake, message, mfix in c.mistakes:
            if _matches(c.got, mistake, c):
                fail_what = f"{what} matches a classic mistake: {message}"
                if len(cases) > 1:
                    fail_what += f" (seen with {c.label})"
                _fail(name, fail_what, mfix)
    # 2. errors
    raised = [c for c in bad if isinstance(c.got, Raised)]
    if raised:
        c = raised[0]
        for needle, message, efix in on_error:
            if needle.lower() in c.got.text.lower():
                _fail(name, f"your code raised {c.got.text!r} ({c.label}). Likely: {message}", efix)
    found: list[tuple[str, str]] = []
    right = [c.label for c, o in zip(cases, ok) if o]
    if right:
        # a condition's hint only when the basic condition (the first) is right: then the extra
        # ingredient of that condition (a mask, 4-D inputs, another size) is what goes wrong
        hints = [look[c.label] for c in bad if ok[0] and look and look.get(c.label)]
        hints += [look_right[label] for label in right if look_right and look_right.get(label)]
        found.append((f"right for {'; '.join(right)} - wrong for {'; '.join(c.label for c in bad)}",
                      "; ".join(hints)))
    if raised:
        c = raised[0]
        found += error_findings(c.got, shapes)
        if not found:
            _fail(name, f"your code raised {c.got.text!r} ({c.label}).",
                  "run it on the small inputs in the cell above and print the shapes at each line.")
        _fail(name, f"your code raised {c.got.text!r} ({c.label}).", fix, found)
    c = bad[0]
    found += [(f"({c.label}) {w}" if len(cases) > 1 else w, lk) for w, lk in findings(c.got, c.expected, c)]
    if found:
        _fail(name, f"{what} differs from the reference ({c.label}: max abs error "
                    f"{max_err(c.got, c.expected)}) and matches none of the classic mistakes this check knows.",
              fix, found)
    _fail(name, f"{what} differs from the reference ({c.label}: max abs error {max_err(c.got, c.expected)}) "
                f"and matches none of the classic mistakes this check knows; compare line by line.", fix)
