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

Per request: parse and validate -> route (:mod:`parity.lab.router`) under the active changes
(:mod:`parity.lab.faults`) -> pick the engine for the model's weights and the server's (precision, RoPE scaling)
-> attach the server's
faults (sampler, corruption) -> the micro-batcher runs it in a batch on the worker thread.

>>> from parity.lab.fleet import FleetConfig, default_config_path
>>> server = LabServer(FleetConfig.load(default_config_path("incident")), admin_token="t")
>>> sorted(server.fleet.models)
['H', 'O', 'S']
>>> server.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parity._body_limit import DEFAULT_MAX_BODY_BYTES, BodyLimit
from parity._exceptions import InvalidInputError
from parity._json_input import JSONInputError, loads_bounded
from parity._optional import import_optional
from parity.lab._batcher import MicroBatcher, QueueFullError
from parity.lab._openai import APIError, ParsedRequest, error_body, parse_request
from parity.lab.changelog import ChangeLog, change_from_json, change_to_json
from parity.lab.faults import CorruptionProcessor, FaultState, sampler_filter, snippet_token_ids, validate_change
from parity.lab.fleet import FleetConfig
from parity.lab.router import Route, Router
from parity.sampling import SamplingParams

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from parity.lab.checkpoints import Checkpoint
    from parity.lab.engine import Engine, GenerationRequest, GenerationResult, TokenEvent

__all__ = ["LabServer", "ServerThread", "serve"]

log = logging.getLogger("parity.lab")

#: the engine a request runs on: (weights, precision, RoPE scaling).
EngineKey = tuple[str, str, float]


@dataclass(frozen=True)
class _Plan:
    """A routed request: where it runs and with what."""

    route: Route
    key: EngineKey
    config_version: str
    prompt_ids: list[int]
    prompt_text: str
    max_tokens: int
    sampling: SamplingParams
    faults: FaultState

    def headers(self) -> dict[str, str]:
        return {
            "x-parity-server": self.route.server.name,
            "x-parity-pool": self.route.pool,
            "x-parity-platform": self.route.platform,
            "x-parity-config-version": self.config_version,
            "x-parity-model": self.route.model,
        }


