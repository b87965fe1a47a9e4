"""An HTTP client for one OpenAI-compatible endpoint: probing, sampling and teacher-forced scoring.

Only ``/v1/models`` and ``/v1/completions`` are used (the legacy completions API is the one that returns prompt
logprobs with ``echo``). Concurrency is bounded by a semaphore; 429 and 5xx answers and connection errors are
retried with exponential backoff (honouring ``Retry-After``); anything else becomes an :class:`EndpointError`
with the URL and status, never a traceback.

Servers differ in how they score a prompt, and :meth:`EndpointClient.probe` finds out rather than assuming:

- ``max_tokens=0`` with ``echo`` scores without generating on the lab and OpenAI's legacy API, but means "no
  limit" to llama-cpp-python. When the probe's echo answer comes back longer than the text sent, scoring asks for
  one token instead; whatever a server generated past the text is dropped from a score.
- Prompt logprobs must describe the same distribution as the logprobs of sampled tokens. The probe samples
  :data:`PROBE_TOKENS` greedy tokens with logprobs, teacher-forces the prompt plus those tokens, and compares the
  two logprobs of each; llama-cpp-python, on a model without a BOS token, reports each prompt token's logprob from
  the position after it. Capabilities then say ``echo_consistent=False`` and the comparison runs no test on
  those numbers.

Sampling requests always name ``top_p`` (1.0 included), since a server may apply its own default otherwise;
other server-specific sampling fields go in ``extra_body``.

**Token ids.** A completion's text, encoded again, is not always the token sequence that was sampled (a BPE
tokenizer has several encodings of most strings, and a sampler may draw a non-canonical one; a byte-level piece
of a character may merge with its neighbours). Servers that accept vLLM's ``return_tokens_as_token_ids`` (the
lab, vLLM) name each logprob token ``token_id:N``; :meth:`EndpointClient.probe` finds out (``token_ids``), and then
:meth:`EndpointClient.sample` can return the sampled ids and :meth:`EndpointClient.score_ids` teacher-forces exactly
those ids (a prompt given as a list of token ids, as OpenAI's completions API allows).

**Token ids from text pieces (llama-cpp-python's server).** A server that names no ids but lists each sampled
token's text (``logprobs.tokens``) and tokenizes on request (llama-cpp-python's ``/extras/tokenize`` and
``/extras/detokenize``) gets its ids read back (``Capabilities.token_ids_from == "text pieces"``): each piece is
tokenized alone, and a piece that is exactly one token names that token - in a byte-level BPE vocabulary (GPT-2's
kind: SmolLM2, Llama 3, Qwen) distinct tokens have distinct bytes, so the id is the sampled one whenever the piece
holds all of the token's bytes. The server decodes each piece on its own and drops bytes that are not whole UTF-8
characters; so a completion's ids are used only when every piece is one token and the pieces, joined, give the
completion's text (a character split over two tokens loses bytes in the pieces but not in the text). What stays
undecidable: a completion with an empty piece (a lone partial character, a special token), a piece the tokenizer
splits, or a split character; those completions are scored by their re-encoded text and counted in the report's
notes. Not exact, and not detectable from the answer: a token whose dropped bytes the completion's text drops too
(an unfinished character at the very end of a completion, or a malformed byte sequence) is read as the token of
its whole characters; and a SentencePiece vocabulary with byte-fallback tokens has two ids for some strings (this
reads the merged one). Such a server takes prompts as text only: token-id prompts are sent as their text and must be
the server's own encoding of it (checked; the runner sends it canonical prefixes).
"""

from __future__ import annotations

import asyncio
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from parity._exceptions import EndpointError, InvalidInputError

__all__ = ["Capabilities", "Completion", "EndpointClient", "ScoredText"]

