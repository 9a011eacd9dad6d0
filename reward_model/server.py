"""The reward-model gRPC server: validation in request threads, one batcher thread, one forward per batch.

Request threads decode images and tokenise (bad input → INVALID_ARGUMENT, named), then put
the encoded pairs on a queue. The batcher takes the first waiting pair, collects more until
``max_batch`` pairs or ``max_wait_ms`` have passed, scores them all in both orders with a
single forward pass, and resolves each request's futures. A failing forward fails only the
requests of that batch (INTERNAL); the server keeps serving.
"""

from __future__ import annotations

import io
import logging
import queue
import signal
import threading
import time
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from PIL import Image
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from reward_model.model import RewardModel
from reward_model.proto import load as load_stubs
from reward_model.scoring import Comparison

log = logging.getLogger("hybridrl.reward_model.server")
pb2, pb2_grpc = load_stubs()
SERVICE_NAME = "hybridrl.reward_model.v1.RewardModel"
MiB = 1024 * 1024


class RewardModelServerSettings(BaseSettings):
    """``hybridrl serve reward-model``: each field is also ``HYBRIDRL_RM_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="HYBRIDRL_RM_", extra="ignore")

    model: str = Field(..., description="checkpoint directory (an RM or a policy of the family)")
    host: str = Field("127.0.0.1", description="bind address; 0.0.0.0 exposes the service")
    port: int = Field(50051, ge=0, le=65535, description="0 picks a free port")
    max_batch: int = Field(32, ge=1, le=4096, description="most pairs scored by one forward")
    max_wait_ms: float = Field(10.0, ge=0, le=10_000, description="how long a batch waits to fill")
    threads: int = Field(64, ge=1, le=1024, description="gRPC request threads (concurrent calls)")
    max_message_mb: int = Field(32, ge=1, le=1024, description="gRPC transport limit per message")
    max_request_mb: float = Field(16, gt=0, description="image + text bytes one call may carry")
    max_images: int = Field(16, ge=0, description="images per pair")
    max_image_pixels: int = Field(16_000_000, ge=1, description="pixels per image, before resizing")
    max_tokens: int = Field(4096, ge=16, description="tokens per comparison sequence")
    max_batch_tokens: int = Field(
        65_536, ge=64, description="padded tokens per forward; a larger batch runs as several"
    )
    max_batch_items: int = Field(1024, ge=1, description="pairs per CompareBatch call")
    device: str = "cpu"
    dtype: str | None = Field(None, description="e.g. bfloat16 on GPU; default: the checkpoint's")


@dataclass
class _Job:
    pair: Any  # (Encoded, Encoded)
    future: futures.Future[Comparison]


class BadRequest(ValueError):
    """A request the server refuses with INVALID_ARGUMENT; the message says why."""


class Batcher:
    """Dynamic batching: a queue of encoded pairs and one thread that scores them in batches."""

    def __init__(self, rm: RewardModel, *, max_batch: int, max_wait_ms: float) -> None:
        self.rm = rm
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self.forward_passes = 0
        self.pairs = 0
        self.max_batch_pairs = 0
        self._thread = threading.Thread(target=self._loop, name="rm-batcher", daemon=True)
        self._thread.start()

    def submit(self, pairs: Sequence[Any]) -> list[futures.Future[Comparison]]:
        """Queue encoded pairs; each future resolves to that pair's `Comparison`."""
        jobs = [_Job(pair, futures.Future()) for pair in pairs]
        for job in jobs:
            self._queue.put(job)
        return [job.future for job in jobs]

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        jobs, stop = [first], False
        deadline = time.monotonic() + self.max_wait_s
        while len(jobs) < self.max_batch:
            try:  # what is already queued joins at once; then wait out the deadline
                job = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    job = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if job is None:
                stop = True
                break
            jobs.append(job)
        return jobs, stop

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, stop = self._collect(first)
            live = [j for j in jobs if j.future.set_running_or_notify_cancel()]
            if live:
                before = self.rm.forward_passes
                try:
                    results = self.rm.compare_encoded([j.pair for j in live])
                except Exception as e:  # fail this batch's calls, keep the server up
                    log.exception("forward pass failed for %d pairs", len(live))
                    for job in live:
                        job.future.set_exception(e)
                else:
                    for job, result in zip(live, results, strict=True):
                        job.future.set_result(result)
                with self._lock:
                    self.forward_passes += max(1, self.rm.forward_passes - before)
                    self.pairs += len(live)
                    self.max_batch_pairs = max(self.max_batch_pairs, len(live))
            if stop:
                return


def decode_image(data: bytes, index: int, max_pixels: int) -> Image.Image:
    """PNG/JPEG bytes → RGB image, or BadRequest naming the image and the problem."""
    if not data:
        raise BadRequest(f"image {index} is empty")
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > max_pixels:
                raise BadRequest(
                    f"image {index} is {im.width}x{im.height}, over the limit of {max_pixels} pixels"
                )
            im.load()  # decode now: a truncated file fails here, not in the batcher
            return im.convert("RGB")
    except BadRequest:
        raise
    except Exception as e:  # PIL raises many types for bad bytes
        raise BadRequest(f"image {index} cannot be decoded: {type(e).__name__}: {e}") from None


