"""Exercise checks that diagnose the mistake, not just say "wrong" (both tracks).

A notebook marks a piece to write between ``# BEGIN SOLUTION name`` and ``# END SOLUTION`` and
checks it with ``attention = exercises.check("attention", attention)``. Right: your code is
returned and used. Wrong: :class:`ExerciseError` names the likely mistake (found by comparing
your result with the results of the classic mistakes). A blank (``make student`` turns each
solution into a stub raising ``NotImplementedError``): a hint, and the tested version from
``helpers`` so the rest of the notebook runs. Exercises: :data:`EXERCISES`.
"""

from helpers.course.exercises import dcgan, transformer  # noqa: F401  (register the exercises)
from helpers.course.exercises.base import (
    EXERCISES,
    NOT_DONE,
    REQUIRE_SOLUTIONS_ENV,
    ExerciseError,
    check,
    hint,
)

__all__ = ["EXERCISES", "NOT_DONE", "REQUIRE_SOLUTIONS_ENV", "ExerciseError", "check", "hint"]
