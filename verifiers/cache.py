"""The verifier result cache: Redis when configured (shared by replicas), an in-process LRU otherwise.

A key hashes (verifier, verifier version, response, reference, options), the last two as
canonical JSON, so a verifier's version bump invalidates its old entries. Values are the
`VerifyResult` as JSON. Only deterministic outcomes are stored: callers skip sandbox
timeouts and crashes (``details.sandbox`` set). Redis going away degrades to no cache: one
warning, misses and dropped writes, and a new connection attempt every ``retry_after_s``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

log = logging.getLogger(__name__)

KEY_PREFIX = "hybridrl:verify:"


def canonical_json(obj: Any) -> str:
    """Key-order-independent, ASCII-only JSON (lone surrogates and NaN survive as escapes)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=repr)


def cache_key(verifier: str, version: str, response: str, reference: Any, options: Any) -> str:
    """The cache key of one verification (a hex SHA-256, without the store's prefix)."""
    payload = canonical_json([verifier, version, response, reference, options or {}])
    return hashlib.sha256(payload.encode("ascii")).hexdigest()


class ResultCache(Protocol):
    """What the service needs from a cache: batched get and set of JSON-able result dicts."""

    backend: str

    async def get_many(self, keys: Sequence[str]) -> list[dict[str, Any] | None]: ...

    async def set_many(self, items: Sequence[tuple[str, dict[str, Any]]]) -> None: ...

    async def close(self) -> None: ...


class NoCache:
    """Caching switched off (``cache_size=0`` and no Redis)."""

    backend = "none"

    async def get_many(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        return [None] * len(keys)

    async def set_many(self, items: Sequence[tuple[str, dict[str, Any]]]) -> None:
        return None

    async def close(self) -> None:
        return None


class LRUCache:
    """In-process LRU with a TTL; thread-safe, so sync callers may share it."""

    backend = "memory"

    def __init__(self, max_items: int = 100_000, ttl_s: float | None = None):
        self.max_items = max_items
        self.ttl_s = ttl_s
        self._data: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            expires, value = hit
            if expires < time.monotonic():
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return dict(value)

    def set(self, key: str, value: dict[str, Any]) -> None:
        expires = time.monotonic() + self.ttl_s if self.ttl_s else float("inf")
        with self._lock:
            self._data[key] = (expires, dict(value))
            self._data.move_to_end(key)
            while len(self._data) > self.max_items:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    async def get_many(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        return [self.get(k) for k in keys]

    async def set_many(self, items: Sequence[tuple[str, dict[str, Any]]]) -> None:
        for k, v in items:
            self.set(k, v)

    async def close(self) -> None:
        return None


class RedisCache:
    """Results in Redis under ``prefix`` with a TTL; never raises on Redis failures."""

    backend = "redis"

    def __init__(
        self,
        url: str,
        ttl_s: int = 86_400,
        prefix: str = KEY_PREFIX,
        retry_after_s: float = 2.0,
        op_timeout_s: float = 0.5,
    ):
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.url = url
        self.ttl_s = ttl_s
        self.prefix = prefix
        self.retry_after_s = retry_after_s
        # No client-side retries and short socket timeouts: a dead Redis must cost a request
        # a failed connect, not seconds of backoff.
        self._client = Redis.from_url(
            url,
            socket_connect_timeout=op_timeout_s,
            socket_timeout=op_timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._down_until = 0.0
        self._warned = False

    @property
    def available(self) -> bool:
        """False while Redis is considered down (between a failure and the next retry)."""
        return time.monotonic() >= self._down_until

    def _failed(self, e: Exception) -> None:
        self._down_until = time.monotonic() + self.retry_after_s
        if not self._warned:
            log.warning(
                "verifier cache: Redis at %s unavailable (%s: %s); serving without cache, "
                "retrying every %gs",
                _redact(self.url),
                type(e).__name__,
                e,
                self.retry_after_s,
            )
            self._warned = True

    def _succeeded(self) -> None:
        if self._warned:
            log.warning("verifier cache: Redis at %s is back", _redact(self.url))
            self._warned = False

    async def get_many(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        if not keys or not self.available:
            return [None] * len(keys)
        try:
            raw = await self._client.mget([self.prefix + k for k in keys])
        except Exception as e:  # noqa: BLE001 - any Redis trouble means a miss, never an error
            self._failed(e)
            return [None] * len(keys)
        self._succeeded()
        out: list[dict[str, Any] | None] = []
        for value in raw:
            try:
                out.append(json.loads(value) if value is not None else None)
            except ValueError:  # a foreign or corrupt value under our prefix: a miss
                out.append(None)
        return out

    async def set_many(self, items: Sequence[tuple[str, dict[str, Any]]]) -> None:
        if not items or not self.available:
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for k, v in items:
                    pipe.set(self.prefix + k, json.dumps(v), ex=self.ttl_s)
                await pipe.execute()
        except Exception as e:  # noqa: BLE001
            self._failed(e)
            return
        self._succeeded()

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except Exception:  # noqa: BLE001 - closing a dead connection may fail; nothing to do
            pass


def _redact(url: str) -> str:
    """A Redis URL without its password, for logs."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


def make_cache(redis_url: str | None, cache_size: int, ttl_s: int) -> ResultCache:
    """Redis when a URL is given, else an LRU of ``cache_size`` items (0: no cache)."""
    if redis_url:
        return RedisCache(redis_url, ttl_s=ttl_s)
    if cache_size <= 0:
        return NoCache()
    return LRUCache(cache_size, ttl_s=ttl_s or None)
