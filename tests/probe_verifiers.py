"""Test-only verifiers that misbehave on purpose; loaded via HYBRIDRL_EXTRA_VERIFIER_MODULES.

They exercise the sandbox (sleep past the deadline, die, allocate, try to fork or connect) and
are never part of the built-in registry.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from typing import Any

from verifiers.registry import register
from verifiers.schemas import VerifyResult


@register("probe_sleep", version="1")
def probe_sleep(response: str, reference: Any, options: dict[str, Any]) -> VerifyResult:
    """Sleep options.seconds, then reward 1."""
    time.sleep(float(options.get("seconds", 0.0)))
    return VerifyResult(reward=1.0, correct=True, details={"pid": os.getpid()})


@register("probe_spin", version="1")
def probe_spin(response: str, reference: Any, options: dict[str, Any]) -> VerifyResult:
    """Burn CPU forever (a hung verifier)."""
    while True:
        pass


@register("probe_crash", version="1")
def probe_crash(response: str, reference: Any, options: dict[str, Any]) -> VerifyResult:
    """SIGKILL the worker running this item."""
    os.kill(os.getpid(), signal.SIGKILL)
    return VerifyResult()


@register("probe_pid", version="1")
def probe_pid(response: str, reference: Any, options: dict[str, Any]) -> VerifyResult:
    """Report the worker's pid (and echo the response length)."""
    return VerifyResult(
        reward=1.0, correct=True, details={"pid": os.getpid(), "chars": len(response)}
    )


@register("probe_alloc", version="1")
def probe_alloc(response: str, reference: Any, options: dict[str, Any]) -> VerifyResult:
    """Allocate options.mb megabytes."""
    block = bytearray(int(options.get("mb", 1)) * 1024 * 1024)
    return VerifyResult(reward=1.0, correct=True, details={"bytes": len(block)})


@register("probe_escape", version="1")
def probe_escape(response: str, reference: Any, options: dict[str, Any]) -> VerifyResult:
    """Try what a sandboxed verifier must not do: run a shell command, reach the network."""
    out: dict[str, Any] = {}
    try:
        out["system"] = os.system(f"touch {options['marker']}")
    except Exception as e:  # noqa: BLE001
        out["system"] = f"{type(e).__name__}: {e}"
    try:
        with socket.create_connection(("127.0.0.1", int(options["port"])), timeout=1):
            out["connect"] = "connected"
    except OSError as e:
        out["connect"] = f"{type(e).__name__}: {e}"
    return VerifyResult(details=out)
