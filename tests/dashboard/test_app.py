"""The dashboard app over HTTP: every route on the recorded replay, read-only use of the store, refreshes,
errors, mounting under a prefix, and a real uvicorn server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from parity._exceptions import EndpointError, InvalidInputError
from parity.dashboard import create_app
from parity.dashboard._app import plotly_js_path
from parity.monitor import Alert, Change, FeedbackEvent, MemoryStore, Record
from parity.monitor.storage.store import open_store

from .conftest import Replay, ServerHandle


class ReadOnlyStore:
    """Only the read half of the store protocol (no write_* at all), counting the calls."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def records(self, *, since: datetime | None = None, until: datetime | None = None) -> list[Record]:
        self._count("records")
        return self.inner.records(since=since, until=until)

    def feedback(self) -> list[FeedbackEvent]:
        self._count("feedback")
        return self.inner.feedback()

    def changes(self) -> list[Change]:
        self._count("changes")
        return self.inner.changes()

    def alerts(self, *, open_only: bool = False) -> list[Alert]:
        self._count("alerts")
        return self.inner.alerts(open_only=open_only)


@pytest.fixture(scope="module")
def client(replay_store: MemoryStore) -> Iterator[TestClient]:
    with TestClient(create_app(replay_store, refresh_s=3600)) as c:
        yield c


def test_page_is_self_contained_with_relative_urls(client: TestClient) -> None:
    resp = client.get("/")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    html = resp.text
    assert 'src="static/plotly.min.js?v=' in html
    assert 'src="static/dashboard.js?v=' in html
    assert "http://" not in html
    assert "https://" not in html
    assert "<script>" not in html  # no inline script: the CSP allows the app's own files only
    csp = resp.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "default-src 'self'" in csp
    assert resp.headers["x-content-type-options"] == "nosniff"


def test_plotly_js_is_served_from_the_plotly_wheel(client: TestClient) -> None:
    resp = client.get("/static/plotly.min.js")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/javascript")
    assert resp.content == plotly_js_path().read_bytes()
    assert plotly_js_path().parts[-3:] == ("plotly", "package_data", "plotly.min.js")


@pytest.mark.parametrize(("name", "kind"), [("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")])
def test_the_pages_own_static_files(client: TestClient, name: str, kind: str) -> None:
    resp = client.get(f"/static/{name}")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith(kind)
    assert client.get("/static/nope.js").status_code == 404
    assert client.get("/static/..%2F_app.py").status_code == 404


def test_overview_counts_the_replay(client: TestClient, replay: Replay) -> None:
    data = client.get("/api/overview").json()
    assert data["records"] == len(replay.records)
    assert data["alerts"] == len(replay.alerts)
    assert data["open_alerts"] == sum(a.status == "open" for a in replay.alerts)
    assert data["changes"] == len(replay.changes)
    short = [r.context_tokens for r in replay.records if r.context_class == "short"]
    assert data["short_context_max_tokens"] == max(short) <= 192  # the replay's classes, built at the fleet's split
    assert 100 <= data["bins"] <= 200
    assert data["segments"][0] == {"segment": "all", "alerted": False}
    assert any(s["alerted"] for s in data["segments"])


def test_alerts_are_the_stores_with_cause_evidence_and_fix(client: TestClient, replay: Replay) -> None:
    alerts = client.get("/api/alerts").json()["alerts"]
    expected = sorted(replay.alerts, key=lambda a: a.detected_at, reverse=True)
    assert [a["id"] for a in alerts] == [a.alert_id for a in expected]
    for got, alert in zip(alerts, expected, strict=True):
        assert {k: got[k] for k in alert.to_dict()} == alert.to_dict()
        assert "fix" in got
        assert "segment_text" in got
        assert got["incident_id"] == (alert.incident or alert.alert_id)
        assert got["explanation"].endswith("before")
    assert any(a["attributed_changes"] and a["attributed_changes"][0]["evidence"] for a in alerts)


def test_alerts_are_one_per_incident_with_every_alarm_as_evidence(client: TestClient, replay: Replay) -> None:
    """The alert list a person reads: one entry per incident (one fault), every stored alarm in exactly one of
    them as evidence, none dropped; the overview counts incidents as alerts and alarms apart."""
    body = client.get("/api/alerts").json()
    incidents = body["incidents"]
    evidence = [e["id"] for i in incidents for e in i["evidence"]]
    assert sorted(evidence) == sorted(a.alert_id for a in replay.alerts)  # each alarm once
    assert len(incidents) == len({a.incident or a.alert_id for a in replay.alerts}) < len(replay.alerts)
    by_id = {a.alert_id: a for a in replay.alerts}
    for incident in incidents:
        assert by_id[incident["opened_by"]].opens_incident
        assert incident["evidence"][0]["id"] == incident["lead"]
        assert {by_id[e["id"]].incident or e["id"] for e in incident["evidence"]} == {incident["id"]}
    overview = client.get("/api/overview").json()
    assert (overview["incidents"], overview["alerts"]) == (len(incidents), len(replay.alerts))


