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


def param_groups(
    model: torch.nn.Module, weight_decay: float, vision_lr_scale: float = 1.0
) -> list[dict[str, Any]]:
    """AdamW groups of the trainable parameters: decay on matrices, none on norms and biases.

    Each group carries ``lr_scale``, the factor the trainer multiplies the scheduled LR by:
    ``vision_lr_scale`` for the vision encoder and its merger, 1 for the LM. A from-scratch
    vision path at the LM's LR grows its output along one direction shared by every image
    token (Adam steps on wide 512x512 merger matrices, behind the LM's scale-invariant
    RMSNorm), until the LM sees one constant vector per image (docs/pretrain.md).
    """
    visual, _ = towers(model)
    vision_ids = {id(p) for p in visual.parameters()}
    buckets: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for p in model.parameters():
        if p.requires_grad:
            buckets.setdefault((id(p) in vision_ids, p.ndim >= 2), []).append(p)
    groups = []
    for is_vision in (False, True):
        for is_matrix in (True, False):
            params = buckets.get((is_vision, is_matrix))
            if params:
                groups.append(
                    {
                        "params": params,
                        "weight_decay": weight_decay if is_matrix else 0.0,
                        "lr_scale": vision_lr_scale if is_vision else 1.0,
                    }
                )
    if not groups:
        raise ValueError("the model has no trainable parameters under this policy")
    return groups
