"""Agreement of the `instruction` verifier with the official IFEval checker (strict and loose).

Usage: .venv/bin/python bench/ifeval_conformance.py [DATA_DIR]
DATA_DIR defaults to ../shared/conformance/ifeval beside the project. Prints the verdict-level
agreement overall and per instruction id, every disagreement, and the time per mode (loose
mode judges up to eight variants of each response, so its cost is shown as a ratio to strict).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from verifiers.ifeval.conformance import DEFAULT_DIR, load_cases, measure, table


def main(data_dir: Path) -> int:
    results, seconds = [], {}
    measure(load_cases(data_dir, "strict")[:50], "strict")  # warm-up: language profiles, regexes
    for mode in ("strict", "loose"):
        cases = load_cases(data_dir, mode)
        t0 = time.perf_counter()
        results.append(measure(cases, mode))
        seconds[mode] = time.perf_counter() - t0
    print(f"IFEval conformance ({data_dir.resolve()})\n")
    print(table(results))
    print()
    for r in results:
        for e in r.errors:
            print(f"ERROR {r.mode}: {e}")
        for d in r.disagreements:
            print(
                f"{r.mode:6s} key={d.key} {d.instruction_id}: official={d.expected} "
                f"ours={d.got} ({d.reason})"
            )
    n = results[0].total
    print()
    for mode, s in seconds.items():
        print(f"{mode:6s} {s:6.2f} s for {n} verdicts ({1000 * s / n:.2f} ms each)")
    print(f"loose/strict time ratio: {seconds['loose'] / seconds['strict']:.2f}")
    return 0 if all(r.rate >= 0.99 and not r.errors for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR))