class RewardModelService(pb2_grpc.RewardModelServicer):
    """The gRPC servicer: checks and encodes requests, waits on the batcher."""

    def __init__(self, rm: RewardModel, batcher: Batcher, settings: RewardModelServerSettings):
        self.rm = rm
        self.batcher = batcher
        self.settings = settings
        self._lock = threading.Lock()
        self.requests = 0
        self.rejected = 0

    # ---- validation and encoding ------------------------------------------------------
    def _prompt(self, item: Any) -> str | list[dict[str, str]]:
        if item.messages:
            return [{"role": m.role, "content": m.content} for m in item.messages]
        return item.prompt

    def _encode(self, item: Any, where: str) -> Any:
        s = self.settings
        if not item.response_a.strip() or not item.response_b.strip():
            raise BadRequest(f"{where}: response_a and response_b must both be non-empty")
        if not item.prompt.strip() and not item.messages and not item.images:
            raise BadRequest(f"{where}: a prompt (or messages) is required")
        if len(item.images) > s.max_images:
            raise BadRequest(
                f"{where}: {len(item.images)} images, over the limit of {s.max_images}"
            )
        size = sum(len(b) for b in item.images) + len(item.prompt) + len(item.response_a)
        size += len(item.response_b) + sum(len(m.content) for m in item.messages)
        if size > s.max_request_mb * MiB:
            raise BadRequest(
                f"{where}: {size / MiB:.1f} MiB of images and text, over the limit of "
                f"{s.max_request_mb:g} MiB"
            )
        prompt = self._prompt(item)
        try:
            images = [decode_image(b, i, s.max_image_pixels) for i, b in enumerate(item.images)]
            return (
                self.rm.encode(prompt, images, item.response_a, item.response_b),
                self.rm.encode(prompt, images, item.response_b, item.response_a),
            )
        except (BadRequest, ValueError, TypeError) as e:
            raise BadRequest(f"{where}: {e}") from None

    def _run(
        self, items: Sequence[Any], context: grpc.ServicerContext, single: bool
    ) -> list[Comparison]:
        try:
            pairs = [
                self._encode(item, "request" if single else f"item {i}")
                for i, item in enumerate(items)
            ]
        except BadRequest as e:
            with self._lock:
                self.rejected += 1
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except Exception as e:  # a bug in encoding must not look like the caller's fault
            log.exception("encoding a request failed")
            context.abort(grpc.StatusCode.INTERNAL, f"encoding failed: {type(e).__name__}: {e}")
        pending = self.batcher.submit(pairs)
        timeout = context.time_remaining()
        try:
            results = [f.result(timeout=timeout) for f in pending]
        except futures.TimeoutError:
            for f in pending:
                f.cancel()  # still queued: skip it in the forward
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed while queued")
        except Exception as e:
            context.abort(grpc.StatusCode.INTERNAL, f"scoring failed: {type(e).__name__}: {e}")
        with self._lock:
            self.requests += 1
        return results

    # ---- rpcs -------------------------------------------------------------------------
    def Compare(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        (result,) = self._run([request], context, single=True)
        return _to_proto(result)

    def CompareBatch(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        if len(request.items) > self.settings.max_batch_items:
            with self._lock:
                self.rejected += 1
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{len(request.items)} items, over the limit of {self.settings.max_batch_items}",
            )
        results = self._run(list(request.items), context, single=False) if request.items else []
        return pb2.CompareBatchResponse(results=[_to_proto(r) for r in results])

    def Stats(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        b = self.batcher
        with self._lock, b._lock:
            return pb2.StatsResponse(
                forward_passes=b.forward_passes,
                pairs=b.pairs,
                requests=self.requests,
                rejected=self.rejected,
                max_batch_pairs=b.max_batch_pairs,
                queue_depth=b.queue_depth,
                model=self.settings.model,
            )


def _to_proto(c: Comparison) -> Any:
    return pb2.CompareResponse(p=c.p, p_a_first=c.p_a_first, p_b_first=c.p_b_first)


class RewardModelServer:
    """A running server: model, batcher, gRPC server with health checking. ``port`` is the bound one."""

    def __init__(self, settings: RewardModelServerSettings, rm: RewardModel | None = None) -> None:
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc

        self.settings = settings
        self.rm = rm or RewardModel.load(
            settings.model,
            device=settings.device,
            dtype=settings.dtype,
            max_tokens=settings.max_tokens,
        )
        self.rm.max_tokens = settings.max_tokens
        self.rm.max_batch_tokens = settings.max_batch_tokens
        self.batcher = Batcher(
            self.rm, max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms
        )
        self.service = RewardModelService(self.rm, self.batcher, settings)
        limit = settings.max_message_mb * MiB
        self.grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="rm-rpc"),
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
            ],
        )
        pb2_grpc.add_RewardModelServicer_to_server(self.service, self.grpc)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        self._serving = health_pb2.HealthCheckResponse.SERVING
        self._not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        self.port = self.grpc.add_insecure_port(f"{settings.host}:{settings.port}")
        if self.port == 0:
            raise OSError(f"cannot bind {settings.host}:{settings.port}")

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    def start(self) -> RewardModelServer:
        self.grpc.start()
        for name in ("", SERVICE_NAME):
            self.health.set(name, self._serving)
        return self

    def stop(self, grace: float = 2.0) -> None:
        for name in ("", SERVICE_NAME):
            self.health.set(name, self._not_serving)
        self.grpc.stop(grace).wait()
        self.batcher.close()

    def __enter__(self) -> RewardModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(settings: RewardModelServerSettings) -> None:
    """Load the model, serve until SIGINT/SIGTERM, then drain and stop."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    server = RewardModelServer(settings).start()
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    # the launcher and tests wait for this line
    print(
        f"reward-model server listening on {server.address} "
        f"(max_batch {settings.max_batch}, max_wait {settings.max_wait_ms:g} ms)",
        flush=True,
    )
    # wait in short slices: a signal may land on one of gRPC's or torch's threads, and Python
    # runs the handler only when the main thread wakes; an untimed wait could sleep through it
    while not done.wait(0.5):
        pass
    server.stop()
