"""The machinery of the exercise checks: registration, the check cell, and diagnosis by
comparison with the results of classic mistakes."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


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


def register(**kwargs) -> None:
    ex = Exercise(**kwargs)
    EXERCISES[ex.name] = ex


def hint(name: str) -> str:
    """The hint for exercise ``name`` (used by ``make student`` for the stubs)."""
    return get(name).hint


def get(name: str) -> Exercise:
    if name not in EXERCISES:
        raise KeyError(f"no exercise named {name!r}; known: {', '.join(sorted(EXERCISES))}")
    return EXERCISES[name]


def check(name: str, candidate: Any, *, verbose: bool = True) -> Any:
    """Check your solution of exercise ``name`` and return what the notebook should use next
    (your code when it is right; the tested version while it is still a blank). Raises
    :class:`ExerciseError` with a diagnosis when it is wrong. Introduced in the week of each
    exercise (see :data:`EXERCISES`)."""
    ex = get(name)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the checks' tensors are tiny: one thread is faster and never oversubscribed
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
    finally:
        torch.set_num_threads(threads)
    if verbose:
        print(f"✓ Exercise '{name}' ({ex.title}): all {passed} checks passed")
    return candidate


# --------------------------------------------------------------------------- diagnosis
def fail(name: str, what: str, fix: str) -> None:
    raise ExerciseError(f"Exercise '{name}': {what}\n  Fix: {fix}")


def close(a, b, atol: float = 1e-5) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(close(x, y, atol) for x, y in zip(a, b))
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


def max_err(a, b) -> str:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) and len(a) == len(b):
        return ", ".join(max_err(x, y) for x, y in zip(a, b))
    try:
        return f"{float((torch.as_tensor(a).double() - torch.as_tensor(b).double()).abs().max()):.3g}"
    except Exception:  # shapes differ
        return "n/a"


def diagnose(name: str, got, expected, mistakes: Sequence[tuple[Any, str, str]], what: str,
              generic_fix: str) -> int:
    """Pass if ``got`` matches ``expected``; otherwise name the first mistake whose result
    ``got`` matches; otherwise report the difference and list the usual suspects."""
    if close(got, expected):
        return 1
    for mistake_result, message, fix in mistakes:
        if mistake_result is not None and close(got, mistake_result):
            fail(name, f"{what} matches a classic mistake: {message}", fix)
    fail(name, f"{what} differs from the reference (max abs error {max_err(got, expected)}) and "
                f"matches none of the classic mistakes this check knows.", generic_fix)


def call(name: str, fn, *args, on_error: Sequence[tuple[str, str, str]] = (), **kwargs):
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
                fail(name, f"your code raised {text.splitlines()[0]!r}. Likely: {message}", fix)
        fail(name, f"your code raised {text.splitlines()[0]!r}.",
              "run it on the small inputs in the cell above and print the shapes at each line.")
