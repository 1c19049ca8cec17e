"""Assertions that say what is wrong (used in every notebook).

Notebooks are committed without outputs, so a CI run only proves that cells *ran*. These
checks make a wrong result fail loudly, with a message a learner can act on::

    check_shape(scores, (batch, heads, q_len, k_len), "attention scores")
    check_close(mine, torch_ref, atol=1e-5, name="multi-head attention output")
    check_decreasing(history["loss"], name="training loss")

Each raises :class:`CheckFailed` (an ``AssertionError``) and returns quietly otherwise,
printing a one-line confirmation when ``verbose=True`` (the default in notebooks).

A check of a result that needs a whole training run takes ``run=`` (the record
:func:`helpers.runtime.history.report_run` returned): when the time limit stopped that run early,
the check prints "not judged" with the steps done and how to continue, instead of failing on a
partly trained model (:func:`not_judged`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch


class CheckFailed(AssertionError):
    """A notebook check found a wrong result; the message says what and, when known, why."""


def _ok(verbose: bool, text: str) -> None:
    if verbose:
        print(f"✓ {text}")


def not_judged(run, name: str, seen: str = "") -> bool:
    """True, after saying so, when ``run`` (the record :func:`helpers.runtime.history.report_run`
    returned) was stopped early: a check of a result that needs the whole run does not judge a
    partly trained model. The check's name goes to ``run["not_judged"]`` (so metrics.json
    records it); run the notebook again to continue training, and the check runs then."""
    if not run or not run.get("stopped_early"):
        return False
    print(f"– not judged: {name}{f' ({seen})' if seen else ''}: training stopped after "
          f"{run['steps_done']} of {run['steps_planned']} steps ({run['stopped_early']}); run the "
          f"notebook again to continue from the checkpoint, and this check runs then")
    run.setdefault("not_judged", [])
    if name not in run["not_judged"]:
        run["not_judged"].append(name)
    return True


def _fail(name: str, what: str, hint: str | None = None) -> None:
    message = f"{name}: {what}"
    if hint:
        message += f"\n  Hint: {hint}"
    raise CheckFailed(message)


def check_shape(tensor, expected: Sequence[int | None], name: str = "tensor", *,
                hint: str | None = None, verbose: bool = True) -> None:
    """The shape equals ``expected``; ``None`` in ``expected`` matches any size."""
    got = tuple(tensor.shape)
    expected = tuple(expected)
    if len(got) != len(expected) or any(e is not None and e != g for e, g in zip(expected, got)):
        shown = tuple("*" if e is None else e for e in expected)
        detail = f"shape mismatch: expected {shown}, got {got}"
        if len(got) == len(expected):
            bad = [i for i, (e, g) in enumerate(zip(expected, got)) if e is not None and e != g]
            detail += f" (dimension{'s' if len(bad) > 1 else ''} {', '.join(map(str, bad))} differ)"
            if sorted(got) == sorted(e for e in expected if e is not None) and None not in expected:
                detail += "; the sizes are right but the order is not: a missing transpose/permute?"
        else:
            detail += f" ({len(got)} dimensions instead of {len(expected)})"
        _fail(name, detail, hint)
    _ok(verbose, f"{name}: shape {got}")


def check_close(actual, expected, *, atol: float = 1e-5, rtol: float = 0.0, name: str = "result",
                hint: str | None = None, verbose: bool = True, run=None) -> float | None:
    """``|actual - expected| <= atol + rtol * |expected|`` everywhere; returns the max abs error."""
    if not_judged(run, name):
        return None
    actual_t = torch.as_tensor(actual).detach()
    expected_t = torch.as_tensor(expected).detach()
    if actual_t.shape != expected_t.shape:
        _fail(name, f"shape mismatch: expected {tuple(expected_t.shape)}, got "
                    f"{tuple(actual_t.shape)}", hint)
    a = actual_t.double().cpu()
    e = expected_t.double().cpu()
    if not torch.isfinite(a).all():
        _fail(name, f"contains {int((~torch.isfinite(a)).sum())} NaN/inf value(s)",
              hint or "look for a division by zero, log(0) or a softmax over an all -inf row")
    diff = (a - e).abs()
    max_err = float(diff.max()) if diff.numel() else 0.0
    bad = diff > atol + rtol * e.abs()
    if bool(bad.any()):
        flat = int(torch.argmax(diff).item())
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), diff.shape)) if diff.dim() else ()
        _fail(
            name,
            f"max abs error {max_err:.3g} > tolerance (atol={atol:g}, rtol={rtol:g}); "
            f"{int(bad.sum())} of {bad.numel()} values off; worst at index {index}: "
            f"got {a[index].item():.6g}, expected {e[index].item():.6g}",
            hint,
        )
    _ok(verbose, f"{name}: matches the reference (max abs error {max_err:.2e} <= {atol:g})")
    return max_err


def check_range(tensor, low: float, high: float, name: str = "tensor", *,
                hint: str | None = None, verbose: bool = True, run=None) -> None:
    """Every value lies in ``[low, high]`` (e.g. a Tanh output in [-1, 1])."""
    if not_judged(run, name):
        return
    t = torch.as_tensor(tensor).detach()
    lo, hi = float(t.min()), float(t.max())
    if not (low <= lo and hi <= high) or math.isnan(lo) or math.isnan(hi):
        _fail(name, f"values span [{lo:.4g}, {hi:.4g}], expected within [{low:g}, {high:g}]", hint)
    _ok(verbose, f"{name}: values within [{low:g}, {high:g}] (seen [{lo:.3g}, {hi:.3g}])")


def check_finite(tensor, name: str = "tensor", *, hint: str | None = None,
                 verbose: bool = True) -> None:
    """No NaN or inf anywhere."""
    t = torch.as_tensor(tensor).detach()
    n_bad = int((~torch.isfinite(t)).sum())
    if n_bad:
        _fail(name, f"{n_bad} of {t.numel()} values are NaN or inf",
              hint or "lower the learning rate, check for log(0)/division by zero, or use fp32")
    _ok(verbose, f"{name}: all {t.numel()} values finite")


def check_decreasing(values: Iterable[float], name: str = "loss", *, window: int | None = None,
                     min_drop: float = 0.0, hint: str | None = None, verbose: bool = True, run=None) -> float | None:
    """The mean of the last ``window`` values is below the mean of the first ``window``
    by more than ``min_drop`` (a relative fraction, e.g. 0.2 = 20 % lower). Returns the drop."""
    if not_judged(run, name):
        return None
    vals = [float(v) for v in values]
    if len(vals) < 2:
        _fail(name, f"needs at least 2 values to see a trend, got {len(vals)}",
              hint or "train for more steps or log more often")
    if any(math.isnan(v) or math.isinf(v) for v in vals):
        _fail(name, "contains NaN/inf", hint or "lower the learning rate or check the loss inputs")
    k = window or max(1, len(vals) // 5)
    first = sum(vals[:k]) / k
    last = sum(vals[-k:]) / k
    drop = (first - last) / abs(first) if first else -math.inf
    if not drop > min_drop:
        _fail(
            name,
            f"did not fall enough: first {k} average {first:.4g}, last {k} average {last:.4g} "
            f"({drop:+.1%} change, needed more than {min_drop:.0%} lower)",
            hint or "check the learning rate, that optimizer.step() and zero_grad() are called, "
                    "and that the loss uses the model's output",
        )
    _ok(verbose, f"{name}: fell from {first:.4g} to {last:.4g} ({drop:.0%} lower)")
    return drop


def check_at_least(value: float, threshold: float, name: str = "metric", *,
                   hint: str | None = None, verbose: bool = True, run=None) -> None:
    """A metric reaches the threshold stated for this profile."""
    if not_judged(run, name, f"{float(value):.4g}, needs at least {threshold:g}"):
        return
    v = float(value)
    if not v >= threshold:
        _fail(name, f"{v:.4g} is below the required {threshold:g}", hint)
    _ok(verbose, f"{name}: {v:.4g} >= {threshold:g}")


def check_at_most(value: float, threshold: float, name: str = "metric", *,
                  hint: str | None = None, verbose: bool = True, run=None) -> None:
    """A cost (error, loss, seconds) stays at or below the threshold."""
    if not_judged(run, name, f"{float(value):.4g}, allowed at most {threshold:g}"):
        return
    v = float(value)
    if not v <= threshold:
        _fail(name, f"{v:.4g} is above the allowed {threshold:g}", hint)
    _ok(verbose, f"{name}: {v:.4g} <= {threshold:g}")


def check_true(condition: bool, name: str, what: str, *, hint: str | None = None,
               verbose: bool = True, run=None) -> None:
    """A general condition, with the sentence to show when it does not hold."""
    if not_judged(run, name):
        return
    if not condition:
        _fail(name, what, hint)
    _ok(verbose, name)
