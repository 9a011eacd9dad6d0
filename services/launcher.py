"""`hybridrl up` / `hybridrl down`: run docker-compose.yml's services as local processes.

The compose file is the single source of truth: each service's command, environment,
depends_on order and health check are taken from it, interpolated with a local environment in
which the service hostnames (``REDIS_HOST``, ``VERIFIER_HOST``, ``RM_HOST``, ``RAY_HEAD_HOST``)
and the bind address (``HYBRIDRL_BIND``) are loopback. The ``redis`` service becomes a local
``redis-server`` when one is on PATH; otherwise it is skipped and the other services run on
their embedded defaults (no ``HYBRIDRL_REDIS_URL``). Started processes are recorded by PID in
``.hybridrl/up.json`` so that ``hybridrl down`` stops exactly them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.text import Text

from services.compose import ComposeError, Service, load, start_order

LOCAL_HOSTS = {
    "HYBRIDRL_BIND": "127.0.0.1",
    "REDIS_HOST": "127.0.0.1",
    "VERIFIER_HOST": "127.0.0.1",
    "RM_HOST": "127.0.0.1",
    "RAY_HEAD_HOST": "127.0.0.1",
}
STATE_DIR = ".hybridrl"
_COLOURS = ["cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan"]
console = Console(highlight=False, soft_wrap=True)


class LaunchError(RuntimeError):
    """A service could not be started or never became healthy."""


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (comments and blank lines skipped, quotes stripped)."""
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        out[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return out


def local_env(project: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The interpolation environment: loopback hostnames <- .env <- the caller's environment."""
    environ = os.environ if environ is None else environ
    return {**LOCAL_HOSTS, **read_dotenv(project / ".env"), **environ}


def resolve_program(argv: list[str]) -> list[str]:
    """Run ``hybridrl``, ``ray`` and ``python`` from this interpreter's environment."""
    if not argv:
        return argv
    head, bindir = argv[0], Path(sys.executable).parent
    if head in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    if (bindir / head).is_file():
        return [str(bindir / head), *argv[1:]]
    found = shutil.which(head)
    return [found or head, *argv[1:]]


@dataclass
class Running:
    service: Service
    proc: subprocess.Popen[bytes]
    colour: str


def _pump(stream: IO[bytes], name: str, colour: str, width: int) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip("\n")
        console.print(Text(f"{name:<{width}} | ", style=colour) + Text(line))


def check_health(service: Service, env: Mapping[str, str], cwd: Path) -> bool:
    """Run the service's health check once; True when it passes (or there is none)."""
    hc = service.healthcheck
    if hc is None:
        return True
    try:
        done = subprocess.run(
            resolve_program(hc.test),
            cwd=cwd,
            env=dict(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=hc.timeout_s,
        )
    except (subprocess.TimeoutExpired, OSError):
        return False
    return done.returncode == 0


def wait_healthy(run: Running, env: Mapping[str, str], cwd: Path) -> None:
    """Poll the health check as Compose does: start period, then ``retries`` failures at most."""
    hc = run.service.healthcheck
    if hc is None:
        return
    started = time.monotonic()
    failures = 0
    while True:
        if run.proc.poll() is not None:
            raise LaunchError(
                f"service {run.service.name!r} exited with code {run.proc.returncode} "
                "before it became healthy (see its log lines above)"
            )
        if check_health(run.service, env, cwd):
            return
        if time.monotonic() - started > hc.start_period_s:
            failures += 1
            if failures >= hc.retries:
                raise LaunchError(
                    f"service {run.service.name!r} failed its health check {failures} times: "
                    f"{' '.join(hc.test)}"
                )
        time.sleep(hc.interval_s)


class Launcher:
    """Start services in dependency order, wait for health, stream logs, stop by PID."""

    def __init__(self, compose_file: str | Path = "docker-compose.yml", environ=None) -> None:
        self.compose_file = Path(compose_file).resolve()
        self.project = self.compose_file.parent
        self.env = local_env(self.project, environ)
        self.services = load(self.compose_file, self.env)
        self.running: list[Running] = []
        self.state_file = self.project / STATE_DIR / "up.json"

    def plan(self, wanted: list[str] | None) -> list[str]:
        return start_order(self.services, wanted)

    def _service_env(self, service: Service, skipped: set[str]) -> dict[str, str]:
        env = {**self.env, **service.environment}
        if "redis" in skipped:
            # no local redis-server: every service falls back to its embedded default
            env.pop("HYBRIDRL_REDIS_URL", None)
        return {k: v for k, v in env.items() if v != "" or k not in service.environment}

    def up(self, wanted: list[str] | None = None, *, detach: bool = False) -> list[str]:
        """Start ``wanted`` (and their dependencies); returns the names started."""
        if self.state_file.exists() and self._alive_pids():
            raise LaunchError(
                f"services from an earlier `hybridrl up` are still running "
                f"({self.state_file}); run `hybridrl down` first"
            )
        order = self.plan(wanted)
        skipped: set[str] = set()
        width = max(len(n) for n in order)
        log_dir = self.state_file.parent / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for i, name in enumerate(order):
                service = self.services[name]
                if name == "redis" and not shutil.which(
                    service.command[0] if service.command else "redis-server"
                ):
                    console.print(
                        f"[yellow]{name}: no redis-server on PATH; services use their embedded defaults[/]"
                    )
                    skipped.add(name)
                    continue
                if not service.command:
                    raise LaunchError(f"service {name!r} has no command to run locally")
                env = self._service_env(service, skipped)
                argv = resolve_program(service.command)
                colour = _COLOURS[i % len(_COLOURS)]
                out = open(log_dir / f"{name}.log", "ab") if detach else subprocess.PIPE  # noqa: SIM115
                proc = subprocess.Popen(
                    argv,
                    cwd=self.project,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # its own process group: down kills the whole tree
                )
                run = Running(service, proc, colour)
                self.running.append(run)
                self._save_state()
                if not detach:
                    threading.Thread(
                        target=_pump, args=(proc.stdout, name, colour, width), daemon=True
                    ).start()
                console.print(f"[{colour}]{name}[/]: started pid {proc.pid}: {' '.join(argv)}")
                wait_healthy(run, env, self.project)
                if run.service.healthcheck is not None:
                    console.print(f"[{colour}]{name}[/]: healthy")
        except BaseException:
            self.stop()
            raise
        return [r.service.name for r in self.running]

    def wait(self, until: str | None = None) -> int:
        """Block until ``until`` exits (its code) or every service has exited, or Ctrl-C."""
        try:
            while True:
                for run in self.running:
                    code = run.proc.poll()
                    if code is not None and run.service.name == until:
                        console.print(f"{until}: exited with code {code}")
                        return code
                if all(r.proc.poll() is not None for r in self.running):
                    return max((r.proc.returncode or 0) for r in self.running)
                time.sleep(0.5)
        except KeyboardInterrupt:
            console.print("stopping (Ctrl-C)")
            return 130
        finally:
            self.stop()

    def _save_state(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "compose_file": str(self.compose_file),
            "services": [
                {"name": r.service.name, "pid": r.proc.pid, "argv": r.proc.args}
                for r in self.running
            ],
        }
        self.state_file.write_text(json.dumps(state, indent=2))

    def _alive_pids(self) -> list[int]:
        return [s["pid"] for s in read_state(self.state_file) if pid_alive(s["pid"])]

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop what this launcher started (reverse order), then forget the state file."""
        stop_pids([r.proc.pid for r in reversed(self.running)], grace_s)
        for r in self.running:
            try:
                r.proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        self.running.clear()
        self.state_file.unlink(missing_ok=True)


def read_state(state_file: Path) -> list[dict]:
    try:
        return json.loads(state_file.read_text())["services"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return []


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def stop_pids(pids: list[int], grace_s: float = 10.0) -> None:
    """SIGTERM each process group, wait up to ``grace_s``, then SIGKILL what is left."""
    for pid in pids:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        _signal_group(pid, signal.SIGKILL)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # each service leads its own group (start_new_session)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def down(project: str | Path = ".", grace_s: float = 10.0) -> list[str]:
    """Stop the services a detached `hybridrl up` started in ``project``; returns their names."""
    state_file = Path(project).resolve() / STATE_DIR / "up.json"
    entries = read_state(state_file)
    stop_pids([e["pid"] for e in reversed(entries)], grace_s)
    state_file.unlink(missing_ok=True)
    return [e["name"] for e in entries]


__all__ = ["ComposeError", "LaunchError", "Launcher", "down", "local_env"]
