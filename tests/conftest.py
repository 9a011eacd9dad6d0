"""Shared fixtures: free ports, a real redis-server, a real verifier service (uvicorn subprocess).

``verifier_server`` (session-wide) runs ``hybridrl serve verifier`` with the test-only
verifiers of ``tests/probe_verifiers.py`` loaded (HYBRIDRL_EXTRA_VERIFIER_MODULES) and the
debug route on; ``verifier_server_factory`` starts more servers with other settings.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_DIR = TESTS_DIR.parent
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
PROBE_TIMEOUT_S = 2.0  # the session verifier server's per-item timeout

# CLI errors are drawn in rich boxes as wide as the terminal: with the default 80 columns a
# message naming a long tmp path wraps mid-phrase, and tests that look for the phrase fail or
# pass depending on the path's length. A wide console keeps each message on one line (typer
# reads TERMINAL_WIDTH when typer.rich_utils is first imported, which is after this line).
os.environ["TERMINAL_WIDTH"] = "1000"


def find_free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 right now.

    All ``n`` sockets stay bound until every port is chosen: ports picked one after another
    may repeat (the kernel hands a just-released port out again), and two services told the
    same port make one of them fail at start-up."""
    with contextlib.ExitStack() as stack:
        socks = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(n)
        ]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def find_free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    return find_free_ports(1)[0]


@pytest.fixture
def free_port() -> int:
    return find_free_port()


def _stop(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM, then SIGKILL the process group this fixture created (server, zygote, workers)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # our own session, started with start_new_session
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


# --------------------------------------------------------------------------- redis


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen
    workdir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        """SIGKILL: Redis vanishes without a goodbye."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def start(self) -> None:
        """(Re)start on the same port."""
        self.proc = _launch_redis(self.port, self.workdir)


def _launch_redis(port: int, workdir: Path) -> subprocess.Popen:
    cmd = [
        REDIS_SERVER,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(workdir),
        "--protected-mode", "no",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not answer PING within 10s")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server on a free port, no persistence; stopped after the test."""
    if not Path(REDIS_SERVER).exists():
        pytest.fail(f"redis-server not found at {REDIS_SERVER} (install redis-server)")
    port = find_free_port()
    server = RedisServer(port, _launch_redis(port, tmp_path), tmp_path)
    yield server
    server.kill()


# --------------------------------------------------------------------------- verifier service


@dataclass
class VerifierServer:
    port: int
    proc: subprocess.Popen
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **kw: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 60.0), **kw)  # type: ignore[arg-type]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        _stop(self.proc)


def hybridrl_command() -> list[str]:
    """The `hybridrl` entry point of this environment (or ``python -m hybridrl.cli``)."""
    exe = Path(sys.executable).parent / "hybridrl"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "hybridrl.cli"]


def start_verifier_server(
    log_dir: Path, env: dict[str, str] | None = None, args: list[str] | None = None
) -> VerifierServer:
    """Launch ``hybridrl serve verifier`` on a free port and wait until /healthz answers."""
    port = find_free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRIDRL_")}
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(TESTS_DIR), str(REPO_DIR), full_env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    full_env.update(
        {
            "HYBRIDRL_EXTRA_VERIFIER_MODULES": "probe_verifiers",
            "HYBRIDRL_DEBUG_ROUTES": "1",
            "HYBRIDRL_WORKERS": "2",
            "HYBRIDRL_TIMEOUT_S": str(PROBE_TIMEOUT_S),
            "HYBRIDRL_MEMORY_MB": "1024",
        }
    )
    full_env.update(env or {})
    log_path = log_dir / f"verifier-{port}.log"
    cmd = [*hybridrl_command(), "serve", "verifier", "--port", str(port), *(args or [])]
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(
            cmd,
            env=full_env,
            cwd=REPO_DIR,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = VerifierServer(port, proc, log_path, full_env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"verifier server exited ({proc.returncode}):\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1.0).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"verifier server not healthy within 120s:\n{server.log()}")


@pytest.fixture(scope="session")
def verifier_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VerifierServer]:
    """One verifier service for the session (probe verifiers loaded, 2 workers, 2 s timeout)."""
    server = start_verifier_server(tmp_path_factory.mktemp("verifier-server"))
    yield server
    server.stop()


@pytest.fixture
def verifier_server_factory(tmp_path: Path) -> Iterator[Callable[..., VerifierServer]]:
    """Start extra verifier services (``factory(env={...})``); all stopped after the test."""
    started: list[VerifierServer] = []

    def factory(env: dict[str, str] | None = None, args: list[str] | None = None) -> VerifierServer:
        server = start_verifier_server(tmp_path, env, args)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()
