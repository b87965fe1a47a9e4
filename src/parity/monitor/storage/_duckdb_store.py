"""``DuckDBStore``: the default store, one embedded DuckDB file, schema versioned and migrated on open.

Layout (schema version 3; :data:`MIGRATIONS` says what each version added):
``schema_migrations(version, description, applied_at)``, ``meta(key, value)``, ``records`` (one flat row per
:class:`Record`, read and written by ``parity.monitor.storage._record_rows`` as the PostgreSQL store does:
``observations``, ``logprob_summary`` and the decided ``signals`` as JSON text),
``feedback``, ``changes`` (replace by id) and ``alerts`` (replace by id; the alert's ``to_dict()`` as JSON
plus the columns used to filter). Times are ``TIMESTAMPTZ`` in UTC.

Writes are batched: a batch of records becomes one columnar insert (a dict of numpy arrays that DuckDB scans
directly, no pandas or Arrow needed), which is what reaches >= 50,000 records/s (``benchmarks/bench_ingest.py``).

Concurrency: DuckDB lets one process open a file for writing, and no other process may open it meanwhile (not
even read-only). So while ``parity proxy`` writes a store, readers go through the proxy: it serves read-only
JSON at ``/parity/alerts``, ``/parity/records``, ``/parity/records/summary``, ``/parity/feedback`` and
``/parity/changes``, and ``open_store("http://127.0.0.1:PORT")`` returns an :class:`HTTPStore` reading them.
When no proxy runs, ``open_store(path, read_only=True)`` opens the file directly.

>>> import tempfile, os
>>> from datetime import datetime, timezone
>>> from parity.monitor import Record, DetectorObservation
>>> path = os.path.join(tempfile.mkdtemp(), "parity.duckdb")
>>> store = DuckDBStore(path)
>>> store.schema_version
3
>>> store.write_records([Record(record_id="r1", time=datetime(2025, 8, 5, tzinfo=timezone.utc), model="S",
...                             observations=(DetectorObservation("degeneration", True, 0.7),))])
>>> store.records()[0].observations
(DetectorObservation(detector='degeneration', flagged=True, score=0.7),)
>>> store.close()
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np

from parity._exceptions import StoreError
from parity._optional import import_optional
from parity.monitor._codec import alert_from_dict, change_from_dict, feedback_from_dict
from parity.monitor._records import (
    LONG_CONTEXT_THRESHOLD_TOKENS,
    Alert,
    Change,
    FeedbackEvent,
    Record,
    RecordColumns,
)
from parity.monitor.storage._record_rows import (
    LONG_CONTEXT_KEY,
    RECORD_FIELDS,
    from_us,
    observations_json,
    record_from_row,
    signals_json,
    summary_json,
    us,
)
from parity.monitor.storage._store_summary import StoreSummary

_RECORD_COLUMNS = """
    record_id VARCHAR NOT NULL, time TIMESTAMPTZ NOT NULL, model VARCHAR NOT NULL, pool VARCHAR, platform VARCHAR,
    region VARCHAR, config_version VARCHAR, server VARCHAR, context_tokens INTEGER, output_tokens INTEGER,
    session_hash VARCHAR, temperature DOUBLE, top_p DOUBLE, top_k INTEGER, max_tokens INTEGER,
    finish_reason VARCHAR, status_code INTEGER, latency_ms DOUBLE, observations VARCHAR, logprob_summary VARCHAR,
    captured_text VARCHAR, source VARCHAR, schema_version INTEGER
