"""Workload balancing across data-parallel ranks (Seed1.5-VL §5.1), as pure functions.

Vision-encoder compute grows with the square of an image's patch count (attention), the LM's
roughly with the sequence length, so a global batch with a few large images split evenly by
count leaves most ranks waiting for one. The paper assigns samples greedily by compute
intensity: most expensive first, each to the currently least loaded rank (LPT scheduling,
whose max load is within 4/3 of optimal). LPT is not optimal, so an arbitrary order can beat
it (costs [3, 5, 3, 4, 3] on 2 ranks: round-robin splits 9/9, LPT 10/8); `balance` therefore
keeps whichever of LPT and round-robin has the lower max load, and is never worse than the
baseline.
"""

from __future__ import annotations

from collections.abc import Sequence


def sample_cost(
    vision_tokens: Sequence[int], text_tokens: int, *, vision_weight: float = 1.0
) -> float:
    """Compute estimate of one sample: sum of squared patch counts per image plus its tokens."""
    if text_tokens < 0 or any(v < 0 for v in vision_tokens):
        raise ValueError("token counts must be non-negative")
    return vision_weight * float(sum(v * v for v in vision_tokens)) + float(text_tokens)


def greedy_assign(costs: Sequence[float], n_ranks: int) -> list[list[int]]:
    """Sample indices per rank: most expensive first, each to the least loaded rank.

    Deterministic: ties in cost keep index order, ties in load go to the lowest rank. Each
    rank's indices come back in ascending order; with ``len(costs) >= n_ranks`` every rank
    gets at least one sample.
    """
    _check(costs, n_ranks)
    loads = [0.0] * n_ranks
    counts = [0] * n_ranks
    shards: list[list[int]] = [[] for _ in range(n_ranks)]
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        # an empty rank first (it must get work), then the least loaded, then the lowest rank
        r = min(range(n_ranks), key=lambda r: (counts[r] > 0, loads[r], r))
        shards[r].append(i)
        loads[r] += costs[i]
        counts[r] += 1
    return [sorted(s) for s in shards]


def balance(costs: Sequence[float], n_ranks: int) -> list[list[int]]:
    """Shards for a global batch: LPT, unless round-robin happens to have a lower max load."""
    greedy = greedy_assign(costs, n_ranks)
    baseline = round_robin_assign(len(costs), n_ranks)
    if max(rank_loads(costs, baseline)) < max(rank_loads(costs, greedy)):
        return baseline
    return greedy


def round_robin_assign(n_samples: int, n_ranks: int) -> list[list[int]]:
    """The baseline: sample i to rank i mod n_ranks."""
    _check([0.0] * n_samples, n_ranks)
    return [list(range(r, n_samples, n_ranks)) for r in range(n_ranks)]


def rank_loads(costs: Sequence[float], shards: Sequence[Sequence[int]]) -> list[float]:
    """Total cost per rank."""
    return [float(sum(costs[i] for i in shard)) for shard in shards]


def imbalance(costs: Sequence[float], shards: Sequence[Sequence[int]]) -> float:
    """max / mean rank load (1.0 is perfect balance); the step waits for the max."""
    loads = rank_loads(costs, shards)
    mean = sum(loads) / len(loads)
    return max(loads) / mean if mean > 0 else 1.0


def _check(costs: Sequence[float], n_ranks: int) -> None:
    if n_ranks < 1:
        raise ValueError(f"n_ranks must be at least 1, got {n_ranks}")
    if any(c < 0 for c in costs):
        raise ValueError("costs must be non-negative")


def split_by_tokens(
    lengths: Sequence[int], max_samples: int, max_tokens: int | None = None
) -> list[list[int]]:
    """Micro-batches of sample indices, shortest first, each padded size within ``max_tokens``.

    A micro-batch is padded to its longest sample, so grouping similar lengths and capping
    ``count * longest`` wastes little compute on padding; a sample longer than the cap gets a
    micro-batch of its own.
    """
    if max_samples < 1:
        raise ValueError(f"max_samples must be at least 1, got {max_samples}")
    groups: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in sorted(range(len(lengths)), key=lambda i: (lengths[i], i)):
        grown = max(longest, lengths[i])
        full = len(current) >= max_samples or (
            max_tokens is not None and (len(current) + 1) * grown > max_tokens
        )
        if current and full:
            groups.append(current)
            current, grown = [], lengths[i]
        current.append(i)
        longest = grown
    if current:
        groups.append(current)
    return groups
