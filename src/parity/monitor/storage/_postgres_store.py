"""``PostgresStore``: the shared store, one PostgreSQL database that several proxies and monitors write at once.

``open_store("postgresql://user@host:port/db")`` (and ``--store postgresql://...`` on every command that takes a
store) returns one. It holds the same data as :class:`~parity.monitor.DuckDBStore`, behind the same
:class:`~parity.monitor.Store` protocol plus ``get_meta``/``set_meta``/``summary``; nothing above the store knows
which engine is behind it.

Layout (schema version 3, :data:`PG_MIGRATIONS`): ``schema_migrations(version, description, applied_at)``,
``meta``, ``records`` (one flat row per :class:`Record`, read and written by ``parity.monitor.storage._record_rows`` as
the DuckDB store does; ``observations``, ``logprob_summary`` and the decided ``signals`` as JSON text -
text, not ``jsonb``, because scores may be NaN, which JSON proper cannot hold - plus the detectors and their flags
as two arrays, so :meth:`summary` counts flags in SQL), ``feedback``, ``changes`` and ``alerts`` (upserted by id).
Times are ``timestamptz``; every session runs in UTC, so times come back in UTC.

**Concurrency.** Each process opens a small connection pool (psycopg 3, ``psycopg_pool``); records are appended
with ``COPY ... FROM STDIN`` (one round trip per batch), alerts and changes are upserted by id
(``INSERT ... ON CONFLICT DO UPDATE``), so any number of processes write one store and readers see committed
batches while they do. Migrations take a transaction-level advisory lock, so two processes opening a fresh
database at once migrate it once.

**What it does not do.** It does not partition or expire records (a ``DELETE ... WHERE time < ...`` by an operator
does); it keeps one row per record as DuckDB does.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from parity._exceptions import StoreError
from parity._optional import import_optional
from parity.monitor._codec import alert_from_dict, change_from_dict, feedback_from_dict
from parity.monitor._records import (
    LONG_CONTEXT_THRESHOLD_TOKENS,
    Alert,
    Change,
    DetectorObservation,
    FeedbackEvent,
    Record,
)
from parity.monitor.storage._record_rows import LONG_CONTEXT_KEY, RECORD_FIELDS, record_from_row, record_row, us
from parity.monitor.storage._store_summary import StoreSummary

__all__ = ["PG_MIGRATIONS", "PG_SCHEMA_VERSION", "PostgresStore", "is_postgres_url", "redact_url"]

_RECORD_COLUMNS = """
    record_id TEXT NOT NULL, time TIMESTAMPTZ NOT NULL, model TEXT NOT NULL, pool TEXT, platform TEXT,
    region TEXT, config_version TEXT, server TEXT, context_tokens INTEGER, output_tokens INTEGER,
    session_hash TEXT, temperature DOUBLE PRECISION, top_p DOUBLE PRECISION, top_k INTEGER, max_tokens INTEGER,
    finish_reason TEXT, status_code INTEGER, latency_ms DOUBLE PRECISION, observations TEXT, logprob_summary TEXT,
    captured_text TEXT, source TEXT, schema_version INTEGER, detectors TEXT[] NOT NULL, flagged BOOLEAN[] NOT NULL
