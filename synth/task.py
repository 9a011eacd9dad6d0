"""What every synthetic task shares: the sample it draws, its spec, seeding and the split rule.

A task is a pure function ``make(rng, config) -> Sample``. Determinism: sample ``i`` of a run
draws from its own ``random.Random`` seeded by a hash of (seed, split, task, difficulty, i,
attempt), never from global state. Train/test disjointness: a sample's *content key* (what
makes it that sample: the problem, the scene graph, the question; not render jitter) is
hashed, and the hash alone decides which split may hold it, so no test sample appears in any
train set, whatever the seeds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image

from hybridrl.records import PromptRecord, encode_png

SPLITS = ("train", "test")
# One content hash in TEST_BUCKETS belongs to the test split; the rest to train.
TEST_BUCKETS = 5
DIFFICULTIES = ("easy", "hard")


@dataclass
class Sample:
    """One drawn task instance, before it becomes a `PromptRecord`."""

    prompt: str  # user text with one <image>/<video> placeholder per image/video
    ground_truth: Any
    reference_response: str  # "<think>…</think>answer": the SFT target and the RM's reference
    content: dict[str, Any]  # JSON-able; identifies the sample for dedupe and the split rule
    images: list[Image.Image] = field(default_factory=list)
    videos: list[tuple[list[Image.Image], float]] = field(default_factory=list)  # (frames, fps)
    extra: dict[str, Any] = field(default_factory=dict)  # more extra_info keys (scalars/strings)


@dataclass(frozen=True)
class TaskSpec:
    """A registered task: how to draw it and how its records are scored."""

    name: str
    ability: str
    style: Literal["rule", "model"]
    verifier: str | None
    config: type
    presets: dict[str, Any]
    make: Callable[[random.Random, Any], Sample]
    description: str

    def preset(self, difficulty: str) -> Any:
        try:
            return self.presets[difficulty]
        except KeyError:
            known = ", ".join(self.presets)
            raise ValueError(
                f"unknown difficulty {difficulty!r} for task {self.name!r}; known: {known}"
            ) from None


def sample_rng(
    seed: int, split: str, task: str, difficulty: str, index: int, attempt: int
) -> random.Random:
    """The private RNG of one sample draw."""
    text = f"{seed}|{split}|{task}|{difficulty}|{index}|{attempt}"
    return random.Random(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big"))


def content_hash(task: str, sample: Sample) -> str:
    """Hex sha256 of the task name, prompt, ground truth and content key."""
    blob = json.dumps(
        [task, sample.prompt, sample.ground_truth, sample.content],
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def split_of(digest: str) -> str:
    """The only split a sample with this content hash may belong to."""
    return "test" if int(digest[:15], 16) % TEST_BUCKETS == 0 else "train"


def to_record(
    spec: TaskSpec,
    sample: Sample,
    *,
    index: int,
    split: str,
    difficulty: str,
    digest: str,
    system: str | None = None,
) -> PromptRecord:
    """The prompt record of a sample (images as PNG bytes, videos as PNG frame lists)."""
    messages = [{"role": "user", "content": sample.prompt}]
    if system:
        messages.insert(0, {"role": "system", "content": system})
    extra = {
        "index": index,
        "split": split,
        "verifier": spec.verifier,
        "reference_response": sample.reference_response,
        "task": spec.name,
        "difficulty": difficulty,
        "content_hash": digest,
        **sample.extra,
    }
    return PromptRecord(
        data_source=f"synth/{spec.name}",
        prompt=messages,
        images=[{"bytes": encode_png(im), "path": None} for im in sample.images],
        videos=[
            {"frames": [{"bytes": encode_png(f)} for f in frames], "fps": fps}
            for frames, fps in sample.videos
        ],
        ability=spec.ability,
        reward_model={"style": spec.style, "ground_truth": sample.ground_truth},
        extra_info=extra,
    )


def config_with(config: Any, overrides: dict[str, Any]) -> Any:
    """A copy of a task config dataclass with some fields replaced (unknown names raise)."""
    names = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(
            f"unknown {type(config).__name__} field(s) {unknown}; known: {sorted(names)}"
        )
    return dataclasses.replace(config, **overrides)
