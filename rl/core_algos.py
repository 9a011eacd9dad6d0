"""PPO math for hybrid RL: pure tensor functions, no I/O, no Ray, no model.

Shapes: ``(batch, response_len)`` for per-token tensors, with ``mask`` 1 on response tokens
and 0 on padding. Estimators are registered by name and chosen by config, so a new one is
one function.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# --------------------------------------------------------------------------- masked statistics


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    return (x * mask).sum() if dim is None else (x * mask).sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is 1 (0 when the mask is empty)."""
    denom = mask.sum() if dim is None else mask.sum(dim)
    return masked_sum(x, mask, dim) / denom.clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    n = mask.sum()
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def masked_whiten(
    x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """Normalise ``x`` to unit variance (and zero mean) using masked statistics only."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def masked_scale(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Divide ``x`` by its masked standard deviation without shifting it: a zero stays zero.

    For advantages already centred per prompt group, where subtracting the batch's token mean
    would hand every token of a zero-advantage response the same nonzero push."""
    return x * torch.rsqrt(masked_var(x, mask) + eps) * mask


def whiten_by_group(
    x: torch.Tensor, mask: torch.Tensor, groups: list[str], shift_mean: bool = True
) -> torch.Tensor:
    """Whiten (or, without ``shift_mean``, only scale) each group of rows on its own statistics.

    ``groups`` names each row's group, e.g. its reward source: a reward model's scores of a
    prompt's responses differ by hundredths where a verifier's differ by whole points, so on
    batch statistics the verifier rows would carry nearly all of the gradient."""
    out = torch.zeros_like(x)
    for name in sorted(set(groups)):
        rows = torch.tensor([g == name for g in groups], device=x.device)
        part = x[rows]
        out[rows] = (
            masked_whiten(part, mask[rows]) if shift_mean else masked_scale(part, mask[rows])
        )
    return out


# --------------------------------------------------------------------------- KL estimators

KLEstimator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
KL_ESTIMATORS: dict[str, KLEstimator] = {}


def _kl(name: str) -> Callable[[KLEstimator], KLEstimator]:
    def deco(fn: KLEstimator) -> KLEstimator:
        KL_ESTIMATORS[name] = fn
        return fn

    return deco


@_kl("k1")
def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """log π − log π_ref: unbiased, can be negative per token."""
    return logp - ref_logp


@_kl("k2")
def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """½ (log π − log π_ref)²: low variance, biased."""
    return 0.5 * (logp - ref_logp) ** 2


@_kl("k3")
def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """(r − 1) − log r with r = π_ref/π: unbiased and non-negative (Schulman's k3)."""
    log_ratio = (ref_logp - logp).clamp(-20.0, 20.0)
    return torch.exp(log_ratio) - 1.0 - log_ratio


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    try:
        return KL_ESTIMATORS[estimator](logp, ref_logp)
    except KeyError:
        raise ValueError(
            f"unknown KL estimator {estimator!r}; known: {sorted(KL_ESTIMATORS)}"
        ) from None


# --------------------------------------------------------------------------- rewards and advantages


def token_rewards(
    scores: torch.Tensor,
    kl: torch.Tensor,
    kl_coef: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """r_t = −β_prompt·KL_t on every response token, plus the sequence score R on the last one.

    ``scores`` (batch,) are the rewards in [0, 1]; ``kl_coef`` (batch,) is each sample's own β:
    the report uses 1e-5 for reward-model prompts and 0 for verifiable ones.
    """
    rewards = -kl_coef.unsqueeze(-1) * kl * mask
    last = last_token_index(mask)
    has_tokens = mask.sum(-1) > 0
    rows = torch.arange(mask.shape[0], device=mask.device)[has_tokens]
    rewards[rows, last[has_tokens]] += scores[has_tokens].to(rewards.dtype)
    return rewards


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last 1 in each row of ``mask`` (0 for an all-zero row)."""
    positions = torch.arange(mask.shape[-1], device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), positions, torch.zeros_like(positions)).max(-1).values


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens → (advantages, returns).

    The value after the last response token is 0 (the episode ends there). Padding positions
    inside a row are skipped, so left- or right-padded layouts give the same result.
    """
    bsz, length = rewards.shape
    adv = torch.zeros_like(rewards)
    next_value = torch.zeros(bsz, dtype=rewards.dtype, device=rewards.device)
    next_adv = torch.zeros_like(next_value)
    for t in reversed(range(length)):
        m = mask[:, t].to(rewards.dtype)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        a = delta + gamma * lam * next_adv
        adv[:, t] = a * m
        # on padding, carry the next real token's state through unchanged
        next_value = m * values[:, t] + (1 - m) * next_value
        next_adv = m * a + (1 - m) * next_adv
    returns = (adv + values) * mask
    return adv, returns


# --------------------------------------------------------------------------- losses


def aggregate(loss: torch.Tensor, mask: torch.Tensor, mode: str = "token-mean") -> torch.Tensor:
    """Reduce a per-token loss: token-mean (every token weighs the same), seq-mean, or seq-sum."""
    if mode == "token-mean":
        return masked_mean(loss, mask)
    if mode == "seq-mean-token-mean":
        return masked_mean(loss, mask, dim=-1).mean()
    if mode == "seq-mean-token-sum":
        return masked_sum(loss, mask, dim=-1).mean()
    raise ValueError(f"unknown loss aggregation {mode!r}")


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
    dual_clip: float | None = None,
    agg: str = "token-mean",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped surrogate, optionally dual-clipped (Ye et al. 2020) for negative advantages.

    Returns the loss and stats: clip fraction (tokens where clipping bound) and approx-KL
    (mean of ½(log r)², a stable estimate of KL(old‖new)).
    """
    log_ratio = (logp - old_logp).clamp(-20.0, 20.0)
    ratio = torch.exp(log_ratio)
    high = clip_eps if clip_eps_high is None else clip_eps_high
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_eps, 1.0 + high)
    loss = torch.maximum(unclipped, clipped)
    clip_frac = masked_mean((clipped > unclipped).float(), mask)
    if dual_clip is not None:
        if dual_clip <= 1.0:
            raise ValueError("dual_clip must be > 1")
        capped = torch.minimum(loss, -advantages * dual_clip)
        loss = torch.where(advantages < 0, capped, loss)
    stats = {
        "clip_frac": clip_frac.detach(),
        "approx_kl": masked_mean(0.5 * log_ratio**2, mask).detach(),
        "ratio_mean": masked_mean(ratio, mask).detach(),
    }
    return aggregate(loss, mask, agg), stats


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float | None = 0.2,
    agg: str = "token-mean",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss: ½·max((V−R)², (clip(V, V_old±ε)−R)²)."""
    err = (values - returns) ** 2
    if clip_range is not None:
        v_clipped = old_values + (values - old_values).clamp(-clip_range, clip_range)
        err_clipped = (v_clipped - returns) ** 2
        clip_frac = masked_mean((err_clipped > err).float(), mask)
        err = torch.maximum(err, err_clipped)
    else:
        clip_frac = torch.zeros(())
    return 0.5 * aggregate(err, mask, agg), {"vf_clip_frac": clip_frac.detach()}


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Per-token entropy of the categorical distribution given by ``logits``."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def explained_variance(
    values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """1 − Var(R − V)/Var(R) over response tokens: how much of the return the critic explains."""
    var_r = masked_var(returns, mask)
    return 1.0 - masked_var(returns - values, mask) / var_r.clamp(min=1e-8)
