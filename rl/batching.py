"""Sequences for training: prompts left-padded, responses right-padded, so response tokens line up.

The layout (verl's) is ``[pad … prompt | response … pad]``: every row's response starts at the
same column ``P``, so the logits that predict response token ``t`` sit at column ``P − 1 + t``
for every row, and per-token tensors (logprobs, values, advantages) are plain ``(batch, R)``
arrays with a response mask. Pure functions, no model inside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from rl.core_algos import gae
from vlm.processor import Encoded


@dataclass
class RolloutBatch:
    """An iteration's rollouts: the distinct prompts (encoded once) and one response per sample."""

    prompts: list[Encoded]
    prompt_of: list[int]  # sample -> index into prompts
    responses: list[list[int]]
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.responses)

    @property
    def max_response_len(self) -> int:
        return max((len(r) for r in self.responses), default=0)


@dataclass(frozen=True)
class TokenIds:
    pad: int
    image: int
    video: int


def collate(
    batch: RolloutBatch, rows: Sequence[int], ids: TokenIds, response_len: int | None = None
) -> dict[str, torch.Tensor]:
    """Model inputs for ``rows`` of ``batch``: ``[left-padded prompt | right-padded response]``.

    Returns ``input_ids``, ``attention_mask``, ``mm_token_type_ids``, ``pixel_values`` and
    ``image_grid_thw`` (when there are images), ``response_ids`` and ``response_mask`` of shape
    ``(len(rows), R)``; ``R`` is ``response_len`` or the longest selected response.
    """
    if not rows:
        raise ValueError("collate needs at least one row")
    prompts = [batch.prompts[batch.prompt_of[r]] for r in rows]
    responses = [batch.responses[r] for r in rows]
    p_len = max(len(p.input_ids) for p in prompts)
    r_len = max(len(r) for r in responses) if response_len is None else response_len
    if r_len < 1:
        raise ValueError("every batch needs at least one response token")
    n = len(rows)
    input_ids = torch.full((n, p_len + r_len), ids.pad, dtype=torch.long)
    attention = torch.zeros((n, p_len + r_len), dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        if len(r) > r_len:
            raise ValueError(f"response of {len(r)} tokens exceeds response_len {r_len}")
        input_ids[i, p_len - len(p.input_ids) : p_len] = torch.tensor(p.input_ids)
        attention[i, p_len - len(p.input_ids) : p_len] = 1
        if r:
            input_ids[i, p_len : p_len + len(r)] = torch.tensor(r)
            attention[i, p_len : p_len + len(r)] = 1
    out: dict[str, torch.Tensor] = {
        "input_ids": input_ids,
        "attention_mask": attention,
        "mm_token_type_ids": (input_ids == ids.image).long() + 2 * (input_ids == ids.video).long(),
        "response_ids": input_ids[:, p_len:].clone(),
        "response_mask": attention[:, p_len:].float(),
    }
    pixel_rows = [rows_ for p in prompts for rows_ in p.pixel_rows]
    if pixel_rows:
        out["pixel_values"] = torch.from_numpy(np.concatenate(pixel_rows, axis=0))
        out["image_grid_thw"] = torch.tensor(
            [g for p in prompts for g in p.grids], dtype=torch.long
        )
    return out


MODEL_INPUTS = (
    "input_ids",
    "attention_mask",
    "mm_token_type_ids",
    "pixel_values",
    "image_grid_thw",
)


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The keys a Qwen2-VL forward takes."""
    return {k: batch[k] for k in MODEL_INPUTS if k in batch}


def response_slice(per_position: torch.Tensor, response_len: int) -> torch.Tensor:
    """The positions that predict the response: the ``R`` columns before the last one.

    ``per_position`` covers at least the last ``R + 1`` columns of the sequence (a forward with
    ``logits_to_keep = R + 1``, or the full sequence).
    """
    return per_position[:, -response_len - 1 : -1]


def token_logprobs(
    logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """log softmax(logits / T) of ``tokens``: (B, R, V) logits aligned with (B, R) tokens."""
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def pad_rows(values: Sequence[Sequence[float]], length: int, fill: float = 0.0) -> torch.Tensor:
    """Ragged per-token lists as one right-padded float tensor of ``length`` columns."""
    out = torch.full((len(values), length), fill, dtype=torch.float32)
    for i, v in enumerate(values):
        if len(v) > length:
            raise ValueError(f"row {i} has {len(v)} values, more than {length}")
        if len(v):
            out[i, : len(v)] = torch.tensor(list(v), dtype=torch.float32)
    return out


def micro_batches(rows: Sequence[int], size: int) -> list[list[int]]:
    """Consecutive chunks of at most ``size`` rows."""
    rows = list(rows)
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def length_grouped_chunks(expected: Sequence[float], size: int) -> list[list[int]]:
    """Row indices in chunks of at most ``size``, longest ``expected`` response length first.

    A batched generate call runs until its longest response ends, so one long response in a
    chunk of short ones holds them all; chunks of like lengths end together. Ties keep their
    order, so with no estimates yet the chunks are consecutive."""
    order = sorted(range(len(expected)), key=lambda i: (-expected[i], i))
    return micro_batches(order, size)


def prompt_order(prompts: Sequence[int]) -> list[int]:
    """Positions of rows that name their ``prompts``, sorted by prompt, each prompt's rows in
    the order they came: rows generated in chunks back in the order the prompts were drawn."""
    return sorted(range(len(prompts)), key=lambda i: prompts[i])


def minibatches(n: int, minibatch_size: int, epochs: int, seed: int) -> list[list[int]]:
    """Shuffled minibatches of row indices, ``epochs`` passes over ``n`` rows (last one may be short)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen).tolist()
        out += [order[i : i + minibatch_size] for i in range(0, n, minibatch_size)]
    return out


