"""Learning-rate schedules as pure functions of the step (Seed1.5-VL §3: warmup, then cosine or constant)."""

from __future__ import annotations

import math
from typing import Literal

Schedule = Literal["cosine", "constant"]


def lr_at(
    step: int,
    *,
    lr: float,
    min_lr: float,
    total_steps: int,
    warmup_steps: int = 0,
    schedule: Schedule = "cosine",
) -> float:
    """The LR of optimizer step ``step`` (0-based): linear warmup to ``lr``, then cosine to ``min_lr``.

    Warmup step ``s`` uses ``lr * (s + 1) / warmup_steps``, so the first update is not wasted at
    LR 0. After warmup, cosine decays from ``lr`` at the end of warmup to ``min_lr`` at the last
    step; ``constant`` keeps ``lr`` (stage 2 of the paper, which also has no warmup).
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if warmup_steps and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return lr
    if schedule != "cosine":
        raise ValueError(f"unknown schedule {schedule!r}; use 'cosine' or 'constant'")
    decay_steps = max(1, total_steps - warmup_steps - 1)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))
