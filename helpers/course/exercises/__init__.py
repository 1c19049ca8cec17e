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
