"""The verifier HTTP API: FastAPI in front of the sandbox pool and the result cache.

Routes: ``POST /v1/verify``, ``POST /v1/verify/batch``, ``POST /get_reward`` (OpenRLHF's
remote-reward contract), ``GET /v1/verifiers``, ``GET /healthz``, ``GET /metrics``, ``/docs``.
An ASGI middleware at the edge enforces the API key and the body-size limit (declared
Content-Length and streamed bytes alike) before FastAPI parses anything. Every error is a
JSON object ``{"error": "...", ...}``; one bad item never fails a batch.

The two hot routes, ``/v1/verify`` and ``/v1/verify/batch``, are answered by that edge
middleware itself (same pydantic schemas, same error format, same handler functions as the
FastAPI routes, which remain for OpenAPI and ``/docs``): FastAPI's routing, dependency
solving and response machinery cost more CPU per request than the rest of the service.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import inspect
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.settings import VerifierServiceSettings
from verifiers import registry
from verifiers.cache import ResultCache, cache_key, make_cache
from verifiers.sandbox import SandboxPool, json_safe
from verifiers.schemas import (
    BatchRequest,
    BatchResponse,
    VerifyRequest,
    VerifyResponse,
    VerifyResult,
)

log = logging.getLogger("hybridrl.verifier_api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_ROUTES = ("/v1/verify", "/v1/verify/batch", "/get_reward", "/v1/verifiers", "/healthz", "/metrics")


def dump_json(content: Any) -> bytes:
    """JSON that cannot fail to render: NaN/inf become null, lone surrogates get escaped."""
    try:
        return json.dumps(
            content, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode("utf-8")
    except (ValueError, UnicodeEncodeError, TypeError):
        return json.dumps(json_safe(content), ensure_ascii=True, separators=(",", ":")).encode()


class SafeJSONResponse(JSONResponse):
    """A JSONResponse rendered by `dump_json`."""

    def render(self, content: Any) -> bytes:
        return dump_json(content)


def _error(status: int, message: str, **extra: Any) -> SafeJSONResponse:
    return SafeJSONResponse({"error": message, **extra}, status_code=status)


_RESULTS = TypeAdapter(list[VerifyResponse])


def render_result(res: VerifyResponse) -> bytes:
    """One result as JSON, by pydantic's serializer (NaN/inf become null)."""
    try:
        return VerifyResponse.__pydantic_serializer__.to_json(res)
    except PydanticSerializationError:  # lone surrogates in details or error
        return dump_json(res.model_dump())


def render_results(results: Sequence[VerifyResponse]) -> bytes:
    """``{"results": [...]}`` as JSON."""
    try:
        return b'{"results":' + _RESULTS.dump_json(list(results)) + b"}"
    except PydanticSerializationError:
        return dump_json({"results": [r.model_dump() for r in results]})


def _as_response(res: VerifyResult, cached: bool, elapsed_ms: float) -> VerifyResponse:
    # `res` is validated already (the sandbox validates what a worker sends): no second pass
    return VerifyResponse.model_construct(**res.__dict__, cached=cached, elapsed_ms=elapsed_ms)


# --------------------------------------------------------------------------- metrics


class Metrics:
    """Prometheus metrics of one app (its own registry, so several apps can share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "hybridrl_http_requests_total", "HTTP requests", ["route", "code"], registry=r
        )
        self.http_latency = Histogram(
            "hybridrl_http_request_duration_seconds",
            "HTTP request latency",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.verifications = Counter(
            "hybridrl_verifications_total",
            "verified items by route, verifier and status (ok, error, cached, timeout, crash)",
            ["route", "verifier", "status"],
            registry=r,
        )
        self.verify_latency = Histogram(
            "hybridrl_verify_duration_seconds",
            "time from request to result of one item run in the sandbox",
            ["verifier"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.timeouts = Counter(
            "hybridrl_sandbox_timeouts_total",
            "items killed at their deadline",
            ["verifier"],
            registry=r,
        )
        self.crashes = Counter(
            "hybridrl_sandbox_crashes_total", "items whose worker died", ["verifier"], registry=r
        )
        self.restarts = Counter(
            "hybridrl_sandbox_worker_restarts_total", "sandbox workers replaced", registry=r
        )
        self.cache_hits = Counter("hybridrl_cache_hits_total", "cache hits", registry=r)
        self.cache_misses = Counter("hybridrl_cache_misses_total", "cache misses", registry=r)
        self.workers_alive = Gauge(
            "hybridrl_sandbox_workers_alive", "live sandbox workers", registry=r
        )

        self._children: dict[tuple[Any, ...], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, memoised: ``labels()`` locks and validates on every call.

        Label values come from closed sets (routes, status codes, registered verifier names),
        so the memo stays small.
        """
        key = (id(metric), *labels)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = metric.labels(*labels)
        return c

    def sandbox_event(self, kind: str, verifier: str) -> None:
        """The sandbox pool's event hook (called from its supervisor threads)."""
        if kind == "timeout":
            self.timeouts.labels(verifier).inc()
        elif kind == "crash":
            self.crashes.labels(verifier).inc()
        elif kind == "restart":
            self.restarts.inc()


