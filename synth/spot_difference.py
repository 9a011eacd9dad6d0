"""Spot the difference: two images of a scene with k small changes → one box per change.

Ground truth ``{"boxes": [...]}`` for the `spot_difference` verifier. Boxes are in 0–1000
coordinates **of the second image** (in the ``side_by_side`` layout: of the right half, which
is the second image). A change is a colour swap, a removal (box: where the object was), an
addition (box: the new object) or a small move (box: the union of old and new place, one
region per change).

Two phrasings (``question``). ``changes`` (hard) asks to box each difference and thinks in
changes: ``<think>1 difference: the red square turned blue</think><bbox>…</bbox>``. ``where``
(easy) asks as grounding does, right after the second image, and the think names the changed
object as image 2 shows it: ``…Image 2: <image>Where is the difference? Answer with
<bbox>x1 y1 x2 y2</bbox>.`` → ``<think>the blue square</think><bbox>…</bbox>``. The tiny
model reads a box partly from the distance between the answer and the image
(bench/grounding_offset.py), so with ``where`` the box readout grounding learnt applies to
image 2 as it stands; finding *which* object changed is left to the model. Only changes that
leave a named object in image 2 (``colour``, ``add``) go with ``where``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from synth.render import render_scene
from synth.scene import (
    EASY_COLOURS,
    EASY_SHAPES,
    HARD_COLOURS,
    HARD_SHAPES,
    Box,
    Obj,
    Scene,
    indefinite,
    overlaps,
    place_box,
    scatter,
    snap,
)
from synth.task import Sample, TaskSpec

CHANGES = ("colour", "remove", "add", "move")
WHERE_CHANGES = ("colour", "add")  # the changed object is in image 2, and only there


@dataclass(frozen=True)
class SpotDifferenceConfig:
    width: int = 112  # of each image
    height: int = 112
    ramp: int = 160  # background position ramp (synth.scene.Scene); hard: 0
    n_objects: tuple[int, int] = (2, 3)
    n_changes: tuple[int, int] = (1, 1)
    size_range: tuple[int, int] = (250, 250)  # one merged vision token each, as easy grounding
    grid: int = 250
    gap: int = 100  # wide gaps keep each change's region apart from the others
    changes: tuple[str, ...] = ("colour", "add")  # hard: all four
    shapes: tuple[str, ...] = EASY_SHAPES
    colours: tuple[str, ...] = EASY_COLOURS
    layout: Literal["pair", "side_by_side"] = "pair"  # two images, or one image twice as wide
    question: Literal["changes", "where"] = "where"  # the module docstring

    def __post_init__(self) -> None:
        unknown = sorted(set(self.changes) - set(CHANGES))
        if unknown or not self.changes:
            raise ValueError(
                f"spot_difference changes {unknown or '[]'} unknown; choose from {CHANGES}"
            )
        if self.question not in ("changes", "where"):
            raise ValueError(
                f"spot_difference question must be 'changes' or 'where', got {self.question!r}"
            )
        if self.question == "where" and set(self.changes) - set(WHERE_CHANGES):
            raise ValueError(
                f"spot_difference question 'where' names the changed object as image 2 shows it, "
                f"so its changes must be among {WHERE_CHANGES}; got {self.changes}"
            )


PRESETS = {
    "easy": SpotDifferenceConfig(),
    "hard": SpotDifferenceConfig(
        ramp=0,
        width=224,
        height=224,
        n_objects=(4, 8),
        n_changes=(1, 3),
        size_range=(100, 160),
        grid=10,
        gap=60,
        changes=CHANGES,
        question="changes",
        shapes=HARD_SHAPES,
        colours=HARD_COLOURS,
    ),
}


def union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _apply(
    rng: random.Random,
    cfg: SpotDifferenceConfig,
    objects: list[Obj | None],
    change: str,
    region_boxes: list[Box],
    index: int,
) -> tuple[Box, str] | None:
    """Apply one change to ``objects`` (in place); its region and a phrase, or None if impossible."""
    others = [b for j, b in enumerate(region_boxes) if j != index]
    o = objects[index]
    if o is None:
        return None
    if change == "colour":
        new = rng.choice([c for c in cfg.colours if c != o.colour])
        objects[index] = Obj(o.shape, new, o.box)
        return o.box, f"the {o.name} turned {new}"
    if change == "remove":
        objects[index] = None
        return o.box, f"the {o.name} is gone"
    if change == "move":
        size = o.box[2] - o.box[0]
        for _ in range(50):
            dx, dy = (snap(rng.uniform(-0.8, 0.8) * size, cfg.grid) for _ in range(2))
            if abs(dx) + abs(dy) < size // 2:
                continue
            box = (o.box[0] + dx, o.box[1] + dy, o.box[2] + dx, o.box[3] + dy)
            if min(box) < 0 or max(box) > 1000:
                continue
            region = union(o.box, box)
            if any(overlaps(region, b, cfg.gap // 2) for b in others):
                continue
            objects[index] = Obj(o.shape, o.colour, box)
            return region, f"the {o.name} moved"
        return None
    raise ValueError(f"unknown change {change!r}; known: {', '.join(CHANGES)}")


def make(rng: random.Random, cfg: SpotDifferenceConfig) -> Sample:
    """A scene, its changed copy, and the boxes of the changes (in the second image)."""
    while True:
        n = rng.randint(*cfg.n_objects)
        k = rng.randint(*cfg.n_changes)
        kinds = [(rng.choice(cfg.shapes), rng.choice(cfg.colours)) for _ in range(n)]
        objects = scatter(rng, kinds, size_range=cfg.size_range, grid=cfg.grid, gap=cfg.gap)
        if objects is None:
            continue
        result = _changes(rng, cfg, objects, k)
        if result is not None:
            break
    changed, regions, phrases, shown = result
    first = Scene(cfg.width, cfg.height, tuple(objects), ramp=cfg.ramp)
    second = Scene(cfg.width, cfg.height, tuple(changed), ramp=cfg.ramp)
    # reading order of the regions, as the reference answer lists them
    order = sorted(range(len(regions)), key=lambda i: (regions[i][1], regions[i][0]))
    regions = [regions[i] for i in order]
    images = [render_scene(first), render_scene(second)]
    many = len(regions) > 1
    if cfg.layout == "side_by_side":
        both = Image.new("RGB", (2 * cfg.width, cfg.height), (255, 255, 255))
        both.paste(images[0], (0, 0))
        both.paste(images[1], (cfg.width, 0))
        images = [both]
        setting, copy, sep = "<image>", "The right half is a changed copy of the left half.", ""
    else:
        setting, copy = "Image 1: <image> Image 2: <image>", "Image 2 is a changed copy of image 1."
        sep = " "
    if cfg.question == "where":
        # grounding's question right after the (second) image, grounding's think: the object
        ask = "Where are the differences?" if many else "Where is the difference?"
        prompt = f"{copy} {setting}{ask} Answer with <bbox>x1 y1 x2 y2</bbox>."
        think = "; ".join(f"the {shown[i]}" for i in order)
    else:
        prompt = (
            f"{setting}{sep}{copy} Box each difference in image 2 with <bbox>x1 y1 x2 y2</bbox>."
        )
        # the think says what changed and leaves where to the boxes (as grounding's think does)
        count = f"{len(regions)} difference{'s' if many else ''}"
        think = f"{count}: " + "; ".join(phrases[i] for i in order)
    answer = "".join(f"<bbox>{' '.join(str(v) for v in r)}</bbox>" for r in regions)
    content = {"first": first.to_dict(), "second": second.to_dict(), "layout": cfg.layout}
    if cfg.question == "where":  # keeps the content (and split hash) of `changes` samples
        content["question"] = "where"
    return Sample(
        prompt=prompt,
        ground_truth={"boxes": [list(r) for r in regions]},
        reference_response=f"<think>{think}</think>{answer}",
        content=content,
        images=images,
    )


def _changes(
    rng: random.Random, cfg: SpotDifferenceConfig, objects: list[Obj], k: int
) -> tuple[list[Obj], list[Box], list[str], list[str | None]] | None:
    """Apply k changes: image 2's objects, each change's region, phrase and the name of the
    changed object as image 2 shows it (None when it is gone)."""
    changed: list[Obj | None] = list(objects)
    regions: list[Box] = []
    phrases: list[str] = []
    shown: list[str | None] = []
    boxes = [o.box for o in objects]
    targets = rng.sample(range(len(objects)), min(k, len(objects)))
    for index in targets:
        change = rng.choice(cfg.changes)
        if change == "add":
            box = place_box(rng, boxes, cfg.size_range, cfg.grid, cfg.gap)
            if box is None:
                return None
            boxes.append(box)
            new = Obj(rng.choice(cfg.shapes), rng.choice(cfg.colours), box)
            changed.append(new)
            regions.append(box)
            phrases.append(f"{indefinite(new.name)} appeared")
            shown.append(new.name)
            continue
        done = _apply(rng, cfg, changed, change, boxes, index)
        if done is None:
            return None
        regions.append(done[0])
        phrases.append(done[1])
        after = changed[index]
        shown.append(after.name if after is not None else None)
        boxes[index] = done[0]
    return [o for o in changed if o is not None], regions, phrases, shown


SPEC = TaskSpec(
    name="spot_difference",
    ability="spot_difference",
    style="rule",
    verifier="spot_difference",
    config=SpotDifferenceConfig,
    presets=PRESETS,
    make=make,
    description="box the k changes between two renderings of a scene",
)
