"""The proxy in front of a real (tiny, canned) OpenAI-compatible upstream, driven by the official openai client."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import regex

from parity.monitor import Alert, DetectorObservation, Record
from parity.monitor.intake.proxy import ParityProxy, ProxyConfig
from parity.monitor.intake.scoring import ParsedExchange, RecordBuilder, session_hash
from parity.monitor.storage.store import DuckDBStore, HTTPStore, MemoryStore, open_store

SECRET_KEY = "sk-test-SECRETSECRETSECRET0123456789"


class ThaiScorer:
    """A minimal real scorer for the plug point: flags Thai characters (the detectors package has the full one)."""

    def score(self, parsed: ParsedExchange) -> list[DetectorObservation]:
        n = len(regex.findall(r"\p{sc=Thai}", parsed.text))
        return [DetectorObservation("unexpected_script", n > 0, n / max(1, len(parsed.text)))]


class BlockingHook:
    """A monitor hook that holds the worker until released (to fill the queue)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.seen: list[Record] = []

    def observe(self, record: Record) -> list[Alert]:
        self.release.wait(10)
        self.seen.append(record)
        return []

    def observe_feedback(self, event: Any) -> list[Alert]:
        return []

    def add_changes(self, changes: Any) -> list[Alert]:
        return []

    @property
    def open_alerts(self) -> list[Alert]:
        return []


ServerHandle = Any  # tests/monitor/conftest.py: a running uvicorn server with .url and .stop()


@pytest.fixture
def start_proxy(serve_app: Callable[[Any], Any]) -> Callable[..., tuple[ParityProxy, Any]]:
    """Start a proxy (scorer: ThaiScorer, labels: region=eu) in front of ``upstream``; stopped after the test."""

    def start(
        upstream: str, store: Any, *, hook: Any = None, capture: str = "none", **config: Any
    ) -> tuple[ParityProxy, Any]:
        builder = RecordBuilder(salt="test-salt", labels={"region": "eu"}, scorer=ThaiScorer(), capture=capture)
        proxy = ParityProxy(ProxyConfig(upstream=upstream, capture=capture, **config), store, builder, hook=hook)
        return proxy, serve_app(proxy.app)

    return start


StartProxy = Callable[..., tuple[ParityProxy, Any]]


@pytest.fixture
def proxied(
    upstream: ServerHandle, tmp_path: Path, start_proxy: StartProxy
) -> Iterator[tuple[ParityProxy, ServerHandle, DuckDBStore]]:
    store = DuckDBStore(tmp_path / "proxy.duckdb")
    proxy, handle = start_proxy(upstream.url, store, flush_interval_s=0.05)
    yield proxy, handle, store
    handle.stop()
    store.close()


@pytest.fixture
def client() -> Iterator[Callable[[str], openai.OpenAI]]:
    """Official openai clients (closed after the test) for a proxy's base URL."""
    made: list[openai.OpenAI] = []

    def make(base: str) -> openai.OpenAI:
        made.append(openai.OpenAI(base_url=base + "/v1", api_key=SECRET_KEY, max_retries=0))
        return made[-1]

    yield make
    for c in made:
        c.close()


Client = Callable[[str], openai.OpenAI]


MESSAGES: list[Any] = [{"role": "user", "content": "hello there"}]


