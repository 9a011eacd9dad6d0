"""Prompt filtering to moderate difficulty, as the report does before RL (§4.3–4.4).

Each prompt gets ``k`` sampled responses from the starting policy, scored by the same reward
router as training; a prompt is kept when its mean reward lies in ``[low, high]``: prompts the
policy always or never solves give PPO little to learn from.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from hybridrl.records import PromptRecord
from rl.data import task_of
from rl.rewards import RewardRouter, Scored


@dataclass(frozen=True)
class FilterStats:
    task: str
    total: int
    kept: int
    mean_reward: float
    samples: int
    well_formed: int  # samples that passed the format check (the rest never reach a scorer)


def keep_moderate(
    records: Sequence[PromptRecord],
    scores: Sequence[Sequence[Scored]],
    low: float,
    high: float,
) -> tuple[list[PromptRecord], list[FilterStats]]:
    """Records whose mean reward over their samples lies in [low, high] (failed samples
    ignored; a prompt with no scored sample is dropped), and per-task counts."""
    kept: list[PromptRecord] = []
    per_task: dict[str, list[tuple[bool, float]]] = defaultdict(list)
    formats: dict[str, list[bool]] = defaultdict(list)
    for rec, ss in zip(records, scores, strict=True):
        formats[task_of(rec)] += [s.format_ok for s in ss]
        rewards = [s.reward for s in ss if s.reward is not None]
        mean = sum(rewards) / len(rewards) if rewards else float("nan")
        ok = bool(rewards) and low <= mean <= high
        per_task[task_of(rec)].append((ok, mean if rewards else 0.0))
        if ok:
            kept.append(rec)
    stats = [
        FilterStats(
            t,
            len(v),
            sum(k for k, _ in v),
            sum(m for _, m in v) / len(v),
            len(formats[t]),
            sum(formats[t]),
        )
        for t, v in sorted(per_task.items())
    ]
    return kept, stats


def score_samples(
    engine,
    router: RewardRouter,
    records: Sequence[PromptRecord],
    k: int,
    max_tokens: int,
    seed: int,
    *,
    chunk: int = 64,
    progress: bool = False,
) -> list[list[Scored]]:
    """``k`` sampled responses (temperature 1) per record, scored; grouped per record.

    Records go through the engine ``chunk`` at a time (chunk i sampled with seed + i), under a
    progress bar."""
    from tqdm import tqdm

    from rl.controller import to_prompt
    from rl.rollout import SamplingParams

    params = SamplingParams(n=k, temperature=1.0, max_tokens=max_tokens)
    grouped: list[list[Scored]] = [[] for _ in records]
    starts = range(0, len(records), chunk)
    for i, start in enumerate(tqdm(starts, desc="filter", unit="chunk", disable=not progress)):
        part = records[start : start + chunk]
        outs = engine.generate([to_prompt(r) for r in part], params, seed + i)
        scored = router.score([part[o.prompt] for o in outs], [o.text for o in outs])
        for o, s in zip(outs, scored, strict=True):
            grouped[start + o.prompt].append(s)
    return grouped
