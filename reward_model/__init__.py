"""The generative pairwise reward model: layout, pairs, training, both-order scoring, gRPC service.

``RewardModel.load(path).score(prompt, images, response, reference)`` is the PPO reward in
process; ``RewardModelClient(address).score(...)`` the same over gRPC. Names are imported on
first use, so ``import reward_model`` stays free of torch and grpc until needed.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "RewardModel": "reward_model.model",
    "PairInput": "reward_model.model",
    "Comparison": "reward_model.scoring",
    "combine": "reward_model.scoring",
    "pair_metrics": "reward_model.scoring",
    "Pair": "reward_model.pairs",
    "read_pairs": "reward_model.pairs",
    "write_pairs": "reward_model.pairs",
    "swap_augment": "reward_model.pairs",
    "RewardModelClient": "reward_model.client",
    "CompareItem": "reward_model.client",
    "RewardModelError": "reward_model.client",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'reward_model' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
