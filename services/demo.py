"""``make verifier-demo``: start the verifier API as a real uvicorn subprocess, call it, stop it.

``python -m services.demo`` picks a free port, runs ``hybridrl serve verifier`` there, makes a
few calls (single items of several verifiers, a batch, OpenRLHF's ``/get_reward``) and prints
what comes back. `local_service` is the launcher; bench/verifier_throughput.py uses it too.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class LocalService:
    url: str
    pid: int


@contextmanager
def local_service(
    env: dict[str, str] | None = None, args: list[str] | None = None, ready_timeout_s: float = 120
) -> Iterator[LocalService]:
    """Run ``hybridrl serve verifier`` on a free port until the block ends; yields its URL and pid."""
    port = free_port()
    full_env = {**os.environ, **(env or {})}
    cmd = [
        sys.executable,
        "-m",
        "hybridrl.cli",
        "serve",
        "verifier",
        "--port",
        str(port),
        *(args or []),
    ]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + ready_timeout_s
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(
                        f"verifier service exited:\n{log.read().decode(errors='replace')}"
                    )
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"verifier service not ready after {ready_timeout_s:.0f}s")
                time.sleep(0.1)
            yield LocalService(url, proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _show(title: str, payload: object) -> None:
    print(f"\n== {title}")
    text = json.dumps(payload, ensure_ascii=False)
    print(text if len(text) <= 800 else text[:800] + " ...")


def main() -> None:
    """Start the service, make the demo calls, stop it."""
    print("starting the verifier service (a uvicorn subprocess on a free port)...")
    t0 = time.monotonic()
    with local_service(env={"HYBRIDRL_WORKERS": "2"}) as service:
        url = service.url
        print(f"ready at {url} after {time.monotonic() - t0:.1f}s")
        with httpx.Client(base_url=url, timeout=60) as c:
            known = c.get("/v1/verifiers").json()
            print("verifiers:", ", ".join(f"{n} (v{v['version']})" for n, v in known.items()))
            calls = [
                (
                    "math",
                    "<think>1/4 + 1/4</think>The answer is $\\boxed{\\frac{2}{4}}$.",
                    {"answer": "0.5"},
                    {},
                ),
                ("math", "<think>guess</think>\\boxed{3}", {"answer": "1/2"}, {}),
                (
                    "grounding",
                    "<think>the cat</think><bbox>100 120 400 500</bbox>",
                    {"boxes": [[110, 110, 410, 490]]},
                    {},
                ),
                ("counting", "<think>one, two, three</think>3", {"count": 3}, {}),
                ("puzzle", "<think>shape B fits</think>The answer is B.", {"answer": "B"}, {}),
                (
                    "instruction",
                    "<think>short</think>hello world, in lowercase",
                    {"constraints": [{"id": "change_case:english_lowercase"}]},
                    {},
                ),
                ("format", "no think block here", None, {}),
            ]
            items = [
                {"verifier": v, "response": r, "reference": ref, "options": o}
                for v, r, ref, o in calls
                if v in known
            ]
            for item in items[:3]:
                _show(
                    f"POST /v1/verify ({item['verifier']})", c.post("/v1/verify", json=item).json()
                )
            again = c.post("/v1/verify", json=items[0]).json()
            print(f"\nsame call again: cached={again['cached']} elapsed_ms={again['elapsed_ms']}")
            batch = c.post("/v1/verify/batch", json={"items": items}).json()["results"]
            print("\n== POST /v1/verify/batch")
            for item, res in zip(items, batch, strict=True):
                print(
                    f"  {item['verifier']:<12} reward={res['reward']:.2f} correct={res['correct']!s:<5} "
                    f"format_ok={res['format_ok']!s:<5} cached={res['cached']!s:<5} error={res['error']}"
                )
            prompt = "Q: what is 6 x 7? A: "
            reward = c.post(
                "/get_reward",
                json={
                    "query": [
                        prompt + "<think>6*7</think>\\boxed{42}",
                        prompt + "<think>hmm</think>41",
                    ],
                    "prompts": [prompt, prompt],
                    "labels": [
                        "42",
                        json.dumps({"verifier": "math", "reference": {"answer": "42"}}),
                    ],
                },
            ).json()
            _show("POST /get_reward (OpenRLHF contract)", reward)
            _show("GET /healthz", c.get("/healthz").json())
    print("\nservice stopped.")


if __name__ == "__main__":
    main()
