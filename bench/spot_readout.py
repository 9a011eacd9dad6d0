"""Can a checkpoint box a named object in image 2 of a spot-the-difference prompt?

The box half of spot-the-difference, apart from finding the change: held-out easy scenes (a
colour change or an added object) are scored with the reference think forced, so the model
is told which object to box, under three prompts of the same scenes:

- ``changes``: the two-image phrasing the hard preset keeps (``Image 1: <image> Image 2:
  <image> Image 2 is a changed copy of image 1. Box each difference in image 2 …``), think
  ``1 difference: the red square turned blue``;
- ``where``: the easy preset's phrasing, grounding's question right after image 2 (``… Image 2:
  <image>Where is the difference? Answer with <bbox>…</bbox>.``), think ``the blue square``;
- ``image 2 alone``: a plain grounding prompt on image 2 (``<image>Where is the blue square?
  …``), the ceiling a grounding readout gives on these scenes.

A model that reads boxes from the answer's M-RoPE offset to the image
(bench/grounding_offset.py) boxes well only where that offset is the one it learnt. The
script prints each accuracy and its ratio to ``changes``.

Run: ``.venv/bin/python bench/spot_readout.py runs/base-model/model``
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace

import torch

QUESTION = "Where is the {name}? Answer with <bbox>x1 y1 x2 y2</bbox>."


def scenes(n: int, seed: int):
    """``n`` held-out easy scenes, each as its ``where`` and its ``changes`` sample."""
    from synth import get_task
    from synth.task import config_with, content_hash, sample_rng, split_of

    spec = get_task("spot_difference")
    where = spec.preset("easy")
    changes = config_with(where, {"question": "changes"})
    out = []
    for i in range(n):
        for attempt in range(10_000):  # the test split holds one sample in TEST_BUCKETS
            sample = spec.make(sample_rng(seed, "test", spec.name, "easy", i, attempt), where)
            if split_of(content_hash(spec.name, sample)) == "test":
                twin = spec.make(sample_rng(seed, "test", spec.name, "easy", i, attempt), changes)
                out.append((sample, twin))
                break
    return out


def variants(where, changes) -> dict[str, tuple[str, list, str]]:
    """(prompt, images, forced think) of one scene under each phrasing."""
    think = where.reference_response.split("</think>")[0] + "</think>"
    name = think.removeprefix("<think>the ").removesuffix("</think>")
    return {
        "changes": (
            changes.prompt,
            changes.images,
            changes.reference_response.split("</think>")[0] + "</think>",
        ),
        "where": (where.prompt, where.images, think),
        "image 2 alone": ("<image>" + QUESTION.format(name=name), where.images[1:], think),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="checkpoint directory")
    parser.add_argument("--n", type=int, default=64, help="held-out scenes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import vlm
    from verifiers import verify
    from vlm.model import generate

    model, processor = vlm.load(args.model, dtype=torch.float32)
    model.eval()
    pairs = scenes(args.n, args.seed)
    correct: dict[str, int] = {}
    for label in ("changes", "where", "image 2 alone"):
        hits = 0
        for start in range(0, len(pairs), args.batch):
            chunk = pairs[start : start + args.batch]
            encoded, thinks = [], []
            for where, changes in chunk:
                prompt, images, think = variants(where, changes)[label]
                enc = processor.encode([{"role": "user", "content": prompt}], images)
                forced = processor.tokenizer(think, add_special_tokens=False)["input_ids"]
                encoded.append(replace(enc, input_ids=enc.input_ids + forced))
                thinks.append(think)
            batch = processor.collate(encoded, padding_side="left")
            with torch.no_grad():
                out = generate(model, processor, batch, max_new_tokens=40)
            for (where, _), think, text in zip(chunk, thinks, out.texts, strict=True):
                hits += verify("spot_difference", think + text, where.ground_truth).reward >= 1.0
        correct[label] = hits
    n = len(pairs)
    print(f"spot-the-difference, think forced: {n} held-out easy scenes, {args.model}")
    print(f"{'prompt':<16} {'boxed':>7} {'accuracy':>9} {'ratio':>7}")
    for label, hits in correct.items():
        ratio = hits / correct["changes"] if correct["changes"] else float("inf")
        print(f"{label:<16} {hits:>4}/{n:<2} {hits / n:>9.3f} {ratio:>6.2f}x")


if __name__ == "__main__":
    main()
