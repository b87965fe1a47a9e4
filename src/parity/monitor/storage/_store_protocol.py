"""The store contract, in two halves: :class:`StoreReader` (what ``parity status``, the dashboard and a checkpoint
replay call) and :class:`StoreWriter` (what the monitor's worker calls); :class:`Store` is both, and
:class:`MetaStore` the ``meta`` table a writer keeps its salt and checkpoints in.

Writers append (alerts and changes: insert or replace by id); readers never mutate. Nothing above the store knows
which engine is behind it. Every protocol is runtime-checkable, so a caller that needs a half tests for it with
``isinstance`` rather than probing attributes:

>>> from parity.monitor import HTTPStore, MemoryStore
>>> isinstance(MemoryStore(), Store), isinstance(MemoryStore(), MetaStore)
(True, True)
>>> view = HTTPStore("http://127.0.0.1:9")
>>> isinstance(view, StoreReader), isinstance(view, StoreWriter), isinstance(view, MetaStore)
(True, False, False)
>>> view.close()
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from parity.monitor._records import Alert, Change, FeedbackEvent, Record, RecordColumns

__all__ = ["MetaStore", "RecordColumnWriter", "RecordIdReader", "Store", "StoreReader", "StoreWriter"]


@runtime_checkable
class StoreReader(Protocol):
    """The read half: records in a time window, feedback, changes and alerts, each in time order (whoever opened
    the store closes it: a reader is handed one)."""

    def records(self, *, since: datetime | None = None, until: datetime | None = None) -> list[Record]: ...

    def feedback(self) -> list[FeedbackEvent]: ...

    def changes(self) -> list[Change]: ...

    def alerts(self, *, open_only: bool = False) -> list[Alert]: ...


@runtime_checkable
class StoreWriter(Protocol):
    """The write half: append records and feedback; insert or replace changes and alerts by id."""

    def write_records(self, records: Sequence[Record]) -> None: ...

    def write_feedback(self, events: Sequence[FeedbackEvent]) -> None: ...

    def write_changes(self, changes: Sequence[Change]) -> None: ...

    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        """Insert or replace alerts by ``alert_id``."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Store(StoreReader, StoreWriter, Protocol):
    """A store that is read and written (DuckDB, PostgreSQL, memory)."""


@runtime_checkable
class RecordIdReader(Protocol):
    """A store that can say which record ids it holds in a time window without reading the records (the worker's
    de-duplication of a replayed or re-read batch asks this; a store without it is asked for the records)."""

    def stored_record_ids(self, *, since: datetime, until: datetime) -> set[str]: ...


@runtime_checkable
class RecordColumnWriter(Protocol):
    """A store that appends a batch of records given as columns (:class:`~parity.monitor._records.RecordColumns`),
    the same rows as ``write_records`` of its records (``parity ingest``'s fast path; the worker gives a store without
    it the records)."""

    def write_record_columns(self, columns: RecordColumns) -> None: ...


@runtime_checkable
class MetaStore(Protocol):
    """A store's ``meta`` table: small persisted settings (the session-hash salt, monitor checkpoints)."""

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...