"""

#: Ordered migrations: (version, description, SQL statements). Append only; never edit a released one.
MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "records, feedback, changes, alerts, meta",
        (
            "CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)",
            f"CREATE TABLE records ({_RECORD_COLUMNS})",
            "CREATE TABLE feedback (response_id VARCHAR NOT NULL, time TIMESTAMPTZ NOT NULL, kind VARCHAR NOT NULL,"
            " schema_version INTEGER)",
            "CREATE TABLE changes (change_id VARCHAR PRIMARY KEY, time TIMESTAMPTZ NOT NULL, kind VARCHAR,"
            " scope VARCHAR, description VARCHAR)",
            "CREATE TABLE alerts (alert_id VARCHAR PRIMARY KEY, signal VARCHAR, status VARCHAR,"
            " detected_at TIMESTAMPTZ, payload VARCHAR NOT NULL)",
        ),
    ),
    (
        2,
        "records.request_tokens: the proxy's token estimate of the forwarded request",
        ("ALTER TABLE records ADD COLUMN request_tokens INTEGER",),
    ),
    (
        3,
        "records.context_class, signals (the monitor's per-record signal values), parity_version",
        (
            "ALTER TABLE records ADD COLUMN context_class VARCHAR",
            "ALTER TABLE records ADD COLUMN signals VARCHAR",
            "ALTER TABLE records ADD COLUMN parity_version VARCHAR",
            # older records: split where the writer said its fleet splits (meta), else at the record default
            "UPDATE records SET context_class = CASE WHEN context_tokens > coalesce((SELECT TRY_CAST(value AS"
            f" INTEGER) FROM meta WHERE key = '{LONG_CONTEXT_KEY}'), {LONG_CONTEXT_THRESHOLD_TOKENS}) THEN 'long'"
            " ELSE 'short' END",
        ),
    ),
)

#: The newest schema version this code knows.
STORE_SCHEMA_VERSION = MIGRATIONS[-1][0]


def _obj(values: Sequence[Any]) -> np.ndarray[Any, Any]:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def _num(values: Sequence[float | int | None]) -> np.ndarray[Any, Any]:
    """Numbers and ``None`` as float64 with NaN for ``None`` (numpy's own object-to-float conversion; a column of
    ``None`` alone, a field no record of the batch has, without it: that conversion takes ~80 ns a value)."""
    if values and values[0] is None and values.count(None) == len(values):
        return np.full(len(values), np.nan)
    return _obj(values).astype(np.float64)


def _json_column(
    values: Sequence[Any], to_json: Callable[[Any], str | None], empty: str | None
) -> np.ndarray[Any, Any]:
    """A JSON text column: ``to_json`` of each value, ``empty`` for an empty one (``()``, ``{}`` or ``None``; a
    column of empty values - a batch without detectors or monitor - in one C-level test, not a call per value)."""
    if not any(values):
        return np.full(len(values), empty, dtype=object)
    return _obj([to_json(v) if v else empty for v in values])


def _signals_column(values: Sequence[Any]) -> np.ndarray[Any, Any]:
    """The decided signals as JSON text (an empty dict is ``{}``, only ``None`` is NULL)."""
    if values.count(None) == len(values):
        return np.full(len(values), None, dtype=object)
    return _obj([signals_json(s) for s in values])


#: Every record field in :data:`RECORD_FIELDS` order, read in one call per record.
_RECORD_ATTRS = attrgetter(*RECORD_FIELDS)
#: Columns written as they are: text (or ``None``), integers, and numbers that may be ``None`` (NaN in the batch)
_TEXT_FIELDS = ("model", "pool", "platform", "region", "config_version", "server", "session_hash", "finish_reason",
                "captured_text", "source", "context_class", "parity_version")  # fmt: skip
_INT_FIELDS = ("context_tokens", "output_tokens", "status_code", "schema_version")
_NULLABLE_NUMBER_FIELDS = ("temperature", "top_p", "top_k", "max_tokens", "latency_ms", "request_tokens")


def _nullable(col: str, cast: str) -> str:
    return f"CASE WHEN isnan({col}) THEN NULL ELSE {col} END::{cast}"


#: A batch's columns (a dict of numpy arrays registered as ``batch``) into the records table.
_INSERT_BATCH = (
    "INSERT INTO records SELECT record_id, make_timestamptz(t_us), model, pool, platform, region, "
    "config_version, server, context_tokens::INTEGER, output_tokens::INTEGER, session_hash, "
    f"{_nullable('temperature', 'DOUBLE')}, {_nullable('top_p', 'DOUBLE')}, {_nullable('top_k', 'INTEGER')}, "
    f"{_nullable('max_tokens', 'INTEGER')}, finish_reason, status_code::INTEGER, "
    f"{_nullable('latency_ms', 'DOUBLE')}, observations, logprob_summary, captured_text, source, "
    f"schema_version::INTEGER, {_nullable('request_tokens', 'INTEGER')}, context_class, signals, parity_version "
    "FROM batch"
)


class DuckDBStore:
    """A :class:`~parity.monitor.Store` in one DuckDB file (``":memory:"`` for a throwaway one).

    ``read_only=True`` opens an existing file without taking the write lock (fails while a writer holds it).

    Thread-safe, following DuckDB's concurrency model: the database is opened once (one connection, which holds
    the file), and every operation runs on its own short-lived cursor (``connection.cursor()``, a connection of
    its own to the same database), fully fetched and closed before the operation returns, serialized by a lock.
    A shared connection is never left holding a result: a result not read to its end (``fetchone()`` of a row)
    blocks every later ``register``/``execute`` on that connection with "connection has an unfinished result",
    which is how a store reopened on an existing file (the salt read back with ``fetchone``) once stored nothing.
    """

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        duckdb = import_optional("duckdb", extra="monitor")
        self.path = str(path)
        self.read_only = read_only
        if read_only and self.path != ":memory:" and not Path(self.path).exists():
            raise StoreError(f"store {self.path} does not exist")
        try:
            self._con: Any = duckdb.connect(self.path, read_only=read_only)
        except duckdb.IOException as err:
            raise StoreError(
                f"cannot open store {self.path}: {err}. DuckDB allows one writing process per file; while "
                "`parity proxy` writes it, read through the proxy instead (e.g. --proxy http://127.0.0.1:PORT)"
            ) from err
        self._lock = threading.Lock()
        self._con.execute("SET GLOBAL TimeZone = 'UTC'")  # GLOBAL: every cursor sees it
        self.schema_version = self._migrate()

    # -- schema -------------------------------------------------------------------------------------------
    def _migrate(self) -> int:
        con = self._con.cursor()
        try:
            return self._migrate_on(con)
        finally:
            con.close()

    def _migrate_on(self, con: Any) -> int:
        has_table = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
        ).fetchall()[0][0]
        current = 0
        if has_table:
            current = con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchall()[0][0]
        if current > STORE_SCHEMA_VERSION:
            raise StoreError(
                f"store {self.path} has schema version {current}, newer than this parity supports "
                f"({STORE_SCHEMA_VERSION}); upgrade parity"
            )
        pending = [m for m in MIGRATIONS if m[0] > current]
        if pending and self.read_only:
            raise StoreError(f"store {self.path} needs migration to schema {STORE_SCHEMA_VERSION}; open it writable")
        for version, description, statements in pending:
            con.execute("BEGIN TRANSACTION")
            try:
                if version == 1:
                    con.execute(
                        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                        " description VARCHAR, applied_at TIMESTAMPTZ)"
                    )
                for sql in statements:
                    con.execute(sql)
                con.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, make_timestamptz(?::BIGINT))",
                    [version, description, us(datetime.now(UTC))],
                )
                con.execute("COMMIT")
            except Exception as err:
                con.execute("ROLLBACK")
                raise StoreError(f"migration {version} ({description}) of {self.path} failed: {err}") from err
            current = version
        return current

    def _run(self, fn: Callable[[Any], Any]) -> Any:
        with self._lock:
            if self._con is None:
                raise StoreError(f"store {self.path} is closed")
            cursor = None
            try:
                cursor = self._con.cursor()  # one cursor per operation, closed below: nothing left unfetched
                return fn(cursor)
            except StoreError:
                raise
            except Exception as err:
                if type(err).__module__.startswith(("duckdb", "_duckdb")):
                    raise StoreError(f"store {self.path}: {err}") from err
                raise
            finally:
                if cursor is not None:
                    cursor.close()

    # -- writes -------------------------------------------------------------------------------------------
    def write_records(self, records: Sequence[Record]) -> None:
        """Append records in one columnar insert (batch them: per-call overhead is ~1 ms)."""
        if not records:
            return
        # one C-level pass per batch: every record's fields as a tuple, transposed into columns
        columns = list(zip(*map(_RECORD_ATTRS, records), strict=True))
        c = dict(zip(RECORD_FIELDS, columns, strict=True))
        self._insert(c, np.array([us(t) for t in c["time"]], dtype=np.int64))

    def write_record_columns(self, columns: RecordColumns) -> None:
        """:meth:`write_records` of a batch already in columns (``parity ingest``'s fast path): the same rows, without
        a :class:`Record` per row."""
        if len(columns):
            c = columns.columns
            self._insert(c, np.array(c["time"], dtype=np.int64))

    def _insert(self, c: Mapping[str, Sequence[Any]], t_us: np.ndarray[Any, Any]) -> None:
        """One ``INSERT ... SELECT`` of a batch: ``c`` maps each of :data:`RECORD_FIELDS` to its values (``time``
        unused: ``t_us`` holds it in microseconds)."""
        batch = {
            "record_id": _obj(c["record_id"]),
            "t_us": t_us,
            **{name: _obj(c[name]) for name in _TEXT_FIELDS},
            **{name: np.array(c[name], dtype=np.int64) for name in _INT_FIELDS},
            **{name: _num(c[name]) for name in _NULLABLE_NUMBER_FIELDS},
            "observations": _json_column(c["observations"], observations_json, "[]"),
            "logprob_summary": _json_column(c["logprob_summary"], summary_json, None),
            "signals": _signals_column(c["signals"]),
        }

        def go(con: Any) -> None:
            con.register("batch", batch)
            try:
                con.execute(_INSERT_BATCH)
            finally:
                con.unregister("batch")

        self._run(go)

    def write_feedback(self, events: Sequence[FeedbackEvent]) -> None:
        rows = [[e.response_id, us(e.time), e.kind, e.schema_version] for e in events]
        if rows:
            self._run(
                lambda con: con.executemany("INSERT INTO feedback VALUES (?, make_timestamptz(?::BIGINT), ?, ?)", rows)
            )

    def write_changes(self, changes: Sequence[Change]) -> None:
        """Insert or replace changes by ``change_id``."""
        rows = [[c.change_id, us(c.time), c.kind, json.dumps(c.scope), c.description] for c in changes]
        if rows:
            self._run(
                lambda con: con.executemany(
                    "INSERT OR REPLACE INTO changes VALUES (?, make_timestamptz(?::BIGINT), ?, ?, ?)", rows
                )
            )

    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        """Insert or replace alerts by ``alert_id``."""
        rows = [
            [a.alert_id, a.signal, a.status, us(a.detected_at), json.dumps(a.to_dict() | {"schema_version": v})]
            for a in alerts
            for v in (a.schema_version,)
        ]
        if rows:
            self._run(
                lambda con: con.executemany(
                    "INSERT OR REPLACE INTO alerts VALUES (?, ?, ?, make_timestamptz(?::BIGINT), ?)", rows
                )
            )

    # -- reads --------------------------------------------------------------------------------------------
    def records(self, *, since: datetime | None = None, until: datetime | None = None) -> list[Record]:
        """Records with ``since <= time < until``, in time order."""
        where, params = [], []
        if since is not None:
            where.append("time >= make_timestamptz(?::BIGINT)")
            params.append(us(since))
        if until is not None:
            where.append("time < make_timestamptz(?::BIGINT)")
            params.append(us(until))
        columns = ", ".join("epoch_us(time)" if c == "time" else c for c in RECORD_FIELDS)
        sql = (
            f"SELECT {columns} FROM records"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY time, record_id"
        )
        rows = self._run(lambda con: con.execute(sql, params).fetchall())
        return [record_from_row(row) for row in rows]

    def stored_record_ids(self, *, since: datetime, until: datetime) -> set[str]:
        """The ids of the records with ``since <= time < until``, without reading the records."""
        rows = self._run(
            lambda con: con.execute(
                "SELECT DISTINCT record_id FROM records WHERE time >= make_timestamptz(?::BIGINT)"
                " AND time < make_timestamptz(?::BIGINT)",
                [us(since), us(until)],
            ).fetchall()
        )
        return {r[0] for r in rows}

    def feedback(self) -> list[FeedbackEvent]:
        rows = self._run(
            lambda con: con.execute(
                "SELECT response_id, epoch_us(time), kind, schema_version FROM feedback ORDER BY time"
            ).fetchall()
        )
        return [
            feedback_from_dict({"response_id": r[0], "time": from_us(r[1]), "kind": r[2], "schema_version": r[3]})
            for r in rows
        ]

    def changes(self) -> list[Change]:
        rows = self._run(
            lambda con: con.execute(
                "SELECT change_id, epoch_us(time), kind, scope, description FROM changes ORDER BY time"
            ).fetchall()
        )
        return [
            change_from_dict(
                {
                    "change_id": r[0],
                    "time": from_us(r[1]),
                    "kind": r[2],
                    "scope": json.loads(r[3] or "{}"),
                    "description": r[4] or "",
                }
            )
            for r in rows
        ]

    def alerts(self, *, open_only: bool = False) -> list[Alert]:
        sql = "SELECT payload FROM alerts" + (" WHERE status = 'open'" if open_only else "") + " ORDER BY detected_at"
        rows = self._run(lambda con: con.execute(sql).fetchall())
        return [alert_from_dict(json.loads(r[0])) for r in rows]

    def get_meta(self, key: str) -> str | None:
        """A persisted setting (e.g. the session-hash salt), or ``None``."""
        rows = self._run(lambda con: con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchall())
        return None if not rows else str(rows[0][0])

    def set_meta(self, key: str, value: str) -> None:
        self._run(lambda con: con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value]))

    def summary(self) -> StoreSummary:
        """Counts of what the store holds, computed in SQL."""

        def go(con: Any) -> StoreSummary:
            n, first, last = con.execute(
                "SELECT count(*), epoch_us(min(time)), epoch_us(max(time)) FROM records"
            ).fetchall()[0]
            flags = con.execute(
                "SELECT o[1]::VARCHAR AS detector, sum(CASE WHEN o[2]::BOOLEAN THEN 1 ELSE 0 END) FROM ("
                " SELECT unnest(from_json(observations, '[\"JSON\"]')) AS j FROM records) t,"
                " LATERAL (SELECT from_json(j, '[\"JSON\"]') AS o) GROUP BY 1 ORDER BY 1"
            ).fetchall()
            segs = con.execute(
                "SELECT model, pool, platform, count(*) AS c FROM records GROUP BY ALL ORDER BY c DESC, model, pool,"
                " platform"
            ).fetchall()
            n_fb = con.execute("SELECT count(*) FROM feedback").fetchall()[0][0]
            n_ch = con.execute("SELECT count(*) FROM changes").fetchall()[0][0]
            n_al = con.execute("SELECT count(*) FROM alerts WHERE status = 'open'").fetchall()[0][0]
            return StoreSummary(
                records=int(n),
                feedback=int(n_fb),
                changes=int(n_ch),
                open_alerts=int(n_al),
                first_time=None if first is None else from_us(first),
                last_time=None if last is None else from_us(last),
                flags={json.loads(d) if d.startswith('"') else d: int(c) for d, c in flags},
                segments=[{"model": m, "pool": p, "platform": pl, "records": int(c)} for m, p, pl, c in segs],
            )

        result: StoreSummary = self._run(go)
        return result

    def close(self) -> None:
        """Checkpoint and release the file (idempotent)."""
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    def __enter__(self) -> DuckDBStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
