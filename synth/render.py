"""Drawing scenes and text with PIL: no anti-aliasing, no fonts from disk, so bytes are stable.

Text uses Pillow's bundled font (``ImageFont.load_default(size=...)``), available wherever
Pillow has FreeType, so no system font is needed. Glyphs can be laid out one per 14-pixel
cell aligned with the ViT's 14×14 patches, which is what a tiny model needs to read them.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from synth.scene import COLOURS, Box, Obj, Scene

PATCH = 14

# Unit outlines in [0, 1]²; `_fit` stretches each so that it touches all four sides of its box,
# which makes the drawn extent equal to the ground-truth box.
_POLYGONS: dict[str, list[tuple[float, float]]] = {
    "triangle": [(0.5, 0.0), (1.0, 1.0), (0.0, 1.0)],
    "diamond": [(0.5, 0.0), (1.0, 0.5), (0.5, 1.0), (0.0, 0.5)],
    "cross": [
        (0.32, 0.0),
        (0.68, 0.0),
        (0.68, 0.32),
        (1.0, 0.32),
        (1.0, 0.68),
        (0.68, 0.68),
        (0.68, 1.0),
        (0.32, 1.0),
        (0.32, 0.68),
        (0.0, 0.68),
        (0.0, 0.32),
        (0.32, 0.32),
    ],
    "hexagon": [
        (0.5 + 0.5 * math.cos(math.radians(a)), 0.5 + 0.5 * math.sin(math.radians(a)))
        for a in range(0, 360, 60)
    ],
    "star": [
        (
            0.5 + (0.5 if i % 2 == 0 else 0.21) * math.sin(math.radians(36 * i)),
            0.5 - (0.5 if i % 2 == 0 else 0.21) * math.cos(math.radians(36 * i)),
        )
        for i in range(10)
    ],
}


def _fit(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, y0, w, h = min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)
    return [((x - x0) / w, (y - y0) / h) for x, y in points]


_UNIT = {name: _fit(pts) for name, pts in _POLYGONS.items()}


def to_pixels(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """A 0–1000 box as pixel bounds [x0, y0, x1, y1) on a width×height canvas."""
    return (
        round(box[0] * width / 1000),
        round(box[1] * height / 1000),
        max(round(box[2] * width / 1000), round(box[0] * width / 1000) + 1),
        max(round(box[3] * height / 1000), round(box[1] * height / 1000) + 1),
    )


def draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, px: tuple[int, int, int, int], colour: str | tuple
) -> None:
    """Fill ``shape`` so that it covers exactly the pixel bounds ``px`` = [x0, y0, x1, y1)."""
    rgb = COLOURS[colour] if isinstance(colour, str) else colour
    x0, y0, x1, y1 = px[0], px[1], px[2] - 1, px[3] - 1  # PIL's bounds are inclusive
    if shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=rgb)
    elif shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=rgb)
    elif shape in _UNIT:
        w, h = x1 - x0, y1 - y0
        draw.polygon([(x0 + u * w, y0 + v * h) for u, v in _UNIT[shape]], fill=rgb)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def draw_objects(image: Image.Image, objects: tuple[Obj, ...] | list[Obj]) -> Image.Image:
    draw = ImageDraw.Draw(image)
    for o in objects:
        draw_shape(draw, o.shape, to_pixels(o.box, image.width, image.height), o.colour)
    return image


def backdrop(
    width: int, height: int, colour: tuple[int, int, int] = (255, 255, 255), ramp: int = 0
) -> Image.Image:
    """A ``colour`` canvas; with ``ramp``, red falls by ``ramp`` left→right and blue top→bottom."""
    if ramp <= 0:
        return Image.new("RGB", (width, height), tuple(colour))
    pixels = np.empty((height, width, 3), dtype=np.int16)
    pixels[...] = colour
    pixels[..., 0] -= np.round(np.linspace(0, ramp, width)).astype(np.int16)[None, :]
    pixels[..., 2] -= np.round(np.linspace(0, ramp, height)).astype(np.int16)[:, None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def render_scene(scene: Scene) -> Image.Image:
    """The scene drawn on a fresh RGB canvas (`backdrop`)."""
    image = backdrop(scene.width, scene.height, scene.background, scene.ramp)
    return draw_objects(image, scene.objects)


@lru_cache(maxsize=16)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` pixels."""
    return ImageFont.load_default(size=size)


def glyph_cells(
    image: Image.Image,
    text: str,
    *,
    x: int,
    y: int,
    cell: int = PATCH,
    size: int = 16,
    stroke: int = 1,
    fill: tuple[int, int, int] = (0, 0, 0),
) -> int:
    """Draw ``text`` one character per ``cell``-wide column starting at (x, y); returns the end x.

    With ``x`` and ``y`` multiples of 14 and ``cell`` 14, every glyph sits in its own ViT patch
    (size 16 with a 1-pixel stroke: bold glyphs of about 11×13 pixels).
    """
    draw = ImageDraw.Draw(image)
    f = font(size)
    for i, ch in enumerate(text):
        if ch == " ":
            continue
        left, top, right, bottom = draw.textbbox((0, 0), ch, font=f, stroke_width=stroke)
        cx = x + i * cell + (cell - (right - left)) / 2 - left
        cy = y + (cell - (bottom - top)) / 2 - top
        draw.text(
            (round(cx), round(cy)), ch, font=f, fill=fill, stroke_width=stroke, stroke_fill=fill
        )
    return x + len(text) * cell


def text_line(
    image: Image.Image,
    text: str,
    *,
    x: float,
    y: float,
    size: int = 14,
    fill: tuple[int, int, int] = (0, 0, 0),
    anchor: str = "la",
) -> None:
    """Draw ``text`` in proportional layout (labels, letters)."""
    ImageDraw.Draw(image).text((x, y), text, font=font(size), fill=fill, anchor=anchor)
