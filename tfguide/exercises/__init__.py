"""Exercises that check themselves: write a chapter's from-scratch functions, then prove them.

`python -m tfguide exercise NAME` writes the functions to fill in (scaffold.py);
`python -m tfguide check NAME [FILE]` proves the learner's versions the way the
chapter proves its own, running the learner's file in a worker process with a
time limit per function (checker.py). This module is the framework both use, and
what each chapter's exercises module (tfguide/exercises/NAME.py) declares with:

    EXERCISES = (Exercise("conv2d", prove=prove_conv2d, probe=..., hint="...",
                          mistakes={"the extra 'same' row goes at the end": conv2d_pad_first}),)

`prove(fn) -> Proof` runs the chapter's proof on `fn`; `probe(fn)` calls `fn` on
one fixed input, and when a failing answer matches what a known mistake gives
on that input, the checker names the mistake.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class Proof:
    """The result of a chapter's proof on one function: its worst error and where it was."""

    error: float
    tolerance: float
    case: str = ""  # the worst input case, in words

    @property
    def passed(self) -> bool:
        return self.error <= self.tolerance  # NaN fails


@dataclasses.dataclass(frozen=True)
class Exercise:
    """One from-scratch function a learner writes, and how the chapter proves it."""

    function: str  # its name in the chapter module
    prove: Callable[[Callable], Proof]
    hint: str  # one line: what to do (shown in the scaffold and on a failure)
    probe: Callable[[Callable], Any] | None = None  # fn's output on one fixed input
    mistakes: Mapping[str, Callable] = dataclasses.field(default_factory=dict)  # hint -> wrong fn


def worst(errors: Sequence[tuple[str, float]], tolerance: float) -> Proof:
    """Return the Proof of the largest error among (case, error) pairs."""
    case, error = max(errors, key=lambda pair: (pair[1] != pair[1], pair[1]))  # NaN first
    return Proof(float(error), tolerance, case)


# The scaffold and the checker (neither imports this module's names, so there is no circle)
from tfguide.exercises.scaffold import (Stubs, declarations_source, declared,  # noqa: E402
                                        declared_in_source, exercise_main, exercise_module,
                                        module_source, scaffold, stubs, write_scaffold)
from tfguide.exercises.checker import (DEFAULT_TIMEOUT, LearnerError, Session,  # noqa: E402
                                       Verdict, check, check_function, check_main, check_one,
                                       compile_learner_file, confirmed, learner_traceback,
                                       load_learner_file, report)

__all__ = ["Proof", "Exercise", "worst", "Stubs", "declarations_source", "declared",
           "declared_in_source", "exercise_main", "exercise_module", "module_source", "scaffold",
           "stubs", "write_scaffold", "DEFAULT_TIMEOUT", "LearnerError", "Session", "Verdict",
           "check", "check_function", "check_main", "check_one", "compile_learner_file",
           "confirmed", "learner_traceback", "load_learner_file", "report"]
