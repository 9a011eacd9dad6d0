"""Python client of the reward-model server, with deadlines and bounded retries.

UNAVAILABLE (server starting, restarting, or a dropped connection) and DEADLINE_EXCEEDED are
retried with exponential backoff and jitter, at most ``retries`` times; every other status
(INVALID_ARGUMENT above all) is raised at once as a `RewardModelError` carrying the code.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc

from reward_model.proto import load as load_stubs
from reward_model.scoring import Comparison

pb2, pb2_grpc = load_stubs()
T = TypeVar("T")
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
ImageInput = bytes | str | Path


class RewardModelError(RuntimeError):
    """A failed call: ``code`` is the gRPC status, ``details`` the server's message."""

    def __init__(self, code: grpc.StatusCode, details: str, attempts: int = 1) -> None:
        super().__init__(
            f"{code.name}: {details}" + (f" (after {attempts} attempts)" if attempts > 1 else "")
        )
        self.code = code
        self.details = details
        self.attempts = attempts


@dataclass(frozen=True)
class CompareItem:
    """One pair to compare; ``prompt`` is user text or a list of ``{role, content}`` messages."""

    prompt: str | Sequence[dict[str, str]]
    response_a: str
    response_b: str
    images: Sequence[ImageInput] = ()


def _image_bytes(image: ImageInput) -> bytes:
    if isinstance(image, bytes | bytearray | memoryview):
        return bytes(image)
    return Path(image).read_bytes()


def _request(item: CompareItem) -> Any:
    request = pb2.CompareRequest(
        images=[_image_bytes(im) for im in item.images],
        response_a=item.response_a,
        response_b=item.response_b,
    )
    if isinstance(item.prompt, str):
        request.prompt = item.prompt
    else:
        for m in item.prompt:
            request.messages.add(role=m["role"], content=m["content"])
    return request


def _comparison(r: Any) -> Comparison:
    return Comparison(p=r.p, p_a_first=r.p_a_first, p_b_first=r.p_b_first)


class RewardModelClient:
    """Calls a reward-model server; one channel, thread-safe, usable from many threads."""

    def __init__(
        self,
        address: str = "127.0.0.1:50051",
        *,
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
        max_message_mb: int = 32,
    ) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        limit = max_message_mb * 1024 * 1024
        self._channel = grpc.insecure_channel(
            address,
            options=[
                ("grpc.max_send_message_length", limit),
                ("grpc.max_receive_message_length", limit),
            ],
        )
        self._stub = pb2_grpc.RewardModelStub(self._channel)

    def _call(self, fn: Callable[..., T], request: Any, timeout_s: float | None) -> T:
        timeout = self.timeout_s if timeout_s is None else timeout_s
        for attempt in range(self.retries + 1):
            try:
                return fn(request, timeout=timeout)
            except grpc.RpcError as e:
                code = e.code()
                if code not in RETRYABLE or attempt == self.retries:
                    raise RewardModelError(code, e.details() or "", attempt + 1) from None
            delay = min(self.max_backoff_s, self.backoff_s * 2**attempt)
            time.sleep(delay * random.uniform(0.5, 1.0))  # jitter: callers do not retry in step
        raise AssertionError("unreachable")  # pragma: no cover

    def compare(
        self,
        prompt: str | Sequence[dict[str, str]],
        response_a: str,
        response_b: str,
        images: Sequence[ImageInput] = (),
        *,
        timeout_s: float | None = None,
    ) -> Comparison:
        """P(response_a ≻ response_b), both orders averaged, plus each order's probability."""
        request = _request(CompareItem(prompt, response_a, response_b, images))
        return _comparison(self._call(self._stub.Compare, request, timeout_s))

    def compare_batch(
        self, items: Sequence[CompareItem], *, timeout_s: float | None = None
    ) -> list[Comparison]:
        """Many pairs in one call, results in order."""
        request = pb2.CompareBatchRequest(items=[_request(item) for item in items])
        reply = self._call(self._stub.CompareBatch, request, timeout_s)
        return [_comparison(r) for r in reply.results]

    def score(
        self,
        prompt: str | Sequence[dict[str, str]],
        response: str,
        reference: str,
        images: Sequence[ImageInput] = (),
        *,
        timeout_s: float | None = None,
    ) -> float:
        """The PPO reward: P(response ≻ reference) in [0, 1]."""
        return self.compare(prompt, response, reference, images, timeout_s=timeout_s).p

    def score_batch(
        self,
        prompts: Sequence[str | Sequence[dict[str, str]]],
        responses: Sequence[str],
        references: Sequence[str],
        images: Sequence[Sequence[ImageInput]] | None = None,
        *,
        timeout_s: float | None = None,
    ) -> list[float]:
        """P(response ≻ reference) for many rollouts in one call."""
        images = images if images is not None else [()] * len(prompts)
        if not len(prompts) == len(responses) == len(references) == len(images):
            raise ValueError("prompts, responses, references and images differ in length")
        items = [
            CompareItem(p, r, ref, ims)
            for p, r, ref, ims in zip(prompts, responses, references, images, strict=True)
        ]
        return [c.p for c in self.compare_batch(items, timeout_s=timeout_s)]

    def stats(self, *, timeout_s: float | None = None) -> dict[str, Any]:
        """The server's counters (forward passes, pairs, requests, rejected, …)."""
        reply = self._call(self._stub.Stats, pb2.StatsRequest(), timeout_s)
        return {f.name: getattr(reply, f.name) for f in reply.DESCRIPTOR.fields}

    def health(self, *, timeout_s: float = 2.0) -> bool:
        """True when the server's standard health check says SERVING (no retries)."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self._channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
        except grpc.RpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Block until the server answers its health check, or raise TimeoutError."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.health(timeout_s=min(2.0, max(0.1, deadline - time.monotonic()))):
                return
            time.sleep(0.1)
        raise TimeoutError(f"reward-model server at {self.address} not ready in {timeout_s:g} s")

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> RewardModelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
