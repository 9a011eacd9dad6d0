"""DeepSpeed policy workers as real Ray actors: data parallelism, update direction, dead roles."""

from __future__ import annotations

import os
import signal
import time

import pytest
import torch

from rl.batching import RolloutBatch, TokenIds, minibatches, plan_inference, plan_updates
from rl.cluster import Role, WorkerDiedError
from rl.config import ActorConfig, ModelConfig, OptimConfig
from synth.registry import generate as synth

ray = pytest.importorskip("ray")

MODEL = ModelConfig(preset="test", init_seed=2)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024 * 1024)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def rollouts():
    import vlm

    _, proc = vlm.create("test")
    recs = synth(["math", "grounding"], 2, seed=9)
    enc = [
        proc.encode([m.model_dump() for m in r.prompt], [i.model_dump() for i in r.images], [])
        for r in recs
    ]
    text = ["<think>1+1=2</think>\\boxed{2}", "<think>x</think><bbox>0 0 9 9</bbox>", "ab", "cd"]
    responses = [proc.encode_response(t) for t in text]
    return RolloutBatch(enc, [0, 1, 0, 1], responses), TokenIds(
        proc.pad_token_id, proc.image_token_id, proc.video_token_id
    )


def _group(world: int, cfg: ActorConfig) -> Role:
    from rl.workers import PolicyTrainer

    handles = [ray.remote(PolicyTrainer).options(num_cpus=0.25).remote(1) for _ in range(world)]
    role = Role("actor", handles)
    addr, port = role.get(handles[0].rendezvous.remote())
    role.get([h.setup.remote(MODEL, cfg, r, world, addr, port) for r, h in enumerate(handles)])
    return role


def _logprobs(role: Role, batch: RolloutBatch) -> torch.Tensor:
    plans, real = plan_inference(len(batch), len(role), 2)
    results = role.get(role.call_each("logprobs", [(batch, p, 1.0) for p in plans]))
    out = torch.zeros(len(batch), batch.max_response_len)
    for rows, (lp, _) in zip(real, results, strict=True):
        if rows:
            out[rows] = lp[: len(rows)]
    return out


def _update(
    role: Role,
    batch: RolloutBatch,
    adv: torch.Tensor,
    old: torch.Tensor,
    agg: str,
    ptx_update: int | None = None,
):
    n = len(batch)
    mask = torch.zeros(n, batch.max_response_len)
    for i, r in enumerate(batch.responses):
        mask[i, : len(r)] = 1
    mbs = minibatches(n, n, 1, seed=0)
    plans = plan_updates(mbs, mask.sum(-1).tolist(), len(role), 1, agg)
    tensors = {"old_logp": old, "advantages": adv * mask, "mask": mask}
    calls = [(batch, tensors, p, 1.0, ptx_update) for p in plans]
    return role.get(role.call_each("update", calls))[0]


def test_data_parallel_update_matches_one_rank_and_follows_the_advantage(local_ray, rollouts):
    """Same minibatch, one update: 2 DeepSpeed ranks (ZeRO-2, gloo) give the single rank's
    (ZeRO-1) gradient norm and weights, so loss scaling over ranks and micro-batches is right;
    then a second update raises the logprob of positive-advantage responses and lowers the rest."""
    batch, _ = rollouts
    adv = torch.tensor([1.0, -0.5, 0.3, -1.0])[:, None].expand(4, batch.max_response_len)
    results, roles = {}, {}
    for world, stage in ((1, 1), (2, 2)):
        cfg = ActorConfig(
            optim=OptimConfig(lr=1e-3, grad_clip=0.0), micro_batch_size=1, zero_stage=stage
        )
        role = roles[world] = _group(world, cfg)
        old = _logprobs(role, batch)
        stats = _update(role, batch, adv.clone(), old, "token-mean")
        results[world] = (stats[0]["grad_norm"], _logprobs(role, batch), old)
    (g1, new1, old1), (g2, new2, old2) = results[1], results[2]
    assert torch.allclose(old1, old2, atol=1e-6)
    assert g2 == pytest.approx(g1, rel=1e-4)
    assert torch.allclose(new1, new2, atol=1e-5)
    assert not torch.allclose(new1, old1, atol=1e-4)  # the update did change the policy

    role = roles[2]
    old = _logprobs(role, batch)
    sign = torch.tensor([1.0, 1.0, -1.0, -1.0])[:, None].expand(4, batch.max_response_len)
    stats = _update(role, batch, sign.clone(), old, "seq-mean-token-mean")
    new = _logprobs(role, batch)
    seq = lambda lp, i: float(lp[i, : len(batch.responses[i])].sum())  # noqa: E731
    assert seq(new, 0) > seq(old, 0) and seq(new, 1) > seq(old, 1)
    assert seq(new, 2) < seq(old, 2) and seq(new, 3) < seq(old, 3)
    assert stats[0]["clip_frac"] == 0.0  # old logprobs are the current policy's: ratio 1
    for r in roles.values():
        for h in r.handles:
            ray.kill(h)


def test_ptx_updates_fit_the_sft_records_on_two_ranks(local_ray, rollouts, tmp_path):
    """PPO-ptx with zero advantages: the policy gradient is zero, so what moves the policy is
    the supervised term alone, and the records' NLL falls on both ranks' shares."""
    from hybridrl.records import write_records
    from rl.config import PtxConfig

    batch, _ = rollouts
    write_records(synth(["math", "counting"], 8, seed=4), tmp_path / "sft.parquet")
    ptx = PtxConfig(data=[str(tmp_path / "sft.parquet")], coef=1.0, batch_size=8)
    cfg = ActorConfig(optim=OptimConfig(lr=3e-3), micro_batch_size=2, zero_stage=1)
    zero = torch.zeros(len(batch), batch.max_response_len)
    role = _group(2, cfg)
    info = role.get(role.call("setup_ptx", ptx, 0))
    assert info == [{"records": 8, "too_long": 0}] * 2
    old = _logprobs(role, batch)
    nll = [_update(role, batch, zero, old, "token-mean", ptx_update=0)[0]["ptx_loss"]]
    for _ in range(3):  # update 0 again: batch_size 8 = all records, the same ones each time
        nll.append(_update(role, batch, zero, old, "token-mean", ptx_update=0)[0]["ptx_loss"])
    assert nll[-1] < nll[0] - 0.05, nll
    moved = _logprobs(role, batch)
    assert not torch.allclose(moved, old, atol=1e-4)
    stats = _update(role, batch, zero, moved, "token-mean")  # no ptx_update: PPO alone
    assert "ptx_loss" not in stats[0]
    for h in role.handles:
        ray.kill(h)


def test_a_dead_worker_is_reported_with_its_role(local_ray):
    from rl.workers import ReferenceWorker

    handle = ray.remote(ReferenceWorker).options(num_cpus=0.25).remote(MODEL, 1)
    role = Role("reference", [handle])
    pid = role.get(handle.pid.remote())
    assert pid > 0
    # kill the actor's process and wait until it is gone: ray.kill is asynchronous, and a call
    # submitted before it takes effect may still be answered
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
        time.sleep(0.1)
    with pytest.raises(WorkerDiedError, match="the reference worker died"):
        role.get(handle.pid.remote())
