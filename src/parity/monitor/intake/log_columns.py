"""``parity ingest``'s fast path: the common ``jsonl`` line decoded straight into a batch of record columns.

The common line - a chat or completions request and its response, both JSON objects, optional ``headers``,
``time``, ``status_code``, ``latency_ms`` and ``session_id`` - is decoded by msgspec into typed structs that name
only the fields a record reads (the response's text is skipped unread: without a scorer nothing flags a response, so
nothing is captured), and its record's fields go into the batch's columns
(:class:`~parity.monitor._records.RecordColumns`) with no ``dict`` tree and no :class:`~parity.monitor.Record` per
line. The fields are those :meth:`RecordBuilder.build_fields <parity.monitor.intake.scoring.RecordBuilder.build_fields>`
gives the line, the one definition of a record: :meth:`LineColumns.add` takes a line only when that is certain, and
declines every other line - a shape the structs do not describe (a streamed or text response, content parts that are
not text, a value of another type), a line the ingest's JSON bounds might treat differently (nesting, 20-digit
numbers, a lone surrogate), a greedy request (its ``greedy_disagreement`` pairing reads the whole request), a line
with no time, or one the record builder would refuse - and the per-line path reads that line from scratch, so each
record and each rejection is the per-line path's own (``tests/monitor/test_ingest_batched.py`` proves it on a file
of every shape).

>>> import json
>>> from parity.monitor.intake.scoring import RecordBuilder
>>> line = {"request": {"model": "S", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.7},
...         "response": {"id": "c1", "created": 1754395200, "choices": [{"index": 0,
...                      "message": {"content": "hello"}, "finish_reason": "stop"}],
...                      "usage": {"prompt_tokens": 5, "completion_tokens": 1}},
...         "headers": {"x-parity-platform": "tpu"}}
>>> batch = LineColumns(RecordBuilder(salt="s", source="ingest-jsonl"))
>>> batch.add(json.dumps(line).encode()), batch.add(b'{"request": "text"}'), len(batch)
(1, 0, 1)
>>> record = batch.take().records()[0]
>>> record.record_id, record.platform, record.context_tokens, record.request_tokens, record.time.isoformat()
('c1', 'tpu', 5, 2, '2025-08-05T12:00:00+00:00')
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from parity._json_input import MAX_JSON_DEPTH, orjson_reads_as_json
from parity._version import __version__
from parity.monitor._records import SCHEMA_VERSION, UNKNOWN, RecordColumns, micros_of
from parity.monitor.intake.scoring import PROVENANCE_HEADERS, RecordBuilder

__all__ = ["LineColumns"]

#: The latest ``response.created`` (epoch seconds) read on the fast path (year 5138); a later one takes the per-line
#: path, which says what is wrong with it.
_MAX_CREATED = 10**11

#: Floats at least this large take the per-line path (see :meth:`LineColumns.add`).
_INT64 = float(2**63)

#: Distinct ``headers`` objects whose provenance a batch builder remembers (emptied when full).
_HEADERS_CACHE_SIZE = 4096


#: The ``uuid`` a record without a response id is named after (as :class:`RecordBuilder` names it).
_uuid4 = uuid.uuid4


class _Part(msgspec.Struct, gc=False):
    text: str = ""


class _RequestMessage(msgspec.Struct, gc=False):
    role: str = ""
    content: str | list[_Part] | None = None


class _Request(msgspec.Struct, gc=False):
    model: str | None = None
    messages: list[_RequestMessage] | None = None
    prompt: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | msgspec.UnsetType | None = msgspec.UNSET
    user: str | None = None


class _Message(msgspec.Struct, gc=False):
    """A choice's message or delta: an object (its text is not read on this path)."""


class _Choice(msgspec.Struct, gc=False):
    index: int = 0
    message: _Message | None = None
    delta: _Message | None = None
    finish_reason: str | None = None
    logprobs: None = None  # a response with logprobs takes the per-line path (it summarises them)


class _Usage(msgspec.Struct, gc=False):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _Response(msgspec.Struct, gc=False):
    id: str | None = None
    created: int | None = None
    model: str | None = None
    choices: list[_Choice] | None = None
    usage: _Usage | None = None


