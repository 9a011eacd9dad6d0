"""End to end: `hybridrl train` against a real Ray head, the real verifier API and RM server.

A Ray head per test (``ray start --head`` in its own process group and temp dir, so the
teardown kills exactly that head and never another Ray on the machine). The policy is the
"test" preset taught for a second to answer ``<think>1</think>1``: its responses follow the
format, so both reward services are really called.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import find_free_port, find_free_ports

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TRAIN_N, TEST_N = 64, 8


@dataclass
class RayHead:
    gcs: str
    dashboard: str
    env: dict[str, str]


# one head per test, every port it listens on chosen free: Ray's default job-agent port, 52365,
# lies in Linux's ephemeral range, so any outgoing connection on the machine may already hold it,
# and then `ray job submit` answers "No available agent" for as long as the head lives
@pytest.fixture
def ray_head():
    # a short temp dir: Ray's unix socket paths must stay under ~100 characters
    temp = tempfile.mkdtemp(prefix="hrl-ray-", dir="/tmp")
    port, dash, agent = find_free_ports(3)
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        # Ray 2.60 heads require a token; clients opt in and read ~/.ray/auth_token
        "RAY_AUTH_MODE": "token",
    }
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--port", str(port), "--dashboard-port", str(dash),
         "--dashboard-agent-listen-port", str(agent),
         "--num-cpus", "2", "--temp-dir", temp, "--include-dashboard", "true",
         "--disable-usage-stats"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    out, _ = proc.communicate(timeout=180)
    if proc.returncode != 0:
        shutil.rmtree(temp, ignore_errors=True)
        pytest.fail(f"ray start failed:\n{out.decode()[-3000:]}")
    try:
        yield RayHead(f"127.0.0.1:{port}", f"http://127.0.0.1:{dash}", env)
    finally:
        # the head's processes all live in the process group `ray start` created
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            time.sleep(3)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def rl_data(tmp_path_factory):
    from hybridrl.records import write_records
    from synth.registry import generate

    out = tmp_path_factory.mktemp("rl-data")
    write_records(generate(["counting", "caption"], TRAIN_N, seed=3), out / "train.parquet")
    write_records(generate(["counting", "caption"], TEST_N, split="test"), out / "test.parquet")
    return out


@pytest.fixture(scope="module")
def formatted_policy(tmp_path_factory, rl_data):
    """The test preset, fitted for a moment to answer `<think>1</think>1` to any prompt."""
    import torch

    import vlm
    from hybridrl.records import read_records

    recs = read_records(rl_data / "train.parquet")[:4]
    model, proc = vlm.create("test", seed=0)
    batch = proc.training_batch(
        [[m.model_dump() for m in r.prompt] for r in recs],
        ["<think>1</think>1"] * len(recs),
        [[i.model_dump() for i in r.images] for r in recs],
    )
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    out = tmp_path_factory.mktemp("policy")
    vlm.save(model, proc, out)
    return out


@pytest.fixture(scope="module")
def rm_server(formatted_policy, tmp_path_factory):
    from reward_model.client import RewardModelClient

    port = find_free_port()
    log = open(tmp_path_factory.mktemp("rm") / "rm.log", "wb")
    proc = subprocess.Popen(
        [str(BIN / "hybridrl"), "serve", "reward-model", "--model", str(formatted_policy),
         "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    address = f"127.0.0.1:{port}"
    RewardModelClient(address).wait_ready(180)
    yield address
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def _train_args(data: Path, policy: Path, runs: Path, extra: list[str]) -> list[str]:
    return [
        "--config", str(REPO / "configs" / "test_tiny.yaml"),
        f"model.path={policy}", "model.preset=null",
        f"data.train={data / 'train.parquet'}", f"data.test={data / 'test.parquet'}",
        f"trainer.runs_dir={runs}", "rollout.max_new_tokens=16",
        *extra,
    ]  # fmt: skip


def test_services_checkpoint_sigkill_and_resume(
    ray_head, rl_data, formatted_policy, rm_server, verifier_server, tmp_path
):
    """Two checkpointed iterations, a SIGKILLed controller, a resume: every iteration runs once
    in the final record, and the prompt ledger shows no prompt skipped or repeated."""
    from rl.data import SqliteLedger, draw
    from rl.tracking import latest_per_iteration, read_jsonl

    runs = tmp_path / "runs"
    run_dir = runs / "e2e"
    args = _train_args(
        rl_data, formatted_policy, runs,
        ["trainer.name=e2e", "trainer.iterations=5", "trainer.save_every=1",
         f"reward.verifier_url={verifier_server.url}",
         f"reward.reward_model_address={rm_server}"],
    )  # fmt: skip
    env = {**ray_head.env, "RAY_ADDRESS": ray_head.gcs}
    log1 = open(tmp_path / "first.log", "wb")
    first = subprocess.Popen(
        [str(BIN / "hybridrl"), "train", *args], env=env, stdout=log1, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 400
    while not (run_dir / "step_2" / "COMPLETE").exists():
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-4000:]
        assert time.monotonic() < deadline, "no second checkpoint in time"
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)  # the controller dies mid-run, no cleanup at all
    first.wait()
    log1.close()
    killed_at = len(latest_per_iteration(read_jsonl(run_dir / "metrics.jsonl")))
    assert killed_at < 5, "the first run finished before it could be killed"

    second = subprocess.run(
        [str(BIN / "hybridrl"), "train", *args, "--resume"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    out = second.stdout + second.stderr
    assert second.returncode == 0, out[-4000:]
    assert "resumed from" in out and "step_" in out

    ledger = SqliteLedger(run_dir / "ledger.sqlite").entries()
    assert [it for it, _, _ in ledger] == [1, 2, 3, 4, 5]
    assert [pos for _, pos, _ in ledger] == [0, 4, 8, 12, 16]
    consumed = [i for _, _, idx in ledger for i in idx]
    assert consumed == draw(TRAIN_N, 0, 0, 20)  # the uninterrupted stream, in order
    assert len(set(consumed)) == len(consumed)  # 20 of 64 prompts: none twice

    rows = latest_per_iteration(read_jsonl(run_dir / "metrics.jsonl"))
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4, 5]
    assert all(r["samples/excluded"] == 0 for r in rows)
    assert all("reward/rule" in r and "reward/model" in r for r in rows)  # both services
    assert max(r["format/rate"] for r in rows) > 0
    assert rows[0]["check/rollout_logprob_max_diff"] < 1e-4
    evals = [json.loads(x) for x in (run_dir / "eval.jsonl").read_text().splitlines()]
    assert [e["label"] for e in evals] == ["before", "after"]
    assert (run_dir / "report.md").read_text().count("| before | after |") == 1
    import vlm

    model, _ = vlm.load(run_dir / "step_5" / "actor")  # a Hugging Face checkpoint
    assert model.config.model_type == "qwen2_vl"


def test_ray_job_submit_runs_a_tiny_training(ray_head, rl_data, formatted_policy, tmp_path):
    runs = tmp_path / "runs"
    args = _train_args(
        rl_data, formatted_policy, runs,
        ["trainer.name=job", "trainer.iterations=1", "trainer.save_every=0", "data.tasks=[counting]",
         # PPO-ptx on the same records' reference responses: the actor loads them in the job
         f"ptx.data=[{rl_data / 'train.parquet'}]", "ptx.coef=0.1", "ptx.batch_size=2"],
    )  # fmt: skip
    for _ in range(20):
        proc = subprocess.run(
            [str(BIN / "ray"), "job", "submit", "--address", ray_head.dashboard,
             "--working-dir", str(REPO), "--", "hybridrl", "train", *args],
            env=ray_head.env, capture_output=True, text=True, timeout=600, cwd=REPO,
        )  # fmt: skip
        out = proc.stdout + proc.stderr
        # a fresh head's job agent can take a while to come up on a busy machine
        if "No available agent to submit job" not in out:
            break
        time.sleep(3)
    assert proc.returncode == 0, out[-4000:]
    assert "succeeded" in out
    assert "ray: cluster" in out  # the job's driver joined the head, no second Ray
    assert (runs / "job" / "step_1" / "actor" / "config.json").is_file()
    assert "ptx: 64 records" in out
    from rl.tracking import read_jsonl

    (row,) = read_jsonl(runs / "job" / "metrics.jsonl")
    assert row["actor/ptx_loss"] > 0
