"""Generate calls filled by expected response length vs filled in draw order (`rollout.group_by_length`).

A batched generate call decodes until its longest response ends. The shipped RL mix has
captions of ~140-210 tokens beside answers of ~50-80; drawn in random order, nearly every
call of 8 prompts x 8 samples holds a caption and runs ~200 steps. Grouped by each task's
mean response length (as the controller learns it from earlier iterations), the captions
share a call and the other calls end early.

Runs the transformers rollout engine on the base model over the same iterations' prompts
both ways (alternating which goes first), one thread as in the RL workers, and prints the
seconds per iteration of each and the ratio.

Run: ``.venv/bin/python bench/rollout_grouping.py [--iterations 4] [--grouped-micro-batch 32]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hybridrl.config import load_config
from rl.batching import length_grouped_chunks, micro_batches
from rl.config import TrainConfig
from rl.controller import to_prompt
from rl.data import draw, load_prompts, task_of
from rl.rollout import SamplingParams, TransformersEngine


def run(engine, records, chunks, params, seed) -> tuple[float, list[int]]:
    """Seconds for generating every chunk, and each output's token count."""
    t0 = time.perf_counter()
    lengths = []
    for c, idx in enumerate(chunks):
        outs = engine.generate([to_prompt(records[i]) for i in idx], params, seed * 1009 + c)
        lengths += [len(o.token_ids) for o in outs]
    return time.perf_counter() - t0, lengths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/local.yaml")
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument(
        "--grouped-micro-batch",
        type=int,
        default=None,
        help="sequences per generate call when grouped (default: the config's)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(TrainConfig, args.config)
    train = load_prompts(cfg.data.train, cfg.data.tasks)
    engine = TransformersEngine(cfg.model, cfg.rollout.micro_batch_size)
    params = SamplingParams(
        n=cfg.rollout.n,
        temperature=cfg.rollout.temperature,
        top_p=cfg.rollout.top_p,
        max_tokens=cfg.rollout.max_new_tokens,
    )
    per_call = max(1, cfg.rollout.micro_batch_size // params.n)
    grouped_per_call = max(
        1, (args.grouped_micro_batch or cfg.rollout.micro_batch_size) // params.n
    )
    n_prompts = cfg.data.prompts_per_iteration

    # each task's mean response length, from one warm-up iteration in draw order
    warm = [train[i] for i in draw(len(train), 1, 0, n_prompts)]
    _, lengths = run(engine, warm, micro_batches(range(len(warm)), per_call), params, 0)
    by_task: dict[str, list[int]] = {}
    for k, n in enumerate(lengths):
        by_task.setdefault(task_of(warm[k // params.n]), []).append(n)
    mean_len = {t: statistics.mean(v) for t, v in by_task.items()}
    print("mean response tokens per task:", {t: round(v) for t, v in sorted(mean_len.items())})

    times: dict[str, list[float]] = {"draw order": [], "grouped": []}
    for it in range(args.iterations):
        records = [train[i] for i in draw(len(train), 0, it * n_prompts, n_prompts)]
        plans = {
            "draw order": micro_batches(range(len(records)), per_call),
            "grouped": length_grouped_chunks(
                [mean_len.get(task_of(r), 0.0) for r in records], grouped_per_call
            ),
        }
        names = list(plans) if it % 2 == 0 else list(reversed(plans))
        for name in names:
            seconds, _ = run(engine, records, plans[name], params, it)
            times[name].append(seconds)
            print(f"iteration {it}: {name:10s} {seconds:6.2f} s")
    base, grouped = (statistics.mean(times[k]) for k in ("draw order", "grouped"))
    print(
        f"{args.iterations} iterations of {n_prompts} prompts x {params.n}: draw order "
        f"({per_call * params.n} per call) {base:.2f} s, grouped ({grouped_per_call * params.n} "
        f"per call) {grouped:.2f} s per iteration: {base / grouped:.2f}x"
    )


if __name__ == "__main__":
    main()
