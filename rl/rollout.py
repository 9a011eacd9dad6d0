"""Rollout engines: generate responses with per-token logprobs, and take new weights.

An engine is chosen by name (``rollout.engine``); the transformers engine (batched generation
with a KV cache through `vlm.generate`) runs anywhere; a vLLM engine plugs in by registering
another factory under ``"vllm"`` with the same two methods.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from rl.config import ModelConfig

# tokens a response must never hold: vision placeholders would be read as image slots
SUPPRESSED_TOKENS = (
    "<|image_pad|>",
    "<|video_pad|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<unk>",
)


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    max_tokens: int = 64


@dataclass
class RolloutPrompt:
    """A chat prompt with its media, as the prompt record holds them (bytes or paths)."""

    messages: list[dict[str, str]]
    images: list[Any] = field(default_factory=list)
    videos: list[Any] = field(default_factory=list)


@dataclass
class RolloutOutput:
    """One sampled response of prompt ``prompt`` (an index into the request's prompts)."""

    prompt: int
    token_ids: list[int]
    text: str
    logprobs: list[float]


class RolloutEngine(Protocol):
    def generate(
        self, prompts: Sequence[RolloutPrompt], params: SamplingParams, seed: int
    ) -> list[RolloutOutput]:
        """``params.n`` responses per prompt, prompt-major order."""
        ...

    def update_weights(self, state_dict: dict[str, torch.Tensor]) -> None: ...


def chunk_seed(seed: int, chunk: int) -> int:
    digest = hashlib.sha256(f"{seed}|{chunk}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


class TransformersEngine:
    """`vlm.generate` over micro-batches of (prompt, sample) pairs."""

    def __init__(self, model_cfg: ModelConfig, micro_batch_size: int = 64):
        from rl.modeling import load_policy

        self.model, self.processor = load_policy(model_cfg)
        self.model.eval()
        tok = self.processor.tokenizer
        suppressed = [tok.convert_tokens_to_ids(t) for t in SUPPRESSED_TOKENS]
        # vlm.generate's config leaves suppress_tokens unset, so the model's default applies
        self.model.generation_config.suppress_tokens = [i for i in suppressed if i is not None]
        self.micro_batch_size = micro_batch_size

    def generate(
        self, prompts: Sequence[RolloutPrompt], params: SamplingParams, seed: int
    ) -> list[RolloutOutput]:
        import vlm

        pairs = [(p, k) for p in range(len(prompts)) for k in range(params.n)]
        out: list[RolloutOutput] = []
        for c, start in enumerate(range(0, len(pairs), self.micro_batch_size)):
            chunk = pairs[start : start + self.micro_batch_size]
            batch = self.processor(
                [prompts[p].messages for p, _ in chunk],
                [prompts[p].images for p, _ in chunk],
                [prompts[p].videos for p, _ in chunk],
                padding_side="left",
            )
            gen = vlm.generate(
                self.model,
                self.processor,
                batch,
                max_new_tokens=params.max_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                seed=chunk_seed(seed, c),
            )
            for (p, _), ids, text, lps in zip(
                chunk, gen.token_ids, gen.texts, gen.logprobs, strict=True
            ):
                out.append(RolloutOutput(p, ids, text, lps))
        return out

    def update_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state_dict, strict=True)


ENGINES: dict[str, Callable[..., RolloutEngine]] = {"transformers": TransformersEngine}


def make_engine(name: str, model_cfg: ModelConfig, micro_batch_size: int) -> RolloutEngine:
    """Build the rollout engine registered under ``name``."""
    if name not in ENGINES:
        raise ValueError(f"unknown rollout engine {name!r}; known: {sorted(ENGINES)}")
    return ENGINES[name](model_cfg, micro_batch_size=micro_batch_size)
