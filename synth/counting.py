"""Counting: "how many <shape>s are there?" → a number, optionally after ``<point>`` tags.

Ground truth ``{"count": n}`` for the `counting` verifier, which reads the last number outside
``<point>``/``<bbox>`` tags, so a points answer ends with the count too. The reference response
lists each counted object's centre in its think text: the intermediate step a model can learn.
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
    PLURALS,
    Scene,
    scatter,
)
from synth.task import Sample, TaskSpec


@dataclass(frozen=True)
class CountingConfig:
    width: int = 112
    height: int = 112
    ramp: int = 160  # background position ramp (synth.scene.Scene); hard: 0
    count_range: tuple[int, int] = (1, 4)  # how many targets, inclusive
    distractor_range: tuple[int, int] = (0, 2)  # objects that must not be counted
    size_range: tuple[int, int] = (150, 200)
    grid: int = 50
    gap: int = 50
    shapes: tuple[str, ...] = EASY_SHAPES
    colours: tuple[str, ...] = EASY_COLOURS
    by_colour: float = 0.0  # chance of "how many red circles" (distractors then share a property)
    ask_points: float = 0.0  # chance of asking for a <point> per object before the count


PRESETS = {
    "easy": CountingConfig(),
    "hard": CountingConfig(
        ramp=0,
        width=224,
        height=224,
        count_range=(0, 9),
        distractor_range=(2, 6),
        size_range=(70, 120),
        grid=10,
        gap=20,
        shapes=HARD_SHAPES,
        colours=HARD_COLOURS,
        by_colour=0.5,
        ask_points=0.3,
    ),
}


def make(rng: random.Random, cfg: CountingConfig) -> Sample:
    """One counting question about a fresh scene."""
    while True:
        shape = rng.choice(cfg.shapes)
        colour = rng.choice(cfg.colours) if rng.random() < cfg.by_colour else None
        count = rng.randint(*cfg.count_range)
        n_other = rng.randint(*cfg.distractor_range)
        kinds = [(shape, colour or rng.choice(cfg.colours)) for _ in range(count)]
        for _ in range(n_other):
            if colour is not None and rng.random() < 0.5:  # same colour, other shape
                kinds.append((rng.choice([s for s in cfg.shapes if s != shape]), colour))
            elif colour is not None:  # same shape, other colour
                kinds.append((shape, rng.choice([c for c in cfg.colours if c != colour])))
            else:
                kinds.append(
                    (rng.choice([s for s in cfg.shapes if s != shape]), rng.choice(cfg.colours))
                )
        rng.shuffle(kinds)
        objects = scatter(rng, kinds, size_range=cfg.size_range, grid=cfg.grid, gap=cfg.gap)
        if objects is not None:
            break
    scene = Scene(cfg.width, cfg.height, tuple(objects), ramp=cfg.ramp)
    wanted = [o for o in objects if o.shape == shape and (colour is None or o.colour == colour)]
    # reading order: top to bottom, then left to right
    wanted.sort(key=lambda o: (o.centre[1], o.centre[0]))
    what = f"{colour} {PLURALS[shape]}" if colour else PLURALS[shape]
    points = rng.random() < cfg.ask_points
    centres = " ".join(f"({x},{y})" for x, y in (o.centre for o in wanted)) or "none"
    think = f"<think>{what}: {centres}; {len(wanted)}</think>"
    if points:
        prompt = (
            f"<image>How many {what} are there? Mark each with <point>x y</point>, "
            "then give the count."
        )
        tags = "".join(f"<point>{x} {y}</point>" for x, y in (o.centre for o in wanted))
        answer = f"{tags} {len(wanted)}" if tags else str(len(wanted))
    else:
        prompt = f"<image>How many {what} are there?"
        answer = str(len(wanted))
    return Sample(
        prompt=prompt,
        ground_truth={"count": len(wanted)},
        reference_response=think + answer,
        content={"scene": scene.to_dict(), "shape": shape, "colour": colour, "points": points},
        images=[render_scene(scene)],
        extra={"points": [list(o.centre) for o in wanted]} if points else {},
    )


SPEC = TaskSpec(
    name="counting",
    ability="counting",
    style="rule",
    verifier="counting",
    config=CountingConfig,
    presets=PRESETS,
    make=make,
    description="count the shapes of one kind (optionally one colour) among distractors",
)
