"""An OTLP/HTTP trace receiver: ``POST /v1/traces`` turns OpenTelemetry GenAI spans into records.

This is what a serving engine's own exporter (vLLM's ``--otlp-traces-endpoint``) or an OpenTelemetry collector's
``otlphttp`` exporter sends to: an ``ExportTraceServiceRequest`` as binary protobuf
(``Content-Type: application/x-protobuf``) or as OTLP/JSON (``application/json``), optionally
``Content-Encoding: gzip``. Protobuf is converted to the OTLP/JSON dict form with
``google.protobuf.json_format.MessageToDict``, so both go through exactly the code path of ``parity ingest
--format otlp`` (:func:`parity.monitor.intake.ingest.iter_otlp_spans` and
:func:`~parity.monitor.intake.ingest.span_to_parsed`): a span with ``gen_ai.*`` attributes becomes the same record, a
span without them is accepted and ignored.

Responses follow the OTLP/HTTP specification: ``200`` with an ``ExportTraceServiceResponse`` in the request's
encoding; when some GenAI spans cannot be read, its ``partial_success`` says how many were rejected and why (the
others are recorded); ``400`` with a ``google.rpc.Status`` for a body that does not decode, ``413`` past
:data:`MAX_BODY_BYTES`, ``415`` for another content type. Records go to a :class:`RecordSink` (the proxy's
worker: ``MonitorWorker.submit_record``), built off the event loop; the worker stores them, runs the monitor on
them and raises alerts as for proxied traffic. Counts: ``parity_otlp_spans_total{outcome=recorded|ignored|
rejected}`` in the registry given.

>>> receiver = OTLPReceiver(RecordBuilder(salt="s", source="otlp"), ListSink())
>>> doc = {"resourceSpans": [{"scopeSpans": [{"spans": [
...     {"name": "chat", "startTimeUnixNano": "1754395200000000000", "attributes": [
...         {"key": "gen_ai.request.model", "value": {"stringValue": "S"}}]},
...     {"name": "db", "startTimeUnixNano": "1754395200000000000"},
...     {"name": "chat", "attributes": [{"key": "gen_ai.request.model", "value": {"stringValue": "S"}}]}]}]}]}
>>> outcome = receiver.export(doc)
>>> outcome.recorded, outcome.ignored, outcome.rejected
(1, 1, 1)
>>> outcome.error_message
'span 3 (chat): `span.startTimeUnixNano` is required'
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from parity._exceptions import InvalidInputError, ParityError
from parity._optional import import_optional
from parity.monitor._records import Record
from parity.monitor.intake.ingest import iter_otlp_spans, span_to_parsed
from parity.monitor.intake.scoring import Exchange, ParsedExchange, RecordBuilder

__all__ = ["MAX_BODY_BYTES", "ExportOutcome", "ListSink", "OTLPReceiver", "RecordSink"]

log = logging.getLogger("parity.monitor.otlp")

#: Largest request body accepted, after decompression (bytes); the OTLP exporters' default batch is far smaller.
MAX_BODY_BYTES = 64 * 1024 * 1024
#: Rejection reasons named in a partial-success message (the count is always complete).
MAX_REASONS = 5
_PROTOBUF = "application/x-protobuf"
_JSON = "application/json"


class RecordSink(Protocol):
    """Where records go: one method (``MonitorWorker.submit_record``); it may block while its queue is full."""

    def submit_record(self, record: Record) -> None: ...


class ListSink:
    """Keeps every record it is given (the test double)."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def submit_record(self, record: Record) -> None:
        self.records.append(record)


