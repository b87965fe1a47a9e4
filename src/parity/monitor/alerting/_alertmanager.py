"""parity alerts in Alertmanager's format: the body of ``POST /api/v2/alerts`` (a JSON array of postable alerts).

Each alert becomes ``{"labels", "annotations", "startsAt", "endsAt", "generatorURL"}``. Labels identify it for
Alertmanager's grouping and routing: ``alertname="ParityQualityRegression"`` (``ParityQualityRegressionWorsened``
when it escalates an open alert), ``severity``, ``signal``, ``parity_alert_id`` and the segment's keys
(``model``, ``pool``, ``platform``, ``region``, ...). Annotations carry the human text: the one-line summary,
the levels and the likeliest change. ``startsAt`` is the estimated start of the change; an open alert's
``endsAt`` is ``hold`` after its detection (parity sends an alert when it opens and when it is updated, not
periodically, so Alertmanager must not resolve it after its ``resolve_timeout``); a superseded one ends at the
time of the update.

>>> from datetime import datetime, timezone
>>> from parity.monitor._records import Alert
>>> t = datetime(2025, 8, 5, tzinfo=timezone.utc)
>>> alert = Alert("a1", "unexpected_script", {"platform": "tpu"}, t, t, 0.02, 0.001, 0.021, 40)
>>> body = alertmanager_alerts(alert, now=t)
>>> body[0]["labels"]["alertname"], body[0]["labels"]["platform"], body[0]["endsAt"]
('ParityQualityRegression', 'tpu', '2025-08-12T00:00:00Z')
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from parity.monitor._records import Alert

__all__ = ["ALERTNAME", "DEFAULT_HOLD", "alertmanager_alerts"]

#: The ``alertname`` label of a parity quality alert.
ALERTNAME = "ParityQualityRegression"
#: How long an open alert stays firing in Alertmanager without an update (parity does not re-send).
DEFAULT_HOLD = timedelta(days=7)
#: Labels parity sets itself; a segment key with one of these names is prefixed with ``segment_``.
_RESERVED = frozenset({"alertname", "severity", "signal", "parity_alert_id", "status"})
_LABEL = re.compile(r"[^a-zA-Z0-9_]")


def _ts(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")


def _label_name(key: str) -> str:
    name = _LABEL.sub("_", key) or "_"
    if name[0].isdigit():
        name = "_" + name
    return f"segment_{name}" if name in _RESERVED else name


def alertmanager_alerts(
    alert: Alert,
    *,
    generator_url: str = "",
    severity: str = "warning",
    hold: timedelta = DEFAULT_HOLD,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """The ``POST /api/v2/alerts`` body for one parity alert (a one-element list)."""
    from parity.monitor.alerting.alerts import describe_alert

    labels = {_label_name(k): str(v) for k, v in sorted(alert.segment.items())}
    labels.update(
        alertname=ALERTNAME + ("Worsened" if alert.worsens else ""),
        severity=severity,
        signal=alert.signal,
        parity_alert_id=alert.alert_id,
    )
    annotations = {
        "summary": describe_alert(alert),
        "description": (
            f"{alert.signal} rose from {alert.baseline:.4g} to {alert.current:.4g} ({alert.effect:+.4g}) on "
            + (", ".join(f"{k}={v}" for k, v in alert.segment.items()) or "all traffic")
            + f"; {alert.n_after} requests since the estimated start."
        ),
        "detected_at": alert.detected_at.isoformat(),
        "parity_status": alert.status,
    }
    if alert.latest_start is not None:
        annotations["latest_start"] = alert.latest_start.isoformat()
    if alert.worsens:
        annotations["worsens"] = alert.worsens
    if alert.attributed_changes:
        top = alert.attributed_changes[0]
        annotations["likely_cause"] = f"{top.change_id} (score {top.score:.2f}): {top.evidence}"
    ends = alert.detected_at + hold if alert.status == "open" else (now or datetime.now(UTC))
    return [
        {
            "labels": labels,
            "annotations": annotations,
            "startsAt": _ts(alert.started_at),
            "endsAt": _ts(ends),
            "generatorURL": generator_url,
        }
    ]
