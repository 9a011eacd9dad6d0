"""In-process throughput of the `math` verifier vs Math-Verify on bench/math_pairs.py.

Prints items/s for each and the ratio, measured in the same run, plus agreement with the
hand-checked verdicts. "cold" clears our reference cache before every pass (each reference
seen once); "warm" keeps it (RL scores several samples per prompt against one reference).
Run: .venv/bin/python bench/math_verifier_speed.py [--passes 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.math_pairs import MATH_PAIRS  # noqa: E402
from verifiers import math_answer  # noqa: E402
from verifiers.registry import verify  # noqa: E402


def _ours(passes: int, cold: bool) -> tuple[float, int]:
    correct = 0
    t0 = time.perf_counter()
    for _ in range(passes):
        if cold:
            math_answer._parse_reference.cache_clear()
        for gold, pred, expected in MATH_PAIRS:
            correct += verify("math", pred, gold, {}).correct == expected
    return passes * len(MATH_PAIRS) / (time.perf_counter() - t0), correct // passes


def _math_verify(passes: int, timeouts: bool) -> tuple[float, int]:
    from math_verify import parse
    from math_verify import verify as mv_verify

    kw_p = {} if timeouts else {"parsing_timeout": None}
    kw_v = {} if timeouts else {"timeout_seconds": None}
    correct = 0
    t0 = time.perf_counter()
    for _ in range(passes):
        for gold, pred, expected in MATH_PAIRS:
            try:
                ok = mv_verify(parse(f"${gold}$", **kw_p), parse(pred, **kw_p), **kw_v)
            except Exception:  # a crash counts as "not equal"
                ok = False
            correct += ok == expected
    return passes * len(MATH_PAIRS) / (time.perf_counter() - t0), correct // passes


def _latencies() -> tuple[list[float], list[float]]:
    """Per-pair seconds, each reference seen cold, for both verifiers."""
    from math_verify import parse
    from math_verify import verify as mv_verify

    ours, theirs = [], []
    for gold, pred, _ in MATH_PAIRS:
        t = time.perf_counter()
        try:
            mv_verify(parse(f"${gold}$"), parse(pred))
        except Exception:  # same counting as above
            pass
        theirs.append(time.perf_counter() - t)
        math_answer._parse_reference.cache_clear()
        t = time.perf_counter()
        verify("math", pred, gold, {})
        ours.append(time.perf_counter() - t)
    return ours, theirs


def _pct(xs: list[float], q: float) -> float:
    return sorted(xs)[int(q * (len(xs) - 1))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passes", type=int, default=5)
    args = ap.parse_args()
    n = len(MATH_PAIRS)
    # warm both up once (imports, sympy's lazy modules)
    _ours(1, cold=True)
    _math_verify(1, timeouts=True)
    mv_rate, mv_ok = _math_verify(args.passes, timeouts=True)
    mv_nt_rate, _ = _math_verify(args.passes, timeouts=False)
    cold_rate, ok = _ours(args.passes, cold=True)
    warm_rate, _ = _ours(args.passes, cold=False)
    print(
        f"pairs: {n}; agreement with hand-checked verdicts: ours {ok}/{n}, math_verify {mv_ok}/{n}"
    )
    print(f"math_verify (signal timeouts, default) : {mv_rate:8.1f} items/s")
    print(f"math_verify (timeouts off)             : {mv_nt_rate:8.1f} items/s")
    print(f"ours, cold reference cache             : {cold_rate:8.1f} items/s")
    print(f"ours, warm reference cache             : {warm_rate:8.1f} items/s")
    print(
        f"ratio cold/math_verify: {cold_rate / mv_rate:.2f}x  warm/math_verify: {warm_rate / mv_rate:.2f}x"
    )
    print(f"ratio cold/math_verify(no timeouts): {cold_rate / mv_nt_rate:.2f}x")
    ours, theirs = _latencies()
    for name, xs in (("math_verify", theirs), ("ours", ours)):
        print(
            f"{name:12} per pair (cold): median {_pct(xs, 0.5):7.2f} ms  p90 {_pct(xs, 0.9):7.2f} ms"
            f"  max {max(xs) * 1000:7.1f} ms"
        )


if __name__ == "__main__":
    main()
