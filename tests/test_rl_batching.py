"""Training-sequence layout, logprob alignment, update plans and the resumable prompt stream."""

from __future__ import annotations

import math

import pytest
import torch

import vlm
from rl import core_algos as ca
from rl.batching import (
    RolloutBatch,
    TokenIds,
    collate,
    minibatches,
    pad_rows,
    plan_inference,
    plan_updates,
)
from rl.controller import summarise_eval
from rl.data import SqliteLedger, draw
from rl.modeling import policy_forward
from rl.rewards import Scored
from rl.rollout import SUPPRESSED_TOKENS, RolloutPrompt, SamplingParams, TransformersEngine
from synth.registry import generate as synth


@pytest.fixture(scope="module")
def policy():
    torch.manual_seed(0)
    return vlm.create("test", seed=3)


@pytest.fixture(scope="module")
def records():
    # an image task and a video task: prompts of very different lengths
    return synth(["math", "grounding", "temporal"], 3, seed=2)


def _prompt(rec) -> RolloutPrompt:
    return RolloutPrompt(
        [m.model_dump() for m in rec.prompt],
        [i.model_dump() for i in rec.images],
        [v.model_dump() for v in rec.videos],
    )


def _ids(processor) -> TokenIds:
    return TokenIds(processor.pad_token_id, processor.image_token_id, processor.video_token_id)


def test_collate_aligns_every_response_at_the_same_column(policy, records):
    _, proc = policy
    enc = [proc.encode(*_prompt(r).__dict__.values()) for r in records]
    batch = RolloutBatch(
        prompts=enc, prompt_of=[0, 1, 2, 1], responses=[[5, 6], [7], [8, 9, 10], [11]]
    )
    out = collate(batch, [0, 1, 2, 3], _ids(proc))
    p_len = max(len(e.input_ids) for e in enc)
    assert out["input_ids"].shape == (4, p_len + 3)
    assert out["response_ids"].tolist() == [
        [5, 6, proc.pad_token_id],
        [7, proc.pad_token_id, proc.pad_token_id],
        [8, 9, 10],
        [11, proc.pad_token_id, proc.pad_token_id],
    ]
    assert out["response_mask"].tolist() == [[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 0, 0]]
    # prompts are left padded: the last prompt token of every row sits at column P-1
    for row, k in enumerate([0, 1, 2, 1]):
        assert out["input_ids"][row, p_len - 1] == enc[k].input_ids[-1]
        assert int(out["attention_mask"][row, :p_len].sum()) == len(enc[k].input_ids)
    # pixel rows and grids follow the row order (prompt 1 appears twice)
    grids = [g for k in [0, 1, 2, 1] for g in enc[k].grids]
    assert out["image_grid_thw"].tolist() == [list(g) for g in grids]


def test_recomputed_logprobs_match_the_rollout_at_temperature_one(policy, records):
    """Old logprobs from a padded training forward equal the sampler's own logprobs."""
    model, proc = policy
    engine = TransformersEngine.__new__(TransformersEngine)
    engine.model, engine.processor, engine.micro_batch_size = model, proc, 4
    model.generation_config.suppress_tokens = [
        proc.tokenizer.convert_tokens_to_ids(t) for t in SUPPRESSED_TOKENS
    ]
    prompts = [_prompt(r) for r in records]
    outs = engine.generate(prompts, SamplingParams(n=2, temperature=1.0, max_tokens=12), seed=1)
    assert [o.prompt for o in outs] == [0, 0, 1, 1, 2, 2]
    enc = [proc.encode(p.messages, p.images, p.videos) for p in prompts]
    batch = RolloutBatch(enc, [o.prompt for o in outs], [o.token_ids for o in outs])
    # a shuffled subset: different padding than during generation
    rows = [5, 0, 3]
    data = collate(batch, rows, _ids(proc), batch.max_response_len)
    with torch.no_grad():
        logp, entropy = policy_forward(model, data, 1.0, with_entropy=True)
    expected = pad_rows([outs[r].logprobs for r in rows], batch.max_response_len)
    diff = ((logp - expected).abs() * data["response_mask"]).max()
    assert diff < 1e-5, f"recomputed logprobs differ from the rollout's by {diff}"
    assert bool((entropy[data["response_mask"] > 0] > 0).all())


