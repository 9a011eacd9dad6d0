"""A test-only verifier that plays a subverted worker; only the sandbox's zygote imports it.

``probe_forge`` writes a forged reply straight to its parent's socket: a pickle that would
create ``options.marker`` if the parent ever unpickled what a worker sends. Kept out of the
test process's own registry, so that registry listings there stay equal to the servers'.
"""

from __future__ import annotations

import os
import pickle
import struct
import time
from typing import Any

from verifiers.registry import register
from verifiers.schemas import VerifyResult


class _Touch:
    """Unpickling this creates a file."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


@register("probe_forge", version="1")
def probe_forge(response: str, reference: Any, options: dict[str, Any]) -> VerifyResult:
    """Write a forged reply (a pickle that creates options.marker) straight to the parent."""
    payload = pickle.dumps(_Touch(options["marker"]))
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                os.write(int(name), struct.pack("!I", len(payload)) + payload)
        except OSError:
            continue
    time.sleep(30)  # the parent must act on the forged reply, not on a real one
    return VerifyResult()
