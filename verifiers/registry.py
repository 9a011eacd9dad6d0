"""The verifier registry: a verifier is a plain function registered under a name.

A verifier has the signature ``fn(response: str, reference: Any, options: dict) -> VerifyResult``
and is pure: no I/O, no global state. The sandbox, the cache and HTTP are layers around it.
Each verifier declares a pydantic model for its reference (validated before the call, and
published by ``GET /v1/verifiers``) and a version string that is part of the cache key, so
bumping it invalidates cached results after a behaviour change.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from verifiers.response_format import check_format
from verifiers.schemas import VerifyResult

VerifierFn = Callable[[str, Any, dict[str, Any]], VerifyResult]

# Modules whose import registers the built-in verifiers.
_BUILTIN_MODULES = (
    "verifiers.format",
    "verifiers.math_answer",
    "verifiers.grounding",
    "verifiers.counting",
    "verifiers.instruction",
    "verifiers.puzzle",
    "verifiers.spot_difference",
)


@dataclass(frozen=True)
class VerifierSpec:
    name: str
    fn: VerifierFn
    version: str
    reference_model: type[BaseModel] | None
    description: str


class UnknownVerifierError(KeyError):
    def __init__(self, name: str, known: list[str]):
        super().__init__(name)
        self.name = name
        self.known = known

    def __str__(self) -> str:
        return f"unknown verifier {self.name!r}; known verifiers: {', '.join(self.known)}"


_REGISTRY: dict[str, VerifierSpec] = {}
_loaded = False


def register(
    name: str, *, version: str = "1", reference: type[BaseModel] | None = None
) -> Callable[[VerifierFn], VerifierFn]:
    """Decorator: register ``fn`` as the verifier ``name``."""

    def deco(fn: VerifierFn) -> VerifierFn:
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = VerifierSpec(name, fn, version, reference, doc[0] if doc else "")
        return fn

    return deco


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    for mod in _BUILTIN_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:  # a verifier module not written yet
            if e.name != mod:
                raise
    _loaded = True


def names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def get(name: str) -> VerifierSpec:
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownVerifierError(name, sorted(_REGISTRY)) from None


def verify(
    name: str, response: str, reference: Any = None, options: dict[str, Any] | None = None
) -> VerifyResult:
    """Run verifier ``name`` in this process (no sandbox, no cache).

    The reference is validated against the verifier's schema first; a bad reference or an
    exception inside the verifier becomes a zero-reward result with ``error`` set, never a raise.
    ``options.require_format`` (default false) zeroes the reward of a response that breaks the
    ``<think>…</think>solution`` format. Unknown verifier names raise `UnknownVerifierError`.
    """
    spec = get(name)
    options = dict(options or {})
    if not isinstance(response, str):
        return VerifyResult.failure(
            name, f"response must be a string, got {type(response).__name__}"
        )
    fmt = check_format(response)
    if spec.reference_model is not None and name != "format":
        try:
            spec.reference_model.model_validate(reference)
        except ValidationError as e:
            return VerifyResult.failure(name, f"invalid reference for {name!r}: {_brief(e)}")
    try:
        result = spec.fn(response, reference, options)
    except Exception as e:  # a verifier bug must not take the caller down
        return VerifyResult.failure(name, f"{type(e).__name__}: {e}"[:500])
    result.verifier = name
    result.format_ok = fmt.ok
    if options.get("require_format") and not fmt.ok:
        result.details.setdefault("unformatted_reward", result.reward)
        result.reward = 0.0
        result.correct = False
    return result


def _brief(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:5]:
        loc = ".".join(str(x) for x in err["loc"]) or "reference"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def reference_schemas() -> dict[str, dict[str, Any]]:
    """Each verifier's version, description and reference JSON schema (for GET /v1/verifiers)."""
    out = {}
    for n in names():
        spec = _REGISTRY[n]
        out[n] = {
            "version": spec.version,
            "description": spec.description,
            "reference_schema": spec.reference_model.model_json_schema()
            if spec.reference_model
            else None,
        }
    return out
