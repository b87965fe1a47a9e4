"""Notifiers: the webhook retries and never raises, the log gets one line, the store gets the alert."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import httpx
import pytest

from parity._exceptions import InvalidInputError
from parity.monitor import Alert, AttributedChange
from parity.monitor.alerting.alerts import (
    LogNotifier,
    MemoryNotifier,
    Notifier,
    StoreNotifier,
    WebhookNotifier,
    describe_alert,
    explain_alert,
)
from parity.monitor.storage.store import MemoryStore

T = datetime(2025, 8, 25, tzinfo=UTC)
ALERT = Alert(
    "a1",
    "unexpected_script",
    {"platform": "tpu", "model": "O"},
    T,
    T,
    0.02,
    0.001,
    0.021,
    40,
    (AttributedChange("cfg-7", 0.97, "scope matches"),),
)


def webhook(statuses: Sequence[int | Exception], **kwargs: object) -> tuple[WebhookNotifier, list[dict[str, object]]]:
    seen: list[dict[str, object]] = []
    answers = list(statuses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    # type: ignore[arg-type]
    return WebhookNotifier("http://hooks.test/parity", client=client, backoff=0.0, **kwargs), seen


def test_webhook_posts_the_status_json_shape() -> None:
    hook, seen = webhook([200])
    hook.send(ALERT)
    assert seen == [ALERT.to_dict() | {"explanation": explain_alert(ALERT)}]
    assert seen[0]["explanation"].startswith("2% of answers for platform=tpu,model=O are flagged by unexpected_script")
    assert (hook.sent, hook.failures) == (1, 0)


def test_webhook_sends_one_message_per_fault_by_default() -> None:
    hook, seen = webhook([200, 200])
    first = replace(ALERT, incident=ALERT.alert_id)
    same_fault = replace(ALERT, alert_id="a2", segment={}, incident=ALERT.alert_id)
    hook.send(first)
    hook.send(same_fault)
    hook.send(replace(first, attributed_changes=()))  # a re-attribution of the incident already sent
    hook.send(replace(first, status="superseded"))
    second_fault = replace(ALERT, alert_id="a3", incident="a3")
    hook.send(second_fault)
    assert [p["id"] for p in seen] == ["a1", "a3"]
    assert seen[0]["incident"] == "a1"
    assert (hook.sent, hook.skipped) == (2, 3)


def test_webhook_sends_an_incident_whose_first_message_failed_with_its_next_update() -> None:
    hook, seen = webhook([400, 200, 200])
    first = replace(ALERT, incident=ALERT.alert_id)
    hook.send(first)  # rejected: counted as a failure, the incident not yet notified
    hook.send(replace(first, attributed_changes=()))
    hook.send(first)
    assert [p["id"] for p in seen] == ["a1", "a1"]
    assert (hook.sent, hook.failures, hook.skipped) == (1, 1, 1)


def test_webhook_every_alarm_sends_each_alarm_and_update() -> None:
    hook, seen = webhook([200, 200, 200], incidents_only=False)
    first = replace(ALERT, incident=ALERT.alert_id)
    hook.send(first)
    hook.send(replace(ALERT, alert_id="a2", segment={}, incident=ALERT.alert_id))
    hook.send(replace(first, status="superseded"))
    assert [(p["id"], p["status"]) for p in seen] == [("a1", "open"), ("a2", "open"), ("a1", "superseded")]
    assert hook.skipped == 0


def test_webhook_retries_server_errors_and_connection_failures() -> None:
    hook, seen = webhook([503, httpx.ConnectError("refused"), 200], retries=3)
    hook.send(ALERT)
    assert len(seen) == 3
    assert (hook.sent, hook.failures) == (1, 0)


def test_webhook_gives_up_without_raising(caplog: pytest.LogCaptureFixture) -> None:
    hook, seen = webhook([500, 500, 500], retries=2)
    with caplog.at_level(logging.ERROR, logger="parity.monitor.alerting.alerts"):
        hook.send(ALERT)
    assert len(seen) == 3
    assert hook.failures == 1
    assert "did not take alert a1" in caplog.text


def test_webhook_does_not_retry_a_rejection() -> None:
    hook, seen = webhook([400, 200], retries=3)
    hook.send(ALERT)
    assert len(seen) == 1
    assert hook.failures == 1


def test_webhook_validation() -> None:
    with pytest.raises(InvalidInputError, match="`url` must be an http"):
        WebhookNotifier("ftp://x")
    with pytest.raises(InvalidInputError, match="`retries` must be >= 0"):
        WebhookNotifier("http://x", retries=-1)


def test_a_later_alarm_of_an_incident_reads_as_its_evidence() -> None:
    assert "evidence for incident" not in describe_alert(replace(ALERT, incident="a1"))
    assert describe_alert(replace(ALERT, alert_id="a2", incident="a1")).endswith("; evidence for incident a1")


def test_log_notifier_writes_one_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="parity.monitor.alerting.alerts"):
        LogNotifier().send(ALERT)
    assert len(caplog.records) == 1
    assert "unexpected_script on platform=tpu,model=O" in caplog.text
    assert "likely cause cfg-7" in describe_alert(ALERT)


def test_store_notifier_inserts_and_replaces() -> None:
    store = MemoryStore()
    notifier = StoreNotifier(store)
    notifier.send(ALERT)
    notifier.send(replace(ALERT, status="superseded"))
    assert [(a.alert_id, a.status) for a in store.alerts()] == [("a1", "superseded")]


def test_store_notifier_never_raises() -> None:
    class Broken(MemoryStore):
        def write_alerts(self, alerts: Sequence[Alert]) -> None:
            raise OSError("disk full")

    notifier = StoreNotifier(Broken())
    notifier.send(ALERT)
    assert notifier.failures == 1


def test_all_shipped_notifiers_satisfy_the_protocol() -> None:
    for notifier in (MemoryNotifier(), LogNotifier(), StoreNotifier(MemoryStore()), webhook([])[0]):
        assert isinstance(notifier, Notifier)


@pytest.mark.parametrize("command", ["proxy", "receive"])
def test_the_cli_offers_every_alarm_on_the_webhook(command: str) -> None:
    from click.testing import CliRunner

    from parity.cli._main import main

    result = CliRunner().invoke(main, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # help lines wrap
    assert "--webhook-every-alarm" in text
    assert "one message per incident" in text
