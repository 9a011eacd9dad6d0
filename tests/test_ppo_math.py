"""PPO math against hand-computed values (rl/core_algos.py)."""

import math

import pytest
import torch

from rl import core_algos as ca


def t(x):
    return torch.tensor(x, dtype=torch.float64)


def test_gae_hand_computed_gamma1_lambda1():
    # rewards [0,0,1], values [.5,.6,.7]: deltas .1,.1,.3 → advantages .5,.4,.3; returns all 1
    adv, ret = ca.gae(t([[0, 0, 1]]), t([[0.5, 0.6, 0.7]]), t([[1, 1, 1]]), 1.0, 1.0)
    assert torch.allclose(adv, t([[0.5, 0.4, 0.3]]))
    assert torch.allclose(ret, t([[1.0, 1.0, 1.0]]))


def test_gae_hand_computed_discounted():
    # γ=.9, λ=.5: a2 = .3; a1 = (.9·.7−.6) + .45·.3 = .165; a0 = (.9·.6−.5) + .45·.165 = .11425
    adv, _ = ca.gae(t([[0, 0, 1]]), t([[0.5, 0.6, 0.7]]), t([[1, 1, 1]]), 0.9, 0.5)
    assert torch.allclose(adv, t([[0.11425, 0.165, 0.3]]))


def test_gae_padding_is_skipped_on_either_side():
    r, v = [0.0, 0.0, 1.0], [0.5, 0.6, 0.7]
    right, _ = ca.gae(t([r + [9.0]]), t([v + [9.0]]), t([[1, 1, 1, 0]]), 0.9, 0.5)
    left, _ = ca.gae(t([[9.0] + r]), t([[9.0] + v]), t([[0, 1, 1, 1]]), 0.9, 0.5)
    assert torch.allclose(right[0, :3], t([0.11425, 0.165, 0.3]))
    assert torch.allclose(left[0, 1:], t([0.11425, 0.165, 0.3]))
    assert right[0, 3] == 0 and left[0, 0] == 0


def test_token_rewards_per_prompt_kl():
    # row 0: verifiable prompt (β=0) → only R=1 on the last token
    # row 1: β=.1 → −.04, −.05+.5, padding 0
    scores = t([1.0, 0.5])
    kl = t([[0.1, 0.2, 0.3], [0.4, 0.5, 7.0]])
    mask = t([[1, 1, 1], [1, 1, 0]])
    r = ca.token_rewards(scores, kl, t([0.0, 0.1]), mask)
    assert torch.allclose(r, t([[0.0, 0.0, 1.0], [-0.04, 0.45, 0.0]]))


def test_token_rewards_empty_response_gets_nothing():
    r = ca.token_rewards(t([1.0]), t([[0.3, 0.3]]), t([0.1]), t([[0, 0]]))
    assert torch.equal(r, t([[0.0, 0.0]]))


def test_kl_estimators_hand_computed():
    logp, ref = t([math.log(0.5)]), t([math.log(0.25)])
    assert ca.kl_penalty(logp, ref, "k1").item() == pytest.approx(math.log(2))
    assert ca.kl_penalty(logp, ref, "k2").item() == pytest.approx(0.5 * math.log(2) ** 2)
    # k3: r = π_ref/π = .5 → (.5 − 1) − log .5
    assert ca.kl_penalty(logp, ref, "k3").item() == pytest.approx(-0.5 + math.log(2))
    with pytest.raises(ValueError, match="k9"):
        ca.kl_penalty(logp, ref, "k9")


def test_k3_is_non_negative_and_zero_at_equality():
    logp = torch.log(torch.rand(100, dtype=torch.float64) + 0.01)
    ref = torch.log(torch.rand(100, dtype=torch.float64) + 0.01)
    assert (ca.kl_k3(logp, ref) >= 0).all()
    assert torch.allclose(ca.kl_k3(logp, logp), torch.zeros(100, dtype=torch.float64))


def test_policy_loss_clips_positive_advantage():
    # ratio 1.5, A=+1, ε=.2: max(−1.5, −1.2) = −1.2, clipped
    loss, stats = ca.policy_loss(t([[math.log(1.5)]]), t([[0.0]]), t([[1.0]]), t([[1.0]]), 0.2)
    assert loss.item() == pytest.approx(-1.2)
    assert stats["clip_frac"].item() == 1.0


def test_policy_loss_does_not_clip_pessimistic_side():
    # ratio 1.5, A=−1: max(1.5, 1.2) = 1.5, not clipped
    loss, stats = ca.policy_loss(t([[math.log(1.5)]]), t([[0.0]]), t([[-1.0]]), t([[1.0]]), 0.2)
    assert loss.item() == pytest.approx(1.5)
    assert stats["clip_frac"].item() == 0.0


def test_dual_clip_caps_negative_advantage_loss():
    # ratio 5, A=−1: standard loss 5, dual clip c=3 caps it at 3
    loss, _ = ca.policy_loss(
        t([[math.log(5.0)]]), t([[0.0]]), t([[-1.0]]), t([[1.0]]), 0.2, dual_clip=3.0
    )
    assert loss.item() == pytest.approx(3.0)


