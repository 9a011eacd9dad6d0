"""Verifier service vs Hugging Face math-verify in-process, on the same math pairs, in one run.

(a) ``math_verify.verify(parse(gold), parse(prediction))`` in this process, one item after the
other; (b) the same items through ``POST /v1/verify/batch`` of a verifier service started here
as a real subprocess on a free port (cache off, so every item is verified). Prints items/s of
each and their ratio, each one's agreement with the hand-checked verdicts of
bench/math_pairs.py, and p50/p99 latency of single-item ``POST /v1/verify`` calls at 1, 8 and
64 concurrent clients (httpx async), for math items and for light items (format, counting,
grounding, puzzle). Run: ``make bench`` or ``.venv/bin/python bench/verifier_throughput.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.demo import local_service  # noqa: E402

LIGHT_ITEMS = [
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
]


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


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def latency(
    url: str, items: list[dict], clients: int, total: int
) -> tuple[float, float, float]:
    """p50 and p99 (ms) of single-item /v1/verify calls from ``clients`` concurrent clients, and req/s.

    Each client is its own ``httpx.AsyncClient`` with one keep-alive connection, as separate
    trainer processes would be; together they send ``total`` requests.
    """
    lat: list[float] = []
    counter = iter(range(total))

    async def one_client(client: httpx.AsyncClient) -> None:
        for i in counter:
            t0 = time.perf_counter()
            r = await client.post("/v1/verify", json=items[i % len(items)])
            lat.append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()

    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    pool = [httpx.AsyncClient(base_url=url, timeout=60, limits=limits) for _ in range(clients)]
    try:
        await asyncio.gather(*(c.get("/healthz") for c in pool))  # open the connections
        t0 = time.perf_counter()
        await asyncio.gather(*(one_client(c) for c in pool))
        wall = time.perf_counter() - t0
    finally:
        await asyncio.gather(*(c.aclose() for c in pool))
    lat.sort()
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]
    return p50, p99, len(lat) / wall


def agreement(verdicts: list[bool], pairs: list[tuple[str, str, bool]]) -> tuple[int, int, int]:
    """(agree on equivalent pairs, agree on non-equivalent pairs, total agreeing)."""
    eq = sum(1 for v, (_, _, e) in zip(verdicts, pairs, strict=True) if e and v)
    neq = sum(1 for v, (_, _, e) in zip(verdicts, pairs, strict=True) if not e and not v)
    return eq, neq, eq + neq


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--passes", type=int, default=3, help="timed passes of each side (best is kept)"
    )
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="sandbox workers")
    ap.add_argument("--requests", type=int, default=640, help="requests per latency level")
    args = ap.parse_args()

    pairs = load_pairs()
    n_eq = sum(1 for *_, e in pairs if e)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; {len(pairs)} math pairs "
        f"({n_eq} equivalent, {len(pairs) - n_eq} not)"
    )

    mv_times, mv_verdicts = [], []
    for _ in range(args.passes):
        t, mv_verdicts = run_math_verify(pairs)
        mv_times.append(t)

    env = {"HYBRIDRL_CACHE_SIZE": "0", "HYBRIDRL_REDIS_URL": "", "HYBRIDRL_API_KEY": ""}
    with local_service(
        env=env, args=["--workers", str(args.workers), "--no-access-log"]
    ) as service:
        url = service.url
        svc_times, svc_verdicts, errors = [], [], 0
        for _ in range(args.passes):
            t, svc_verdicts, errors = run_service(url, pairs)
            svc_times.append(t)
        math_items = [
            {"verifier": "math", "response": p, "reference": {"answer": g}} for g, p, _ in pairs
        ]
        levels = {}
        for name, items in (("math", math_items), ("light", LIGHT_ITEMS)):
            for clients in (1, 8, 64):
                total = max(args.requests // (4 if clients == 1 else 1), clients * 4)
                server0, client0 = cpu_seconds(service.pid), time.process_time()
                p50, p99, rps = asyncio.run(latency(url, items, clients, total))
                server_ms = (cpu_seconds(service.pid) - server0) / total * 1000
                client_ms = (time.process_time() - client0) / total * 1000
                levels[(name, clients)] = (p50, p99, rps, server_ms, client_ms)

    mv_rate, svc_rate = len(pairs) / min(mv_times), len(pairs) / min(svc_times)
    mv_first, svc_first = len(pairs) / mv_times[0], len(pairs) / svc_times[0]
    print(f"\nthroughput (best of {args.passes} passes; first pass in brackets)")
    print(f"  math-verify in-process      {mv_rate:9.1f} items/s  [{mv_first:.1f}]")
    print(
        f"  service /v1/verify/batch    {svc_rate:9.1f} items/s  [{svc_first:.1f}]  "
        f"({args.workers} workers, cache off)"
    )
    print(
        f"  ratio service / math-verify {svc_rate / mv_rate:9.1f}x     [{svc_first / mv_first:.1f}x]"
    )

    print("\nagreement with the hand-checked verdicts (equivalent | non-equivalent | all)")
    for name, verdicts in (("math-verify", mv_verdicts), ("service", svc_verdicts)):
        eq, neq, tot = agreement(verdicts, pairs)
        print(f"  {name:<12} {eq:4d}/{n_eq} | {neq:4d}/{len(pairs) - n_eq} | {tot:4d}/{len(pairs)}")
    same = sum(1 for a, b in zip(mv_verdicts, svc_verdicts, strict=True) if a == b)
    print(
        f"  service and math-verify give the same verdict on {same}/{len(pairs)}; service errors: {errors}"
    )

    print("\nlatency of single-item POST /v1/verify (ms), cache off; CPU ms per request of the")
    print("service's HTTP process (workers not included) and of this load-generating client")
    print("  items  clients    p50     p99    req/s  server-CPU  client-CPU")
    for (name, clients), (p50, p99, rps, server_ms, client_ms) in levels.items():
        print(
            f"  {name:<6} {clients:7d} {p50:7.1f} {p99:7.1f} {rps:8.0f} {server_ms:11.2f} {client_ms:11.2f}"
        )
    print(f"\nload average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
