"""The lab fleet's OpenAI-compatible HTTP server (starlette), one process for the whole fleet.

Endpoints: ``GET /v1/models``, ``POST /v1/completions`` (``echo`` + ``logprobs`` return prompt logprobs, and
``max_tokens=0`` with ``echo`` scores a prompt without generating), ``POST /v1/chat/completions`` (SSE streaming
or not, ``logprobs``/``top_logprobs`` in OpenAI's shape), ``GET /health``, and the admin endpoints
``POST /admin/changes`` (bearer token) and ``GET /admin/changes`` (the change log, ``{"changes": [...],
"active": [ids]}``), ``GET /admin/state``.

Every generation response carries ``x-parity-server``, ``x-parity-pool``, ``x-parity-platform``,
``x-parity-config-version`` and ``x-parity-model``; errors use OpenAI's shape (400 names the parameter, 404 an
unknown model, 401 a missing or wrong admin token, 413 a body over ``max_body_bytes``, 503 a saturated server).
A body is parsed by :func:`parity._json_input.loads_bounded` before anything else: bytes that are not UTF-8,
``NaN``/``Infinity``, nesting deeper than 128 levels and lone surrogates (``"a\\ud800b"``) are a 400 like any
other bad body, never a 500; a body over the limit is refused with 413 before it is read whole or tokenized.

Per request: parse and validate (:mod:`parity.lab._openai`) -> fleet dispatch (:mod:`parity.lab.dispatch`: route
under the active changes, pick the engine, attach the server's faults, run it in the engine's continuous batch)
-> the OpenAI body or stream (:mod:`parity.lab._responses`). This module is the HTTP layer between them.

>>> from parity.lab.fleet import FleetConfig, default_config_path
>>> server = LabServer(FleetConfig.load(default_config_path("incident")), admin_token="t")
>>> sorted(server.fleet.models)
['H', 'O', 'S']
>>> server.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parity._body_limit import DEFAULT_MAX_BODY_BYTES, BodyLimit
from parity._exceptions import InvalidInputError
from parity._json_input import JSONInputError, loads_bounded
from parity._optional import import_optional
from parity.lab._batcher import MicroBatcher, QueueFullError
from parity.lab._openai import APIError, ParsedRequest, error_body, parse_request
from parity.lab._responses import Answer, chat_body, completion_body, stream_choice, stream_chunk, usage
from parity.lab.changelog import ChangeLog, change_from_json, change_to_json
from parity.lab.dispatch import EngineKey, FleetDispatch, Plan
from parity.lab.faults import validate_change
from parity.lab.fleet import FleetConfig
from parity.lab.router import Router

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from parity.lab.checkpoints import Checkpoint
    from parity.lab.engine import GenerationResult
    from parity.lab.tokenizer import Tokenizer

__all__ = ["KEEP_ALIVE_S", "EngineKey", "LabServer", "ServerThread", "serve"]

#: Seconds an idle keep-alive connection to ``parity lab serve`` stays open (uvicorn's default is 5; nginx's 75).
KEEP_ALIVE_S = 75

log = logging.getLogger("parity.lab")


class LabServer:
    """The fleet behind one ASGI app (:attr:`app`); call :meth:`close` when done (stops the worker thread).

    The fleet itself (models, router, change log, engines, batcher) is :attr:`dispatch`
    (:class:`parity.lab.dispatch.FleetDispatch`, built with ``weights_dir``, ``changelog_path``, ``max_batch``,
    ``max_queue``, ``max_wait_s`` and ``prefix_cache_bytes``, each engine's prefix cache budget); its main parts are
    reachable here too. ``admin_token`` None disables ``POST /admin/changes`` (every call answers 401); bodies over
    ``max_body_bytes`` are refused with 413.
    """

    def __init__(
        self,
        fleet: FleetConfig,
        *,
        weights_dir: str | Path | None = None,
        admin_token: str | None = None,
        changelog_path: str | Path | None = None,
        max_batch: int = 16,
        max_queue: int = 256,
        max_wait_s: float = 0.004,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        prefix_cache_bytes: int | None = None,
    ) -> None:
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes < 1:
            raise InvalidInputError("max_body_bytes", "must be a positive integer", max_body_bytes)
        self.max_body_bytes = max_body_bytes
        self.dispatch = FleetDispatch(
            fleet,
            weights_dir=weights_dir,
            changelog_path=changelog_path,
            max_batch=max_batch,
            max_queue=max_queue,
            max_wait_s=max_wait_s,
            prefix_cache_bytes=prefix_cache_bytes,
        )
        self.admin_token = admin_token
        self.started = time.time()
        self.requests_total = 0
        self._app: Any = None

    # -- the fleet (parity.lab.dispatch) -------------------------------------------------------------------

    @property
    def fleet(self) -> FleetConfig:
        """The fleet configuration."""
        return self.dispatch.fleet

    @property
    def router(self) -> Router:
        """The fleet's router."""
        return self.dispatch.router

    @property
    def changelog(self) -> ChangeLog:
        """The change log (admin changes, active faults)."""
        return self.dispatch.changelog

    @property
    def batcher(self) -> MicroBatcher:
        """The worker that runs every engine's continuous batch."""
        return self.dispatch.batcher

    @property
    def weights_dir(self) -> Path:
        """The first model's weights source."""
        return self.dispatch.weights_dir

    @property
    def tokenizer(self) -> Tokenizer:
        """The first model's tokenizer (every model's: :meth:`checkpoint`)."""
        return self.dispatch.tokenizer

    @property
    def model_id(self) -> str:
        """The first model's checkpoint id."""
        return self.dispatch.model_id

    @property
    def base_context(self) -> int:
        """The first model's trained context length."""
        return self.dispatch.base_context

    @property
    def snippets(self) -> dict[str, list[list[int]]]:
        """The first model's tokenized corruption snippets."""
        return self.dispatch.snippets

    def checkpoint(self, model: str) -> Checkpoint:
        """The checkpoint a served model runs on (its tokenizer, chat format and config)."""
        return self.dispatch.checkpoint(model)

    async def warm_up(self) -> None:
        """Load the engines the fleet's configured servers use (else each loads on its first request)."""
        await self.dispatch.warm_up()

    def close(self) -> None:
        """Stop the worker thread."""
        self.dispatch.close()

    # -- the app -------------------------------------------------------------------------------------------

    @property
    def app(self) -> Any:
        """The ASGI application (built once): the starlette app behind the body limit."""
        if self._app is None:
            self._app = BodyLimit(self._build_app(), max_bytes=self.max_body_bytes)
        return self._app

    def _build_app(self) -> Starlette:
        applications = import_optional("starlette.applications", extra="lab")
        routing = import_optional("starlette.routing", extra="lab")
        exceptions = import_optional("starlette.exceptions", extra="lab")
        Route_ = routing.Route

        async def http_error(request: Request, exc: Exception) -> Response:
            status = int(getattr(exc, "status_code", 500))
            detail = str(getattr(exc, "detail", "error"))
            kind = "not_found_error" if status == 404 else "invalid_request_error"
            return _json(error_body(f"{request.method} {request.url.path}: {detail}", type=kind), status)

        async def server_error(request: Request, exc: Exception) -> Response:
            log.error("lab server: %s %s failed: %r", request.method, request.url.path, exc)
            return _json(error_body("internal error (logged)", type="server_error", code="internal_error"), 500)

        return applications.Starlette(  # type: ignore[no-any-return]
            routes=[
                Route_("/v1/models", self._models, methods=["GET"]),
                Route_("/v1/models/{model}", self._model, methods=["GET"]),
                Route_("/v1/completions", self._completions, methods=["POST"]),
                Route_("/v1/chat/completions", self._chat, methods=["POST"]),
                Route_("/admin/changes", self._post_change, methods=["POST"]),
                Route_("/admin/changes", self._get_changes, methods=["GET"]),
                Route_("/admin/state", self._state, methods=["GET"]),
                Route_("/health", self._health, methods=["GET"]),
            ],
            exception_handlers={exceptions.HTTPException: http_error, Exception: server_error},
        )

    async def _models(self, request: Request) -> Response:
        data = [self._model_card(name) for name in self.fleet.models]
        return _json({"object": "list", "data": data})

    def _model_card(self, name: str) -> dict[str, Any]:
        owner = f"parity-lab/{self.checkpoint(name).model_id}"
        return {"id": name, "object": "model", "created": int(self.started), "owned_by": owner}

    async def _model(self, request: Request) -> Response:
        name = request.path_params["model"]
        if name not in self.fleet.models:
            return _json(error_body(f"The model `{name}` does not exist", param="model", code="model_not_found"), 404)
        return _json(self._model_card(name))

    async def _health(self, request: Request) -> Response:
        return _json({"status": "ok", "queue": self.batcher.depth, "engines": [list(k) for k in self.dispatch.engines]})

    async def _state(self, request: Request) -> Response:
        stats = self.batcher.stats
        return _json(
            {
                "config_version": self.fleet.config_version,
                "servers": [s.name for s in self.fleet.servers],
                "active_changes": [c.change_id for c in self.changelog.active()],
                "engines": [list(k) for k in self.dispatch.engines],
                "running": self.batcher.running,
                "requests_total": self.requests_total,
                "batches": {
                    "count": stats.batches,
                    "requests": stats.requests,
                    "largest": stats.largest,
                    "sizes": stats.sizes,
                    "joined": stats.joined,
                    "cancelled": stats.cancelled,
                },
                "prefix_cache": self.dispatch.prefix_cache_stats(),
            }
        )

    # -- admin ---------------------------------------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        if self.admin_token is None:
            return False
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.admin_token.encode())

    async def _post_change(self, request: Request) -> Response:
        if not self._authorized(request):
            message = "a valid admin token is required (Authorization: Bearer TOKEN)"
            if self.admin_token is None:
                message = "admin changes are disabled: start the server with --admin-token"
            return _json(
                error_body(message, type="authentication_error", code="invalid_admin_token"),
                401,
                {"www-authenticate": "Bearer"},
            )
        try:
            body = loads_bounded(await request.body())
        except JSONInputError as err:
            return _json(error_body(str(err), code=err.code), 400)
        try:
            change = change_from_json(body)
            validate_change(change, models=self.fleet.models, platforms=self.fleet.platforms)
            self.changelog.append(change)
        except InvalidInputError as err:
            return _json(error_body(str(err), param=err.argument, code="invalid_value"), 400)
        return _json(change_to_json(change), 201)

    async def _get_changes(self, request: Request) -> Response:
        return _json(
            {
                "changes": [change_to_json(c) for c in self.changelog.entries],
                "active": [c.change_id for c in self.changelog.active()],
            }
        )

    # -- generation ----------------------------------------------------------------------------------------

    async def _completions(self, request: Request) -> Response:
        return await self._generate(request, chat=False)

    async def _chat(self, request: Request) -> Response:
        return await self._generate(request, chat=True)

    async def _generate(self, request: Request, *, chat: bool) -> Response:
        headers: dict[str, str] = {}
        try:
            try:
                body = loads_bounded(await request.body())
            except JSONInputError as err:
                raise APIError(400, str(err), code=err.code) from None
            req = parse_request(body, chat=chat)
            request_id = uuid.uuid4().hex[:24]
            session = req.user or request.headers.get(self.fleet.router.session_header) or None
            plan = self.dispatch.plan(req, session, request_id)
            headers = plan.headers()
            self.requests_total += 1
            answer = Answer(
                id=("chatcmpl-" if chat else "cmpl-") + request_id,
                created=int(time.time()),
                fingerprint=f"{plan.route.server.name}:{plan.config_version}",
                prompt_ids=plan.prompt_ids,
                prompt_text=plan.prompt_text,
            )
            if req.stream:
                return self._stream(req, plan, answer, headers)
            if not chat and req.max_tokens == 0:
                results: list[GenerationResult | None] = [None] * req.n
            else:
                jobs = [
                    self.batcher.submit(plan.key, self.dispatch.generation_request(req, plan, i)) for i in range(req.n)
                ]
                results = list(await asyncio.gather(*jobs))
            if chat:
                return _json(chat_body(req, answer, results), 200, headers)  # type: ignore[arg-type]
            prompt_scores = None
            if req.echo and req.logprobs:
                prompt_scores = await self.dispatch.score_prompt(plan, req.top_logprobs)
            token_text = self.checkpoint(req.model).tokenizer.token_text
            body = completion_body(req, answer, results, token_text=token_text, prompt_scores=prompt_scores)
            return _json(body, 200, headers)
        except APIError as err:
            return _json(err.body(), err.status, headers)
        except InvalidInputError as err:
            return _json(error_body(str(err), param=err.argument, code="invalid_value"), 400, headers)
        except QueueFullError as err:
            return _json(
                error_body(str(err), type="server_overloaded", code="overloaded"), 503, {**headers, "retry-after": "1"}
            )

    def _stream(self, req: ParsedRequest, plan: Plan, answer: Answer, headers: dict[str, str]) -> Response:
        responses = import_optional("starlette.responses", extra="lab")
        events: asyncio.Queue[Any] = asyncio.Queue()
        gen_request = self.dispatch.generation_request(req, plan, 0)
        token_text = self.checkpoint(req.model).tokenizer.token_text

        async def run() -> None:
            try:
                result = await self.batcher.submit(plan.key, gen_request, events.put_nowait)
                events.put_nowait(("done", result))
            except Exception as err:  # reported in the stream as an error event
                events.put_nowait(("error", err))

        def chunk(choice: dict[str, Any], counts: dict[str, int] | None = None) -> str:
            return stream_chunk(req, answer, choice, counts)

        async def body() -> AsyncIterator[str]:
            task = asyncio.ensure_future(run())
            try:
                if req.chat:
                    yield chunk(
                        {
                            "index": 0,
                            "delta": {"role": "assistant", "content": ""},
                            "logprobs": None,
                            "finish_reason": None,
                        }
                    )
                elif req.echo:
                    yield chunk({"index": 0, "text": plan.prompt_text, "logprobs": None, "finish_reason": None})
                while True:
                    item = await events.get()
                    if isinstance(item, tuple):
                        tag, value = item
                        if tag == "error":
                            status = 503 if isinstance(value, QueueFullError) else 400
                            err = error_body(
                                str(value), type="server_overloaded" if status == 503 else "invalid_request_error"
                            )
                            yield f"data: {json.dumps(err)}\n\n"
                            break
                        result = value
                        if req.chat:
                            yield chunk(
                                {"index": 0, "delta": {}, "logprobs": None, "finish_reason": result.finish_reason}
                            )
                        else:
                            yield chunk(
                                {"index": 0, "text": "", "logprobs": None, "finish_reason": result.finish_reason}
                            )
                        if req.include_usage:
                            yield chunk({}, usage(len(plan.prompt_ids), result.completion_tokens))
                        break
                    yield chunk(stream_choice(req, item, token_text))
                yield "data: [DONE]\n\n"
            finally:
                if not task.done():
                    task.cancel()

        return responses.StreamingResponse(  # type: ignore[no-any-return]
            body(), media_type="text/event-stream", headers={**headers, "cache-control": "no-cache"}
        )


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    responses = import_optional("starlette.responses", extra="lab")
    body = json.dumps(data, ensure_ascii=False, allow_nan=False).encode("utf-8")
    return responses.Response(body, status_code=status, headers=headers, media_type="application/json")  # type: ignore[no-any-return]