#: Statuses worth retrying: rate limiting and server-side failures.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: Text teacher-forced by :meth:`EndpointClient.probe` to fingerprint the tokenizer.
PROBE_TEXT = "The quick brown fox, 42 times: def f(x): return x * 2  # ok"
#: Prompt of the probe's greedy sample, and how many tokens it asks for: their logprobs are checked against the
#: same tokens teacher-forced (echo).
PROBE_PROMPT = "Hello"
PROBE_TOKENS = 8
#: Largest median |sampled - teacher-forced| logprob over the probe's tokens (nats) still read as the same numbers.
#: Both come from one model at the same positions, by the decode and by the prefill path: they differ by rounding
#: (exactly 0 on the lab server; 1e-4 between llama.cpp's f16 decode and the lab's fp32 on the probe token). A
#: logprob read from the position after its token is another conditional: over the lab model's default prompts
#: 94% of tokens move by more than 0.1 nats that way (median 1.2), so the median over 8 tokens of a shifted echo
#: falls under 0.1 with probability well under 1%; llama-cpp-python's (no BOS) is 2.5-2.7 nats off on the lab export.
ECHO_CONSISTENCY_NATS = 0.1
#: ``Capabilities.token_ids_from``: the server names ids (``token_id:N``), or they are read from its text pieces.
IDS_NAMED = "token ids"
IDS_FROM_PIECES = "text pieces"
#: Request fields parity sets itself; ``extra_body`` may not replace them.
RESERVED_FIELDS = frozenset(
    {"model", "prompt", "max_tokens", "temperature", "top_p", "seed", "echo", "logprobs", "n", "stream", "best_of"}
    | {"return_tokens_as_token_ids"}
)


@dataclass(frozen=True)
class Capabilities:
    """What an endpoint offers, found by :meth:`EndpointClient.probe`."""

    url: str
    model: str
    models: tuple[str, ...]
    logprobs: bool
    echo: bool
    tokens: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    #: False when the prompt logprobs (echo) disagree with the logprob of the same token sampled at that position.
    echo_consistent: bool = True
    #: True when the endpoint's sampled token ids can be had (module docstring): named by the server
    #: (``return_tokens_as_token_ids``) or read from its logprob pieces (``token_ids_from``).
    token_ids: bool = False
    #: where the ids come from: :data:`IDS_NAMED`, :data:`IDS_FROM_PIECES`, or "" (none)
    token_ids_from: str = ""


@dataclass(frozen=True)
class Completion:
    """One sampled completion."""

    prompt_index: int
    text: str
    finish_reason: str | None = None
    #: the sampled token ids, when asked for (``token_ids=True``); empty when they could not be read exactly
    #: (:data:`IDS_FROM_PIECES`, module docstring), and then the completion is scored by its text
    token_ids: tuple[int, ...] = ()
    #: the prompt as the server was sent it, when a token-id prompt went as text (:data:`IDS_FROM_PIECES`)
    prompt_text: str = ""


@dataclass(frozen=True)
class ScoredText:
    """Teacher-forced log-probabilities of a continuation after a prompt.

    ``tokens``, ``logprobs`` and ``top_logprobs`` cover the continuation's tokens only (the prompt's are dropped).
    """

    tokens: tuple[str, ...]
    logprobs: tuple[float, ...]
    top_logprobs: tuple[Mapping[str, float], ...] = field(default=())

    @property
    def argmax_rate(self) -> float:
        """Share of tokens that were the most likely next token in the returned alternatives (0.0 when empty)."""
        hits = [
            bool(top) and lp >= max(top.values()) - 1e-6
            for lp, top in zip(self.logprobs, self.top_logprobs, strict=False)
        ]
        return sum(hits) / len(hits) if hits else 0.0

    @property
    def mean_logprob(self) -> float:
        """Mean log-probability per token (0.0 for an empty continuation)."""
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else 0.0


