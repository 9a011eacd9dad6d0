"""Types every instruction check shares: its verdict, its regex deadline and its argument base."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict

# IFEval's two comparison relations, spelled as in its data.
Relation = Literal["less than", "at least"]


@dataclass(frozen=True)
class Verdict:
    """Whether one constraint holds on one text, and a short human-readable reason."""

    ok: bool
    reason: str


class ConstraintError(ValueError):
    """A constraint that cannot be checked: unknown id or bad kwargs (names the constraint)."""


class RegexTimeout(Exception):
    """A regular expression over user-supplied input ran out of time."""


class RegexTooLong(Exception):
    """The text is longer than a user-supplied regex may scan."""


@dataclass
class Deadline:
    """Time left for user-supplied regexes in one verification.

    Each regex call gets at most ``per_call_s``; all of them together at most ``total_s``, so
    a reference full of pathological patterns still returns in bounded time.
    """

    per_call_s: float = 0.25
    total_s: float = 2.0
    _end: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._end = time.monotonic() + self.total_s

    def timeout(self) -> float:
        """Seconds the next regex call may run; raises `RegexTimeout` when the budget is spent."""
        left = self._end - time.monotonic()
        if left <= 0:
            raise RegexTimeout("regex time budget spent")
        return min(self.per_call_s, left)


class Args(BaseModel):
    """Base of every constraint's kwargs model: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def compare(actual: int, relation: Relation, threshold: int) -> bool:
    """IFEval's relation test: ``less than`` is ``<``, ``at least`` is ``>=``."""
    return actual < threshold if relation == "less than" else actual >= threshold
