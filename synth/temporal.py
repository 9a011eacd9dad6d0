"""Video timing: "when does the <colour> <shape> first appear?" over a short frame sequence.

Frame ``i`` of a video at ``fps`` shows time ``i / fps`` seconds: the ``[t.t second]`` stamp the
video processor writes before it, which the reference think text quotes. The target appears at
frame ``k >= 1`` and stays. The answer is ``k / fps`` seconds, checked by the `math` verifier
(ground truth ``{"answer": "2.5"}``, numeric equality). The clips are short (at most 12 frames),
so the Seed1.5-VL sampler, which keeps at least 16 frames, shows every frame; a sampler that
drops frames could skip the first one showing the target.
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
    Obj,
    Scene,
    other_kind,
    scatter,
    snap,
)
from synth.task import Sample, TaskSpec


@dataclass(frozen=True)
class TemporalConfig:
    width: int = 112
    height: int = 112
    ramp: int = 160  # background position ramp (synth.scene.Scene); hard: 0
    fps: float = 1.0
    n_frames: tuple[int, int] = (3, 5)  # inclusive range
    n_distractors: tuple[int, int] = (0, 1)  # objects present from the start
    moving_distractors: bool = False  # distractors drift between frames
    size_range: tuple[int, int] = (200, 300)
    grid: int = 50
    gap: int = 50
    shapes: tuple[str, ...] = EASY_SHAPES
    colours: tuple[str, ...] = EASY_COLOURS


PRESETS = {
    "easy": TemporalConfig(),
    "hard": TemporalConfig(
        ramp=0,
        fps=2.0,
        n_frames=(6, 12),
        n_distractors=(1, 4),
        moving_distractors=True,
        size_range=(120, 200),
        grid=10,
        gap=40,
        shapes=HARD_SHAPES,
        colours=HARD_COLOURS,
    ),
}


def seconds(frame: int, fps: float) -> str:
    """The time of a frame as a short decimal: 3 → '3', 2.5 → '2.5'."""
    t = round(frame / fps, 3)
    return str(int(t)) if t == int(t) else f"{t:g}"


def make(rng: random.Random, cfg: TemporalConfig) -> Sample:
    """A short video in which one object appears at a random frame."""
    while True:
        n_frames = rng.randint(*cfg.n_frames)
        target = (rng.choice(cfg.shapes), rng.choice(cfg.colours))
        kinds = [target] + [
            other_kind(rng, cfg.shapes, cfg.colours, {target})
            for _ in range(rng.randint(*cfg.n_distractors))
        ]
        # room for drifting distractors: each keeps a wider clearance
        gap = cfg.gap * 2 if cfg.moving_distractors else cfg.gap
        objects = scatter(rng, kinds, size_range=cfg.size_range, grid=cfg.grid, gap=gap)
        if objects is not None:
            break
    appear = rng.randint(1, n_frames - 1)
    drift = [
        (
            snap(rng.uniform(-1, 1) * cfg.gap / 2, cfg.grid),
            snap(rng.uniform(-1, 1) * cfg.gap / 2, cfg.grid),
        )
        if cfg.moving_distractors
        else (0, 0)
        for _ in objects
    ]
    frames, graphs = [], []
    for f in range(n_frames):
        visible = []
        for o, (dx, dy) in zip(objects, drift, strict=True):
            if (o.shape, o.colour) == target:
                if f >= appear:
                    visible.append(o)
                continue
            step = f / max(n_frames - 1, 1)
            # stay inside the frame
            sx = max(-o.box[0], min(1000 - o.box[2], round(dx * step)))
            sy = max(-o.box[1], min(1000 - o.box[3], round(dy * step)))
            visible.append(
                Obj(o.shape, o.colour, (o.box[0] + sx, o.box[1] + sy, o.box[2] + sx, o.box[3] + sy))
            )
        scene = Scene(cfg.width, cfg.height, tuple(visible), ramp=cfg.ramp)
        frames.append(render_scene(scene))
        graphs.append(scene.to_dict())
    name = f"{target[1]} {target[0]}"
    t = seconds(appear, cfg.fps)
    return Sample(
        prompt=f"<video>When does the {name} first appear? Answer in seconds in \\boxed{{}}.",
        ground_truth={"answer": t},
        # the stamp as the video processor writes it before each frame (vlm.video.timestamp_text)
        reference_response=f"<think>the {name} is first seen at [{appear / cfg.fps:.1f} second]"
        f"</think>\\boxed{{{t}}}",
        content={"frames": graphs, "fps": cfg.fps, "target": list(target)},
        videos=[(frames, cfg.fps)],
        extra={"appear_frame": appear},
    )


SPEC = TaskSpec(
    name="temporal",
    ability="video",
    style="rule",
    verifier="math",
    config=TemporalConfig,
    presets=PRESETS,
    make=make,
    description="video: the time in seconds at which an object first appears",
)