def test_non_streaming_passes_bytes_unchanged_and_stores_a_record_without_text(
    upstream: ServerHandle, proxied: tuple[ParityProxy, ServerHandle, DuckDBStore], client: Client
) -> None:
    proxy, handle, store = proxied
    body = {"model": "S", "messages": MESSAGES, "temperature": 0.7, "top_p": 0.95, "user": "alice", "logprobs": True}
    direct = httpx.post(upstream.url + "/v1/chat/completions", json=body)
    via = httpx.post(handle.url + "/v1/chat/completions", json=body)
    assert via.status_code == direct.status_code == 200
    assert via.content.replace(b"chatcmpl-2", b"chatcmpl-1") == direct.content
    for h in ("x-parity-platform", "x-parity-pool", "content-type"):
        assert via.headers[h] == direct.headers[h]
    out = client(handle.url).chat.completions.create(model="S", messages=MESSAGES, user="bob")
    assert out.choices[0].message.content is not None
    assert out.choices[0].message.content.startswith("The quick brown fox")
    assert proxy.wait_idle()
    records = store.records()
    assert [r.record_id for r in records] == ["chatcmpl-2", "chatcmpl-3"]
    rec = records[0]
    assert (rec.model, rec.pool, rec.platform, rec.server, rec.config_version, rec.region) == (
        "S", "short", "gpu", "gpu-short-0", "v1", "eu"
    )  # fmt: skip
    assert (rec.context_tokens, rec.temperature, rec.top_p, rec.finish_reason) == (12, 0.7, 0.95, "stop")
    assert rec.session_hash == session_hash("alice", "test-salt")
    assert rec.logprob_summary["n_logprobs"] > 0
    assert rec.captured_text is None
    assert rec.flagged("unexpected_script") is False
    assert records[1].session_hash == session_hash("bob", "test-salt")


