"""Throughput of the tiny default policy on this machine's CPU.

Usage: .venv/bin/python bench/vlm_throughput.py [--preset tiny] [--batch 32] [--threads 2]
Prints the parameter count, preprocessing and training-step samples/s (batch of 112x112
images with short text; forward + backward + AdamW step), and greedy `generate` tokens/s
with and without the KV cache (their ratio is measured in the same run). The load average
is printed before and after, since other processes on the machine skew every figure.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from vlm.model import count_parameters, create, generate


def _prompts(batch: int) -> tuple[list, list, list[str]]:
    rng = np.random.default_rng(0)
    messages = [[{"role": "user", "content": "<image>Where is the red circle?"}]] * batch
    images = [[rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)] for _ in range(batch)]
    responses = [
        f"<think>left</think><bbox>{50 * (i % 20)} 100 300 400</bbox>" for i in range(batch)
    ]
    return messages, images, responses


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up: allocator, kernels, generation setup
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"machine: {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
        f"load average before {os.getloadavg()[0]:.2f}"
    )

    model, processor = create(args.preset, seed=0)
    print(f"preset {args.preset}: {count_parameters(model):,} parameters")
    messages, images, responses = _prompts(args.batch)

    prep = _timed(lambda: processor.training_batch(messages, responses, images), args.repeats)
    print(f"preprocess   {args.batch / prep:8.1f} samples/s (training_batch, batch {args.batch})")

    batch = processor.training_batch(messages, responses, images)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        optimizer.step()

    train = _timed(step, args.repeats)
    print(
        f"train step   {args.batch / train:8.1f} samples/s (forward+backward+AdamW, "
        f"{batch['input_ids'].shape[1]} tokens per sample)"
    )

    model.eval()
    prompts = processor(messages, images)
    rates = {}
    for use_cache in (True, False):
        out = generate(
            model, processor, prompts, max_new_tokens=args.new_tokens, use_cache=use_cache
        )
        steps = max(len(ids) for ids in out.token_ids)  # the loop runs until the longest ends
        seconds = _timed(
            lambda c=use_cache: generate(
                model, processor, prompts, max_new_tokens=args.new_tokens, use_cache=c
            ),
            max(1, args.repeats // 2),
        )
        rates[use_cache] = args.batch * steps / seconds
        label = "generate KV " if use_cache else "generate raw"
        print(
            f"{label} {rates[use_cache]:8.1f} tokens/s (greedy, batch {args.batch} x "
            f"{steps} new tokens, use_cache={use_cache})"
        )
    print(f"KV cache speed-up: {rates[True] / rates[False]:.2f}x")
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