def test_temperature_scales_the_recomputed_logprobs(policy, records):
    model, proc = policy
    enc = [proc.encode(*_prompt(records[0]).__dict__.values())]
    batch = RolloutBatch(enc, [0], [[20, 21, 22]])
    data = collate(batch, [0], _ids(proc))
    with torch.no_grad():
        hot, _ = policy_forward(model, data, 2.0, with_entropy=False)
        cold, _ = policy_forward(model, data, 1.0, with_entropy=False)
    assert not torch.allclose(hot, cold)


def test_update_plan_reproduces_the_minibatch_token_mean():
    """Summing every rank's scaled micro-batch losses gives the minibatch's token-mean × world."""
    gen = torch.Generator().manual_seed(0)
    n, r_len, world = 11, 7, 3
    lengths = torch.randint(1, r_len + 1, (n,), generator=gen)
    mask = (torch.arange(r_len)[None] < lengths[:, None]).float()
    loss = torch.rand(n, r_len, generator=gen)
    for agg in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum"):
        mbs = minibatches(n, 5, epochs=1, seed=0)
        plans = plan_updates(mbs, mask.sum(-1).tolist(), world, micro_batch_size=2, agg=agg)
        for u, mb in enumerate(mbs):
            counts = {len(plans[r][u]) for r in range(world)}
            assert len(counts) == 1, "every rank must run the same number of micro-batches"
            total = sum(
                scale * float(ca.aggregate(loss[rows], mask[rows], agg))
                for r in range(world)
                for rows, scale in plans[r][u]
            )
            want = float(ca.aggregate(loss[mb], mask[mb], agg))
            assert total / world == pytest.approx(want, rel=1e-5), agg


def test_update_plan_pads_ranks_without_rows_with_zero_scale():
    plans = plan_updates(
        [[4]], [1.0, 1.0, 1.0, 1.0, 3.0], world=2, micro_batch_size=4, agg="token-mean"
    )
    assert plans[0][0] == [([4], 2.0)]
    assert plans[1][0] == [([4], 0.0)]


def test_minibatches_cover_every_row_once_per_epoch():
    mbs = minibatches(10, 4, epochs=2, seed=1)
    assert [len(m) for m in mbs] == [4, 4, 2, 4, 4, 2]
    assert sorted(sum(mbs[:3], [])) == list(range(10))
    assert sorted(sum(mbs[3:], [])) == list(range(10))


def test_inference_plan_reassembles_every_row_once():
    for n, world, micro in [(7, 2, 3), (1, 3, 4), (12, 4, 2)]:
        plans, real = plan_inference(n, world, micro)
        assert len({len(p) for p in plans}) == 1
        assert sorted(r for rows in real for r in rows) == list(range(n))
        for p, rows in zip(plans, real, strict=True):
            flat = [r for mb in p for r in mb]
            assert flat[: len(rows)] == rows


def test_prompt_stream_is_resumable_and_each_epoch_a_permutation():
    whole = draw(10, seed=4, position=0, count=25)
    parts = draw(10, 4, 0, 7) + draw(10, 4, 7, 11) + draw(10, 4, 18, 7)
    assert parts == whole
    assert sorted(whole[:10]) == list(range(10)) and sorted(whole[10:20]) == list(range(10))
    assert whole[:10] != whole[10:20]
    assert draw(5, 0, 0, 5, shuffle=False) == [0, 1, 2, 3, 4]


def test_sqlite_ledger_rolls_back_redone_iterations(tmp_path):
    ledger = SqliteLedger(tmp_path / "ledger.sqlite")
    for it in (1, 2, 3):
        ledger.record(it, (it - 1) * 2, [it * 10, it * 10 + 1])
    assert ledger.rollback_after(1) == 2
    ledger.record(2, 2, [20, 21])
    reopened = SqliteLedger(tmp_path / "ledger.sqlite")
    assert reopened.entries() == [(1, 0, [10, 11]), (2, 2, [20, 21])]


