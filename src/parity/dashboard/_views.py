"""The dashboard's views of one snapshot, as JSON-ready dicts: what each ``/api/...`` endpoint answers.

Every view is computed from one :class:`~parity.dashboard._snapshot.Snapshot` (so the alert list, the timeline
and a segment view always agree) and never writes anywhere. The per-record signal table and the routing findings
are computed once per snapshot, on first use.

>>> from datetime import datetime, timedelta, timezone
>>> from parity.monitor import Alert, DetectorObservation, Record
>>> from parity.dashboard._snapshot import Snapshot
>>> t = datetime(2025, 8, 25, tzinfo=timezone.utc)
>>> recs = tuple(Record(record_id=f"r{i}", time=t + timedelta(hours=i), model="S", platform=("gpu", "tpu")[i % 2],
...                     observations=(DetectorObservation("unexpected_script", i % 4 == 3, 0.9),)) for i in range(8))
>>> alert = Alert("a1", "unexpected_script", {"platform": "tpu"}, t, t + timedelta(hours=3), 0.5, 0.0, 0.5, 2)
>>> views = DashboardViews(Snapshot(recs, (alert,), (), ()))
>>> views.overview()["records"], [a["id"] for a in views.alerts()["alerts"]]
(8, ['a1'])
>>> [(i["id"], i["evidence"][0]["id"]) for i in views.alerts()["incidents"]]  # the alert a person sees, per fault
[('a1', 'a1')]
>>> views.segment({"platform": "tpu"})["signals"][0]["signal"]
'unexpected_script'
>>> [s["segment"] for s in views.segments()][:2]
['all', 'platform=tpu']
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from parity._exceptions import InvalidInputError
from parity.dashboard._bins import MAX_BINS, bins_for
from parity.dashboard._examples import alert_examples
from parity.dashboard._figures import segment_figure, timeline_figure
from parity.dashboard._routing import RoutingFindings, routing_findings
from parity.dashboard._segment import segment_text
from parity.dashboard._series import SignalTable, segment_series, signal_table
from parity.dashboard._snapshot import Snapshot
from parity.dashboard._timeline import TimelineRow, resolving_change, timeline_rows
from parity.monitor import Alert
from parity.monitor.alerting.alerts import explain_alert
from parity.monitor.detection.audit import PoolContextRule
from parity.monitor.detection.incidents import group_incidents

__all__ = ["ROUTING_LIMIT", "DashboardViews"]

#: Sessions listed by the routing view (the counts cover them all).
ROUTING_LIMIT = 50

#: Segment views kept per snapshot.
SEGMENT_CACHE_SIZE = 64

#: Dimensions offered as one-dimension segments in the segment picker.
PICKER_DIMENSIONS = ("model", "platform", "pool", "context_class")


class DashboardViews:
    """The views of ``snapshot`` (each record's ``context_class`` as it was built: never reclassified here)."""

    def __init__(self, snapshot: Snapshot, *, max_bins: int = MAX_BINS) -> None:
        self.snapshot = snapshot
        self.bins = bins_for(snapshot.start, snapshot.end, max_bins=max_bins)
        self.rows: list[TimelineRow] = timeline_rows(snapshot.alerts, snapshot.changes)
        self._lock = threading.Lock()  # views are read from worker threads; compute each lazy part once
        self._table: SignalTable | None = None
        self._routing: RoutingFindings | None = None
        self._segments: dict[str, dict[str, Any]] = {}
        self._by_id = {a.alert_id: a for a in snapshot.alerts}
        self._changes = {c.change_id: c for c in snapshot.changes}

    @property
    def table(self) -> SignalTable:
        """Every record's signals (computed on first use)."""
        with self._lock:
            if self._table is None:
                s = self.snapshot
                self._table = signal_table(s.records, s.feedback, s.alerts, bins=self.bins)
            return self._table

    @property
    def routing_findings(self) -> RoutingFindings:
        """The routing audit's findings (computed on first use)."""
        with self._lock:
            if self._routing is None:
                self._routing = routing_findings(self.snapshot.records, rule=PoolContextRule())
            return self._routing

    def _fix(self, alert: Alert) -> dict[str, str] | None:
        if not alert.attributed_changes:
            return None
        cause = self._changes.get(alert.attributed_changes[0].change_id)
        if cause is None:
            return None
        fix = resolving_change(cause, self.snapshot.changes, alert.segment, after=alert.started_at)
        return None if fix is None else {"change_id": fix.change_id, "time": fix.time.isoformat(), "kind": fix.kind}

    # -- views -------------------------------------------------------------------------------------------
    def overview(self) -> dict[str, Any]:
        """Counts and span of the store, the bin width, the longest short-context request stored (the records'
        context classes were decided when they were built, at the fleet's split) and whether capture was on."""
        s = self.snapshot
        incidents = group_incidents(s.alerts)
        return {
            "records": len(s.records),
            "alerts": len(s.alerts),
            "open_alerts": sum(a.status == "open" for a in s.alerts),
            "incidents": len(incidents),
            "open_incidents": sum(i.status == "open" for i in incidents),
            "changes": len(s.changes),
            "feedback": len(s.feedback),
            "start": s.start.isoformat(),
            "end": s.end.isoformat(),
            "bin_width_s": self.bins.width.total_seconds(),
            "bins": self.bins.count,
            "short_context_max_tokens": self.snapshot.short_context_max_tokens,
            "capture_on": s.capture_on,
            "taken_at": s.taken_at.isoformat(),
            "segments": self.segments(),
        }

    def segments(self) -> list[dict[str, Any]]:
        """Segments worth a view: all traffic, each alerted segment (newest alert first: the page opens on it),
        then each value of the picker dimensions that has traffic."""
        out: dict[str, dict[str, Any]] = {"all": {"segment": "all", "alerted": False}}
        newest_first = sorted(
            (a for a in self.snapshot.alerts if a.status != "superseded"), key=lambda a: a.detected_at, reverse=True
        )
        for alert in newest_first:
            text = segment_text(alert.segment)
            out.setdefault(text, {"segment": text, "alerted": True})
        values: dict[str, set[str]] = {d: set() for d in PICKER_DIMENSIONS}
        for seg in self.table.finest:
            for d in PICKER_DIMENSIONS:
                values[d].add(seg[d])
        for d in PICKER_DIMENSIONS:
            for v in sorted(values[d]):
                text = segment_text({d: v})
                out.setdefault(text, {"segment": text, "alerted": False})
        return list(out.values())

    def timeline(self) -> dict[str, Any]:
        """The timeline's rows and figure."""
        s = self.snapshot
        return {
            "rows": [r.to_dict() for r in self.rows],
            "figure": timeline_figure(self.rows, s.changes, start=s.start, end=s.end, alerts=s.alerts),
        }

    def alerts(self) -> dict[str, Any]:
        """The incidents - the alerts a person sees, one per fault (``Incident.to_dict()``, newest first, with the
        lead's segment in URL form and the fix of its attributed change) - and every alarm, their evidence
        (``Alert.to_dict()``, newest detection first, with its segment's URL form, the fix of its attributed
        change, its incident and a readable explanation)."""
        out = []
        for alert in sorted(self.snapshot.alerts, key=lambda a: a.detected_at, reverse=True):
            out.append(
                alert.to_dict()
                | {"segment_text": segment_text(alert.segment), "fix": self._fix(alert)}
                | {"explanation": explain_alert(alert), "incident_id": alert.incident or alert.alert_id}
            )
        incidents = [
            incident.to_dict() | {"segment_text": segment_text(incident.lead.segment), "fix": self._fix(incident.lead)}
            for incident in reversed(group_incidents(self.snapshot.alerts))
        ]
        return {"incidents": incidents, "alerts": out}

    def examples(self, alert_id: str) -> dict[str, Any]:
        """The requests behind one alert (see ``_examples``); unknown ids are an :class:`InvalidInputError`."""
        alert = self._by_id.get(alert_id)
        if alert is None:
            raise InvalidInputError("alert_id", "must name an alert in the store", alert_id)
        fix = self._fix(alert)
        until = None
        if fix is not None:
            until = next(c.time for c in self.snapshot.changes if c.change_id == fix["change_id"])
        return alert_examples(alert, self.snapshot.records, self.table, until=until).to_dict()

    def segment(self, segment: Mapping[str, str]) -> dict[str, Any]:
        """One segment's signals with control bands, traffic share and affected fraction, and the figure (kept for
        the snapshot's lifetime: building a figure costs ~0.3 s)."""
        key = segment_text(segment)
        cached = self._segments.get(key)
        if cached is None:
            if len(self._segments) >= SEGMENT_CACHE_SIZE:
                self._segments.clear()
            cached = self._segments[key] = self._segment(segment)
        return cached

    def _segment(self, segment: Mapping[str, str]) -> dict[str, Any]:
        s = self.snapshot
        series = segment_series(self.table, segment, alerts=s.alerts, changes=s.changes, rows=self.rows)
        drawn = [x for x in series.signals if x.alerted or x.total > 0]
        return {
            "segment": segment_text(segment),
            "requests": sum(series.requests),
            "bin_width_s": self.bins.width.total_seconds(),
            "signals": [
                {
                    "signal": x.signal,
                    "baseline": x.band.center,
                    "baseline_source": x.baseline_source,
                    "baseline_until": x.baseline_until.isoformat() if x.baseline_until else None,
                    "alerted": x.alerted,
                    "flagged": x.total,
                    "requests": sum(x.n),
                    "bins_outside_band": len(x.outside()),
                }
                for x in drawn
            ],
            "quiet_signals": [x.signal for x in series.signals if x not in drawn],
            "figure": segment_figure(series, s.alerts, s.changes),
        }

    def routing(self, *, limit: int = ROUTING_LIMIT) -> dict[str, Any]:
        """The routing audit's findings, the ``limit`` sessions with most violations."""
        return self.routing_findings.to_dict(limit=limit) | {
            "short_context_max_tokens": self.snapshot.short_context_max_tokens
        }

    def changes(self) -> dict[str, Any]:
        """The change log, oldest first."""
        return {"changes": [c.to_dict() for c in self.snapshot.changes]}

    def feedback(self) -> dict[str, Any]:
        """Feedback events, oldest first."""
        return {"feedback": [e.to_dict() for e in self.snapshot.feedback]}
