"""The `counting` verifier: reward 1 when the answered count equals the reference count.

Which number is the answer (documented in docs/verifier-geometry-count-puzzle.md): the number
in the last ``\\boxed{}``, else the first number after the last "answer is" / "answer:", else
the last number in the solution. Numbers are digits ("12", "1,000", "5.0") or English words
("zero".."nineteen", tens "twenty".."ninety", and "twenty-one" style compounds). Numbers inside
``<bbox>``/``<point>`` tags are not read. With ``options.count_points`` the answer is instead
the number of well-formed ``<point>`` tags.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from verifiers.geometry import MAX_PARSE_CHARS, normalize_point, parse_points
from verifiers.registry import register
from verifiers.response_format import extract_solution
from verifiers.schemas import VerifyResult

NAME = "counting"

_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
WORD_VALUES: dict[str, int] = {w: i for i, w in enumerate(_UNITS)}
WORD_VALUES.update({w: 20 + 10 * i for i, w in enumerate(_TENS)})

_WORD = "|".join(sorted(WORD_VALUES, key=len, reverse=True))
_NUMBER = re.compile(
    rf"(?P<word>\b(?:{'|'.join(_TENS)})[\s-](?:one|two|three|four|five|six|seven|eight|nine)\b"
    rf"|\b(?:{_WORD})\b)"
    # digits not glued to letters ("3D", "x2") and not part of a longer token
    r"|(?<![\w.])(?P<digits>[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)(?![\w]|\.\d)",
    re.IGNORECASE,
)
_ANSWER_MARK = re.compile(r"answer\s*(?:is|:|=)", re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\s*\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")
_TAGS = re.compile(r"<(bbox|point)>[^<]{0,500}</\1>", re.IGNORECASE)


class CountingReference(BaseModel):
    """The true count: ``{"count": n}``, n a non-negative integer."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(..., ge=0, le=1_000_000)

    @field_validator("count", mode="before")
    @classmethod
    def _whole_number(cls, v: Any) -> Any:
        # bool is an int in Python, and 3.0 arrives from parquet float columns
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError("count must be a non-negative integer")
        if isinstance(v, float) and not v.is_integer():
            raise ValueError(f"count must be a whole number, got {v}")
        return int(v)


class CountingOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    count_points: StrictBool = False


def number_value(m: re.Match[str]) -> float:
    """The value of one `_NUMBER` match."""
    if m.group("word"):
        words = re.split(r"[\s-]+", m.group("word").lower())
        return float(sum(WORD_VALUES[w] for w in words))
    return float(m.group("digits").replace(",", "").replace("−", "-"))


def find_count(solution: str) -> tuple[re.Match[str] | None, str]:
    """The number a solution answers with, and which rule picked it (see the module docstring)."""
    text = _TAGS.sub(" ", solution[:MAX_PARSE_CHARS])
    boxed = _BOXED.findall(text)
    if boxed:
        nums = list(_NUMBER.finditer(boxed[-1]))
        return (nums[-1] if nums else None), "boxed"
    marks = list(_ANSWER_MARK.finditer(text))
    if marks:
        m = _NUMBER.search(text, marks[-1].end())
        if m is not None:
            return m, "answer_marker"
    nums = list(_NUMBER.finditer(text))
    return (nums[-1] if nums else None), "last_number"


@register(NAME, version="1", reference=CountingReference)
def verify_counting(response: str, reference: Any, options: dict[str, Any]) -> VerifyResult:
    """Reward 1 if the answered count (or the number of <point> tags) equals the reference."""
    ref = CountingReference.model_validate(reference)
    try:
        opts = CountingOptions.model_validate(options)
    except ValidationError as e:
        return VerifyResult.failure(NAME, f"options.count_points: {e.errors()[0]['msg']}")
    solution = extract_solution(response)
    details: dict[str, Any] = {"expected": ref.count}
    if opts.count_points:
        points = parse_points(solution)
        valid = [p for p in points if normalize_point(p.values, (1.0, 1.0)) is not None]
        answer = float(len(valid))
        details.update(
            rule="count_points", answer=len(valid), malformed_points=len(points) - len(valid)
        )
    else:
        m, rule = find_count(solution)
        details["rule"] = rule
        if m is None:
            details.update(answer=None, reason="no number found in the solution")
            return VerifyResult(reward=0.0, correct=False, details=details)
        answer = number_value(m)
        details["answer"] = int(answer) if answer.is_integer() else m.group(0)[:40]
    ok = answer == ref.count
    return VerifyResult(reward=1.0 if ok else 0.0, correct=ok, details=details)
