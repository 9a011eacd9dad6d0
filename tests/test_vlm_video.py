"""smart_resize and the Seed1.5-VL video planner, on hand-computed cases."""

from __future__ import annotations

import itertools

import pytest
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_resize

from vlm.resize import smart_resize
from vlm.video import evenly_spaced, frame_size, plan_video, timestamp_text


@pytest.mark.parametrize(
    ("size", "bounds", "expected"),
    [
        # already on the grid and within bounds
        ((112, 112), (3136, 50176), (112, 112)),
        # rounded to nearest multiples: 100/28 = 3.57 -> 4, 150/28 = 5.36 -> 5
        ((100, 150), (3136, 1003520), (112, 140)),
        # too large: scale = sqrt(1080*1920 / 1003520) = 1.43747;
        # 1080/1.43747/28 = 26.83 -> 26*28 = 728, 1920/1.43747/28 = 47.70 -> 47*28 = 1316
        ((1080, 1920), (3136, 1003520), (728, 1316)),
        # too small: scale = sqrt(3136 / 600) = 2.28619;
        # ceil(20*2.28619/28 = 1.63) = 2 -> 56, ceil(30*2.28619/28 = 2.45) = 3 -> 84
        ((20, 30), (3136, 1003520), (56, 84)),
    ],
)
def test_smart_resize_hand_cases(size, bounds, expected):
    assert smart_resize(*size, min_pixels=bounds[0], max_pixels=bounds[1]) == expected


def test_smart_resize_agrees_with_transformers_on_a_grid():
    sides = [1, 13, 14, 27, 28, 42, 43, 57, 100, 113, 224, 333, 640, 1080, 1920, 4000]
    bounds = [(3136, 1003520), (3136, 50176), (784, 3136)]
    for (h, w), (lo, hi) in itertools.product(itertools.product(sides, sides), bounds):
        if max(h, w) / min(h, w) > 200:
            continue
        assert smart_resize(h, w, min_pixels=lo, max_pixels=hi) == hf_resize(
            h, w, min_pixels=lo, max_pixels=hi
        ), (h, w, lo, hi)


def test_smart_resize_rejects_bad_sizes():
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 2010)
    with pytest.raises(ValueError, match="positive"):
        smart_resize(0, 10)


def test_evenly_spaced_is_start_aligned():
    assert evenly_spaced(12, 10) == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]
    assert evenly_spaced(5, 5) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        evenly_spaced(3, 4)


def test_timestamp_text():
    assert timestamp_text(1.5) == "[1.5 second]"
    assert timestamp_text(0) == "[0.0 second]"
    assert timestamp_text(18 / 30) == "[0.6 second]"


def test_short_clip_min_frames_governs():
    # 10 s at 30 fps = 300 frames; 1 FPS gives ceil(10) = 10 < 16, so 16 frames,
    # indices floor(i * 300 / 16) = floor(18.75 i).
    plan = plan_video(300, 30.0, 360, 640)
    assert plan.indices == (0, 18, 37, 56, 75, 93, 112, 131, 150, 168, 187, 206, 225, 243, 262, 281)
    assert plan.timestamps[1] == pytest.approx(0.6)
    assert plan.timestamps[-1] == pytest.approx(281 / 30)
    # 360x640 rounds to 364x644 (13 x 23 cells = 299 tokens), well under level 640;
    # 16 * 299 = 4784 <= 81920, so the top level is kept.
    assert (plan.height, plan.width, plan.level, plan.tokens_per_frame) == (364, 644, 640, 299)
    assert plan.total_tokens == 16 * 299


def test_min_frames_is_a_parameter_and_capped_by_the_clip():
    assert plan_video(300, 30.0, 360, 640, min_frames=4).indices == tuple(range(0, 300, 30))
    # 5 frames at 5 fps (1 s): min_frames 16 asks for more than exist -> all 5
    assert plan_video(5, 5.0, 56, 56).indices == (0, 1, 2, 3, 4)