# --------------------------------------------------------------------------- the service core


class VerifierService:
    """Cache lookup, sandbox dispatch (deduplicated within a call) and metrics for many items."""

    def __init__(self, pool: SandboxPool, cache: ResultCache, metrics: Metrics):
        self.pool = pool
        self.cache = cache
        self.metrics = metrics
        self.versions = {n: registry.get(n).version for n in registry.names()}

    def _label(self, verifier: str) -> str:
        return verifier if verifier in self.versions else "unknown"

    async def verify_many(self, reqs: Sequence[VerifyRequest], route: str) -> list[VerifyResponse]:
        """Verify every item; results in request order, one failure never fails the others."""
        t0 = time.perf_counter()
        n = len(reqs)
        out: list[VerifyResponse | None] = [None] * n
        keys: list[str | None] = [None] * n
        for i, r in enumerate(reqs):
            version = self.versions.get(r.verifier)
            if version is None:
                err = str(registry.UnknownVerifierError(r.verifier, sorted(self.versions)))
                out[i] = _as_response(VerifyResult.failure(r.verifier, err), False, 0.0)
                continue
            keys[i] = cache_key(r.verifier, version, r.response, r.reference, r.options)

        unique = list(dict.fromkeys(k for k in keys if k is not None))
        hits: dict[str, VerifyResponse] = {}
        for k, value in zip(unique, await self.cache.get_many(unique), strict=True):
            if value is not None:
                try:
                    hits[k] = VerifyResponse(**value, cached=True)
                except (TypeError, ValueError):  # a stale layout under our key: recompute
                    pass
        t_hits = (time.perf_counter() - t0) * 1000

        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            if k is not None and k not in hits and k not in first:
                first[k] = i

        # every unique item goes to the sandbox at once; each completion time is its own
        done_at: dict[str, float] = {}
        futures: dict[str, asyncio.Future[VerifyResult]] = {}
        for k, i in first.items():
            r = reqs[i]
            fut = self.pool.submit_async(r.verifier, r.response, r.reference, r.options)
            fut.add_done_callback(lambda _f, k=k: done_at.__setitem__(k, time.perf_counter()))
            futures[k] = fut
        for fut in futures.values():  # all run concurrently; awaiting in turn waits for the last
            await fut
        computed = {k: fut.result() for k, fut in futures.items()}
        if self.cache.backend != "none":
            await self.cache.set_many(
                [
                    (k, res.model_dump())
                    for k, res in computed.items()
                    if "sandbox" not in res.details
                ]
            )

        m = self.metrics
        for i, k in enumerate(keys):
            verifier = reqs[i].verifier
            if k is None:  # unknown verifier
                status = "error"
            elif k in hits:
                out[i] = hits[k].model_copy(update={"elapsed_ms": round(t_hits, 3)})
                status = "cached"
                m.cache_hits.inc()
            else:
                res = computed[k]
                elapsed = done_at.get(k, time.perf_counter()) - t0
                out[i] = _as_response(res, False, round(elapsed * 1000, 3))
                m.cache_misses.inc()
                m.child(m.verify_latency, self._label(verifier)).observe(elapsed)
                sandbox = res.details.get("sandbox")
                status = (
                    sandbox if sandbox in ("timeout", "crash") else ("error" if res.error else "ok")
                )
            m.child(m.verifications, route, self._label(verifier), status).inc()
        return [o for o in out if o is not None]


# --------------------------------------------------------------------------- OpenRLHF contract


class RewardRequest(BaseModel):
    """OpenRLHF's remote reward request: full texts, their prompts, and one label per sample."""

    model_config = ConfigDict(extra="allow")

    query: list[str] = Field(..., max_length=4096, description="prompt + response texts")
    prompts: list[str] | None = Field(None, description="prompt prefixes to strip from query")
    labels: list[Any] | None = Field(
        None,
        description='per sample: a JSON string {"verifier", "reference", "options"?} or a plain math answer',
    )


