"""What the replay found: for each scripted fault, the first alert about it, where, and which change it blamed.

An alert is *about* a fault (:meth:`parity.demo.timeline.Fault`) when its signal is one the fault shows in, its
segment agrees with the fault's scope, and the latest start its data support (``Alert.latest_start``) is no earlier
than a day before the fault's onset. When several
faults fit (an alert on ``platform=tpu`` fits both tpu faults), the one whose scope the segment names most of wins,
then - the segment cannot tell them apart - the one whose change the alert blames (an alert on platform=tpu blaming
the tpu sampler change is about the sampler fault; this makes such an alert's attribution right by construction,
which the summary accepts because the segment alone is ambiguous), then the one whose onset came last before the
alert started. A worsening alert (``worsens`` set) can only be about a worsening fault and the other way round.
Every alert about no fault is a false alert and is listed.

>>> from datetime import datetime, timedelta, timezone
>>> from parity.demo.timeline import incident_timeline
>>> from parity.monitor import Alert, AttributedChange
>>> t = datetime(2025, 8, 25, 14, tzinfo=timezone.utc)
>>> alert = Alert("a-1", "unexpected_script", {"platform": "tpu"}, t, t + timedelta(hours=5), 0.2, 0.05, 0.25, 40,
...               (AttributedChange("corruption-S", 0.9, "scope platform=tpu"),))
>>> summary = summarize(incident_timeline(), [alert], [])
>>> row = summary.faults[2]
>>> row.name, row.alerted_at.isoformat(), row.attributed_change, row.attribution_correct, row.signals
('corruption', '2025-08-25T19:00:00+00:00', 'corruption-S', True, ('unexpected_script',))
>>> [f.name for f in summary.faults if f.alerted_at is None]
['routing', 'routing-growth', 'sampler']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from parity.demo.timeline import Fault, Timeline
from parity.monitor import Alert, Record

__all__ = ["DemoSummary", "FalseAlert", "FaultResult", "summarize"]

#: How long before a fault's onset an alert may start and still be about it (the change-point estimate of a rare
#: signal can land a little early).
ONSET_SLACK = timedelta(days=1)


@dataclass(frozen=True)
class FaultResult:
    """One fault's row of the summary (``alerted_at`` None: parity did not alert on it)."""

    name: str
    title: str
    onset: datetime
    postmortem: str
    alerted_at: datetime | None = None
    requests_after_onset: int | None = None
    segment_requests_after_onset: int | None = None
    segment: dict[str, str] | None = None
    signal: str | None = None
    alert_id: str | None = None
    attributed_change: str | None = None
    attribution_correct: bool = False
    #: alerts a person was notified of for this fault: its alarms that opened their incident
    #: (``Alert.opens_incident``; goal 1: one alert per fault); the incident's other alarms are its evidence
    alerts: int = 0
    #: distinct incidents among this fault's alarms (``Alert.incident``; goal 1: one incident per fault)
    incidents: int = 0
    #: every alarm about this fault (a signal on a segment, superseded ones included): the evidence
    alarms: int = 0
    #: every signal that alerted on this fault, in the order of their first alerts (``signal`` is the first)
    signals: tuple[str, ...] = ()

    @property
    def caught(self) -> bool:
        """Whether any alert was about this fault."""
        return self.alerted_at is not None

    def to_dict(self) -> dict[str, Any]:
        """The ``faults[]`` entry of ``parity demo --json``."""
        return {
            "name": self.name,
            "title": self.title,
            "onset": self.onset.isoformat(),
            "alerted_at": self.alerted_at.isoformat() if self.alerted_at else None,
            "requests_after_onset": self.requests_after_onset,
            "segment_requests_after_onset": self.segment_requests_after_onset,
            "segment": self.segment,
            "signal": self.signal,
            "alert_id": self.alert_id,
            "attributed_change": self.attributed_change,
            "attribution_correct": self.attribution_correct,
            "alerts": self.alerts,
            "incidents": self.incidents,
            "alarms": self.alarms,
            "signals": list(self.signals),
            "postmortem": self.postmortem,
        }


@dataclass(frozen=True)
class FalseAlert:
    """An alert about none of the scripted faults."""

    alert_id: str
    signal: str
    segment: dict[str, str]
    detected_at: datetime
    status: str
    attributed_change: str | None

    def to_dict(self) -> dict[str, Any]:
        """The ``false_alerts[]`` entry of ``parity demo --json``."""
        return {
            "id": self.alert_id,
            "signal": self.signal,
            "segment": self.segment,
            "detected_at": self.detected_at.isoformat(),
            "status": self.status,
            "attributed_change": self.attributed_change,
        }