def test_timeline_covers_every_shown_alert(client: TestClient, replay: Replay) -> None:
    data = client.get("/api/timeline").json()
    in_rows = {a for row in data["rows"] for a in row["alert_ids"]}
    assert {a.alert_id for a in replay.alerts if a.status != "superseded"} <= in_rows
    assert {row["kind"] for row in data["rows"]} <= {"change", "segment"}
    bars = [t for t in data["figure"]["data"] if t["type"] == "bar"]
    assert [t["name"].split(":")[0] for t in bars] == ["undetected", "detected", "worsening", "fixed"]
    assert sum(len(t.get("y", [])) for t in bars) >= len(data["rows"])
    assert len(data["figure"]["layout"]["shapes"]) == len(replay.changes)


def test_segment_views(client: TestClient) -> None:
    segments = [s["segment"] for s in client.get("/api/overview").json()["segments"]]
    for segment in segments[:3]:
        data = client.get("/api/segment", params={"segment": segment}).json()
        assert data["segment"] == segment
        assert data["signals"]
        assert data["figure"]["data"]
    resp = client.get("/api/segment", params={"segment": "server=gpu-0"})
    assert resp.status_code == 400
    assert "`segment` dimensions must be among" in resp.json()["error"]["message"]


def test_examples_of_an_alert_and_an_unknown_alert(client: TestClient, replay: Replay) -> None:
    alert = next(a for a in replay.alerts if a.status != "superseded")
    data = client.get(f"/api/alerts/{alert.alert_id}/examples").json()
    assert data["alert_id"] == alert.alert_id
    assert data["matched"] >= len(data["examples"]) >= 1
    for example in data["examples"]:
        for dim in ("model", "platform", "pool"):
            assert example[dim] == alert.segment.get(dim, example[dim])
    resp = client.get("/api/alerts/a-nope/examples")
    assert resp.status_code == 404
    assert "`alert_id` must name an alert in the store" in resp.json()["error"]["message"]


def test_routing_findings_and_limit(client: TestClient, replay: Replay) -> None:
    data = client.get("/api/routing", params={"limit": 5}).json()
    assert data["n_requests"] == len(replay.records)
    assert len(data["sessions"]) == min(5, data["affected_sessions"])
    assert all(s["pool"] == "long" for s in data["sessions"])
    assert client.get("/api/routing", params={"limit": 0}).status_code == 400


def test_changes_and_feedback(client: TestClient, replay: Replay) -> None:
    assert [c["change_id"] for c in client.get("/api/changes").json()["changes"]] == [
        c.change_id for c in sorted(replay.changes, key=lambda c: c.time)
    ]
    assert len(client.get("/api/feedback").json()["feedback"]) == len(replay.feedback)


def test_only_get(client: TestClient) -> None:
    assert client.post("/api/alerts", json={}).status_code == 405
    assert client.delete("/api/changes").status_code == 405


def test_read_only_and_one_read_per_refresh(replay_store: MemoryStore) -> None:
    store = ReadOnlyStore(replay_store)
    paths = ["/api/overview", "/api/timeline", "/api/alerts", "/api/routing", "/api/segment?segment=all"]
    with TestClient(create_app(store, refresh_s=3600)) as c:
        for path in paths:
            assert c.get(path).status_code == 200
    assert store.calls == {"records": 1, "alerts": 1, "changes": 1, "feedback": 1}
    store.calls.clear()
    with TestClient(create_app(store, refresh_s=0)) as c:
        for path in paths[:3]:
            assert c.get(path).status_code == 200
    assert store.calls["records"] == 3


def test_an_unreadable_store_answers_503_with_the_reason() -> None:
    class Down(ReadOnlyStore):
        def records(self, *, since: datetime | None = None, until: datetime | None = None) -> list[Record]:
            raise EndpointError("cannot reach the proxy", url="http://127.0.0.1:9")

    with TestClient(create_app(Down(MemoryStore()))) as c:
        assert c.get("/").status_code == 200
        resp = c.get("/api/alerts")
    assert resp.status_code == 503
    assert resp.json()["error"]["message"] == "http://127.0.0.1:9: cannot reach the proxy"


