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
from parity.lab.tokenizer import Tokenizer
from parity.sampling import SamplingParams, filter_logits

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
        self._prefix: tuple[list[int], torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def load(
        cls,
        weights: str | Path | None = None,
        *,
        precision: Precision = "fp32",
        rope_scaling: float = 1.0,
    ) -> Engine:
        """Load a checkpoint at ``precision`` with a RoPE interpolation factor.

        ``weights`` is a name of :data:`parity.lab.checkpoints.WEIGHTS_NAMES` (``"smollm2-135m"``,
        ``"parity-lab-9m"``) or a weights directory; None is the committed 9M model. Engines of one checkpoint
        and precision share its tensors, whatever their RoPE scaling.
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

    def _prefix_kv(self) -> tuple[list[int], torch.Tensor, torch.Tensor] | None:
        """The chat format's default system turn, its ids and its keys/values [layers, kv_heads, P, head_dim].

        Every chat request without its own system message starts with it (SmolLM2's template), so its keys and
        values are computed once per engine and copied into each such request's cache instead of recomputed.
        """
        if self._prefix is None:
            prefix_ids = self.tokenizer.encode(self.tokenizer.chat.system_prefix)
            if not prefix_ids:
                self._prefix = ([], torch.empty(0), torch.empty(0))
            else:
                cache = KVCache(self.config, 1, len(prefix_ids), dtype=self._dtype)
                self.model(torch.tensor([prefix_ids]), cache=cache, last_only=True)
                self._prefix = (prefix_ids, cache.keys[:, 0].clone(), cache.values[:, 0].clone())
        return self._prefix if self._prefix[0] else None

    def _reuse_prefix(self, rows: list[_Running], cache: KVCache, longest: int) -> int:
        """Copy the shared system prefix's keys/values into ``cache`` when every row starts with it; return the
        column the prefill starts at (0 when nothing is reused). Rows are left-padded: row i's prompt starts at
        ``longest - len``, so a shorter row's prefix tail past the start column is simply computed again."""
        prefix = self._prefix_kv()
        if prefix is None:
            return 0
        prefix_ids, keys, values = prefix
        size = len(prefix_ids)
        if any(r.prompt_len <= size or r.request.prompt_ids[:size] != prefix_ids for r in rows):
            return 0
        for i, row in enumerate(rows):
            pad = longest - row.prompt_len
            cache.keys[:, i, :, pad : pad + size] = keys
            cache.values[:, i, :, pad : pad + size] = values
        start = min(longest - r.prompt_len for r in rows) + size
        cache.length = start
        return start

    @torch.no_grad()
    def generate(
        self,
        requests: Sequence[GenerationRequest],
        *,
        on_token: Callable[[int, TokenEvent], None] | None = None,
    ) -> list[GenerationResult]:
        """Generate for a batch of requests of any prompt lengths; ``on_token(request_index, event)`` streams."""
        if not requests:
            return []
        for index, request in enumerate(requests):
            self._validate(request, index)
        rows = [_Running(request=r, rng=_generator(r.seed), prompt_len=len(r.prompt_ids)) for r in requests]
        batch = len(rows)
        longest = max(r.prompt_len for r in rows)
        steps = max(r.request.max_tokens for r in rows)
        ids = torch.zeros(batch, longest, dtype=torch.long)
        key_valid = torch.zeros(batch, longest + steps, dtype=torch.bool)
        positions = torch.zeros(batch, longest, dtype=torch.long)
        for i, row in enumerate(rows):
            pad = longest - row.prompt_len
            ids[i, pad:] = torch.tensor(row.request.prompt_ids)
            key_valid[i, pad:] = True
            positions[i, pad:] = torch.arange(row.prompt_len)
        cache = KVCache(self.config, batch, longest + steps, dtype=self._dtype)
        start = self._reuse_prefix(rows, cache, longest)
        logits = self.model(
            ids[:, start:],
            positions=positions[:, start:],
            cache=cache,
            key_valid=key_valid[:, :longest],
            last_only=True,
        )
        next_pos = torch.tensor([r.prompt_len for r in rows])
        for step in range(steps):
            raw = logits[:, -1].float().numpy()
            active = [i for i, r in enumerate(rows) if r.finish_reason is None]
            processed: dict[int, np.ndarray] = {}
            for i in active:
                processor = rows[i].request.logits_processor
                row_logits = raw[i].copy()
                processed[i] = row_logits if processor is None else np.asarray(processor(row_logits, step, rows[i].rng))
            groups: dict[tuple[Any, ...], list[int]] = {}
            for i in active:
                r = rows[i].request
                key = (id(r.sampler), r.sampling)
                groups.setdefault(key, []).append(i)
            next_tokens = torch.zeros(batch, 1, dtype=torch.long)
            for members in groups.values():
                stacked = np.stack([processed[i] for i in members]).astype(np.float32)
                for i, token in zip(members, self._choose([rows[i] for i in members], stacked), strict=True):
                    next_tokens[i, 0] = token
                    event = self._advance(rows[i], token, _log_softmax(raw[i]))
                    if event is not None and on_token is not None:
                        on_token(i, event)
            if all(r.finish_reason is not None for r in rows):
                break
            logits = self.model(
                next_tokens,
                positions=next_pos[:, None],
                cache=cache,
                key_valid=key_valid[:, : cache.length + 1],
                last_only=True,
            )
            next_pos = next_pos + 1
        return [
            GenerationResult(
                token_ids=r.token_ids,
                text=r.text,
                tokens=r.tokens,
                finish_reason=r.finish_reason or "length",
                prompt_tokens=r.prompt_len,
                completion_tokens=len(r.token_ids),
                token_logprobs=r.logprobs,
                top_logprobs=r.top,
            )
            for r in rows
        ]

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


__all__ = ["Engine", "GenerationRequest", "GenerationResult", "TokenEvent"]
