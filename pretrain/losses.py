"""Per-token cross-entropy on target tokens: the one loss of pretraining, SFT and RM training."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def token_losses(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(ce, mask), each (batch, length-1): loss of predicting token t+1, and where labels count.

    ``labels`` are -100 on prompt, image and padding tokens; the logits are taken in float32 so
    the sum over a large batch does not lose precision under bf16.
    """
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs).logits[:, :-1].float()
    target = labels[:, 1:]
    mask = target != IGNORE_INDEX
    ce = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        target.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(target.shape)
    return ce * mask, mask