def test_redis_ledger(redis_server):
    from rl.data import RedisLedger

    ledger = RedisLedger(redis_server.url, "run-a")
    ledger.record(1, 0, [3, 1])
    ledger.record(2, 2, [0, 2])
    ledger.record(3, 4, [4, 5])
    assert ledger.rollback_after(2) == 1
    assert ledger.entries() == [(1, 0, [3, 1]), (2, 2, [0, 2])]
    assert RedisLedger(redis_server.url, "run-b").entries() == []


def test_summarise_eval_separates_sources_and_exclusions():
    recs = synth(["math", "caption"], 4, seed=0)  # math, caption, math, caption
    scores = [
        Scored(1.0, True, True, "rule"),
        Scored(0.8, True, True, "model"),
        Scored(None, False, True, "rule", "timeout"),
        Scored(0.2, False, True, "model"),
    ]
    out = summarise_eval(recs, scores)
    assert out["acc/math"] == 1.0 and out["verifiable_acc"] == 1.0
    assert out["model_reward"] == pytest.approx(0.5)
    assert out["excluded"] == 1.0 and out["n"] == 4.0
    # one scored math prompt, solved: p = 1, so no spread; captions (model) carry no accuracy s.e.
    assert out["se/verifiable_acc"] == 0.0 and out["se/acc/math"] == 0.0
    assert "se/model_reward" not in out


def test_eval_audits_greedy_captions_against_their_scenes():
    recs = synth(["math", "caption"], 6, seed=0)  # math, caption, math, caption, ...
    captions = [r.reward_model.ground_truth["caption"] for r in recs[1::2]]
    scores = [
        Scored(1.0, True, True, "rule"),
        Scored(0.5, True, True, "model"),
        Scored(1.0, True, True, "rule"),
        Scored(0.5, True, True, "model"),
        Scored(1.0, True, True, "rule"),
        Scored(None, False, True, "model", "timeout"),  # excluded: not audited either
    ]
    # the first caption exact, the second no caption at all, the third's reward failed
    responses = ["\\boxed{1}", f"<think></think>{captions[0]}", "2", "There is oneE.", "3", "x"]
    out = summarise_eval(recs, scores, responses)
    for fact in ("count", "colour", "shape", "position", "objects"):
        assert out[f"caption_facts/{fact}"] == pytest.approx(0.5)
    assert not any(k.startswith("caption_facts/") for k in summarise_eval(recs, scores))


def test_eval_standard_errors_by_hand_and_in_the_before_after_table():
    from rl.report import binomial_se, eval_table

    recs = synth(["math"], 4, seed=0)
    right = [Scored(1.0, True, True, "rule")] * 3 + [Scored(0.0, False, True, "rule")]
    out = summarise_eval(recs, right)
    assert out["verifiable_acc"] == 0.75
    assert out["se/verifiable_acc"] == pytest.approx(math.sqrt(0.75 * 0.25 / 4))
    assert binomial_se(0.5, 100) == pytest.approx(0.05)
    assert math.isnan(binomial_se(0.5, 0))
    assert out["outcomes/acc/math"] == "1110" and out["outcomes/verifiable_acc"] == "1110"
    before = {"verifiable_acc": 0.5, "se/verifiable_acc": 0.03, "format_rate": 1.0, "n": 40}
    after = {"verifiable_acc": 0.6, "se/verifiable_acc": 0.04, "format_rate": 1.0, "n": 40}
    table = eval_table(before, after)  # no per-prompt outcomes: unpaired, hypot(0.03, 0.04)
    assert "| verifiable_acc | 0.500 | 0.600 | +0.100 ± 0.050 |" in table
    assert "| format_rate | 1.000 | 1.000 | +0.000 |" in table  # no s.e. given: none shown
    assert "se/" not in table


