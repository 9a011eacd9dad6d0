"""The reward-model gRPC server against real sockets: round trip, dynamic batching, bad input, retries."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest
from PIL import Image

import vlm
from reward_model.client import CompareItem, RewardModelClient, RewardModelError
from reward_model.model import PairInput, RewardModel
from reward_model.server import RewardModelServer, RewardModelServerSettings
from synth.registry import generate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rm") / "model"
    model, processor = vlm.create("test", seed=7)
    RewardModel(model, processor).save(out)
    return out


@pytest.fixture(scope="module")
def server(checkpoint):
    settings = RewardModelServerSettings(
        model=str(checkpoint), port=0, max_batch=32, max_wait_ms=50, max_request_mb=0.5
    )
    with RewardModelServer(settings) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with RewardModelClient(server.address, timeout_s=60, retries=1) as c:
        c.wait_ready(30)
        yield c


@pytest.fixture(scope="module")
def caption():
    rec = generate("caption", 1, seed=9)[0]
    prompt = rec.user_text()
    return prompt, rec.images[0].bytes, rec.extra_info.reference_response


def _png(size=(64, 48), colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def test_round_trip_matches_the_model_in_process(server, client, caption):
    prompt, image, reference = caption
    other = "<think>x</think>There is one shape: a green square at the top."
    c = client.compare(prompt, reference, other, [image])
    (local,) = server.rm.compare([PairInput(prompt, [image], reference, other)])
    assert c.p == pytest.approx(local.p, abs=1e-6)
    assert c.p_a_first == pytest.approx(local.p_a_first, abs=1e-6)
    assert c.p_b_first == pytest.approx(local.p_b_first, abs=1e-6)
    assert c.p == pytest.approx(0.5 * (c.p_a_first + 1 - c.p_b_first), abs=1e-9)
    assert client.score(prompt, other, reference, [image]) == pytest.approx(1 - c.p, abs=1e-6)


def test_compare_batch_keeps_order_and_matches_unary(client, caption):
    prompt, image, reference = caption
    answers = ["<think>a</think>A red circle.", "<think>b</think>Two blue squares.", "nothing"]
    items = [CompareItem(prompt, reference, a, [image]) for a in answers]
    batch = client.compare_batch(items)
    assert len(batch) == 3
    for item, got in zip(items, batch, strict=True):
        one = client.compare(item.prompt, item.response_a, item.response_b, item.images)
        assert got.p == pytest.approx(one.p, abs=1e-6)
    chat = [{"role": "system", "content": "Judge."}, {"role": "user", "content": prompt}]
    assert 0 <= client.compare(chat, reference, "x", [image]).p <= 1
    assert client.compare_batch([]) == []


def test_concurrent_calls_are_batched_into_fewer_forwards(client, caption):
    prompt, image, reference = caption
    before = client.stats()
    n = 16
    results: list[float | None] = [None] * n
    start = threading.Barrier(n)

    def call(i: int) -> None:
        with RewardModelClient(client.address, timeout_s=60, retries=0) as own:
            start.wait()
            results[i] = own.compare(prompt, reference, f"<think>{i}</think>shape {i}", [image]).p

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    after = client.stats()
    assert all(r is not None and 0 <= r <= 1 for r in results)
    assert after["pairs"] - before["pairs"] == n
    forwards = after["forward_passes"] - before["forward_passes"]
    assert 1 <= forwards < n, forwards
    assert after["max_batch_pairs"] > 1


def _expect_invalid(call, *fragments: str) -> str:
    with pytest.raises(RewardModelError) as info:
        call()
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT, info.value
    for fragment in fragments:
        assert fragment in info.value.details, info.value.details
    return info.value.details


def test_bad_input_is_invalid_argument_and_the_server_keeps_serving(client, caption):
    prompt, image, reference = caption
    before = client.stats()["rejected"]
    _expect_invalid(lambda: client.compare(prompt, "", reference, [image]), "response_a")
    _expect_invalid(lambda: client.compare("", "a", "b"), "prompt")
    _expect_invalid(
        lambda: client.compare(prompt, "a", "b", [b"not a png"]), "request: image 0", "decoded"
    )
    _expect_invalid(lambda: client.compare(prompt, "a", "b", [_png()[:40]]), "image 0")
    _expect_invalid(lambda: client.compare("<image><image>two?", "a", "b", [image]), "placeholder")
    # over the server's own request limit (0.5 MiB here), still under the transport limit
    big = os.urandom(600 * 1024)
    _expect_invalid(lambda: client.compare(prompt, "a", "b", [big]), "MiB")
    _expect_invalid(
        lambda: client.compare_batch([CompareItem("q", "a", "b"), CompareItem("q", "a", "")]),
        "item 1",
    )
    bad_role = [{"role": "robot", "content": "hi"}]
    _expect_invalid(lambda: client.compare(bad_role, "a", "b"), "role")
    assert client.stats()["rejected"] - before == 8
    assert client.health()
    assert 0 <= client.compare(prompt, reference, "a", [image]).p <= 1


def test_a_message_over_the_transport_limit_is_refused_without_harm(checkpoint, caption):
    prompt, image, reference = caption
    settings = RewardModelServerSettings(model=str(checkpoint), port=0, max_message_mb=1)
    rm = RewardModel.load(checkpoint)
    with RewardModelServer(settings, rm=rm) as srv:
        with RewardModelClient(srv.address, timeout_s=30, retries=0) as c:
            with pytest.raises(RewardModelError) as info:
                c.compare(prompt, "a", "b", [os.urandom(2 * 1024 * 1024)])
            assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert 0 <= c.compare(prompt, reference, "a", [image]).p <= 1


def test_client_retries_unavailable_a_bounded_number_of_times():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with RewardModelClient(f"127.0.0.1:{port}", timeout_s=2, retries=2, backoff_s=0.01) as c:
        with pytest.raises(RewardModelError) as info:
            c.compare("q", "a", "b")
        assert info.value.code == grpc.StatusCode.UNAVAILABLE
        assert info.value.attempts == 3
        assert not c.health(timeout_s=0.5)


def test_serve_cli_runs_a_server_process_that_stops_on_sigterm(checkpoint, caption):
    prompt, image, reference = caption
    exe = Path(sys.executable).with_name("hybridrl")
    proc = subprocess.Popen(
        [str(exe), "serve", "reward-model", "--model", str(checkpoint), "--port", "0",
         "--max-batch", "8", "--max-wait-ms", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        line = ""
        for line in proc.stdout:  # the server prints its bound address when ready
            if "listening on" in line:
                break
        assert "listening on" in line, line
        address = line.split("listening on ")[1].split()[0]
        with RewardModelClient(address, timeout_s=60, retries=3) as c:
            c.wait_ready(30)
            assert 0 <= c.compare(prompt, reference, "a", [image]).p <= 1
            assert c.stats()["model"] == str(checkpoint)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
