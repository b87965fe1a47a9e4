"""Fleet dispatch: from a parsed OpenAI request to a generation on the right engine, under the active changes.

Per request: tokenize (the served model's chat format) -> route (:mod:`parity.lab.router`) under the active
changes (:mod:`parity.lab.faults`) -> pick the engine for the model's weights and the server's (precision, RoPE
scaling) -> attach the server's faults (sampler, corruption) -> the batcher (:mod:`parity.lab._batcher`) runs it
in the engine's continuous batch on the worker thread. No HTTP here: :mod:`parity.lab.server` puts the OpenAI
surface in front of it, and :mod:`parity.lab._responses` shapes the answers.

>>> from parity.lab.fleet import FleetConfig, default_config_path
>>> from parity.lab._openai import parse_request
>>> dispatch = FleetDispatch(FleetConfig.load(default_config_path("incident")), weights_dir="parity-lab-9m")
>>> plan = dispatch.plan(parse_request({"model": "S", "prompt": "import"}, chat=False), None, "r1")
>>> plan.key[0], plan.route.model, plan.headers()["x-parity-model"]
('parity-lab-9m', 'S', 'S')
>>> dispatch.close()
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parity._exceptions import InvalidInputError
from parity.lab._batcher import MicroBatcher
from parity.lab._openai import APIError, ParsedRequest
from parity.lab.changelog import ChangeLog
from parity.lab.faults import CorruptionProcessor, FaultState, sampler_filter, snippet_token_ids
from parity.lab.fleet import FleetConfig
from parity.lab.router import Route, Router
from parity.sampling import SamplingParams

if TYPE_CHECKING:
    from parity.lab.checkpoints import Checkpoint
    from parity.lab.engine import Engine, GenerationRequest

__all__ = ["EngineKey", "FleetDispatch", "Plan"]

#: the engine a request runs on: (weights, precision, RoPE scaling).
EngineKey = tuple[str, str, float]


@dataclass(frozen=True)
class Plan:
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


class FleetDispatch:
    """The fleet's models, router, change log, engines and batcher; call :meth:`close` when done.

    Each model runs on its fleet ``weights`` (:meth:`FleetConfig.weights_of`); ``weights_dir`` (a weights name or
    directory) overrides them for every model. Checkpoints are read when this is built (SmolLM2: a few seconds,
    once per process). ``changelog_path`` mirrors the change log to JSONL.
    """

    def __init__(
        self,
        fleet: FleetConfig,
        *,
        weights_dir: str | Path | None = None,
        changelog_path: str | Path | None = None,
        max_batch: int = 16,
        max_queue: int = 256,
        max_wait_s: float = 0.004,
        prefix_cache_bytes: int | None = None,
    ) -> None:
        from parity.lab.checkpoints import load_checkpoint, resolve_weights
        from parity.lab.engine import PREFIX_CACHE_BYTES

        if max_batch < 1:
            raise InvalidInputError("max_batch", "must be >= 1", max_batch)
        if max_queue < 1:
            raise InvalidInputError("max_queue", "must be >= 1", max_queue)
        if prefix_cache_bytes is not None and (not isinstance(prefix_cache_bytes, int) or prefix_cache_bytes < 0):
            raise InvalidInputError("prefix_cache_bytes", "must be an integer >= 0", prefix_cache_bytes)
        #: each engine's prefix cache budget (see :mod:`parity.lab.prefix_cache`).
        self.prefix_cache_bytes = PREFIX_CACHE_BYTES if prefix_cache_bytes is None else prefix_cache_bytes
        self.fleet = fleet
        #: each served model's weights key (a name of parity.lab.checkpoints.WEIGHTS_NAMES or a directory).
        self.weights_of = {
            name: resolve_weights(weights_dir if weights_dir is not None else fleet.weights_of(name))
            for name in fleet.models
        }
        self.checkpoints = {key: load_checkpoint(key) for key in dict.fromkeys(self.weights_of.values())}
        first = self.checkpoints[self.weights_of[next(iter(fleet.models))]]
        self.weights_dir = first.source
        self.changelog = ChangeLog(changelog_path)
        self.router = Router(fleet)
        #: the first model's tokenizer, context and id (every model's: :meth:`checkpoint`).
        self.tokenizer = first.tokenizer
        self.base_context = first.config.max_context
        self.model_id = first.model_id
        self._snippets = {key: snippet_token_ids(c.tokenizer.encode) for key, c in self.checkpoints.items()}
        self.snippets = self._snippets[first.name]
        self._engines: dict[EngineKey, Engine] = {}
        self._samplers: dict[str, Callable[..., Any]] = {}
        self.batcher = MicroBatcher(self._engine_for, max_batch=max_batch, max_queue=max_queue, max_wait_s=max_wait_s)

    # -- engines -------------------------------------------------------------------------------------------

    @property
    def engines(self) -> list[EngineKey]:
        """The engines loaded so far, as ``(weights, precision, rope_scaling)``."""
        return list(self._engines)

    def prefix_cache_stats(self) -> dict[str, dict[str, int]]:
        """Each loaded engine's prefix cache counters (:class:`parity.lab.prefix_cache.PrefixCacheStats`), by
        ``weights/precision/rope_scaling``."""
        return {
            f"{w}/{p}/{r:g}": engine.prefix_cache.stats.to_json() for (w, p, r), engine in list(self._engines.items())
        }

    def checkpoint(self, model: str) -> Checkpoint:
        """The checkpoint a served model runs on (its tokenizer, chat format and config)."""
        return self.checkpoints[self.weights_of[model]]

    def _engine_for(self, key: Hashable) -> Engine:
        """The engine for ``(weights, precision, rope_scaling)``, loaded on first use (runs on the worker thread)."""
        from parity.lab.engine import Engine

        weights, precision, scaling = str(key[0]), str(key[1]), float(key[2])  # type: ignore[index]
        engine = self._engines.get((weights, precision, scaling))
        if engine is None:
            engine = Engine.load(
                weights,
                precision="bf16" if precision == "bf16" else "fp32",
                rope_scaling=scaling,
                prefix_cache_bytes=self.prefix_cache_bytes,
            )
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
        """Stop the worker thread (running generations finish first)."""
        self.batcher.close()

    # -- planning ------------------------------------------------------------------------------------------

    def plan(self, req: ParsedRequest, session: str | None, request_id: str) -> Plan:
        """Route ``req`` (tokenized, checked against the context) under the active changes; :class:`APIError`
        for an unknown model, an empty prompt or one that does not fit."""
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
        return Plan(route, key, version, prompt_ids, prompt_text, max_tokens, sampling, faults)

    def generation_request(self, req: ParsedRequest, plan: Plan, index: int) -> GenerationRequest:
        """The engine request for choice ``index`` of ``req``, with the server's faults (sampler, corruption)."""
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

    # -- generation ----------------------------------------------------------------------------------------

    async def score_prompt(self, plan: Plan, top: int) -> list[tuple[float, list[tuple[str, float]]]]:
        """Teacher-forced logprobs of the prompt's tokens after the first (for ``echo`` + ``logprobs``)."""
        ids = plan.prompt_ids
        if len(ids) < 2:
            return []
        engine_key = plan.key
        result: list[tuple[float, list[tuple[str, float]]]] = await self.batcher.call(
            lambda: self._engine_for(engine_key).score(ids[:1], ids[1:], top_logprobs=top)
        )
        return result
