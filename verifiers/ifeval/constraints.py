"""Parsing and judging constraints: an id plus kwargs, checked on a text in strict or loose mode.

Loose mode is IFEval's: a constraint also holds if it holds on the text with its first line,
its last line or both removed, or with every ``*`` removed (or both edits); strict mode judges
the text as given. An empty (all-whitespace) text follows no constraint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from verifiers.ifeval.base import (
    Args,
    ConstraintError,
    Deadline,
    RegexTimeout,
    RegexTooLong,
    Verdict,
)
from verifiers.ifeval.checks import CHECKS, Check
from verifiers.ifeval.regex_constraint import RegexArgs, check_regex

Mode = Literal["strict", "loose"]

_ALL: dict[str, Check] = {"regex": Check(RegexArgs, check_regex), **CHECKS}
CONSTRAINT_IDS: tuple[str, ...] = ("regex", *sorted(CHECKS))


@dataclass(frozen=True)
class Constraint:
    """A validated constraint, ready to judge a text."""

    id: str
    args: Args
    fn: Callable[[str, Args, Deadline], Verdict]


def _brief(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:4]:
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def parse_constraint(constraint_id: str, kwargs: Mapping[str, Any] | None) -> Constraint:
    """Validate ``kwargs`` for ``constraint_id``; null values mean "not given" (as in IFEval data).

    Raises `ConstraintError` naming the constraint for an unknown id or bad kwargs.
    """
    check = _ALL.get(constraint_id)
    if check is None:
        raise ConstraintError(
            f"unknown constraint id {constraint_id!r}; known: {', '.join(CONSTRAINT_IDS)}"
        )
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise ConstraintError(
            f"kwargs of {constraint_id!r} must be an object, got {type(kwargs).__name__}"
        )
    given = {k: v for k, v in (kwargs or {}).items() if v is not None}
    try:
        args = check.args.model_validate(given)
    except ValidationError as e:
        raise ConstraintError(f"bad kwargs for {constraint_id!r}: {_brief(e)}") from None
    return Constraint(constraint_id, args, check.fn)


def loose_variants(text: str) -> list[tuple[str, str]]:
    """IFEval's loose-mode variants of ``text``, named, the text itself first."""
    lines = text.split("\n")
    first = "\n".join(lines[1:]).strip()
    last = "\n".join(lines[:-1]).strip()
    both = "\n".join(lines[1:-1]).strip()
    return [
        ("as is", text),
        ("asterisks removed", text.replace("*", "")),
        ("first line removed", first),
        ("last line removed", last),
        ("first and last lines removed", both),
        ("first line and asterisks removed", first.replace("*", "")),
        ("last line and asterisks removed", last.replace("*", "")),
        ("first and last lines and asterisks removed", both.replace("*", "")),
    ]


def _judge_one(c: Constraint, text: str, deadline: Deadline) -> Verdict:
    try:
        return c.fn(text, c.args, deadline)
    except RegexTimeout:
        return Verdict(False, "regex timeout")
    except RegexTooLong as e:
        return Verdict(False, str(e))


def judge(c: Constraint, text: str, mode: Mode, deadline: Deadline) -> Verdict:
    """The verdict of one constraint on ``text``; loose mode passes if any variant passes."""
    variants = loose_variants(text) if mode == "loose" else [("as is", text)]
    first_failure: Verdict | None = None
    for name, variant in variants:
        if not variant.strip():
            continue
        v = _judge_one(c, variant, deadline)
        if v.ok:
            return v if name == "as is" else Verdict(True, f"{v.reason} ({name})")
        if v.reason == "regex timeout":
            return v  # other variants would time out as well; keep the cost bounded
        first_failure = first_failure or v
    return first_failure or Verdict(False, "empty response")


def judge_all(
    constraints: list[Constraint],
    text: str,
    mode: Mode = "strict",
    deadline: Deadline | None = None,
) -> list[Verdict]:
    """Verdicts of ``constraints`` on ``text``, in order, sharing one regex time budget."""
    deadline = deadline or Deadline()
    return [judge(c, text, mode, deadline) for c in constraints]
