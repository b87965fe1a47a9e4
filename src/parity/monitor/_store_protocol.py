"""The one small interface every record store implements (DuckDB here; PostgreSQL in a later issue).

Writers append; readers never mutate. Nothing above the store knows which engine is behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from parity.monitor._records import Alert, Change, FeedbackEvent, Record


@runtime_checkable
class Store(Protocol):
    """Persistence for records, feedback, changes and alerts."""

    def write_records(self, records: Sequence[Record]) -> None: ...

    def write_feedback(self, events: Sequence[FeedbackEvent]) -> None: ...

    def write_changes(self, changes: Sequence[Change]) -> None: ...

    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        """Insert or replace alerts by ``alert_id``."""
        ...

    def records(self, *, since: datetime | None = None, until: datetime | None = None) -> list[Record]: ...

    def feedback(self) -> list[FeedbackEvent]: ...

    def changes(self) -> list[Change]: ...

    def alerts(self, *, open_only: bool = False) -> list[Alert]: ...

    def close(self) -> None: ...
