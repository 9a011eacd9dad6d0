"""Grounding: "where is the <colour> <shape>?" → ``<bbox>x1 y1 x2 y2</bbox>`` on the 0–1000 grid.

Ground truth ``{"boxes": [[x1, y1, x2, y2]]}`` for the `grounding` verifier (IoU). The target's
colour+shape pair is unique in the scene; "hard" adds distractors that share its colour or shape.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from synth.render import render_scene
from synth.scene import (
    EASY_COLOURS,
    EASY_SHAPES,
    HARD_COLOURS,
    HARD_SHAPES,
    Scene,
    other_kind,
    scatter,
)
from synth.task import Sample, TaskSpec


@dataclass(frozen=True)
class GroundingConfig:
    width: int = 112
    height: int = 112
    ramp: int = 160  # background position ramp (synth.scene.Scene); hard: 0
    n_objects: tuple[int, int] = (1, 2)  # inclusive range, target included
    # Object side and placement grid, 0–1000 units. Easy: 250 on a 250 grid, so every object
    # fills exactly one merged vision token (2×2 patches, 28 px at 112 px): 16 possible boxes.
    size_range: tuple[int, int] = (250, 250)
    grid: int = 250
    gap: int = 50  # minimum distance between objects, 0–1000 units
    shapes: tuple[str, ...] = EASY_SHAPES
    colours: tuple[str, ...] = EASY_COLOURS
    similar_distractors: bool = False  # distractors share the target's colour or shape


PRESETS = {
    "easy": GroundingConfig(),
    "hard": GroundingConfig(
        ramp=0,
        width=224,
        height=224,
        n_objects=(3, 7),
        size_range=(100, 200),
        grid=10,
        gap=20,
        shapes=HARD_SHAPES,
        colours=HARD_COLOURS,
        similar_distractors=True,
    ),
}


def make(rng: random.Random, cfg: GroundingConfig) -> Sample:
    """One grounding question about a fresh scene."""
    while True:
        n = rng.randint(*cfg.n_objects)
        target = (rng.choice(cfg.shapes), rng.choice(cfg.colours))
        kinds = [target]
        for _ in range(n - 1):
            near = target if cfg.similar_distractors and rng.random() < 0.7 else None
            kinds.append(other_kind(rng, cfg.shapes, cfg.colours, {target}, near=near))
        rng.shuffle(kinds)
        objects = scatter(rng, kinds, size_range=cfg.size_range, grid=cfg.grid, gap=cfg.gap)
        if objects is not None:
            break
    scene = Scene(cfg.width, cfg.height, tuple(objects), ramp=cfg.ramp)
    obj = next(o for o in objects if (o.shape, o.colour) == target)
    box = " ".join(str(v) for v in obj.box)
    return Sample(
        prompt=f"<image>Where is the {obj.name}? Answer with <bbox>x1 y1 x2 y2</bbox>.",
        ground_truth={"boxes": [list(obj.box)]},
        # the think names the target and leaves its place to the box: region words first taught
        # the tiny model to write a 3x3 region before the box and then copy it (docs/pretrain.md)
        reference_response=f"<think>the {obj.name}</think><bbox>{box}</bbox>",
        content={"scene": scene.to_dict(), "target": list(target)},
        images=[render_scene(scene)],
    )


SPEC = TaskSpec(
    name="grounding",
    ability="grounding",
    style="rule",
    verifier="grounding",
    config=GroundingConfig,
    presets=PRESETS,
    make=make,
    description="box the one <colour> <shape> in a scene of shapes",
)
