"""From one HTTP exchange (an OpenAI-compatible request and its response) to a :class:`~parity.monitor.Record`.

The order of operations, for every exchange, on the proxy's worker thread or in ``parity ingest``:

1. :func:`parse_exchange` reads the request (model, sampling parameters, messages/prompt, session) and the
   response - a JSON body or an SSE stream of ``chat.completion.chunk`` / ``text_completion`` events - into a
   :class:`ParsedExchange` (text, finish reason, usage, chosen-token logprobs). Only choice 0 is scored.
2. A :class:`ResponseScorer` runs the detectors on it (:class:`DetectorScorer` uses ``parity.detectors``).
3. :class:`RecordBuilder` assembles the record: provenance from the response headers ``x-parity-server``,
   ``-pool``, ``-platform``, ``-region``, ``-config-version``, ``-model`` (the lab fleet sets them), else from
   static labels; context length from ``usage.prompt_tokens`` (else estimated as characters / 4); the session
   (``user`` field or ``x-session-id`` header) as a salted SHA-256; a logprob summary when logprobs came back.
   Text is dropped here unless the capture policy keeps it (redacted, flagged responses only).
4. :class:`GreedyRepeats` (on by default) pairs a greedy request (``temperature`` 0 or ``top_k`` 1) with the
   previous identical one and adds a :data:`GREEDY_DISAGREEMENT` observation: whether the answers differ. It is
   the parameter-adherence signal that needs no logprobs: an upstream that ignores ``temperature`` samples, and
   identical greedy requests stop agreeing. Only a hash of each answer is kept, in memory.

>>> import json
>>> from datetime import datetime, timezone
>>> ex = Exchange(path="/v1/chat/completions", time=datetime(2025, 8, 5, tzinfo=timezone.utc),
...     request={"model": "S", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.7, "user": "u1"},
...     status_code=200, response_headers={"x-parity-platform": "tpu", "x-parity-pool": "short"},
...     response_body=json.dumps({"id": "chatcmpl-1", "model": "S", "choices": [{"index": 0,
...         "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
...         "usage": {"prompt_tokens": 9, "completion_tokens": 1}}))
>>> rec = RecordBuilder(salt="s", labels={"region": "eu"}, scorer=None).build(ex)
>>> rec.record_id, rec.platform, rec.region, rec.context_tokens, rec.temperature, rec.captured_text
('chatcmpl-1', 'tpu', 'eu', 9, 0.7, None)
>>> rec.session_hash == session_hash("u1", "s")
True
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Protocol

from parity._exceptions import InvalidInputError
from parity._time import parse_time
from parity._version import __version__
from parity.monitor._records import (
    LONG_CONTEXT_THRESHOLD_TOKENS,
    SCHEMA_VERSION,
    UNKNOWN,
    DetectorObservation,
    Record,
    context_class_of,
    record_of,
)
from parity.monitor.intake.capture import CapturePolicy

log = logging.getLogger("parity.monitor")

#: Paths whose exchanges become records; everything else is forwarded and counted, not scored.
SCORED_PATHS: tuple[str, ...] = ("/v1/chat/completions", "/v1/completions")

#: Response header -> record field. The lab fleet sets these; any server may.
PROVENANCE_HEADERS: dict[str, str] = {
    "x-parity-server": "server",
    "x-parity-pool": "pool",
    "x-parity-platform": "platform",
    "x-parity-region": "region",
    "x-parity-config-version": "config_version",
    "x-parity-model": "model",
}

#: Record fields a static label (``--label k=v``) may set.
LABEL_FIELDS = frozenset(PROVENANCE_HEADERS.values())

#: The observation (and rate signal) of a repeated greedy request whose answer differs from the previous one.
GREEDY_DISAGREEMENT = "greedy_disagreement"

#: Request fields that do not change a greedy answer's text: left out of the fingerprint that pairs requests.
_NOT_IN_FINGERPRINT = frozenset(
    {"user", "stream", "stream_options", "logprobs", "top_logprobs", "seed", "temperature", "top_p", "top_k", "n",
     "metadata", "store"}
)  # fmt: skip

#: Session hashes a record builder remembers (emptied when full).
_SESSION_CACHE_SIZE = 65_536

#: Characters per token for estimating the context length when the response carries no ``usage``.
CHARS_PER_TOKEN_ESTIMATE = 4


def session_hash(session: str, salt: str) -> str:
    """Salted SHA-256 of a session id, 16 hex characters (64 bits: collisions negligible per store).

    >>> session_hash("user-42", "salt") == session_hash("user-42", "salt") != session_hash("user-42", "other")
    True
    """
    return hashlib.sha256(f"{salt}\x00{session}".encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request/response pair as the proxy saw it; credentials already stripped (only the headers the
    monitor needs are kept). ``time`` is when the request arrived; ``latency_ms`` until the response ended."""

    path: str
    time: datetime
    request: dict[str, Any] | None
    status_code: int
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str = ""
    request_headers: dict[str, str] = field(default_factory=dict)
    latency_ms: float | None = None
    streamed: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for the spool)."""
        return {
            "path": self.path,
            "time": self.time.isoformat(),
            "request": self.request,
            "status_code": self.status_code,
            "response_headers": self.response_headers,
            "response_body": self.response_body,
            "request_headers": self.request_headers,
            "latency_ms": self.latency_ms,
            "streamed": self.streamed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Exchange:
        """Inverse of :meth:`to_dict`."""
        return cls(
            path=str(data["path"]),
            time=parse_time(str(data["time"])),
            request=data.get("request"),
            status_code=int(data["status_code"]),
            response_headers=dict(data.get("response_headers") or {}),
            response_body=str(data.get("response_body") or ""),
            request_headers=dict(data.get("request_headers") or {}),
            latency_ms=data.get("latency_ms"),
            streamed=bool(data.get("streamed", False)),
        )


@dataclass(frozen=True, slots=True)
class ParsedExchange:
    """What the detectors and the record need from an exchange (choice 0 only)."""

    response_id: str | None = None
    model: str | None = None
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt: str = ""
    messages: tuple[dict[str, str], ...] = ()
    tokens: tuple[str, ...] | None = None
    token_logprobs: tuple[float, ...] | None = None
    top_logprobs: tuple[dict[str, float], ...] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    session: str | None = None


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _opt_float(value: Any, name: str) -> float | None:
    if value is None or type(value) is float:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(name, "must be a number", value)
    return float(value)


def _opt_int(value: Any, name: str) -> int | None:
    if value is None or type(value) is int:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise InvalidInputError(name, "must be an integer", value)
    return int(value)


#: One setter per field of :class:`ParsedExchange`, in field order (as :func:`parity.monitor._records.record_of`:
#: the frozen dataclass's generated ``__init__`` sets each field through ``object.__setattr__`` by name).
_PARSED_SETTERS = tuple(getattr(ParsedExchange, f.name).__set__ for f in fields(ParsedExchange))


def _parsed_of(*values: Any) -> ParsedExchange:
    """``ParsedExchange(*values)`` (all fields, in order; it has no ``__post_init__``), at about half the cost."""
    parsed: ParsedExchange = object.__new__(ParsedExchange)
    for setter, value in zip(_PARSED_SETTERS, values, strict=True):
        setter(parsed, value)
    return parsed


class _Acc:
    """Accumulates choice 0 of a response, whole or streamed."""

    __slots__ = ("finish", "id", "lps", "model", "text", "tokens", "tops", "usage")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.tokens: list[str] = []
        self.lps: list[float] = []
        self.tops: list[dict[str, float]] = []
        self.id: str | None = None
        self.model: str | None = None
        self.finish: str | None = None
        self.usage: dict[str, Any] = {}

    def add(self, obj: Mapping[str, Any]) -> None:
        self.id = self.id or obj.get("id")
        self.model = self.model or obj.get("model")
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        for choice in obj.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            if "message" in choice:
                self.text.append(_content_text((choice.get("message") or {}).get("content")))
            elif "delta" in choice:
                self.text.append(_content_text((choice.get("delta") or {}).get("content")))
            elif "text" in choice:
                self.text.append(str(choice.get("text") or ""))
            self.finish = choice.get("finish_reason") or self.finish
            logprobs = choice.get("logprobs")
            if logprobs is not None:
                self._logprobs(logprobs)

    def _logprobs(self, lp: Any) -> None:
        if not isinstance(lp, dict):
            return
        if isinstance(lp.get("content"), list):  # chat shape
            for item in lp["content"]:
                if isinstance(item, dict) and isinstance(item.get("logprob"), int | float):
                    self.tokens.append(str(item.get("token", "")))
                    self.lps.append(float(item["logprob"]))
                    tops = item.get("top_logprobs") or []
                    self.tops.append(
                        {
                            str(t.get("token")): float(t["logprob"])
                            for t in tops
                            if isinstance(t, dict) and isinstance(t.get("logprob"), int | float)
                        }
                    )
        elif isinstance(lp.get("token_logprobs"), list):  # completions shape
            self.tokens.extend(str(t) for t in lp.get("tokens") or [])
            self.lps.extend(float(x) for x in lp["token_logprobs"] if isinstance(x, int | float))
            self.tops.extend(dict(t) for t in lp.get("top_logprobs") or [] if isinstance(t, dict))


def _iter_sse(body: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for line in body.splitlines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if not data or data == "[DONE]":
            continue
        try:
            obj = json.loads(data)
        except ValueError:
            continue
        if isinstance(obj, dict):
            events.append(obj)
    return events


def parse_exchange(exchange: Exchange, events: Sequence[Mapping[str, Any]] | None = None) -> ParsedExchange:
    """Read the request and the response (JSON or SSE) of an exchange; tolerant of missing fields. ``events``:
    the response already parsed (the object, or the stream's chunk objects in order), read instead of
    ``exchange.response_body`` (``parity ingest`` has them from the log line; no second JSON round trip).

    Raises :class:`~parity.InvalidInputError` naming the field when a sampling parameter has the wrong type.
    """
    req = exchange.request or {}
    acc = _Acc()
    body = exchange.response_body
    if events is not None:
        for event in events:
            if isinstance(event, dict):
                acc.add(event)
    elif exchange.streamed or body.lstrip().startswith("data:"):
        for event in _iter_sse(body):
            acc.add(event)
    elif body:
        try:
            obj = json.loads(body)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            acc.add(obj)
    return _parsed(req, acc, exchange.request_headers.get("x-session-id"))


def parse_response_object(
    request: Mapping[str, Any], response: Mapping[str, Any], session_header: str | None = None
) -> ParsedExchange:
    """:func:`parse_exchange` of an exchange whose response is one JSON object already parsed (``parity ingest``'s
    common line), without the :class:`Exchange`: ``session_header`` stands for its ``x-session-id`` request header.

    >>> p = parse_response_object({"model": "S", "messages": [{"role": "user", "content": "hi"}], "user": "u"},
    ...                           {"id": "c1", "choices": [{"message": {"content": "yo"}, "finish_reason": "stop"}]})
    >>> p.response_id, p.text, p.prompt, p.session
    ('c1', 'yo', 'hi', 'u')
    """
    acc = _Acc()
    acc.add(response)
    return _parsed(request or {}, acc, session_header)


def _parsed(req: Mapping[str, Any], acc: _Acc, session_header: str | None) -> ParsedExchange:
    """The :class:`ParsedExchange` of a request and its accumulated response (one definition for every path)."""
    get = req.get
    messages: tuple[dict[str, str], ...] = ()
    prompt = ""
    listed = get("messages")
    if isinstance(listed, list):
        messages = tuple(
            [
                {"role": str(m.get("role", "")), "content": _content_text(m.get("content"))}
                for m in listed
                if isinstance(m, dict)
            ]
        )
        prompt = "\n".join([m["content"] for m in messages])
    else:
        text = get("prompt")
        if isinstance(text, str):
            prompt = text
        elif isinstance(text, list):
            prompt = "\n".join([p for p in text if isinstance(p, str)])
    user = get("user")
    session = (user if isinstance(user, str) else None) or session_header
    max_tokens = get("max_completion_tokens", get("max_tokens"))
    has_lp = bool(acc.lps)
    model = get("model")
    usage = acc.usage
    return _parsed_of(
        acc.id,  # response_id
        acc.model or (model if isinstance(model, str) else None),  # model
        "".join(acc.text),  # text
        acc.finish,  # finish_reason
        _opt_int(usage.get("prompt_tokens"), "usage.prompt_tokens"),  # prompt_tokens
        _opt_int(usage.get("completion_tokens"), "usage.completion_tokens"),  # completion_tokens
        prompt,  # prompt
        messages,  # messages
        tuple(acc.tokens) if has_lp else None,  # tokens
        tuple(acc.lps) if has_lp else None,  # token_logprobs
        tuple(acc.tops) if has_lp and any(acc.tops) else None,  # top_logprobs
        _opt_float(get("temperature"), "temperature"),  # temperature
        _opt_float(get("top_p"), "top_p"),  # top_p
        _opt_int(get("top_k"), "top_k"),  # top_k
        _opt_int(max_tokens, "max_tokens"),  # max_tokens
        session,  # session
    )


def is_greedy(parsed: ParsedExchange) -> bool:
    """Whether the client asked for greedy decoding: ``temperature`` 0 or ``top_k`` 1."""
    return parsed.temperature == 0.0 or parsed.top_k == 1


class GreedyRepeats:
    """Pairs each greedy request with the previous identical one and says whether their answers differ.

    Two requests are identical when their path and body agree on everything but the fields that do not change
    a greedy answer (the session, streaming, logprobs, seed and the sampling parameters themselves). The memory
    holds a hash of the request and of its latest answer for the last ``max_requests`` distinct greedy requests
    (least recently seen forgotten first); no text. A correct, deterministic stack answers a repeated greedy
    request with the same text; an upstream that ignores ``temperature`` (or batch-variant numerics) does not.
    The later record of a pair carries the observation, so the segment is that of the repeat.

    >>> g = GreedyRepeats()
    >>> req = {"model": "O", "messages": [{"role": "user", "content": "hi"}], "temperature": 0, "user": "u1"}
    >>> p = ParsedExchange(text="hello", temperature=0.0)
    >>> g.observe("/v1/chat/completions", req, p) is None  # first time: nothing to compare with
    True
    >>> g.observe("/v1/chat/completions", {**req, "user": "u2"}, p)
    DetectorObservation(detector='greedy_disagreement', flagged=False, score=0.0)
    >>> g.observe("/v1/chat/completions", req, ParsedExchange(text="hey there", temperature=0.0)).flagged
    True
    >>> g.observe("/v1/chat/completions", req, ParsedExchange(text="hi", temperature=0.7)) is None  # not greedy
    True
    """

    def __init__(self, max_requests: int = 100_000) -> None:
        if isinstance(max_requests, bool) or not isinstance(max_requests, int) or max_requests < 1:
            raise InvalidInputError("max_requests", "must be an int >= 1", max_requests)
        self.max_requests = max_requests
        self._last: OrderedDict[bytes, bytes] = OrderedDict()
        self._lock = threading.Lock()
        #: repeats compared, and how many disagreed
        self.compared = 0
        self.disagreed = 0

    def __len__(self) -> int:
        return len(self._last)

    @staticmethod
    def fingerprint(path: str, request: Mapping[str, Any]) -> bytes:
        """The hash that pairs identical greedy requests (see the class docstring)."""
        kept = {k: v for k, v in request.items() if k not in _NOT_IN_FINGERPRINT}
        text = json.dumps([path, kept], sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(text.encode()).digest()[:16]

    def observe(
        self, path: str, request: Mapping[str, Any] | None, parsed: ParsedExchange
    ) -> DetectorObservation | None:
        """Remember this answer; the observation when an identical greedy request was answered before, else
        ``None`` (not greedy, no request body, or the first of its kind)."""
        if request is None or not is_greedy(parsed):
            return None
        key = self.fingerprint(path, request)
        answer = hashlib.sha256(parsed.text.encode("utf-8", errors="surrogatepass")).digest()[:16]
        with self._lock:
            before = self._last.pop(key, None)
            self._last[key] = answer
            if len(self._last) > self.max_requests:
                self._last.popitem(last=False)
            if before is None:
                return None
            differ = before != answer
            self.compared += 1
            self.disagreed += differ
        return DetectorObservation(GREEDY_DISAGREEMENT, differ, 1.0 if differ else 0.0)


class ResponseScorer(Protocol):
    """One-method plug point: the detectors' verdicts on a parsed exchange."""

    def score(self, parsed: ParsedExchange) -> list[DetectorObservation]: ...


class DetectorScorer:
    """Runs ``parity.detectors.score_response`` (all default detectors, or ``detectors``) on each response and
    keeps only (detector, flagged, score): evidence spans stay in memory, never in the store."""

    def __init__(self, detectors: Sequence[Any] | None = None) -> None:
        from parity import detectors as module  # imported late: a proxy that scores nothing never loads them

        self._context = module.ResponseContext
        self._score = module.score_response
        self.detectors = list(detectors) if detectors is not None else list(module.default_detectors())

    def score(self, parsed: ParsedExchange) -> list[DetectorObservation]:
        ctx = self._context(
            response=parsed.text,
            prompt=parsed.prompt,
            messages=parsed.messages,
            tokens=parsed.tokens,
            token_logprobs=parsed.token_logprobs,
            top_logprobs=parsed.top_logprobs,
            temperature=parsed.temperature,
            top_p=parsed.top_p,
            top_k=parsed.top_k,
            finish_reason=parsed.finish_reason,
        )
        return [
            DetectorObservation(str(o.detector), bool(o.flagged), float(o.score))
            for o in self._score(ctx, self.detectors)
        ]


def default_scorer() -> ResponseScorer | None:
    """A :class:`DetectorScorer` over the default detectors, or ``None`` (records without observations, logged)
    when ``parity.detectors`` cannot be imported in this build."""
    try:
        return DetectorScorer()
    except (ImportError, AttributeError) as err:
        log.warning("parity.detectors unavailable (%s); records will carry no detector observations", err)
        return None


def logprob_summary(logprobs: Sequence[float] | None) -> dict[str, float]:
    """Aggregate numbers only, never tokens: mean and min chosen-token logprob and the count.

    >>> logprob_summary([-0.5, -1.5])
    {'mean_logprob': -1.0, 'min_logprob': -1.5, 'n_logprobs': 2.0}
    """
    values = [v for v in logprobs or () if math.isfinite(v)]
    if not values:
        return {}
    return {"mean_logprob": sum(values) / len(values), "min_logprob": min(values), "n_logprobs": float(len(values))}


class RecordBuilder:
    """Turns exchanges into records: provenance, salted session hash, detector observations, capture policy.

    ``labels`` are static provenance (``{"platform": "gpu"}``) used when a response lacks the header; keys
    must be in :data:`LABEL_FIELDS`. ``scorer=None`` stores no observations. ``tokenizer`` (text -> tokens)
    sizes the forwarded request (``Record.request_tokens``); without one, characters / 4. ``greedy_memory`` is
    how many distinct greedy requests :class:`GreedyRepeats` remembers (0: no ``greedy_disagreement``).

    ``long_context_tokens`` is the fleet router's short/long split, the one place it is configured: the builder
    decides each record's ``context_class`` with it (``'long'`` above it), and every later stage (the signals, the
    routing audit, the segment statistics, the store, the dashboard) reads the record's field. A stored record
    that carries a ``context_class`` (a replay) keeps it (:meth:`adopt`).
    """

    def __init__(
        self,
        *,
        salt: str,
        labels: Mapping[str, str] | None = None,
        scorer: ResponseScorer | None = None,
        capture: CapturePolicy | str = "none",
        source: str = "proxy",
        tokenizer: Callable[[str], Sequence[object]] | None = None,
        greedy_memory: int = 100_000,
        long_context_tokens: int = LONG_CONTEXT_THRESHOLD_TOKENS,
    ) -> None:
        labels = dict(labels or {})
        bad = sorted(set(labels) - LABEL_FIELDS)
        if bad:
            raise InvalidInputError("label", f"keys must be among {sorted(LABEL_FIELDS)}", bad)
        if not salt:
            raise InvalidInputError("salt", "must be a non-empty string", salt)
        self.salt = salt
        self.labels = labels
        self._session_hashes: dict[str, str] = {}
        self._hashed_with = salt
        self.scorer = scorer
        self.capture = capture if isinstance(capture, CapturePolicy) else CapturePolicy(capture)
        self.source = source
        self.tokenizer = tokenizer
        if isinstance(greedy_memory, bool) or not isinstance(greedy_memory, int) or greedy_memory < 0:
            raise InvalidInputError("greedy_memory", "must be an int >= 0", greedy_memory)
        self.greedy = GreedyRepeats(greedy_memory) if greedy_memory else None
        if isinstance(long_context_tokens, bool) or not isinstance(long_context_tokens, int) or long_context_tokens < 1:
            raise InvalidInputError("long_context_tokens", "must be an int >= 1", long_context_tokens)
        self.long_context_tokens = long_context_tokens

    def for_source(self, source: str) -> RecordBuilder:
        """A builder with this one's settings - salt, labels, scorer, capture, tokenizer, greedy memory and the
        split - for records of another ``source`` (the proxy's OTLP receiver): the split is configured once, on the
        first builder, and never handed on by hand. Its session hashes and greedy repeats are its own.

        >>> otlp = RecordBuilder(salt="s", long_context_tokens=192).for_source("otlp")
        >>> otlp.source, otlp.context_class(200)
        ('otlp', 'long')
        """
        return RecordBuilder(
            salt=self.salt,
            labels=self.labels,
            scorer=self.scorer,
            capture=self.capture,
            source=source,
            tokenizer=self.tokenizer,
            greedy_memory=self.greedy.max_requests if self.greedy is not None else 0,
            long_context_tokens=self.long_context_tokens,
        )

    def context_class(self, context_tokens: int) -> str:
        """The context class of a request of ``context_tokens`` at this builder's split.

        >>> RecordBuilder(salt="s", long_context_tokens=192).context_class(200)
        'long'
        """
        return context_class_of(context_tokens, self.long_context_tokens)

    def adopt(self, data: Mapping[str, Any]) -> Record:
        """A stored record (``Record.to_dict`` form, e.g. a JSONL line of records) as a :class:`Record`: its
        ``context_class`` kept when it carries one (never reclassified), else decided at this builder's split
        (records written before schema version 3 have none).

        >>> b = RecordBuilder(salt="s", long_context_tokens=192)
        >>> old = {"record_id": "r", "time": "2025-08-05T00:00:00+00:00", "model": "S", "context_tokens": 300}
        >>> b.adopt(old).context_class, b.adopt(old | {"context_class": "short"}).context_class
        ('long', 'short')
        """
        values = dict(data)
        if not values.get("context_class"):
            values["context_class"] = self.context_class(int(values.get("context_tokens") or 0))
        return Record.from_dict(values)

    def build(self, exchange: Exchange) -> Record:
        """The record of one exchange (errors included: status code kept, no observations)."""
        parsed = parse_exchange(exchange)
        return self.build_parsed(exchange, parsed)

    def build_parsed(self, exchange: Exchange, parsed: ParsedExchange) -> Record:
        headers = {k.lower(): v for k, v in exchange.response_headers.items()}
        return self.build_fields(exchange.path, exchange.time, exchange.request, exchange.status_code, headers,
                                 exchange.latency_ms, parsed)  # fmt: skip

    def build_fields(
        self,
        path: str,
        time: datetime,
        request: dict[str, Any] | None,
        status_code: int,
        headers: Mapping[str, str],
        latency_ms: float | None,
        parsed: ParsedExchange,
    ) -> Record:
        """:meth:`build_parsed` from an exchange's parts (``headers``: the response headers, names lower-case), for a
        caller that has them without an :class:`Exchange` (``parity ingest``'s log lines).

        This is the definition of a record's fields. ``parity ingest``'s columnar fast path
        (:class:`parity.monitor.intake.log_columns.LineColumns`) computes the same fields for the one line shape it
        takes, straight into columns; ``tests/monitor/test_ingest_batched.py`` holds the two equal field by field, so
        a change here is made there too (or the fast path declines the lines it affects)."""
        prov = self.labels  # copied before a header changes it
        if headers:
            for header, value in headers.items():  # each header names one field: the order does not matter
                name = PROVENANCE_HEADERS.get(header)
                if name is not None and value:
                    if prov is self.labels:
                        prov = dict(prov)
                    prov[name] = value
        ok = 200 <= status_code < 300
        observations = self.scorer.score(parsed) if ok and self.scorer is not None else []
        if ok and self.greedy is not None:
            repeat = self.greedy.observe(path, request, parsed)
            if repeat is not None:
                observations.append(repeat)
        context = parsed.prompt_tokens
        if context is None:
            context = math.ceil(len(parsed.prompt) / CHARS_PER_TOKEN_ESTIMATE)
        flagged = any([o.flagged for o in observations]) if observations else False
        get = prov.get
        return record_of((
            parsed.response_id or f"parity-{uuid.uuid4().hex}",
            time,
            headers.get("x-parity-model") or parsed.model or get("model") or UNKNOWN,
            get("pool", UNKNOWN),
            get("platform", UNKNOWN),
            get("region", UNKNOWN),
            get("config_version", UNKNOWN),
            get("server", UNKNOWN),
            context,
            parsed.completion_tokens or 0,
            self._session_hash(parsed.session) if parsed.session else None,
            parsed.temperature,
            parsed.top_p,
            parsed.top_k,
            parsed.max_tokens,
            parsed.finish_reason,
            status_code,
            latency_ms,
            tuple(observations),
            logprob_summary(parsed.token_logprobs) if parsed.token_logprobs else {},
            self.capture.capture(parsed.text, flagged=flagged),
            self.source,
            SCHEMA_VERSION,
            self._request_tokens(parsed),
            context_class_of(context, self.long_context_tokens),
            None,
            __version__,
        ))  # fmt: skip

    def _session_hash(self, session: str) -> str:
        """:func:`session_hash` with this builder's salt, remembered for the last sessions seen (a session sends
        many requests)."""
        if type(session) is not str:
            return session_hash(session, self.salt)
        cache = self._session_hashes
        if self._hashed_with != self.salt:  # the salt was changed: the remembered hashes are not its
            cache.clear()
            self._hashed_with = self.salt
        hashed = cache.get(session)
        if hashed is None:
            if len(cache) >= _SESSION_CACHE_SIZE:
                cache.clear()
            hashed = cache[session] = session_hash(session, self.salt)
        return hashed

    def _request_tokens(self, parsed: ParsedExchange) -> int | None:
        """The forwarded request's size in tokens: ``tokenizer`` when one is configured, else characters / 4
        (each chat message counts its role too); ``None`` for an empty request."""
        if not parsed.prompt and not parsed.messages:
            return None
        if self.tokenizer is not None:
            texts = [m["content"] for m in parsed.messages] if parsed.messages else [parsed.prompt]
            return sum(len(self.tokenizer(t)) for t in texts)
        chars = (
            sum([len(m["content"]) + len(m["role"]) for m in parsed.messages])
            if parsed.messages
            else len(parsed.prompt)
        )
        return math.ceil(chars / CHARS_PER_TOKEN_ESTIMATE)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)