@dataclass
class ExportOutcome:
    """What one export request came to: spans recorded, ignored (no ``gen_ai.*``) and rejected (with reasons)."""

    recorded: int = 0
    ignored: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def error_message(self) -> str:
        """The partial-success message: the first reasons, and how many more there were."""
        if not self.rejected:
            return ""
        more = self.rejected - len(self.reasons)
        return "; ".join(self.reasons) + (f"; and {more} more" if more > 0 else "")


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class OTLPReceiver:
    """``POST /v1/traces`` as an ASGI app (:attr:`app`), or mounted in another app as the :meth:`endpoint` route.

    ``builder`` makes the records (give it ``source="otlp"``); ``sink`` receives them; ``registry`` is a
    prometheus_client registry to count spans in (the proxy's), or ``None``; :attr:`spans` is that counter.
    """

    def __init__(self, builder: RecordBuilder, sink: RecordSink, *, registry: Any = None) -> None:
        self.builder = builder
        self.sink = sink
        self._build_lock = threading.Lock()
        self.spans = None
        if registry is not None:
            prom = import_optional("prometheus_client", extra="monitor")
            self.spans = prom.Counter(
                "parity_otlp_spans",
                "OTLP spans received: recorded (gen_ai.* spans), ignored (other spans) or rejected (unreadable).",
                ["outcome"],
                registry=registry,
            )
        self.app = self._build_app()

    # -- decoding ----------------------------------------------------------------------------------------
    @staticmethod
    def decode(body: bytes, content_type: str, content_encoding: str = "") -> dict[str, Any]:
        """The OTLP/JSON dict of a request body (protobuf or JSON, gzip or not); :class:`InvalidInputError` else."""
        encoding = content_encoding.strip().lower()
        if encoding == "gzip":
            inflater = zlib.decompressobj(wbits=31)
            try:
                body = inflater.decompress(body, MAX_BODY_BYTES + 1)
            except zlib.error as err:
                raise InvalidInputError("body", "must be valid gzip (Content-Encoding: gzip)", detail=str(err)) from err
            if len(body) > MAX_BODY_BYTES or inflater.unconsumed_tail:
                raise _BadRequest(413, f"the decompressed body exceeds {MAX_BODY_BYTES} bytes")
        elif encoding not in ("", "identity"):
            raise _BadRequest(415, f"Content-Encoding {encoding!r} is not supported (gzip or none)")
        media = content_type.split(";")[0].strip().lower()
        if media == _PROTOBUF:
            trace_service = import_optional("opentelemetry.proto.collector.trace.v1.trace_service_pb2", extra="monitor")
            json_format = import_optional("google.protobuf.json_format", extra="monitor")
            message = trace_service.ExportTraceServiceRequest()
            try:
                message.ParseFromString(body)
            except Exception as err:  # protobuf's DecodeError
                raise InvalidInputError("body", "must be an ExportTraceServiceRequest", detail=str(err)) from err
            doc: Any = json_format.MessageToDict(message)
            doc.setdefault("resourceSpans", [])
            return dict(doc)
        if media == _JSON:
            try:
                doc = json.loads(body)
            except ValueError as err:
                raise InvalidInputError("body", "must be OTLP/JSON", detail=str(err)) from err
            if isinstance(doc, dict) and "resourceSpans" not in doc:
                doc["resourceSpans"] = []
            return doc if isinstance(doc, dict) else {"resourceSpans": None}
        raise _BadRequest(415, f"Content-Type {media or '(none)'!r} is not supported ({_PROTOBUF} or {_JSON})")

    # -- spans -> records --------------------------------------------------------------------------------
    def parse(self, doc: dict[str, Any]) -> tuple[list[tuple[Exchange, ParsedExchange]], ExportOutcome]:
        """The (exchange, parsed) pair of every GenAI span, and the counts; a bad span is rejected alone."""
        outcome = ExportOutcome()
        pairs: list[tuple[Exchange, ParsedExchange]] = []
        for i, (span, resource) in enumerate(iter_otlp_spans(doc), start=1):
            try:
                pair = span_to_parsed(span, resource)
            except (ValueError, TypeError, KeyError, AttributeError, ParityError) as err:
                outcome.rejected += 1
                if len(outcome.reasons) < MAX_REASONS:
                    name = span.get("name") if isinstance(span, dict) else None
                    outcome.reasons.append(f"span {i} ({name or 'unnamed'}): {err}")
                continue
            if pair is None:
                outcome.ignored += 1
            else:
                pairs.append(pair)
        return pairs, outcome

    def _record(self, pairs: Sequence[tuple[Exchange, ParsedExchange]], outcome: ExportOutcome) -> None:
        # one export is scored at a time: concurrent exporters queue here instead of each taking a thread that
        # competes for the GIL with the event loop serving proxied traffic
        with self._build_lock:
            self._record_unlocked(pairs, outcome)

    def _record_unlocked(self, pairs: Sequence[tuple[Exchange, ParsedExchange]], outcome: ExportOutcome) -> None:
        for exchange, parsed in pairs:
            try:
                record = self.builder.build_parsed(exchange, parsed)
            except (ValueError, TypeError, KeyError, ParityError) as err:
                outcome.rejected += 1
                if len(outcome.reasons) < MAX_REASONS:
                    outcome.reasons.append(f"span {parsed.response_id or '(no response id)'}: {err}")
                continue
            self.sink.submit_record(record)
            outcome.recorded += 1

    def export(self, doc: dict[str, Any]) -> ExportOutcome:
        """Record every GenAI span of an OTLP/JSON document (synchronously); the outcome says what came of each."""
        pairs, outcome = self.parse(doc)
        self._record(pairs, outcome)
        self._count(outcome)
        return outcome

    def _count(self, outcome: ExportOutcome) -> None:
        if outcome.rejected:
            log.warning("OTLP export: %d span(s) rejected: %s", outcome.rejected, outcome.error_message)
        if self.spans is not None:
            for name in ("recorded", "ignored", "rejected"):
                n = getattr(outcome, name)
                if n:
                    self.spans.labels(outcome=name).inc(n)

    # -- HTTP --------------------------------------------------------------------------------------------
    async def endpoint(self, request: Any) -> Any:
        """The starlette route handler of ``POST /v1/traces``."""
        responses = import_optional("starlette.responses", extra="monitor")
        content_type = request.headers.get("content-type", "")
        as_json = content_type.split(";")[0].strip().lower() == _JSON
        try:
            length = int(request.headers.get("content-length") or 0)
            if length > MAX_BODY_BYTES:
                raise _BadRequest(413, f"the body exceeds {MAX_BODY_BYTES} bytes")
            body = await request.body()
            if len(body) > MAX_BODY_BYTES:
                raise _BadRequest(413, f"the body exceeds {MAX_BODY_BYTES} bytes")
            doc = self.decode(body, content_type, request.headers.get("content-encoding", ""))
            pairs, outcome = self.parse(doc)
        except _BadRequest as err:
            return self._status(responses, err.status, str(err), as_json)
        except (ParityError, ValueError, TypeError, KeyError, AttributeError) as err:
            return self._status(responses, 400, f"not an OTLP trace export: {err}", as_json)
        await asyncio.to_thread(self._record, pairs, outcome)  # detectors run here; the sink may wait for room
        self._count(outcome)
        return self._response(responses, outcome, as_json)

    @staticmethod
    def _response(responses: Any, outcome: ExportOutcome, as_json: bool) -> Any:
        if as_json:
            payload: dict[str, Any] = {}
            if outcome.rejected:
                payload["partialSuccess"] = {
                    "rejectedSpans": str(outcome.rejected),
                    "errorMessage": outcome.error_message,
                }
            return responses.Response(json.dumps(payload), media_type=_JSON)
        trace_service = import_optional("opentelemetry.proto.collector.trace.v1.trace_service_pb2", extra="monitor")
        message = trace_service.ExportTraceServiceResponse()
        if outcome.rejected:
            message.partial_success.rejected_spans = outcome.rejected
            message.partial_success.error_message = outcome.error_message
        return responses.Response(message.SerializeToString(), media_type=_PROTOBUF)

    @staticmethod
    def _status(responses: Any, code: int, message: str, as_json: bool) -> Any:
        """A ``google.rpc.Status`` error body in the request's encoding."""
        if as_json:
            return responses.Response(json.dumps({"code": 3, "message": message}), status_code=code, media_type=_JSON)
        try:
            status_pb2 = import_optional("google.rpc.status_pb2", extra="monitor")
        except ParityError:
            return responses.PlainTextResponse(message, status_code=code)
        status = status_pb2.Status(code=3, message=message)  # 3: INVALID_ARGUMENT
        return responses.Response(status.SerializeToString(), status_code=code, media_type=_PROTOBUF)

    def _build_app(self) -> Any:
        starlette = import_optional("starlette.applications", extra="monitor")
        routing = import_optional("starlette.routing", extra="monitor")
        return starlette.Starlette(routes=[routing.Route("/v1/traces", self.endpoint, methods=["POST"])])
