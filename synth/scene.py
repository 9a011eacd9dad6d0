"""Scene graphs of coloured shapes: placement, and the words that describe them.

Pure data and functions (no drawing; that is `synth.render`). Coordinates are integers on
Seed1.5-VL's 0–1000 grid of the image's width and height, and object boxes are placed on a
coarser grid (``grid``) so that a ground-truth box is exactly the drawn extent, up to pixel
rounding, and a tiny model can write it with few distinct digits.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass, replace
from typing import Any

# RGB values far apart from each other, so colours stay distinct at small sizes.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 225),
    "yellow": (240, 200, 0),
    "purple": (140, 50, 180),
    "orange": (250, 130, 20),
    "pink": (245, 120, 190),
    "brown": (120, 70, 30),
    "cyan": (0, 190, 210),
    "gray": (120, 120, 120),
}
EASY_COLOURS = ("red", "green", "blue", "yellow")
HARD_COLOURS = tuple(COLOURS)

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross", "hexagon")
EASY_SHAPES = ("circle", "square", "triangle")
HARD_SHAPES = SHAPES

PLURALS = {s: s + ("es" if s.endswith("x") else "s") for s in SHAPES}
NUMBER_WORDS = "zero one two three four five six seven eight nine ten eleven twelve".split()

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Obj:
    """One shape in a scene; ``box`` is [x1, y1, x2, y2] on the 0–1000 grid."""

    shape: str
    colour: str
    box: Box

    @property
    def centre(self) -> tuple[int, int]:
        return ((self.box[0] + self.box[2]) // 2, (self.box[1] + self.box[3]) // 2)

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """A canvas size in pixels, a background colour and the objects on it.

    ``ramp`` > 0 shades the background with position: red falls by up to ``ramp`` from left to
    right and blue from top to bottom (`synth.render.backdrop`). The tiny VLM's ViT and LM only
    have relative (RoPE) positions, so on a uniform background an object's features are the same
    wherever it sits and no box can be read off them; the ramp gives every patch its absolute
    position, as the content of a natural image does.
    """

    width: int
    height: int
    objects: tuple[Obj, ...]
    background: tuple[int, int, int] = (255, 255, 255)
    ramp: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "background": list(self.background),
            "ramp": self.ramp,
            "objects": [
                {"shape": o.shape, "colour": o.colour, "box": list(o.box)} for o in self.objects
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scene:
        objs = tuple(Obj(o["shape"], o["colour"], tuple(o["box"])) for o in d["objects"])
        background = tuple(d.get("background", (255, 255, 255)))
        return cls(d["width"], d["height"], objs, background, d.get("ramp", 0))

    def with_objects(self, objects: list[Obj] | tuple[Obj, ...]) -> Scene:
        return replace(self, objects=tuple(objects))


def snap(value: float, grid: int) -> int:
    """Round ``value`` to the nearest multiple of ``grid``."""
    return int(round(value / grid)) * grid


def overlaps(a: Box, b: Box, gap: int) -> bool:
    """Whether two boxes come closer than ``gap`` grid units."""
    return not (
        a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]
    )


def place_box(
    rng: random.Random,
    taken: list[Box],
    size_range: tuple[int, int],
    grid: int,
    gap: int,
    *,
    margin: int = 0,
    tries: int = 200,
) -> Box | None:
    """A square box of a size in ``size_range`` on the grid, clear of ``taken``; None if full."""
    lo, hi = size_range
    sizes = list(range(snap(lo, grid) or grid, snap(hi, grid) + 1, grid))
    for _ in range(tries):
        size = rng.choice(sizes)
        slots = list(range(snap(margin, grid), 1000 - size - margin + 1, grid))
        if not slots:
            continue
        x, y = rng.choice(slots), rng.choice(slots)
        box = (x, y, x + size, y + size)
        if not any(overlaps(box, t, gap) for t in taken):
            return box
    return None


def region_words(box: Box) -> str:
    """Where a box's centre lies on a 3×3 partition: 'top left', 'centre', 'bottom', ..."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    col = "left" if cx < 1000 / 3 else "right" if cx > 2000 / 3 else ""
    row = "top" if cy < 1000 / 3 else "bottom" if cy > 2000 / 3 else ""
    return f"{row} {col}".strip() or "centre"


def indefinite(phrase: str) -> str:
    """'a red circle', 'an orange star'."""
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def count_word(n: int) -> str:
    return NUMBER_WORDS[n] if 0 <= n < len(NUMBER_WORDS) else str(n)


def noun(shape: str, n: int) -> str:
    return shape if n == 1 else PLURALS[shape]


def describe_objects(objects: tuple[Obj, ...] | list[Obj]) -> list[str]:
    """One phrase per (colour, shape) group, in first-appearance order: 'two red circles'."""
    groups = Counter((o.colour, o.shape) for o in objects)
    out = []
    for (colour, shape), n in sorted(groups.items(), key=lambda kv: _first_index(objects, kv[0])):
        phrase = f"{colour} {noun(shape, n)}"
        out.append(indefinite(phrase) if n == 1 else f"{count_word(n)} {phrase}")
    return out


def _first_index(objects: tuple[Obj, ...] | list[Obj], key: tuple[str, str]) -> int:
    return next(i for i, o in enumerate(objects) if (o.colour, o.shape) == key)


def join_words(parts: list[str], conj: str = "and") -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + f" {conj} " + parts[-1]


def scene_key(scene: Scene) -> dict[str, Any]:
    """A JSON-able description of the scene's content (for hashing)."""
    return asdict(scene)


def scatter(
    rng: random.Random,
    kinds: list[tuple[str, str]],
    *,
    size_range: tuple[int, int],
    grid: int,
    gap: int,
    margin: int = 0,
    taken: list[Box] | None = None,
) -> list[Obj] | None:
    """Place one object per (shape, colour) in ``kinds`` without overlaps; None if they don't fit."""
    boxes = list(taken or [])
    out = []
    for shape, colour in kinds:
        box = place_box(rng, boxes, size_range, grid, gap, margin=margin)
        if box is None:
            return None
        boxes.append(box)
        out.append(Obj(shape, colour, box))
    return out


def other_kind(
    rng: random.Random,
    shapes: tuple[str, ...],
    colours: tuple[str, ...],
    avoid: set[tuple[str, str]],
    *,
    near: tuple[str, str] | None = None,
) -> tuple[str, str]:
    """A (shape, colour) not in ``avoid``; with ``near``, one sharing its shape or its colour."""
    options = [(s, c) for s in shapes for c in colours if (s, c) not in avoid]
    if near is not None:
        close = [k for k in options if k[0] == near[0] or k[1] == near[1]]
        options = close or options
    if not options:
        raise ValueError("no (shape, colour) left: widen the shapes or colours of the config")
    return rng.choice(options)
