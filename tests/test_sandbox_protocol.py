"""The sandbox's wire protocol and pipelining, with real worker processes.

A subverted worker (tests/probe_forged_reply.py) cannot run code in the parent through its
replies (the parent parses them as JSON, never unpickles them); items pipelined behind a slow
one move to another worker; and under a mix of fast, slow, crashing and hanging items every
item gets exactly its own answer.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from verifiers.sandbox import SandboxPool

TIMEOUT_S = 2.0
MARGIN_S = 30.0  # generous: the test machine is a shared 2-core box


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(
        workers=2,
        timeout_s=TIMEOUT_S,
        memory_mb=1024,
        extra_modules=["probe_verifiers", "probe_forged_reply"],  # zygote-only imports
    ) as p:
        yield p


def test_a_forged_reply_runs_no_code_in_the_parent(pool: SandboxPool, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    result = pool.verify("probe_forge", "", options={"marker": str(marker)})
    assert not marker.exists()
    assert result.error is not None and result.error.startswith("worker sent an invalid result")
    assert result.details["sandbox"] == "crash"
    assert pool.verify("probe_pid", "abc").details["chars"] == 3  # replaced, still serving


def test_items_behind_a_slow_one_move_to_another_worker(pool: SandboxPool) -> None:
    slow = pool.submit("probe_sleep", "", options={"seconds": 1.5})  # below the timeout
    fast = [pool.submit("probe_pid", "x" * i) for i in range(12)]
    results = [f.result(timeout=MARGIN_S) for f in fast]
    assert [r.details["chars"] for r in results] == list(range(12))
    assert not slow.done()  # every fast item finished while the slow one still ran
    done = slow.result(timeout=MARGIN_S)
    assert done.error is None and done.correct  # stealing its followers did not disturb it
    assert done.details["pid"] not in {r.details["pid"] for r in results}


def test_every_item_gets_its_own_answer_in_a_hostile_mix(pool: SandboxPool) -> None:
    rng = random.Random(7)
    plan: list[tuple[str, int]] = []
    futures = []
    for i in range(80):
        kind = rng.choices(["pid", "short", "spin", "crash"], weights=[82, 12, 3, 3])[0]
        if kind == "pid":
            futures.append(pool.submit("probe_pid", "x" * i))
        elif kind == "short":
            seconds = rng.uniform(0.005, 0.12)  # some outlast the moment of stealing
            futures.append(pool.submit("probe_sleep", "", options={"seconds": seconds}))
        else:
            futures.append(pool.submit(f"probe_{kind}", ""))
        plan.append((kind, i))
    results = [f.result(timeout=MARGIN_S) for f in futures]
    for (kind, i), r in zip(plan, results, strict=True):
        if kind == "pid":
            assert r.error is None and r.details["chars"] == i, (i, r)
        elif kind == "short":
            assert r.error is None and r.correct, (i, r)
        elif kind == "spin":
            assert r.error == f"timeout after {TIMEOUT_S}s", (i, r)
        else:
            assert r.error is not None and r.error.startswith("worker crashed"), (i, r)
    assert all(r.correct for r in pool.map([]) + [pool.verify("probe_pid", "ok")])
