"""Native-resolution sizing: the Qwen2-VL `smart_resize` rule, written as a pure function."""

from __future__ import annotations

import math


def smart_resize(
    height: int,
    width: int,
    *,
    factor: int = 28,
    min_pixels: int = 56 * 56,
    max_pixels: int = 28 * 28 * 1280,
) -> tuple[int, int]:
    """Return (h, w): multiples of `factor`, aspect kept, area within [min_pixels, max_pixels].

    Sizes are first rounded to the nearest multiple; only if the area then falls outside the
    bounds is the image scaled (down with floor so the area stays under `max_pixels`, up with
    ceil so it reaches `min_pixels`).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(
            f"aspect ratio must be at most 200, got {height}x{width} "
            f"({max(height, width) / min(height, width):.1f})"
        )
    if max_pixels < factor * factor:
        raise ValueError(f"max_pixels={max_pixels} is below one {factor}x{factor} cell")
    h = round(height / factor) * factor
    w = round(width / factor) * factor
    if h * w > max_pixels:
        scale = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / scale / factor) * factor)
        w = max(factor, math.floor(width / scale / factor) * factor)
    elif h * w < min_pixels:
        scale = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * scale / factor) * factor
        w = math.ceil(width * scale / factor) * factor
    # a side thinner than half a cell rounds to 0; with min_pixels=0 nothing scales it back
    return max(factor, h), max(factor, w)
