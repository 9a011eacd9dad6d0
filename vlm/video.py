"""Seed1.5-VL dynamic frame-resolution sampling, as a pure planning function.

Time: frames are taken at `sample_fps` (1 by default), at least `min_frames` of them (the
public sample code's max(ceil(duration * fps), 16)), never more than the clip has.
Space: each frame gets the largest per-frame token level whose total fits `max_tokens`;
if even the smallest level overflows, frames are dropped uniformly. Every kept frame is
shown to the model as one image preceded by a ``[t second]`` text timestamp.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from vlm.resize import smart_resize

SEED_LEVELS: tuple[int, ...] = (640, 512, 384, 256, 160, 128)
SEED_MAX_TOKENS = 81_920


class VideoPlan(BaseModel):
    """Which source frames to show, when they were taken, and at what size."""

    model_config = ConfigDict(frozen=True)

    indices: tuple[int, ...]
    timestamps: tuple[float, ...]
    height: int
    width: int
    level: int
    tokens_per_frame: int

    @property
    def total_tokens(self) -> int:
        """Visual tokens of the whole video (timestamps and vision_start/end not counted)."""
        return self.tokens_per_frame * len(self.indices)


def timestamp_text(seconds: float) -> str:
    """The text shown before a frame, e.g. ``[1.5 second]``."""
    return f"[{seconds:.1f} second]"


def evenly_spaced(n_items: int, n_pick: int) -> list[int]:
    """`n_pick` start-aligned, evenly spaced positions in range(n_items): floor(i * n / k)."""
    if not 0 < n_pick <= n_items:
        raise ValueError(f"cannot pick {n_pick} of {n_items} items")
    # Integer arithmetic keeps the positions exact (and hand-computable in tests).
    return [(i * n_items) // n_pick for i in range(n_pick)]


def frame_size(
    height: int, width: int, level: int, *, factor: int = 28, min_pixels: int = 56 * 56
) -> tuple[int, int]:
    """Frame size for a token level: at most `level` merged tokens (level x 28 x 28 pixels).

    Aspect is kept and frames are never enlarged past their native size (beyond rounding to
    the 28-pixel grid), so a small clip uses fewer tokens than the level allows.
    """
    return smart_resize(
        height, width, factor=factor, min_pixels=min_pixels, max_pixels=level * factor * factor
    )


def plan_video(
    n_frames: int,
    fps: float,
    height: int,
    width: int,
    *,
    sample_fps: float = 1.0,
    min_frames: int = 16,
    max_tokens: int = SEED_MAX_TOKENS,
    levels: Sequence[int] = SEED_LEVELS,
    factor: int = 28,
    min_pixels: int = 56 * 56,
) -> VideoPlan:
    """Plan the frames, timestamps and per-frame size of one clip (Seed1.5-VL sampling)."""
    if n_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {n_frames}")
    if fps <= 0 or sample_fps <= 0:
        raise ValueError(f"fps and sample_fps must be positive, got {fps} and {sample_fps}")
    if min_frames < 1:
        raise ValueError(f"min_frames must be at least 1, got {min_frames}")
    if not levels or any(level < 1 for level in levels):
        raise ValueError(f"levels must be positive token counts, got {list(levels)}")

    duration = n_frames / fps
    # The epsilon keeps float noise (e.g. 10.000000000000002 s) from adding a frame.
    n_sample = min(max(math.ceil(duration * sample_fps - 1e-9), min_frames), n_frames)
    indices = evenly_spaced(n_frames, n_sample)

    ordered = sorted(set(levels), reverse=True)
    for level in ordered:
        h, w = frame_size(height, width, level, factor=factor, min_pixels=min_pixels)
        tokens = (h // factor) * (w // factor)
        if tokens * len(indices) <= max_tokens:
            break
    else:  # even the smallest level overflows: keep as many frames as fit, evenly spread
        level = ordered[-1]
        keep = max_tokens // tokens
        if keep < 1:
            raise ValueError(
                f"max_tokens={max_tokens} cannot hold one {h}x{w} frame ({tokens} tokens)"
            )
        indices = [indices[pos] for pos in evenly_spaced(len(indices), keep)]

    return VideoPlan(
        indices=tuple(indices),
        timestamps=tuple(idx / fps for idx in indices),
        height=h,
        width=w,
        level=level,
        tokens_per_frame=tokens,
    )
