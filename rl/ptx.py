"""PPO-ptx: the supervised records an actor rank mixes into its updates (InstructGPT's fix for
the "alignment tax": RL on some tasks wearing down skills the rewards never ask for).

Which records update ``u`` reads is a pure function of ``u``, the seed and the rank, so a run
resumed from a checkpoint reads exactly the records it would have read; nothing to save.
"""

from __future__ import annotations

from typing import Any

import torch

from rl.config import PtxConfig


class PtxSource:
    """Encoded, collated batches of SFT records for one of ``world`` data-parallel ranks."""

    def __init__(self, cfg: PtxConfig, processor: Any, *, seed: int, rank: int, world: int):
        from pretrain.data import RecordSource, record_example
        from pretrain.trainer import encode_example
        from rl.data import load_prompts

        if cfg.batch_size < world:
            raise ValueError(
                f"ptx.batch_size ({cfg.batch_size}) is below the actor's {world} ranks"
            )
        records = [r for path in cfg.data for r in load_prompts(path, cfg.tasks)]
        # records longer than max_tokens are left out here, not per batch, so every rank
        # always has a share to step on (ranks must run the same backward passes); a record
        # without a target fails here, by name, before training starts
        fits = [
            r
            for r in records
            if len(encode_example(processor, record_example(r)).input_ids) <= cfg.max_tokens
        ]
        if not fits:
            raise ValueError(f"ptx.data: no record fits ptx.max_tokens={cfg.max_tokens}")
        self.dropped = len(records) - len(fits)
        self.source = RecordSource(fits, seed=seed)
        self.cfg, self.processor, self.rank, self.world = cfg, processor, rank, world

    def __len__(self) -> int:
        return len(self.source.records)

    def batch(self, update: int) -> dict[str, torch.Tensor]:
        """Inputs with ``labels`` on the reference tokens for global update number ``update``:
        this rank's share of records ``update·B … update·B + B − 1`` of the shuffled stream
        (B = ``batch_size`` ≥ world size, so every rank gets at least one)."""
        from pretrain.trainer import encode_example

        start = update * self.cfg.batch_size
        encoded = [
            encode_example(self.processor, self.source.get(i))
            for i in range(start + self.rank, start + self.cfg.batch_size, self.world)
        ]
        return dict(self.processor.collate(encoded, padding_side="right"))


def ptx_loss(model: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean token NLL of the labelled (reference-response) tokens."""
    from pretrain.losses import token_losses

    ce, mask = token_losses(model, inputs)
    return ce.sum() / mask.sum().clamp(min=1)
