"""The lab engine: batched generation with a KV cache over a lab checkpoint (SmolLM2-135M-Instruct or the 9M model).

Per decoding step and request, in this order (the canonical pipeline; every fault plugs into one named step):

1. the model gives raw logits [V] (fp32, or bf16 upcast to fp32);
2. the returned ``logprob`` / ``top_logprobs`` are the log-softmax of those raw logits (as vLLM reports them);
3. ``logits_processor(logits, step, rng)``, if any, may change the logits (the corruption fault plugs in here);
4. the filter - ``request.sampler`` or the exact reference :func:`parity.sampling.filter_logits` - applies
   temperature, top-k, top-p and min-p to the rows of every group of requests that share those settings (so a
   batch-size-dependent fault sees the real batch), removed tokens at ``-inf``;
5. a token is drawn from the filtered row with the request's own generator (``seed``), so a seeded request gives
   the same tokens whatever else is in the batch; at temperature 0 the filter keeps the maximal logit (the
   protocol's greedy) and the engine takes the argmax of what it kept, so a filter that loses the maximum shows.

A request stops at a stop token of the checkpoint's chat format (the 9M model's ``<|endoftext|>`` and ``<|end|>``,
SmolLM2's ``<|im_end|>`` and ``<|endoftext|>``; not included in the output), at one of its ``stop`` strings
(the text is cut before it) or after ``max_tokens`` (``finish_reason`` "length").

>>> import torch; torch.set_num_threads(1)
>>> engine = Engine.load()
>>> ids = engine.tokenizer.encode("def add(a, b):\\n    return")
>>> [result] = engine.generate([GenerationRequest(prompt_ids=ids, max_tokens=4, temperature=0.0)])
>>> result.completion_tokens <= 4 and result.finish_reason in ("stop", "length")
True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from parity._exceptions import InvalidInputError
from parity.lab._corpus import ASSISTANT, SYSTEM, USER
from parity.lab.model import KVCache, ModelConfig, Transformer
from parity.lab.prefix_cache import PrefixCache
from parity.lab.tokenizer import Tokenizer
from parity.sampling import SamplingParams, filter_logits

#: the continuous batch's cache width grows in blocks of this many tokens per slot
CACHE_BLOCK = 128

#: default byte budget of each engine's prefix cache (:mod:`parity.lab.prefix_cache`): about 22,000 tokens of
#: SmolLM2-135M's keys and values (46 KB a token in fp32), which held two thirds of the demo's prompt tokens.
PREFIX_CACHE_BYTES = 1 << 30

Precision = Literal["fp32", "bf16"]

#: chat roles and the special token that opens each turn.
ROLE_TOKENS: dict[str, str] = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}

SamplerFilter = Callable[..., np.ndarray]
LogitsProcessor = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


@dataclass(init=False)
class GenerationRequest:
    """One generation request; see the module docstring for where ``sampler`` and ``logits_processor`` act.

    The sampling parameters are one validated :class:`parity.sampling.SamplingParams` (``sampling``), the bundle
    the server parsed from the OpenAI body. ``temperature``, ``top_k``, ``top_p`` and ``min_p`` given as keywords
    build it instead (one or the other, not both).

    >>> GenerationRequest([1, 2], temperature=0.0).sampling.greedy
    True
    >>> GenerationRequest([1, 2], top_p=1.5)
    Traceback (most recent call last):
    ...
    parity._exceptions.InvalidInputError: `top_p` must be a number in (0, 1] (1 disables), got 1.5
    """

    prompt_ids: list[int]
    max_tokens: int
    sampling: SamplingParams
    seed: int | None
    stop: tuple[str, ...]
    top_logprobs: int
    sampler: SamplerFilter | None
    logits_processor: LogitsProcessor | None

    def __init__(
        self,
        prompt_ids: list[int],
        max_tokens: int = 64,
        *,
        sampling: SamplingParams | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        min_p: float | None = None,
        seed: int | None = None,
        stop: tuple[str, ...] = (),
        top_logprobs: int = 0,
        sampler: SamplerFilter | None = None,
        logits_processor: LogitsProcessor | None = None,
    ) -> None:
        keywords = (temperature, top_k, top_p, min_p)
        if sampling is None:
            default = SamplingParams()
            sampling = SamplingParams(
                default.temperature if temperature is None else temperature,
                default.top_k if top_k is None else top_k,
                default.top_p if top_p is None else top_p,
                default.min_p if min_p is None else min_p,
            )
        elif any(value is not None for value in keywords):
            raise InvalidInputError("sampling", "must not be combined with keyword sampling parameters", sampling)
        elif not isinstance(sampling, SamplingParams):
            raise InvalidInputError("sampling", "must be a parity.sampling.SamplingParams", sampling)
        self.prompt_ids = prompt_ids
        self.max_tokens = max_tokens
        self.sampling = sampling
        self.seed = seed
        self.stop = stop
        self.top_logprobs = top_logprobs
        self.sampler = sampler
        self.logits_processor = logits_processor


@dataclass
class TokenEvent:
    """One streamed token of one request.

    ``text`` is the new text this token makes final (possibly empty while a UTF-8 character or a possible stop
    string is incomplete); the texts of a request's events concatenate to its result's ``text``. The last event
    of a request may carry the end-of-text token with only the remaining held-back text.
    """

    index: int
    token_id: int
    text: str
    logprob: float
    top_logprobs: list[tuple[str, float]]


@dataclass
class GenerationResult:
    """A finished request: completion tokens (stop tokens excluded), text, finish reason and logprobs."""

    token_ids: list[int]
    text: str
    tokens: list[str]
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    token_logprobs: list[float]
    top_logprobs: list[list[tuple[str, float]]]


@dataclass
class _Running:
    request: GenerationRequest
    rng: np.random.Generator
    prompt_len: int
    tag: Any = None
    on_token: Callable[[TokenEvent], None] | None = None
    #: tokens drawn so far (the ``step`` a logits processor sees) and the last one, fed at the next step.
    steps: int = 0
    last: int = 0
    token_ids: list[int] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top: list[list[tuple[str, float]]] = field(default_factory=list)
    emitted: str = ""
    text: str = ""
    finish_reason: str | None = None


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - np.max(logits)
    out: np.ndarray = shifted - math.log(float(np.exp(shifted).sum()))
    return out


def _generator(seed: int | None) -> np.random.Generator:
    """The request's own generator; any integer seed works (negative ones wrap modulo 2**64, as a uint64)."""
    return np.random.default_rng(None if seed is None else seed % 2**64)


