"""``WebhookNotifier(format="alertmanager")`` against a real HTTP receiver on 127.0.0.1 that checks the body the way
Alertmanager's ``POST /api/v2/alerts`` does (a JSON array of postable alerts: string labels with valid names,
string annotations, RFC 3339 times, endsAt after startsAt)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from parity._exceptions import InvalidInputError
from parity.monitor import Alert, AttributedChange
from parity.monitor.alerting.alerts import WebhookNotifier, explain_alert
from parity.monitor.runtime.worker import default_notifiers

T = datetime(2025, 8, 25, 6, 30, tzinfo=UTC)
ALERT = Alert(
    "a1",
    "unexpected_script",
    {"platform": "tpu", "model": "O", "context": "long"},
    T - timedelta(hours=3),
    T,
    0.02,
    0.001,
    0.021,
    40,
    (AttributedChange("cfg-7", 0.97, "scope matches"),),
)
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _rfc3339(text: str) -> datetime:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", text), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _validate(body: Any) -> list[str]:
    """What Alertmanager's API would reject in ``body`` (empty when it accepts it)."""
    problems: list[str] = []
    if not isinstance(body, list) or not body:
        return ["body must be a non-empty JSON array"]
    for alert in body:
        if set(alert) - {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}:
            problems.append(f"unknown fields {set(alert)}")
        labels = alert.get("labels")
        if not isinstance(labels, dict) or not labels:
            problems.append("labels must be a non-empty object")
            continue
        for k, v in {**labels, **alert.get("annotations", {})}.items():
            if not isinstance(v, str):
                problems.append(f"{k} must be a string")
        problems += [f"bad label name {k!r}" for k in labels if not _LABEL_NAME.fullmatch(k)]
        if _rfc3339(alert["endsAt"]) <= _rfc3339(alert["startsAt"]):
            problems.append("endsAt must be after startsAt")
    return problems


class _Receiver(BaseHTTPRequestHandler):
    received: list[Any]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        problems = _validate(body) if self.path == "/api/v2/alerts" else [f"no route {self.path}"]
        self.server.received.append(body)  # type: ignore[attr-defined]
        self.send_response(400 if problems else 200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"problems": problems}).encode())

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def alertmanager() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/api/v2/alerts"


def test_alertmanager_format_is_accepted(alertmanager: ThreadingHTTPServer) -> None:
    # every alarm and update (not only each incident's first alarm): the format of an update is checked too
    hook = WebhookNotifier(
        _url(alertmanager), format="alertmanager", generator_url="http://proxy:8080/dashboard/", incidents_only=False
    )
    hook.send(ALERT)
    hook.send(replace(ALERT, alert_id="a2", worsens="a1", segment={"alertname": "x", "pool-name": "long"}))
    hook.send(replace(ALERT, status="superseded"))
    hook.close()
    assert (hook.sent, hook.failures) == (3, 0)
    first, worse, superseded = (body[0] for body in alertmanager.received)  # type: ignore[attr-defined]
    assert first["labels"] == {
        "alertname": "ParityQualityRegression",
        "severity": "warning",
        "signal": "unexpected_script",
        "parity_alert_id": "a1",
        "platform": "tpu",
        "model": "O",
        "context": "long",
    }
    assert first["startsAt"] == "2025-08-25T03:30:00Z"
    assert _rfc3339(first["endsAt"]) == T + timedelta(days=7)
    assert first["generatorURL"] == "http://proxy:8080/dashboard/"
    assert first["annotations"]["likely_cause"] == "cfg-7 (score 0.97): scope matches"
    assert "0.001 -> 0.021" in first["annotations"]["summary"]
    assert worse["labels"]["alertname"] == "ParityQualityRegressionWorsened"
    assert worse["labels"]["segment_alertname"] == "x"  # a segment key never overrides parity's own labels
    assert worse["labels"]["pool_name"] == "long"
    assert worse["annotations"]["worsens"] == "a1"
    assert _rfc3339(superseded["endsAt"]) <= datetime.now(UTC)  # an update that ends the alert now


def test_parity_format_is_unchanged(alertmanager: ThreadingHTTPServer) -> None:
    hook = WebhookNotifier(_url(alertmanager), retries=0)
    hook.send(ALERT)
    hook.close()
    # type: ignore[attr-defined]
    assert alertmanager.received == [ALERT.to_dict() | {"explanation": explain_alert(ALERT)}]
    assert (hook.sent, hook.failures) == (0, 1)  # a real Alertmanager rejects parity's own JSON: 400


def test_default_notifiers_pass_the_format() -> None:
    notifiers = default_notifiers(webhook="http://127.0.0.1:9/api/v2/alerts", webhook_format="alertmanager")
    webhooks = [n for n in notifiers if isinstance(n, WebhookNotifier)]
    assert [n.format for n in webhooks] == ["alertmanager"]
    assert [n.incidents_only for n in webhooks] == [True]  # one message per fault unless asked for every alarm
    every = default_notifiers(webhook="http://127.0.0.1:9/api/v2/alerts", every_alarm=True)
    assert [n.incidents_only for n in every if isinstance(n, WebhookNotifier)] == [False]


def test_unknown_format_is_named() -> None:
    with pytest.raises(InvalidInputError, match="`format` must be one of parity, alertmanager"):
        WebhookNotifier("http://127.0.0.1:9/", format="slack")
