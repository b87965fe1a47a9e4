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
>>> long_context_threshold(store)
8192
>>> store.set_meta("long_context_tokens", "192")
>>> long_context_threshold(store), long_context_threshold(store, 4096)
(192, 4096)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from parity._exceptions import InvalidInputError
from parity.monitor import (
    LONG_CONTEXT_THRESHOLD_TOKENS,
    Alert,
    Change,
    FeedbackEvent,
    MetaStore,
    Record,
    StoreReader,
)
from parity.monitor.store import LONG_CONTEXT_KEY

__all__ = ["Snapshot", "StoreReader", "long_context_threshold", "take_snapshot"]


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


def long_context_threshold(store: object, configured: int | None = None) -> int:
    """Where short context ends, in tokens: ``configured`` when given, else the store's ``meta`` key
    ``long_context_tokens`` (written by the fleet's recorder; only a :class:`~parity.monitor.MetaStore` has one), else
    the record default (:data:`parity.monitor.LONG_CONTEXT_THRESHOLD_TOKENS`). It serves only records no monitor
    decided: a decided record carries its ``context_class``."""
    if configured is not None:
        if isinstance(configured, bool) or not isinstance(configured, int) or configured < 1:
            raise InvalidInputError("long_context_tokens", "must be an integer >= 1", configured)
        return configured
    if not isinstance(store, MetaStore):
        return LONG_CONTEXT_THRESHOLD_TOKENS
    value = store.get_meta(LONG_CONTEXT_KEY)
    if value is None:
        return LONG_CONTEXT_THRESHOLD_TOKENS
    try:
        tokens = int(value)
    except ValueError:
        tokens = 0
    if tokens < 1:
        raise InvalidInputError(
            "long_context_tokens", "must be an integer >= 1", value, detail=f"the store's meta key {LONG_CONTEXT_KEY}"
        )
    return tokens
