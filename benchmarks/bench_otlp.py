"""Spans/s through the OTLP/HTTP receiver (``POST /v1/traces``): decoding, GenAI span parsing, record building.

Arms, on one ``ExportTraceServiceRequest`` of 512 GenAI spans (the OpenTelemetry SDK's default batch size):
* in process, protobuf: ``OTLPReceiver.decode`` (``ParseFromString`` + ``MessageToDict``) then ``export``
  (the ``parity ingest --format otlp`` span parser and ``RecordBuilder``), no detectors;
* the same with the default detectors;
* over HTTP on 127.0.0.1: the gzip-compressed batch POSTed to the receiver's ASGI app under uvicorn, no
  detectors (records go to a list: the store's own rate is in the ingest section);
* OTLP/JSON in process, for comparison with protobuf.
"""

from __future__ import annotations

import gzip
import json
import os
import statistics
import time

import httpx
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from benchmarks._results import write_section
from parity._background_server import BackgroundServer
from parity.monitor.intake.otlp_receiver import ListSink, OTLPReceiver
from parity.monitor.intake.scoring import RecordBuilder, default_scorer

BATCH = 512
REPEATS = 5
T0_NS = 1_756_634_400_000_000_000


def _kv(key: str, value: object) -> KeyValue:
    kv = KeyValue(key=key)
    if isinstance(value, str):
        kv.value.string_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    return kv


def make_request(n: int) -> ExportTraceServiceRequest:
    out = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "Sure - a short answer " * 6}]}])
    spans = []
    for i in range(n):
        attrs = [
            _kv("gen_ai.operation.name", "chat"), _kv("gen_ai.request.model", "S"),
            _kv("gen_ai.response.id", f"chatcmpl-{i}"), _kv("gen_ai.usage.input_tokens", 40),
            _kv("gen_ai.usage.output_tokens", 24), _kv("gen_ai.request.temperature", 0.7),
            _kv("gen_ai.input.messages", json.dumps([{"role": "user", "content": f"question {i}"}])),
            _kv("gen_ai.output.messages", out), _kv("session.id", f"s{i % 97}"),
        ]  # fmt: skip
        spans.append(Span(name="chat S", start_time_unix_nano=T0_NS + i, end_time_unix_nano=T0_NS + i + 10**8,
                          attributes=attrs))  # fmt: skip
    resource = ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])
    resource.resource.attributes.append(_kv("parity.platform", "gpu"))
    return ExportTraceServiceRequest(resource_spans=[resource])


def in_process(body: bytes, content_type: str, scorer: object, n: int) -> tuple[float, float]:
    """(spans per wall second, per CPU second), median over the repeats."""
    rates, cpu = [], []
    for _ in range(REPEATS):
        # type: ignore[arg-type]
        receiver = OTLPReceiver(RecordBuilder(salt="bench", scorer=scorer, source="otlp"), ListSink())
        t, c = time.perf_counter(), time.process_time()
        outcome = receiver.export(receiver.decode(body, content_type))
        rates.append(n / (time.perf_counter() - t))
        cpu.append(n / max(time.process_time() - c, 1e-9))
        assert outcome.recorded == n, outcome
    return statistics.median(rates), statistics.median(cpu)


def over_http(body: bytes, n: int, posts: int = 8) -> float:
    sink = ListSink()
    receiver = OTLPReceiver(RecordBuilder(salt="bench", source="otlp"), sink)
    headers = {"content-type": "application/x-protobuf", "content-encoding": "gzip"}
    compressed = gzip.compress(body)
    rates = []
    with BackgroundServer(receiver.app, lifespan="off", name="otlp") as server, httpx.Client() as client:
        client.post(f"{server.url}/v1/traces", content=compressed, headers=headers).raise_for_status()  # warm-up
        for _ in range(REPEATS):
            t = time.perf_counter()
            for _ in range(posts):
                client.post(f"{server.url}/v1/traces", content=compressed, headers=headers).raise_for_status()
            rates.append(posts * n / (time.perf_counter() - t))
    assert len(sink.records) == (1 + REPEATS * posts) * n
    return statistics.median(rates)


def main() -> None:
    request = make_request(BATCH)
    proto = request.SerializeToString()
    as_json = json.dumps(MessageToDict(request)).encode()
    rows = []
    rate, cpu = in_process(proto, "application/x-protobuf", None, BATCH)
    rows.append(f"| protobuf, in process, no detectors | {rate:,.0f} | {cpu:,.0f} |")
    print(rows[-1], flush=True)
    rate, cpu = in_process(as_json, "application/json", None, BATCH)
    rows.append(f"| OTLP/JSON, in process, no detectors | {rate:,.0f} | {cpu:,.0f} |")
    print(rows[-1], flush=True)
    scorer = default_scorer()
    if scorer is not None:
        rate, cpu = in_process(proto, "application/x-protobuf", scorer, BATCH)
        rows.append(f"| protobuf, in process, default detectors | {rate:,.0f} | {cpu:,.0f} |")
        print(rows[-1], flush=True)
    rate = over_http(proto, BATCH)
    rows.append(f"| protobuf + gzip over HTTP (uvicorn, 127.0.0.1), no detectors | {rate:,.0f} | - |")
    print(rows[-1], flush=True)
    load = os.getloadavg()
    body = (
        f"Load average during the run {load[0]:.1f} / {load[1]:.1f} (1 / 5 min) on 2 cores shared with other jobs; "
        "wall-clock rates are depressed accordingly, per-CPU-second rates are not.\n\n"
        f"One export request of {BATCH} GenAI spans (about 0.3 kB of attributes each), median of {REPEATS} runs.\n\n"
        "| path | spans/s | spans per CPU-second |\n|---|---:|---:|\n" + "\n".join(rows) + "\n\n"
        "No goal was set for this path. Protobuf is decoded through `MessageToDict` on purpose, so that both "
        "encodings share `parity ingest --format otlp`'s span parser; that conversion is the largest cost (OTLP/JSON "
        "needs half the CPU per span). The default detectors add little on these short responses."
    )
    write_section("otlp", "OTLP/HTTP receiver throughput", body)


if __name__ == "__main__":
    main()
