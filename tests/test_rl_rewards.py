"""Reward routing: format check, verifiers in process and over HTTP, the RM, failures excluded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rl.config import FormatConfig, RewardConfig
from rl.rewards import RewardRouter, verifier_name
from synth.registry import generate as synth


@pytest.fixture(scope="module")
def mixed():
    # math, grounding, caption (rule, rule, model)
    recs = synth(["math", "grounding", "caption"], 3, seed=5)
    good = [r.extra_info.reference_response for r in recs]
    return recs, good


def test_in_process_rewards_format_and_sources(mixed):
    recs, good = mixed
    router = RewardRouter(RewardConfig(), FormatConfig(penalty=-0.5))
    rule = [recs[0], recs[1], recs[0], recs[1]]
    responses = [good[0], good[1], "no think block " + good[0], "<think>x</think>\\boxed{nope}"]
    scores = router.score(rule, responses)
    assert [s.reward for s in scores[:2]] == [1.0, 1.0]
    assert scores[0].correct and scores[0].source == "rule"
    assert scores[2].reward == -0.5 and not scores[2].format_ok  # the format penalty
    assert scores[3].reward == 0.0 and scores[3].format_ok and scores[3].error is None
    router.close()


def test_verifier_errors_and_dead_services_exclude_samples(mixed):
    recs, good = mixed
    bad_ref = recs[0].model_copy(deep=True)
    bad_ref.reward_model.ground_truth = {"not": "a math reference"}
    router = RewardRouter(RewardConfig(), FormatConfig())
    s = router.score([bad_ref], [good[0]])[0]
    assert s.reward is None and s.error  # a verifier error is a failure, not a 0 score

    # nothing listens on port 9 (discard): the whole call fails, every sample is excluded
    dead = RewardRouter(
        RewardConfig(
            verifier_url="http://127.0.0.1:9",
            verifier_timeout_s=2,
            reward_model_address="127.0.0.1:9",
            reward_model_timeout_s=2,
        ),
        FormatConfig(),
    )
    out = dead.score([recs[0], recs[2]], [good[0], good[2]])
    assert [x.reward for x in out] == [None, None]
    assert "verifier call failed" in out[0].error and "reward model call failed" in out[1].error
    # a response that breaks the format needs no service at all
    assert dead.score([recs[0]], ["plain"])[0].reward == 0.0
    router.close()
    dead.close()


def test_model_prompts_need_a_reward_model(mixed):
    recs, good = mixed
    router = RewardRouter(RewardConfig(), FormatConfig())
    with pytest.raises(RuntimeError, match="reward_model_address"):
        router.score([recs[2]], [good[2]])


def test_http_verifier_matches_in_process(mixed, verifier_server):
    recs, good = mixed
    rule = [recs[0], recs[1], recs[1]]
    responses = [good[0], good[1], "<think>far</think><bbox>900 900 1000 1000</bbox>"]
    local = RewardRouter(RewardConfig(), FormatConfig()).score(rule, responses)
    remote = RewardRouter(RewardConfig(verifier_url=verifier_server.url), FormatConfig()).score(
        rule, responses
    )
    assert [(s.reward, s.correct) for s in remote] == [(s.reward, s.correct) for s in local]
    assert remote[0].reward == 1.0 and remote[2].reward < 1.0


def test_verifier_name_falls_back_to_data_source(mixed):
    recs, _ = mixed
    rec = recs[0].model_copy(deep=True)
    rec.extra_info.verifier = None
    assert verifier_name(rec) == "math"


@pytest.fixture(scope="module")
def rm_checkpoint(tmp_path_factory):
    import vlm

    out = tmp_path_factory.mktemp("rm")
    model, proc = vlm.create("test", seed=11)
    vlm.save(model, proc, out)
    return str(out)


def test_embedded_and_grpc_reward_model_agree(mixed, rm_checkpoint, tmp_path, free_port):
    recs, good = mixed
    port = free_port
    exe = Path(sys.executable).parent / "hybridrl"
    log = open(tmp_path / "rm.log", "wb")
    proc = subprocess.Popen(
        [str(exe), "serve", "reward-model", "--model", rm_checkpoint, "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        from reward_model.client import RewardModelClient

        RewardModelClient(f"127.0.0.1:{port}").wait_ready(120)
        items = [recs[2], recs[2]]
        responses = [good[2], "<think>hm</think>a purple hexagon"]
        embedded = RewardRouter(
            RewardConfig(reward_model_path=rm_checkpoint), FormatConfig()
        ).score(items, responses)
        served = RewardRouter(
            RewardConfig(reward_model_address=f"127.0.0.1:{port}"), FormatConfig()
        ).score(items, responses)
        for e, s in zip(embedded, served, strict=True):
            assert s.source == "model" and 0.0 <= s.reward <= 1.0
            assert s.reward == pytest.approx(e.reward, abs=1e-4)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_sandboxed_verifiers_match_in_process(mixed):
    recs, good = mixed
    rule = [recs[0], recs[1], recs[0]]
    responses = [good[0], good[1], "<think>no</think>\\boxed{-1}"]
    local = RewardRouter(RewardConfig(), FormatConfig()).score(rule, responses)
    router = RewardRouter(
        RewardConfig(verifier_sandbox_workers=1, verifier_timeout_s=20), FormatConfig()
    )
    try:
        boxed = router.score(rule, responses)
    finally:
        router.close()
    assert [(s.reward, s.correct) for s in boxed] == [(s.reward, s.correct) for s in local]
    assert [s.reward for s in boxed] == [1.0, 1.0, 0.0]
