"""Verifiers: pure functions ``(response, reference, options) -> VerifyResult``.

``verify(name, response, reference, options)`` runs one in this process; the sandbox pool
(`verifiers.sandbox`) runs them in killable worker processes; `services.verifier_api` serves
them over HTTP.
"""

from verifiers.registry import UnknownVerifierError, get, names, reference_schemas, register, verify
from verifiers.schemas import VerifyRequest, VerifyResponse, VerifyResult

__all__ = [
    "UnknownVerifierError",
    "VerifyRequest",
    "VerifyResponse",
    "VerifyResult",
    "get",
    "names",
    "reference_schemas",
    "register",
    "verify",
]
