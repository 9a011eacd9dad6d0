"""The models each role holds: the policy (a Qwen2-VL-family causal LM) and the shared critic.

The critic is the policy's multimodal body (vision tower + language model, no LM head) with a
scalar value head, initialised from the same checkpoint as the policy: one value model serves
reward-model and verifier prompts alike, since both rewards lie in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel

from rl.batching import model_inputs, response_slice, token_logprobs
from rl.config import ModelConfig
from vlm.processor import VLProcessor

VALUE_HEAD_FILE = "value_head.pt"


def load_policy(cfg: ModelConfig) -> tuple[PreTrainedModel, VLProcessor]:
    """The starting policy: the checkpoint at ``cfg.path`` or a seeded random preset."""
    import vlm

    dtype = torch.bfloat16 if cfg.dtype == "bfloat16" else torch.float32
    if cfg.path:
        return vlm.load(cfg.path, dtype=dtype)
    model, processor = vlm.create(cfg.preset or "tiny", seed=cfg.init_seed)
    return model.to(dtype), processor


def freeze_vision(model: nn.Module) -> int:
    """Stop gradients into the vision tower (not the merger/adapter); returns frozen parameters."""
    visual = _body(model).visual
    frozen = 0
    for name, p in visual.named_parameters():
        if not name.startswith("merger."):
            p.requires_grad_(False)
            frozen += p.numel()
    return frozen


def _body(model: nn.Module) -> nn.Module:
    # Qwen2VLForConditionalGeneration.model is the Qwen2VLModel (visual + language_model)
    return model.model if hasattr(model, "lm_head") else model


class ValueModel(nn.Module):
    """Qwen2-VL body + ``Linear(hidden, 1)``: one value per position."""

    def __init__(self, body: nn.Module, hidden_size: int):
        super().__init__()
        self.body = body
        self.value_head = nn.Linear(hidden_size, 1)
        # start from V = 0 everywhere: no spurious advantages before the critic has learnt
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    @classmethod
    def from_policy(cls, policy: PreTrainedModel) -> ValueModel:
        return cls(_body(policy), policy.config.text_config.hidden_size)

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        hidden = self.body(**inputs, use_cache=False).last_hidden_state
        return self.value_head(hidden).squeeze(-1).float()


def policy_forward(
    model: nn.Module, batch: dict[str, torch.Tensor], temperature: float, with_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per response token: log π(token) at ``temperature`` and (optionally) the entropy."""
    from rl.core_algos import entropy_from_logits

    r_len = batch["response_ids"].shape[1]
    out = model(**model_inputs(batch), use_cache=False, logits_to_keep=r_len + 1)
    logits = response_slice(out.logits, r_len)
    logp = token_logprobs(logits, batch["response_ids"], temperature)
    entropy = entropy_from_logits(logits.float() / temperature) if with_entropy else None
    return logp, entropy


def value_forward(critic: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """V(state before each response token), shape (B, R)."""
    r_len = batch["response_ids"].shape[1]
    return response_slice(critic(**model_inputs(batch)), r_len)


def save_value_head(critic: ValueModel, out: str | Path) -> None:
    torch.save(critic.value_head.state_dict(), Path(out) / VALUE_HEAD_FILE)