def parse_label(label: Any) -> tuple[str, Any, dict[str, Any]] | str:
    """(verifier, reference, options) of an OpenRLHF label, or an error message."""
    if label is None:
        return "format", None, {}
    obj = label
    if isinstance(label, str):
        try:
            obj = json.loads(label)
        except ValueError:
            return "math", {"answer": label}, {}
        if not isinstance(obj, dict):
            return "math", {"answer": label}, {}
    if isinstance(obj, dict):
        if not isinstance(obj.get("verifier"), str):
            return 'a label object needs a string "verifier" key'
        options = obj.get("options") or {}
        if not isinstance(options, dict):
            return 'a label\'s "options" must be an object'
        return obj["verifier"], obj.get("reference"), options
    if isinstance(label, int | float) and not isinstance(label, bool):
        return "math", {"answer": str(label)}, {}
    return f"unsupported label type {type(label).__name__}"


def strip_prompt(query: str, prompt: str | None) -> str:
    """The response part of an OpenRLHF query: the query minus its prompt prefix."""
    if prompt and query.startswith(prompt):
        return query[len(prompt) :]
    return query


# --------------------------------------------------------------------------- the hot routes

Answer = tuple[int, bytes]  # HTTP status, JSON body


async def answer_verify(s: VerifierService, req: VerifyRequest) -> Answer:
    """``POST /v1/verify`` once the body is a `VerifyRequest`."""
    if req.verifier not in s.versions:
        known = sorted(s.versions)
        err = str(registry.UnknownVerifierError(req.verifier, known))
        return 422, dump_json({"error": err, "known": known})
    [res] = await s.verify_many([req], "/v1/verify")
    return 200, render_result(res)


async def answer_batch(s: VerifierService, batch: BatchRequest) -> Answer:
    """``POST /v1/verify/batch`` once the body is a `BatchRequest`."""
    return 200, render_results(await s.verify_many(batch.items, "/v1/verify/batch"))


def parse_body(model: type[BaseModel], text: str) -> BaseModel | Answer:
    """The body as ``model``, or the 4xx answer FastAPI would give (same messages and locs)."""
    if not text:
        errors: list[Any] = [{"loc": ("body",), "msg": "Field required", "type": "missing"}]
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            errors = [{"loc": ("body", e.pos), "msg": "JSON decode error", "type": "json_invalid"}]
        except (ValueError, RecursionError) as e:  # e.g. a 10,000-digit number, deep nesting
            return 400, dump_json({"error": f"request body is not usable JSON: {e}"[:300]})
        else:
            try:
                return model.model_validate(data)
            except ValidationError as e:
                errors = [{**err, "loc": ("body", *err["loc"])} for err in e.errors()]
            except RecursionError:
                return 400, dump_json({"error": "request body is nested too deeply"})
    message, detail = _validation_message(errors)
    return 422, dump_json({"error": message, "detail": detail})


async def _hot_verify(s: VerifierService, text: str) -> Answer:
    req = parse_body(VerifyRequest, text)
    return await answer_verify(s, req) if isinstance(req, VerifyRequest) else req  # type: ignore[return-value]


async def _hot_batch(s: VerifierService, text: str) -> Answer:
    batch = parse_body(BatchRequest, text)
    return await answer_batch(s, batch) if isinstance(batch, BatchRequest) else batch  # type: ignore[return-value]


_HOT_ROUTES: dict[str, Callable[[VerifierService, str], Awaitable[Answer]]] = {
    "/v1/verify": _hot_verify,
    "/v1/verify/batch": _hot_batch,
}
_JSON_HEADERS = [(b"content-type", b"application/json")]


# --------------------------------------------------------------------------- the edge