def shard(rows: Sequence[int], world: int) -> list[list[int]]:
    """Split a minibatch over ``world`` data-parallel ranks as evenly as possible (never empty).

    With fewer rows than ranks, ranks beyond them get the first row again, and the caller
    gives those a loss weight of 0 (every rank must run the same number of steps).
    """
    rows = list(rows)
    if not rows:
        raise ValueError("cannot shard an empty minibatch")
    parts = [rows[r::world] for r in range(world)]
    return [p if p else rows[:1] for p in parts]


def loss_scale(
    agg: str, micro_tokens: float, micro_seqs: int, total_tokens: float, total_seqs: int, world: int
) -> float:
    """Factor turning a micro-batch's aggregated loss into its share of the minibatch loss.

    DeepSpeed averages gradients over ``world`` ranks, hence the factor ``world``: summed over
    micro-batches and ranks, the gradient is that of the loss aggregated over the whole
    minibatch (token-mean: every token of the minibatch weighs the same).
    """
    if agg == "token-mean":
        return world * micro_tokens / max(total_tokens, 1.0)
    if agg in ("seq-mean-token-mean", "seq-mean-token-sum"):
        return world * micro_seqs / max(total_seqs, 1)
    raise ValueError(f"unknown loss aggregation {agg!r}")


def plan_updates(
    minibatches_: Sequence[Sequence[int]],
    tokens_per_row: Sequence[float],
    world: int,
    micro_batch_size: int,
    agg: str,
) -> list[list[list[tuple[list[int], float]]]]:
    """Per rank, per gradient update, the micro-batches ``(rows, loss scale)`` to run.

    Every rank runs the same number of micro-batches per update (collectives must line up);
    padding steps repeat a row with scale 0.
    """
    plans: list[list[list[tuple[list[int], float]]]] = [[] for _ in range(world)]
    for mb in minibatches_:
        total_tokens = float(sum(tokens_per_row[r] for r in mb))
        shards = shard(mb, world)
        per_rank = [micro_batches(s, micro_batch_size) for s in shards]
        n_micro = max(len(m) for m in per_rank)
        for rank in range(world):
            real = rank < len(mb)
            entries = [
                (
                    m,
                    loss_scale(
                        agg,
                        float(sum(tokens_per_row[r] for r in m)),
                        len(m),
                        total_tokens,
                        len(mb),
                        world,
                    )
                    if real
                    else 0.0,
                )
                for m in per_rank[rank]
            ]
            entries += [(per_rank[rank][0], 0.0)] * (n_micro - len(entries))
            plans[rank].append(entries)
    return plans


def plan_inference(
    n_rows: int, world: int, micro_batch_size: int
) -> tuple[list[list[list[int]]], list[list[int]]]:
    """Split rows ``0..n-1`` over ranks into equally many micro-batches.

    Returns (per-rank micro-batches, per-rank real rows): a rank's result starts with its real
    rows, in order; what follows (padding steps, or a whole dummy shard) is discarded.
    """
    rows = list(range(n_rows))
    shards = shard(rows, world)
    real = [s if rank < n_rows else [] for rank, s in enumerate(shards)]
    per_rank = [micro_batches(s, micro_batch_size) for s in shards]
    n_micro = max(len(m) for m in per_rank)
    for m in per_rank:
        m += [m[0]] * (n_micro - len(m))
    return per_rank, real


def group_advantages(
    token_rewards: torch.Tensor,
    groups: Sequence[int],
    mask: torch.Tensor,
    gamma: float = 1.0,
    eps: float = 1e-6,
    *,
    std_normalize: bool = True,
) -> torch.Tensor:
    """Per-token advantages G_t − mean of the group's G_0: each response's return-to-go
    against the returns of the other responses to its prompt, the baseline a critic learns
    taken from the group instead; divided by the std of the group's G_0 + eps when
    ``std_normalize``.

    ``token_rewards`` are `core_algos.token_rewards`' r_t = −β·KL_t (+ R on the last token),
    so the per-prompt KL acts here as it does under GAE: with β = 0 every G_t is R and the
    advantage is R − mean(R); with β > 0 a token is also charged the KL of what follows it.

    Dividing by the std turns any spread, however small, into unit-size advantages: right for
    0/1 verifier rewards, but a reward model that barely tells responses apart (scores within
    0.01 of each other) would get full-size advantages out of its noise. Without it, a group's
    advantages stay as large as its rewards differ.
    """
    rtg, _ = gae(
        token_rewards.float(),
        torch.zeros_like(token_rewards, dtype=torch.float32),
        mask,
        gamma,
        1.0,
    )
    first = (mask.cumsum(-1) == 1) & mask.bool()  # each row's first response token
    totals = (rtg * first).sum(-1)
    adv = torch.zeros_like(rtg)
    ids = torch.tensor(list(groups))
    for g in ids.unique():
        rows = ids == g
        g0 = totals[rows]
        centred = rtg[rows] - g0.mean()
        if std_normalize:
            std = g0.std(unbiased=False) if int(rows.sum()) > 1 else torch.tensor(0.0)
            centred = centred / (std + eps)
        adv[rows] = centred
    return adv * mask
