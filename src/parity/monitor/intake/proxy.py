"""The monitoring reverse proxy: forwards ``/v1/*`` to an OpenAI-compatible upstream untouched, and hands every
exchange to the monitor's worker (:mod:`parity.monitor.runtime.worker`) off the request path.

Request path (never changed, delayed or failed because of parity): the request body and headers go upstream
as received (hop-by-hop headers aside); the upstream's status, headers and body bytes come back as they arrive,
chunk by chunk (SSE included); upstream errors pass through unchanged. Only after the last byte has been sent
does the proxy hand the exchange (credentials stripped) to :class:`~parity.monitor.runtime.worker.MonitorWorker` with a
non-blocking put on a bounded queue; when that queue is full the exchange is spooled to disk
(:class:`~parity.monitor.runtime.spool.Spool`) and counted in ``parity_proxy_spooled_records_total``, never dropped.

The worker parses, scores, builds the :class:`~parity.monitor.Record`, logs it ahead (write-ahead log), runs the
monitor, publishes alerts (store, then notifiers) and writes records in batches, spooling what the store refuses;
see :mod:`parity.monitor.runtime.worker` for what a crash or a failing store can cost.

Other routes: ``POST /v1/feedback`` ``{"response_id", "kind"}`` (202; joined to records by response id), ``POST
/v1/traces`` (OTLP/HTTP GenAI spans become records, :mod:`parity.monitor.intake.otlp_receiver`), ``GET /metrics``
(Prometheus), the store's read API for ``parity status`` and the dashboard (:mod:`parity.monitor.storage.read_api`,
which holds both its routes and the ``HTTPStore`` client), because DuckDB lets no other process open the file while the
proxy writes it, and ``/parity/health`` (``{"status": "ok" | "degraded" | "failing", "reasons": [...], counts}``:
200 unless failing, then 503).

Exposure: with a ``token`` (``parity proxy`` makes one when it listens beyond loopback), every ``/parity/*`` route,
``GET /metrics`` and ``POST /v1/feedback`` answer ``401`` unless the request carries ``Authorization: Bearer
TOKEN``; ``POST /v1/feedback`` also accepts a separate ``feedback_token`` (for clients that should send feedback
and read nothing). ``/v1/*`` itself is forwarded as it came: the upstream authenticates its own clients.
Without a token (the loopback default) nothing is asked. Request bodies over ``max_body_bytes`` are refused with
``413`` before they are read whole or forwarded (counted in ``parity_proxy_refused_requests_total``); every
answer the proxy makes itself (``400``, ``401``, ``404``, ``413``, ``502``, ``504``) is an OpenAI-style
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from parity._body_limit import DEFAULT_MAX_BODY_BYTES, BodyLimit
from parity._exceptions import InvalidInputError, ParityError
from parity._json_input import loads_bounded
from parity._optional import import_optional
from parity._time import parse_time
from parity._token import TokenCheck
from parity.monitor._records import Change, FeedbackEvent
from parity.monitor.alerting.alerts import Notifier
from parity.monitor.intake.capture import CapturePolicy, safe_request_headers
from parity.monitor.intake.otlp_receiver import OTLPReceiver
from parity.monitor.intake.scoring import SCORED_PATHS, RecordBuilder, utcnow
from parity.monitor.intake.upstream_client import UpstreamClient, UpstreamError, UpstreamResponse
from parity.monitor.runtime.metrics import ProxyMetrics, endpoint_kind
from parity.monitor.runtime.spool import Spool
from parity.monitor.runtime.wal import DEFAULT_WAL_FLUSH_S, WriteAheadLog
from parity.monitor.runtime.worker import MAX_SCORED_BODY_BYTES, ChangeBatch, MonitorHook, MonitorWorker, RawExchange
from parity.monitor.storage._store_protocol import Store
from parity.monitor.storage.read_api import read_routes

log = logging.getLogger("parity.monitor")

#: Seconds the proxy keeps an idle upstream connection for reuse: under the 5 s after which uvicorn (vLLM's and
#: SGLang's OpenAI servers, the lab before it kept its own for longer) and Node close theirs, so the proxy never
#: sends a request on a connection the upstream is closing at that moment (that request fails with a read error).
UPSTREAM_KEEPALIVE_S = 4.0

#: Headers that belong to one connection and are never forwarded (RFC 9110 section 7.6.1), plus ``host``.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding",
     "upgrade", "host", "content-length"}
)  # fmt: skip


@dataclass(frozen=True)
class ProxyConfig:
    """Settings of one proxy. ``labels`` are static provenance for responses without ``x-parity-*`` headers."""

    upstream: str
    labels: Mapping[str, str] = field(default_factory=dict)
    capture: str = "none"
    queue_size: int = 10_000
    batch_size: int = 512
    flush_interval_s: float = 0.5
    spool_path: str | Path | None = None
    wal_path: str | Path | None = None
    wal_flush_s: float = DEFAULT_WAL_FLUSH_S
    upstream_timeout_s: float = 600.0
    changes_poll_s: float = 10.0
    checkpoint_interval_s: float | None = 60.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def __post_init__(self) -> None:
        if not self.upstream.startswith(("http://", "https://")):
            raise InvalidInputError("upstream", "must be an http:// or https:// URL", self.upstream)
        if self.queue_size < 1:
            raise InvalidInputError("queue_size", "must be >= 1", self.queue_size)
        if self.batch_size < 1:
            raise InvalidInputError("batch_size", "must be >= 1", self.batch_size)
        if self.flush_interval_s <= 0:
            raise InvalidInputError("flush_interval_s", "must be > 0", self.flush_interval_s)
        if self.wal_flush_s <= 0:
            raise InvalidInputError("wal_flush_s", "must be > 0", self.wal_flush_s)
        if self.checkpoint_interval_s is not None and self.checkpoint_interval_s <= 0:
            raise InvalidInputError("checkpoint_interval_s", "must be > 0 (or None: no checkpoints)")
        if isinstance(self.max_body_bytes, bool) or not isinstance(self.max_body_bytes, int) or self.max_body_bytes < 1:
            raise InvalidInputError("max_body_bytes", "must be a positive integer", self.max_body_bytes)
        CapturePolicy(self.capture)


class _Forward:
    """An ASGI response that streams the upstream response through, then hands the exchange to the worker."""

    def __init__(self, proxy: ParityProxy, upstream: UpstreamResponse, raw: RawExchange, t_start: float) -> None:
        self.proxy = proxy
        self.upstream = upstream
        self.raw = raw
        self.t_start = t_start

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        up = self.upstream
        headers = [(k, v) for k, v in up.headers if k.lower() not in _RESPONSE_DROP_BYTES]
        keep = self.raw.path in SCORED_PATHS
        kept = 0
        complete = False
        try:
            await send({"type": "http.response.start", "status": up.status, "headers": headers})
            more = True
            while more:
                try:
                    chunk = await up.read()
                except UpstreamError as err:
                    # the upstream broke off mid-body: the client gets the same bytes and then the same broken
                    # connection (returning without the last message makes the server close it), never a clean end
                    self.proxy.metrics.upstream_errors.labels(reason="broken_body").inc()
                    log.warning("upstream %s broke off mid-body: %s", self.proxy.upstream, err)
                    return
                more = not up.finished  # the last piece goes out with the end of the body: one send, one write
                if chunk and keep and kept < MAX_SCORED_BODY_BYTES:
                    self.raw.chunks.append(chunk)
                    kept += len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
            complete = True
        finally:
            try:
                await up.aclose()
                if keep and complete:
                    self.raw.latency_ms = (time.perf_counter() - self.t_start) * 1000.0
                    self._hand_off()
            finally:
                self.proxy._in_flight -= 1

    def _hand_off(self) -> None:
        """Give the exchange to the worker. The user's answer is complete by now: whatever the hand-off raises
        (a full queue spools, and spooling parses) is counted and logged, never raised into the connection,
        which the server would then close under the client's next keep-alive request."""
        try:
            self.proxy.worker.submit(self.raw)
        except Exception as err:
            self.proxy.metrics.worker_errors.labels(stage="handoff").inc()
            log.warning("monitor: exchange on %s not handed to the worker: %r", self.raw.path, err)