class EdgeMiddleware:
    """API key, body-size limit and HTTP metrics, before FastAPI sees a byte of the body."""

    def __init__(
        self,
        app: Any,
        settings: VerifierServiceSettings,
        metrics: Metrics,
        service: Callable[[], VerifierService | None],
    ):
        self.app = app
        self.max_body = settings.max_body_bytes
        self.drain_cap = max(4 * self.max_body, 32 * 1024 * 1024)
        key = settings.api_key.get_secret_value() if settings.api_key else None
        self.expected_auth = f"Bearer {key}".encode() if key else None
        self.metrics = metrics
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        route = scope["path"] if scope["path"] in _ROUTES else "other"
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, send_wrapper)
        finally:
            m = self.metrics
            m.child(m.http_requests, route, str(status["code"])).inc()
            m.child(m.http_latency, route).observe(time.perf_counter() - t0)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        if self.expected_auth is not None and scope["path"] != "/healthz":
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected_auth):
                resp = _error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'")
                resp.headers["WWW-Authenticate"] = "Bearer"
                await resp(scope, receive, send)
                return
        declared = headers.get(b"content-length")
        too_big = declared is not None and declared.isdigit() and int(declared) > self.max_body
        chunks: list[bytes] = []
        size = 0
        while True:  # buffer the body (FastAPI would anyway), counting what actually arrives
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_body:
                too_big = True
            if not too_big:
                chunks.append(body)
            # drain an oversized body (up to a cap) so that the client gets to read the 413
            if not message.get("more_body", False) or size > self.drain_cap:
                break
        if too_big:
            resp = _error(
                413, f"request body too large: limit is {self.max_body} bytes", limit=self.max_body
            )
            await resp(scope, receive, send)
            return
        if scope["method"] == "POST":
            try:
                text = b"".join(chunks).decode("utf-8")
            except UnicodeDecodeError as e:
                msg = f"request body is not valid UTF-8 (byte {e.start}); send JSON in UTF-8"
                await _error(400, msg)(scope, receive, send)
                return
            hot = _HOT_ROUTES.get(scope["path"])
            svc = self.service() if hot is not None else None
            if hot is not None and svc is not None:
                await self._answer_hot(hot, svc, text, send)
                return
        if scope["method"] == "POST" and b"json" not in headers.get(b"content-type", b"json"):
            # every POST body here is JSON; parse it as such whatever the client labelled it
            # (curl -d sends x-www-form-urlencoded), instead of failing with a baffling 422
            scope = dict(scope)
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            scope["headers"].append((b"content-type", b"application/json"))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _answer_hot(
        self,
        hot: Callable[[VerifierService, str], Awaitable[Answer]],
        svc: VerifierService,
        text: str,
        send: Send,
    ) -> None:
        try:
            status, body = await hot(svc, text)
        except Exception as e:  # noqa: BLE001 - a bug here must still answer in JSON
            log.exception("unhandled error on a verify route")
            status = 500
            body = dump_json({"error": f"internal error ({type(e).__name__}); see the service log"})
        headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _validation_message(errors: Sequence[Any]) -> tuple[str, list[dict[str, Any]]]:
    parts, detail = [], []
    for err in list(errors)[:10]:
        loc = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
        detail.append(
            {"loc": list(err.get("loc", ())), "msg": err.get("msg"), "type": err.get("type")}
        )
    return "invalid request: " + "; ".join(parts), detail


