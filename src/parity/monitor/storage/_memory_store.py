"""``MemoryStore``: the in-process store shipped as the test double of the :class:`~parity.monitor.Store` protocol.

>>> from datetime import datetime, timezone
>>> from parity.monitor import Record
>>> store = MemoryStore()
>>> store.write_records([Record(record_id="r1", time=datetime(2025, 8, 5, tzinfo=timezone.utc), model="S")])
>>> [r.record_id for r in store.records()]
['r1']
>>> store.summary().records
1
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime

from parity.monitor._records import Alert, Change, FeedbackEvent, Record
from parity.monitor.storage._store_summary import StoreSummary, summarize


class MemoryStore:
    """Records, feedback, changes and alerts kept in lists; thread-safe; nothing persists after the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[Record] = []
        self._feedback: list[FeedbackEvent] = []
        self._changes: dict[str, Change] = {}
        self._alerts: dict[str, Alert] = {}
        self._meta: dict[str, str] = {}

    def write_records(self, records: Sequence[Record]) -> None:
        with self._lock:
            self._records.extend(records)

    def write_feedback(self, events: Sequence[FeedbackEvent]) -> None:
        with self._lock:
            self._feedback.extend(events)

    def write_changes(self, changes: Sequence[Change]) -> None:
        """Insert or replace changes by ``change_id``."""
        with self._lock:
            for change in changes:
                self._changes[change.change_id] = change

    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        """Insert or replace alerts by ``alert_id``."""
        with self._lock:
            for alert in alerts:
                self._alerts[alert.alert_id] = alert

    def records(self, *, since: datetime | None = None, until: datetime | None = None) -> list[Record]:
        """Records with ``since <= time < until``, in time order."""
        with self._lock:
            out = [r for r in self._records if (since is None or r.time >= since) and (until is None or r.time < until)]
        return sorted(out, key=lambda r: r.time)

    def stored_record_ids(self, *, since: datetime, until: datetime) -> set[str]:
        """The ids of the records with ``since <= time < until``."""
        with self._lock:
            return {r.record_id for r in self._records if since <= r.time < until}

    def feedback(self) -> list[FeedbackEvent]:
        with self._lock:
            return sorted(self._feedback, key=lambda e: e.time)

    def changes(self) -> list[Change]:
        with self._lock:
            return sorted(self._changes.values(), key=lambda c: c.time)

    def alerts(self, *, open_only: bool = False) -> list[Alert]:
        with self._lock:
            out = [a for a in self._alerts.values() if not open_only or a.status == "open"]
        return sorted(out, key=lambda a: a.detected_at)

    def get_meta(self, key: str) -> str | None:
        """A persisted setting (e.g. the session-hash salt), or ``None``."""
        with self._lock:
            return self._meta.get(key)

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._meta[key] = value

    def summary(self) -> StoreSummary:
        """Counts of what the store holds (the proxy's ``/parity/records/summary``)."""
        return summarize(
            self.records(),
            n_feedback=len(self.feedback()),
            n_changes=len(self.changes()),
            n_open_alerts=len(self.alerts(open_only=True)),
        )

    def close(self) -> None:
        """Nothing to release; present for the protocol."""