"""

#: The ``records`` columns in table order (``COPY`` writes them in this order).
_COPY_COLUMNS = (
    "record_id, time, model, pool, platform, region, config_version, server, context_tokens, output_tokens, "
    "session_hash, temperature, top_p, top_k, max_tokens, finish_reason, status_code, latency_ms, observations, "
    "logprob_summary, captured_text, source, schema_version, detectors, flagged, request_tokens, context_class, "
    "signals, parity_version"
)

#: ``records`` holds the detector arrays after ``schema_version`` (columns added later follow them): where they go
#: in a :func:`~parity.monitor.storage._record_rows.record_row`.
_TABLE_ORDER = RECORD_FIELDS.index("schema_version") + 1

#: Ordered migrations of the PostgreSQL schema: (version, description, SQL statements). The versions and their
#: meaning match the DuckDB store's ``MIGRATIONS``; the DDL is PostgreSQL's. Append only.
PG_MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "records, feedback, changes, alerts, meta",
        (
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            f"CREATE TABLE records ({_RECORD_COLUMNS})",
            "CREATE INDEX records_time ON records (time)",
            "CREATE TABLE feedback (response_id TEXT NOT NULL, time TIMESTAMPTZ NOT NULL, kind TEXT NOT NULL,"
            " schema_version INTEGER)",
            "CREATE TABLE changes (change_id TEXT PRIMARY KEY, time TIMESTAMPTZ NOT NULL, kind TEXT, scope TEXT,"
            " description TEXT)",
            "CREATE TABLE alerts (alert_id TEXT PRIMARY KEY, signal TEXT, status TEXT, detected_at TIMESTAMPTZ,"
            " payload TEXT NOT NULL)",
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
            "ALTER TABLE records ADD COLUMN context_class TEXT",
            "ALTER TABLE records ADD COLUMN signals TEXT",
            "ALTER TABLE records ADD COLUMN parity_version TEXT",
            # older records: split where the writer said its fleet splits (meta), else at the record default
            "UPDATE records SET context_class = CASE WHEN context_tokens > coalesce((SELECT CASE WHEN value ~"
            f" '^[0-9]{{1,9}}$' THEN value::integer END FROM meta WHERE key = '{LONG_CONTEXT_KEY}'),"
            f" {LONG_CONTEXT_THRESHOLD_TOKENS}) THEN 'long' ELSE 'short' END",
        ),
    ),
)

#: The newest PostgreSQL schema version this code knows.
PG_SCHEMA_VERSION = PG_MIGRATIONS[-1][0]

#: Advisory-lock key that serialises migrations across processes (any fixed 64-bit number; "parity" in ASCII).
_MIGRATION_LOCK = 0x706172697479

#: Connections per process: the monitor's writer, a reader (status, dashboard) and one spare.
POOL_MAX_SIZE = 4

#: Seconds to wait for a connection (from the pool, or to the server when opening).
CONNECT_TIMEOUT_S = 10.0


_ARRAYS: dict[tuple[tuple[str, bool], ...], tuple[str, str]] = {}

#: Distinct (detector, flagged) signatures whose array literals are cached (there are a handful in practice).
_ARRAY_CACHE_SIZE = 4096


def _array_literals(observations: Sequence[DetectorObservation]) -> tuple[str, str]:
    """The ``detectors`` and ``flagged`` columns as PostgreSQL array literals, cached per signature: psycopg's
    list dumper was half the ``COPY`` time.

    >>> _array_literals((DetectorObservation("a", True, 0.1), DetectorObservation("b", False, 0.0)))
    ('{"a","b"}', '{t,f}')
    """
    key = tuple((o.detector, o.flagged) for o in observations)
    out = _ARRAYS.get(key)
    if out is None:
        if len(_ARRAYS) >= _ARRAY_CACHE_SIZE:
            _ARRAYS.clear()
        names = ",".join('"' + d.replace("\\", "\\\\").replace('"', '\\"') + '"' for d, _ in key)
        out = _ARRAYS[key] = ("{" + names + "}", "{" + ",".join("t" if f else "f" for _, f in key) + "}")
    return out


def is_postgres_url(location: object) -> bool:
    """Whether ``location`` names a PostgreSQL store.

    >>> is_postgres_url("postgresql://parity@127.0.0.1:5432/parity"), is_postgres_url("parity.duckdb")
    (True, False)
    """
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs).

    >>> redact_url("postgresql://parity:s3cret@db:5432/parity")
    'postgresql://parity:***@db:5432/parity'
    """
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


