"""Reward-model server throughput: sequential unary calls vs concurrent calls batched dynamically.

Starts ``hybridrl serve reward-model`` as a subprocess (a fresh tiny-preset RM unless --model
is given), sends the same caption pairs once one call at a time and once from many client
threads at the same time, and prints pairs/s of each, the ratio, and the forward passes the
server ran (its Stats rpc).

    .venv/bin/python bench/reward_model_throughput.py [--pairs 64] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from reward_model.client import RewardModelClient


def start_server(model: Path, max_batch: int, max_wait_ms: float) -> tuple[subprocess.Popen, str]:
    exe = Path(sys.executable).with_name("hybridrl")
    proc = subprocess.Popen(
        [str(exe), "serve", "reward-model", "--model", str(model), "--port", "0",
         "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    for line in proc.stdout:
        if "listening on" in line:
            return proc, line.split("listening on ")[1].split()[0]
    raise RuntimeError(f"the server exited before listening (code {proc.wait()})")


def caption_pairs(n: int) -> list[tuple[str, bytes, str, str]]:
    from reward_model.pairs import pairs_from_records
    from synth.registry import generate

    records = generate("caption", (n + 3) // 4, seed=3, split="test")
    pairs = list(pairs_from_records(records, format_share=0))[:n]
    return [(p.prompt[-1]["content"], p.images[0], p.chosen, p.rejected) for p in pairs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="RM checkpoint (default: a fresh tiny-preset model)")
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-wait-ms", type=float, default=10.0)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            import vlm
            from reward_model.model import RewardModel

            model = Path(tmp) / "rm"
            RewardModel(*vlm.create("tiny", seed=0)).save(model)
        pairs = caption_pairs(args.pairs)
        proc, address = start_server(model, args.max_batch, args.max_wait_ms)
        try:
            with RewardModelClient(address, timeout_s=600, retries=2) as client:
                client.wait_ready(60)
                prompt, image, a, b = pairs[0]
                client.compare(prompt, a, b, [image])  # warm-up: first forward allocates

                s0 = client.stats()
                t0 = time.perf_counter()
                for prompt, image, a, b in pairs:
                    client.compare(prompt, a, b, [image])
                sequential = time.perf_counter() - t0
                s1 = client.stats()

                def one(pair: tuple[str, bytes, str, str]) -> float:
                    prompt, image, a, b = pair
                    return client.compare(prompt, a, b, [image]).p

                with ThreadPoolExecutor(args.concurrency) as pool:
                    t0 = time.perf_counter()
                    list(pool.map(one, pairs))
                    concurrent = time.perf_counter() - t0
                s2 = client.stats()
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    n = len(pairs)
    seq_rate, conc_rate = n / sequential, n / concurrent
    print(f"model: {args.model or 'fresh tiny preset'}; {n} caption pairs (both orders each)")
    print(
        f"sequential unary : {seq_rate:7.2f} pairs/s  "
        f"({s1['forward_passes'] - s0['forward_passes']} forward passes)"
    )
    print(
        f"concurrent x{args.concurrency:<3} : {conc_rate:7.2f} pairs/s  "
        f"({s2['forward_passes'] - s1['forward_passes']} forward passes, "
        f"max batch {args.max_batch}, max wait {args.max_wait_ms:g} ms)"
    )
    print(f"ratio (dynamic batching / sequential): {conc_rate / seq_rate:.2f}x")


if __name__ == "__main__":
    main()
