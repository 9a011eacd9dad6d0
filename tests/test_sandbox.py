"""The sandbox pool with real worker processes: deadlines, crashes, kills, limits, isolation."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from verifiers import registry
from verifiers.sandbox import SandboxPool
from verifiers.schemas import VerifyRequest

TIMEOUT_S = 1.5
MARGIN_S = 10.0  # generous: the test machine is a shared 2-core box


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(
        workers=2, timeout_s=TIMEOUT_S, memory_mb=1024, extra_modules=["probe_verifiers"]
    ) as p:
        yield p


def _pid_running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False


def _wait_for(predicate, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("condition not reached in time")


def test_results_equal_in_process_verification(pool: SandboxPool) -> None:
    responses = ["<think>a</think>b", "no think", "<think>x</think>", "  <think>y</think> 42"]
    got = pool.map([VerifyRequest(verifier="format", response=r) for r in responses])
    want = [registry.verify("format", r) for r in responses]
    assert [g.model_dump() for g in got] == [w.model_dump() for w in want]
    assert [g.correct for g in got] == [True, False, False, True]


def test_async_run_keeps_request_order(pool: SandboxPool) -> None:
    reqs = [VerifyRequest(verifier="probe_pid", response="x" * n) for n in range(30)]
    results = asyncio.run(pool.run(reqs))
    assert [r.details["chars"] for r in results] == list(range(30))
    one = asyncio.run(pool.run_one(VerifyRequest(verifier="format", response="<think>a</think>b")))
    assert one.correct


def test_timeout_kills_and_replaces_the_worker(pool: SandboxPool) -> None:
    before = pool.stats["timeouts"]
    t0 = time.monotonic()
    fut = pool.submit("probe_spin", "")
    busy = _wait_for(lambda: [w for w in pool.worker_info() if w.busy_verifier == "probe_spin"])
    result = fut.result(timeout=TIMEOUT_S + MARGIN_S)
    assert time.monotonic() - t0 < TIMEOUT_S + MARGIN_S
    assert result.error == f"timeout after {TIMEOUT_S}s"
    assert (result.reward, result.correct, result.details["sandbox"]) == (0.0, False, "timeout")
    assert pool.stats["timeouts"] == before + 1
    _wait_for(lambda: not _pid_running(busy[0].pid))  # the spinning worker is gone
    _wait_for(lambda: pool.alive() == 2)  # and replaced
    assert busy[0].pid not in [w.pid for w in pool.worker_info()]
    assert pool.verify("format", "<think>a</think>b").correct


def test_crash_reports_exit_code_and_pool_recovers(pool: SandboxPool) -> None:
    before = pool.stats["crashes"]
    result = pool.verify("probe_crash", "")
    assert result.error == "worker crashed (exit code -9)"
    assert result.details["sandbox"] == "crash"
    assert pool.stats["crashes"] == before + 1
    assert all(r.correct for r in pool.map([VerifyRequest(verifier="probe_pid", response="a")] * 8))


def test_slow_item_does_not_delay_the_others(pool: SandboxPool) -> None:
    slow = pool.submit("probe_sleep", "", options={"seconds": 60})
    fast = [pool.submit("probe_pid", "x" * i) for i in range(20)]
    done, _ = concurrent.futures.wait(fast, timeout=TIMEOUT_S + MARGIN_S)
    assert len(done) == 20
    assert [f.result().details["chars"] for f in fast] == list(range(20))
    assert not slow.done()  # the fast ones finished while the slow one was still running
    assert slow.result(timeout=TIMEOUT_S + MARGIN_S).error == f"timeout after {TIMEOUT_S}s"


def test_worker_killed_mid_batch_loses_no_item(pool: SandboxPool) -> None:
    reqs = [VerifyRequest(verifier="probe_pid", response="x" * i) for i in range(10)]
    reqs.insert(5, VerifyRequest(verifier="probe_sleep", response="", options={"seconds": 60}))
    futs = [pool.submit(r.verifier, r.response, r.reference, r.options) for r in reqs]
    victim = _wait_for(lambda: [w for w in pool.worker_info() if w.busy_verifier == "probe_sleep"])
    os.kill(victim[0].pid, signal.SIGKILL)
    results = [f.result(timeout=TIMEOUT_S + MARGIN_S) for f in futs]
    assert len(results) == 11
    killed = results.pop(5)
    assert killed.error == "worker crashed (exit code -9)"  # not retried: reported
    assert [r.details["chars"] for r in results] == list(range(10))
    assert all(r.error is None for r in results)


def test_memory_limit_is_an_error_not_a_dead_pool(pool: SandboxPool) -> None:
    result = pool.verify("probe_alloc", "", options={"mb": 1500})
    assert result.error == "out of memory (limit 1024 MB)"
    assert pool.verify("probe_alloc", "", options={"mb": 50}).correct


def test_worker_cannot_exec_or_reach_the_network(pool: SandboxPool, tmp_path: Path) -> None:
    marker = tmp_path / "escaped"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = pool.verify("probe_escape", "", options={"marker": str(marker), "port": port})
    assert not marker.exists()
    if pool.isolation.get("exec") == "denied" or os.geteuid() != 0:
        assert result.details["system"] != 0  # no shell could start
    if pool.isolation.get("network") == "isolated":
        assert result.details["connect"] != "connected"
    assert pool.isolation["RLIMIT_AS"] == str(1024 * 1024 * 1024)


def test_bad_items_become_error_results(pool: SandboxPool) -> None:
    unknown = pool.verify("no_such_verifier", "x")
    assert "unknown verifier 'no_such_verifier'" in unknown.error
    assert "format" in unknown.error
    not_text = pool.verify("format", 12345)
    assert not_text.error == "response must be a string, got int"
    unpicklable = pool.verify("format", "x", reference={"f": lambda: 0})
    assert unpicklable.error.startswith("request not serialisable")


def test_closed_pool_ends_its_workers() -> None:
    p = SandboxPool(workers=1, timeout_s=TIMEOUT_S).start()
    pid = p.worker_info()[0].pid
    assert _pid_running(pid)
    p.close()
    assert not _pid_running(pid)
    with pytest.raises(RuntimeError, match="closed"):
        p.submit("format", "x")


def test_pool_survives_the_loss_of_its_zygote(pool: SandboxPool) -> None:
    os.kill(pool._zygote.proc.pid, signal.SIGKILL)  # the process workers are forked from
    crashed = pool.verify("probe_crash", "")
    assert crashed.error.startswith("worker crashed")  # its exit status died with the zygote
    _wait_for(lambda: pool.alive() == 2, timeout_s=120)  # a new zygote forked a replacement
    assert [
        r.details["chars"]
        for r in pool.map([VerifyRequest(verifier="probe_pid", response="ab")] * 4)
    ] == [2] * 4