class PostgresStore:
    """A :class:`~parity.monitor.Store` in a PostgreSQL database, shared by any number of processes.

    ``read_only=True`` never migrates (fails when the schema is missing or old) and opens read-only transactions.
    Thread-safe: every call takes a connection from the pool.
    """

    def __init__(self, url: str, *, read_only: bool = False, pool_size: int = POOL_MAX_SIZE) -> None:
        self._psycopg = import_optional("psycopg", extra="dist")
        pool_mod = import_optional("psycopg_pool", extra="dist")
        self.url = url
        self.path = redact_url(url)  # what messages show (the name DuckDBStore uses for its file)
        self.read_only = read_only
        self._closed = False
        self._lock = threading.Lock()

        def configure(conn: Any) -> None:
            conn.execute("SET TIME ZONE 'UTC'")
            if read_only:
                conn.execute("SET default_transaction_read_only = on")
            conn.commit()

        # one direct connection first: a wrong URL or a server that is down fails now, not after the pool's retries
        try:
            self._psycopg.connect(url, connect_timeout=int(CONNECT_TIMEOUT_S)).close()
        except self._psycopg.Error as err:
            raise StoreError(f"cannot connect to PostgreSQL store {self.path}: {err}") from err
        try:
            self._pool: Any = pool_mod.ConnectionPool(
                url,
                min_size=1,
                max_size=max(1, pool_size),
                configure=configure,
                timeout=CONNECT_TIMEOUT_S,
                open=False,
                kwargs={"connect_timeout": int(CONNECT_TIMEOUT_S)},
            )
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except Exception as err:
            raise StoreError(f"cannot connect to PostgreSQL store {self.path}: {err}") from err
        try:
            self.schema_version = self._migrate()
        except BaseException:
            self.close()
            raise

    # -- plumbing -----------------------------------------------------------------------------------------
    def _run(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(connection)`` in one transaction; database errors become :class:`StoreError`."""
        if self._closed:
            raise StoreError(f"store {self.path} is closed")
        try:
            with self._pool.connection() as conn, conn.transaction():
                return fn(conn)
        except StoreError:
            raise
        except (self._psycopg.Error, OSError) as err:
            raise StoreError(f"store {self.path}: {err}") from err
        except Exception as err:
            if type(err).__module__.startswith("psycopg_pool"):
                raise StoreError(f"store {self.path}: {err}") from err
            raise

    def _migrate(self) -> int:
        def go(conn: Any) -> int:
            if not self.read_only:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", [_MIGRATION_LOCK])
            has_table = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()[0]
            current = 0
            if has_table:
                current = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]
            if current > PG_SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.path} has schema version {current}, newer than this parity supports "
                    f"({PG_SCHEMA_VERSION}); upgrade parity"
                )
            pending = [m for m in PG_MIGRATIONS if m[0] > current]
            if pending and self.read_only:
                raise StoreError(
                    f"store {self.path} needs migration to schema {PG_SCHEMA_VERSION} (or was never written); "
                    "open it writable once, e.g. with `parity ingest --store URL`"
                )
            for version, description, statements in pending:
                if version == 1:
                    conn.execute(
                        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                        " description TEXT, applied_at TIMESTAMPTZ)"
                    )
                try:
                    with conn.transaction():
                        for sql in statements:
                            conn.execute(sql)
                        conn.execute(
                            "INSERT INTO schema_migrations VALUES (%s, %s, %s)",
                            [version, description, datetime.now(UTC)],
                        )
                except self._psycopg.Error as err:
                    raise StoreError(f"migration {version} ({description}) of {self.path} failed: {err}") from err
                current = version
            return int(current)

        result: int = self._run(go)
        return result

    # -- writes -------------------------------------------------------------------------------------------
    def write_records(self, records: Sequence[Record]) -> None:
        """Append records with one ``COPY`` (batch them: per-call overhead is a round trip)."""
        if not records:
            return

        def go(conn: Any) -> None:
            with conn.cursor() as cur, cur.copy(f"COPY records ({_COPY_COLUMNS}) FROM STDIN") as copy:
                for r in records:
                    row = record_row(r)
                    copy.write_row(
                        (*row[:1], r.time, *row[2:_TABLE_ORDER], *_array_literals(r.observations), *row[_TABLE_ORDER:])
                    )

        self._run(go)

    def write_feedback(self, events: Sequence[FeedbackEvent]) -> None:
        rows = [(e.response_id, e.time, e.kind, e.schema_version) for e in events]
        if rows:
            self._run(lambda conn: conn.cursor().executemany("INSERT INTO feedback VALUES (%s, %s, %s, %s)", rows))

    def write_changes(self, changes: Sequence[Change]) -> None:
        """Insert or replace changes by ``change_id``."""
        rows = [(c.change_id, c.time, c.kind, json.dumps(c.scope), c.description) for c in changes]
        if rows:
            self._run(
                lambda conn: conn.cursor().executemany(
                    "INSERT INTO changes VALUES (%s, %s, %s, %s, %s) ON CONFLICT (change_id) DO UPDATE SET"
                    " time = EXCLUDED.time, kind = EXCLUDED.kind, scope = EXCLUDED.scope,"
                    " description = EXCLUDED.description",
                    rows,
                )
            )

    def write_alerts(self, alerts: Sequence[Alert]) -> None:
        """Insert or replace alerts by ``alert_id`` (several monitors may upsert the same alert)."""
        rows = [
            (
                a.alert_id,
                a.signal,
                a.status,
                a.detected_at,
                json.dumps(a.to_dict() | {"schema_version": a.schema_version}),
            )
            for a in alerts
        ]
        if rows:
            self._run(
                lambda conn: conn.cursor().executemany(
                    "INSERT INTO alerts VALUES (%s, %s, %s, %s, %s) ON CONFLICT (alert_id) DO UPDATE SET"
                    " signal = EXCLUDED.signal, status = EXCLUDED.status, detected_at = EXCLUDED.detected_at,"
                    " payload = EXCLUDED.payload",
                    rows,
                )
            )

    def set_meta(self, key: str, value: str) -> None:
        self._run(
            lambda conn: conn.execute(
                "INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                [key, value],
            )
        )

    # -- reads --------------------------------------------------------------------------------------------
    def records(self, *, since: datetime | None = None, until: datetime | None = None) -> list[Record]:
        """Records with ``since <= time < until``, in time order."""
        where, params = [], []
        if since is not None:
            where.append("time >= %s")
            params.append(since)
        if until is not None:
            where.append("time < %s")
            params.append(until)
        sql = (
            f"SELECT {', '.join(RECORD_FIELDS)} FROM records"
            + (" WHERE " + " AND ".join(where) if where else "")
            + ' ORDER BY time, record_id COLLATE "C"'
        )
        rows = self._run(lambda conn: conn.execute(sql, params).fetchall())
        return [record_from_row((row[0], us(row[1]), *row[2:])) for row in rows]

    def stored_record_ids(self, *, since: datetime, until: datetime) -> set[str]:
        """The ids of the records with ``since <= time < until``, without reading the records."""
        rows = self._run(
            lambda conn: conn.execute(
                "SELECT DISTINCT record_id FROM records WHERE time >= %s AND time < %s", [since, until]
            ).fetchall()
        )
        return {r[0] for r in rows}

    def feedback(self) -> list[FeedbackEvent]:
        rows = self._run(
            lambda conn: conn.execute(
                "SELECT response_id, time, kind, schema_version FROM feedback ORDER BY time"
            ).fetchall()
        )
        return [
            feedback_from_dict({"response_id": r[0], "time": r[1], "kind": r[2], "schema_version": r[3]}) for r in rows
        ]

    def changes(self) -> list[Change]:
        rows = self._run(
            lambda conn: conn.execute(
                "SELECT change_id, time, kind, scope, description FROM changes ORDER BY time"
            ).fetchall()
        )
        return [
            change_from_dict(
                {
                    "change_id": r[0],
                    "time": r[1],
                    "kind": r[2],
                    "scope": json.loads(r[3] or "{}"),
                    "description": r[4] or "",
                }
            )
            for r in rows
        ]

    def alerts(self, *, open_only: bool = False) -> list[Alert]:
        sql = "SELECT payload FROM alerts" + (" WHERE status = 'open'" if open_only else "") + " ORDER BY detected_at"
        rows = self._run(lambda conn: conn.execute(sql).fetchall())
        return [alert_from_dict(json.loads(r[0])) for r in rows]

    def get_meta(self, key: str) -> str | None:
        """A persisted setting (e.g. the session-hash salt), or ``None``."""
        row = self._run(lambda conn: conn.execute("SELECT value FROM meta WHERE key = %s", [key]).fetchone())
        return None if row is None else str(row[0])

    def summary(self) -> StoreSummary:
        """Counts of what the store holds, computed in SQL (one read transaction, so the counts agree)."""

        def go(conn: Any) -> StoreSummary:
            n, first, last = conn.execute("SELECT count(*), min(time), max(time) FROM records").fetchone()
            flags = conn.execute(
                "SELECT d, sum(CASE WHEN f THEN 1 ELSE 0 END) FROM records, unnest(detectors, flagged) AS u(d, f)"
                ' GROUP BY d ORDER BY d COLLATE "C"'
            ).fetchall()
            segs = conn.execute(
                "SELECT model, pool, platform, count(*) AS c FROM records GROUP BY model, pool, platform"
                ' ORDER BY c DESC, model COLLATE "C", pool COLLATE "C", platform COLLATE "C"'
            ).fetchall()
            n_fb = conn.execute("SELECT count(*) FROM feedback").fetchone()[0]
            n_ch = conn.execute("SELECT count(*) FROM changes").fetchone()[0]
            n_al = conn.execute("SELECT count(*) FROM alerts WHERE status = 'open'").fetchone()[0]
            return StoreSummary(
                records=int(n),
                feedback=int(n_fb),
                changes=int(n_ch),
                open_alerts=int(n_al),
                first_time=first,
                last_time=last,
                flags={str(d): int(c) for d, c in flags},
                segments=[{"model": m, "pool": p, "platform": pl, "records": int(c)} for m, p, pl, c in segs],
            )

        result: StoreSummary = self._run(go)
        return result

    def close(self) -> None:
        """Close the pool's connections (idempotent)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