def test_paired_standard_error_from_per_prompt_outcomes_by_hand():
    from rl.report import eval_table, paired_se

    # differences 0, 1, 0, 0: mean 0.25, sample variance 0.25, s.e. sqrt(0.25 / 4) = 0.25
    assert paired_se("0011", "0111") == pytest.approx(0.25)
    assert paired_se("0011", "0011") == 0.0  # the same answers: no noise in the change
    assert paired_se("0-11", "01-1") == pytest.approx(0.0)  # '-' on either side is left out
    assert paired_se("01", "011") is None and paired_se("0-", "1-") is None
    # Excluded prompts keep their place, so outcome strings of the same prompts line up
    recs = synth(["math", "caption"], 6, seed=0)  # math, caption, ... alternating
    rule = lambda ok: Scored(float(ok), ok, True, "rule")  # noqa: E731
    model = Scored(0.7, True, True, "model")
    first = summarise_eval(recs, [rule(False), model, rule(True), model, rule(False), model])
    second = summarise_eval(recs, [rule(True), model, rule(True), model, rule(True), model])
    assert first["outcomes/acc/math"] == "010" and second["outcomes/acc/math"] == "111"
    assert first["outcomes/acc/caption"] == "111"
    assert first["outcomes/verifiable_acc"] == "010"  # the caption (model) prompts are not in it
    table = eval_table(first, second)
    # paired: differences 1, 0, 1 -> mean 2/3, stdev sqrt(1/3), s.e. sqrt(1/3) / sqrt(3) = 1/3
    assert "| verifiable_acc | 0.333 | 1.000 | +0.667 ± 0.333 |" in table
    assert "| acc/math | 0.333 | 1.000 | +0.667 ± 0.333 |" in table
    assert "| acc/caption | 1.000 | 1.000 | +0.000 ± 0.000 |" in table
    assert "outcomes/" not in table


def test_moderate_difficulty_filter_keeps_prompts_between_the_bounds():
    from rl.filtering import keep_moderate

    recs = synth(["counting"], 4, seed=1)
    s = lambda r: Scored(r, bool(r), True, "rule")  # noqa: E731
    scores = [
        [s(1.0), s(1.0)],  # always solved: dropped
        [s(0.0), s(1.0)],  # moderate: kept
        [s(0.0), Scored(0.0, False, False, "rule")],  # never solved (one broke the format)
        [Scored(None, False, True, "rule", "timeout")],  # nothing scored: dropped
    ]
    kept, stats = keep_moderate(recs, scores, low=0.05, high=0.95)
    assert kept == [recs[1]]
    assert (stats[0].total, stats[0].kept) == (4, 1)
    assert (stats[0].samples, stats[0].well_formed) == (7, 6)


def test_uniform_groups_are_left_out_of_training():
    from rl.controller import uniform_groups_dropped
    from rl.rollout import RolloutOutput

    outs = [RolloutOutput(p, [1], "", [0.0]) for p in (0, 0, 1, 1, 2, 2, 3)]
    rule = lambda r: Scored(r, r == 1.0, True, "rule")  # noqa: E731
    scores = [
        rule(1.0), rule(1.0),  # prompt 0: all solved -> out
        rule(0.0), rule(1.0),  # prompt 1: mixed -> in
        Scored(0.5, False, True, "model"), Scored(0.5, False, True, "model"),  # RM: kept
        rule(0.0),  # prompt 3: a single sample -> kept
    ]  # fmt: skip
    assert uniform_groups_dropped(outs, scores) == [2, 3, 4, 5, 6]
    # a KL charge on verifier prompts still tells the all-solved responses apart: all stay
    assert uniform_groups_dropped(outs, scores, kl_verifiable=0.05) == list(range(7))