def test_higher_sampling_rate():
    # 10 s at 30 fps, 2 FPS: ceil(20) = 20 >= 16 frames, indices 300*i//20 = 15 i
    plan = plan_video(300, 30.0, 360, 640, sample_fps=2.0)
    assert plan.indices == tuple(15 * i for i in range(20))
    assert plan.timestamps[:3] == pytest.approx((0.0, 0.5, 1.0))


def test_long_clip_drops_to_a_lower_level():
    # 200 s of 1080p at 25 fps: 200 frames at indices 25 i (t = i s).
    # level 640 (501760 px): scale 2.03289 -> 18x33 cells = 504x924, 594 tok: 118800 > 81920
    # level 512 (401408 px): scale 2.27285 -> 16x30 cells = 448x840, 480 tok:  96000 > 81920
    # level 384 (301056 px): scale 2.62445 -> 14x26 cells = 392x728, 364 tok:  72800 fits
    plan = plan_video(5000, 25.0, 1080, 1920)
    assert len(plan.indices) == 200
    assert plan.indices[:3] == (0, 25, 50)
    assert plan.timestamps[199] == pytest.approx(199.0)
    assert (plan.level, plan.height, plan.width, plan.tokens_per_frame) == (384, 392, 728, 364)
    assert frame_size(1080, 1920, 640) == (504, 924)
    assert frame_size(1080, 1920, 512) == (448, 840)


def test_very_long_clip_drops_frames_uniformly():
    # 1 h of 1080p at 30 fps: 3600 frames at 1 FPS (indices 30 i).
    # level 128 (100352 px): scale 4.54569 -> 8x15 cells = 224x420, 120 tokens;
    # 3600 * 120 = 432000 > 81920, so keep 81920 // 120 = 682 frames at sampled
    # positions floor(j * 3600 / 682): 0, 5, 10, ..., 3594.
    plan = plan_video(108_000, 30.0, 1080, 1920)
    assert (plan.level, plan.height, plan.width, plan.tokens_per_frame) == (128, 224, 420, 120)
    assert len(plan.indices) == 682
    assert plan.indices[:3] == (0, 150, 300)
    assert plan.indices[-1] == 3594 * 30
    assert plan.total_tokens == 81840 <= 81920


def test_tiny_budget_levels_and_dropping():
    # 12 frames of 100x180 at 1 fps (12 s), levels 16/9/4:
    # level 16 (12544 px): scale 1.19790 -> 2x5 cells (56x140) = 10 tokens
    # level 9  (7056 px):  scale 1.59719 -> 2x4 cells (56x112) =  8 tokens
    # level 4  (3136 px):  scale 2.39579 -> 1x2 cells (28x56)  =  2 tokens
    kw = dict(min_frames=4, levels=(16, 9, 4))
    fits_16 = plan_video(12, 1.0, 100, 180, max_tokens=120, **kw)
    assert (fits_16.level, fits_16.height, fits_16.width, len(fits_16.indices)) == (16, 56, 140, 12)
    fits_9 = plan_video(12, 1.0, 100, 180, max_tokens=100, **kw)  # 120 > 100 >= 96
    assert (fits_9.level, fits_9.height, fits_9.width, fits_9.total_tokens) == (9, 56, 112, 96)
    # 12 * 2 = 24 > 20 even at level 4: keep 20 // 2 = 10 frames, floor(j * 12 / 10)
    dropped = plan_video(12, 1.0, 100, 180, max_tokens=20, **kw)
    assert (dropped.level, dropped.height, dropped.width) == (4, 28, 56)
    assert dropped.indices == (0, 1, 2, 3, 4, 6, 7, 8, 9, 10)
    assert dropped.timestamps == (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0)


def test_plan_errors_are_clear():
    with pytest.raises(ValueError, match="cannot hold one"):
        plan_video(10, 1.0, 100, 180, max_tokens=1, levels=(4,))
    with pytest.raises(ValueError, match="at least one frame"):
        plan_video(0, 1.0, 100, 180)
    with pytest.raises(ValueError, match="fps"):
        plan_video(10, 0.0, 100, 180)
    with pytest.raises(ValueError, match="levels"):
        plan_video(10, 1.0, 100, 180, levels=())
