"""The result cache: keys, the LRU, Redis (real redis-server) and the service sharing it."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import httpx
import pytest
import redis
from conftest import RedisServer

from verifiers.cache import KEY_PREFIX, LRUCache, RedisCache, cache_key


def test_key_is_canonical_in_reference_and_options() -> None:
    a = cache_key("math", "1", "resp", {"answer": "1/2", "x": [1, 2]}, {"b": 1, "a": 2})
    b = cache_key("math", "1", "resp", {"x": [1, 2], "answer": "1/2"}, {"a": 2, "b": 1})
    assert a == b
    assert (
        len(
            {
                a,
                cache_key("math", "2", "resp", {"answer": "1/2", "x": [1, 2]}, {"b": 1, "a": 2}),
                cache_key("math", "1", "resp ", {"answer": "1/2", "x": [1, 2]}, {"b": 1, "a": 2}),
                cache_key(
                    "grounding", "1", "resp", {"answer": "1/2", "x": [1, 2]}, {"b": 1, "a": 2}
                ),
                cache_key("math", "1", "resp", {"answer": "1/2", "x": [2, 1]}, {"b": 1, "a": 2}),
                cache_key("math", "1", "resp", {"answer": "1/2", "x": [1, 2]}, {"b": 1}),
            }
        )
        == 6
    )
    # lone surrogates and NaN do not break hashing
    assert cache_key("f", "1", "\ud800", {"v": float("nan")}, None) == cache_key(
        "f", "1", "\ud800", {"v": float("nan")}, {}
    )


def test_lru_evicts_least_recent_and_expires() -> None:
    lru = LRUCache(max_items=2)
    lru.set("a", {"v": 1})
    lru.set("b", {"v": 2})
    assert lru.get("a") == {"v": 1}  # a is now the most recent
    lru.set("c", {"v": 3})
    assert lru.get("b") is None and lru.get("a") == {"v": 1} and lru.get("c") == {"v": 3}
    short = LRUCache(max_items=10, ttl_s=0.05)
    short.set("k", {"v": 1})
    assert short.get("k") == {"v": 1}
    time.sleep(0.1)
    assert short.get("k") is None


def test_redis_cache_roundtrip_prefix_and_ttl(redis_server: RedisServer) -> None:
    async def go() -> list:
        cache = RedisCache(redis_server.url, ttl_s=120)
        await cache.set_many([("k1", {"reward": 1.0}), ("k2", {"reward": 0.0})])
        got = await cache.get_many(["k1", "nope", "k2"])
        await cache.close()
        return got

    assert asyncio.run(go()) == [{"reward": 1.0}, None, {"reward": 0.0}]
    r = redis.Redis.from_url(redis_server.url)
    assert sorted(r.keys("*")) == [f"{KEY_PREFIX}k1".encode(), f"{KEY_PREFIX}k2".encode()]
    assert 0 < r.ttl(f"{KEY_PREFIX}k1") <= 120
    r.set(f"{KEY_PREFIX}corrupt", b"\x00not json")
    assert asyncio.run(RedisCache(redis_server.url).get_many(["corrupt"])) == [None]


def test_redis_going_away_degrades_to_no_cache_and_recovers(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def go() -> None:
        cache = RedisCache(redis_server.url, retry_after_s=0.2)
        await cache.set_many([("k", {"v": 1})])
        assert await cache.get_many(["k"]) == [{"v": 1}]
        redis_server.kill()
        with caplog.at_level(logging.WARNING, logger="verifiers.cache"):
            for _ in range(3):
                assert await cache.get_many(["k"]) == [None]
                await cache.set_many([("k2", {"v": 2})])  # dropped, no raise
                assert not cache.available  # each round's attempt failed again
                await asyncio.sleep(0.25)  # past retry_after_s: each round tries Redis again
        warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
        assert len(warnings) == 1  # warned once, not per request
        redis_server.start()  # same port, empty (no persistence)
        await asyncio.sleep(0.25)
        await cache.set_many([("k3", {"v": 3})])
        assert await cache.get_many(["k3"]) == [{"v": 3}]
        assert cache.available
        await cache.close()

    asyncio.run(go())


def test_replicas_share_redis_and_survive_its_death(
    redis_server: RedisServer, verifier_server_factory
) -> None:
    env = {"HYBRIDRL_REDIS_URL": redis_server.url, "HYBRIDRL_WORKERS": "1"}
    a = verifier_server_factory(env=env)
    b = verifier_server_factory(env=env)
    u = uuid.uuid4().hex
    item = {"verifier": "format", "response": f"<think>t</think>answer {u}"}
    first = httpx.post(f"{a.url}/v1/verify", json=item, timeout=30).json()
    assert first["cached"] is False and first["correct"] is True
    from_b = httpx.post(f"{b.url}/v1/verify", json=item, timeout=30).json()
    assert from_b["cached"] is True  # replica B sees replica A's result
    assert {k: from_b[k] for k in ("reward", "correct", "details")} == {
        k: first[k] for k in ("reward", "correct", "details")
    }
    assert httpx.get(f"{a.url}/healthz").json()["cache"] == "redis"

    # timeouts and crashes are not cached
    keys_before = len(redis.Redis.from_url(redis_server.url).keys(f"{KEY_PREFIX}*"))
    crash = httpx.post(
        f"{a.url}/v1/verify", json={"verifier": "probe_crash", "response": u}, timeout=30
    ).json()
    assert crash["error"].startswith("worker crashed")
    assert len(redis.Redis.from_url(redis_server.url).keys(f"{KEY_PREFIX}*")) == keys_before

    redis_server.kill()
    for replica in (a, b):
        for n in range(3):
            body = {"verifier": "format", "response": f"<think>t</think>{n} {u}"}
            r = httpx.post(f"{replica.url}/v1/verify", json=body, timeout=30)
            assert r.status_code == 200, r.text
            assert (
                r.json()["cached"] is False
                and r.json()["error"] is None
                and r.json()["correct"] is True
            )
        again = httpx.post(f"{replica.url}/v1/verify", json=item, timeout=30).json()
        assert again["cached"] is False and again["error"] is None  # no cache, no error
        batch = httpx.post(
            f"{replica.url}/v1/verify/batch", json={"items": [item, item]}, timeout=30
        )
        assert batch.status_code == 200 and [x["correct"] for x in batch.json()["results"]] == [
            True,
            True,
        ]
        assert httpx.get(f"{replica.url}/healthz").json()["status"] == "ok"
    assert "unavailable" in a.log()  # the warning reached the log