def _outcome_rewards(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    from rl.core_algos import token_rewards

    return token_rewards(rewards, torch.zeros_like(mask), torch.zeros(len(rewards)), mask)


def test_group_advantages_compare_responses_of_the_same_prompt():
    from rl.batching import group_advantages

    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5, 1.0])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 0, 0], [1, 1, 0]]).float()
    adv = group_advantages(_outcome_rewards(rewards, mask), [0, 0, 1, 1, 2], mask)
    assert torch.allclose(adv[0], torch.tensor([1.0, 1.0, 0.0]), atol=1e-4)  # (1-.5)/.5
    assert torch.allclose(adv[1], torch.tensor([-1.0, 0.0, 0.0]), atol=1e-4)
    assert adv[2:].abs().max() == 0  # a uniform group, and a lone response: no signal
    # a reward model scoring 0.50 vs 0.51: unit advantages with std, 0.005 without
    close = torch.tensor([0.50, 0.51])
    two = torch.ones(2, 1)
    tr = _outcome_rewards(close, two)
    assert torch.allclose(
        group_advantages(tr, [0, 0], two)[:, 0], torch.tensor([-1.0, 1.0]), atol=1e-3
    )
    plain = group_advantages(tr, [0, 0], two, std_normalize=False)[:, 0]
    assert torch.allclose(plain, torch.tensor([-0.005, 0.005]), atol=1e-6)


def test_group_advantages_charge_each_token_the_kl_that_follows_it():
    from rl.batching import group_advantages
    from rl.core_algos import token_rewards

    # one prompt, β = 0.1: R = 1 with KL 0.5 on each of 3 tokens; R = 0 with KL 1 on each of 2
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]]).float()
    kl = torch.tensor([[0.5, 0.5, 0.5], [1.0, 1.0, 0.0]])
    tr = token_rewards(torch.tensor([1.0, 0.0]), kl, torch.tensor([0.1, 0.1]), mask)
    # returns-to-go: [0.85, 0.90, 0.95] and [-0.2, -0.1]; baseline (0.85 - 0.2) / 2 = 0.325
    adv = group_advantages(tr, [0, 0], mask, std_normalize=False)
    assert torch.allclose(adv[0], torch.tensor([0.525, 0.575, 0.625]), atol=1e-6)
    assert torch.allclose(adv[1], torch.tensor([-0.525, -0.425, 0.0]), atol=1e-6)
    # divided by the std of the group's whole returns (0.85, -0.2): 0.525
    scaled = group_advantages(tr, [0, 0], mask)
    assert torch.allclose(scaled[0], torch.tensor([1.0, 0.575 / 0.525, 0.625 / 0.525]), atol=1e-5)
    # left padding: the same numbers on the real tokens
    left = torch.tensor([[1, 1, 1], [0, 1, 1]]).float()
    kl_left = torch.tensor([[0.5, 0.5, 0.5], [0.0, 1.0, 1.0]])
    tr_left = token_rewards(torch.tensor([1.0, 0.0]), kl_left, torch.tensor([0.1, 0.1]), left)
    adv_left = group_advantages(tr_left, [0, 0], left, std_normalize=False)
    assert torch.allclose(adv_left[1], torch.tensor([0.0, -0.525, -0.425]), atol=1e-6)


def test_length_grouped_chunks_put_like_lengths_together():
    from rl.batching import length_grouped_chunks, prompt_order

    # prompts of a long task (200) scattered among short ones (50, 60): the long ones share
    # the first chunk, so the second chunk ends at 60 tokens instead of 200
    expected = [50.0, 200.0, 60.0, 50.0, 200.0, 60.0]
    assert length_grouped_chunks(expected, 3) == [[1, 4, 2], [5, 0, 3]]
    # no estimates yet: consecutive chunks, as drawn; the last one short
    assert length_grouped_chunks([0.0] * 5, 2) == [[0, 1], [2, 3], [4]]
    assert length_grouped_chunks([], 4) == []
    # chunks [[1, 4, 2], [5, 0, 3]] with two samples each come back prompt by prompt
    landed = [p for chunk in length_grouped_chunks(expected, 3) for p in chunk for _ in range(2)]
    order = prompt_order(landed)
    assert [landed[i] for i in order] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert order[:2] == [8, 9]  # prompt 0's two samples, in the order they came
