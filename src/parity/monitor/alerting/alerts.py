"""Where alerts go: a one-method :class:`Notifier` protocol, a webhook, the log, a store, and the test double.

A notifier receives every new alert and every update of one (a re-attribution when changes arrive later, or a
``status="superseded"`` when a more specific segment explains it); ``alert.alert_id`` tells them apart.
Notifiers never raise into the pipeline: a failing webhook is retried, then logged and counted.

Each :class:`~parity.monitor.Alert` is one alarm (a signal on a segment); alarms sharing a cause share an incident
(``Alert.incident``, see ``parity.monitor.detection.incidents``), and the incident is what a person is notified of:
the webhook sends the alarm that opens each incident (``Alert.opens_incident``), once - one message per fault - and
counts the incident's later alarms and updates in ``skipped`` (they stay in the store, ``parity status`` and the
dashboard as the incident's evidence); ``incidents_only=False`` sends every alarm and update. The log and the store
get every alarm; the log line of a later alarm names the incident it is evidence for.

>>> from datetime import datetime, timezone
>>> from parity.monitor import Alert
>>> t = datetime(2025, 8, 5, tzinfo=timezone.utc)
>>> memory = MemoryNotifier()
>>> memory.send(Alert("a1", "unexpected_script", {"platform": "tpu"}, t, t, 0.02, 0.001, 0.021, 40))
>>> [a.alert_id for a in memory.alerts]
['a1']
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol, runtime_checkable

import httpx

from parity._exceptions import InvalidInputError
from parity.monitor._records import Alert
from parity.monitor.alerting._alertmanager import alertmanager_alerts
from parity.monitor.storage._store_protocol import Store

__all__ = [
    "WEBHOOK_FORMATS",
    "LogNotifier",
    "MemoryNotifier",
    "Notifier",
    "StoreNotifier",
    "WebhookNotifier",
    "describe_alert",
    "explain_alert",
]

log = logging.getLogger("parity.monitor.alerting.alerts")


@runtime_checkable
class Notifier(Protocol):
    """Receives alerts; must not raise."""

    def send(self, alert: Alert) -> None: ...


def describe_alert(alert: Alert) -> str:
    """One line for humans.

    >>> from datetime import datetime, timezone
    >>> t = datetime(2025, 8, 5, tzinfo=timezone.utc)
    >>> print(describe_alert(Alert("a1", "unexpected_script", {"platform": "tpu"}, t, t, 0.02, 0.001, 0.021, 40)))
    [open] unexpected_script on platform=tpu: 0.001 -> 0.021 (+0.02) since 2025-08-05T00:00:00+00:00, 40 requests
    """
    seg = ",".join(f"{k}={v}" for k, v in alert.segment.items()) or "all"
    text = (
        f"[{alert.status}] {alert.signal} on {seg}: {alert.baseline:.3g} -> {alert.current:.3g} "
        f"({alert.effect:+.3g}) since {alert.started_at.isoformat()}, {alert.n_after} requests"
    )
    if alert.attributed_changes:
        top = alert.attributed_changes[0]
        text += f"; likely cause {top.change_id} ({top.score:.2f}): {top.evidence}"
    if not alert.opens_incident:
        text += f"; evidence for incident {alert.incident}"
    return text


#: What a rate signal counts, per request, for :func:`explain_alert` (detectors: "flagged by <name>").
_RATE_WORDING: dict[str, str] = {
    "output.cut": "answers {seg} end at a length limit below the requested max_tokens",
    "context.dropped": "requests {seg} reach the model with under 60% of the context the proxy forwarded "
    "(upstream usage.prompt_tokens against the request's token estimate)",
    "feedback": "answers {seg} get negative user feedback",
    "greedy_disagreement": "repeated greedy (temperature 0) requests {seg} get a different answer than the same "
    "request the time before",
}


def explain_alert(alert: Alert) -> str:
    """One sentence a person can read: what share changed, where, against what before.

    >>> from datetime import datetime, timezone
    >>> t = datetime(2025, 8, 5, tzinfo=timezone.utc)
    >>> print(explain_alert(Alert("a1", "output.cut", {"model": "H"}, t, t, 0.42, 0.03, 0.45, 40)))
    45% of answers for model=H end at a length limit below the requested max_tokens, against 3% before
    >>> print(explain_alert(Alert("a3", "greedy_disagreement", {"model": "O"}, t, t, 0.6, 0.02, 0.62, 40)))
    62% of repeated greedy (temperature 0) requests for model=O get a different answer than the same request the \
time before, against 2% before
    >>> print(explain_alert(Alert("a2", "degeneration.score", {}, t, t, 0.02, 0.01, 0.03, 40)))
    the mean degeneration score of answers on all traffic is 0.03, against 0.01 before
    """
    seg = ",".join(f"{k}={v}" for k, v in alert.segment.items())
    where = f"for {seg}" if seg else "on all traffic"
    if alert.signal.endswith(".score"):
        name = alert.signal.removesuffix(".score")
        return f"the mean {name} score of answers {where} is {alert.current:.2g}, against {alert.baseline:.2g} before"
    wording = _RATE_WORDING.get(alert.signal)
    if wording is None:
        noun = "requests" if alert.signal.startswith("routing.") else "answers"
        wording = f"{noun} {{seg}} " + (
            f"break the routing rule {alert.signal.removeprefix('routing.')}"
            if alert.signal.startswith("routing.")
            else f"are flagged by {alert.signal}"
        )

    def pct(x: float) -> str:
        return f"{100 * x:.0f}%" if x >= 0.01 or x == 0 else f"{100 * x:.2g}%"

    return f"{pct(alert.current)} of " + wording.format(seg=where) + f", against {pct(alert.baseline)} before"


class MemoryNotifier:
    """Keeps every alert it is sent, in order (the test double)."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.alerts.append(alert)


