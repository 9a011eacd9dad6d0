"""Which parameters a run trains (Seed1.5-VL: adapter only in stage 0, all in 1-2, no ViT in SFT)."""

from __future__ import annotations

from typing import Any

import torch

from pretrain.config import Trainable


def towers(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(vision encoder including its merger, MLP adapter) of a Qwen2-VL-family model."""
    inner = getattr(model, "model", model)
    visual = getattr(inner, "visual", None)
    merger = getattr(visual, "merger", None)
    if visual is None or merger is None:
        raise ValueError(f"{type(model).__name__} has no model.visual.merger: not Qwen2-VL-like")
    return visual, merger


def set_trainable(model: torch.nn.Module, policy: Trainable) -> None:
    """Set requires_grad by policy: 'adapter', 'all', or 'no_vision' (all but the ViT)."""
    visual, merger = towers(model)
    if policy not in ("adapter", "all", "no_vision"):
        raise ValueError(f"unknown trainable policy {policy!r}")
    for p in model.parameters():
        p.requires_grad_(policy != "adapter")
    if policy == "no_vision":
        for p in visual.parameters():
            p.requires_grad_(False)
    if policy in ("adapter", "no_vision"):
        for p in merger.parameters():
            p.requires_grad_(True)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups of the trainable parameters: decay on matrices, none on norms and biases."""
    decay, plain = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else plain).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("the model has no trainable parameters under this policy")
    return groups