class LabServer:
    """The fleet behind one ASGI app (:attr:`app`); call :meth:`close` when done (stops the worker thread).

    Each model runs on its fleet ``weights`` (:meth:`FleetConfig.weights_of`); ``weights_dir`` (a weights name or
    directory) overrides them for every model. Checkpoints are read when the server is built (SmolLM2: a few
    seconds, once per process). ``admin_token`` None
    disables ``POST /admin/changes`` (every call answers 401); ``changelog_path`` mirrors the log to JSONL.
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
    ) -> None:
        from parity.lab.checkpoints import load_checkpoint, resolve_weights

        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes < 1:
            raise InvalidInputError("max_body_bytes", "must be a positive integer", max_body_bytes)
        self.max_body_bytes = max_body_bytes

        if max_batch < 1:
            raise InvalidInputError("max_batch", "must be >= 1", max_batch)
        if max_queue < 1:
            raise InvalidInputError("max_queue", "must be >= 1", max_queue)
        self.fleet = fleet
        #: each served model's weights key (a name of parity.lab.checkpoints.WEIGHTS_NAMES or a directory).
        self.weights_of = {
            name: resolve_weights(weights_dir if weights_dir is not None else fleet.weights_of(name))
            for name in fleet.models
        }
        self.checkpoints = {key: load_checkpoint(key) for key in dict.fromkeys(self.weights_of.values())}
        first = self.checkpoints[self.weights_of[next(iter(fleet.models))]]
        self.weights_dir = first.source
        self.admin_token = admin_token
        self.changelog = ChangeLog(changelog_path)
        self.router = Router(fleet)
        #: the first model's tokenizer, context and id (every model's: :meth:`checkpoint`).
        self.tokenizer = first.tokenizer
        self.base_context = first.config.max_context
        self.model_id = first.model_id
        self._snippets = {key: snippet_token_ids(c.tokenizer.encode) for key, c in self.checkpoints.items()}
        self.snippets = self._snippets[first.name]
        self.started = time.time()
        self._engines: dict[EngineKey, Engine] = {}
        self._samplers: dict[str, Callable[..., Any]] = {}
        self.batcher = MicroBatcher(self._engine_for, max_batch=max_batch, max_queue=max_queue, max_wait_s=max_wait_s)
        self.requests_total = 0
        self._app: Any = None

    # -- engines -------------------------------------------------------------------------------------------

    def checkpoint(self, model: str) -> Checkpoint:
        """The checkpoint a served model runs on (its tokenizer, chat format and config)."""
        return self.checkpoints[self.weights_of[model]]

    def _engine_for(self, key: Hashable) -> Engine:
        """The engine for ``(weights, precision, rope_scaling)``, loaded on first use (runs on the worker thread)."""
        from parity.lab.engine import Engine

        weights, precision, scaling = str(key[0]), str(key[1]), float(key[2])  # type: ignore[index]
        engine = self._engines.get((weights, precision, scaling))
        if engine is None:
            engine = Engine.load(weights, precision="bf16" if precision == "bf16" else "fp32", rope_scaling=scaling)
            self._engines[(weights, precision, scaling)] = engine
        return engine

    async def warm_up(self) -> None:
        """Load the engines the fleet's configured servers use (else each loads on its first request)."""
        keys = {
            (self.weights_of[m.name], m.precision, p.rope_scaling)
            for m in self.fleet.models.values()
            for p in self.fleet.pools.values()
        }
        for key in sorted(keys):
            await self.batcher.call(functools.partial(self._engine_for, key))

    def close(self) -> None:
        """Stop the worker thread."""
        self.batcher.close()

    # -- planning ------------------------------------------------------------------------------------------

    def _plan(self, req: ParsedRequest, session: str | None, request_id: str) -> _Plan:
        spec = self.fleet.models.get(req.model)
        if spec is None:
            raise APIError(
                404,
                f"The model `{req.model}` does not exist; served models: {', '.join(sorted(self.fleet.models))}",
                param="model",
                code="model_not_found",
            )
        checkpoint = self.checkpoint(req.model)
        tokenizer = checkpoint.tokenizer
        if req.chat:
            assert req.messages is not None
            prompt_text = tokenizer.chat.render(req.messages)
            prompt_ids = tokenizer.encode(prompt_text)
        elif req.prompt_ids is not None:
            prompt_ids = req.prompt_ids
            bad = next((t for t in prompt_ids if not 0 <= t < tokenizer.vocab_size), None)
            if bad is not None:
                raise APIError(
                    400,
                    f"`prompt` token ids must be in [0, {tokenizer.vocab_size}), got {bad}",
                    param="prompt",
                    code="invalid_value",
                )
            prompt_text = tokenizer.decode(prompt_ids)
        else:
            prompt_text = req.prompt or ""
            prompt_ids = tokenizer.encode(prompt_text)
        if not prompt_ids:
            raise APIError(
                400, "`prompt` must not be empty", param="messages" if req.chat else "prompt", code="invalid_value"
            )
        faults = FaultState(self.changelog.active(), base_version=self.fleet.config_version)
        route = self.router.route(
            model=req.model, prompt_tokens=len(prompt_ids), session=session, faults=faults, request_id=request_id
        )
        where = {"model": req.model, "platform": route.platform, "pool": route.pool, "server": route.server.name}
        precision = faults.precision(spec.precision, **where)
        key: EngineKey = (checkpoint.name, precision, route.server.rope_scaling)
        context = int(checkpoint.config.max_context * route.server.rope_scaling)
        room = context - len(prompt_ids)
        param = "messages" if req.chat else "prompt"
        if room < 1:
            raise APIError(
                400,
                f"This model's maximum context length is {context} tokens; the prompt has {len(prompt_ids)} tokens",
                param=param,
                code="context_length_exceeded",
            )
        if req.max_tokens is None:
            max_tokens = min(spec.max_tokens, room)
        else:
            max_tokens = req.max_tokens
            if max_tokens > room:
                raise APIError(
                    400,
                    f"This model's maximum context length is {context} tokens; the prompt has {len(prompt_ids)} "
                    f"tokens and `max_tokens` asks for {max_tokens} more (at most {room})",
                    param="max_tokens",
                    code="context_length_exceeded",
                )
        sampling = req.sampling_for(spec.temperature)
        version = faults.config_version(**where)
        return _Plan(route, key, version, prompt_ids, prompt_text, max_tokens, sampling, faults)

    def _generation_request(self, req: ParsedRequest, plan: _Plan, index: int) -> GenerationRequest:
        from parity.lab.engine import GenerationRequest

        where = {
            "model": req.model,
            "platform": plan.route.platform,
            "pool": plan.route.pool,
            "server": plan.route.server.name,
        }
        sampler = None
        change = plan.faults.sampler(**where)
        if change is not None:
            sampler = self._samplers.get(change.change_id)
            if sampler is None:
                sampler = self._samplers[change.change_id] = sampler_filter(change)
        processor = None
        corruption = plan.faults.corruption(**where)
        if corruption is not None:
            processor = CorruptionProcessor(corruption, self._snippets[plan.key[0]])
        seed = None if req.seed is None else (req.seed + index) % (1 << 64)
        return GenerationRequest(
            prompt_ids=list(plan.prompt_ids),
            max_tokens=plan.max_tokens,
            sampling=plan.sampling,
            seed=seed,
            stop=req.stop,
            top_logprobs=req.top_logprobs,
            sampler=sampler,
            logits_processor=processor,
        )

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
        return _json({"status": "ok", "queue": self.batcher.depth, "engines": [list(k) for k in self._engines]})

    async def _state(self, request: Request) -> Response:
        stats = self.batcher.stats
        return _json(
            {
                "config_version": self.fleet.config_version,
                "servers": [s.name for s in self.fleet.servers],
                "active_changes": [c.change_id for c in self.changelog.active()],
                "engines": [list(k) for k in self._engines],
                "requests_total": self.requests_total,
                "batches": {
                    "count": stats.batches,
                    "requests": stats.requests,
                    "largest": stats.largest,
                    "sizes": stats.sizes,
                },
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
            plan = self._plan(req, session, request_id)
            headers = plan.headers()
            self.requests_total += 1
            created = int(time.time())
            rid = ("chatcmpl-" if chat else "cmpl-") + request_id
            if req.stream:
                return self._stream(req, plan, rid, created, headers)
            if not chat and req.max_tokens == 0:
                results: list[GenerationResult | None] = [None] * req.n
            else:
                jobs = [self.batcher.submit(plan.key, self._generation_request(req, plan, i)) for i in range(req.n)]
                results = list(await asyncio.gather(*jobs))
            if chat:
                return _json(self._chat_body(req, plan, rid, created, results), 200, headers)
            prompt_scores = None
            if req.echo and req.logprobs:
                prompt_scores = await self._score_prompt(plan, req.top_logprobs)
            return _json(self._completion_body(req, plan, rid, created, results, prompt_scores), 200, headers)
        except APIError as err:
            return _json(err.body(), err.status, headers)
        except InvalidInputError as err:
            return _json(error_body(str(err), param=err.argument, code="invalid_value"), 400, headers)
        except QueueFullError as err:
            return _json(
                error_body(str(err), type="server_overloaded", code="overloaded"), 503, {**headers, "retry-after": "1"}
            )

    async def _score_prompt(self, plan: _Plan, top: int) -> list[tuple[float, list[tuple[str, float]]]]:
        ids = plan.prompt_ids
        if len(ids) < 2:
            return []
        engine_key = plan.key
        result: list[tuple[float, list[tuple[str, float]]]] = await self.batcher.call(
            lambda: self._engine_for(engine_key).score(ids[:1], ids[1:], top_logprobs=top)
        )
        return result

    def _chat_body(self, req: ParsedRequest, plan: _Plan, rid: str, created: int, results: list[Any]) -> dict[str, Any]:
        choices = []
        completion_tokens = 0
        for i, res in enumerate(results):
            completion_tokens += res.completion_tokens
            logprobs = None
            if req.logprobs:
                logprobs = {
                    "content": [
                        _chat_logprob(t, lp, top)
                        for t, lp, top in zip(res.tokens, res.token_logprobs, res.top_logprobs, strict=True)
                    ]
                }
            choices.append(
                {
                    "index": i,
                    "message": {"role": "assistant", "content": res.text},
                    "logprobs": logprobs,
                    "finish_reason": res.finish_reason,
                }
            )
        return {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": req.model,
            "system_fingerprint": f"{plan.route.server.name}:{plan.config_version}",
            "choices": choices,
            "usage": _usage(len(plan.prompt_ids), completion_tokens),
        }

    def _completion_body(
        self,
        req: ParsedRequest,
        plan: _Plan,
        rid: str,
        created: int,
        results: list[Any],
        prompt_scores: list[tuple[float, list[tuple[str, float]]]] | None,
    ) -> dict[str, Any]:
        choices = []
        completion_tokens = 0
        for i, res in enumerate(results):
            text = res.text if res is not None else ""
            if res is not None:
                completion_tokens += res.completion_tokens
            if req.echo:
                text = plan.prompt_text + text
            logprobs = None
            if req.logprobs:
                tokens: list[str] = []
                token_lps: list[float | None] = []
                tops: list[dict[str, float] | None] = []
                if req.echo:
                    tokens = [self.checkpoint(req.model).tokenizer.token_text(t) for t in plan.prompt_ids]
                    token_lps = [None, *(lp for lp, _ in (prompt_scores or []))]
                    tops = [None, *(dict(top) if req.top_logprobs else None for _, top in (prompt_scores or []))]
                if res is not None:
                    tokens += res.tokens
                    token_lps += res.token_logprobs
                    tops += [dict(top) if req.top_logprobs else None for top in res.top_logprobs]
                offsets, pos = [], 0
                for tok in tokens:
                    offsets.append(pos)
                    pos += len(tok)
                if req.token_ids:  # vLLM's return_tokens_as_token_ids: the ids (alternatives stay text)
                    ids = [*(plan.prompt_ids if req.echo else []), *(res.token_ids if res is not None else [])]
                    tokens = [f"token_id:{t}" for t in ids]
                logprobs = {"tokens": tokens, "token_logprobs": token_lps, "top_logprobs": tops, "text_offset": offsets}
            finish = res.finish_reason if res is not None else "length"
            choices.append({"index": i, "text": text, "logprobs": logprobs, "finish_reason": finish})
        return {
            "id": rid,
            "object": "text_completion",
            "created": created,
            "model": req.model,
            "system_fingerprint": f"{plan.route.server.name}:{plan.config_version}",
            "choices": choices,
            "usage": _usage(len(plan.prompt_ids), completion_tokens),
        }

    def _stream(self, req: ParsedRequest, plan: _Plan, rid: str, created: int, headers: dict[str, str]) -> Response:
        responses = import_optional("starlette.responses", extra="lab")
        events: asyncio.Queue[Any] = asyncio.Queue()
        gen_request = self._generation_request(req, plan, 0)
        fingerprint = f"{plan.route.server.name}:{plan.config_version}"
        obj = "chat.completion.chunk" if req.chat else "text_completion"

        async def run() -> None:
            try:
                result = await self.batcher.submit(plan.key, gen_request, events.put_nowait)
                events.put_nowait(("done", result))
            except Exception as err:  # reported in the stream as an error event
                events.put_nowait(("error", err))

        def chunk(choice: dict[str, Any], usage: dict[str, int] | None = None) -> str:
            body: dict[str, Any] = {
                "id": rid,
                "object": obj,
                "created": created,
                "model": req.model,
                "system_fingerprint": fingerprint,
                "choices": [choice] if choice else [],
            }
            if usage is not None:
                body["usage"] = usage
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

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
                            yield chunk({}, _usage(len(plan.prompt_ids), result.completion_tokens))
                        break
                    yield chunk(self._stream_choice(req, item))
                yield "data: [DONE]\n\n"
            finally:
                if not task.done():
                    task.cancel()

        return responses.StreamingResponse(  # type: ignore[no-any-return]
            body(), media_type="text/event-stream", headers={**headers, "cache-control": "no-cache"}
        )

    def _stream_choice(self, req: ParsedRequest, event: TokenEvent) -> dict[str, Any]:
        tokenizer = self.checkpoint(req.model).tokenizer
        if req.chat:
            logprobs = None
            if req.logprobs:
                logprobs = {
                    "content": [_chat_logprob(tokenizer.token_text(event.token_id), event.logprob, event.top_logprobs)]
                }
            return {"index": 0, "delta": {"content": event.text}, "logprobs": logprobs, "finish_reason": None}
        lp = None
        if req.logprobs:
            top = dict(event.top_logprobs) if req.top_logprobs else None
            lp = {
                "tokens": [tokenizer.token_text(event.token_id)],
                "token_logprobs": [event.logprob],
                "top_logprobs": [top],
                "text_offset": [0],
            }
        return {"index": 0, "text": event.text, "logprobs": lp, "finish_reason": None}


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _chat_logprob(token: str, logprob: float, top: list[tuple[str, float]]) -> dict[str, Any]:
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode("utf-8")),
        "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))} for t, lp in top],
    }


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    responses = import_optional("starlette.responses", extra="lab")
    body = json.dumps(data, ensure_ascii=False, allow_nan=False).encode("utf-8")
    return responses.Response(body, status_code=status, headers=headers, media_type="application/json")  # type: ignore[no-any-return]


# -- running it -------------------------------------------------------------------------------------------


def serve(server: LabServer, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning") -> None:
    """Run ``server`` with uvicorn until interrupted, then close it."""
    uvicorn = import_optional("uvicorn", extra="lab")
    try:
        uvicorn.run(server.app, host=host, port=port, log_level=log_level, access_log=False)
    finally:
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
