"""The verifier HTTP API against a real uvicorn subprocess (see conftest.verifier_server)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid

import httpx
import pytest
from conftest import PROBE_TIMEOUT_S, VerifierServer, hybridrl_command
from prometheus_client.parser import text_string_to_metric_families

from verifiers import registry

GOOD = "<think>reasoning</think>the answer"


def _uid() -> str:
    """A unique suffix, so that a test's items never hit another test's cache entries."""
    return uuid.uuid4().hex[:8]


def _metric(server: VerifierServer, name: str, **labels: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_verify_then_cached(verifier_server: VerifierServer) -> None:
    body = {"verifier": "format", "response": f"{GOOD} {_uid()}"}
    with verifier_server.client() as c:
        first = c.post("/v1/verify", json=body)
        second = c.post("/v1/verify", json=body)
    assert first.status_code == 200, first.text
    a, b = first.json(), second.json()
    assert set(a) == {
        "verifier",
        "reward",
        "correct",
        "format_ok",
        "details",
        "error",
        "cached",
        "elapsed_ms",
    }
    assert (a["reward"], a["correct"], a["format_ok"], a["cached"]) == (1.0, True, True, False)
    assert b["cached"] is True
    assert {k: v for k, v in a.items() if k not in ("cached", "elapsed_ms")} == {
        k: v for k, v in b.items() if k not in ("cached", "elapsed_ms")
    }
    assert a["elapsed_ms"] > 0


def test_options_are_part_of_the_cache_key(verifier_server: VerifierServer) -> None:
    response = f"plain text {_uid()}"
    with verifier_server.client() as c:
        plain = c.post("/v1/verify", json={"verifier": "format", "response": response}).json()
        strict = c.post(
            "/v1/verify",
            json={"verifier": "format", "response": response, "options": {"require_format": True}},
        ).json()
    assert plain["cached"] is False and strict["cached"] is False


def test_unknown_verifier_lists_the_known_ones(verifier_server: VerifierServer) -> None:
    r = httpx.post(f"{verifier_server.url}/v1/verify", json={"verifier": "nope", "response": "x"})
    assert r.status_code == 422
    assert "unknown verifier 'nope'" in r.json()["error"]
    assert "format" in r.json()["known"] and "format" in r.json()["error"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"verifier": "format"}, "body.response"),
        ({"response": "x"}, "body.verifier"),
        ({"verifier": "format", "response": 5}, "body.response"),
        ({"verifier": "format", "response": "x", "options": []}, "body.options"),
        ({"verifier": "format", "response": "x", "surprise": 1}, "body.surprise"),
        ({"verifier": "", "response": "x"}, "body.verifier"),
    ],
)
def test_schema_errors_name_the_field(
    verifier_server: VerifierServer, body: dict, field: str
) -> None:
    r = httpx.post(f"{verifier_server.url}/v1/verify", json=body)
    assert r.status_code == 422
    assert field in r.json()["error"]


def test_malformed_json_and_bad_encoding_are_4xx(verifier_server: VerifierServer) -> None:
    url = f"{verifier_server.url}/v1/verify"
    headers = {"content-type": "application/json"}
    broken = httpx.post(url, content=b'{"verifier": "format", "response": ', headers=headers)
    assert broken.status_code == 422 and "JSON" in broken.json()["error"]
    not_utf8 = httpx.post(
        url, content=b'{"verifier": "format", "response": "\xff\xfe"}', headers=headers
    )
    assert not_utf8.status_code == 400 and "UTF-8" in not_utf8.json()["error"]
    # curl -d sends form-encoded content: the body is still read as the JSON it is
    form = httpx.post(
        url,
        content=json.dumps({"verifier": "format", "response": GOOD}).encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 200 and form.json()["correct"] is True


def test_oversized_bodies_get_413(verifier_server: VerifierServer) -> None:
    url = f"{verifier_server.url}/v1/verify"
    big = json.dumps({"verifier": "format", "response": "a" * (9 * 1024 * 1024)}).encode()
    declared = httpx.post(
        url, content=big, headers={"content-type": "application/json"}, timeout=60
    )
    assert declared.status_code == 413 and "too large" in declared.json()["error"]

    def chunks():  # no Content-Length: only the streamed byte count can catch it
        yield b'{"verifier": "format", "response": "'
        for _ in range(9):
            yield b"a" * (1024 * 1024)
        yield b'"}'

    streamed = httpx.post(
        url, content=chunks(), headers={"content-type": "application/json"}, timeout=60
    )
    assert streamed.status_code == 413
    assert httpx.get(f"{verifier_server.url}/healthz").status_code == 200


def test_batch_keeps_order_and_isolates_bad_items(verifier_server: VerifierServer) -> None:
    u = _uid()
    items = [
        {"verifier": "format", "response": f"{GOOD} {u}"},
        {"verifier": "nope", "response": "x"},
        {
            "verifier": "grounding",
            "response": "<bbox>1 2 3 4</bbox>",
            "reference": {"boxes": "not boxes"},
        },
        {"verifier": "format", "response": f"no think {u}"},
        {"verifier": "probe_crash", "response": u},
        {"verifier": "probe_pid", "response": "x" * 7},
    ]
    r = httpx.post(f"{verifier_server.url}/v1/verify/batch", json={"items": items}, timeout=60)
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["verifier"] for x in res] == [i["verifier"] for i in items]
    assert res[0]["correct"] is True and res[0]["error"] is None
    assert "unknown verifier 'nope'" in res[1]["error"]
    assert res[2]["error"].startswith("invalid reference for 'grounding'")
    assert res[3]["correct"] is False and res[3]["error"] is None
    assert res[4]["error"] == "worker crashed (exit code -9)"
    assert res[5]["details"]["chars"] == 7


def test_batch_validation_names_the_item(verifier_server: VerifierServer) -> None:
    items = [{"verifier": "format", "response": "x"}, {"verifier": "format"}]
    r = httpx.post(f"{verifier_server.url}/v1/verify/batch", json={"items": items})
    assert r.status_code == 422 and "body.items.1.response" in r.json()["error"]


def test_timed_out_item_does_not_delay_the_rest(verifier_server: VerifierServer) -> None:
    items = [{"verifier": "probe_sleep", "response": _uid(), "options": {"seconds": 60}}]
    items += [{"verifier": "probe_pid", "response": "y" * i} for i in range(12)]
    t0 = time.monotonic()
    r = httpx.post(f"{verifier_server.url}/v1/verify/batch", json={"items": items}, timeout=60)
    assert time.monotonic() - t0 < PROBE_TIMEOUT_S + 15  # returned within its timeout (+margin)
    res = r.json()["results"]
    slow, fast = res[0], res[1:]
    assert slow["error"] == f"timeout after {PROBE_TIMEOUT_S}s" and slow["cached"] is False
    assert [x["details"]["chars"] for x in fast] == list(range(12))
    assert max(x["elapsed_ms"] for x in fast) < slow["elapsed_ms"]
    # a timeout is never cached: the same item times out again
    again = httpx.post(f"{verifier_server.url}/v1/verify", json=items[0], timeout=60).json()
    assert again["cached"] is False and again["error"].startswith("timeout")


def test_worker_killed_mid_batch_via_debug_route(verifier_server: VerifierServer) -> None:
    items = [{"verifier": "probe_pid", "response": "z" * i} for i in range(8)]
    items.insert(3, {"verifier": "probe_sleep", "response": _uid(), "options": {"seconds": 60}})
    out: dict = {}
    t = threading.Thread(
        target=lambda: out.update(
            r=httpx.post(
                f"{verifier_server.url}/v1/verify/batch", json={"items": items}, timeout=60
            )
        )
    )
    t.start()
    deadline = time.monotonic() + 20
    victim = None
    while victim is None and time.monotonic() < deadline:
        workers = httpx.get(f"{verifier_server.url}/v1/debug/workers").json()["workers"]
        victim = next((w["pid"] for w in workers if w["busy_verifier"] == "probe_sleep"), None)
        time.sleep(0.02)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    t.join(60)
    res = out["r"].json()["results"]
    assert len(res) == 9
    assert res[3]["error"] == "worker crashed (exit code -9)"
    rest = res[:3] + res[4:]
    assert [x["details"]["chars"] for x in rest] == list(range(8))
    assert all(x["error"] is None for x in rest)


def test_get_reward_openrlhf_contract(verifier_server: VerifierServer) -> None:
    u = _uid()
    prompts = [f"Q{u}: count the shapes. A: ", f"Q{u}: say hi. A: ", "P: ", "P2: "]
    responses = ["<think>three</think>3", f"<think>ok</think>hi {u}", "whatever", "x"]
    labels = [
        json.dumps({"verifier": "counting", "reference": {"count": 3}}),
        json.dumps({"verifier": "format", "reference": None, "options": {}}),
        json.dumps({"reference": 1}),  # no verifier: a bad label, this sample only
        json.dumps({"verifier": "counting", "reference": {"count": 4}}),
    ]
    body = {
        "query": [p + r for p, r in zip(prompts, responses, strict=True)],
        "prompts": prompts,
        "labels": labels,
    }
    r = httpx.post(f"{verifier_server.url}/get_reward", json=body, timeout=60)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["rewards"] == [1.0, 1.0, 0.0, 0.0]
    assert out["scores"] == out["rewards"]
    assert out["extra_logs"]["verifier_error"] == [0.0, 0.0, 1.0, 0.0]
    assert out["extra_logs"]["correct"] == [1.0, 1.0, 0.0, 0.0]


@pytest.mark.skipif("math" not in registry.names(), reason="math verifier not written yet")
def test_get_reward_plain_math_label(verifier_server: VerifierServer) -> None:
    body = {
        "query": [
            "What is 1/2 + 0? <think>easy</think>\\boxed{\\frac{1}{2}}",
            "<think>hm</think>\\boxed{3}",
        ],
        "prompts": ["What is 1/2 + 0? ", ""],
        "labels": ["0.5", "1/2"],
    }
    out = httpx.post(f"{verifier_server.url}/get_reward", json=body, timeout=60).json()
    assert out["rewards"] == [1.0, 0.0]


def test_get_reward_length_mismatch_is_422(verifier_server: VerifierServer) -> None:
    r = httpx.post(f"{verifier_server.url}/get_reward", json={"query": ["a", "b"], "labels": ["1"]})
    assert r.status_code == 422 and "labels" in r.json()["error"]


def test_verifiers_listing_docs_and_health(verifier_server: VerifierServer) -> None:
    with verifier_server.client() as c:
        listing = c.get("/v1/verifiers").json()
        assert listing["format"]["version"] == registry.get("format").version
        assert listing["grounding"]["reference_schema"]["required"] == ["boxes"]
        assert set(registry.names()) <= set(listing)
        assert c.get("/docs").status_code == 200
        assert "/v1/verify/batch" in c.get("/openapi.json").json()["paths"]
        health = c.get("/healthz").json()
        assert health["status"] == "ok" and health["cache"] == "memory"
        assert c.get("/no/such/route").status_code == 404


def test_metrics_count_verifications_timeouts_and_crashes(verifier_server: VerifierServer) -> None:
    crashes = _metric(verifier_server, "hybridrl_sandbox_crashes_total", verifier="probe_crash")
    restarts = _metric(verifier_server, "hybridrl_sandbox_worker_restarts_total")
    ok = _metric(
        verifier_server,
        "hybridrl_verifications_total",
        route="/v1/verify",
        verifier="format",
        status="ok",
    )
    hits = _metric(verifier_server, "hybridrl_cache_hits_total")
    u = _uid()
    with verifier_server.client() as c:
        c.post("/v1/verify", json={"verifier": "probe_crash", "response": u})
        c.post("/v1/verify", json={"verifier": "format", "response": u})
        c.post("/v1/verify", json={"verifier": "format", "response": u})
    assert (
        _metric(verifier_server, "hybridrl_sandbox_crashes_total", verifier="probe_crash")
        == crashes + 1
    )
    assert _metric(verifier_server, "hybridrl_sandbox_worker_restarts_total") >= restarts + 1
    assert (
        _metric(
            verifier_server,
            "hybridrl_verifications_total",
            route="/v1/verify",
            verifier="format",
            status="ok",
        )
        == ok + 1
    )
    assert _metric(verifier_server, "hybridrl_cache_hits_total") == hits + 1
    assert (
        _metric(verifier_server, "hybridrl_http_request_duration_seconds_count", route="/v1/verify")
        > 0
    )


def test_api_key_guards_every_route_but_healthz(verifier_server_factory) -> None:
    server = verifier_server_factory(env={"HYBRIDRL_API_KEY": "s3cret", "HYBRIDRL_WORKERS": "1"})
    body = {"verifier": "format", "response": GOOD}
    with server.client() as c:
        assert c.get("/healthz").status_code == 200
        for path in ("/v1/verifiers", "/metrics", "/docs"):
            assert c.get(path).status_code == 401
        assert c.post("/v1/verify", json=body).status_code == 401
        wrong = c.post("/v1/verify", json=body, headers={"Authorization": "Bearer s3creT"})
        assert wrong.status_code == 401 and "API key" in wrong.json()["error"]
        ok = c.post("/v1/verify", json=body, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["correct"] is True
        assert c.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    # the CLI passes the key through
    cli = subprocess.run(
        [
            *hybridrl_command(),
            "verify",
            "--verifier",
            "format",
            "--response",
            GOOD,
            "--url",
            server.url,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HYBRIDRL_API_KEY": "s3cret"},
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["correct"] is True


def test_cli_verify_in_process_and_via_service(verifier_server: VerifierServer) -> None:
    base = [
        *hybridrl_command(),
        "verify",
        "--verifier",
        "grounding",
        "--response",
        "<bbox>10 10 50 50</bbox>",
    ]
    ref = ["--reference", '{"boxes": [[10, 10, 50, 50]]}']
    local = subprocess.run(base + ref, capture_output=True, text=True, timeout=120)
    assert local.returncode == 0, local.stderr
    remote = subprocess.run(
        base + ref + ["--url", verifier_server.url], capture_output=True, text=True, timeout=120
    )
    assert remote.returncode == 0, remote.stderr
    a, b = json.loads(local.stdout), json.loads(remote.stdout)
    assert a["reward"] == b["reward"] == 1.0
    bad = subprocess.run(
        base + ["--reference", "{boxes: oops"], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and "--reference is not valid JSON" in bad.stderr
    unknown = subprocess.run(
        [
            *hybridrl_command(),
            "verify",
            "--verifier",
            "nope",
            "--response",
            "x",
            "--url",
            verifier_server.url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unknown.returncode == 2 and "unknown verifier" in unknown.stderr