class _Line(msgspec.Struct, gc=False):
    request: _Request
    response: _Response
    headers: msgspec.Raw = msgspec.Raw(b"null")  # its JSON text: read once per distinct text (_provenance_of)
    time: str | int | float | None = None
    status_code: int = 200
    latency_ms: float | None = None
    session_id: str | None = None
    # a stored record or a feedback line is not an exchange: the per-line path reads it
    record_id: msgspec.UnsetType = msgspec.UNSET
    feedback: msgspec.UnsetType = msgspec.UNSET


_decode_line = msgspec.json.Decoder(_Line).decode
_decode_headers = msgspec.json.Decoder(dict[str, str] | None).decode


class LineColumns:
    """The records of the common lines added so far, as columns (see the module docstring). ``builder`` gives the
    salt, labels, source, split and session-hash memory; it must have no scorer and no tokenizer (the per-line path
    is the one that scores and tokenizes). ``read_time(value, name)`` reads a line's ``time`` as the per-line path
    does (``parity ingest``'s); without it, a line with a ``time`` is left to the per-line path."""

    def __init__(
        self, builder: RecordBuilder, read_time: Callable[[str | float, str], datetime | None] | None = None
    ) -> None:
        if builder.scorer is not None or builder.tokenizer is not None:
            raise ValueError("LineColumns builds records without a scorer or tokenizer")
        self.builder = builder
        self._rows: list[tuple[Any, ...]] = []
        self._provenance: dict[bytes, tuple[str | None, tuple[str, ...], str | None]] = {}
        self._greedy = builder.greedy is not None
        self._session_hash = builder._session_hash  # the builder's salted hash, remembered per session
        self._context_class = builder.context_class  # the class at the builder's split, decided there
        # a shorter line holds no integer Python's JSON refuses (more digits than this); msgspec reads any exactly
        self._digits_limit = sys.get_int_max_str_digits() or sys.maxsize  # 0: no limit
        self._read_time = read_time

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, line: bytes) -> int:
        """Add the record of ``line`` and return how many records the batch holds now, or return 0 (nothing added)
        when the per-line path must read it (see the module docstring)."""
        if len(line) > self._digits_limit:
            # a number may have more digits than Python's JSON reads (it refuses the line), or the line nest too deep:
            # any number of 20 digits or more, and any bracket count past the depth limit, go the per-line way
            if not orjson_reads_as_json(line):
                return 0
        elif line.count(b"[") + line.count(b"{") > MAX_JSON_DEPTH:  # perhaps too deep: the per-line path checks
            return 0
        if not line.isascii():  # msgspec does not check the UTF-8 of the strings it skips; the per-line path does
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return 0
        try:
            obj = _decode_line(line)
        except msgspec.MsgspecError:
            return 0
        request, response = obj.request, obj.response
        temperature, top_k = request.temperature, request.top_k
        if self._greedy and (temperature == 0.0 or top_k == 1):
            return 0
        top_p, latency = request.top_p, obj.latency_ms
        # an integer literal past 64 bits in a float field: msgspec's float of it may differ from Python's
        big = _INT64
        if (
            (temperature is not None and not -big < temperature < big)
            or (top_p is not None and not -big < top_p < big)
            or (latency is not None and not -big < latency < big)
        ):
            return 0
        # the time: the line's, else the response's creation
        when = obj.time
        t_us: int | None
        if when is None:
            created = response.created
            if created is None or not 0 <= created < _MAX_CREATED:
                return 0
            t_us = created * 1_000_000
        else:
            t_us = self._time_us(when)
            if t_us is None:
                return 0
        # the request: its messages (or prompt), the prompt's length, the request's size
        messages = request.messages
        if messages is not None:
            text_chars = role_chars = 0
            for m in messages:
                content = m.content
                if isinstance(content, str):
                    text_chars += len(content)
                elif content is not None:
                    text_chars += sum([len(part.text) for part in content])
                role_chars += len(m.role)
            n = len(messages)
            prompt_chars = text_chars + n - 1 if n else 0
            request_tokens = (text_chars + role_chars + 3) // 4 if n else None
        else:
            prompt_chars = len(request.prompt) if request.prompt is not None else 0
            request_tokens = (prompt_chars + 3) // 4 if prompt_chars else None
        # the response: choice 0's finish reason, the usage
        finish = None
        for choice in response.choices or ():
            if choice.index == 0:
                finish = choice.finish_reason or finish
        usage = response.usage
        context = output = None
        if usage is not None:
            context, output = usage.prompt_tokens, usage.completion_tokens
        if context is None:
            context = (prompt_chars + 3) // 4
        elif context < 0:
            return 0  # the record builder refuses it: the per-line path says so
        # provenance from the headers (and the builder's labels)
        key = bytes(obj.headers)
        provenance = self._provenance.get(key)
        if provenance is None:
            provenance = self._provenance_of(key)
            if provenance is None:
                return 0
        model_header, where, label_model = provenance
        session = request.user or (obj.session_id or None)
        max_tokens = request.max_completion_tokens
        rows = self._rows
        rows.append((
            response.id or f"parity-{_uuid4().hex}",
            t_us,
            model_header or response.model or request.model or label_model or UNKNOWN,
            where,  # (pool, platform, region, config_version, server): five columns in take()
            context,
            output or 0,
            self._session_hash(session) if session else None,
            temperature,
            top_p,
            top_k,
            request.max_tokens if max_tokens is msgspec.UNSET else max_tokens,
            finish,
            obj.status_code,
            latency,
            request_tokens,
            self._context_class(context),
        ))  # fmt: skip
        return len(rows)

    def take(self) -> RecordColumns:
        """The records added since the last call, as columns (the builder starts a new batch)."""
        rows, self._rows = self._rows, []
        n = len(rows)
        (record_id, time, model, where, context, output, session, temperature, top_p, top_k, max_tokens, finish, status,
         latency, request_tokens, context_class) = (
            map(list, zip(*rows, strict=True)) if rows else ([] for _ in range(16))
        )  # fmt: skip
        pool, platform, region, config_version, server = (
            map(list, zip(*where, strict=True)) if rows else ([] for _ in range(5))
        )
        return RecordColumns({
            "record_id": record_id,
            "time": time,
            "model": model,
            "pool": pool,
            "platform": platform,
            "region": region,
            "config_version": config_version,
            "server": server,
            "context_tokens": context,
            "output_tokens": output,
            "session_hash": session,
            "temperature": temperature,
            "top_p": top_p,
            "top_k": top_k,
            "max_tokens": max_tokens,
            "finish_reason": finish,
            "status_code": status,
            "latency_ms": latency,
            "observations": [()] * n,
            "logprob_summary": [{}] * n,  # one empty dict shared: RecordColumns.records gives each record its own
            "captured_text": [None] * n,
            "source": [self.builder.source] * n,
            "schema_version": [SCHEMA_VERSION] * n,
            "request_tokens": request_tokens,
            "context_class": context_class,
            "signals": [None] * n,
            "parity_version": [__version__] * n,
        })  # fmt: skip

    def _time_us(self, when: str | float) -> int | None:
        """The line's ``time`` in microseconds, as the per-line path reads it (``read_time``); ``None`` when that path
        refuses it, or when there is no ``read_time``."""
        if self._read_time is None:
            return None
        try:
            t = self._read_time(when, "time")
        except Exception:  # the per-line path rejects the line with its own message
            return None
        if t is None:
            return None
        return micros_of(t)

    def _provenance_of(self, key: bytes) -> tuple[str | None, tuple[str, ...], str | None] | None:
        """(the ``x-parity-model`` header, (pool, platform, region, config_version, server), the labels' model) of
        a line's ``headers`` (their JSON text), as :meth:`RecordBuilder.build_fields` reads them (names lower-cased,
        the last of equal names kept, an empty value ignored), remembered per distinct text; ``None`` when they are
        not an object of texts (or null): the per-line path reads that line."""
        try:
            decoded = _decode_headers(key)
        except msgspec.MsgspecError:
            return None
        headers = {k.lower(): v for k, v in (decoded or {}).items()}
        prov = dict(self.builder.labels)
        for header, value in headers.items():
            name = PROVENANCE_HEADERS.get(header)
            if name is not None and value:
                prov[name] = value
        get = prov.get
        where = (get("pool", UNKNOWN), get("platform", UNKNOWN), get("region", UNKNOWN),
                 get("config_version", UNKNOWN), get("server", UNKNOWN))  # fmt: skip
        out = (headers.get("x-parity-model") or None, where, get("model"))
        if len(self._provenance) >= _HEADERS_CACHE_SIZE:
            self._provenance.clear()
        self._provenance[key] = out
        return out