def test_streaming_passes_sse_chunk_by_chunk(
    upstream: ServerHandle, proxied: tuple[ParityProxy, ServerHandle, DuckDBStore], client: Client
) -> None:
    proxy, handle, store = proxied
    body = {"model": "S", "messages": [{"role": "user", "content": "say thai"}], "stream": True}
    with httpx.stream("POST", upstream.url + "/v1/chat/completions", json=body) as r:
        direct_chunks = list(r.iter_bytes())
    with httpx.stream("POST", handle.url + "/v1/chat/completions", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        via_chunks = list(r.iter_bytes())
    assert b"".join(via_chunks).replace(b"chatcmpl-2", b"chatcmpl-1") == b"".join(direct_chunks)
    assert len(via_chunks) > 3  # not buffered into one body
    stream = client(handle.url).chat.completions.create(model="S", messages=MESSAGES, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.startswith("The quick brown fox")
    assert proxy.wait_idle()
    thai, english = store.records()
    assert thai.flagged("unexpected_script") is True
    assert english.flagged("unexpected_script") is False
    assert (thai.context_tokens, thai.finish_reason) == (12, "stop")
    assert thai.output_tokens > 0
    assert thai.captured_text is None  # capture is off by default
    assert proxy.metrics.detector_flags.labels(detector="unexpected_script")._value.get() == 1


def test_credentials_are_forwarded_but_never_stored_or_logged(
    upstream: ServerHandle, tmp_path: Path, caplog: pytest.LogCaptureFixture, start_proxy: StartProxy, client: Client
) -> None:
    caplog.set_level(logging.DEBUG)
    store_path = tmp_path / "secret.duckdb"
    spool_path = tmp_path / "spool.jsonl"
    store = DuckDBStore(store_path)
    hook = BlockingHook()
    proxy, handle = start_proxy(upstream.url, store, hook=hook, capture="flagged", queue_size=1, spool_path=spool_path)
    try:
        c = client(handle.url)
        for text in ("say thai please", "hello", "thai again", "more"):
            c.chat.completions.create(model="S", messages=[{"role": "user", "content": text}], extra_headers={
                "api-key": SECRET_KEY, "x-api-key": SECRET_KEY, "x-session-id": "sess-1"})  # fmt: skip
        assert all(SECRET_KEY in h.get("authorization", "") for h in upstream.state["seen"])
        assert spool_path.exists()
        assert SECRET_KEY not in spool_path.read_text()
        hook.release.set()
        assert proxy.wait_idle()
    finally:
        handle.stop()
        store.close()
    assert SECRET_KEY.encode() not in store_path.read_bytes()
    assert SECRET_KEY not in caplog.text
    with DuckDBStore(store_path, read_only=True) as s:
        recs = s.records()
    assert len(recs) == 4
    captured = [r.captured_text for r in recs if r.captured_text]
    assert len(captured) == 2  # flagged ones only
    assert all("สวัสดี" in t for t in captured)
    assert all(r.session_hash == session_hash("sess-1", "test-salt") for r in recs)


def test_full_queue_spools_to_disk_and_drains_without_loss(
    upstream: ServerHandle, tmp_path: Path, start_proxy: StartProxy, client: Client
) -> None:
    store = MemoryStore()
    hook = BlockingHook()
    proxy, handle = start_proxy(upstream.url, store, hook=hook, queue_size=2, spool_path=tmp_path / "s.jsonl")
    try:
        c = client(handle.url)
        for _ in range(12):
            c.chat.completions.create(model="S", messages=MESSAGES)
        # the worker holds 1 exchange, the queue 2; the other 9 are spooled (hand-off happens after the response)
        deadline = time.monotonic() + 5
        while proxy.metrics.spooled._value.get() < 9 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proxy.metrics.spool_pending._value.get() == 9
        metrics = httpx.get(handle.url + "/metrics").text
        assert "parity_proxy_spooled_records_total 9.0" in metrics
        hook.release.set()
        assert proxy.wait_idle()
        assert len(store.records()) == 12
        assert len({r.record_id for r in store.records()}) == 12
        assert not (tmp_path / "s.jsonl").exists()
    finally:
        handle.stop()


def test_upstream_errors_pass_through_unchanged(
    upstream: ServerHandle, proxied: tuple[ParityProxy, ServerHandle, DuckDBStore], client: Client
) -> None:
    proxy, handle, store = proxied
    body = {"model": "S", "messages": [{"role": "user", "content": "please fail"}]}
    direct = httpx.post(upstream.url + "/v1/chat/completions", json=body)
    via = httpx.post(handle.url + "/v1/chat/completions", json=body)
    assert (via.status_code, via.content, via.headers["x-upstream"]) == (429, direct.content, "yes")
    with pytest.raises(openai.RateLimitError):
        client(handle.url).chat.completions.create(model="S", messages=body["messages"])
    assert proxy.wait_idle()
    assert [r.status_code for r in store.records()] == [429, 429]  # the direct call did not pass the proxy
    assert all(r.observations == () for r in store.records())
    assert proxy.metrics.upstream_errors.labels(reason="status_4xx")._value.get() == 2


def test_unreachable_upstream_is_a_502_in_openai_shape(start_proxy: StartProxy, unused_port: int) -> None:
    proxy, handle = start_proxy(f"http://127.0.0.1:{unused_port}", MemoryStore())
    try:
        r = httpx.post(handle.url + "/v1/chat/completions", json={"model": "S", "messages": MESSAGES})
        assert r.status_code == 502
        assert r.json()["error"]["code"] == "connect"
        assert proxy.metrics.upstream_errors.labels(reason="connect")._value.get() == 1
    finally:
        handle.stop()


def test_other_v1_paths_are_forwarded_not_scored(
    upstream: ServerHandle, proxied: tuple[ParityProxy, ServerHandle, DuckDBStore], client: Client
) -> None:
    proxy, handle, store = proxied
    assert [m.id for m in client(handle.url).models.list()] == ["S"]
    assert proxy.wait_idle()
    assert store.records() == []


def test_feedback_is_recorded_and_validated(proxied: tuple[ParityProxy, ServerHandle, DuckDBStore]) -> None:
    proxy, handle, store = proxied
    r = httpx.post(handle.url + "/v1/feedback", json={"response_id": "chatcmpl-1", "kind": "thumbs_down"})
    assert r.status_code == 202
    bad = httpx.post(handle.url + "/v1/feedback", json={"response_id": "chatcmpl-1", "kind": "meh"})
    assert bad.status_code == 400
    assert "`kind` must be one of" in bad.json()["error"]["message"]
    missing = httpx.post(handle.url + "/v1/feedback", json={"kind": "thumbs_down"})
    assert "`response_id`" in missing.json()["error"]["message"]
    assert proxy.wait_idle()
    assert [(e.response_id, e.kind) for e in store.feedback()] == [("chatcmpl-1", "thumbs_down")]


def test_read_only_views_serve_the_live_store(
    proxied: tuple[ParityProxy, ServerHandle, DuckDBStore], client: Client
) -> None:
    proxy, handle, store = proxied
    c = client(handle.url)
    for text in ("hi", "thai please"):
        c.chat.completions.create(model="S", messages=[{"role": "user", "content": text}])
    httpx.post(handle.url + "/v1/feedback", json={"response_id": "chatcmpl-1", "kind": "bug_report"})
    assert proxy.wait_idle()
    view = open_store(handle.url)
    assert isinstance(view, HTTPStore)
    assert view.records() == store.records()
    assert view.summary() == store.summary()
    assert view.summary().flags == {"unexpected_script": 1}
    assert [e.kind for e in view.feedback()] == ["bug_report"]
    assert view.alerts() == []
    assert view.changes() == []
    assert httpx.get(handle.url + "/parity/alerts").json() == {"alerts": []}
    assert httpx.get(handle.url + "/parity/records", params={"since": "yesterday"}).status_code == 400
    view.close()


def test_metrics_names_and_units(proxied: tuple[ParityProxy, ServerHandle, DuckDBStore], client: Client) -> None:
    _, handle, _ = proxied
    client(handle.url).chat.completions.create(model="S", messages=MESSAGES)
    text = httpx.get(handle.url + "/metrics").text
    for name in (
        'parity_proxy_requests_total{code_class="2xx",endpoint="chat"} 1.0',
        "parity_proxy_upstream_errors_total",
        "parity_proxy_queue_depth",
        "parity_proxy_spooled_records_total",
        "parity_detector_flags_total",
        "parity_monitor_open_alerts",
        "parity_proxy_added_latency_seconds_bucket",
    ):
        assert name in text, name


def test_lab_fleet_behind_the_proxy(tmp_path: Path, serve_app: Callable[[Any], Any], client: Client) -> None:
    """The real lab fleet (committed weights) behind the proxy: the openai client's calls pass unchanged, records
    carry the fleet's provenance and the default detectors' verdicts but no text, and changes posted to the lab
    reach the store through the change-log poller."""
    torch = pytest.importorskip("torch")
    lab_server = pytest.importorskip("parity.lab.server")
    fleet = pytest.importorskip("parity.lab.fleet")
    from parity.monitor.intake.changes import load_changes
    from parity.monitor.intake.scoring import DetectorScorer

    torch.set_num_threads(1)
    lab = lab_server.LabServer(fleet.FleetConfig.load(fleet.default_config_path("incident")), admin_token="t")
    with lab_server.running(lab) as lab_url:
        store = DuckDBStore(tmp_path / "lab.duckdb")
        builder = RecordBuilder(salt="lab-salt", scorer=DetectorScorer())
        proxy = ParityProxy(
            ProxyConfig(upstream=lab_url, flush_interval_s=0.05, changes_poll_s=0.2),
            store,
            builder,
            changes_source=lambda: load_changes(lab_url + "/admin/changes", token="t"),
        )
        handle = serve_app(proxy.app)
        try:
            c = client(handle.url)
            model = c.models.list().data[0].id
            msgs: list[Any] = [{"role": "user", "content": "Write one sentence about the sea."}]
            kwargs: dict[str, Any] = {"model": model, "messages": msgs, "max_tokens": 8, "temperature": 0.0}
            direct = httpx.post(lab_url + "/v1/chat/completions", json={**kwargs, "user": "s1"}, timeout=60)
            via = httpx.post(handle.url + "/v1/chat/completions", json={**kwargs, "user": "s1"}, timeout=60)
            assert via.status_code == direct.status_code == 200
            strip = ("id", "created")
            assert {k: v for k, v in via.json().items() if k not in strip} == {
                k: v for k, v in direct.json().items() if k not in strip
            }
            assert via.headers["x-parity-server"] == direct.headers["x-parity-server"]
            out = c.chat.completions.create(**kwargs, user="s2")
            stream = c.chat.completions.create(**kwargs, stream=True, user="s3")
            streamed = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
            assert streamed == out.choices[0].message.content  # greedy: same text streamed or not
            bad = httpx.post(handle.url + "/v1/chat/completions", json={**kwargs, "top_p": 7}, timeout=60)
            assert bad.status_code == 400
            change = {"kind": "deploy", "scope": {"platform": "gpu"}, "params": {"config_version": "2"}}
            posted = httpx.post(lab_url + "/admin/changes", json=change, headers={"authorization": "Bearer t"})
            assert posted.status_code in (200, 201)
            deadline = time.monotonic() + 10
            while not store.changes() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert proxy.wait_idle(30)
            records = store.records()
        finally:
            handle.stop()
    assert len(records) == 4
    ok = [r for r in records if r.status_code == 200]
    assert len(ok) == 3
    for r in ok:
        assert r.model == model
        assert "unknown" not in (r.pool, r.platform, r.server, r.config_version)
        assert r.observations
        assert r.captured_text is None
        assert r.context_tokens > 0
    assert [r.status_code for r in records if r.status_code != 200] == [400]
    assert any(ch.kind == "deploy" for ch in store.changes())
    store.close()


class FlagAlertHook:
    """A monitor hook (the plug point SegmentMonitor fills) that opens one alert per flagged platform."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self.feedback: list[Any] = []

    def observe(self, record: Record) -> list[Alert]:
        if not record.flagged("unexpected_script") or any(
            a.segment["platform"] == record.platform for a in self.alerts
        ):
            return []
        alert = Alert(f"a-{record.platform}", "unexpected_script", {"platform": record.platform}, record.time,
                      record.time, 1.0, 0.0, 1.0, 1)  # fmt: skip
        self.alerts.append(alert)
        return [alert]

    def observe_feedback(self, event: Any) -> list[Alert]:
        self.feedback.append(event)
        return []

    def add_changes(self, changes: Any) -> list[Alert]:
        return []

    @property
    def open_alerts(self) -> list[Alert]:
        return [a for a in self.alerts if a.status == "open"]


def test_monitor_hook_alerts_reach_store_endpoint_and_metrics(
    upstream: ServerHandle, tmp_path: Path, start_proxy: StartProxy, client: Client
) -> None:
    store = DuckDBStore(tmp_path / "alerts.duckdb")
    hook = FlagAlertHook()
    proxy, handle = start_proxy(upstream.url, store, hook=hook, flush_interval_s=0.05)
    c = client(handle.url)
    for text in ("hello", "thai", "thai again"):
        c.chat.completions.create(model="S", messages=[{"role": "user", "content": text}])
    httpx.post(handle.url + "/v1/feedback", json={"response_id": "chatcmpl-1", "kind": "thumbs_down"})
    assert proxy.wait_idle()
    body = httpx.get(handle.url + "/parity/alerts", params={"open_only": "true"}).json()
    assert [a["id"] for a in body["alerts"]] == ["a-gpu"]
    assert body["alerts"][0]["segment"] == {"platform": "gpu"}
    view = HTTPStore(handle.url)
    assert view.alerts(open_only=True) == store.alerts() == hook.alerts
    view.close()
    assert 'parity_monitor_open_alerts{signal="unexpected_script"} 1.0' in httpx.get(handle.url + "/metrics").text
    assert [e.kind for e in hook.feedback] == ["thumbs_down"]
    handle.stop()
    store.close()


def test_an_alert_on_the_last_record_leaves_the_proxy_idle(
    upstream: ServerHandle, start_proxy: StartProxy, client: Client
) -> None:
    """An alert flushes the pending batch from inside the monitor hook; the record that raised it must be counted
    as stored then, or the proxy never reports idle (the replay waited on it)."""
    store = MemoryStore()
    proxy, handle = start_proxy(upstream.url, store, hook=FlagAlertHook(), flush_interval_s=30.0)
    c = client(handle.url)
    for text in ("hello", "thai"):
        c.chat.completions.create(model="S", messages=[{"role": "user", "content": text}])
    assert proxy.wait_idle(10)
    assert len(store.records()) == 2
    assert [a.alert_id for a in store.alerts()] == ["a-gpu"]
    handle.stop()