class LogNotifier:
    """Logs each alert as one line on ``logger`` (default ``parity.monitor.alerting.alerts``) at ``level``."""

    def __init__(self, logger: logging.Logger | None = None, *, level: int = logging.WARNING) -> None:
        self.logger = logger or log
        self.level = level

    def send(self, alert: Alert) -> None:
        self.logger.log(self.level, "parity alert %s: %s", alert.alert_id, describe_alert(alert))


class StoreNotifier:
    """Writes each alert (insert or replace by id) to a :class:`~parity.monitor.Store`; errors are logged."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.failures = 0

    def send(self, alert: Alert) -> None:
        try:
            self.store.write_alerts([alert])
        except Exception as err:  # a notifier must never break the pipeline
            self.failures += 1
            log.error("could not store alert %s: %s", alert.alert_id, err)


#: Payload formats of :class:`WebhookNotifier`.
WEBHOOK_FORMATS: tuple[str, ...] = ("parity", "alertmanager")


class WebhookNotifier:
    """POSTs ``alert.to_dict()`` as JSON to ``url``; retries ``retries`` times with exponential backoff on
    connection errors and 5xx/429 answers, then logs and counts the failure (``failures``); never raises.

    ``headers`` are sent with each request (e.g. an ``Authorization`` for the receiver); ``client`` may be
    given (tests pass one with ``httpx.MockTransport``). ``format="alertmanager"`` sends Alertmanager's
    ``/api/v2/alerts`` body instead (point ``url`` at ``http://ALERTMANAGER:9093/api/v2/alerts``; see
    :mod:`parity.monitor.alerting._alertmanager`), with ``generator_url`` as each alert's link back. parity's payload
    carries ``incident`` (the id shared by the alerts of one fault, see ``parity.monitor.detection.incidents``) and a
    readable ``explanation``. By default (``incidents_only``) it sends one message per incident - per fault: the
    alarm that opens it (``Alert.opens_incident``), the first time it is sent; the incident's later alarms, and
    updates of an incident already sent (a re-attribution, a supersession), are skipped and counted in ``skipped``
    (read them in ``parity status`` or the dashboard). ``incidents_only=False`` sends every alarm and every update.
    """

    def __init__(
        self,
        url: str,
        *,
        retries: int = 3,
        timeout: float = 5.0,
        backoff: float = 0.5,
        headers: dict[str, str] | None = None,
        client: httpx.Client | None = None,
        format: str = "parity",
        generator_url: str = "",
        incidents_only: bool = True,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise InvalidInputError("url", "must be an http(s) URL", url)
        if format not in WEBHOOK_FORMATS:
            raise InvalidInputError("format", f"must be one of {', '.join(WEBHOOK_FORMATS)}", format)
        if retries < 0:
            raise InvalidInputError("retries", "must be >= 0", retries)
        if backoff < 0:
            raise InvalidInputError("backoff", "must be >= 0", backoff)
        self.url = url
        self.retries = retries
        self.timeout = timeout
        self.backoff = backoff
        self.headers = dict(headers or {})
        self.format = format
        self.generator_url = generator_url
        self._client = client or httpx.Client(timeout=timeout)
        self.sent = 0
        self.failures = 0
        self.skipped = 0
        self.incidents_only = incidents_only
        self._incidents_sent: set[str] = set()  # incidents already notified (one message per fault)

    def payload(self, alert: Alert) -> Any:
        """The JSON body sent for ``alert`` in this notifier's format."""
        if self.format == "alertmanager":
            return alertmanager_alerts(alert, generator_url=self.generator_url)
        return alert.to_dict() | {"explanation": explain_alert(alert)}

    def send(self, alert: Alert) -> None:
        incident = alert.incident or alert.alert_id
        if self.incidents_only and (
            alert.status != "open" or not alert.opens_incident or incident in self._incidents_sent
        ):
            self.skipped += 1
            return
        payload = self.payload(alert)
        last = ""
        for attempt in range(self.retries + 1):
            try:
                resp = self._client.post(self.url, json=payload, headers=self.headers)
            except httpx.HTTPError as err:
                last = f"{type(err).__name__}: {err}"
            else:
                if resp.status_code < 400:
                    self.sent += 1
                    self._incidents_sent.add(incident)  # a failed one goes out with its next update
                    return
                last = f"HTTP {resp.status_code}"
                if resp.status_code < 500 and resp.status_code != 429:
                    break  # the receiver rejected it; retrying will not help
            if attempt < self.retries and self.backoff:
                time.sleep(self.backoff * 2**attempt)
        self.failures += 1
        log.error("webhook %s did not take alert %s: %s", self.url, alert.alert_id, last)

    def close(self) -> None:
        self._client.close()