#: Response headers not copied: hop-by-hop ones (``content-length`` is kept so sized bodies stay sized).
_RESPONSE_DROP = (HOP_BY_HOP - {"content-length"}) | {"date", "server"}
_RESPONSE_DROP_BYTES = frozenset(h.encode("latin-1") for h in _RESPONSE_DROP)
_HOP_BY_HOP_BYTES = frozenset(h.encode("latin-1") for h in HOP_BY_HOP)

#: What the proxy's 502/504 says for each :class:`UpstreamError` reason.
_FAILURES = {"timeout": "timed out", "connect": "unreachable", "protocol": "answered something that is not HTTP/1.x"}

#: Methods forwarded upstream under ``/v1/`` (any other answers 405).
FORWARDED_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"})


async def _read_body(receive: Any) -> bytes | None:
    """The request body from ASGI messages; ``None`` when the client disconnected first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _ForwardApp:
    """The forwarder as an ASGI app for the router (which starlette then calls with ``(scope, receive, send)``)."""

    def __init__(self, proxy: ParityProxy) -> None:
        self.proxy = proxy

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.proxy._forward(scope, receive, send)


class ParityProxy:
    """The proxy application: ``app`` is the ASGI app (starlette); :meth:`startup`/:meth:`shutdown` run in its
    lifespan. ``store`` is owned by the caller (closed by the caller after shutdown). ``clock`` stamps each
    exchange and feedback event when it arrives (default: the wall clock; a replay passes its simulated clock).
    ``mounts`` maps path prefixes to more ASGI apps served beside the proxy's own routes (the dashboard at
    ``/dashboard``). ``token``: required (as ``Authorization: Bearer``) on ``/parity/*``, ``/metrics`` and
    ``POST /v1/feedback``; ``feedback_token``: also accepted on ``POST /v1/feedback`` (see the module
    docstring)."""

    def __init__(
        self,
        config: ProxyConfig,
        store: Store,
        builder: RecordBuilder,
        *,
        hook: MonitorHook | None = None,
        notifiers: Sequence[Notifier] = (),
        metrics: ProxyMetrics | None = None,
        changes: Sequence[Change] = (),
        changes_source: Callable[[], Sequence[Change]] | None = None,
        clock: Callable[[], datetime] = utcnow,
        mounts: Mapping[str, Any] | None = None,
        token: str | None = None,
        feedback_token: str | None = None,
    ) -> None:
        self.config = config
        self._views_check = TokenCheck(token) if token is not None else None
        self._feedback_checks = tuple(TokenCheck(t) for t in (token, feedback_token) if t is not None)
        self.clock = clock
        self.mounts = dict(mounts or {})
        self.store = store
        self.metrics = metrics or ProxyMetrics()
        spool = Spool(config.spool_path) if config.spool_path is not None else None
        wal = WriteAheadLog(config.wal_path, flush_interval_s=config.wal_flush_s) if config.wal_path else None
        self.worker = MonitorWorker(
            store,
            builder,
            metrics=self.metrics,
            hook=hook,
            notifiers=notifiers,
            spool=spool,
            wal=wal,
            queue_size=config.queue_size,
            batch_size=config.batch_size,
            flush_interval_s=config.flush_interval_s,
            checkpoint_interval_s=config.checkpoint_interval_s,
        )
        self.otlp = OTLPReceiver(builder.for_source("otlp"), self.worker, registry=self.metrics.registry)
        self._initial_changes = list(changes)
        self._changes_source = changes_source
        self._seen_changes = {c.change_id for c in changes}
        self._poller: asyncio.Task[None] | None = None
        self._in_flight = 0  # requests between arrival and hand-off to the worker (event-loop thread only)
        self._pool: UpstreamClient | None = None
        self._host = httpx.URL(self.upstream_base(config)).netloc
        self.upstream = config.upstream.rstrip("/")
        self.app = self._build_app()

    @staticmethod
    def upstream_base(config: ProxyConfig) -> str:
        return config.upstream.rstrip("/")

    # -- lifecycle ---------------------------------------------------------------------------------------
    async def startup(self) -> None:
        # made here, inside the server's event loop; see parity.monitor.intake.upstream_client for why not httpcore
        self._pool = UpstreamClient(
            self.upstream_base(self.config),
            keepalive_s=UPSTREAM_KEEPALIVE_S,
            timeout_s=self.config.upstream_timeout_s,
        )
        self.worker.start()  # replays what a previous run left (write-ahead log, spool) first
        self.worker.submit(ChangeBatch(self._initial_changes))
        if self._changes_source is not None:
            self._poller = asyncio.create_task(self._poll_changes())

    async def _poll_changes(self) -> None:
        """Re-read the change log every ``changes_poll_s`` (faults and deploys land while the proxy runs)."""
        assert self._changes_source is not None
        source = self._changes_source
        while True:
            try:
                fresh = [c for c in await asyncio.to_thread(source) if c.change_id not in self._seen_changes]
            except (ParityError, httpx.HTTPError, OSError) as err:
                if self.worker.changes_error is None:
                    log.warning("change log unavailable: %s", err)
                self.worker.changes_error = str(err)[:200]
                fresh = []
            else:
                if self.worker.changes_error is not None:
                    log.warning("change log available again")
                self.worker.changes_error = None
            if fresh:
                self._seen_changes.update(c.change_id for c in fresh)
                self.worker.submit(ChangeBatch(fresh))
            await asyncio.sleep(self.config.changes_poll_s)

    @property
    def in_flight(self) -> int:
        """Requests received and not yet answered and handed to the worker."""
        return self._in_flight

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every request received so far has been answered, handed off and stored."""
        deadline = time.monotonic() + timeout
        while self._in_flight:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return self.worker.wait_idle(max(0.0, deadline - time.monotonic()))

    async def shutdown(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        await asyncio.to_thread(self.worker.stop)
        if self._pool is not None:
            await self._pool.aclose()

    # -- routes ------------------------------------------------------------------------------------------
    def _build_app(self) -> Any:
        starlette = import_optional("starlette.applications", extra="monitor")
        routing = import_optional("starlette.routing", extra="monitor")
        from contextlib import asynccontextmanager

        @asynccontextmanager
        async def lifespan(app: Any) -> Any:
            await self.startup()
            try:
                yield
            finally:
                await self.shutdown()

        views = (self._views_check,) if self._views_check is not None else ()
        feedback = self._feedback_checks
        routes = [
            routing.Route("/v1/feedback", self._authorized(self._feedback, feedback), methods=["POST"]),
            routing.Route("/v1/traces", self._authorized(self.otlp.endpoint, views), methods=["POST"]),  # OTLP spans
            routing.Route("/metrics", self._authorized(self._metrics, views), methods=["GET"]),
            routing.Route("/parity/health", self._authorized(self._health, views), methods=["GET"]),
            *read_routes(self.store, guard=lambda handler: self._authorized(handler, views), error=self._bad_read),
            # reached only by methods not forwarded (a 405); forwarded ones take the fast path below
            routing.Route("/v1/{path:path}", _ForwardApp(self), methods=list(FORWARDED_METHODS)),
            *(routing.Mount(prefix, app=app) for prefix, app in self.mounts.items()),
        ]
        exceptions = import_optional("starlette.exceptions", extra="monitor")
        app = starlette.Starlette(
            routes=routes,
            lifespan=lifespan,
            exception_handlers={exceptions.HTTPException: self._http_error, Exception: self._server_error},
        )
        refused = self.metrics.refused.labels(reason="body_too_large")
        forward = self._forward
        own = frozenset(("/v1/feedback", "/v1/traces"))

        async def dispatch(scope: Any, receive: Any, send: Any) -> None:
            """``/v1/*`` (but the proxy's own two routes) straight to the forwarder; the rest through starlette."""
            path = scope.get("path", "")
            if (
                path.startswith("/v1/")
                and scope["type"] == "http"
                and path not in own
                and scope["method"] in FORWARDED_METHODS
            ):
                await forward(scope, receive, send)
            else:
                await app(scope, receive, send)

        return BodyLimit(dispatch, max_bytes=self.config.max_body_bytes, on_refused=refused.inc)

    # -- the proxy's own answers: auth, errors -----------------------------------------------------------
    def _authorized(self, handler: Callable[[Any], Any], checks: Sequence[TokenCheck]) -> Callable[[Any], Any]:
        """``handler`` behind the token checks (none: open, the loopback default)."""
        if not checks:
            return handler

        async def endpoint(request: Any) -> Any:
            authorization = request.headers.get("authorization")
            if any(check.allows(authorization=authorization) for check in checks):
                return await handler(request)
            self.metrics.refused.labels(reason="unauthorized").inc()
            message = (
                "parity proxy: this route needs the proxy's token: send Authorization: Bearer TOKEN "
                "(`parity proxy` printed it at start-up; `parity status --proxy-token` / PARITY_PROXY_TOKEN pass it)"
            )
            return _error(message, 401, type="authentication_error", code="invalid_token",
                          headers={"www-authenticate": 'Bearer realm="parity proxy"'})  # fmt: skip

        return endpoint

    async def _http_error(self, request: Any, exc: Any) -> Any:
        status = int(getattr(exc, "status_code", 500))
        kind = "not_found_error" if status == 404 else "invalid_request_error"
        detail = str(getattr(exc, "detail", "") or "error")
        return _error(f"parity proxy: {request.method} {request.url.path}: {detail}", status, type=kind)

    async def _server_error(self, request: Any, exc: Exception) -> Any:
        log.error("parity proxy: %s %s failed: %r", request.method, request.url.path, exc)
        return _error("parity proxy: internal error (logged)", 500, type="server_error", code="internal_error")

    async def _forward(self, scope: Any, receive: Any, send: Any) -> None:
        """The request path, straight on ASGI (no router, request or response objects: profiled, they were a
        good part of the proxy's own CPU per request): read the body, open the upstream, stream its answer."""
        self._in_flight += 1
        response: Any = None
        try:
            body = await _read_body(receive)
            if body is None:  # the client went away before its request was whole: nothing to forward
                return
            response = await self._open_upstream(scope, body)
        except Exception as err:
            log.error("parity proxy: %s %s failed: %r", scope.get("method"), scope.get("path"), err)
            response = _error("parity proxy: internal error (logged)", 500, type="server_error", code="internal_error")
        finally:
            if not isinstance(response, _Forward):  # a _Forward counts itself out once the exchange is handed off
                self._in_flight -= 1
        await response(scope, receive, send)

    async def _open_upstream(self, scope: Any, body: bytes) -> Any:
        t0 = time.perf_counter()
        now = self.clock()
        path: str = scope["path"]
        method: str = scope["method"]
        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        headers = [(k, v) for k, v in raw_headers if k.lower() not in _HOP_BY_HOP_BYTES]
        headers.append((b"host", self._host))
        if body or method in ("POST", "PUT", "PATCH"):
            headers.append((b"content-length", str(len(body)).encode()))
        # the path as the client sent it (percent-escapes kept): the decoded one may hold spaces or bytes no
        # request line can carry
        target: bytes = scope.get("raw_path") or path.encode()
        query: bytes = scope.get("query_string") or b""
        if query:
            target += b"?" + query
        assert self._pool is not None
        kind = endpoint_kind(path)
        t1 = time.perf_counter()
        try:
            upstream = await self._pool.request(method.encode("latin-1"), target, headers, body)
        except UpstreamError as err:
            return self._upstream_failure(kind, err, 504 if err.reason == "timeout" else 502)
        t2 = time.perf_counter()
        code = upstream.status
        response_headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in upstream.headers}
        self.metrics.requests.labels(endpoint=kind, code_class=f"{code // 100}xx").inc()
        if code >= 400:
            self.metrics.upstream_errors.labels(reason=f"status_{code // 100}xx").inc()
        raw = RawExchange(
            path=path,
            time=now,
            request_body=body,
            request_headers=safe_request_headers({k.decode("latin-1"): v.decode("latin-1") for k, v in raw_headers}),
            status_code=code,
            response_headers=response_headers,
            chunks=[],
            latency_ms=0.0,
            streamed="text/event-stream" in response_headers.get("content-type", ""),
        )
        response = _Forward(self, upstream, raw, t0)
        self.metrics.added_latency.observe((t1 - t0) + (time.perf_counter() - t2))
        return response

    def _upstream_failure(self, kind: str, err: UpstreamError, status: int) -> Any:
        """The 502/504 for an upstream that gave no answer; its ``code`` (and the metric's reason) is ``timeout`` or
        ``connect`` (an answer that is not HTTP counts as ``connect`` too: no usable answer came)."""
        responses = import_optional("starlette.responses", extra="monitor")
        reason = "timeout" if err.reason == "timeout" else "connect"
        self.metrics.requests.labels(endpoint=kind, code_class=f"{status // 100}xx").inc()
        self.metrics.upstream_errors.labels(reason=reason).inc()
        what = _FAILURES.get(err.reason, "unreachable")
        log.warning("upstream %s %s: %s", self.upstream, what, err)
        message = f"parity proxy: upstream {self.upstream} {what}"
        payload = {"error": {"message": message, "type": "upstream_error", "param": None, "code": reason}}
        return responses.JSONResponse(payload, status_code=status)

    async def _feedback(self, request: Any) -> Any:
        responses = import_optional("starlette.responses", extra="monitor")
        try:
            data = loads_bounded(await request.body())
            if not isinstance(data, dict):
                raise InvalidInputError("body", "must be a JSON object with response_id and kind")
            rid = data.get("response_id")
            if not isinstance(rid, str) or not rid:
                raise InvalidInputError("response_id", "must be a non-empty string", rid)
            kind = data.get("kind")
            if not isinstance(kind, str):
                raise InvalidInputError("kind", "must be a string", kind)
            when = data.get("time")
            if when is not None and not isinstance(when, str):
                raise InvalidInputError("time", "must be an ISO-8601 string with a timezone", when)
            at = parse_time(when) if when else self.clock()
            event = FeedbackEvent(response_id=rid, time=at, kind=kind)
        except (ValueError, TypeError, OverflowError, ParityError) as err:
            self.metrics.refused.labels(reason="bad_request").inc()
            param = err.argument if isinstance(err, InvalidInputError) and err.argument != "body" else None
            code = getattr(err, "code", None) or "invalid_value"
            return _error(str(err), 400, param=param, code=code)
        self.metrics.feedback.labels(kind=event.kind).inc()
        self.worker.submit(event)
        return responses.JSONResponse({"status": "accepted", "response_id": rid}, status_code=202)

    async def _metrics(self, request: Any) -> Any:
        responses = import_optional("starlette.responses", extra="monitor")
        return responses.Response(self.metrics.render(), media_type=self.metrics.content_type)

    def _bad_read(self, err: ParityError) -> Any:
        param = err.argument if isinstance(err, InvalidInputError) else None
        return _error(str(err), 400, param=param, code="invalid_value")

    async def _health(self, request: Any) -> Any:
        responses = import_optional("starlette.responses", extra="monitor")
        self.worker.ensure_alive()
        health = self.worker.health()
        payload = health.to_dict() | {"upstream": self.upstream}
        return responses.JSONResponse(payload, status_code=503 if health.status == "failing" else 200)


def _error(
    message: str,
    status: int,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """An answer of the proxy's own, in OpenAI's error shape."""
    responses = import_optional("starlette.responses", extra="monitor")
    payload = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return responses.JSONResponse(payload, status_code=status, headers=dict(headers or {}))
