"""Create, save, load and sample from the policy: a stock Qwen2-VL-family model.

`load(path)` is the one entry point every later component uses; it reads the
checkpoint's own config, tokenizer and preprocessor files, so a real Qwen2-VL or
Qwen2.5-VL directory works wherever the tiny checkpoint does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForImageTextToText,
    BatchFeature,
    GenerationConfig,
    PreTrainedModel,
    Qwen2VLForConditionalGeneration,
)

from vlm.config import get_preset
from vlm.processor import VLProcessor
from vlm.tokenizer import build_tokenizer

SUPPORTED_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl")


def create(preset: str = "tiny", *, seed: int = 0) -> tuple[PreTrainedModel, VLProcessor]:
    """A randomly initialised (seeded) model of a preset, with its tokenizer and processor."""
    spec = get_preset(preset)
    tokenizer = build_tokenizer(spec.tokenizer)
    config = spec.qwen2vl_config(tokenizer)
    # A private RNG stream: the same seed gives the same weights, and callers' RNG is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2VLForConditionalGeneration(config)
    processor = VLProcessor(tokenizer, spec.vision)
    model.generation_config = _generation_config(processor)
    model.eval()
    return model, processor


def save(model: PreTrainedModel, processor: VLProcessor, out: str | Path) -> Path:
    """Write a Hugging Face checkpoint directory: weights, config, tokenizer, preprocessor."""
    out = Path(out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def load(
    path: str | Path,
    *,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device = "cpu",
) -> tuple[PreTrainedModel, VLProcessor]:
    """Load a Qwen2-VL-family checkpoint dir (ours or a real one) with its processor."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no config.json: not a checkpoint directory")
    config = AutoConfig.from_pretrained(path)
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"{path} holds a {config.model_type!r} model; supported: {SUPPORTED_MODEL_TYPES}"
        )
    processor = VLProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(
        path, config=config, dtype=dtype if dtype is not None else "auto"
    ).to(device)
    model.eval()
    return model, processor


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def summary(model: PreTrainedModel, processor: VLProcessor) -> dict[str, object]:
    """Parameter counts and the configuration facts a user checks first."""
    text, vision, s = model.config.text_config, model.config.vision_config, processor.settings
    return {
        "architecture": type(model).__name__,
        "parameters": count_parameters(model),
        "vision_parameters": count_parameters(model.model.visual),
        "language_parameters": count_parameters(model.model.language_model),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "vocab_size": text.vocab_size,
        "lm": f"hidden {text.hidden_size}, {text.num_hidden_layers} layers, "
        f"{text.num_attention_heads} heads ({text.num_key_value_heads} kv), "
        f"mlp {text.intermediate_size}",
        "vit": f"embed {vision.embed_dim}, depth {vision.depth}, {vision.num_heads} heads, "
        f"patch {vision.patch_size}, merge {vision.spatial_merge_size}",
        "image_pixels": f"{s.min_pixels}..{s.max_pixels} "
        f"({s.min_pixels // s.factor**2}..{s.max_pixels // s.factor**2} tokens)",
        "video": f"{s.video_sample_fps:g} fps, >= {s.video_min_frames} frames, "
        f"<= {s.video_max_tokens} tokens, levels {list(s.video_levels)}",
    }


def _generation_config(processor: VLProcessor, **options: object) -> GenerationConfig:
    options.setdefault("do_sample", False)
    return GenerationConfig(
        eos_token_id=processor.eos_token_ids, pad_token_id=processor.pad_token_id, **options
    )


@dataclass
class Generation:
    """Per sample: decoded text, generated ids (through the end-of-turn token) and logprobs."""

    texts: list[str]
    token_ids: list[list[int]]
    logprobs: list[list[float]]


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    processor: VLProcessor,
    batch: BatchFeature | dict[str, torch.Tensor],
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_p: float = 1.0,
    use_cache: bool = True,
    seed: int | None = None,
) -> Generation:
    """Greedy (temperature 0) or sampled continuation of a left-padded prompt batch.

    Logprobs are those of the chosen tokens under softmax(logits / temperature) before
    top-p truncation (temperature 0 reports the plain softmax), i.e. the quantity that
    PPO's importance ratio compares against.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
    mask = batch["attention_mask"]
    if bool((mask[:, -1] == 0).any()):
        raise ValueError("generate needs a left-padded batch (processor(..., padding_side='left'))")
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
    config = _generation_config(
        processor,
        max_new_tokens=max_new_tokens,
        use_cache=use_cache,
        return_dict_in_generate=True,
        output_logits=True,
        do_sample=temperature > 0,
        **({"temperature": temperature, "top_p": top_p, "top_k": 0} if temperature > 0 else {}),
    )
    if seed is None:
        out = model.generate(**inputs, generation_config=config)
    else:  # a private RNG stream, so a seeded call leaves the caller's RNG as it was
        accelerators = [] if device.type == "cpu" else [device.index or 0]
        with torch.random.fork_rng(devices=accelerators, device_type=device.type):
            torch.manual_seed(seed)
            out = model.generate(**inputs, generation_config=config)
    prompt_len = inputs["input_ids"].shape[1]
    new_ids = out.sequences[:, prompt_len:]
    logits = torch.stack(out.logits, dim=1).float()  # (batch, steps, vocab), unprocessed
    scale = temperature if temperature > 0 else 1.0
    chosen = torch.log_softmax(logits / scale, dim=-1).gather(-1, new_ids[..., None])[..., 0]

    eos = torch.tensor(processor.eos_token_ids, device=new_ids.device)
    token_ids, logprobs = [], []
    for row in range(new_ids.shape[0]):
        ids = new_ids[row].tolist()
        hits = torch.isin(new_ids[row], eos).nonzero()
        end = int(hits[0]) + 1 if len(hits) else len(ids)
        token_ids.append(ids[:end])
        logprobs.append(chosen[row, :end].tolist())
    return Generation(
        texts=processor.batch_decode(token_ids), token_ids=token_ids, logprobs=logprobs
    )
