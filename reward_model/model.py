"""The generative pairwise reward model: a Qwen2-VL-family VLM that answers ``A`` or ``B``.

`RewardModel.compare` scores many pairs in both orders with one forward pass: the two
orders of every pair are rows of the same left-padded batch, and only the last position's
logits of the tokens ``A`` and ``B`` are read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from reward_model.layout import CHOICES, comparison_messages
from reward_model.scoring import Comparison, combine
from vlm.processor import Encoded, VLProcessor, to_pil

RM_CONFIG_FILE = "reward_model.json"  # the layout options a checkpoint was trained with


@dataclass(frozen=True)
class PairInput:
    """One comparison request: does ``response_a`` beat ``response_b`` for this prompt?"""

    prompt: str | Sequence[Any]
    images: Sequence[Any]
    response_a: str
    response_b: str


class RewardModel:
    """A VLM read as a pairwise judge; ``strip_think`` hides thought text from it."""

    def __init__(
        self,
        model: PreTrainedModel,
        processor: VLProcessor,
        *,
        strip_think: bool = True,
        max_tokens: int = 4096,
        max_batch_tokens: int = 65_536,
    ) -> None:
        self.model = model
        self.processor = processor
        self.strip_think = strip_think
        self.max_tokens = max_tokens
        self.max_batch_tokens = max_batch_tokens
        self.forward_passes = 0  # forwards run by compare_encoded (the server's metric)
        self.choice_ids = choice_token_ids(processor)

    @classmethod
    def load(
        cls, path: str | Path, *, device: str = "cpu", dtype: Any = None, max_tokens: int = 4096
    ) -> RewardModel:
        """Load a checkpoint directory (an RM, or any policy checkpoint of the family)."""
        from vlm.model import load

        model, processor = load(path, device=device, dtype=dtype)
        options = read_rm_config(path)
        return cls(
            model, processor, strip_think=options.get("strip_think", True), max_tokens=max_tokens
        )

    def save(self, out: str | Path) -> Path:
        """Write the checkpoint and the layout options it was trained with."""
        from vlm.model import save

        out = save(self.model, self.processor, out)
        write_rm_config(out, strip_think=self.strip_think)
        return Path(out)

    # ---- encoding (pure CPU work, safe to run in request threads) --------------------
    def encode(
        self, prompt: str | Sequence[Any], images: Sequence[Any], first: str, second: str
    ) -> Encoded:
        """Tokens of the question "is ``first`` (A) better than ``second`` (B)?"; ValueError on bad input."""
        pils = [to_pil(im) for im in images]
        messages = comparison_messages(
            prompt, first, second, n_images=len(pils), strip_think=self.strip_think
        )
        encoded = self.processor.encode(messages, pils)
        if len(encoded.input_ids) > self.max_tokens:
            raise ValueError(
                f"the comparison is {len(encoded.input_ids)} tokens, over the limit of {self.max_tokens}"
            )
        return encoded

    def encode_pair(self, item: PairInput) -> tuple[Encoded, Encoded]:
        """Both orders of one pair: (A first, B first)."""
        images = [to_pil(im) for im in item.images]  # decode once for both orders
        return (
            self.encode(item.prompt, images, item.response_a, item.response_b),
            self.encode(item.prompt, images, item.response_b, item.response_a),
        )

    # ---- the forward pass -----------------------------------------------------------
    @torch.no_grad()
    def choice_logits(self, encoded: Sequence[Encoded]) -> torch.Tensor:
        """(n, 2) logits of ``A`` and ``B`` after each sequence: one forward pass."""
        batch = self.processor.collate(list(encoded), padding_side="left")
        device = next(self.model.parameters()).device
        inputs = {k: v.to(device) for k, v in batch.items()}
        out = self.model(**inputs, logits_to_keep=1, use_cache=False)
        return out.logits[:, -1, self.choice_ids].float().cpu()

    def compare_encoded(self, pairs: Sequence[tuple[Encoded, Encoded]]) -> list[Comparison]:
        """Score encoded pairs in both orders: one forward pass, or a few when the padded
        batch would exceed ``max_batch_tokens`` (long prompts must not exhaust memory)."""
        out: list[Comparison] = []
        for group in token_budget_groups(pairs, self.max_batch_tokens):
            rows = [e for pair in group for e in pair]
            p_first = torch.softmax(self.choice_logits(rows), dim=-1)[:, 0].tolist()
            self.forward_passes += 1
            out += [combine(p_first[2 * i], p_first[2 * i + 1]) for i in range(len(group))]
        return out

    def compare(self, items: Sequence[PairInput], *, batch_size: int = 32) -> list[Comparison]:
        """P(response_a ≻ response_b) over both orders for each item; one forward per chunk."""
        out: list[Comparison] = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            out += self.compare_encoded([self.encode_pair(item) for item in chunk])
        return out

    def score(
        self, prompt: str | Sequence[Any], images: Sequence[Any], response: str, reference: str
    ) -> float:
        """The PPO reward: P(response ≻ reference) in [0, 1], both orders averaged."""
        return self.compare([PairInput(prompt, images, response, reference)])[0].p


def token_budget_groups(
    pairs: Sequence[tuple[Encoded, Encoded]], budget: int
) -> list[list[tuple[Encoded, Encoded]]]:
    """Consecutive groups of pairs whose padded batch (2 rows per pair x longest row) fits
    ``budget`` tokens; a single pair always forms a group of its own."""
    groups: list[list[tuple[Encoded, Encoded]]] = []
    current: list[tuple[Encoded, Encoded]] = []
    longest = 0
    for pair in pairs:
        length = max(len(pair[0].input_ids), len(pair[1].input_ids))
        if current and 2 * (len(current) + 1) * max(longest, length) > budget:
            groups.append(current)
            current, longest = [], 0
        current.append(pair)
        longest = max(longest, length)
    if current:
        groups.append(current)
    return groups


def choice_token_ids(processor: VLProcessor) -> list[int]:
    """Ids of the answer tokens ``A`` and ``B``; each must be a single token of the vocabulary."""
    ids = []
    for choice in CHOICES:
        tokens = processor.tokenizer(choice, add_special_tokens=False)["input_ids"]
        if len(tokens) != 1:
            raise ValueError(
                f"the tokenizer splits the answer {choice!r} into {len(tokens)} tokens"
            )
        ids.append(tokens[0])
    return ids


def write_rm_config(path: str | Path, *, strip_think: bool) -> Path:
    """Record the layout options next to a checkpoint's weights."""
    file = Path(path) / RM_CONFIG_FILE
    file.write_text(
        json.dumps({"strip_think": strip_think, "choices": list(CHOICES)}, indent=2) + "\n"
    )
    return file


def read_rm_config(path: str | Path) -> dict[str, Any]:
    """The RM layout options saved with a checkpoint ({} for a plain policy checkpoint)."""
    file = Path(path) / RM_CONFIG_FILE
    return json.loads(file.read_text()) if file.is_file() else {}