def test_mounted_under_a_prefix(replay_store: MemoryStore) -> None:
    outer = Starlette(routes=[Mount("/dashboard", app=create_app(replay_store))])
    with TestClient(outer) as c:
        resp = c.get("/dashboard", follow_redirects=False)
        assert resp.status_code in (307, 308)
        assert resp.headers["location"].endswith("/dashboard/")
        assert 'src="static/dashboard.js' in c.get("/dashboard/").text
        assert c.get("/dashboard/api/overview").json()["records"] == len(replay_store.records())
        assert c.get("/dashboard/static/plotly.min.js").status_code == 200


def test_create_app_validates_its_arguments() -> None:
    with pytest.raises(InvalidInputError, match="`store` must have records"):
        create_app(object())  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="`refresh_s` must be >= 0"):
        create_app(MemoryStore(), refresh_s=-1)
    with pytest.raises(InvalidInputError, match="`token` must be a non-empty string"):
        create_app(MemoryStore(), token="")


def test_a_read_only_duckdb_store(replay_file: Path, replay: Replay) -> None:
    store = open_store(replay_file, read_only=True)
    try:
        with TestClient(create_app(store)) as c:
            data = c.get("/api/overview").json()
            assert c.get("/api/alerts").status_code == 200
    finally:
        store.close()
    assert data["records"] == len(replay.records)
    assert data["short_context_max_tokens"] == max(
        r.context_tokens for r in replay.records if r.context_class == "short"
    )


def test_a_real_server_on_loopback(replay_store: MemoryStore, serve_app: Callable[[Any], ServerHandle]) -> None:
    handle = serve_app(create_app(replay_store))
    with httpx.Client(base_url=handle.url, timeout=30) as http:
        assert http.get("/").status_code == 200
        alerts = http.get("/api/alerts").json()["alerts"]
    assert len(alerts) == len(replay_store.alerts())


def test_over_an_http_store_reading_a_proxys_endpoints(
    replay_store: MemoryStore, serve_app: Callable[[Any], ServerHandle]
) -> None:
    """The read-only JSON a running proxy serves (/parity/records, /alerts, /changes, /feedback), faked here from the
    replay with the monitor's codecs, read through HTTPStore: the way to watch a store a proxy is writing."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from parity.monitor import HTTPStore
    from parity.monitor._codec import feedback_to_dict

    def view(payload: Callable[[], dict[str, Any]]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> JSONResponse:
            return JSONResponse(payload())

        return endpoint

    records = replay_store.records()[:1500]  # the plumbing, not the volume
    fake = Starlette(
        routes=[
            Route("/parity/records", view(lambda: {"records": [r.to_dict() for r in records]})),
            Route("/parity/alerts", view(lambda: {"alerts": [a.to_dict() for a in replay_store.alerts()]})),
            Route("/parity/changes", view(lambda: {"changes": [c.to_dict() for c in replay_store.changes()]})),
            Route(
                "/parity/feedback", view(lambda: {"feedback": [feedback_to_dict(e) for e in replay_store.feedback()]})
            ),
        ]
    )
    store = HTTPStore(serve_app(fake).url)
    try:
        with TestClient(create_app(store)) as c:
            overview = c.get("/api/overview").json()
            alerts = c.get("/api/alerts").json()["alerts"]
    finally:
        store.close()
    assert overview["records"] == len(records)
    assert overview["short_context_max_tokens"] == max(r.context_tokens for r in records if r.context_class == "short")
    assert len(alerts) == len(replay_store.alerts())


def test_records_stored_before_schema_3_are_decided_on_read() -> None:
    """``replay-schema2.json``: records as a store before record schema 3 held them (no context class, no signals).
    Read without a builder, each record's class is decided by the record default (8192 tokens, see
    ``parity.monitor.Record``) and its signals by the dashboard's fallback stage; a DuckDB store of that age is
    migrated instead (``tests/monitor/test_store.py``), and ``parity ingest`` decides them at its split."""
    from parity.dashboard._snapshot import take_snapshot
    from parity.dashboard._views import DashboardViews
    from parity.monitor import context_class_of

    from .conftest import REPLAY, fill_store, load_replay

    old = load_replay(REPLAY.with_name("replay-schema2.json"))
    assert old.records
    assert all(r.schema_version == 2 for r in old.records)
    assert all(r.signals is None for r in old.records)
    assert [r.context_class for r in old.records] == [context_class_of(r.context_tokens) for r in old.records]
    store = MemoryStore()
    fill_store(store, old)
    views = DashboardViews(take_snapshot(store))
    assert views.table.undecided == len(old.records)
    long_pool = sum(r.pool == "long" for r in old.records)
    assert long_pool > 0
    assert views.routing_findings.n_violations == long_pool  # every record is short at the default split
    with TestClient(create_app(store)) as c:
        overview = c.get("/api/overview").json()
    assert overview["records"] == len(old.records)
    assert overview["short_context_max_tokens"] == max(r.context_tokens for r in old.records)
