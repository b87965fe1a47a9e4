"""Incidents: one per fault, grouping the alerts that share a cause.

One fault often alarms more than one stream: its own segment and the marginals that pool it (``all traffic``,
``pool=long``), and related signals (a detector's flag rate ``x`` and its mean score ``x.score``, or two detectors
seeing the same broken text). Two alerts are *related* (:func:`related`) when

- their segments intersect (no dimension fixed to two different values: ``model=H`` and ``platform=tpu`` share
  model H's tpu traffic; ``all`` intersects everything), and
- their signals are of one family (``x`` and ``x.score``, or one signal on two marginals of the faulty segment)
  and the earlier alert is still open or their evidence periods ``[started_at, detected_at]`` widened by
  :data:`START_SLACK` overlap (one family's streams estimate a start differently, but they watch the same
  excursion); or, for signals of different families, their start estimates agree (the intervals
  ``[started_at, latest_start]`` overlap, widened by :data:`START_FRACTION` of the longer detection delay: a
  start estimate is as precise as the detection is quick, and a fixed slack let a false alarm that opened minutes
  before a real fault take the fault's alarms as its evidence, so that nobody was notified of the fault), or one
  segment holds the other and each excursion had begun before the other was detected (``started_at`` before the
  other's ``detected_at``: a sparse stream's start estimate lags the fault it sees).

The pipeline gives every new alert the incident id of the earliest alert it is related to (or, when none is, of an
open alert whose signal flagged the new alarm's flagged records far beyond chance: ``SegmentMonitor._coflagged``, the
re-encoding's greedy disagreements on its mojibake answers; or its own id), and stores it in ``Alert.incident``;
:func:`group_incidents` reads the groups back from any list of alerts (a store, a proxy's ``/parity/alerts``). An
incident's *lead* alert is its strongest evidence: a rate signal before a score,
then the most specific segment, then the largest relative rise.

**The incident is the alert a person sees.** Each stored :class:`~parity.monitor.Alert` is one *alarm*: one signal
on one segment. Every alarm is kept (the store, ``parity status``'s evidence table, the dashboard), but a person is
notified once per incident, by the alarm that opened it (``Alert.opens_incident``): the webhook sends that one
(``WebhookNotifier``: one message per fault by default), ``/metrics`` counts it in ``parity_monitor_alerts_total``
(every alarm in ``parity_monitor_alarms_total``), and ``parity status``, the dashboard and the demo's summary count
incidents as alerts, each carrying its lead's explanation, its segments and signals, and its alarms as evidence. A
worsening (``Alert.worsens``) opens an incident of its own (a second change on top of the first), and so does a
second fault inside an open alert (``SegmentMonitor._second_fault``): each is notified.

>>> from datetime import datetime, timedelta, timezone
>>> from parity.monitor._records import Alert
>>> t = datetime(2025, 8, 25, tzinfo=timezone.utc)
>>> own = Alert("a-1", "sampling_consistency", {"model": "O"}, t, t + timedelta(seconds=60), 0.4, 0.01, 0.41, 90,
...             incident="a-1")
>>> pooled = Alert("a-2", "sampling_consistency", {}, t, t + timedelta(seconds=50), 0.1, 0.01, 0.11, 300,
...                incident="a-1")
>>> [(i.incident_id, i.lead.alert_id, i.segments, i.signals) for i in group_incidents([own, pooled])]
[('a-1', 'a-1', ['model=O', 'all'], ['sampling_consistency'])]
>>> [a.alert_id for a in notified([own, pooled])]  # one alert a person sees; a-2 is evidence of it
['a-1']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from parity.monitor._records import Alert
from parity.monitor.alerting.alerts import explain_alert

__all__ = ["START_FRACTION", "START_SLACK", "Incident", "group_incidents", "notified", "related", "signal_family"]

#: Evidence periods of one signal family this close (either way) count as one excursion.
START_SLACK = timedelta(minutes=15)
#: Start estimates of signals of different families agree within this share of the longer detection delay.
START_FRACTION = 0.1


def signal_family(signal: str) -> str:
    """The signal a derived one belongs to: ``x.score`` -> ``x``; others are their own family.

    >>> signal_family("degeneration.score"), signal_family("routing.short_on_long_pool")
    ('degeneration', 'routing.short_on_long_pool')
    """
    return signal.removesuffix(".score")


def notified(alerts: Sequence[Alert]) -> list[Alert]:
    """The alarms among ``alerts`` that a person was notified of (``Alert.opens_incident``), oldest first: one per
    incident whose opening alarm is in ``alerts``."""
    return sorted((a for a in alerts if a.opens_incident), key=lambda a: a.detected_at)


def _intersect(a: dict[str, str], b: dict[str, str]) -> bool:
    return all(b.get(k, v) == v for k, v in a.items())


def _within(inner: dict[str, str], outer: dict[str, str]) -> bool:
    """Whether segment ``inner`` lies inside ``outer`` (fixes every dimension ``outer`` fixes, the same way)."""
    return all(inner.get(k) == v for k, v in outer.items())


def related(a: Alert, b: Alert, *, slack: timedelta = START_SLACK) -> bool:
    """Whether two alerts share a cause (see the module docstring); the pipeline asks it of a new (open) alert
    against every earlier one.

    >>> from datetime import datetime, timezone
    >>> t = datetime(2025, 8, 25, tzinfo=timezone.utc)
    >>> x = Alert("a", "degeneration", {"platform": "tpu"}, t, t, 0.1, 0.0, 0.1, 50)
    >>> related(x, Alert("b", "degeneration.score", {"platform": "tpu"}, t, t, 0.1, 0.0, 0.1, 50))
    True
    >>> related(x, Alert("c", "degeneration", {"platform": "gpu"}, t, t, 0.1, 0.0, 0.1, 50))
    False
    """
    if not _intersect(a.segment, b.segment):
        return False
    if signal_family(a.signal) == signal_family(b.signal):
        if a.status == "open" and b.status == "open":
            return True
        return a.started_at - slack <= b.detected_at + slack and b.started_at - slack <= a.detected_at + slack
    # signals of different families share a cause when their start estimates agree, within a tenth of the longer
    # detection delay (a fixed slack joined the drill's fault to a false alarm that opened minutes before it, and
    # split the replay's, whose simulated minutes hold a request each), or when one segment holds the other and each
    # excursion had begun before the other was detected (a sparse stream's start estimate lags the fault it sees)
    a_end, b_end = a.latest_start or a.started_at, b.latest_start or b.started_at
    fuzz = START_FRACTION * max(a.detected_at - a.started_at, b.detected_at - b.started_at)
    if a.started_at - fuzz <= b_end and b.started_at - fuzz <= a_end:
        return True
    nested = _within(a.segment, b.segment) or _within(b.segment, a.segment)
    return nested and a.started_at <= b.detected_at and b.started_at <= a.detected_at


def _strength(alert: Alert) -> tuple[bool, int, float]:
    relative = alert.effect / max(alert.baseline, 1e-3)
    return (not alert.signal.endswith(".score"), len(alert.segment), relative)


def _label(segment: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in segment.items()) or "all"


@dataclass(frozen=True, slots=True)
class Incident:
    """Alerts sharing a cause: the lead alert (strongest evidence) and every segment and signal involved."""

    incident_id: str
    lead: Alert
    alerts: tuple[Alert, ...]

    @property
    def status(self) -> str:
        """``open`` while any of its alerts is open, else ``superseded``/``closed`` as its lead."""
        return "open" if any(a.status == "open" for a in self.alerts) else self.lead.status

    @property
    def segments(self) -> list[str]:
        """Segment labels involved, most specific first (``all`` for all traffic)."""
        seen: dict[str, int] = {}
        for a in self.alerts:
            seen.setdefault(_label(a.segment), len(a.segment))
        return sorted(seen, key=lambda s: (-seen[s], s))

    @property
    def signals(self) -> list[str]:
        """Signals involved, sorted."""
        return sorted({a.signal for a in self.alerts})

    @property
    def started_at(self) -> datetime:
        return min(a.started_at for a in self.alerts)

    @property
    def detected_at(self) -> datetime:
        return min(a.detected_at for a in self.alerts)

    @property
    def opened_by(self) -> Alert:
        """The alarm that opened the incident (the one a person was notified of); the earliest when that alarm is
        not among :attr:`alerts` (read with a filter)."""
        return next((a for a in self.alerts if a.opens_incident), self.alerts[0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``parity status --json``'s ``incidents[]``): the lead's explanation, the segments and
        signals involved, and every alarm as ``evidence`` (the lead first, then the open ones, strongest first)."""
        ranked = sorted(self.alerts, key=lambda a: (a is self.lead, a.status == "open", *_strength(a)), reverse=True)
        return {
            "id": self.incident_id,
            "status": self.status,
            "lead": self.lead.alert_id,
            "explanation": explain_alert(self.lead),
            "signal": self.lead.signal,
            "segment": dict(self.lead.segment),
            "segments": self.segments,
            "signals": self.signals,
            "alerts": [a.alert_id for a in self.alerts],
            "opened_by": self.opened_by.alert_id,
            "evidence": [
                {
                    "id": a.alert_id,
                    "signal": a.signal,
                    "segment": _label(a.segment),
                    "status": a.status,
                    "explanation": explain_alert(a),
                    "detected_at": a.detected_at.isoformat(),
                    "n_after": a.n_after,
                }
                for a in ranked
            ],
            "started_at": self.started_at.isoformat(),
            "detected_at": self.detected_at.isoformat(),
            "attributed_changes": [c.change_id for c in self.lead.attributed_changes],
        }


def group_incidents(alerts: Sequence[Alert], *, open_only: bool = False) -> list[Incident]:
    """Group ``alerts`` by ``Alert.incident`` (an alert without one is its own incident), earliest detection
    first; ``open_only`` keeps incidents with an open alert. The lead is chosen among the open alerts when there
    are any (a superseded alert was replaced by a better one)."""
    groups: dict[str, list[Alert]] = {}
    for a in sorted(alerts, key=lambda a: a.detected_at):
        groups.setdefault(a.incident or a.alert_id, []).append(a)
    out: list[Incident] = []
    for incident_id, members in groups.items():
        candidates = [a for a in members if a.status == "open"] or members
        lead = max(candidates, key=_strength)
        incident = Incident(incident_id, lead, tuple(members))
        if not open_only or incident.status == "open":
            out.append(incident)
    return out
