"""Greedy (LPT) vs round-robin assignment of a skewed image-size mix to data-parallel ranks.

Each sample's cost is `pretrain.balance.sample_cost`: the squared patch count of its image
(ViT attention) plus its token count (LM). A global batch mixes many small images with a
few large ones, as pretraining data does; a step lasts as long as its most loaded rank, so
the figure of merit is max/mean rank load (1.0 = perfect). Prints both strategies' mean and
worst ratio over many batches, and the step-time ratio round-robin / greedy that follows.
Also checks the encoded costs of real synth batches (``--real``), as the trainer sees them.

Run: ``.venv/bin/python bench/balancer.py [--ranks 8] [--batch 64] [--batches 500]``
"""

from __future__ import annotations

import argparse
import random
import statistics

from pretrain.balance import balance, imbalance, rank_loads, round_robin_assign, sample_cost

# (image side in pixels, share): mostly thumbnails, some documents, a few posters
SIZE_MIX = ((112, 0.55), (224, 0.25), (448, 0.15), (896, 0.05))


def skewed_batch(rng: random.Random, n: int) -> list[float]:
    """Costs of ``n`` samples with image sides drawn from `SIZE_MIX` (14-pixel patches)."""
    sides = [s for s, _ in SIZE_MIX]
    weights = [w for _, w in SIZE_MIX]
    costs = []
    for _ in range(n):
        side = rng.choices(sides, weights)[0]
        patches = (side // 14) ** 2
        text = rng.randint(64, 1024) + patches // 4  # merged image tokens sit in the text
        costs.append(sample_cost([patches], text))
    return costs


def real_batches(n_batches: int, batch: int) -> list[list[float]]:
    """Costs of encoded synth batches (all task kinds), as the trainer computes them."""
    import vlm
    from pretrain.data import SynthMixSource
    from pretrain.trainer import encode_example, vision_patches

    _, processor = vlm.create("tiny")
    mix = {f"sft/{t}": 1.0 for t in ("grounding", "counting", "spot_difference", "temporal")}
    source = SynthMixSource(mix, difficulty="hard")
    out = []
    for b in range(n_batches):
        costs = []
        for i in range(b * batch, (b + 1) * batch):
            enc = encode_example(processor, source.get(i))
            costs.append(sample_cost(vision_patches(enc), len(enc.input_ids)))
        out.append(costs)
    return out


def report(name: str, batches: list[list[float]], ranks: int) -> None:
    greedy, rr, speedup = [], [], []
    for costs in batches:
        g = balance(costs, ranks)
        r = round_robin_assign(len(costs), ranks)
        greedy.append(imbalance(costs, g))
        rr.append(imbalance(costs, r))
        speedup.append(max(rank_loads(costs, r)) / max(rank_loads(costs, g)))
    print(f"{name}: {len(batches)} batches of {len(batches[0])} samples on {ranks} ranks")
    print(f"  max/mean rank load  round-robin {statistics.mean(rr):.3f} (worst {max(rr):.3f})")
    print(
        f"                      greedy      {statistics.mean(greedy):.3f} (worst {max(greedy):.3f})"
    )
    print(f"  step time ratio round-robin / greedy: {statistics.mean(speedup):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real", type=int, default=10, help="synth batches to encode (0: skip)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    batches = [skewed_batch(rng, args.batch) for _ in range(args.batches)]
    report("skewed image sizes", batches, args.ranks)
    if args.real:
        report("synth hard mix (tiny processor)", real_batches(args.real, args.batch), args.ranks)


if __name__ == "__main__":
    main()
