"""``parity ingest``: the same records as the proxy makes, from request/response logs and OpenTelemetry spans.

Accepted shapes, one JSON value per line (a malformed line is reported with its line number, copied verbatim to
the reject file, and skipped; the rest is ingested). A line is parsed only when it is UTF-8, at most
:data:`MAX_LINE_BYTES` long and nested at most 128 levels deep (:func:`parity._json_input.loads_bounded`); JSON's
``NaN``/``Infinity`` and lone surrogates are rejected too, so no line can crash the run or poison a batch.

The reject file is JSONL, one object per rejected line, in input order::

    {"line": 7, "error": "`line` must be valid JSON (...)", "raw": "the line exactly as read"}
    {"line": 9, "error": "`line` must be UTF-8 (...)", "raw_b64": "base64 of the line's bytes"}

``raw`` (when the line is UTF-8) or ``raw_b64`` (when it is not) holds the line's bytes verbatim without its
``\n`` (a ``\r`` stays), so ``json.loads(entry)["raw"].encode()`` or ``base64.b64decode(entry["raw_b64"])``
gives back exactly what was read.

``jsonl`` - one exchange per line::

    {"request": {OpenAI chat/completions request}, "response": {OpenAI response object}
               | [stream chunk objects] | "data: ...SSE text",
     "headers": {"x-parity-platform": "tpu", ...},    # optional response headers (provenance)
     "time": "2025-08-31T10:00:00Z",                  # optional; else response.created; else now
     "status_code": 200, "latency_ms": 812.5,         # optional
     "session_id": "..."}                             # optional (else request.user)

  also accepted: a stored record (``Record.to_dict()``, recognised by ``record_id``) and feedback
  (``{"feedback": {"response_id", "kind", "time"}}``).

  ``request`` and ``response`` may also be the bodies as text (JSON, or SSE for a stream), as a web server logs
  them: the nginx mirror of ``deploy/nginx/`` writes ``{"request": "{\\"model\\": ...}", "response": "..."}``.

  Without a scorer or monitor (``--no-detectors --no-monitor``), the common line - request and response as JSON
  objects - takes a columnar fast path (:mod:`parity.monitor.intake.log_columns`: msgspec decodes it into typed
  fields, the batch's records stay columns down to the store's write); every other line, and every line when
  detectors or the monitor run, is read line by line as above, to the same records and the same rejections.

``otlp`` - OpenTelemetry GenAI spans as OTLP JSON (``ExportTraceServiceRequest``: ``resourceSpans[].
scopeSpans[].spans[]``), one document per line as the collector's file exporter writes them, or one document
for the whole file. A span counts when it has ``gen_ai.*`` attributes: ``gen_ai.request.model``,
``gen_ai.response.{id,model,finish_reasons}``, ``gen_ai.usage.{input,output}_tokens``,
``gen_ai.request.{temperature,top_p,top_k,max_tokens}``; content from ``gen_ai.input.messages`` /
``gen_ai.output.messages`` attributes or the older ``gen_ai.content.prompt`` / ``gen_ai.content.completion``
events. Provenance from span or resource attributes ``parity.{server,pool,platform,region,config_version}``;
session from ``session.id`` / ``gen_ai.conversation.id``.

>>> import io, json
>>> from parity.monitor.storage.store import MemoryStore
>>> line = {"request": {"model": "S", "messages": [{"role": "user", "content": "hi"}]},
...         "response": {"id": "c1", "created": 1754395200, "choices": [{"index": 0,
...                      "message": {"content": "hello"}, "finish_reason": "stop"}],
...                      "usage": {"prompt_tokens": 5, "completion_tokens": 1}},
...         "headers": {"x-parity-platform": "tpu"}}
>>> store = MemoryStore()
>>> result = ingest_lines(io.StringIO(json.dumps(line) + "\\n{oops\\n"), store, salt="s", scorer=None)
>>> result.records, result.rejected, result.errors[0][0], result.rejected_lines
(1, 1, 2, [2])
>>> store.records()[0].platform, store.records()[0].time.isoformat()
('tpu', '2025-08-05T12:00:00+00:00')
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from parity._exceptions import InvalidInputError, ParityError
from parity._json_input import JSONInputError, loads_bounded, orjson_reads_as_json
from parity._time import parse_time
from parity.monitor._codec import feedback_from_dict
from parity.monitor._records import LONG_CONTEXT_THRESHOLD_TOKENS, Record
from parity.monitor.alerting.alerts import Notifier
from parity.monitor.intake.capture import CapturePolicy
from parity.monitor.intake.log_columns import LineColumns
from parity.monitor.intake.scoring import (
    Exchange,
    ParsedExchange,
    RecordBuilder,
    ResponseScorer,
    parse_exchange,
    parse_response_object,
)
from parity.monitor.runtime.spool import Spool
from parity.monitor.runtime.worker import MonitorHook, MonitorWorker
from parity.monitor.storage._store_protocol import Store

#: Input formats.
FORMATS: tuple[str, ...] = ("jsonl", "otlp")

#: Records written to the store per batch.
INGEST_BATCH = 5000

#: Records built before they are handed to the worker in one call (it writes them per :data:`INGEST_BATCH`).
HAND_OVER_BATCH = 1024

#: Fast-path rows (:mod:`parity.monitor.intake.log_columns`) written to the store in one batch: a batch's fixed cost
#: (the de-duplication query, the insert statement) is ~2 ms, 0.4 us a row at 5,000 rows and 0.1 us at this.
COLUMN_BATCH = 20_000

#: The fewest fast-path rows (:mod:`parity.monitor.intake.log_columns`) written to the store as columns in one call;
#: fewer (common lines between other shapes) join the per-line path's records and its batches.
MIN_COLUMN_BATCH = 512

#: How often (seconds) a long ingest snapshots the monitor's state into the store (and once at its end), so the
#: next run into the same store continues from it (:mod:`parity.monitor.detection.checkpoint`).
CHECKPOINT_INTERVAL_S = 60.0

#: Error messages kept in the result (all rejected lines still go to the reject file, and every rejected line's
#: number is in ``rejected_lines``).
MAX_REPORTED_ERRORS = 100

#: The longest line parsed (bytes); a longer one is rejected with its number (and kept in the reject file).
MAX_LINE_BYTES = 64 * 1024 * 1024


@dataclass
class IngestResult:
    """What one ingest run did. ``errors`` holds (line number, message) of the first rejected lines,
    ``rejected_lines`` the number of every rejected line; ``stopped_at`` the line after which the run stopped
    because more than ``max_rejects`` lines were rejected (``None``: it read everything)."""

    lines: int = 0
    records: int = 0
    feedback: int = 0
    alerts: int = 0
    rejected: int = 0
    skipped_spans: int = 0
    seconds: float = 0.0
    reject_path: str | None = None
    errors: list[tuple[int, str]] = field(default_factory=list)
    #: records the store refused that went to the spool (all of this run's, pending ones included), records still
    #: waiting in the spool after the run, records lost (neither store nor spool took them), the store's error
    spooled: int = 0
    spool_pending: int = 0
    dropped: int = 0
    store_error: str | None = None
    #: the run was interrupted (SIGINT/SIGTERM) after ``lines`` lines; what was read is stored
    interrupted: bool = False
    rejected_lines: list[int] = field(default_factory=list)
    stopped_at: int | None = None

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def _when(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), tz=UTC)
    if isinstance(value, str):
        try:
            return parse_time(value, name)
        except InvalidInputError as err:
            if err.requirement == "must be an ISO-8601 time":
                raise InvalidInputError(name, "must be an ISO-8601 time or epoch seconds", value) from None
            raise
    raise InvalidInputError(name, "must be an ISO-8601 time or epoch seconds", value)


def exchange_from_log(obj: Mapping[str, Any]) -> Exchange:
    """An :class:`Exchange` from one ``jsonl`` log object (see the module docstring)."""
    return _log_exchange(obj, with_body=True)[0]


def _log_exchange(obj: Mapping[str, Any], *, with_body: bool) -> tuple[Exchange, list[Any] | None]:
    """(exchange, the response's objects: the response object or its stream chunks; ``None`` for SSE text).
    ``with_body=False`` leaves the exchange's ``response_body`` empty where the objects stand for it, so a line
    is parsed once (``parse_exchange(exchange, objects)``), not dumped back to text and parsed again."""
    request = obj.get("request")
    if isinstance(request, str):  # the body as text (a web server's log: nginx's $request_body)
        if not request:
            raise InvalidInputError("request", "must not be empty (the server logged no request body)")
        try:
            request = loads_bounded(request, what="request")
        except JSONInputError as err:
            raise InvalidInputError("request", "must be a JSON object (the OpenAI request) or its JSON text",
                                    detail=str(err)) from None  # fmt: skip
    if not isinstance(request, dict):
        raise InvalidInputError("request", "must be a JSON object (the OpenAI request)", type(request).__name__)
    response = obj.get("response")
    if isinstance(response, str) and response.lstrip().startswith("{"):  # a JSON body as text, not SSE
        response = loads_bounded(response, what="response")
    streamed = False
    events: list[Any] | None = None
    body = ""
    if isinstance(response, dict):
        events = [response]
        if with_body:
            body = json.dumps(response)
    elif isinstance(response, list):
        events, streamed = response, True
        if with_body:
            body = "".join(f"data: {json.dumps(c)}\n\n" for c in response)
    elif isinstance(response, str):
        body, streamed = response, True
    elif response is None and int(obj.get("status_code", 200)) >= 400:
        pass
    else:
        raise InvalidInputError("response", "must be a response object, a list of stream chunks or SSE text")
    headers = obj.get("headers") or {}
    if not isinstance(headers, dict):
        raise InvalidInputError("headers", "must be a JSON object", type(headers).__name__)
    t = _when(obj.get("time"), "time")
    if t is None and isinstance(response, dict):
        t = _when(response.get("created"), "response.created")
    if t is None and isinstance(response, list) and response and isinstance(response[0], dict):
        t = _when(response[0].get("created"), "response[0].created")
    session = obj.get("session_id")
    status = obj.get("status_code", 200)
    exchange = Exchange(
        path="/v1/chat/completions" if "messages" in request else "/v1/completions",
        time=t or datetime.now(UTC),
        request=request,
        status_code=status if type(status) is int else int(status),
        response_headers={str(k).lower(): str(v) for k, v in headers.items()},
        response_body=body,
        request_headers={"x-session-id": str(session)} if session else {},
        latency_ms=float(obj["latency_ms"]) if obj.get("latency_ms") is not None else None,
        streamed=streamed,
    )
    return exchange, events


# -- OTLP --------------------------------------------------------------------------------------------------
def _otlp_value(v: Any) -> Any:
    if not isinstance(v, dict):
        return v
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in v:
            return v[key]
    if "intValue" in v:
        return int(v["intValue"])  # int64 is a JSON string in OTLP/JSON
    if "arrayValue" in v:
        return [_otlp_value(x) for x in (v["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in v:
        return _otlp_attrs((v["kvlistValue"] or {}).get("values", []))
    return None


def _otlp_attrs(items: Any) -> dict[str, Any]:
    if not isinstance(items, list):
        return {}
    return {str(a.get("key")): _otlp_value(a.get("value")) for a in items if isinstance(a, dict)}


def _messages_text(value: Any) -> tuple[list[dict[str, str]], str]:
    """(messages, text) from a ``gen_ai.*.messages`` attribute: a JSON string or list of {role, parts|content}."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [], value
    out: list[dict[str, str]] = []
    for m in value if isinstance(value, list) else []:
        if not isinstance(m, dict):
            continue
        if isinstance(m.get("parts"), list):
            text = "".join(str(p.get("content", "")) for p in m["parts"] if isinstance(p, dict))
        else:
            content = m.get("content")
            text = content if isinstance(content, str) else ""
        out.append({"role": str(m.get("role", "")), "content": text})
    return out, "\n".join(m["content"] for m in out)


_PROVENANCE_ATTRS = ("server", "pool", "platform", "region", "config_version", "model")


def span_to_parsed(span: Mapping[str, Any], resource: Mapping[str, Any]) -> tuple[Exchange, ParsedExchange] | None:
    """(Exchange, ParsedExchange) for one GenAI span; ``None`` for spans without ``gen_ai.*`` attributes."""
    attrs = {**resource, **_otlp_attrs(span.get("attributes"))}
    if not any(k.startswith("gen_ai.") for k in attrs):
        return None
    input_messages, prompt = _messages_text(attrs.get("gen_ai.input.messages"))
    _, text = _messages_text(attrs.get("gen_ai.output.messages"))
    for event in span.get("events") or []:
        if not isinstance(event, dict):
            continue
        ev = _otlp_attrs(event.get("attributes"))
        if event.get("name") == "gen_ai.content.prompt" and not prompt:
            input_messages, prompt = _messages_text(ev.get("gen_ai.prompt", ""))
        elif event.get("name") == "gen_ai.content.completion" and not text:
            _, text = _messages_text(ev.get("gen_ai.completion", ""))
    start = span.get("startTimeUnixNano")
    end = span.get("endTimeUnixNano")
    if start is None:
        raise InvalidInputError("span.startTimeUnixNano", "is required")
    t0 = int(start)
    latency = (int(end) - t0) / 1e6 if end is not None else None
    finish = attrs.get("gen_ai.response.finish_reasons")
    status = attrs.get("http.response.status_code")
    if status is None:
        status = 500 if (span.get("status") or {}).get("code") in (2, "STATUS_CODE_ERROR") else 200
    headers = {f"x-parity-{k.replace('_', '-')}": str(attrs[f"parity.{k}"]) for k in _PROVENANCE_ATTRS
               if attrs.get(f"parity.{k}") is not None}  # fmt: skip
    session = attrs.get("session.id") or attrs.get("gen_ai.conversation.id")
    exchange = Exchange(
        path="/v1/chat/completions",
        time=datetime.fromtimestamp(t0 // 1_000_000_000, tz=UTC).replace(microsecond=(t0 // 1000) % 1_000_000),
        request=None,
        status_code=int(status),
        response_headers=headers,
        latency_ms=latency,
    )

    def num(key: str) -> float | None:
        v = attrs.get(key)
        return None if v is None else float(v)

    def integer(key: str) -> int | None:
        v = attrs.get(key)
        return None if v is None else int(v)

    parsed = ParsedExchange(
        response_id=attrs.get("gen_ai.response.id"),
        model=attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model"),
        text=text,
        finish_reason=(finish[0] if isinstance(finish, list) and finish else finish) or None,
        prompt_tokens=integer("gen_ai.usage.input_tokens"),
        completion_tokens=integer("gen_ai.usage.output_tokens"),
        prompt=prompt,
        messages=tuple(input_messages),
        temperature=num("gen_ai.request.temperature"),
        top_p=num("gen_ai.request.top_p"),
        top_k=integer("gen_ai.request.top_k"),
        max_tokens=integer("gen_ai.request.max_tokens"),
        session=str(session) if session else None,
    )
    return exchange, parsed


def iter_otlp_spans(doc: Any) -> Iterator[tuple[Mapping[str, Any], dict[str, Any]]]:
    """(span, resource attributes) for every span of an OTLP JSON trace export."""
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceSpans"), list):
        raise InvalidInputError("otlp", "must be an object with resourceSpans[] (OTLP JSON)")
    for rs in doc["resourceSpans"]:
        resource = _otlp_attrs((rs.get("resource") or {}).get("attributes"))
        for ss in rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or []:
            for span in ss.get("spans") or []:
                yield span, resource


# -- following a growing log ---------------------------------------------------------------------------------
class _Idle:
    """The marker :func:`follow_lines` yields when it has caught up with the file (not a line: not counted)."""

    def __repr__(self) -> str:
        return "IDLE"


#: Yielded by :func:`follow_lines` each time it reaches the end of the file: :func:`ingest_lines` then writes
#: what it holds to the store, so a slow trickle of lines is stored as it comes rather than per 5,000.
IDLE = _Idle()

#: How long (seconds) :func:`follow_lines` waits at the end of the file before looking again.
FOLLOW_POLL_S = 0.2


@dataclass
class FollowControl:
    """Stops :func:`follow_lines` and reports how it ended. :meth:`stop` once: read up to the file's current end,
    then stop; twice: stop after the chunk in hand (what was read is still ingested). ``rotations`` and
    ``truncations`` count the file's rotations and in-place truncations seen; ``unfinished_bytes`` is the length of
    a last line still being written when it stopped (not ingested: it has no newline yet; a later run reads it)."""

    stops: int = 0
    rotations: int = 0
    truncations: int = 0
    unfinished_bytes: int = 0

    def stop(self) -> None:
        """Ask the follower to stop (safe from a signal handler)."""
        self.stops += 1


def follow_lines(
    path: str | Path, control: FollowControl, *, poll_s: float = FOLLOW_POLL_S, chunk_bytes: int = 1 << 20
) -> Generator[bytes | _Idle, None, None]:
    """The lines of ``path`` from its start, then those appended to it, like ``tail -F``: until
    ``control.stop()``. Survives rotation (the file renamed or deleted and created again: the old one is read to
    its end, then the new one from its start) and in-place truncation (``copytruncate``: read again from the
    start); waits for the file while it does not exist. Lines are bytes with their ``\\n``; :data:`IDLE` is
    yielded each time the end is reached.

    >>> import tempfile
    >>> log = Path(tempfile.mkdtemp()) / "x.log"
    >>> _ = log.write_bytes(b'{"a": 1}\\n{"b"')
    >>> control = FollowControl()
    >>> lines = follow_lines(log, control, poll_s=0.01)
    >>> next(lines), next(lines)
    (b'{"a": 1}\\n', IDLE)
    >>> with log.open("ab") as f:
    ...     _ = f.write(b': 2}\\n')
    >>> next(lines), next(lines)
    (b'{"b": 2}\\n', IDLE)
    >>> control.stop()
    >>> list(lines), control.unfinished_bytes
    ([], 0)
    """
    path = Path(path)
    handle: IO[bytes] | None = None
    pending = b""  # the start of a line whose newline has not been read yet
    try:
        while True:
            if handle is None:
                try:
                    handle = path.open("rb")
                except FileNotFoundError:
                    if control.stops:
                        return
                    time.sleep(poll_s)
                    continue
            data = handle.read(chunk_bytes)
            if data:
                lines = (pending + data).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    yield line + b"\n"
                if control.stops > 1:
                    return
                continue
            # at the end: rotated (a new file at the path), truncated in place, or simply caught up
            current = os.fstat(handle.fileno())
            try:
                named = os.stat(path)
            except FileNotFoundError:
                named = None
            if named is not None and (named.st_ino, named.st_dev) != (current.st_ino, current.st_dev):
                data = handle.read()  # what the writer appended before it moved to the new file
                lines = (pending + data).split(b"\n")
                pending = b""
                last = lines.pop()
                for line in lines:
                    yield line + b"\n"
                if last:  # the old file's last line, without a newline: it will never get one
                    yield last
                handle.close()
                handle = None
                control.rotations += 1
                continue
            if named is not None and named.st_size < handle.tell():
                if pending:  # a line cut by the truncation: ingested (and rejected) rather than dropped unseen
                    yield pending
                    pending = b""
                handle.seek(0)
                control.truncations += 1
                continue
            if control.stops:
                return
            yield IDLE
            time.sleep(poll_s)
    finally:
        control.unfinished_bytes = len(pending)
        if handle is not None:
            handle.close()


# -- the run -----------------------------------------------------------------------------------------------
def ingest_lines(
    lines: Iterable[str | bytes | _Idle],
    store: Store,
    *,
    fmt: str = "jsonl",
    salt: str,
    scorer: ResponseScorer | None,
    labels: Mapping[str, str] | None = None,
    capture: CapturePolicy | str = "none",
    hook: MonitorHook | None = None,
    notifiers: Sequence[Notifier] = (),
    spool: Spool | None = None,
    reject: IO[str] | None = None,
    reject_path: str | None = None,
    on_line: Callable[[int, int], None] | None = None,
    max_rejects: int | None = None,
    long_context_tokens: int = LONG_CONTEXT_THRESHOLD_TOKENS,
) -> IngestResult:
    """Ingest ``lines`` (``fmt`` in :data:`FORMATS`; ``str`` or, to keep rejected lines byte for byte, ``bytes``)
    into ``store``; returns an :class:`IngestResult`. An :data:`IDLE` item (from :func:`follow_lines`) is not a
    line: it writes the records in hand to the store.

    Each rejected line is written to ``reject`` when given, as one JSON object (see the module docstring).
    ``on_line(line_number, n_bytes)`` reports progress. Records go through the monitor's one worker
    (:class:`~parity.monitor.runtime.worker.MonitorWorker`, driven on this thread): ``hook`` is the monitor pipeline,
    its alerts are stored and sent to ``notifiers``; what the store refuses goes to ``spool`` (drained on the next run)
    or is counted in ``dropped``. ``max_rejects``: stop reading once more lines than this are rejected (what was
    ingested before stays stored). ``long_context_tokens``: the fleet router's short/long split, at which each built
    record's ``context_class`` is decided (:class:`~parity.monitor.intake.scoring.RecordBuilder`); a stored record that
    carries one keeps it.
    """
    if max_rejects is not None and max_rejects < 0:
        raise InvalidInputError("max_rejects", "must be >= 0", max_rejects)
    if fmt not in FORMATS:
        raise InvalidInputError("format", f"must be one of {list(FORMATS)}", fmt)
    builder = RecordBuilder(salt=salt, labels=labels, scorer=scorer, capture=capture, source=f"ingest-{fmt}",
                            long_context_tokens=long_context_tokens)  # fmt: skip
    result = IngestResult(reject_path=reject_path)
    # dedupe: a re-run after a crash (or of an overlapping file) stores each record once
    worker = MonitorWorker(store, builder, hook=hook, notifiers=notifiers, spool=spool, batch_size=INGEST_BATCH,
                           dedupe=True, checkpoint_interval_s=CHECKPOINT_INTERVAL_S)  # fmt: skip
    worker.recover()  # what a previous run spooled
    # the common line's records straight into columns, when nothing needs a record object per line
    fast = LineColumns(builder, _when) if fmt == "jsonl" and scorer is None and hook is None else None
    t0 = time.perf_counter()
    n = 0
    built: list[Record] = []  # records built and not yet handed to the worker, in input order (after `fast`'s)
    try:
        for line in lines:
            if isinstance(line, _Idle):  # a followed file caught up: store what is pending now
                _columns_out(worker, fast, built)
                _hand_over(worker, built)
                worker.flush()
                continue
            n += 1
            if on_line is not None:
                on_line(n, len(line))
            if not line or line.isspace():  # as `not line.strip()`, without copying the line
                continue
            try:
                if fast is not None and type(line) is bytes:
                    held = fast.add(line)
                    if held:
                        result.records += 1
                        if held >= COLUMN_BATCH:
                            _columns_out(worker, fast, built)
                        continue
                obj = _parse_line(line)
                if fmt == "jsonl" and type(obj) is dict and "feedback" not in obj:
                    record = builder.adopt(obj) if "record_id" in obj else _log_record(obj, builder)
                    _columns_out(worker, fast, built)  # the lines before this one first
                    built.append(record)
                    result.records += 1
                    if len(built) >= HAND_OVER_BATCH:
                        _hand_over(worker, built)
                    continue
                _columns_out(worker, fast, built)
                _hand_over(worker, built)  # feedback and spans meet the records before them in the store
                if fmt == "jsonl":
                    _ingest_jsonl(obj, builder, worker, result)
                else:
                    _ingest_otlp(obj, builder, worker, result)
            except _LINE_ERRORS as err:
                _reject_line(result, reject, n, line, _describe(err))
                if max_rejects is not None and result.rejected > max_rejects:
                    result.stopped_at = n
                    break
    except KeyboardInterrupt:  # SIGINT (and SIGTERM in the CLI): keep what was read, say where it stopped
        result.interrupted = True
    while True:  # store what was read; a stop signal landing here (or a second one) only restarts these steps
        try:
            _columns_out(worker, fast, built)
            _hand_over(worker, built)
            drain = getattr(hook, "drain", None)
            # a batching monitor (parity.monitor.detection.distributed.ShardedMonitor): its last alerts
            if callable(drain):
                worker.publish(drain())
            worker.flush()
            worker.drain()
            worker.checkpoint()
            break
        except KeyboardInterrupt:
            result.interrupted = True
    result.alerts = worker.alerts_published
    result.spooled = worker.store_spooled
    result.spool_pending = spool.pending if spool is not None else 0
    result.dropped = worker.dropped
    result.store_error = worker.store_error
    result.lines = n
    result.seconds = time.perf_counter() - t0
    return result


#: What a bad line can raise while it is parsed and turned into records (a store failure is not among them: it
#: stops the run with its own error rather than passing for a bad line).
_LINE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError, RecursionError,
                ParityError)  # fmt: skip


def _hand_over(worker: MonitorWorker, built: list[Record]) -> None:
    """Give the worker the records built so far (emptying ``built``)."""
    if built:
        batch = built[:]
        built.clear()
        worker.accept_batch(batch)


def _columns_out(worker: MonitorWorker, fast: LineColumns | None, built: list[Record]) -> None:
    """Give the worker the fast path's rows (emptying ``fast``) after the records built before them: a batch of at
    least :data:`MIN_COLUMN_BATCH` rows as columns, a smaller one (lines of the common shape between others) as
    records joining ``built``, so a file that mixes shapes is not written in tiny batches."""
    if fast is None or not len(fast):
        return
    columns = fast.take()
    if len(columns) < MIN_COLUMN_BATCH:
        built.extend(columns.records())
        if len(built) >= HAND_OVER_BATCH:
            _hand_over(worker, built)
        return
    _hand_over(worker, built)
    worker.accept_columns(columns)


def _log_record(obj: dict[str, Any], builder: RecordBuilder) -> Record:
    """The record of one ``jsonl`` exchange line: :func:`_log_exchange`, :func:`parse_exchange` and
    :meth:`RecordBuilder.build_parsed`, with the common line (request and response as JSON objects) taken without
    the intermediate :class:`Exchange`. The same steps in the same order, so the same record or the same error."""
    request = obj.get("request")
    response = obj.get("response")
    headers = obj.get("headers") or {}
    status = obj.get("status_code", 200)
    if type(request) is not dict or type(response) is not dict or type(headers) is not dict or type(status) is not int:
        exchange, events = _log_exchange(obj, with_body=False)
        return builder.build_parsed(exchange, parse_exchange(exchange, events))
    t = _when(obj.get("time"), "time")
    if t is None:
        t = _when(response.get("created"), "response.created")
    session = obj.get("session_id")
    latency = obj.get("latency_ms")
    return builder.build_fields(
        "/v1/chat/completions" if "messages" in request else "/v1/completions",
        t or datetime.now(UTC),
        request,
        status,
        {str(k).lower(): str(v) for k, v in headers.items()},
        float(latency) if latency is not None else None,
        parse_response_object(request, response, str(session) if session else None),
    )


def _parse_line(line: str | bytes) -> Any:
    """One line's JSON value, within the bounds of the module docstring (raises :class:`JSONInputError`)."""
    # loads_bounded's fast path without its copy of the line (a bytes line is read as it is)
    if type(line) is bytes and len(line) <= MAX_LINE_BYTES and orjson_reads_as_json(line):
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            pass  # loads_bounded names what is wrong
    if len(line) > MAX_LINE_BYTES:
        raise JSONInputError("line", f"must be at most {MAX_LINE_BYTES} bytes long", code="too_long",
                             detail=f"{len(line)} bytes")  # fmt: skip
    return loads_bounded(line, what="line")


def _reject_line(result: IngestResult, reject: IO[str] | None, n: int, line: str | bytes, message: str) -> None:
    result.rejected += 1
    result.rejected_lines.append(n)
    if len(result.errors) < MAX_REPORTED_ERRORS:
        result.errors.append((n, message))
    if reject is None:
        return
    raw = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else line
    raw = raw[:-1] if raw.endswith(b"\n") else raw
    entry: dict[str, Any] = {"line": n, "error": message}
    try:
        entry["raw"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        entry["raw_b64"] = base64.b64encode(raw).decode("ascii")
    reject.write(json.dumps(entry) + "\n")


def _describe(err: Exception) -> str:
    if isinstance(err, JSONInputError) and err.code == "invalid_json":
        return f"not JSON: {err.detail}"
    if isinstance(err, json.JSONDecodeError):
        return f"not JSON: {err.msg} at column {err.colno}"
    if isinstance(err, KeyError):
        return f"missing field {err}"
    if isinstance(err, ParityError | ValueError):
        return str(err)
    return f"unreadable ({type(err).__name__}: {err})"


def _ingest_jsonl(obj: Any, builder: RecordBuilder, worker: MonitorWorker, result: IngestResult) -> None:
    if not isinstance(obj, dict):
        raise InvalidInputError("line", "must be a JSON object", type(obj).__name__)
    if "record_id" in obj:
        worker.accept(builder.adopt(obj))
        result.records += 1
    elif "feedback" in obj:
        data = dict(obj["feedback"]) if isinstance(obj["feedback"], dict) else {}
        data.setdefault("time", datetime.now(UTC).isoformat())
        worker.feedback(feedback_from_dict(data))
        result.feedback += 1
    else:
        exchange, events = _log_exchange(obj, with_body=False)
        worker.accept(builder.build_parsed(exchange, parse_exchange(exchange, events)))
        result.records += 1


def _ingest_otlp(doc: Any, builder: RecordBuilder, worker: MonitorWorker, result: IngestResult) -> None:
    built: list[Record] = []
    for span, resource in iter_otlp_spans(doc):
        pair = span_to_parsed(span, resource)
        if pair is None:
            result.skipped_spans += 1
            continue
        built.append(builder.build_parsed(*pair))
    for record in built:  # all spans of a line parse before any is stored: a bad line is rejected whole
        worker.accept(record)
        result.records += 1


def ingest_file(
    source: str | Path,
    store: Store,
    *,
    fmt: str = "jsonl",
    salt: str,
    scorer: ResponseScorer | None,
    reject_path: str | Path | None = None,
    follow: FollowControl | None = None,
    **kwargs: Any,
) -> IngestResult:
    """Ingest a file (``"-"`` for stdin) into ``store``; rejected lines go to ``reject_path`` (default
    ``SOURCE.rejects``; created only when a line is rejected; its format is in the module docstring). Lines are
    read as bytes, so a rejected line is kept exactly as it was. A single pretty-printed OTLP document is read
    whole. ``follow``: read the file as it grows (:func:`follow_lines`: across rotations, until
    ``follow.stop()``; line numbers count on across rotations); the file need not exist yet."""
    import sys

    reject_file = Path(reject_path) if reject_path else Path(f"{'stdin' if str(source) == '-' else source}.rejects")

    class _LazyReject:
        def __init__(self) -> None:
            self.handle: IO[str] | None = None

        def write(self, text: str) -> int:
            if self.handle is None:
                self.handle = reject_file.open("w", encoding="utf-8")
            return self.handle.write(text)

    lazy = _LazyReject()
    with contextlib.ExitStack() as stack:
        lines: Iterable[str | bytes | _Idle]
        if follow is not None:
            if str(source) == "-":
                raise InvalidInputError("FILE", "must be a file to follow, not - (stdin is read as it comes anyway)")
            followed = follow_lines(source, follow)
            stack.callback(followed.close)  # closes the file it follows
            lines = followed
        elif str(source) == "-":
            lines = sys.stdin.buffer
        else:
            path = Path(source)
            if not path.is_file():
                raise InvalidInputError("FILE", "must be an existing file or -", str(source))
            if fmt == "otlp" and _is_single_document(path):
                lines = [json.dumps(loads_bounded(path.read_bytes(), what=str(path))) + "\n"]
            else:
                lines = stack.enter_context(path.open("rb"))
        stack.callback(lambda: lazy.handle.close() if lazy.handle is not None else None)
        result = ingest_lines(lines, store, fmt=fmt, salt=salt, scorer=scorer, reject=lazy,  # type: ignore[arg-type]
                              reject_path=str(reject_file), **kwargs)  # fmt: skip
    if result.rejected == 0:
        result.reject_path = None
    return result


def _is_single_document(path: Path) -> bool:
    """True for a pretty-printed JSON document spanning several lines (not JSONL)."""
    with path.open(encoding="utf-8", errors="replace") as f:
        first = f.readline().strip()
    if first in ("{", "{\n") or (first.startswith("{") and not first.endswith("}")):
        try:
            loads_bounded(path.read_bytes(), what=str(path))
        except ValueError:
            return False
        return True
    return False
