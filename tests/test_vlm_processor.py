"""The torchvision-free processor: pixel layout, token expansion, batching, video frames."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from vlm.config import PRESETS, VisionSettings
from vlm.model import create
from vlm.processor import IGNORE_INDEX, Video, VLProcessor, image_patches, to_pil
from vlm.tokenizer import build_tokenizer


@pytest.fixture(scope="module")
def policy():
    model, processor = create("test", seed=0)
    return model, processor


def _noise(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_pixels_match_the_transformers_qwen2vl_image_processor(policy):
    _, processor = policy
    images = [_noise(112, 112, 0), _noise(50, 90, 1), _noise(60, 200, 2), _noise(300, 20, 3)]
    ours = processor([_user("<image><image><image><image>")], [images])
    s = processor.settings
    reference = Qwen2VLImageProcessorPil(min_pixels=s.min_pixels, max_pixels=s.max_pixels)(
        [Image.fromarray(i) for i in images], return_tensors="np"
    )
    assert ours["image_grid_thw"].tolist() == reference["image_grid_thw"].tolist()
    np.testing.assert_allclose(ours["pixel_values"].numpy(), reference["pixel_values"], atol=1e-6)


def test_patch_layout_by_hand():
    # A 56x56 image whose 14x14 patch (r, c) has value 16*r + c in R, 100 + that in G,
    # 200 in B; mean 0 / std 1 keeps pixel/255. Grid 4x4 patches, 2x2 merge windows:
    # rows go window by window (raster), and within a window (0,0),(0,1),(1,0),(1,1).
    s = VisionSettings(image_mean=(0.0, 0.0, 0.0), image_std=(1.0, 1.0, 1.0))
    pixels = np.zeros((56, 56, 3), dtype=np.uint8)
    for r in range(4):
        for c in range(4):
            pixels[14 * r : 14 * r + 14, 14 * c : 14 * c + 14] = (16 * r + c, 116 + 16 * r + c, 200)
    rows, grid = image_patches(Image.fromarray(pixels), (56, 56), s)
    assert grid == (1, 4, 4)
    assert rows.shape == (16, 3 * 2 * 14 * 14)
    order = [(0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (0, 3), (1, 2), (1, 3)]
    order += [(2, 0), (2, 1), (3, 0), (3, 1), (2, 2), (2, 3), (3, 2), (3, 3)]
    for k, (r, c) in enumerate(order):
        # each row: channel-major, then the 2 temporal copies, then 14x14 pixels
        per_channel = rows[k].reshape(3, 2 * 14 * 14)
        np.testing.assert_allclose(per_channel[0], (16 * r + c) / 255, rtol=1e-6)
        np.testing.assert_allclose(per_channel[1], (116 + 16 * r + c) / 255, rtol=1e-6)
        np.testing.assert_allclose(per_channel[2], 200 / 255, rtol=1e-6)


def test_mixed_sizes_token_counts_match_the_model(policy):
    model, processor = policy
    # test preset, at most 16 tokens: 112x112 -> 8x8 patches -> 64/4 = 16 tokens;
    # 56x56 -> 4x4 patches -> 4 tokens; 50x90 rounds to 56x84 -> 4x6 patches -> 6 tokens.
    batch = processor(
        [_user("<image>A <image>B"), _user("Count: <image>"), _user("no image here")],
        [[_noise(112, 112, 0), _noise(56, 56, 1)], [_noise(50, 90, 2)], []],
    )
    assert batch["image_grid_thw"].tolist() == [[1, 8, 8], [1, 4, 4], [1, 4, 6]]
    pads = (batch["input_ids"] == processor.image_token_id).sum(dim=1).tolist()
    assert pads == [16 + 4, 6, 0]
    assert batch["pixel_values"].shape == (64 + 16 + 24, 1176)
    assert torch.equal(batch["mm_token_type_ids"], (batch["input_ids"] == 6).long())
    with torch.no_grad():
        features = model.model.get_image_features(batch["pixel_values"], batch["image_grid_thw"])
        out = model(**batch)
    assert sum(f.shape[0] for f in features.pooler_output) == 26 == sum(pads)
    assert out.logits.shape == (*batch["input_ids"].shape, model.config.text_config.vocab_size)


def test_each_image_is_framed_by_vision_start_and_end(policy):
    _, processor = policy
    ids = processor([_user("x<image>y")], [[_noise(56, 84, 0)]])["input_ids"][0].tolist()
    text = processor.tokenizer.decode(ids)
    assert "x<|vision_start|>" + "<|image_pad|>" * 6 + "<|vision_end|>y" in text


def test_the_model_rejects_a_wrong_pad_count(policy):
    model, processor = policy
    batch = processor([_user("<image>hi")], [[_noise(56, 56, 0)]])
    keep = torch.ones(batch["input_ids"].shape[1], dtype=torch.bool)
    keep[(batch["input_ids"][0] == processor.image_token_id).nonzero()[0, 0]] = False
    per_token = ("input_ids", "attention_mask", "mm_token_type_ids")
    broken = {k: (v[:, keep] if k in per_token else v) for k, v in batch.items()}
    with torch.no_grad(), pytest.raises(ValueError, match="do not match"):
        model(**broken)


def test_placeholder_and_image_counts_must_agree(policy):
    _, processor = policy
    with pytest.raises(ValueError, match="1 <image> and 0 <video> placeholders but 2 images"):
        processor([_user("<image>")], [[_noise(56, 56, 0), _noise(56, 56, 1)]])
    with pytest.raises(ValueError, match="but 0 images"):
        processor([_user("<image>")])
    with pytest.raises(ValueError, match="2 conversations but 1 image lists"):
        processor([_user("a"), _user("b")], [[]])
    with pytest.raises(ValueError, match="'role' and 'content'"):
        processor([[{"text": "hi"}]])


def test_left_padding_gives_the_same_logits_as_no_padding(policy):
    model, processor = policy
    long_prompt = (_user("a long question about <image> with more words"), [_noise(112, 112, 0)])
    short_prompt = (_user("<image>?"), [_noise(50, 90, 1)])
    batch = processor([long_prompt[0], short_prompt[0]], [long_prompt[1], short_prompt[1]])
    alone = processor([short_prompt[0]], [short_prompt[1]])
    n = alone["input_ids"].shape[1]
    assert batch["attention_mask"][1].tolist() == [0] * (batch["input_ids"].shape[1] - n) + [1] * n
    assert batch["input_ids"][1, 0] == processor.pad_token_id
    with torch.no_grad():
        padded = model(**batch).logits[1, -n:]
        single = model(**alone).logits[0]
    torch.testing.assert_close(padded, single, atol=1e-5, rtol=1e-5)


def test_training_batch_labels_only_the_response(policy):
    model, processor = policy
    prompts = [_user("<image>How many?"), _user("Say hi")]
    batch = processor.training_batch(
        prompts, ["<think>two</think>2", [40, 41]], [[_noise(56, 56, 0)], []]
    )
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    answer = processor.tokenizer("<think>two</think>2", add_special_tokens=False)["input_ids"]
    im_end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    row0 = labels[0][labels[0] != IGNORE_INDEX].tolist()
    assert row0 == answer + [im_end]  # text responses end the turn
    assert labels[1][labels[1] != IGNORE_INDEX].tolist() == [40, 41]  # ids are kept as given
    # right padding: real tokens first, labels sit at the end of each real span
    assert mask[1].tolist() == sorted(mask[1].tolist(), reverse=True)
    n1 = int(mask[1].sum())
    assert ids[1, n1 - 2 : n1].tolist() == [40, 41]
    assert torch.all(labels[mask == 0] == IGNORE_INDEX)
    prompt_len = processor([prompts[0]], [[_noise(56, 56, 0)]])["input_ids"].shape[1]
    assert torch.all(labels[0, :prompt_len] == IGNORE_INDEX)
    assert labels[0, prompt_len] != IGNORE_INDEX
    out = model(**batch)
    out.loss.backward()
    assert model.model.visual.patch_embed.proj.weight.grad.abs().sum() > 0
    assert model.lm_head.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_video_becomes_timestamped_frames(policy):
    model, processor = policy
    # test preset: 1 FPS, min_frames 4, levels 16/9/4, max 64 tokens.
    # 6 frames at 2 fps = 3 s -> max(ceil(3), 4) = 4 frames at floor(i*6/4) = 0, 1, 3, 4
    # (t = 0.0, 0.5, 1.5, 2.0 s); 56x56 frames are 4 tokens each (16 total, fits level 16).
    frames = [np.full((56, 56, 3), 40 * k, dtype=np.uint8) for k in range(6)]
    batch = processor([_user("<video>What changes?")], videos=[[Video(frames=frames, fps=2.0)]])
    text = processor.tokenizer.decode(batch["input_ids"][0])
    slot = "<|vision_start|>" + "<|image_pad|>" * 4 + "<|vision_end|>"
    expected = "".join(f"[{t} second]{slot}" for t in ("0.0", "0.5", "1.5", "2.0"))
    assert expected + "What changes?" in text
    assert batch["image_grid_thw"].tolist() == [[1, 4, 4]] * 4
    # each frame's 16 patch rows come from the planned source frame, in order
    red = batch["pixel_values"].reshape(4, 16, 3, 392)[:, 0, 0, 0]
    s = processor.settings
    expected_red = [(40 * k / 255 - s.image_mean[0]) / s.image_std[0] for k in (0, 1, 3, 4)]
    np.testing.assert_allclose(red.numpy(), expected_red, rtol=1e-5)
    with torch.no_grad():
        model(**batch)
    # the record form {"frames", "fps"} works the same
    again = processor([_user("<video>What changes?")], videos=[[{"frames": frames, "fps": 2}]])
    assert torch.equal(again["input_ids"], batch["input_ids"])


def test_images_and_videos_interleave_in_text_order(policy):
    model, processor = policy
    frames = [np.full((56, 56, 3), 10, dtype=np.uint8)] * 2
    batch = processor(
        [_user("<image> then <video> then <image>")],
        [[_noise(112, 112, 0), _noise(56, 112, 1)]],
        [[Video(frames=frames, fps=1.0)]],
    )
    # image 1 (8x8), two video frames (4x4), image 2 (4x8)
    assert batch["image_grid_thw"].tolist() == [[1, 8, 8], [1, 4, 4], [1, 4, 4], [1, 4, 8]]
    with torch.no_grad():
        model(**batch)


def test_to_pil_accepts_the_record_formats(tmp_path):
    rgb = _noise(20, 30, 0)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    path = tmp_path / "a.png"
    path.write_bytes(buffer.getvalue())
    for source in (buffer.getvalue(), str(path), path, {"bytes": buffer.getvalue()}, rgb):
        image = to_pil(source)
        assert image.mode == "RGB" and np.array_equal(np.asarray(image), rgb)
    assert to_pil(np.zeros((5, 6), dtype=np.uint8)).size == (6, 5)
    assert to_pil(Image.new("RGBA", (4, 4))).mode == "RGB"
    with pytest.raises(TypeError, match="cannot read an image from int"):
        to_pil(3)
    with pytest.raises(ValueError, match="shape"):
        to_pil(np.zeros((2, 2, 2), dtype=np.uint8))


def test_processor_files_round_trip_and_read_legacy_keys(policy, tmp_path):
    _, processor = policy
    processor.save_pretrained(tmp_path)
    loaded = VLProcessor.from_pretrained(tmp_path)
    assert loaded.settings == processor.settings
    raw = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert raw["size"] == {"shortest_edge": 3136, "longest_edge": 12544}
    # the older Qwen2-VL layout: top-level min/max pixels, no video keys
    legacy = VisionSettings.from_preprocessor_config(
        {"min_pixels": 1000, "max_pixels": 2000, "patch_size": 14, "merge_size": 2}
    )
    assert (legacy.min_pixels, legacy.max_pixels, legacy.video_max_tokens) == (1000, 2000, 81920)


def test_tiny_preset_keeps_every_frame_of_a_short_synth_clip():
    # synth's hard temporal clips: up to 12 frames of 112x112 at 2 fps (6 s). 1 FPS would
    # give 6 frames, but the 16-frame floor (capped at 12) keeps them all: 12 x 16 = 192
    # tokens <= 256, so no frame that first shows the target can be skipped.
    processor = VLProcessor(build_tokenizer(), PRESETS["tiny"].vision)
    frames = [np.zeros((112, 112, 3), dtype=np.uint8)] * 12
    plan = processor.video_plan(Video(frames=frames, fps=2.0))
    assert plan.indices == tuple(range(12))
    assert plan.timestamps[-1] == 5.5
    assert plan.total_tokens == 192
