"""The `math` verifier: the visual-STEM reward of Seed1.5-VL (the model answers in LaTeX).

The final answer is taken from the solution (last ``\\boxed{}``, else an "answer is" phrase,
else the last math span or number) and compared with the reference using sympy objects built
by our own guarded parser (`verifiers.math_latex`): no model or reference text is ever passed
to ``eval``/``sympify``, and oversized powers, factorials, nesting or text are rejected before
sympy sees them. Parsed references are cached.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError

from verifiers import math_guard as guard
from verifiers.math_equiv import DEFAULT_ABS_TOL, DEFAULT_REL_TOL, Tolerance, equivalent
from verifiers.math_extract import extract_answer, unwrap_reference
from verifiers.math_latex import MATH_WORDS, Parsed, ParseError, parse_answer, show
from verifiers.math_normalize import normalize, text_key
from verifiers.registry import register
from verifiers.response_format import extract_solution
from verifiers.schemas import VerifyResult


class MathAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    answer: str | int | float = Field(
        ..., description="the reference answer: LaTeX (with or without $…$/\\boxed{}) or plain text"
    )


class MathReference(RootModel[MathAnswer | str | int | float]):
    """``{"answer": "\\frac{1}{2}"}`` or the bare answer ``"1/2"`` (numbers are accepted too)."""


class MathOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")  # the registry's own options share this dict

    rel_tol: float = Field(DEFAULT_REL_TOL, ge=0.0, le=1.0)
    abs_tol: float = Field(DEFAULT_ABS_TOL, ge=0.0)
    max_response_chars: int = Field(guard.MAX_RESPONSE_CHARS, ge=1, le=10_000_000)


def reference_text(reference: Any) -> str:
    """The answer string inside a reference in any accepted shape."""
    ref = MathReference.model_validate(reference).root
    value = ref.answer if isinstance(ref, MathAnswer) else ref
    return value if isinstance(value, str) else repr(value)


_WORDLIKE = re.compile(r"[A-Za-z]{3,}(?:[\s'-][A-Za-z]+)*")


def _looks_like_text(norm: str) -> bool:
    """ "yes", "\\text{Monday}": a word answer, compared as text rather than as a product."""
    plain = re.sub(r"^\\(?:text|textbf|mathrm|mbox)\s*\{(.*)\}$", r"\1", norm).strip()
    if not _WORDLIKE.fullmatch(plain):
        return False
    return not any(w in MATH_WORDS for w in re.split(r"[\s'-]+", plain.lower()))


@lru_cache(maxsize=8192)
def _parse_reference(ref: str) -> tuple[str, Parsed | None, str | None]:
    """(normalised text, parsed answer or None for text answers, guard error) of a reference."""
    norm = normalize(unwrap_reference(ref))
    if _looks_like_text(norm):
        return norm, None, None
    try:
        return norm, parse_answer(norm), None
    except guard.GuardError as e:
        return norm, None, str(e)
    except (ParseError, RecursionError, ValueError, TypeError, ArithmeticError):
        return norm, None, None


def _string_key(norm: str) -> str:
    return re.sub(r"\s+", "", norm)


@register("math", version="1", reference=MathReference)
def verify_math(response: str, reference: Any, options: dict[str, Any]) -> VerifyResult:
    """LaTeX final answer equal to the reference (sympy, guarded parser, tolerances)."""
    try:
        opts = MathOptions.model_validate(options)
    except ValidationError as e:
        return VerifyResult.failure("math", f"invalid options: {e.errors()[0]['msg']}")
    if len(response) > opts.max_response_chars:
        return _zero(rejected=f"response too long ({len(response)} > {opts.max_response_chars})")
    ref = reference_text(reference)
    if len(ref) > guard.MAX_ANSWER_CHARS:
        return VerifyResult.failure("math", f"reference longer than {guard.MAX_ANSWER_CHARS} chars")
    gold_norm, gold, gold_error = _parse_reference(ref)
    if gold_error is not None:
        return VerifyResult.failure("math", f"reference rejected: {gold_error}")
    details: dict[str, Any] = {"reference": gold_norm, "parsed_reference": _show(gold)}

    found = extract_answer(extract_solution(response))
    details["extraction"] = found.how
    if found.answer is None:
        return _zero(**details, reason="no final answer found")
    try:
        guard.check_text(found.answer, "extracted answer")
    except guard.GuardError as e:
        return _zero(**details, extracted=found.answer[:200] + "…", rejected=str(e))
    pred_norm = normalize(unwrap_reference(found.answer))
    details["extracted"] = pred_norm

    if _string_key(pred_norm) == _string_key(gold_norm):
        return _result(True, details, "string")
    if gold is None:  # a text answer
        return _result(text_key(pred_norm) == text_key(gold_norm), details, "text")
    try:
        pred = parse_answer(pred_norm)
    except guard.GuardError as e:
        return _zero(**details, rejected=str(e))
    except (ParseError, RecursionError, ValueError, TypeError, ArithmeticError) as e:
        same = text_key(pred_norm) == text_key(gold_norm)
        return _result(same, {**details, "parse_error": str(e)[:200]}, "text")
    details["parsed_response"] = _show(pred)
    details["approx"] = gold.approx or pred.approx
    verdict = equivalent(gold, pred, Tolerance(opts.rel_tol, opts.abs_tol))
    return _result(verdict.equal, details, verdict.method)


def warm_up() -> None:
    """Run a few comparisons so that sympy's lazily imported modules (simplify pulls in
    sympy.physics, ~0.5 s) load now rather than inside the first timed verification."""
    for response, reference in (
        ("\\boxed{(x+1)^2}", "x^2+2x+1"),
        ("\\boxed{\\ln(x-x)}", "x+1"),  # numbers cannot decide: simplify
        ("\\boxed{(1,2]\\cup[2,3]}", "(1,3]"),
        ("\\boxed{\\sin^2 x+\\cos^2 x}", "1"),
    ):
        verify_math(response, reference, {})


def _show(p: Parsed | None) -> str | None:
    if p is None:
        return None
    return " | ".join(show(r) for r in p.readings)[:500]


def _result(ok: bool, details: dict[str, Any], method: str) -> VerifyResult:
    details["method"] = method
    return VerifyResult(reward=1.0 if ok else 0.0, correct=ok, details=details)


def _zero(**details: Any) -> VerifyResult:
    return VerifyResult(reward=0.0, correct=False, details=details)