# -- running it -------------------------------------------------------------------------------------------


#: How often a fleet started with ``parent_pid`` checks that its parent is still there.
PARENT_POLL_S = 0.5


def serve(
    server: LabServer,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "warning",
    parent_pid: int | None = None,
) -> None:
    """Run ``server`` with uvicorn until interrupted, then close it.

    Idle keep-alive connections stay open for :data:`KEEP_ALIVE_S`, longer than the clients in front of the lab
    keep them (``parity proxy`` drops its own after 4 s): with uvicorn's default of 5 s a proxy could send a
    request on a connection the lab was closing at that moment, and the request failed with a read error (seen
    once under heavy load in the demo's replay).

    With ``parent_pid`` (the process that started this one) the fleet shuts down as soon as that parent is gone,
    however it ended: a program that starts the lab as its child (``parity demo``) and is killed with SIGKILL
    cannot stop it, and the fleet would otherwise keep its port and its cores.
    """
    uvicorn = import_optional("uvicorn", extra="lab")
    if parent_pid is not None and os.getppid() != parent_pid:
        raise InvalidInputError("parent_pid", f"must be this process's parent ({os.getppid()})", parent_pid)
    config = uvicorn.Config(
        server.app, host=host, port=port, log_level=log_level, access_log=False, timeout_keep_alive=KEEP_ALIVE_S
    )
    runner = uvicorn.Server(config)
    done = threading.Event()

    def watch_parent() -> None:
        while not done.wait(PARENT_POLL_S):
            if os.getppid() != parent_pid:  # re-parented: the parent is gone
                runner.should_exit = True
                return

    watcher = threading.Thread(target=watch_parent, name="lab parent watch", daemon=True)
    if parent_pid is not None:
        watcher.start()
    try:
        runner.run()
    finally:
        done.set()
        server.close()


class ServerThread:
    """Serve a :class:`LabServer` from a background thread on ``host`` and a free port (tests, demos).

    Use it as a context manager; :attr:`url` is ``http://host:port`` once started.
    """

    def __init__(self, server: LabServer, *, host: str = "127.0.0.1", port: int = 0) -> None:
        from parity._background_server import BackgroundServer

        self.server = server
        self.host = host
        self._background = BackgroundServer(server.app, host=host, port=port, lifespan="off", name="lab server")
        self.port = self._background.port
        self.url = self._background.url

    def start(self, timeout: float = 30.0) -> ServerThread:
        """Start serving; wait until uvicorn is accepting connections."""
        self._background.start(timeout)
        return self

    def stop(self) -> None:
        """Stop uvicorn and the server's worker."""
        self._background.stop(timeout=15)
        self.server.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running(server: LabServer, *, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``server`` on a free loopback port for the ``with`` block; yields the base URL."""
    with ServerThread(server, host=host) as thread:
        yield thread.url