class Engine:
    """The lab model behind a batched, cached generation API. Build it with :meth:`load`."""

    def __init__(
        self,
        model: Transformer,
        tokenizer: Tokenizer,
        *,
        model_id: str,
        precision: Precision,
        weights_dir: Path,
        prefix_cache_bytes: int = PREFIX_CACHE_BYTES,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.precision: Precision = precision
        self.weights_dir = weights_dir
        self.config: ModelConfig = model.config
        self.rope_scaling = model.config.rope_scaling
        #: longest prompt + completion, in tokens: the trained context times the RoPE interpolation factor.
        self.max_context = int(model.config.max_context * model.config.rope_scaling)
        self._dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        self._stop_ids = set(tokenizer.stop_ids)
        self._token_text = tokenizer.token_texts()
        #: keys and values of sequences computed before, reused by prompts that start the same way.
        self.prefix_cache = PrefixCache(prefix_cache_bytes)
        self._system_pinned = False

    @classmethod
    def load(
        cls,
        weights: str | Path | None = None,
        *,
        precision: Precision = "fp32",
        rope_scaling: float = 1.0,
        prefix_cache_bytes: int = PREFIX_CACHE_BYTES,
    ) -> Engine:
        """Load a checkpoint at ``precision`` with a RoPE interpolation factor.

        ``weights`` is a name of :data:`parity.lab.checkpoints.WEIGHTS_NAMES` (``"smollm2-135m"``,
        ``"parity-lab-9m"``) or a weights directory; None is the committed 9M model. Engines of one checkpoint
        and precision share its tensors, whatever their RoPE scaling. ``prefix_cache_bytes`` bounds the engine's
        prefix cache (0 keeps only the chat format's system turn).
        """
        from parity.lab.checkpoints import load_checkpoint

        if precision not in ("fp32", "bf16"):
            raise InvalidInputError("precision", "must be 'fp32' or 'bf16'", precision)
        if not isinstance(rope_scaling, int | float) or not rope_scaling >= 1.0:
            raise InvalidInputError("rope_scaling", "must be a number >= 1.0", rope_scaling)
        checkpoint = load_checkpoint(weights)
        config = checkpoint.config.with_rope_scaling(float(rope_scaling))
        model = Transformer.from_state(config, checkpoint.state_at(precision)).eval()
        model.requires_grad_(False)
        return cls(
            model,
            checkpoint.tokenizer,
            model_id=checkpoint.model_id,
            precision=precision,
            weights_dir=checkpoint.source,
            prefix_cache_bytes=prefix_cache_bytes,
        )

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """The prompt text for chat ``messages`` (``role`` system/user/assistant, ``content``), in the
        checkpoint's chat format.

        >>> import torch; torch.set_num_threads(1)
        >>> Engine.load().chat_prompt([{"role": "user", "content": "Hi"}])
        '<|user|>Hi<|end|>\\n<|assistant|>'
        """
        return self.tokenizer.chat.render(messages)

    # -- validation -------------------------------------------------------------------------------------------

    def _validate(self, request: GenerationRequest, index: int) -> None:
        name = f"requests[{index}]"
        ids = request.prompt_ids
        if not isinstance(ids, list) or not ids:
            raise InvalidInputError(f"{name}.prompt_ids", "must be a non-empty list of token ids")
        if any(not isinstance(i, int) or not 0 <= i < self.tokenizer.vocab_size for i in ids):
            raise InvalidInputError(f"{name}.prompt_ids", f"must hold ids in [0, {self.tokenizer.vocab_size})")
        if not isinstance(request.max_tokens, int) or request.max_tokens < 1:
            raise InvalidInputError(f"{name}.max_tokens", "must be an integer >= 1", request.max_tokens)
        if len(ids) + request.max_tokens > self.max_context:
            raise InvalidInputError(
                f"{name}.max_tokens",
                f"plus the prompt's {len(ids)} tokens must be <= the context length {self.max_context}",
                request.max_tokens,
            )
        if not isinstance(request.sampling, SamplingParams):  # validated when built, in parity.sampling
            raise InvalidInputError(f"{name}.sampling", "must be a parity.sampling.SamplingParams", request.sampling)
        if not isinstance(request.top_logprobs, int) or not 0 <= request.top_logprobs <= 20:
            raise InvalidInputError(f"{name}.top_logprobs", "must be an integer in [0, 20]", request.top_logprobs)
        if request.seed is not None and (not isinstance(request.seed, int) or isinstance(request.seed, bool)):
            raise InvalidInputError(f"{name}.seed", "must be an integer or None", request.seed)
        if any(not isinstance(s, str) or not s for s in request.stop):
            raise InvalidInputError(f"{name}.stop", "must hold non-empty strings", request.stop)

    # -- generation -------------------------------------------------------------------------------------------

    def _top(self, logprobs: np.ndarray, n: int) -> list[tuple[str, float]]:
        if n == 0:
            return []
        best = np.argpartition(-logprobs, n - 1)[:n]
        best = best[np.argsort(-logprobs[best], kind="stable")]
        return [(self._token_text[int(i)], float(logprobs[i])) for i in best]

    def _choose(self, rows: list[_Running], logits: np.ndarray) -> list[int]:
        """Filter ``logits`` [len(rows), V] with the rows' shared settings and draw one token per row."""
        request = rows[0].request
        greedy = request.sampling.greedy
        if request.sampler is None:
            filtered = filter_logits(logits, request.sampling)
        else:  # a sampler fault: the filter protocol's keyword arguments
            filtered = np.asarray(request.sampler(logits, **request.sampling.kwargs()), dtype=np.float64)
        chosen: list[int] = []
        for row, values in zip(rows, filtered, strict=True):
            finite = np.isfinite(values)
            if not finite.any():  # a broken filter removed every token: fall back to the raw argmax, visibly
                chosen.append(int(np.argmax(logits[len(chosen)])))
                continue
            if greedy:
                chosen.append(int(np.argmax(np.where(finite, values, -np.inf))))
                continue
            probs = np.exp(np.where(finite, values - values[finite].max(), -np.inf))
            cumulative = np.cumsum(probs)
            u = row.rng.random() * cumulative[-1]
            chosen.append(min(int(np.searchsorted(cumulative, u, side="right")), len(values) - 1))
        return chosen

    def _advance(self, row: _Running, token: int, logprobs: np.ndarray) -> TokenEvent | None:
        """Append ``token`` to ``row``; return the event to stream (None when nothing is streamed)."""
        request = row.request
        if token in self._stop_ids:
            row.finish_reason = "stop"
            rest = row.text[len(row.emitted) :]
            row.emitted = row.text
            if not rest:
                return None
            return TokenEvent(len(row.token_ids), token, rest, float(logprobs[token]), [])
        row.token_ids.append(token)
        row.tokens.append(self._token_text[token])
        row.logprobs.append(float(logprobs[token]))
        top = self._top(logprobs, request.top_logprobs)
        row.top.append(top)
        text = self.tokenizer.decode(row.token_ids)
        hold = 0
        for stop in request.stop:
            cut = text.find(stop)
            if cut >= 0:
                text, row.finish_reason = text[:cut], "stop"
        if row.finish_reason is None and len(row.token_ids) >= request.max_tokens:
            row.finish_reason = "length"
        if row.finish_reason is None:
            hold = len(text) - len(text.rstrip("\ufffd"))  # an incomplete UTF-8 character
            for stop in request.stop:  # hold back a tail that may still become a stop string
                for size in range(min(len(stop) - 1, len(text)), hold, -1):
                    if text.endswith(stop[:size]):
                        hold = max(hold, size)
                        break
        row.text = text
        final = text[: len(text) - hold] if hold else text
        delta = final[len(row.emitted) :] if final.startswith(row.emitted) else ""
        row.emitted = row.emitted + delta
        return TokenEvent(len(row.token_ids) - 1, token, delta, row.logprobs[-1], top)

    def _pin_system_turn(self) -> None:
        """Compute the chat format's default system turn once and pin its keys and values in the prefix cache.

        Every chat request without its own system message starts with it (SmolLM2's template), so it is never
        evicted, whatever the cache's budget.
        """
        if self._system_pinned:
            return
        self._system_pinned = True
        prefix_ids = self.tokenizer.encode(self.tokenizer.chat.system_prefix)
        if prefix_ids:
            cache = KVCache(self.config, 1, len(prefix_ids), dtype=self._dtype)
            self.model(torch.tensor([prefix_ids]), cache=cache, last_only=True)
            self.prefix_cache.insert(prefix_ids, cache.keys[:, 0], cache.values[:, 0], pinned=True)

    def batch(self) -> ContinuousBatch:
        """A new, empty continuous batch on this engine (see :class:`ContinuousBatch`)."""
        return ContinuousBatch(self)

    @torch.no_grad()
    def generate(
        self,
        requests: Sequence[GenerationRequest],
        *,
        on_token: Callable[[int, TokenEvent], None] | None = None,
    ) -> list[GenerationResult]:
        """Generate for a batch of requests of any prompt lengths; ``on_token(request_index, event)`` streams.

        The requests start together in one :class:`ContinuousBatch`; each leaves it when it is done.
        """
        if not requests:
            return []
        for index, request in enumerate(requests):
            self._validate(request, index)
        batch = self.batch()
        for index, request in enumerate(requests):
            stream = None if on_token is None else functools.partial(on_token, index)
            batch.add(request, on_token=stream, tag=index, validated=True)
        results: list[GenerationResult | None] = [None] * len(requests)
        while batch:
            for tag, result in batch.step():
                results[tag] = result
        return [r for r in results if r is not None]

    @torch.no_grad()
    def score(
        self, prompt_ids: list[int], continuation_ids: list[int], *, top_logprobs: int = 0
    ) -> list[tuple[float, list[tuple[str, float]]]]:
        """Teacher-forced log-probability of each continuation token after the prompt (and its top alternatives).

        >>> import torch; torch.set_num_threads(1)
        >>> engine = Engine.load()
        >>> scored = engine.score(engine.tokenizer.encode("import"), engine.tokenizer.encode(" os"), top_logprobs=2)
        >>> len(scored), len(scored[0][1]), scored[0][0] < 0
        (1, 2, True)
        """
        self._validate(GenerationRequest(prompt_ids=prompt_ids, max_tokens=max(1, len(continuation_ids))), 0)
        if not continuation_ids or any(not 0 <= i < self.tokenizer.vocab_size for i in continuation_ids):
            raise InvalidInputError(
                "continuation_ids", f"must be a non-empty list of ids in [0, {self.tokenizer.vocab_size})"
            )
        if not isinstance(top_logprobs, int) or not 0 <= top_logprobs <= 20:
            raise InvalidInputError("top_logprobs", "must be an integer in [0, 20]", top_logprobs)
        ids = torch.tensor([prompt_ids + continuation_ids[:-1]])
        logits = self.model(ids)[0, len(prompt_ids) - 1 :].float().numpy()
        out = []
        for row, token in zip(logits, continuation_ids, strict=True):
            logprobs = _log_softmax(row)
            out.append((float(logprobs[token]), self._top(logprobs, top_logprobs)))
        return out


class ContinuousBatch:
    """Iteration-level (continuous) batching on one engine: requests join between decoding steps and leave as
    soon as they are done, instead of the whole batch waiting for its longest request.

    Each running request owns a slot of one KV cache (:meth:`KVCache.slots`): its own positions, no padding
    shared with others. :meth:`step` prefills the requests added since the last step (each from the end of its
    longest prefix in the engine's :attr:`Engine.prefix_cache`, whose keys and values are copied in) in the same
    pass through the model as one decoding step of the others, then samples one
    token for every request in the canonical order of the module docstring, all in one group per settings (so
    a batch-dependent sampler fault sees every running request). A finished request's slot is refilled by the
    last running one. Sampling depends only on the request's own generator and logits, so a request gives the
    same tokens whether it runs alone, in a batch, or joins one halfway.

    >>> import torch; torch.set_num_threads(1)
    >>> engine = Engine.load()
    >>> batch = engine.batch()
    >>> batch.add(GenerationRequest(engine.tokenizer.encode("import"), max_tokens=3, temperature=0.0), tag="a")
    >>> first = batch.step()  # "a" prefilled, its first token drawn
    >>> batch.add(GenerationRequest(engine.tokenizer.encode("def"), max_tokens=2, temperature=0.0), tag="b")
    >>> len(batch)  # "b" joins at the next step
    2
    >>> done = first
    >>> while batch:
    ...     done += batch.step()
    >>> sorted(tag for tag, _ in done)
    ['a', 'b']
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._rows: list[_Running] = []  # running, in slot order 0..n-1
        self._joining: list[_Running] = []
        self._cache: KVCache | None = None
        #: decoding steps run and requests prefilled (with the largest number running at once).
        self.steps = 0
        self.prefilled = 0
        self.largest = 0

    def __len__(self) -> int:
        return len(self._rows) + len(self._joining)

    @property
    def running(self) -> int:
        """Requests holding a slot (joining ones excluded)."""
        return len(self._rows)

    def add(
        self,
        request: GenerationRequest,
        *,
        on_token: Callable[[TokenEvent], None] | None = None,
        tag: Any = None,
        validated: bool = False,
    ) -> None:
        """Queue ``request`` to join at the next :meth:`step`; its result is returned with ``tag``.
        ``on_token(event)`` streams its tokens. A bad request raises :class:`InvalidInputError` here."""
        if not validated:
            self.engine._validate(request, 0)
        self._joining.append(
            _Running(
                request=request,
                rng=_generator(request.seed),
                prompt_len=len(request.prompt_ids),
                tag=tag,
                on_token=on_token,
            )
        )

    def cancel(self, tag: Any) -> bool:
        """Drop the request added with ``tag`` (its client went away): its slot is free at the next step.
        Returns whether it was there."""
        for i, row in enumerate(self._joining):
            if row.tag is tag:
                del self._joining[i]
                return True
        for i, row in enumerate(self._rows):
            if row.tag is tag:
                self._release([i])
                return True
        return False

    # -- the slot cache -----------------------------------------------------------------------------------

    def _reserve(self, slots: int, columns: int) -> KVCache:
        """The slot cache, grown to at least ``slots`` slots of ``columns`` tokens (running slots copied)."""
        cache = self._cache
        if cache is not None and cache.keys.shape[1] >= slots and cache.keys.shape[3] >= columns:
            return cache
        engine = self.engine
        have_slots = 0 if cache is None else cache.keys.shape[1]
        have_cols = 0 if cache is None else cache.keys.shape[3]
        new_slots = max(slots, 2 * have_slots if have_slots < slots else have_slots)
        # columns grow like slots (doubling, in whole blocks): a cache regrown for every longer prompt spent 13% of
        # the demo lab's time zeroing fresh caches (attention reads only each row's own length, not the width)
        new_cols = max(columns, 2 * have_cols if have_cols < columns else have_cols)
        new_cols = min(-(-new_cols // CACHE_BLOCK) * CACHE_BLOCK, max(columns, engine.max_context))
        grown = KVCache.slots(engine.config, new_slots, new_cols, dtype=engine._dtype)
        if cache is not None and self._rows:
            n, width = len(self._rows), int(cache.lengths[: len(self._rows)].max())  # type: ignore[index]
            grown.keys[:, :n, :, :width] = cache.keys[:, :n, :, :width]
            grown.values[:, :n, :, :width] = cache.values[:, :n, :, :width]
            grown.lengths[:n] = cache.lengths[:n]  # type: ignore[index]
        self._cache = grown
        return grown

    def _keep_prefixes(self, done: list[int]) -> None:
        """Store the keys and values of finished rows ``done`` (prompt and answer) in the engine's prefix cache:
        a conversation's next turn starts with them."""
        cache = self._cache
        assert cache is not None
        assert cache.lengths is not None
        for i in done:
            row = self._rows[i]
            length = int(cache.lengths[i])
            ids = row.request.prompt_ids + row.token_ids[: length - row.prompt_len]
            self.engine.prefix_cache.insert(ids, cache.keys[:, i, :, :length], cache.values[:, i, :, :length])

    def _release(self, done: list[int]) -> None:
        """Free the slots of finished rows ``done``: the last running rows move into the holes."""
        cache = self._cache
        n = len(self._rows)
        finished = set(done)
        keep = n - len(finished)
        holes = [i for i in range(keep) if i in finished]
        movers = [i for i in range(keep, n) if i not in finished]
        if cache is not None:
            assert cache.lengths is not None
            for hole, mover in zip(holes, movers, strict=True):
                width = int(cache.lengths[mover])
                cache.keys[:, hole, :, :width] = cache.keys[:, mover, :, :width]
                cache.values[:, hole, :, :width] = cache.values[:, mover, :, :width]
                cache.lengths[hole] = cache.lengths[mover]
                self._rows[hole] = self._rows[mover]
            cache.lengths[keep:n] = 0
        del self._rows[keep:]
        if not self._rows and not self._joining:
            self._cache = None  # an idle batch holds no memory

    # -- a step -------------------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self) -> list[tuple[Any, GenerationResult]]:
        """Prefill the joining requests and decode one token of every running one, in one pass through the
        model (:meth:`Transformer.packed_step`); return the finished ones as ``(tag, result)``."""
        engine = self.engine
        n, joining = len(self._rows), self._joining
        if not n and not joining:
            return []
        self._joining = []
        lengths = self._cache.lengths if self._cache is not None else None
        # a joining request's slot is reserved whole (prompt + max_tokens): no regrowth while it decodes
        columns = max(
            [int(lengths[:n].max()) + 1 if n and lengths is not None else 0]
            + [r.prompt_len + r.request.max_tokens for r in joining]
        )
        cache = self._reserve(n + len(joining), columns)
        if joining:
            engine._pin_system_turn()
        joins: list[tuple[int, list[int], int]] = []
        for slot, row in enumerate(joining, start=n):
            start = 0
            hit = engine.prefix_cache.match(row.request.prompt_ids)
            if hit is not None:
                start, keys, values = hit
                cache.keys[:, slot, :, :start] = keys
                cache.values[:, slot, :, :start] = values
            joins.append((slot, row.request.prompt_ids[start:], start))
        feed = torch.tensor([r.last for r in self._rows], dtype=torch.long)
        raw = engine.model.packed_step(feed, cache, joins).float().numpy()
        if n:
            self.steps += 1
        self.prefilled += len(joining)
        self._rows += joining
        self.largest = max(self.largest, len(self._rows))
        rows = self._rows
        processed: list[np.ndarray] = []
        for row, values in zip(rows, raw, strict=True):
            processor = row.request.logits_processor
            row_logits = values.copy()
            processed.append(row_logits if processor is None else np.asarray(processor(row_logits, row.steps, row.rng)))
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, row in enumerate(rows):
            r = row.request
            key = (id(r.sampler), r.sampling)
            groups.setdefault(key, []).append(i)
        for members in groups.values():
            stacked = np.stack([processed[i] for i in members]).astype(np.float32)
            chosen = engine._choose([rows[i] for i in members], stacked)
            for i, token in zip(members, chosen, strict=True):
                row = rows[i]
                row.steps += 1
                row.last = token
                event = engine._advance(row, token, _log_softmax(raw[i]))
                if event is not None and row.on_token is not None:
                    row.on_token(event)
        done = [i for i, r in enumerate(rows) if r.finish_reason is not None]
        finished = [(rows[i].tag, _result(rows[i])) for i in done]
        if done:
            self._keep_prefixes(done)
            self._release(done)
        return finished


def _result(row: _Running) -> GenerationResult:
    return GenerationResult(
        token_ids=row.token_ids,
        text=row.text,
        tokens=row.tokens,
        finish_reason=row.finish_reason or "length",
        prompt_tokens=row.prompt_len,
        completion_tokens=len(row.token_ids),
        token_logprobs=row.logprobs,
        top_logprobs=row.top,
    )


__all__ = ["ContinuousBatch", "Engine", "GenerationRequest", "GenerationResult", "TokenEvent"]
