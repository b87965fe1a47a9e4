"""Drill-down from an alert to the requests behind it: metadata always, redacted text when capture was on.

The examples of an alert are the records of its segment, from when its signal moved (``started_at``) until its
fix (or the end of the store), on which the alert's signal is 1 (a detector flag, a routing violation, negative
feedback). Text is shown only as stored: the proxy keeps none unless started with ``--capture flagged``, and
then only the redacted text of flagged responses (``parity.monitor.intake.capture``).

>>> from datetime import datetime, timedelta, timezone
>>> from parity.monitor import Alert, DetectorObservation, Record
>>> from parity.dashboard._bins import bins_for
>>> from parity.dashboard._series import signal_table
>>> t = datetime(2025, 8, 25, tzinfo=timezone.utc)
>>> recs = [Record(record_id=f"r{i}", time=t + timedelta(hours=i), model="S", platform="tpu",
...                observations=(DetectorObservation("unexpected_script", i % 2 == 1, 0.9),),
...                captured_text="hello สวัสดี [EMAIL]" if i % 2 else None) for i in range(4)]
>>> table = signal_table(recs, bins=bins_for(t, recs[-1].time))
>>> alert = Alert("a1", "unexpected_script", {"platform": "tpu"}, t, t + timedelta(hours=2), 0.5, 0.0, 0.5, 3)
>>> found = alert_examples(alert, recs, table)
>>> found.capture_on, found.matched, [(e.record_id, e.captured_text) for e in found.examples]
(True, 2, [('r1', 'hello สวัสดี [EMAIL]'), ('r3', 'hello สวัสดี [EMAIL]')])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from parity.dashboard._segment import contains
from parity.dashboard._series import SignalTable
from parity.monitor import Alert, Record

__all__ = ["EXAMPLE_LIMIT", "Example", "Examples", "alert_examples"]

#: Most examples returned for one alert.
EXAMPLE_LIMIT = 20


@dataclass(frozen=True, slots=True)
class Example:
    """One request behind an alert: where it was served, the detector's score (for detector signals) and its
    captured, redacted text (``None`` when none was kept)."""

    record_id: str
    time: datetime
    model: str
    platform: str
    pool: str
    server: str
    session_hash: str | None
    context_tokens: int
    score: float | None
    captured_text: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "record_id": self.record_id,
            "time": self.time.isoformat(),
            "model": self.model,
            "platform": self.platform,
            "pool": self.pool,
            "server": self.server,
            "session_hash": self.session_hash,
            "context_tokens": self.context_tokens,
            "score": self.score,
            "captured_text": self.captured_text,
        }


@dataclass(frozen=True, slots=True)
class Examples:
    """The examples of alert ``alert_id``: ``matched`` requests in all, the first ``limit`` of them (those with
    captured text first, then by time); ``capture_on`` when any record of the store carries captured text."""

    alert_id: str
    signal: str
    capture_on: bool
    matched: int
    examples: tuple[Example, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "alert_id": self.alert_id,
            "signal": self.signal,
            "capture_on": self.capture_on,
            "matched": self.matched,
            "examples": [e.to_dict() for e in self.examples],
        }


def _score(record: Record, signal: str) -> float | None:
    for obs in record.observations:
        if obs.detector == signal:
            return obs.score if obs.score == obs.score else None
    return None


def alert_examples(
    alert: Alert,
    records: Sequence[Record],
    table: SignalTable,
    *,
    until: datetime | None = None,
    limit: int = EXAMPLE_LIMIT,
) -> Examples:
    """The requests behind ``alert`` (``records`` in the order ``table`` was built from) up to ``until``."""
    hits = [
        i
        for i, seg in enumerate(table.finest)
        if alert.signal in table.positive[i]
        and table.times[i] >= alert.started_at
        and (until is None or table.times[i] < until)
        and contains(alert.segment, seg)
    ]
    hits.sort(key=lambda i: (records[i].captured_text is None, table.times[i]))
    examples = tuple(
        Example(
            record_id=r.record_id,
            time=r.time,
            model=r.model,
            platform=r.platform,
            pool=r.pool,
            server=r.server,
            session_hash=r.session_hash,
            context_tokens=r.context_tokens,
            score=_score(r, alert.signal),
            captured_text=r.captured_text,
        )
        for r in (records[i] for i in hits[:limit])
    )
    capture_on = any(r.captured_text is not None for r in records)
    return Examples(alert.alert_id, alert.signal, capture_on, len(hits), examples)
