"""OTLP/HTTP at ``POST /v1/traces``: the real OpenTelemetry SDK exporting GenAI spans to ``parity proxy`` makes the
same records as ``parity ingest --format otlp`` and raises alerts; JSON + gzip to ``parity receive``; errors and
partial success per the OTLP specification."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("opentelemetry.sdk", reason="the dev extra (opentelemetry-sdk) is not installed")

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from parity._background_server import BackgroundServer
from parity._loopback import free_port
from parity.monitor.alerting.alerts import MemoryNotifier
from parity.monitor.detection.pipeline import MonitorConfig, SegmentMonitor
from parity.monitor.intake.ingest import ingest_lines
from parity.monitor.intake.proxy import ParityProxy, ProxyConfig
from parity.monitor.intake.scoring import RecordBuilder, default_scorer, session_hash
from parity.monitor.storage.store import DuckDBStore, MemoryStore

T0_NS = 1_756_634_400_000_000_000  # 2025-08-31T10:00:00Z


def _genai_span(tracer: Any, i: int, *, pool: str, text: str = "The answer is 4.") -> None:
    start = T0_NS + i * 1_000_000_000
    span = tracer.start_span("chat S", start_time=start)
    span.set_attributes(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "S",
            "gen_ai.response.id": f"chatcmpl-{i}",
            "gen_ai.response.model": "S",
            "gen_ai.response.finish_reasons": ["stop"],
            "gen_ai.usage.input_tokens": 50,
            "gen_ai.usage.output_tokens": 6,
            "gen_ai.request.temperature": 0.7,
            "gen_ai.request.top_p": 0.9,
            "gen_ai.request.max_tokens": 64,
            "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "2+2?"}]}]),
            "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": text}]}]),
            "parity.pool": pool,
            "session.id": f"sess-{i % 7}",
        }
    )
    span.end(end_time=start + 250_000_000)


@pytest.fixture
def proxy() -> Iterator[tuple[ParityProxy, MemoryNotifier, str]]:
    """parity proxy (its upstream is never contacted) with a segment monitor, on 127.0.0.1."""
    store = MemoryStore()
    builder = RecordBuilder(salt="s", scorer=default_scorer(), long_context_tokens=192)
    memory = MemoryNotifier()
    hook = SegmentMonitor(config=MonitorConfig(), notifiers=[memory])
    config = ProxyConfig(upstream=f"http://127.0.0.1:{free_port()}", flush_interval_s=0.05)
    app = ParityProxy(config, store, builder, hook=hook)
    with BackgroundServer(app.app, name="proxy") as server:
        yield app, memory, server.url


def test_sdk_protobuf_export_to_the_proxy_makes_the_ingest_records_and_alerts(
    proxy: tuple[ParityProxy, MemoryNotifier, str],
) -> None:
    app, memory, url = proxy
    resource = Resource.create({"service.name": "vllm", "parity.platform": "tpu", "parity.region": "us-east"})
    provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", compression=Compression.Gzip, timeout=10)
    provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=16, schedule_delay_millis=50))
    copy = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(copy))
    tracer = provider.get_tracer("vllm.tracing")
    for i in range(40):  # short requests on the short pool, then on the long pool: a routing invariant broken
        _genai_span(tracer, i, pool="short" if i < 32 else "long")
    tracer.start_span("db query", start_time=T0_NS).end(end_time=T0_NS + 1000)  # no gen_ai.*: ignored
    assert provider.force_flush(10_000)
    provider.shutdown()
    assert app.wait_idle(20)

    records = sorted(app.store.records(), key=lambda r: int(r.record_id.split("-")[1]))
    assert [r.record_id for r in records] == [f"chatcmpl-{i}" for i in range(40)]
    r0 = records[0]
    assert (r0.model, r0.pool, r0.platform, r0.region, r0.context_tokens, r0.output_tokens) == (
        "S", "short", "tpu", "us-east", 50, 6
    )  # fmt: skip
    assert (r0.temperature, r0.top_p, r0.max_tokens, r0.finish_reason, r0.latency_ms) == (0.7, 0.9, 64, "stop", 250.0)
    assert r0.time.isoformat() == "2025-08-31T10:00:00+00:00"
    assert r0.session_hash == session_hash("sess-0", "s")
    assert r0.source == "otlp"
    assert {o.detector for o in r0.observations} >= {"unexpected_script"}

    # exactly what `parity ingest --format otlp` makes of the same spans (as the collector's file exporter writes)
    line = json.dumps(MessageToDict(encode_spans(copy.get_finished_spans())))
    ingested = MemoryStore()
    result = ingest_lines([line], ingested, fmt="otlp", salt="s", scorer=default_scorer())
    assert (result.records, result.skipped_spans) == (40, 1)

    def comparable(r: Any) -> dict[str, Any]:  # the record as built; its signals are the monitor's decision
        return {k: v for k, v in r.to_dict().items() if k not in ("source", "signals")}

    expected = {r.record_id: comparable(r) for r in ingested.records()}
    assert {r.record_id: comparable(r) for r in records} == expected
    # the proxy's monitor decided each record's signals once and the store kept them: the misrouted ones broke the rule
    routing = [(r.signals or {}).get("routing.short_on_long_pool") for r in records]
    assert routing == [0.0] * 32 + [1.0] * 8

    alerts = [a for a in memory.alerts if a.signal == "routing.short_on_long_pool"]
    assert alerts, [a.signal for a in memory.alerts]
    assert alerts[0].segment.get("pool") == "long"
    assert app.store.alerts(open_only=True)
    metrics = httpx.get(f"{url}/metrics").text
    assert 'parity_otlp_spans_total{outcome="recorded"} 40.0' in metrics
    assert 'parity_otlp_spans_total{outcome="ignored"} 1.0' in metrics


def _span_json(i: int, **extra: Any) -> dict[str, Any]:
    attrs = [
        {"key": "gen_ai.request.model", "value": {"stringValue": "S"}},
        {"key": "gen_ai.response.id", "value": {"stringValue": f"json-{i}"}},
        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "12"}},
        {"key": "gen_ai.output.messages", "value": {"stringValue": '[{"role": "assistant", "content": "ok"}]'}},
    ]
    return {"name": f"chat {i}", "startTimeUnixNano": str(T0_NS + i), "endTimeUnixNano": str(T0_NS + i + 10**8),
            "attributes": attrs, **extra}  # fmt: skip


def _doc(spans: list[dict[str, Any]]) -> dict[str, Any]:
    resource = {"attributes": [{"key": "parity.platform", "value": {"stringValue": "gpu"}}]}
    return {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": spans}]}]}


@pytest.fixture
def receive(tmp_path: Path) -> Iterator[tuple[str, Path, Callable[[], None]]]:
    """``parity receive`` as a child process on 127.0.0.1; stopped with SIGINT (a clean shutdown)."""
    port = free_port()
    store = tmp_path / "otlp.duckdb"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-m", "parity", "receive", "--listen", f"127.0.0.1:{port}", "--store", str(store),
         "--salt", "s", "--no-detectors"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def stop() -> None:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if child.stdout is not None:
            child.stdout.close()

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/parity/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert child.poll() is None, child.stdout.read().decode() if child.stdout else ""
            assert time.monotonic() < deadline, "parity receive did not start"
            time.sleep(0.1)
        yield url, store, stop
    finally:
        stop()


def test_json_gzip_to_parity_receive_with_partial_success(receive: tuple[str, Path, Callable[[], None]]) -> None:
    url, store_path, stop = receive
    bad = _span_json(2)
    del bad["startTimeUnixNano"]
    body = gzip.compress(json.dumps(_doc([_span_json(0), _span_json(1), bad, {"name": "db"}])).encode())
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    answer = httpx.post(f"{url}/v1/traces", content=body, headers=headers)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json() == {
        "partialSuccess": {
            "rejectedSpans": "1",
            "errorMessage": "span 3 (chat 2): `span.startTimeUnixNano` is required",
        }
    }
    clean = httpx.post(f"{url}/v1/traces", json=_doc([_span_json(3)]))
    assert clean.json() == {}

    deadline = time.monotonic() + 20
    while httpx.get(f"{url}/parity/health").json()["records_written"] < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # protocol errors: a google.rpc.Status in the request's encoding, never a traceback
    garbage = httpx.post(
        f"{url}/v1/traces", content=b"\x0a\xff\xff", headers={"content-type": "application/x-protobuf"}
    )
    assert garbage.status_code == 400
    wrong_type = httpx.post(f"{url}/v1/traces", content=b"x", headers={"content-type": "text/plain"})
    assert wrong_type.status_code == 415
    bad_gzip = httpx.post(f"{url}/v1/traces", content=b"nope", headers={**headers})
    assert bad_gzip.status_code == 400
    assert "gzip" in bad_gzip.json()["message"]
    not_otlp = httpx.post(f"{url}/v1/traces", json={"resourceSpans": "x"})
    assert not_otlp.status_code == 400
    stop()
    with DuckDBStore(store_path) as stored:
        records = sorted(stored.records(), key=lambda r: r.record_id)
    assert [(r.record_id, r.platform, r.context_tokens, r.source) for r in records] == [
        ("json-0", "gpu", 12, "otlp"), ("json-1", "gpu", 12, "otlp"), ("json-3", "gpu", 12, "otlp")
    ]  # fmt: skip


def test_protobuf_partial_success_is_protobuf(proxy: tuple[ParityProxy, MemoryNotifier, str]) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    _, _, url = proxy
    spans = [Span(name="chat", start_time_unix_nano=0), Span(name="chat", start_time_unix_nano=T0_NS)]
    for span in spans:
        kv = span.attributes.add()
        kv.key, kv.value.string_value = "gen_ai.request.model", "S"
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])])
    answer = httpx.post(
        f"{url}/v1/traces", content=request.SerializeToString(), headers={"content-type": "application/x-protobuf"}
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-protobuf"
    response = ExportTraceServiceResponse.FromString(answer.content)
    assert response.partial_success.rejected_spans == 1
    assert "startTimeUnixNano" in response.partial_success.error_message