def create_app(settings: VerifierServiceSettings | None = None) -> FastAPI:
    """The verifier API app; the sandbox pool starts (warm) in its lifespan."""
    settings = settings or VerifierServiceSettings()
    for mod in settings.extra_modules:  # the API process must know their names and versions
        __import__(mod)
    metrics = Metrics()

    pool = SandboxPool(
        workers=settings.workers,
        timeout_s=settings.timeout_s,
        memory_mb=settings.memory_mb,
        extra_modules=settings.extra_modules,
        isolate_network=settings.isolate_network,
        on_event=metrics.sandbox_event,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # the workers' zygote and this process import the verifiers at the same time
        pool.launch()
        await asyncio.gather(asyncio.to_thread(pool.start), asyncio.to_thread(registry.names))
        metrics.workers_alive.set_function(pool.alive)
        cache = make_cache(settings.redis_url, settings.cache_size, settings.cache_ttl_s)
        app.state.svc = VerifierService(pool, cache, metrics)
        # Everything imported so far (FastAPI, pydantic, the verifiers' sympy) lives as long as
        # the process: move it out of the collector's reach. Otherwise each full collection
        # walks it all, a 100-300 ms pause of every request in flight, every second or two
        # under load.
        gc.collect()
        gc.freeze()
        log.info(
            "verifier service ready: %d workers, timeout %.1fs, cache %s, sandbox %s",
            settings.workers,
            settings.timeout_s,
            cache.backend,
            pool.isolation,
        )
        try:
            yield
        finally:
            await cache.close()
            await asyncio.to_thread(pool.close)

    extra: dict[str, Any] = {}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        # FastAPI >= 0.16x asks OpenTelemetry on every request whether anyone listens (several
        # environment lookups); this service exports Prometheus metrics of its own
        extra["telemetry"] = {"tracing": False, "metrics": False, "logs": False}
    app = FastAPI(
        title="hybridrl verifier API",
        version="1",
        description="Rule-based rewards (RLVR) for RL post-training, run in a sandboxed worker pool.",
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
        **extra,
    )
    app.add_middleware(
        EdgeMiddleware,
        settings=settings,
        metrics=metrics,
        service=lambda: getattr(app.state, "svc", None),
    )

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(request: Request, exc: RequestValidationError) -> Response:
        message, detail = _validation_message(exc.errors())
        return _error(422, message, detail=detail)

    @app.exception_handler(StarletteHTTPException)
    async def _on_http(request: Request, exc: StarletteHTTPException) -> Response:
        resp = _error(exc.status_code, str(exc.detail))
        for k, v in (exc.headers or {}).items():
            resp.headers[k] = v
        return resp

    @app.exception_handler(Exception)
    async def _on_bug(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, f"internal error ({type(exc).__name__}); see the service log")

    def svc(request: Request) -> VerifierService:
        return request.app.state.svc

    @app.post(
        "/v1/verify",
        response_model=VerifyResponse,
        responses={422: {"description": "invalid request or unknown verifier"}},
    )
    async def verify(req: VerifyRequest, request: Request) -> Response:
        """Verify one response against its reference with the named verifier."""
        status, body = await answer_verify(svc(request), req)
        return Response(body, status, media_type="application/json")

    @app.post("/v1/verify/batch", response_model=BatchResponse)
    async def verify_batch(batch: BatchRequest, request: Request) -> Response:
        """Verify many items concurrently; results in request order, bad items get error results."""
        status, body = await answer_batch(svc(request), batch)
        return Response(body, status, media_type="application/json")

    @app.post("/get_reward")
    async def get_reward(req: RewardRequest, request: Request) -> Response:
        """OpenRLHF remote reward: ``{query, prompts, labels}`` → ``{rewards, scores, extra_logs}``."""
        n = len(req.query)
        for field in ("prompts", "labels"):
            value = getattr(req, field)
            if value is not None and len(value) != n:
                return _error(
                    422, f"invalid request: {field} has {len(value)} entries, query has {n}"
                )
        prompts = req.prompts or [None] * n
        labels = req.labels if req.labels is not None else [None] * n
        results: list[VerifyResponse | None] = [None] * n
        good: list[tuple[int, VerifyRequest]] = []
        for i, (q, p, label) in enumerate(zip(req.query, prompts, labels, strict=True)):
            parsed = parse_label(label)
            try:
                if isinstance(parsed, str):
                    raise ValueError(parsed)
                verifier, reference, options = parsed
                good.append(
                    (
                        i,
                        VerifyRequest(
                            verifier=verifier,
                            response=strip_prompt(q, p),
                            reference=reference,
                            options=options,
                        ),
                    )
                )
            except (ValueError, ValidationError) as e:  # this sample only
                failure = VerifyResult.failure("", f"bad label at index {i}: {e}"[:500])
                results[i] = VerifyResponse(**failure.model_dump())
        done = await svc(request).verify_many([r for _, r in good], "/get_reward")
        for (i, _), res in zip(good, done, strict=True):
            results[i] = res
        final = [r for r in results if r is not None]
        rewards = [r.reward for r in final]
        return SafeJSONResponse(
            {
                "rewards": rewards,
                "scores": rewards,
                "extra_logs": {
                    "correct": [float(r.correct) for r in final],
                    "format_ok": [float(r.format_ok) for r in final],
                    "verifier_error": [float(r.error is not None) for r in final],
                },
            }
        )

    @app.get("/v1/verifiers")
    async def verifiers_list() -> Response:
        """Each verifier's version, description and reference JSON schema."""
        return SafeJSONResponse(registry.reference_schemas())

    @app.get("/healthz")
    async def healthz(request: Request) -> Response:
        """Liveness: the number of live sandbox workers and the cache backend."""
        s = svc(request)
        alive = s.pool.alive()
        cache = s.cache.backend
        if cache == "redis" and not getattr(s.cache, "available", True):
            cache = "redis (unavailable)"
        return SafeJSONResponse(
            {
                "status": "ok" if alive else "degraded",
                "workers": alive,
                "workers_configured": s.pool.workers,
                "cache": cache,
            }
        )

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        """Prometheus text exposition."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if settings.debug_routes:

        @app.get("/v1/debug/workers")
        async def debug_workers(request: Request) -> Response:
            """Debug only (HYBRIDRL_DEBUG_ROUTES=1): worker pids and what each is running."""
            s = svc(request)
            return SafeJSONResponse(
                {
                    "workers": [w.__dict__ for w in s.pool.worker_info()],
                    "isolation": s.pool.isolation,
                }
            )

    return app


def serve(settings: VerifierServiceSettings) -> None:
    """Run the verifier API under uvicorn until SIGINT/SIGTERM."""
    import uvicorn

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        log.warning(
            "binding %s without HYBRIDRL_API_KEY: anyone who can reach it may call it",
            settings.host,
        )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=int(settings.timeout_s) + 5,
    )
