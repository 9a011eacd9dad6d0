"""Boxes and points in answers: parsing, coordinate spaces, IoU and one-to-one matching.

Pure functions shared by the `grounding` and `spot_difference` verifiers. Everything is
compared in Seed1.5-VL's space: 0–1000 of the image's width and height. Rules for hostile
input (documented in docs/verifier-geometry-count-puzzle.md):

- a box whose numbers are not finite, or a tag with the wrong count of numbers, is *invalid*:
  it stays in the prediction list (so it costs like a wrong box) but can match nothing;
- corners given in either order are sorted (x2 < x1 is the same rectangle);
- coordinates are clipped to [0, 1000] after conversion (parts outside the image don't count);
- a zero-area box has IoU 0 with everything (no division by zero).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from scipy.optimize import linear_sum_assignment

_M = TypeVar("_M", bound=BaseModel)
Box = tuple[float, float, float, float]
Point = tuple[float, float]

GRID = 1000.0
# Only this much of a solution is read: a huge response cannot make parsing slow.
MAX_PARSE_CHARS = 100_000
# Predictions beyond this many make a response score 0 (spam; also bounds the O(n^3) matching).
DEFAULT_MAX_BOXES = 100
HARD_MAX_BOXES = 1000

# Atomic groups (?>...) keep hostile text (long digit or space runs) from backtracking.
_NUM = r"(?>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf(?:inity)?))"
_NUM_RE = re.compile(_NUM, re.IGNORECASE)
_SEP = r"(?>\s*[,;]\s*|\s+)"
# a tag's content holds no "<" and is short, so an unclosed tag cannot make a scan quadratic
_BBOX_TAG = re.compile(r"<bbox>([^<]{0,500})</bbox>", re.IGNORECASE)
_POINT_TAG = re.compile(r"<point>([^<]{0,500})</point>", re.IGNORECASE)
_BRACKET_BOX = re.compile(
    rf"\[\s*({_NUM}){_SEP}({_NUM}){_SEP}({_NUM}){_SEP}({_NUM})\s*\]", re.IGNORECASE
)
_PAIR_BOX = re.compile(
    rf"\(\s*({_NUM}){_SEP}({_NUM})\s*\)(?>\s*,?\s*)\(\s*({_NUM}){_SEP}({_NUM})\s*\)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Parsed:
    """One box or point as written in the text: its raw numbers and where it starts."""

    start: int
    values: tuple[float, ...] | None  # None when the tag did not hold the right count of numbers
    text: str


def _numbers(s: str) -> list[float]:
    return [float(m.group(0)) for m in _NUM_RE.finditer(s)]


def _tagged(text: str, pattern: re.Pattern[str], arity: int) -> list[Parsed]:
    out = []
    for m in pattern.finditer(text):
        nums = _numbers(m.group(1))
        out.append(Parsed(m.start(), tuple(nums) if len(nums) == arity else None, m.group(0)[:80]))
    return out


def parse_boxes(text: str) -> list[Parsed]:
    """Boxes in ``text`` in reading order: ``<bbox>x1 y1 x2 y2</bbox>``, ``[x1, y1, x2, y2]``
    and ``(x1,y1),(x2,y2)``; a bracket form inside a ``<bbox>`` tag is not counted twice."""
    text = text[:MAX_PARSE_CHARS]
    found = _tagged(text, _BBOX_TAG, 4)
    # blank out tags so their contents are not read again as bracket forms
    rest = _BBOX_TAG.sub(lambda m: " " * len(m.group(0)), text)
    rest = _POINT_TAG.sub(lambda m: " " * len(m.group(0)), rest)
    for pattern in (_BRACKET_BOX, _PAIR_BOX):
        for m in pattern.finditer(rest):
            found.append(Parsed(m.start(), tuple(float(g) for g in m.groups()), m.group(0)[:80]))
        rest = pattern.sub(lambda m: " " * len(m.group(0)), rest)
    return sorted(found, key=lambda p: p.start)


def parse_points(text: str) -> list[Parsed]:
    """Points written as ``<point>x y</point>`` (spaces or commas, optional parentheses)."""
    return _tagged(text[:MAX_PARSE_CHARS], _POINT_TAG, 2)


def to_grid(values: tuple[float, ...], scale: tuple[float, float]) -> tuple[float, ...] | None:
    """Scale x, y, x, y… values into 0–1000 and clip; None if any value is not finite."""
    if not all(math.isfinite(v) for v in values):
        return None
    sx, sy = scale
    out = []
    for i, v in enumerate(values):
        scaled = v * (sx if i % 2 == 0 else sy)
        if not math.isfinite(scaled):
            return None
        out.append(min(max(scaled, 0.0), GRID))
    return tuple(out)


def normalize_box(values: tuple[float, ...] | None, scale: tuple[float, float]) -> Box | None:
    """A parsed box in 0–1000 space with sorted corners, or None if it is invalid."""
    if values is None or len(values) != 4:
        return None
    g = to_grid(values, scale)
    if g is None:
        return None
    x1, y1, x2, y2 = g
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def normalize_point(values: tuple[float, ...] | None, scale: tuple[float, float]) -> Point | None:
    """A parsed point in 0–1000 space, or None if it is invalid."""
    if values is None or len(values) != 2:
        return None
    g = to_grid(values, scale)
    return None if g is None else (g[0], g[1])


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes; 0 when the union has no area."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _area(b: np.ndarray) -> np.ndarray:
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def iou_matrix(preds: list[Box | None], refs: list[Box]) -> np.ndarray:
    """IoU of every prediction (rows) with every reference (columns); invalid rows are 0."""
    m = np.zeros((len(preds), len(refs)))
    rows = [i for i, p in enumerate(preds) if p is not None]
    if not rows or not refs:
        return m
    p = np.array([preds[i] for i in rows])[:, None, :]
    r = np.array(refs)[None, :, :]
    iw = np.clip(np.minimum(p[..., 2], r[..., 2]) - np.maximum(p[..., 0], r[..., 0]), 0, None)
    ih = np.clip(np.minimum(p[..., 3], r[..., 3]) - np.maximum(p[..., 1], r[..., 1]), 0, None)
    inter = iw * ih
    union = _area(p) + _area(r) - inter
    # same rule as `iou`: no area, no overlap (and no division by zero)
    m[rows] = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return m


def point_in_box(p: Point, b: Box) -> bool:
    """Is the point inside the box (edges included)?"""
    return b[0] <= p[0] <= b[2] and b[1] <= p[1] <= b[3]


def hits_matrix(points: list[Point | None], refs: list[Box]) -> np.ndarray:
    """1 where a point lies in a reference box, else 0; invalid points are all 0."""
    m = np.zeros((len(points), len(refs)))
    for i, p in enumerate(points):
        if p is not None:
            for j, r in enumerate(refs):
                m[i, j] = 1.0 if point_in_box(p, r) else 0.0
    return m


def match(scores: np.ndarray, threshold: float | None = None) -> list[tuple[int, int, float]]:
    """One-to-one matching (Hungarian) of rows to columns: ``(row, col, score)`` triples.

    Without a threshold it maximises the sum of scores. With one, it first maximises the number
    of pairs scoring >= threshold, then their summed score; only such pairs are returned.
    Pairs with score 0 are never returned.
    """
    if scores.size == 0:
        return []
    if threshold is None:
        weights = scores
    else:
        ok = scores >= threshold
        # 1 per qualifying pair dominates: the tie-break terms sum to less than 1
        weights = ok * (1.0 + scores / (min(scores.shape) + 1))
    rows, cols = linear_sum_assignment(weights, maximize=True)
    out = []
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        s = float(scores[r, c])
        if s > 0 and (threshold is None or s >= threshold):
            out.append((r, c, s))
    return out


def _check_ref_box(b: list[float]) -> list[float]:
    if b[2] < b[0] or b[3] < b[1]:
        raise ValueError(f"box {b} is inverted: need x1 <= x2 and y1 <= y2")
    return b


_Coord = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
RefBox = Annotated[list[_Coord], Field(min_length=4, max_length=4), AfterValidator(_check_ref_box)]


class BoxesReference(BaseModel):
    """Reference boxes ``[x1, y1, x2, y2]`` (0–1000 grid, or pixels with coords="pixel")."""

    model_config = ConfigDict(extra="forbid")

    boxes: list[RefBox] = Field(..., max_length=HARD_MAX_BOXES)


class CoordOptions(BaseModel):
    """Options shared by verifiers that read coordinates. Unknown keys are ignored."""

    model_config = ConfigDict(extra="ignore")

    coords: Literal["norm1000", "pixel"] = "norm1000"
    reference_coords: Literal["norm1000", "pixel"] | None = None  # default: same as coords
    image_size: tuple[Annotated[float, Field(gt=0, allow_inf_nan=False)], ...] | None = None
    max_boxes: int = Field(DEFAULT_MAX_BOXES, ge=1, le=HARD_MAX_BOXES)

    @model_validator(mode="after")
    def _size_for_pixels(self) -> CoordOptions:
        if self.image_size is not None and len(self.image_size) != 2:
            raise ValueError("image_size must be [width, height]")
        if "pixel" in (self.coords, self.reference_coords) and self.image_size is None:
            raise ValueError("coords 'pixel' needs image_size [width, height]")
        return self

    def scale(self, which: str) -> tuple[float, float]:
        """Multipliers taking the response's (or the reference's) coordinates to 0–1000."""
        space = self.coords if which == "response" else (self.reference_coords or self.coords)
        if space == "norm1000":
            return (1.0, 1.0)
        w, h = self.image_size  # type: ignore[misc]  # checked by the validator
        return (GRID / w, GRID / h)


def reference_boxes(boxes: list[list[float]], opts: CoordOptions) -> list[Box]:
    """Reference boxes in 0–1000 space; ValueError naming the box if one lies outside the image."""
    sx, sy = opts.scale("reference")
    out = []
    for i, b in enumerate(boxes):
        g = (b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy)
        if max(g) > GRID + 1e-6:
            raise ValueError(f"reference.boxes.{i}: {b} lies outside the image (0-1000 grid)")
        out.append(g)
    return out


def load_options(model: type[_M], options: dict[str, Any]) -> _M:
    """Validate ``options``; ValueError naming the bad option(s)."""
    try:
        return model.model_validate(options)
    except ValidationError as e:
        parts = [
            f"{'.'.join(['options', *map(str, err['loc'])])}: {err['msg']}"
            for err in e.errors()[:3]
        ]
        raise ValueError("; ".join(parts)) from None


def describe_parse(items: list[Parsed]) -> list[Any]:
    """The raw numbers of parsed items for ``details`` (invalid ones as their text)."""
    return [
        list(p.values) if p.values is not None and all(map(math.isfinite, p.values)) else p.text
        for p in items
    ]


def rounded(x: float) -> float:
    """Scores as shown in ``details``."""
    return round(float(x), 4)
