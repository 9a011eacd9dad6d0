"""Forward+backward time of a training step for several padded-token caps per micro-batch.

The trainer sorts a global batch by length and cuts it into micro-batches of at most
``micro_tokens`` padded tokens (`pretrain.balance.split_by_tokens`). A large cap means few,
large matmuls but more padding (every row is padded to the longest of its micro-batch); a
small cap, tighter length groups and more forwards. This bench encodes the same global
batches once per cap, then times forward+backward of each set in alternating rounds and
prints, per cap: real/padded tokens, micro-batches per step, median seconds per step and the
ratio against the first cap (the baseline). Numbers depend on the machine; run it where you
train.

Run: ``.venv/bin/python bench/micro_tokens.py [--stage 1] [--caps 4096 2048 1536 1024]``
(``--sft`` times the SFT data of ``configs/sft_tiny.yaml`` instead of a pretraining stage).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch


def batches(args: argparse.Namespace, processor, cap: int) -> list:
    from hybridrl.config import load_config
    from pretrain.config import PretrainConfig, SFTConfig
    from pretrain.data import RecordSource, SynthMixSource
    from pretrain.trainer import prepare_batch

    if args.sft:
        cfg = load_config(SFTConfig, Path(args.sft_config), [])
        source = RecordSource(cfg.data, field_name=cfg.response_field, seed=cfg.train.seed)
        seq_len, batch = cfg.train.seq_len, cfg.train.global_batch
    else:
        cfg = load_config(PretrainConfig, Path(args.config), [])
        stage = cfg.stage(args.stage)
        source = SynthMixSource(
            stage.mix,
            seed=stage.seed,
            difficulty=cfg.synth.difficulty,
            task_overrides=cfg.synth.tasks,
        )
        seq_len, batch = stage.seq_len, stage.global_batch
    return [
        prepare_batch(
            source,
            processor,
            batch * (args.skip + i),
            batch,
            world=1,
            seq_len=seq_len,
            micro_batch=batch,
            micro_tokens=cap,
        )
        for i in range(args.steps)
    ]


def fwd_bwd(model, steps: list) -> float:
    """Seconds per step of forward+backward over ``steps``."""
    from pretrain.losses import token_losses

    start = time.perf_counter()
    for step in steps:
        for mb in step.shards[0]:
            ce, _ = token_losses(model, mb.inputs)
            ce.sum().backward()
    model.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / len(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="checkpoint dir or vlm preset")
    parser.add_argument("--config", default="configs/pretrain_tiny.yaml")
    parser.add_argument("--stage", type=int, default=1)
    parser.add_argument("--sft", action="store_true", help="time SFT records instead")
    parser.add_argument("--sft-config", default="configs/sft_tiny.yaml")
    parser.add_argument("--caps", type=int, nargs="+", default=[4096, 2048, 1536, 1024])
    parser.add_argument("--steps", type=int, default=8, help="global batches per set")
    parser.add_argument("--skip", type=int, default=0, help="global batches to skip first")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from pretrain.trainer import load_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, processor = load_model(args.model)
    model.train()
    sets = {cap: batches(args, processor, cap) for cap in args.caps}
    fwd_bwd(model, sets[args.caps[0]])  # warm-up: allocator, kernels
    times: dict[int, list[float]] = {cap: [] for cap in args.caps}
    for _ in range(args.rounds):  # alternate, so load changes on the machine hit every cap
        for cap in args.caps:
            times[cap].append(fwd_bwd(model, sets[cap]))
    base = statistics.median(times[args.caps[0]])
    what = "sft" if args.sft else f"stage {args.stage}"
    print(f"{what}: {args.steps} global batches, {args.rounds} rounds, {args.threads} threads")
    print(f"{'cap':>6} {'real/padded':>12} {'micro/step':>11} {'s/step':>8} {'speed-up':>9}")
    for cap in args.caps:
        real = sum(s.tokens for s in sets[cap])
        padded = sum(mb.inputs["input_ids"].numel() for s in sets[cap] for mb in s.shards[0])
        micro = sum(len(s.shards[0]) for s in sets[cap]) / len(sets[cap])
        med = statistics.median(times[cap])
        print(f"{cap:>6} {real / padded:>12.3f} {micro:>11.2f} {med:>8.3f} {base / med:>8.2f}x")


if __name__ == "__main__":
    main()
