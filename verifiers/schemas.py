"""Pydantic schemas shared by the verifier functions, the sandbox, the HTTP API and the CLI."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class VerifyResult(BaseModel):
    """What a verifier function returns: a reward in [0, 1] and why."""

    model_config = ConfigDict(extra="forbid")

    verifier: str = ""
    reward: float = Field(0.0, ge=0.0, le=1.0)
    correct: bool = False
    format_ok: bool = False
    details: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None

    @classmethod
    def failure(cls, verifier: str, error: str, **details: Any) -> VerifyResult:
        """A zero-reward result carrying an error message (bad reference, timeout, crash)."""
        return cls(
            verifier=verifier,
            reward=0.0,
            correct=False,
            format_ok=False,
            details=details,
            error=error,
        )


class VerifyRequest(BaseModel):
    """One verification: the named verifier applied to a response against a reference."""

    model_config = ConfigDict(extra="forbid")

    verifier: str = Field(..., min_length=1, max_length=64, description="registered verifier name")
    response: str = Field(..., description="the model's full response text")
    reference: Any = Field(None, description="ground truth; its schema depends on the verifier")
    options: dict[str, Any] = Field(default_factory=dict)


class VerifyResponse(VerifyResult):
    """A `VerifyResult` as served: plus cache and timing information."""

    cached: bool = False
    elapsed_ms: float = 0.0


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[VerifyRequest] = Field(..., max_length=4096)


class BatchResponse(BaseModel):
    results: list[VerifyResponse]
