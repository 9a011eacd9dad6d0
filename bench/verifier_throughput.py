"""Verifier service vs Hugging Face math-verify in-process, on the same math pairs, in one run.

(a) ``math_verify.verify(parse(gold), parse(prediction))`` in this process, one item after the
other; (b) the same items through ``POST /v1/verify/batch`` of a verifier service started here
as a real subprocess on a free port (cache off, so every item is verified). Prints items/s of
each and their ratio, each one's agreement with the hand-checked verdicts of
bench/math_pairs.py, and p50/p99 latency of single-item ``POST /v1/verify`` calls at 1, 8 and
64 concurrent keep-alive clients, for ordinary items (format, counting, grounding, puzzle, a
one-line math answer) and for the math pairs.

The latency load comes from ``wrk`` (C, one event-loop thread) when it is on PATH
(``apt-get install wrk``), else from a minimal asyncio HTTP/1.1 client in this file: either
costs the shared CPUs far less per request than the service does, so the figures are the
service's. ``--baseline-src DIR`` also starts a service from another source tree (an older
commit: ``git archive <rev> | tar -x -C DIR``) and prints its latency next to this tree's.
Run: ``make bench`` or ``.venv/bin/python bench/verifier_throughput.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.demo import LocalService, local_service  # noqa: E402

ORDINARY_ITEMS = [
    {"verifier": "format", "response": "<think>ok</think>fine"},
    {"verifier": "counting", "response": "<think>1, 2, 3</think>3", "reference": {"count": 3}},
    {
        "verifier": "grounding",
        "response": "<think>there</think><bbox>100 100 300 300</bbox>",
        "reference": {"boxes": [[110, 90, 310, 290]]},
    },
    {
        "verifier": "puzzle",
        "response": "<think>B</think>The answer is B",
        "reference": {"answer": "B"},
    },
    {
        "verifier": "math",
        "response": "<think>6*7</think>\\boxed{42}",
        "reference": {"answer": "42"},
    },
]
CLIENT_LEVELS = (1, 8, 64)
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def load_pairs() -> list[tuple[str, str, bool]]:
    try:
        from math_pairs import MATH_PAIRS
    except ImportError:
        sys.exit("bench/math_pairs.py (the math verifier's pair list) is missing")
    return list(MATH_PAIRS)


def run_math_verify(pairs: list[tuple[str, str, bool]]) -> tuple[float, list[bool]]:
    """Seconds for one pass of math-verify over the pairs, and its verdicts."""
    from math_verify import parse, verify

    t0 = time.perf_counter()
    verdicts = []
    for gold, pred, _ in pairs:
        try:
            verdicts.append(bool(verify(parse(f"${gold}$"), parse(pred))))
        except Exception:  # noqa: BLE001 - a math-verify failure counts as "not equal"
            verdicts.append(False)
    return time.perf_counter() - t0, verdicts


def run_service(url: str, pairs: list[tuple[str, str, bool]]) -> tuple[float, list[bool], int]:
    """Seconds for one pass through /v1/verify/batch, the verdicts, and how many errored."""
    items = [
        {"verifier": "math", "response": pred, "reference": {"answer": gold}}
        for gold, pred, _ in pairs
    ]
    t0 = time.perf_counter()
    r = httpx.post(f"{url}/v1/verify/batch", json={"items": items}, timeout=600)
    elapsed = time.perf_counter() - t0
    r.raise_for_status()
    results = r.json()["results"]
    return elapsed, [x["correct"] for x in results], sum(1 for x in results if x["error"])


# --------------------------------------------------------------------------- CPU accounting


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (the sandbox zygote and its workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], list(children.get(pid, []))
    while todo and len(out) < 10_000:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


@dataclass(frozen=True)
class CpuSnapshot:
    http: float
    workers: float
    client: float


def cpu_snapshot(service_pid: int) -> CpuSnapshot:
    """CPU seconds so far of the service's HTTP process, its sandbox processes, and this client.

    The client is this process plus the children it waited for (wrk runs).
    """
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return CpuSnapshot(
        http=cpu_seconds(service_pid),
        workers=sum(cpu_seconds(p) for p in descendants(service_pid)),
        client=me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
    )


# --------------------------------------------------------------------------- load generators


@dataclass(frozen=True)
class Load:
    """What one latency run saw: completed requests, failures, seconds, latency percentiles."""

    requests: int
    failures: int
    seconds: float
    p50_ms: float
    p99_ms: float


def _check_loopback(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in _LOOPBACK:
        raise SystemExit(f"refusing to load-test {host!r}: this benchmark only targets loopback")


_WRK_SCRIPT = """\
local bodies = {%(bodies)s}
local reqs = {}
local n = 0
init = function(args)
  for k, b in ipairs(bodies) do
    reqs[k] = wrk.format("POST", "/v1/verify", {["Content-Type"] = "application/json"}, b)
  end
