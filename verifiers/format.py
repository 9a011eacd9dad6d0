"""The `format` verifier: reward 1 for ``<think>…</think>`` followed by a non-empty solution."""

from __future__ import annotations

from typing import Any

from verifiers.registry import register
from verifiers.response_format import check_format
from verifiers.schemas import VerifyResult


@register("format", version="1", reference=None)
def verify_format(response: str, reference: Any, options: dict[str, Any]) -> VerifyResult:
    """<think>…</think> followed by a non-empty solution; the reference is ignored."""
    fc = check_format(response)
    return VerifyResult(
        reward=1.0 if fc.ok else 0.0,
        correct=fc.ok,
        format_ok=fc.ok,
        details={"reason": fc.reason, "solution_chars": len(fc.solution)},
    )
