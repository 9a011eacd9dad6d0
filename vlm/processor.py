"""Turn chat prompts with images and videos into Qwen2-VL model inputs, without torchvision.

Images are resized (PIL) to multiples of 28 by `smart_resize`, normalised with CLIP
mean/std, cut into 14x14 patches and flattened in the layout the Qwen2-VL vision tower
reads: merge-window blocks of 2x2 patches in raster order, each patch a
(channel, time, row, column) vector with the frame repeated over the temporal patch.
Each image placeholder becomes ``t*h*w / merge^2`` pad tokens between vision_start and
vision_end. A video becomes, per sampled frame, ``[t second]`` followed by that frame as
an image (exact per-frame timestamps, as Seed1.5-VL and its public sample code do).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer, BatchFeature, PreTrainedTokenizerBase

from vlm.config import VisionSettings
from vlm.resize import smart_resize
from vlm.tokenizer import IM_END, IMAGE_PAD, PAD, VIDEO_PAD, VISION_END, VISION_START
from vlm.video import VideoPlan, plan_video, timestamp_text

PREPROCESSOR_FILE = "preprocessor_config.json"
IGNORE_INDEX = -100  # label value the loss skips
_PLACEHOLDER = re.compile(r"(<image>|<video>)")
_IMAGE_SLOT = VISION_START + IMAGE_PAD + VISION_END
_VIDEO_SLOT = VISION_START + VIDEO_PAD + VISION_END
_SLOT = re.compile("(" + re.escape(_IMAGE_SLOT) + "|" + re.escape(_VIDEO_SLOT) + ")")

ImageLike = Image.Image | np.ndarray | bytes | bytearray | str | Path | dict
Message = dict[str, Any]
Conversation = Sequence[Message]


@dataclass(frozen=True)
class Video:
    """A clip as decoded frames (each anything `to_pil` accepts, or one (T, H, W, 3) array)
    and its source frame rate."""

    frames: Sequence[ImageLike]
    fps: float


VideoLike = Video | dict


def to_pil(image: ImageLike) -> Image.Image:
    """Open PNG/JPEG bytes, a path, an HxWx3 (or HxW) uint8 array or a PIL image as RGB."""
    if isinstance(image, Image.Image):
        pil = image
    elif isinstance(image, bytes | bytearray):
        pil = Image.open(io.BytesIO(image))
    elif isinstance(image, str | Path):
        pil = Image.open(image)
    elif isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise ValueError(f"an image array must be HxW or HxWx3/4, got shape {image.shape}")
        pil = Image.fromarray(np.ascontiguousarray(image).astype(np.uint8, copy=False))
    elif isinstance(image, dict) and ("bytes" in image or "path" in image):
        # the {"bytes", "path"} struct that parquet image columns use
        return to_pil(image.get("bytes") or image["path"])
    else:
        raise TypeError(f"cannot read an image from {type(image).__name__}")
    return pil if pil.mode == "RGB" else pil.convert("RGB")


def to_video(video: VideoLike) -> Video:
    """Accept a `Video` or a ``{"frames": [...], "fps": float}`` record."""
    if isinstance(video, Video):
        return video
    if isinstance(video, dict) and "frames" in video and "fps" in video:
        return Video(frames=video["frames"], fps=float(video["fps"]))
    raise TypeError(f"a video must be a Video or a dict with 'frames' and 'fps', got {video!r:.80}")


def patchify(pixels: np.ndarray, settings: VisionSettings) -> np.ndarray:
    """Flatten a normalised HxWxC float image into Qwen2-VL's (n_patches, C*T*P*P) rows."""
    p, m, t = settings.patch_size, settings.merge_size, settings.temporal_patch_size
    height, width, channels = pixels.shape
    gh, gw = height // p, width // p
    # rows y = ((bh*m + i)*p + py), cols x = ((bw*m + j)*p + px)
    blocks = pixels.reshape(gh // m, m, p, gw // m, m, p, channels)
    blocks = blocks.transpose(0, 3, 1, 4, 6, 2, 5)  # bh, bw, i, j, C, py, px
    # a still frame fills every temporal slot of the 3D patch
    blocks = np.broadcast_to(blocks[:, :, :, :, :, None], (*blocks.shape[:5], t, p, p))
    return blocks.reshape(gh * gw, channels * t * p * p)


def image_patches(
    image: Image.Image, size: tuple[int, int], settings: VisionSettings
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Resize to `size` (h, w), normalise and patchify one image; returns rows and grid_thw."""
    h, w = size
    if image.size != (w, h):
        image = image.resize((w, h), resample=Image.Resampling(settings.resample))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    pixels = (pixels - np.asarray(settings.image_mean, np.float32)) / np.asarray(
        settings.image_std, np.float32
    )
    rows = patchify(pixels, settings)
    return rows, (1, h // settings.patch_size, w // settings.patch_size)


def split_placeholders(messages: Conversation) -> list[Message]:
    """Rewrite string contents with `<image>`/`<video>` into Qwen-style content parts."""
    out = []
    for message in messages:
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise ValueError(f"a chat message needs 'role' and 'content', got {message!r:.80}")
        content = message["content"]
        if isinstance(content, str):
            parts = []
            for piece in _PLACEHOLDER.split(content):
                if piece in ("<image>", "<video>"):
                    parts.append({"type": piece[1:-1]})
                elif piece:
                    parts.append({"type": "text", "text": piece})
        else:
            parts = []
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind not in ("text", "image", "video"):
                    raise ValueError(f"unsupported content part {part!r:.80}")
                parts.append({"type": "text", "text": part["text"]} if kind == "text" else part)
        out.append({**message, "content": parts})
    return out


@dataclass
class Encoded:
    """One tokenised sample: ids, optional target labels, and its visual inputs in order."""

    input_ids: list[int]
    labels: list[int] | None = None
    pixel_rows: list[np.ndarray] = field(default_factory=list)
    grids: list[tuple[int, int, int]] = field(default_factory=list)


class VLProcessor:
    """Chat template + tokenizer + image/video preprocessing for Qwen2-VL-family models."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, settings: VisionSettings) -> None:
        self.tokenizer = tokenizer
        self.settings = settings
        ids = tokenizer.convert_tokens_to_ids
        self.image_token_id: int = ids(IMAGE_PAD)
        self.video_token_id: int = ids(VIDEO_PAD)
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token")
        self.pad_token_id: int = tokenizer.pad_token_id
        # Generation ends at the end of the assistant turn or of the document, as Qwen2-VL.
        stops = {ids(IM_END), ids(PAD), tokenizer.eos_token_id} - {None, tokenizer.unk_token_id}
        self.eos_token_ids: list[int] = sorted(stops)
        if tokenizer.chat_template is None:
            raise ValueError("the tokenizer has no chat template")

    # ---- files ----------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path) -> VLProcessor:
        """Load from a checkpoint directory: its tokenizer, chat template and preprocessor."""
        path = Path(path)
        config_file = path / PREPROCESSOR_FILE
        if not config_file.is_file():
            raise FileNotFoundError(f"{config_file} is missing: not a Qwen2-VL checkpoint dir")
        settings = VisionSettings.from_preprocessor_config(json.loads(config_file.read_text()))
        tokenizer = AutoTokenizer.from_pretrained(path)
        if tokenizer.chat_template is None:
            # older Qwen2-VL releases keep the template in chat_template.json
            legacy = path / "chat_template.json"
            if legacy.is_file():
                tokenizer.chat_template = json.loads(legacy.read_text())["chat_template"]
        return cls(tokenizer, settings)

    def save_pretrained(self, path: str | Path) -> None:
        """Write tokenizer files, the chat template and `preprocessor_config.json`."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(path)
        text = json.dumps(self.settings.to_preprocessor_config(), indent=2) + "\n"
        (path / PREPROCESSOR_FILE).write_text(text)

    # ---- single samples -------------------------------------------------------------
    def render(self, messages: Conversation, *, add_generation_prompt: bool = True) -> str:
        """The chat template's text, with one vision slot per image/video placeholder."""
        return self.tokenizer.apply_chat_template(
            split_placeholders(messages),
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
        )

    def image_size(self, image: Image.Image) -> tuple[int, int]:
        """Model input size (h, w) of an image under this processor's pixel bounds."""
        s = self.settings
        return smart_resize(
            image.height,
            image.width,
            factor=s.factor,
            min_pixels=s.min_pixels,
            max_pixels=s.max_pixels,
        )

    def video_plan(self, video: Video) -> VideoPlan:
        """Seed1.5-VL frame/resolution plan of one clip under this processor's settings."""
        if len(video.frames) == 0:  # frames may be a (T, H, W, 3) array
            raise ValueError("a video needs at least one frame")
        first = to_pil(video.frames[0])
        s = self.settings
        return plan_video(
            len(video.frames),
            video.fps,
            first.height,
            first.width,
            sample_fps=s.video_sample_fps,
            min_frames=s.video_min_frames,
            max_tokens=s.video_max_tokens,
            levels=s.video_levels,
            factor=s.factor,
            min_pixels=s.min_pixels,
        )

    def _vision_text(self, grid: tuple[int, int, int]) -> str:
        n_tokens = grid[0] * grid[1] * grid[2] // self.settings.merge_size**2
        return VISION_START + IMAGE_PAD * n_tokens + VISION_END

    def encode(
        self,
        messages: Conversation,
        images: Sequence[ImageLike] = (),
        videos: Sequence[VideoLike] = (),
        *,
        add_generation_prompt: bool = True,
    ) -> Encoded:
        """Tokenise one conversation, expanding each placeholder to its visual tokens."""
        text = self.render(messages, add_generation_prompt=add_generation_prompt)
        pieces = _SLOT.split(text)
        n_images = pieces.count(_IMAGE_SLOT)
        n_videos = pieces.count(_VIDEO_SLOT)
        if n_images != len(images) or n_videos != len(videos):
            raise ValueError(
                f"the prompt has {n_images} <image> and {n_videos} <video> placeholders "
                f"but {len(images)} images and {len(videos)} videos were given"
            )
        image_iter, video_iter = iter(images), iter(videos)
        encoded = Encoded(input_ids=[])
        out: list[str] = []
        for piece in pieces:
            if piece == _IMAGE_SLOT:
                pil = to_pil(next(image_iter))
                rows, grid = image_patches(pil, self.image_size(pil), self.settings)
                encoded.pixel_rows.append(rows)
                encoded.grids.append(grid)
                out.append(self._vision_text(grid))
            elif piece == _VIDEO_SLOT:
                video = to_video(next(video_iter))
                plan = self.video_plan(video)
                for index, seconds in zip(plan.indices, plan.timestamps, strict=True):
                    frame = to_pil(video.frames[index])
                    size = (plan.height, plan.width)
                    rows, grid = image_patches(frame, size, self.settings)
                    encoded.pixel_rows.append(rows)
                    encoded.grids.append(grid)
                    out.append(timestamp_text(seconds) + self._vision_text(grid))
            else:
                out.append(piece)
        encoded.input_ids = self.tokenizer("".join(out), add_special_tokens=False)["input_ids"]
        return encoded

    def encode_response(self, response: str | Sequence[int]) -> list[int]:
        """Response ids: text gets the end-of-turn token appended; ids are taken as they are."""
        if isinstance(response, str):
            ids = self.tokenizer(response, add_special_tokens=False)["input_ids"]
            return [*ids, self.tokenizer.convert_tokens_to_ids(IM_END)]
        return [int(i) for i in response]

    # ---- batches --------------------------------------------------------------------
    def __call__(
        self,
        messages: Sequence[Conversation],
        images: Sequence[Sequence[ImageLike]] | None = None,
        videos: Sequence[Sequence[VideoLike]] | None = None,
        *,
        padding_side: Literal["left", "right"] = "left",
        add_generation_prompt: bool = True,
    ) -> BatchFeature:
        """Batch of prompts for generation (left padded by default)."""
        images, videos = _per_sample(messages, images, videos)
        encoded = [
            self.encode(m, i, v, add_generation_prompt=add_generation_prompt)
            for m, i, v in zip(messages, images, videos, strict=True)
        ]
        return self.collate(encoded, padding_side=padding_side)

    def training_batch(
        self,
        messages: Sequence[Conversation],
        responses: Sequence[str | Sequence[int]],
        images: Sequence[Sequence[ImageLike]] | None = None,
        videos: Sequence[Sequence[VideoLike]] | None = None,
        *,
        padding_side: Literal["left", "right"] = "right",
    ) -> BatchFeature:
        """Prompt + response sequences with `labels` set on response tokens only (else -100)."""
        images, videos = _per_sample(messages, images, videos)
        if len(responses) != len(messages):
            raise ValueError(f"{len(messages)} prompts but {len(responses)} responses")
        encoded = []
        for m, i, v, response in zip(messages, images, videos, responses, strict=True):
            sample = self.encode(m, i, v, add_generation_prompt=True)
            answer = self.encode_response(response)
            sample.labels = [IGNORE_INDEX] * len(sample.input_ids) + answer
            sample.input_ids = sample.input_ids + answer
            encoded.append(sample)
        return self.collate(encoded, padding_side=padding_side)

    def collate(
        self, encoded: Sequence[Encoded], *, padding_side: Literal["left", "right"]
    ) -> BatchFeature:
        """Pad samples to one length; concatenate pixel rows and grids in sample order."""
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        if not encoded:
            raise ValueError("cannot build an empty batch")
        length = max(len(e.input_ids) for e in encoded)
        has_labels = encoded[0].labels is not None
        ids = torch.full((len(encoded), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(encoded), length), dtype=torch.long)
        labels = torch.full((len(encoded), length), IGNORE_INDEX, dtype=torch.long)
        for row, sample in enumerate(encoded):
            n = len(sample.input_ids)
            cols = slice(length - n, length) if padding_side == "left" else slice(0, n)
            ids[row, cols] = torch.tensor(sample.input_ids, dtype=torch.long)
            mask[row, cols] = 1
            if has_labels:
                labels[row, cols] = torch.tensor(sample.labels, dtype=torch.long)
        data: dict[str, torch.Tensor] = {
            "input_ids": ids,
            "attention_mask": mask,
            # the model's M-RoPE needs to know which tokens are image (1) / video (2)
            "mm_token_type_ids": (ids == self.image_token_id).long()
            + 2 * (ids == self.video_token_id).long(),
        }
        rows = [r for e in encoded for r in e.pixel_rows]
        if rows:
            data["pixel_values"] = torch.from_numpy(np.concatenate(rows, axis=0))
            grids = [g for e in encoded for g in e.grids]
            data["image_grid_thw"] = torch.tensor(grids, dtype=torch.long)
        if has_labels:
            data["labels"] = labels
        return BatchFeature(data=data)

    def batch_decode(self, ids: Sequence[Sequence[int]] | torch.Tensor) -> list[str]:
        """Decode token ids, dropping control tokens but keeping <think>/<bbox>/<point>."""
        return self.tokenizer.batch_decode(ids, skip_special_tokens=True)


def _per_sample(
    messages: Sequence[Conversation],
    images: Sequence[Sequence[ImageLike]] | None,
    videos: Sequence[Sequence[VideoLike]] | None,
) -> tuple[Sequence[Sequence[ImageLike]], Sequence[Sequence[VideoLike]]]:
    n = len(messages)
    images = images if images is not None else [()] * n
    videos = videos if videos is not None else [()] * n
    if len(images) != n or len(videos) != n:
        raise ValueError(
            f"{n} conversations but {len(images)} image lists and {len(videos)} video lists"
        )
    return images, videos