@dataclass(frozen=True)
class DemoSummary:
    """The replay's outcome: one :class:`FaultResult` per fault, the false alerts, and the run's figures."""

    faults: list[FaultResult]
    false_alerts: list[FalseAlert]
    requests: int = 0
    wall_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def all_caught_and_attributed(self) -> bool:
        """Every fault caught, each attributed to its own change, and no false alert."""
        return all(f.caught and f.attribution_correct for f in self.faults) and not self.false_alerts

    def to_dict(self) -> dict[str, Any]:
        """The ``parity demo --json`` document."""
        return {
            "faults": [f.to_dict() for f in self.faults],
            "false_alerts": [a.to_dict() for a in self.false_alerts],
            "requests": self.requests,
            "wall_seconds": round(self.wall_seconds, 1),
            **self.extra,
        }


def _in_scope(record: Record, scope: Mapping[str, str]) -> bool:
    """Whether ``record`` is in the fault's ``scope`` (its ``context_class`` as it was built)."""
    return all(getattr(record, key, None) == value for key, value in scope.items())


def _fault_for(alert: Alert, faults: Sequence[Fault]) -> Fault | None:
    top = alert.attributed_changes[0].change_id if alert.attributed_changes else None
    best: tuple[tuple[int, bool, bool, float], Fault] | None = None
    for fault in faults:
        if fault.worsening != (alert.worsens is not None):
            continue
        if not fault.matches_signal(alert.signal) or not fault.agrees_with(alert.segment):
            continue
        if (alert.latest_start or alert.started_at) < fault.onset - ONSET_SLACK:
            continue  # the data rule out a start at the onset
        # most scope named; then (the segment cannot tell them apart) the fault whose change the alert blames; then
        # one already under way when the alert started, the latest such; else the soonest to come
        under_way = fault.onset <= alert.started_at
        gap = (alert.started_at - fault.onset).total_seconds()
        rank = (fault.specificity(alert.segment), top in fault.causes, under_way, -gap if under_way else gap)
        if best is None or rank > best[0]:
            best = (rank, fault)
    return best[1] if best is not None else None


def summarize(
    timeline: Timeline,
    alerts: Sequence[Alert],
    records: Sequence[Record],
    *,
    wall_seconds: float = 0.0,
) -> DemoSummary:
    """Match ``alerts`` (every status) to the timeline's faults; count requests from ``records``."""
    by_fault: dict[str, list[Alert]] = {f.name: [] for f in timeline.faults}
    false_alerts: list[FalseAlert] = []
    for alert in sorted(alerts, key=lambda a: a.detected_at):
        fault = _fault_for(alert, timeline.faults)
        if fault is not None:
            by_fault[fault.name].append(alert)
            continue
        top = alert.attributed_changes[0].change_id if alert.attributed_changes else None
        false_alerts.append(
            FalseAlert(alert.alert_id, alert.signal, dict(alert.segment), alert.detected_at, alert.status, top)
        )
    times = sorted(r.time for r in records)
    rows: list[FaultResult] = []
    for fault in timeline.faults:
        mine = by_fault[fault.name]
        if not mine:
            rows.append(FaultResult(fault.name, fault.title, fault.onset, fault.postmortem))
            continue
        first = mine[0]
        top = first.attributed_changes[0].change_id if first.attributed_changes else None
        after = sum(1 for t in times if fault.onset <= t <= first.detected_at)
        in_scope = sum(1 for r in records if fault.onset <= r.time <= first.detected_at and _in_scope(r, fault.scope))
        rows.append(
            FaultResult(
                name=fault.name,
                title=fault.title,
                onset=fault.onset,
                postmortem=fault.postmortem,
                alerted_at=first.detected_at,
                requests_after_onset=after,
                segment_requests_after_onset=in_scope,
                segment=dict(first.segment),
                signal=first.signal,
                alert_id=first.alert_id,
                attributed_change=top,
                attribution_correct=top in fault.causes,
                alerts=sum(a.opens_incident for a in mine),
                incidents=len({a.incident or a.alert_id for a in mine}),
                alarms=len(mine),
                signals=tuple(dict.fromkeys(a.signal for a in mine)),
            )
        )
    return DemoSummary(rows, false_alerts, requests=len(records), wall_seconds=wall_seconds)