def test_policy_loss_token_mean_ignores_padding():
    logp = t([[0.0, 0.0, 5.0]])
    loss, _ = ca.policy_loss(logp, t([[0.0, 0.0, 0.0]]), t([[1.0, 3.0, 100.0]]), t([[1, 1, 0]]))
    assert loss.item() == pytest.approx(-2.0)  # mean of −1, −3


def test_value_loss_clipping_hand_computed():
    # V=1.5, V_old=1, R=1: err .25, clipped V 1.2 → .04; max .25 → ½·.25
    loss, _ = ca.value_loss(t([[1.5]]), t([[1.0]]), t([[1.0]]), t([[1.0]]), 0.2)
    assert loss.item() == pytest.approx(0.125)
    # V=.5, V_old=1, R=0: err .25, clipped V .8 → .64 wins → ½·.64
    loss, stats = ca.value_loss(t([[0.5]]), t([[1.0]]), t([[0.0]]), t([[1.0]]), 0.2)
    assert loss.item() == pytest.approx(0.32)
    assert stats["vf_clip_frac"].item() == 1.0


def test_masked_whiten_uses_masked_stats_only():
    # [1,2,3] → mean 2, unbiased var 1 → [−1,0,1]; the masked 100 is ignored and zeroed
    w = ca.masked_whiten(t([[1.0, 2.0, 3.0, 100.0]]), t([[1, 1, 1, 0]]))
    assert torch.allclose(w, t([[-1.0, 0.0, 1.0, 0.0]]), atol=1e-6)


def test_masked_scale_keeps_zero_advantages_at_zero():
    # [0, 2, 0, -1] (last masked out of [0, 2, 0]): mean 2/3, unbiased var 4/3 -> x / sqrt(4/3)
    x, mask = t([[0.0, 2.0, 0.0, -1.0]]), t([[1, 1, 1, 0]])
    s = ca.masked_scale(x, mask)
    assert torch.allclose(s, t([[0.0, 2.0 / (4 / 3) ** 0.5, 0.0, 0.0]]), atol=1e-6)
    # whitening would have moved the zeros: (0 - 2/3) / sqrt(4/3)
    assert ca.masked_whiten(x, mask)[0, 0].item() == pytest.approx(-(2 / 3) / (4 / 3) ** 0.5)


def test_aggregation_modes():
    loss, mask = t([[1.0, 3.0], [5.0, 0.0]]), t([[1, 1], [1, 0]])
    assert ca.aggregate(loss, mask, "token-mean").item() == pytest.approx(3.0)
    assert ca.aggregate(loss, mask, "seq-mean-token-mean").item() == pytest.approx(3.5)
    assert ca.aggregate(loss, mask, "seq-mean-token-sum").item() == pytest.approx(4.5)
    with pytest.raises(ValueError):
        ca.aggregate(loss, mask, "nope")


def test_explained_variance_perfect_and_zero():
    r, m = t([[1.0, 2.0, 3.0]]), t([[1, 1, 1]])
    assert ca.explained_variance(r, r, m).item() == pytest.approx(1.0)
    assert ca.explained_variance(torch.full_like(r, 2.0), r, m).item() == pytest.approx(0.0)


def test_entropy_uniform():
    assert ca.entropy_from_logits(torch.zeros(1, 4)).item() == pytest.approx(math.log(4), rel=1e-5)


def test_whiten_by_group_uses_each_groups_own_stats():
    # rows 0 and 2 ("rule"): tokens [1, 3] and [5, 7(masked)] → mean 3, unbiased var 4 → ±1 / 0
    # row 1 ("model"): [0.1, 0.3] → mean 0.2, unbiased var 0.02 → ∓1/√2
    x = t([[1.0, 3.0], [0.1, 0.3], [5.0, 7.0]])
    mask = t([[1, 1], [1, 1], [1, 0]])
    w = ca.whiten_by_group(x, mask, ["rule", "model", "rule"])
    assert torch.allclose(w[0], t([-1.0, 0.0]), atol=1e-5)
    assert torch.allclose(w[2], t([1.0, 0.0]), atol=1e-5)
    assert torch.allclose(w[1], t([-(0.5**0.5), 0.5**0.5]), atol=1e-4)
    # on the batch's statistics the model row's two tokens would sit ~0.1 apart, not √2
    b = ca.masked_whiten(x, mask)
    assert (b[1, 1] - b[1, 0]).item() < 0.15 < (w[1, 1] - w[1, 0]).item()
    # scale only: a zero stays zero, each group divided by its own std
    s = ca.whiten_by_group(t([[0.0, 2.0], [0.0, -0.2]]), t([[1, 1], [1, 1]]), ["a", "b"], False)
    assert torch.allclose(s, t([[0.0, 2.0 / 2**0.5], [0.0, -0.2 / 0.02**0.5]]), atol=1e-5)
