"""The registered synthetic tasks, and the generator that turns them into prompt records."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hybridrl.records import PromptRecord
from synth import caption, counting, grounding, instruction, puzzle, spot_difference, stem, temporal
from synth.task import (
    DIFFICULTIES,
    SPLITS,
    TEST_BUCKETS,
    TaskSpec,
    content_hash,
    sample_rng,
    split_of,
    to_record,
)

TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        stem.SPEC,
        grounding.SPEC,
        counting.SPEC,
        spot_difference.SPEC,
        puzzle.SPEC,
        instruction.SPEC,
        caption.SPEC,
        temporal.SPEC,
    )
}
# In-split repeats drawn for one sample before a repeat is accepted (small content spaces).
MAX_ATTEMPTS = 16


class UnknownTaskError(ValueError):
    def __init__(self, name: str):
        super().__init__(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
        self.name = name


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownTaskError(name) from None


@dataclass(frozen=True)
class Generated:
    """One generated record; ``duplicate`` when its content repeats an earlier one of the run."""

    record: PromptRecord
    duplicate: bool


def iter_generate(
    tasks: Sequence[str],
    n: int,
    *,
    seed: int = 0,
    split: str = "train",
    difficulty: str = "easy",
    configs: Mapping[str, Any] | None = None,
    system: str | None = None,
) -> Iterator[Generated]:
    """Yield ``n`` records, tasks interleaved round-robin, deterministic in all arguments.

    Each sample is redrawn until its content hash falls in ``split``'s buckets (so train and
    test never share content) and, up to `MAX_ATTEMPTS` draws, until it is new in this run.
    ``configs`` maps a task name to a config object overriding the ``difficulty`` preset.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown difficulty {difficulty!r}; known: {', '.join(DIFFICULTIES)}")
    if not tasks:
        raise ValueError("no tasks given")
    specs = [get_task(t) for t in tasks]
    configs = dict(configs or {})
    for name in configs:
        get_task(name)
    seen: set[str] = set()
    for i in range(n):
        spec = specs[i % len(specs)]
        cfg = configs.get(spec.name) or spec.preset(difficulty)
        fallback, repeats = None, 0
        for attempt in range(MAX_ATTEMPTS * TEST_BUCKETS * 8):
            sample = spec.make(sample_rng(seed, split, spec.name, difficulty, i, attempt), cfg)
            digest = content_hash(spec.name, sample)
            if split_of(digest) != split:
                continue
            if digest not in seen:
                break
            fallback = fallback or (sample, digest)
            repeats += 1
            if repeats >= MAX_ATTEMPTS:  # the content space is (nearly) used up: repeat one
                sample, digest = fallback
                break
        else:  # pragma: no cover - needs hundreds of draws outside the split's buckets
            raise RuntimeError(
                f"task {spec.name!r}: no sample for split {split!r} in {attempt + 1} draws"
            )
        duplicate = digest in seen
        seen.add(digest)
        record = to_record(
            spec, sample, index=i, split=split, difficulty=difficulty, digest=digest, system=system
        )
        yield Generated(record, duplicate)


def generate(
    tasks: Sequence[str] | str,
    n: int,
    *,
    seed: int = 0,
    split: str = "train",
    difficulty: str = "easy",
    configs: Mapping[str, Any] | None = None,
    system: str | None = None,
) -> list[PromptRecord]:
    """``n`` prompt records of the given task(s); see `iter_generate`."""
    names = [tasks] if isinstance(tasks, str) else list(tasks)
    return [
        g.record
        for g in iter_generate(
            names, n, seed=seed, split=split, difficulty=difficulty, configs=configs, system=system
        )
    ]
