"""Presets of the tiny default policy and the vision preprocessing settings.

The model is a stock `Qwen2VLForConditionalGeneration`; a preset only picks its sizes.
`VisionSettings` is what `preprocessor_config.json` holds, read the same way for our
checkpoints and for real Qwen2-VL ones (which simply lack the `video_*` keys, so the
Seed1.5-VL defaults apply to them).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from transformers import PreTrainedTokenizerBase, Qwen2VLConfig

from vlm.tokenizer import TokenizerKind
from vlm.video import SEED_LEVELS, SEED_MAX_TOKENS

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CELL = 28 * 28  # pixels of one merged visual token (14x14 patches, 2x2 merge)


class VisionSettings(BaseModel):
    """Image and video preprocessing knobs (Qwen2-VL names, plus Seed1.5-VL video ones)."""

    model_config = ConfigDict(frozen=True)

    min_pixels: int = 56 * 56
    max_pixels: int = CELL * 1280
    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD
    resample: int = 3  # PIL.Image.BICUBIC, as Qwen2-VL
    video_sample_fps: float = 1.0
    video_min_frames: int = 16
    video_max_tokens: int = SEED_MAX_TOKENS
    video_levels: tuple[int, ...] = SEED_LEVELS

    @property
    def factor(self) -> int:
        """Side of one merged token in pixels (28 for Qwen2-VL)."""
        return self.patch_size * self.merge_size

    @classmethod
    def from_preprocessor_config(cls, raw: dict[str, Any]) -> VisionSettings:
        """Read a `preprocessor_config.json` dict (old top-level or new `size` keys)."""
        size = raw.get("size") or {}
        values = {k: raw[k] for k in cls.model_fields if k in raw}
        if "min_pixels" not in values and "shortest_edge" in size:
            values["min_pixels"] = size["shortest_edge"]
        if "max_pixels" not in values and "longest_edge" in size:
            values["max_pixels"] = size["longest_edge"]
        return cls(**values)

    def to_preprocessor_config(self) -> dict[str, Any]:
        """The standard Qwen2-VL image-processor file, so other tools can load it too."""
        out = self.model_dump(mode="json")
        out["size"] = {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels}
        out.update(
            do_resize=True,
            do_rescale=True,
            rescale_factor=1 / 255,
            do_normalize=True,
            do_convert_rgb=True,
            image_processor_type="Qwen2VLImageProcessor",
            processor_class="Qwen2VLProcessor",
        )
        return out


class Preset(BaseModel):
    """Sizes of one tiny Qwen2-VL configuration and its preprocessing."""

    model_config = ConfigDict(frozen=True)

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vision_depth: int
    vision_embed_dim: int
    vision_heads: int
    vision_mlp_ratio: int = 4
    max_position_embeddings: int = 8192
    tokenizer: TokenizerKind = "char"  # vlm/tokenizer.py: characters, or subword merges
    vision: VisionSettings = Field(default_factory=VisionSettings)

    def mrope_section(self) -> list[int]:
        """Split of the rotary half-dimension over (time, height, width), Qwen2-VL style."""
        half = self.hidden_size // self.num_heads // 2
        # Qwen2-VL-7B uses [16, 24, 24] of 64: a quarter for time, the rest shared by h and w.
        t = half // 4
        h = (half - t) // 2
        return [t, h, half - t - h]

    def qwen2vl_config(self, tokenizer: PreTrainedTokenizerBase) -> Qwen2VLConfig:
        """The `Qwen2VLConfig` for this preset, with the tokenizer's vocabulary and ids."""
        ids = tokenizer.convert_tokens_to_ids
        text = {
            "vocab_size": len(tokenizer),
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "max_position_embeddings": self.max_position_embeddings,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": self.mrope_section(),
            },
            "bos_token_id": None,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        }
        vision = {
            "depth": self.vision_depth,
            "embed_dim": self.vision_embed_dim,
            "hidden_size": self.hidden_size,  # the merger projects into the LM width
            "num_heads": self.vision_heads,
            "mlp_ratio": self.vision_mlp_ratio,
            "patch_size": self.vision.patch_size,
            "temporal_patch_size": self.vision.temporal_patch_size,
            "spatial_merge_size": self.vision.merge_size,
        }
        return Qwen2VLConfig(
            text_config=text,
            vision_config=vision,
            image_token_id=ids("<|image_pad|>"),
            video_token_id=ids("<|video_pad|>"),
            vision_start_token_id=ids("<|vision_start|>"),
            vision_end_token_id=ids("<|vision_end|>"),
            tie_word_embeddings=False,
        )


PresetName = Literal["tiny", "tiny-bpe", "test"]

PRESETS: dict[str, Preset] = {
    # DESIGN.md's calibration model: 112x112 images -> 16 image tokens.
    "tiny": Preset(
        name="tiny",
        hidden_size=128,
        num_layers=4,
        num_heads=4,
        num_kv_heads=4,
        intermediate_size=384,
        vision_depth=2,
        vision_embed_dim=128,
        vision_heads=4,
        vision=VisionSettings(
            min_pixels=4 * CELL,
            max_pixels=64 * CELL,  # up to 224x224, 64 tokens
            # Seed's 16-frame floor keeps every frame of synth's short clips (<= 16 frames),
            # and 16 frames of 112x112 (16 tokens each) fill the 256-token budget exactly.
            video_min_frames=16,
            video_max_tokens=256,
            video_levels=(64, 36, 16, 9, 4),
        ),
    ),
    # For fast unit tests of other components: same code paths, a fraction of the compute.
    "test": Preset(
        name="test",
        hidden_size=64,
        num_layers=2,
        num_heads=2,
        num_kv_heads=2,
        intermediate_size=128,
        vision_depth=1,
        vision_embed_dim=32,
        vision_heads=2,
        max_position_embeddings=4096,
        vision=VisionSettings(
            min_pixels=4 * CELL,
            max_pixels=16 * CELL,  # up to 112x112, 16 tokens
            video_min_frames=4,
            video_max_tokens=64,
            video_levels=(16, 9, 4),
        ),
    ),
}


# The same model over subword tokens (vlm/bpe_merges.json): task text is 2-4x shorter.
PRESETS["tiny-bpe"] = PRESETS["tiny"].model_copy(update={"name": "tiny-bpe", "tokenizer": "bpe"})


def get_preset(name: str) -> Preset:
    """Look a preset up by name, with a clear error for unknown names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