class EndpointClient:
    """Talks to one OpenAI-compatible server at ``base_url`` (with or without a trailing ``/v1``).

    Use as an async context manager. ``transport`` replaces the network (tests pass an ``httpx.MockTransport``).
    ``extra_body`` is merged into every ``/v1/completions`` request, for a server's own sampling fields (for
    llama-cpp-python, ``{"top_k": 0, "min_p": 0, "repeat_penalty": 1}`` switches off its default top-k 40, min-p
    0.05 and repetition penalty 1.1); it may not set the fields parity controls (:data:`RESERVED_FIELDS`).
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        max_concurrency: int = 8,
        max_retries: int = 4,
        backoff_s: float = 0.25,
        timeout_s: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise InvalidInputError("base_url", "must be an http:// or https:// URL", base_url)
        extra = dict(extra_body or {})
        if clash := sorted(RESERVED_FIELDS & set(extra)):
            raise InvalidInputError("extra_body", "may not set fields parity sends itself", clash)
        if max_concurrency < 1:
            raise InvalidInputError("max_concurrency", "must be >= 1", max_concurrency)
        if max_retries < 0:
            raise InvalidInputError("max_retries", "must be >= 0", max_retries)
        root = base_url.rstrip("/")
        self.base_url = root if root.endswith("/v1") else root + "/v1"
        self.model = model
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.extra_body = extra
        self.retries_used = 0
        self.requests_sent = 0
        #: ``max_tokens`` of a scoring (echo) request: 0, or 1 on servers that read 0 as "no limit" (see probe).
        self.echo_max_tokens = 0
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport
        )
        self._semaphore = asyncio.Semaphore(max_concurrency)
        #: :data:`IDS_FROM_PIECES` mode (set by :meth:`probe`), and its caches (piece -> id, ids -> text)
        self._pieces = False
        self._piece_ids: dict[str, int | None] = {}
        self._texts: dict[tuple[int, ...], str] = {}

    @property
    def ids_from_pieces(self) -> bool:
        """True when :meth:`probe` found a text-only server whose ids are read from text pieces (module docstring)."""
        return self._pieces

    async def __aenter__(self) -> EndpointClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the underlying connection pool."""
        await self._client.aclose()

    async def _request(self, method: str, path: str, payload: Mapping[str, Any] | None = None) -> Any:
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        last: str = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.retries_used += 1
            async with self._semaphore:
                self.requests_sent += 1
                try:
                    response = await self._client.request(method, path, json=payload)
                except (httpx.ConnectError, httpx.ConnectTimeout) as err:
                    last = f"unreachable ({type(err).__name__}: {err})"
                    response = None
                except httpx.TimeoutException as err:
                    last = f"timed out after {self.timeout_s:g} s ({type(err).__name__})"
                    response = None
                except httpx.HTTPError as err:
                    last = f"HTTP failure ({type(err).__name__}: {err})"
                    response = None
            if response is None:
                if attempt < self.max_retries:
                    await asyncio.sleep(self.backoff_s * 2**attempt)
                    continue
                raise EndpointError(last, url=url)
            if response.status_code in RETRY_STATUSES and attempt < self.max_retries:
                await asyncio.sleep(_retry_delay(response, self.backoff_s * 2**attempt))
                continue
            if response.status_code >= 400:
                raise EndpointError(
                    f"answered {response.status_code}: {_error_message(response)}"
                    + (" (rate limited; retries exhausted)" if response.status_code == 429 else ""),
                    url=url,
                    status_code=response.status_code,
                )
            try:
                return response.json()
            except ValueError as err:
                raise EndpointError("answered with a body that is not JSON", url=url) from err
        raise EndpointError(last or "no answer", url=url)  # pragma: no cover - the loop always returns or raises

    async def models(self) -> tuple[str, ...]:
        """Model ids from ``/v1/models``."""
        body = await self._request("GET", "/models")
        try:
            return tuple(str(item["id"]) for item in body["data"])
        except (KeyError, TypeError) as err:
            raise EndpointError("`/v1/models` answer has no `data[].id`", url=self.base_url + "/models") from err

    async def complete(self, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        """POST ``/v1/completions`` with ``payload`` (the model is filled in) and return the first choice."""
        body = await self._request("POST", "/completions", {"model": self.model, **self.extra_body, **payload})
        try:
            choice: Mapping[str, Any] = body["choices"][0]
        except (KeyError, IndexError, TypeError) as err:
            raise EndpointError("`/v1/completions` answer has no `choices`", url=self.base_url) from err
        return choice

    async def probe(self) -> Capabilities:
        """Find the model, whether the endpoint returns logprobs and prompt logprobs (echo), and whether the two
        agree (see the module docstring)."""
        models = await self.models()
        if self.model is None:
            if not models:
                raise EndpointError("serves no models; pass --model", url=self.base_url)
            self.model = models[0]
        elif models and self.model not in models:
            raise InvalidInputError(
                "model", f"must be one of the models {self.base_url} serves {list(models)}", self.model
            )
        notes: list[str] = []
        logprobs = echo = False
        tokens: tuple[str, ...] = ()
        sampled: Mapping[str, Any] = {}
        try:
            choice = await self.complete(
                {"prompt": PROBE_PROMPT, "max_tokens": PROBE_TOKENS, "temperature": 0.0, "logprobs": 1}
            )
            lp = choice.get("logprobs") or {}
            logprobs = bool(lp.get("token_logprobs"))
            sampled = lp if logprobs else {}
        except EndpointError as err:
            if err.status_code is None or err.status_code >= 500:
                raise
            notes.append(f"logprobs refused: {err}")
        if not logprobs:
            notes.append("no logprobs in /v1/completions answers")
        try:
            # `stop` bounds the answer of a server that reads max_tokens=0 as "no limit"
            choice = await self._echo_choice(PROBE_TEXT, top_logprobs=1, max_tokens=0, stop=["\n"])
            text = choice.get("text")
            if isinstance(text, str) and len(text) > len(PROBE_TEXT):
                self.echo_max_tokens = 1
                notes.append("echo with max_tokens=0 generated text; scoring asks for 1 token and drops it")
            scored = _teacher_forced(choice, PROBE_TEXT, self.base_url)
            toks = scored.get("tokens") or []
            values = scored.get("token_logprobs") or []
            echo = len(toks) > 1 and any(v is not None for v in values[1:])
            tokens = tuple(str(t) for t in toks)
        except EndpointError as err:
            if err.status_code is None or err.status_code >= 500:
                raise
            notes.append(f"echo refused: {err}")
        if not echo:
            notes.append("no prompt logprobs (echo); teacher-forced tests unavailable")
        ids = bool(echo and self.echo_max_tokens == 0 and await self._ids_or_none(PROBE_TEXT) is not None)
        self._pieces = bool(not ids and logprobs and await self._round_trips(PROBE_TEXT))
        if self._pieces:
            notes.append(
                "names no token ids; sampled ids read from its logprob pieces through /extras/tokenize (exact where "
                "each piece is one whole token; other completions are scored by text)"
            )
        consistent = True
        if echo and sampled:
            consistent, note = await self._check_echo(sampled)
            if note:
                notes.append(note)
        return Capabilities(
            url=self.base_url,
            model=self.model,
            models=models,
            logprobs=logprobs,
            echo=echo,
            tokens=tokens,
            notes=tuple(notes),
            echo_consistent=consistent,
            token_ids=ids or self._pieces,
            token_ids_from=IDS_NAMED if ids else IDS_FROM_PIECES if self._pieces else "",
        )

    async def _ids_or_none(self, text: str) -> tuple[int, ...] | None:
        """``text``'s token ids (``return_tokens_as_token_ids``), or ``None`` when the server does not name ids."""
        payload = {
            "prompt": text,
            "max_tokens": 0,
            "echo": True,
            "logprobs": 0,
            "temperature": 0.0,
            "return_tokens_as_token_ids": True,
        }
        try:
            choice = await self.complete(payload)
        except EndpointError as err:
            if err.status_code is None or err.status_code >= 500:
                raise
            return None
        return _token_ids((choice.get("logprobs") or {}).get("tokens"))

    async def _extras(self, path: str, payload: Mapping[str, Any]) -> Any:
        """POST to llama-cpp-python's ``/extras/...`` routes (at the server's root, not under ``/v1``)."""
        return await self._request("POST", self.base_url.removesuffix("/v1") + path, payload)

    async def _server_tokenize(self, text: str) -> tuple[int, ...]:
        body = await self._extras("/extras/tokenize", {"input": text})
        tokens = body.get("tokens") if isinstance(body, Mapping) else None
        if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
            raise EndpointError("`/extras/tokenize` answer has no `tokens` list of ids", url=self.base_url)
        return tuple(tokens)

    async def _server_detokenize(self, ids: Sequence[int]) -> str:
        key = tuple(ids)
        if key not in self._texts:
            body = await self._extras("/extras/detokenize", {"tokens": list(key)})
            text = body.get("text") if isinstance(body, Mapping) else None
            if not isinstance(text, str):
                raise EndpointError("`/extras/detokenize` answer has no `text`", url=self.base_url)
            self._texts[key] = text
        return self._texts[key]

    async def _round_trips(self, text: str) -> bool:
        """Whether the server tokenizes and detokenizes on request (``/extras``), ``text`` coming back unchanged."""
        try:
            return await self._server_detokenize(await self._server_tokenize(text)) == text
        except EndpointError as err:
            if err.status_code is not None and err.status_code < 500:
                return False  # no such routes
            if err.status_code is None and "answer has no" in str(err):
                return False  # routes of another shape
            raise

    async def _piece_id(self, piece: str) -> int | None:
        """The id of the one token whose text is ``piece``, or ``None`` if the tokenizer does not make it one."""
        if piece not in self._piece_ids:
            ids = await self._server_tokenize(piece) if piece else ()
            self._piece_ids[piece] = ids[0] if len(ids) == 1 else None
        return self._piece_ids[piece]

    async def canonical_ids(self, ids: Sequence[int]) -> tuple[int, ...] | None:
        """The server's own encoding of the text of ``ids`` (a text-only server is sent that text), or ``None``
        when the text cannot be had (``ids`` end inside a character: the last few tokens are dropped first)."""
        if not self._pieces:
            return tuple(ids)
        for cut in range(len(ids), max(len(ids) - 4, 0), -1):
            try:
                text = await self._server_detokenize(ids[:cut])
            except EndpointError as err:
                if err.status_code is None or err.status_code < 500:
                    raise
                continue  # llama-cpp-python answers 500 to a partial UTF-8 character
            return await self._server_tokenize(text)
        return None

    async def tokenize(self, text: str) -> tuple[int, ...]:
        """The token ids the server encodes ``text`` to (needs ``Capabilities.token_ids``)."""
        if self._pieces:
            return await self._server_tokenize(text)
        ids = await self._ids_or_none(text)
        if ids is None:
            raise EndpointError("does not name tokens by id (return_tokens_as_token_ids)", url=self.base_url)
        return ids

    async def _check_echo(self, sampled: Mapping[str, Any]) -> tuple[bool, str | None]:
        """Teacher-force the probe prompt plus its greedy tokens; their logprobs must match the sampled ones."""
        toks = [str(t) for t in sampled.get("tokens") or []]
        values = list(sampled.get("token_logprobs") or [])
        lp = await self._echo(PROBE_PROMPT + "".join(toks), top_logprobs=1)
        forced_tokens = [str(t) for t in lp.get("tokens") or []]
        forced_values = list(lp.get("token_logprobs") or [])
        start = _continuation_start(forced_tokens, lp.get("text_offset"), len(PROBE_PROMPT))
        diffs: list[float] = []
        pairs = zip(toks, values, forced_tokens[start:], forced_values[start:], strict=False)
        for tok, value, forced_tok, forced in pairs:
            if tok != forced_tok or value is None or forced is None:
                break  # compare only while both passes hold the same tokens
            diffs.append(abs(float(value) - float(forced)))
        if not diffs:
            return True, f"echo consistency not checked: {PROBE_PROMPT!r} + its sample re-tokenized differently"
        gap = statistics.median(diffs)
        if gap <= ECHO_CONSISTENCY_NATS:
            return True, None
        return False, (
            f"prompt logprobs (echo) disagree with sampled logprobs: the {len(diffs)} greedy tokens after "
            f"{PROBE_PROMPT!r} differ by {gap:.2f} nats (median) when teacher-forced (logprobs read from the wrong "
            "position?); tests on its prompt logprobs skipped"
        )

    async def _echo_choice(
        self, text: str, *, top_logprobs: int, max_tokens: int, stop: list[str] | None = None
    ) -> Mapping[str, Any]:
        payload: dict[str, Any] = {
            "prompt": text,
            "max_tokens": max_tokens,
            "echo": True,
            "logprobs": max(top_logprobs, 1),
            "temperature": 0.0,
        }
        if stop:
            payload["stop"] = stop
        return await self.complete(payload)

    async def _echo(self, text: str, *, top_logprobs: int) -> Mapping[str, Any]:
        """The logprobs of ``text`` teacher-forced, with anything generated past it dropped."""
        choice = await self._echo_choice(text, top_logprobs=top_logprobs, max_tokens=self.echo_max_tokens)
        return _teacher_forced(choice, text, self.base_url)

    async def sample(
        self,
        prompt_index: int,
        prompt: str | Sequence[int],
        *,
        max_tokens: int,
        temperature: float,
        top_p: float = 1.0,
        seed: int | None = None,
        top_k: int = 0,
        min_p: float = 0.0,
        token_ids: bool = False,
    ) -> Completion:
        """Sample one completion of ``prompt``.

        ``top_p`` is always sent, 1.0 included: llama-cpp-python's server, for one, applies top-p 0.95 to a
        request that names none. ``top_k`` and ``min_p`` (not in OpenAI's API; vLLM, llama.cpp and the lab read
        them) are sent when enabled, and then replace any ``extra_body`` value. ``prompt`` may be token ids;
        ``token_ids`` asks for the sampled ids as well (``Capabilities.token_ids``).
        """
        prompt_text = ""
        if self._pieces and not isinstance(prompt, str):  # a text-only server: the ids go as their text
            prompt_text = await self._server_detokenize(prompt)
            if await self._server_tokenize(prompt_text) != tuple(prompt):
                raise EndpointError(
                    "token-id prompt is not the server's own encoding of its text (it takes prompts as text only)",
                    url=self.base_url,
                )
            prompt = prompt_text
        payload: dict[str, Any] = {
            "prompt": prompt if isinstance(prompt, str) else list(prompt),
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
        }
        if top_k > 0:
            payload["top_k"] = top_k
        if min_p > 0.0:
            payload["min_p"] = min_p
        if seed is not None:
            payload["seed"] = seed
        if token_ids:
            payload["logprobs"] = 0
            if not self._pieces:
                payload["return_tokens_as_token_ids"] = True
        choice = await self.complete(payload)
        text = choice.get("text")
        if not isinstance(text, str):
            raise EndpointError("completion choice has no `text`", url=self.base_url)
        ids: tuple[int, ...] = ()
        if token_ids:
            tokens = (choice.get("logprobs") or {}).get("tokens")
            found = await self._ids_from_pieces(tokens, text) if self._pieces else _token_ids(tokens)
            if found is None and not self._pieces:
                raise EndpointError("completion's logprobs do not name its tokens by id", url=self.base_url)
            ids = found or ()
        return Completion(
            prompt_index=prompt_index,
            text=text,
            finish_reason=choice.get("finish_reason"),
            token_ids=ids,
            prompt_text=prompt_text,
        )

    async def _ids_from_pieces(self, pieces: Any, text: str) -> tuple[int, ...] | None:
        """The sampled ids behind a completion's logprob pieces, or ``None`` where they cannot be read exactly
        (module docstring: an empty piece, a piece that is not one token, pieces that do not join to ``text``)."""
        if not isinstance(pieces, list) or not exact_pieces([str(p) for p in pieces], text):
            return None
        ids = [await self._piece_id(str(p)) for p in pieces]
        return None if any(i is None for i in ids) else tuple(i for i in ids if i is not None)

    async def score_ids(
        self, prompt_ids: Sequence[int], continuation_ids: Sequence[int], *, top_logprobs: int = 5
    ) -> ScoredText:
        """Teacher-force exactly ``prompt_ids + continuation_ids`` (a prompt of token ids, ``echo``,
        ``max_tokens=0``) and keep the continuation's part: no re-encoding of text."""
        if not continuation_ids:
            return ScoredText((), (), ())
        payload = {
            "prompt": [*prompt_ids, *continuation_ids],
            "max_tokens": 0,
            "echo": True,
            "logprobs": max(top_logprobs, 1),
            "temperature": 0.0,
        }
        lp = (await self.complete(payload)).get("logprobs")
        if not isinstance(lp, Mapping):
            raise EndpointError("echo answer carries no `logprobs`", url=self.base_url)
        tokens = [str(t) for t in lp.get("tokens") or []]
        values = list(lp.get("token_logprobs") or [])
        tops = list(lp.get("top_logprobs") or [None] * len(tokens))
        start = len(prompt_ids)
        if not (len(tokens) == len(values) == len(tops) == start + len(continuation_ids)):
            raise EndpointError("echo answer for a token-id prompt has another number of tokens", url=self.base_url)
        return _scored(tokens[start:], values[start:], tops[start:])

    async def score(self, prompt: str, continuation: str, *, top_logprobs: int = 5) -> ScoredText:
        """Teacher-force ``prompt + continuation`` (``echo``, ``max_tokens=0``) and keep the continuation's part."""
        lp = await self._echo(prompt + continuation, top_logprobs=top_logprobs)
        tokens = [str(t) for t in lp.get("tokens") or []]
        values = list(lp.get("token_logprobs") or [])
        tops = list(lp.get("top_logprobs") or [None] * len(tokens))
        offsets = lp.get("text_offset")
        if not (len(tokens) == len(values) == len(tops)):
            raise EndpointError("echo answer has logprob lists of different lengths", url=self.base_url)
        start = _continuation_start(tokens, offsets, len(prompt))
        return _scored(tokens[start:], values[start:], tops[start:])


def _scored(tokens: Sequence[str], values: Sequence[Any], tops: Sequence[Any]) -> ScoredText:
    kept_values: list[float] = []
    kept_tops: list[Mapping[str, float]] = []
    for value, top in zip(values, tops, strict=True):
        kept_values.append(float(value) if value is not None and math.isfinite(float(value)) else -100.0)
        kept_tops.append({str(k): float(v) for k, v in (top or {}).items()})
    return ScoredText(tokens=tuple(tokens), logprobs=tuple(kept_values), top_logprobs=tuple(kept_tops))


def exact_pieces(pieces: Sequence[str], text: str) -> bool:
    """Whether a completion's logprob pieces can name its tokens exactly: none empty, and joined they are the
    completion's text (a server that decodes each piece alone drops the bytes of a character split over two
    tokens; its text, decoded whole, keeps them).

    >>> exact_pieces([" Paris", "."], " Paris."), exact_pieces([" caf", ""], " café"), exact_pieces(["a", ""], "a")
    (True, False, False)
    """
    return all(pieces) and "".join(pieces) == text


def _token_ids(tokens: Any) -> tuple[int, ...] | None:
    """The ids of logprob tokens named ``token_id:N`` (vLLM's form), or ``None`` if any is not.

    >>> _token_ids(["token_id:5", "token_id:17"]), _token_ids(["Hello"])
    ((5, 17), None)
    """
    if not isinstance(tokens, list):
        return None
    out = []
    for tok in tokens:
        head, _, tail = str(tok).partition(":")
        if head != "token_id" or not tail.isdigit():
            return None
        out.append(int(tail))
    return tuple(out)


def _teacher_forced(choice: Mapping[str, Any], text: str, url: str) -> Mapping[str, Any]:
    """The logprobs of an echo answer for ``text``; when the answer's text runs past ``text`` (the server generated
    as well), the generated tokens are dropped."""
    lp = choice.get("logprobs")
    if not isinstance(lp, Mapping):
        raise EndpointError("echo answer carries no `logprobs`", url=url)
    answer = choice.get("text")
    if isinstance(answer, str) and len(answer) > len(text):
        return _drop_generated(lp, len(text))
    return lp


def _drop_generated(lp: Mapping[str, Any], text_chars: int) -> Mapping[str, Any]:
    """``lp`` without the tokens that start at or after ``text_chars`` (what a server generated past the text).

    Cut by ``text_offset``, and only where every offset is an integer; without offsets nothing is cut.

    >>> lp = {"tokens": ["a", "b", "c"], "token_logprobs": [None, -1.0, -2.0], "top_logprobs": [None, {}, {}],
    ...       "text_offset": [0, 1, 2]}
    >>> _drop_generated(lp, 2)["tokens"]
    ['a', 'b']
    """
    offsets = lp.get("text_offset")
    tokens = lp.get("tokens")
    if not isinstance(offsets, list) or not isinstance(tokens, list) or len(offsets) != len(tokens):
        return lp
    if not all(isinstance(off, int) for off in offsets):
        return lp
    keep = next((i for i, off in enumerate(offsets) if off >= text_chars), len(offsets))
    if keep == len(offsets):
        return lp
    out = dict(lp)
    for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
        values = lp.get(key)
        if isinstance(values, list) and len(values) == len(offsets):
            out[key] = values[:keep]
    return out


def _continuation_start(tokens: Sequence[str], offsets: Any, prompt_chars: int) -> int:
    """Index of the first token that starts at or after the end of the prompt (never 0: it has no logprob)."""
    if isinstance(offsets, list) and len(offsets) == len(tokens) and offsets:
        for i, off in enumerate(offsets):
            if isinstance(off, int) and off >= prompt_chars:
                return max(i, 1)
        return len(tokens)
    position = 0
    for i, tok in enumerate(tokens):
        if position >= prompt_chars:
            return max(i, 1)
        position += len(tok)
    return len(tokens)


def _retry_delay(response: httpx.Response, default: float) -> float:
    value = response.headers.get("retry-after")
    try:
        return min(float(value), 30.0) if value is not None else default
    except ValueError:
        return default


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
        message = body.get("error", {}).get("message") if isinstance(body, dict) else None
        if message:
            return str(message)
    except ValueError:
        pass
    return response.text[:200] or response.reason_phrase
