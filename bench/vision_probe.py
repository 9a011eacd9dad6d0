"""What a checkpoint's vision tower still tells apart: linear probes against a fresh tower.

For single-object easy caption scenes (one shape on the position ramp), the vision tower's
merged tokens are read out and a linear classifier is fitted per property on 1,500 images and
scored on 300 held-out ones: the shape (3 classes) and colour (4) from the tokens' mean and max
(position-free), the 3x3 region word from the tokens in order. The same probes run on a
freshly initialised tower of the same preset in the same run, and the script prints each
checkpoint's accuracy and its ratio to the fresh tower's: below 1, training has thrown away
information that random features still carried.

Run: ``.venv/bin/python bench/vision_probe.py runs/base-model/stage0/final runs/base-model/stage1/final``
"""

from __future__ import annotations

import argparse
import os
import random
from dataclasses import replace

import torch

from synth.caption import PRESETS
from synth.caption import make as make_caption
from synth.scene import EASY_COLOURS, EASY_SHAPES, region_words

PROPERTIES = ("shape", "colour", "region")


def scenes(n: int, seed: int) -> tuple[list, dict[str, list[str]]]:
    """``n`` one-object caption images and each one's shape, colour and region word."""
    rng = random.Random(seed)
    cfg = replace(PRESETS["easy"], n_objects=(1, 1))
    images, labels = [], {p: [] for p in PROPERTIES}
    for _ in range(n):
        sample = make_caption(rng, cfg)
        (obj,) = sample.content["scene"]["objects"]
        images.append(sample.images[0])
        labels["shape"].append(obj["shape"])
        labels["colour"].append(obj["colour"])
        labels["region"].append(region_words(tuple(obj["box"])))
    return images, labels


@torch.no_grad()
def features(model: torch.nn.Module, processor, images: list) -> torch.Tensor:
    """(n, tokens, dim) merged vision tokens of same-sized images."""
    from pretrain.freeze import towers

    visual, _ = towers(model)
    out = []
    for i in range(0, len(images), 64):
        chunk = images[i : i + 64]
        batch = processor(
            [[{"role": "user", "content": "<image>"}]] * len(chunk),
            [[im] for im in chunk],
            [[]] * len(chunk),
        )
        emb = visual(batch["pixel_values"], grid_thw=batch["image_grid_thw"])
        emb = getattr(emb, "pooler_output", emb)  # merged tokens; older versions: a tensor
        out.append(emb.reshape(len(chunk), -1, emb.shape[-1]))
    return torch.cat(out)


def probe(
    train_x: torch.Tensor, train_y: list[str], test_x: torch.Tensor, test_y: list[str]
) -> float:
    """Held-out accuracy of a linear classifier (full-batch Adam, light weight decay)."""
    classes = sorted(set(train_y))
    ytr = torch.tensor([classes.index(y) for y in train_y])
    yte = torch.tensor([classes.index(y) if y in classes else -1 for y in test_y])
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    xtr, xte = (train_x - mu) / sd, (test_x - mu) / sd
    torch.manual_seed(0)
    head = torch.nn.Linear(xtr.shape[1], len(classes))
    opt = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(400):
        loss = torch.nn.functional.cross_entropy(head(xtr), ytr)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (head(xte).argmax(1) == yte).float().mean().item()


def accuracies(model, processor, train, test) -> dict[str, float]:
    ftr, fte = features(model, processor, train[0]), features(model, processor, test[0])
    pooled = lambda f: torch.cat([f.mean(1), f.amax(1)], -1)  # noqa: E731
    flat = lambda f: f.flatten(1)  # noqa: E731
    views = {"shape": pooled, "colour": pooled, "region": flat}
    return {p: probe(views[p](ftr), train[1][p], views[p](fte), test[1][p]) for p in PROPERTIES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="model directories to probe")
    parser.add_argument("--preset", default="tiny", help="vlm preset of the fresh baseline")
    parser.add_argument("--train", type=int, default=1500)
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import vlm
    from vlm.model import create

    train, test = scenes(args.train, seed=1), scenes(args.test, seed=2)
    print(
        f"machine: {os.cpu_count()} CPUs; {args.train} train / {args.test} test one-object scenes"
    )
    print(
        f"chance: shape {1 / len(EASY_SHAPES):.2f}, colour {1 / len(EASY_COLOURS):.2f}, region 0.11"
    )
    fresh_model, fresh_proc = create(args.preset, seed=0)
    fresh = accuracies(fresh_model.eval(), fresh_proc, train, test)
    print(f"{'fresh ' + args.preset:<40}" + "".join(f"  {p} {fresh[p]:.3f}" for p in PROPERTIES))
    for path in args.checkpoints:
        model, processor = vlm.load(path, dtype=torch.float32)
        acc = accuracies(model.eval(), processor, train, test)
        cells = "".join(f"  {p} {acc[p]:.3f} ({acc[p] / fresh[p]:.2f}x)" for p in PROPERTIES)
        print(f"{path:<40}{cells}")


if __name__ == "__main__":
    main()