end
request = function()
  n = n + 1
  return reqs[(n - 1) %% #reqs + 1]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "HYBRIDRL_WRK requests=%%d duration_us=%%d p50_us=%%d p99_us=%%d failures=%%d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def wrk_load(url: str, bodies: list[bytes], clients: int, seconds: float) -> Load:
    """Closed-loop load from ``wrk``: ``clients`` keep-alive connections for ``seconds``."""
    _check_loopback(url)
    texts = [b.decode("ascii") for b in bodies]
    if any("]==]" in t for t in texts):
        raise ValueError("a request body contains the Lua long-string delimiter ]==]")
    script = _WRK_SCRIPT % {"bodies": ", ".join(f"[==[{t}]==]" for t in texts)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "post.lua"
        path.write_text(script)
        cmd = [
            "wrk",
            "-t1",
            f"-c{clients}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(path),
            f"{url}/v1/verify",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    m = re.search(
        r"HYBRIDRL_WRK requests=(\d+) duration_us=(\d+) p50_us=(\d+) p99_us=(\d+) failures=(\d+)",
        proc.stdout,
    )
    if proc.returncode != 0 or m is None:
        raise RuntimeError(f"wrk failed (exit {proc.returncode}): {proc.stdout}{proc.stderr}")
    n, dur_us, p50, p99, failures = (int(x) for x in m.groups())
    return Load(n, failures, dur_us / 1e6, p50 / 1000, p99 / 1000)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: send a request, read its response, send the next."""

    def __init__(self, run: _AsyncioRun):
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.need: int | None = None
        self.ok = False
        self.t0 = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def send_next(self) -> None:
        assert self.transport is not None
        req = self.run.next_request()
        if req is None:  # connection_lost will tell the run
            self.transport.close()
            return
        self.buf.clear()
        self.need = None
        self.t0 = time.perf_counter()
        self.transport.write(req)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.need is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            m = re.search(rb"\r\ncontent-length:\s*(\d+)", head)
            if m is None:  # this client only speaks Content-Length framing
                self.run.record(0.0, ok=False)
                assert self.transport is not None
                self.transport.close()
                return
            self.need = end + 4 + int(m.group(1))
            self.ok = head[9:12] == b"200"
        if len(self.buf) >= self.need:
            self.run.record(time.perf_counter() - self.t0, ok=self.ok)
            self.send_next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.connection_done(self)


class _AsyncioRun:
    """Shared state of one asyncio load run: request bytes, deadline, latencies."""

    def __init__(self, requests: list[bytes], seconds: float, max_requests: int):
        self.requests = requests
        self.deadline = time.perf_counter() + seconds
        self.remaining = max_requests
        self.sent = 0
        self.latencies: list[float] = []
        self.failures = 0
        self.open: set[_Connection] = set()
        self.finished = asyncio.get_running_loop().create_future()

    def next_request(self) -> bytes | None:
        if self.remaining <= 0 or time.perf_counter() >= self.deadline:
            return None
        self.remaining -= 1
        self.sent += 1
        return self.requests[self.sent % len(self.requests)]

    def record(self, seconds: float, ok: bool) -> None:
        if ok:
            self.latencies.append(seconds)
        else:
            self.failures += 1

    def connection_done(self, conn: _Connection | None = None) -> None:
        if conn is not None:
            self.open.discard(conn)
        if not self.open and not self.finished.done():
            self.finished.set_result(None)


async def _asyncio_load(
    url: str, bodies: list[bytes], clients: int, seconds: float, max_requests: int
) -> Load:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [
        b"POST /v1/verify HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (host.encode(), port, len(b), b)
        for b in bodies
    ]
    loop = asyncio.get_running_loop()
    run = _AsyncioRun(requests, seconds, max_requests)
    conns = []
    for _ in range(clients):
        _, conn = await loop.create_connection(lambda: _Connection(run), host, port)
        run.open.add(conn)
        conns.append(conn)
    ready_by = time.perf_counter() + 5
    while any(c.transport is None for c in conns):  # uvloop may call connection_made later
        if time.perf_counter() > ready_by:
            raise RuntimeError("connections not established after 5 s")
        await asyncio.sleep(0.001)
    t0 = time.perf_counter()
    for conn in conns:
        conn.send_next()
    try:  # in-flight requests get 10 s past the deadline, as wrk's --timeout
        await asyncio.wait_for(asyncio.shield(run.finished), seconds + 10)
    except TimeoutError:
        for conn in list(run.open):
            assert conn.transport is not None
            conn.transport.abort()
            run.failures += 1
    wall = time.perf_counter() - t0
    lat = sorted(run.latencies)
    if not lat:
        return Load(0, run.failures, wall, float("nan"), float("nan"))
    p99 = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]
    return Load(len(lat), run.failures, wall, statistics.median(lat) * 1000, p99 * 1000)


def asyncio_load(
    url: str, bodies: list[bytes], clients: int, seconds: float, max_requests: int = 200_000
) -> Load:
    """Closed-loop load from raw asyncio keep-alive connections (pre-encoded request bytes)."""
    _check_loopback(url)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    return runner(_asyncio_load(url, bodies, clients, seconds, max_requests))


# --------------------------------------------------------------------------- the latency table


@dataclass(frozen=True)
class Level:
    """One latency level: the load, and CPU ms per request of each side."""

    load: Load
    http_cpu_ms: float
    worker_cpu_ms: float
    client_cpu_ms: float


def measure(
    service: LocalService, bodies: list[bytes], clients: int, client: str, seconds: float
) -> Level:
    """One latency level against one service (load from ``client``), with its CPU accounting."""
    before = cpu_snapshot(service.pid)
    if client == "wrk":
        load = wrk_load(service.url, bodies, clients, seconds)
    else:
        load = asyncio_load(service.url, bodies, clients, seconds)
    after = cpu_snapshot(service.pid)
    n = max(1, load.requests + load.failures)
    return Level(
        load,
        (after.http - before.http) / n * 1000,
        (after.workers - before.workers) / n * 1000,
        (after.client - before.client) / n * 1000,
    )


def agreement(verdicts: list[bool], pairs: list[tuple[str, str, bool]]) -> tuple[int, int, int]:
    """(agree on equivalent pairs, agree on non-equivalent pairs, total agreeing)."""
    eq = sum(1 for v, (_, _, e) in zip(verdicts, pairs, strict=True) if e and v)
    neq = sum(1 for v, (_, _, e) in zip(verdicts, pairs, strict=True) if not e and not v)
    return eq, neq, eq + neq


@contextmanager
def start_service(workers: int, src: Path | None = None) -> Iterator[LocalService]:
    """A cache-off service of this tree, or of the source tree ``src`` (put first on PYTHONPATH)."""
    env = {"HYBRIDRL_CACHE_SIZE": "0", "HYBRIDRL_REDIS_URL": "", "HYBRIDRL_API_KEY": ""}
    if src is not None:  # PYTHONSAFEPATH: `python -m` must not put the current directory first
        env["PYTHONPATH"] = os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])
        env["PYTHONSAFEPATH"] = "1"
    with local_service(env=env, args=["--workers", str(workers), "--no-access-log"]) as service:
        yield service


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--passes", type=int, default=3, help="timed passes of each side (best is kept)"
    )
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="sandbox workers")
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each latency level")
    ap.add_argument(
        "--client",
        choices=("auto", "wrk", "asyncio"),
        default="auto",
        help="latency load generator (auto: wrk when on PATH, else asyncio)",
    )
    ap.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="also measure latency of a service run from this source tree, for a ratio",
    )
    ap.add_argument(
        "--skip-throughput", action="store_true", help="latency table only (no math-verify run)"
    )
    args = ap.parse_args()
    if args.client == "auto":
        args.client = "wrk" if shutil.which("wrk") else "asyncio"
    if not 0.5 <= args.seconds <= 120:
        sys.exit("--seconds must be within 0.5..120")

    pairs = load_pairs()
    n_eq = sum(1 for *_, e in pairs if e)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; {len(pairs)} math pairs "
        f"({n_eq} equivalent, {len(pairs) - n_eq} not); load average at start "
        f"{os.getloadavg()[0]:.1f}"
    )

    mv_times: list[float] = []
    mv_verdicts: list[bool] = []
    if not args.skip_throughput:
        for _ in range(args.passes):
            t, mv_verdicts = run_math_verify(pairs)
            mv_times.append(t)

    math_items = [
        {"verifier": "math", "response": p, "reference": {"answer": g}} for g, p, _ in pairs
    ]
    item_sets = {
        "ordinary": [json.dumps(x).encode() for x in ORDINARY_ITEMS],
        "math": [json.dumps(x).encode() for x in math_items],
    }
    trees = {"this tree": None}
    if args.baseline_src is not None:
        trees = {"baseline": args.baseline_src.resolve(), "this tree": None}
    with ExitStack() as stack:
        services = {
            name: stack.enter_context(start_service(args.workers, src))
            for name, src in trees.items()
        }
        svc_times, svc_verdicts, errors = [], [], 0
        if not args.skip_throughput:
            for _ in range(args.passes):
                t, svc_verdicts, errors = run_service(services["this tree"].url, pairs)
                svc_times.append(t)
        for service in services.values():  # warm every verifier and open the code paths
            measure(service, item_sets["math"] + item_sets["ordinary"], 64, args.client, 1)
        levels: dict[tuple[str, str, int], Level] = {}
        loads: list[float] = []
        for set_name, bodies in item_sets.items():
            for clients in CLIENT_LEVELS:
                for tree, service in services.items():  # interleaved, so both see the same load
                    levels[(tree, set_name, clients)] = measure(
                        service, bodies, clients, args.client, args.seconds
                    )
                    loads.append(os.getloadavg()[0])

    if not args.skip_throughput:
        mv_rate, svc_rate = len(pairs) / min(mv_times), len(pairs) / min(svc_times)
        mv_first, svc_first = len(pairs) / mv_times[0], len(pairs) / svc_times[0]
        print(f"\nthroughput (best of {args.passes} passes; first pass in brackets)")
        print(f"  math-verify in-process      {mv_rate:9.1f} items/s  [{mv_first:.1f}]")
        print(
            f"  service /v1/verify/batch    {svc_rate:9.1f} items/s  [{svc_first:.1f}]  "
            f"({args.workers} workers, cache off)"
        )
        print(
            f"  ratio service / math-verify {svc_rate / mv_rate:9.1f}x     "
            f"[{svc_first / mv_first:.1f}x]"
        )

        print("\nagreement with the hand-checked verdicts (equivalent | non-equivalent | all)")
        for name, verdicts in (("math-verify", mv_verdicts), ("service", svc_verdicts)):
            eq, neq, tot = agreement(verdicts, pairs)
            print(
                f"  {name:<12} {eq:4d}/{n_eq} | {neq:4d}/{len(pairs) - n_eq} | {tot:4d}/{len(pairs)}"
            )
        same = sum(1 for a, b in zip(mv_verdicts, svc_verdicts, strict=True) if a == b)
        print(
            f"  service and math-verify give the same verdict on {same}/{len(pairs)}; "
            f"service errors: {errors}"
        )

    print(
        f"\nlatency of single-item POST /v1/verify (ms), cache off, {args.workers} workers, "
        f"{args.seconds:g} s per level, load from {args.client};"
    )
    print("CPU ms per request: the service's HTTP process, its sandbox processes, the client")
    print("  tree       items     clients    p50     p99    req/s fail   http  workers  client")
    for (tree, set_name, clients), lv in levels.items():
        ld = lv.load
        print(
            f"  {tree:<10} {set_name:<9} {clients:7d} {ld.p50_ms:7.1f} {ld.p99_ms:7.1f} "
            f"{ld.requests / ld.seconds:8.0f} {ld.failures:4d} {lv.http_cpu_ms:6.2f} "
            f"{lv.worker_cpu_ms:8.2f} {lv.client_cpu_ms:7.2f}"
        )
    if args.baseline_src is not None:
        print("\nbaseline / this tree (higher is better for this tree)")
        print("  items     clients   p50 ratio  p99 ratio  req/s ratio")
        for set_name in item_sets:
            for clients in CLIENT_LEVELS:
                b = levels[("baseline", set_name, clients)].load
                c = levels[("this tree", set_name, clients)].load
                print(
                    f"  {set_name:<9} {clients:7d} {b.p50_ms / c.p50_ms:10.2f}x "
                    f"{b.p99_ms / c.p99_ms:9.2f}x "
                    f"{(c.requests / c.seconds) / (b.requests / b.seconds):11.2f}x"
                )
    print(
        f"\nload average during the latency levels: {min(loads):.1f}-{max(loads):.1f} "
        f"on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
