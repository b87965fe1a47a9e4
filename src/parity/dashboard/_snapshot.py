"""What the dashboard reads: the read half of a store, taken in one consistent snapshot.

The dashboard never writes. It accepts any :class:`parity.monitor.StoreReader` (a ``DuckDBStore`` opened read-only,
a ``MemoryStore``, an ``HTTPStore`` reading a running proxy) and reads everything once per refresh into a
:class:`Snapshot`, from which every view is computed.

>>> from datetime import datetime, timezone
>>> from parity.monitor import MemoryStore, Record
>>> store = MemoryStore()
>>> store.write_records([Record(record_id="r1", time=datetime(2025, 8, 5, tzinfo=timezone.utc), model="S")])
>>> snap = take_snapshot(store)
>>> len(snap.records), snap.start.isoformat()
(1, '2025-08-05T00:00:00+00:00')

Each record carries its ``context_class``, decided when it was built (``parity.monitor.intake.scoring.RecordBuilder``,
at the split given to ``parity proxy``/``ingest``/``monitor``); the dashboard draws it as stored and never reclassifies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from parity.monitor import Alert, Change, FeedbackEvent, Record, StoreReader

__all__ = ["Snapshot", "StoreReader", "take_snapshot"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything in a store at one moment, in time order. ``start``/``end`` span the records (or, with none, the
    alerts and changes; a store holding nothing spans the hour before ``taken_at``)."""

    records: tuple[Record, ...]
    alerts: tuple[Alert, ...]
    changes: tuple[Change, ...]
    feedback: tuple[FeedbackEvent, ...]
    taken_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def start(self) -> datetime:
        return min(self._times(), default=self.taken_at - timedelta(hours=1))

    @property
    def end(self) -> datetime:
        return max(self._times(), default=self.taken_at)

    def _times(self) -> list[datetime]:
        if self.records:
            return [self.records[0].time, self.records[-1].time]
        return [c.time for c in self.changes] + [t for a in self.alerts for t in (a.started_at, a.detected_at)]

    @property
    def short_context_max_tokens(self) -> int | None:
        """The longest request (context tokens) among the records of ``context_class`` ``short``; ``None`` with none.
        The dashboard says it next to the classes, which were decided when each record was built."""
        return max((r.context_tokens for r in self.records if r.context_class == "short"), default=None)

    @property
    def capture_on(self) -> bool:
        """Whether any record carries captured (redacted) text."""
        return any(r.captured_text is not None for r in self.records)


def take_snapshot(store: StoreReader) -> Snapshot:
    """Read every record, alert, change and feedback event of ``store`` (never writes)."""
    records = sorted(store.records(), key=lambda r: r.time)
    return Snapshot(
        records=tuple(records),
        alerts=tuple(sorted(store.alerts(), key=lambda a: a.detected_at)),
        changes=tuple(sorted(store.changes(), key=lambda c: c.time)),
        feedback=tuple(sorted(store.feedback(), key=lambda e: e.time)),
    )
