"""The FastAPI application: routes, error bodies, body-size guard and metrics around one ``Service``.

``create_app(config)`` builds the app without loading anything; its lifespan starts loading the bundle in the
background (so ``/healthz`` answers at once and ``/readyz`` turns ready when scoring can start) and, on shutdown,
lets the batcher finish what is queued. uvicorn (``server.py``) and Ray Serve (``ray_integration.py``) both run it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import threading
import time
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import InputError, UnspokenError
from ..manifest import MANIFEST_NAME, sha256_file
from .batcher import MicroBatcher, QueueFull, ShuttingDown
from .config import ServeConfig
from .metrics import Metrics
from .schema import BatchRequest, BatchResponse, ErrorResponse, Health, ScoreRequest, ScoreResponse

log = logging.getLogger("unspoken.serve")

ROUTES = {"/v1/score", "/v1/score/batch", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"}
BODY_METHODS = {"POST", "PUT", "PATCH"}
INLINE_TOKENIZE_CHARS = 32_768  # more text than this is tokenized in a worker thread, not on the event loop


class NotReady(Exception):
    """The bundle is still loading (or failed to load)."""


def _error(status: int, kind: str, message: str, field: str | None = None, headers=None) -> JSONResponse:
    body: dict[str, Any] = {"type": kind, "message": message}
    if field is not None:
        body["field"] = field
    return JSONResponse({"error": body}, status_code=status, headers=headers)


class Service:
    """One Classifier behind a MicroBatcher, loaded in a background thread."""

    def __init__(self, config: ServeConfig, classifier_factory: Callable[[], Any] | None = None) -> None:
        self.config = config
        self.metrics = Metrics()
        self._factory = classifier_factory or self._default_factory
        self.classifier: Any = None
        self.batcher: MicroBatcher | None = None
        self.bundle_hash: str | None = None
        self.load_error: str | None = None
        self.on_load_failure: Callable[[], None] | None = None  # the server sets this to stop itself
        self._truncate_supported = False
        self.metrics.track_queue(lambda: self.batcher.depth if self.batcher else 0)

    def _default_factory(self):
        from ..classifier import Classifier

        return Classifier(self.config.bundle, threads=self.config.threads,
                          prefix_cache_mb=self.config.prefix_cache_mb)

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def start_loading(self) -> threading.Thread:
        thread = threading.Thread(target=self._load, name="unspoken-load", daemon=True)
        thread.start()
        return thread

    def _load(self) -> None:
        t0 = time.perf_counter()
        try:
            clf = self._factory()
            self.bundle_hash = sha256_file(clf.bundle_dir / MANIFEST_NAME)
            self._truncate_supported = "truncate" in inspect.signature(clf.prepare).parameters
        except UnspokenError as e:
            self._fail(str(e))
            return
        except Exception as e:  # noqa: BLE001 - reported as one line, and the server stops
            self._fail(f"could not load the bundle: {type(e).__name__}: {e}")
            return
        c = self.config
        self.batcher = MicroBatcher(clf.score_prepared, max_batch=c.max_batch, max_wait_s=c.max_wait_ms / 1000,
                                    max_queue=c.max_queue, on_batch=self.metrics.observe_batch)
        self.classifier = clf
        info = getattr(clf, "prefix_cache_info", None)
        if callable(info):
            self.metrics.track_prefix_cache(info)
        self.metrics.ready.set(1)
        log.info("unspoken: bundle %s loaded in %.1f s; ready (max batch %d, max wait %g ms, queue %d)",
                 clf.bundle_dir, time.perf_counter() - t0, c.max_batch, c.max_wait_ms, c.max_queue)

    def _fail(self, message: str) -> None:
        self.load_error = message
        log.error("unspoken: error: %s", message)
        if self.on_load_failure is not None:
            self.on_load_failure()

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close(timeout=self.config.shutdown_timeout_s)

    # -- scoring ------------------------------------------------------------------------------------------------
    def prepare(self, req: ScoreRequest, where: str = "") -> tuple[Any, bool]:
        """(prepared item, truncated); InputError names the field, prefixed with ``where`` (e.g. ``items[3].``)."""
        if self.classifier is None:
            raise NotReady(self.load_error or "the bundle is still loading")
        kwargs = {"truncate": req.truncate} if self._truncate_supported else {}
        try:
            prepared = self.classifier.prepare(req.content, req.criteria, **kwargs)
        except InputError as e:
            raise InputError(f"{where}{e}" if where else str(e), field=f"{where}{e.field or 'body'}") from None
        return prepared, bool(getattr(prepared, "truncated", False))

    async def prepare_all(self, reqs: list[ScoreRequest], batch: bool) -> list[tuple[Any, bool]]:
        """``prepare`` for each item; big texts are tokenized off the event loop so other requests keep flowing."""

        def run() -> list[tuple[Any, bool]]:
            return [self.prepare(r, f"items[{i}]." if batch else "") for i, r in enumerate(reqs)]

        chars = sum(len(r.content) + sum(len(c) for c in r.criteria) for r in reqs)
        return await asyncio.to_thread(run) if chars > INLINE_TOKENIZE_CHARS else run()

    async def score(self, prepared: list[Any]) -> tuple[list[list[float]], float, float]:
        """Probabilities per item, plus the longest queue wait and the scoring time (ms) among its batches."""
        if self.batcher is None:
            raise NotReady(self.load_error or "the bundle is still loading")
        jobs = self.batcher.submit(prepared)
        results = await asyncio.gather(*(asyncio.wrap_future(j.future) for j in jobs))
        queue = max(j.started - j.enqueued for j in jobs)
        spans = sorted({(j.started, j.finished) for j in jobs})
        return results, queue * 1e3, sum(b - a for a, b in spans) * 1e3


class GuardMiddleware:
    """Pure ASGI: refuses non-JSON bodies (415) and bodies over the limit (413) before the app reads them; counts
    and times every request."""

    def __init__(self, app, *, max_body_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in ROUTES else "other"
        start, status = time.perf_counter(), 500

        async def send_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if scope["method"] in BODY_METHODS:
                if not _is_json(scope):
                    wrong_type = _error(415, "unsupported_media_type", "send the body as JSON with the header "
                                        "Content-Type: application/json")
                    await wrong_type(scope, self._drained, send_status)
                    return
                receive = await self._buffer_body(scope, receive)
                if receive is None:
                    too_large = _error(413, "body_too_large", f"the request body exceeds {self.max_body_bytes} bytes")
                    await too_large(scope, self._drained, send_status)
                    return
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe_request(route, status, time.perf_counter() - start)

    @staticmethod
    async def _drained():
        return {"type": "http.disconnect"}

    async def _buffer_body(self, scope, receive):
        """A receive that replays the whole body, or None when it is over the limit."""
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    if int(value) > self.max_body_bytes:
                        return None
                except ValueError:
                    return None
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay


def _is_json(scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


def _field(loc: tuple) -> str:
    parts = [p for p in loc if p != "body"] if loc and loc[0] == "body" else list(loc)
    text = ""
    for p in parts:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
    return text or "body"


def _version() -> str:
    try:
        return version("unspoken")
    except PackageNotFoundError:
        return "0"


ERRORS = {413: "body too large", 415: "body not sent as application/json", 422: "invalid input (names the field)",
          429: "queue full; retry after Retry-After",
          503: "bundle not loaded yet, or shutting down"}


def create_app(
    config: ServeConfig | None = None,
    classifier_factory: Callable[[], Any] | None = None,
    *,
    wait_for_load: bool = False,
) -> FastAPI:
    """The service app. ``classifier_factory`` (default: ``Classifier(config.bundle, threads=config.threads)``)
    runs in a background thread at startup; with ``wait_for_load`` startup waits for it and fails if it fails
    (for hosts such as Ray Serve that count a replica as ready once startup returns)."""
    config = config or ServeConfig()
    service = Service(config, classifier_factory)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loader = service.start_loading()
        if wait_for_load:
            await asyncio.to_thread(loader.join)
            if service.load_error is not None:
                raise RuntimeError(f"unspoken: {service.load_error}")
        yield
        await asyncio.to_thread(service.close)  # in-flight requests are done; finish anything still queued

    app = FastAPI(
        title="unspoken",
        version=_version(),
        description="Zero-shot criterion classification read from a frozen LLM's hidden state.",
        lifespan=lifespan,
    )
    app.state.service = service
    errors = {code: {"model": ErrorResponse, "description": text} for code, text in ERRORS.items()}

    @app.exception_handler(InputError)
    async def _input_error(request: Request, e: InputError):
        return _error(422, "invalid_input", str(e), e.field or "body")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, e: RequestValidationError):
        first = e.errors()[0]
        if first.get("type") == "json_invalid":
            where = first.get("loc", ())[-1]
            return _error(422, "invalid_input", f"the body is not valid JSON (at character {where})", "body")
        field = _field(tuple(first.get("loc", ())))
        return _error(422, "invalid_input", f"{field}: {first.get('msg', 'invalid')}", field)

    @app.exception_handler(QueueFull)
    async def _queue_full(request: Request, e: QueueFull):
        return _error(429, "overloaded", str(e), headers={"Retry-After": str(math.ceil(e.retry_after_s))})

    @app.exception_handler(NotReady)
    async def _not_ready(request: Request, e: NotReady):
        return _error(503, "not_ready", str(e), headers={"Retry-After": "1"})

    @app.exception_handler(ShuttingDown)
    async def _shutting_down(request: Request, e: ShuttingDown):
        return _error(503, "not_ready", str(e))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException):
        kind = "not_found" if e.status_code == 404 else "http_error"
        return _error(e.status_code, kind, str(e.detail), headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, e: Exception):
        log.exception("unspoken: internal error on %s", request.url.path)
        return _error(500, "internal", "internal error; see the server log")

    @app.post("/v1/score", response_model=ScoreResponse, responses=errors, summary="Score one content")
    async def score(req: ScoreRequest) -> JSONResponse:
        t0 = time.perf_counter()
        ((prepared, truncated),) = await service.prepare_all([req], batch=False)
        (probs,), queue, inference = await service.score([prepared])
        return JSONResponse({
            "probabilities": probs, "criteria": req.criteria, "bundle": service.bundle_hash, "truncated": truncated,
            "timing_ms": {"queue": queue, "inference": inference, "total": (time.perf_counter() - t0) * 1e3},
        })

    @app.post("/v1/score/batch", response_model=BatchResponse, responses=errors, summary="Score many contents")
    async def score_batch(req: BatchRequest) -> JSONResponse:
        t0 = time.perf_counter()
        if len(req.items) > config.max_queue:
            raise InputError(f"items: at most {config.max_queue} items per request", field="items")
        prepared = await service.prepare_all(req.items, batch=True)
        probs, queue, inference = await service.score([p for p, _ in prepared])
        results = [{"probabilities": p, "criteria": item.criteria, "truncated": t}
                   for p, item, (_, t) in zip(probs, req.items, prepared)]
        return JSONResponse({
            "results": results, "bundle": service.bundle_hash,
            "timing_ms": {"queue": queue, "inference": inference, "total": (time.perf_counter() - t0) * 1e3},
        })

    @app.get("/healthz", response_model=Health, summary="Liveness: the process answers")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", response_model=Health, responses={503: {"model": Health}},
             summary="Readiness: the bundle is loaded")
    async def readyz() -> JSONResponse:
        if service.classifier is not None:
            return JSONResponse({"status": "ready", "bundle": service.bundle_hash})
        if service.load_error is not None:
            return JSONResponse({"status": "failed", "error": service.load_error}, status_code=503)
        return JSONResponse({"status": "loading"}, status_code=503)

    @app.get("/metrics", response_class=Response, summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    app.add_middleware(GuardMiddleware, max_body_bytes=config.max_body_bytes, metrics=service.metrics)
    return app
