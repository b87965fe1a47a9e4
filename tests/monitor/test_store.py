"""The stores: memory, DuckDB and a real PostgreSQL behave the same; DuckDB and PostgreSQL migrate, persist, and
batch; several processes write one PostgreSQL store at once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import parity
from parity import StoreError
from parity.monitor import SCHEMA_VERSION, Alert, AttributedChange, Change, FeedbackEvent, Record, Store
from parity.monitor.storage._store_protocol import RecordIdReader
from parity.monitor.storage.store import (
    STORE_SCHEMA_VERSION,
    DuckDBStore,
    MemoryStore,
    PostgresStore,
    open_store,
    session_salt,
    summarize,
)

T0 = datetime(2025, 8, 5, 12, 0, tzinfo=UTC)


AnyStore = MemoryStore | DuckDBStore | PostgresStore


@pytest.fixture(params=["memory", "duckdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnyStore]:
    s: AnyStore
    if request.param == "memory":
        s = MemoryStore()
    elif request.param == "duckdb":
        s = DuckDBStore(tmp_path / "s.duckdb")
    else:
        s = PostgresStore(request.getfixturevalue("postgres_url"))
    yield s
    s.close()


def test_stores_implement_the_protocol(store: Store) -> None:
    assert isinstance(store, Store)


def test_records_round_trip_exactly(store: AnyStore, make_record: Callable[..., Record]) -> None:
    records = [make_record(i) for i in range(25)]
    records.append(make_record(99, captured_text="redacted [EMAIL]", latency_ms=12.5, max_tokens=64, region="eu"))
    store.write_records(records[:10])
    store.write_records(records[10:])
    assert store.records() == sorted(records, key=lambda r: r.time)


def test_records_time_window(store: AnyStore, make_record: Callable[..., Record]) -> None:
    store.write_records([make_record(i) for i in range(10)])
    got = store.records(since=T0 + timedelta(seconds=3), until=T0 + timedelta(seconds=6))
    assert [r.record_id for r in got] == ["cmpl-3", "cmpl-4", "cmpl-5"]


def test_stored_record_ids_are_the_ids_of_the_time_window(store: AnyStore, make_record: Callable[..., Record]) -> None:
    """What the worker's de-duplication asks instead of reading the records back: the same ids as the window's."""
    assert isinstance(store, RecordIdReader)
    store.write_records([make_record(i) for i in range(10)])
    since, until = T0 + timedelta(seconds=3), T0 + timedelta(seconds=6)
    assert store.stored_record_ids(since=since, until=until) == {"cmpl-3", "cmpl-4", "cmpl-5"}
    assert store.stored_record_ids(since=since, until=until) == {
        r.record_id for r in store.records(since=since, until=until)
    }
    assert store.stored_record_ids(since=T0 - timedelta(days=1), until=T0) == set()


def test_feedback_changes_alerts(store: AnyStore) -> None:
    store.write_feedback([FeedbackEvent("cmpl-1", T0, "thumbs_down"), FeedbackEvent("cmpl-2", T0, "bug_report")])
    assert [e.kind for e in store.feedback()] == ["thumbs_down", "bug_report"]
    c1 = Change("c1", T0, "deploy", {"platform": "tpu"}, "sampler rewrite")
    store.write_changes([c1, Change("c2", T0 + timedelta(hours=1), "routing")])
    store.write_changes([Change("c1", T0, "deploy", {"platform": "tpu"}, "edited")])
    assert [(c.change_id, c.description) for c in store.changes()] == [("c1", "edited"), ("c2", "")]
    alert = Alert(
        "a1",
        "unexpected_script",
        {"platform": "tpu"},
        T0,
        T0 + timedelta(minutes=5),
        0.02,
        0.001,
        0.021,
        40,
        (AttributedChange("c1", 0.9, "scope matches, 3 min before"),),
    )
    store.write_alerts([alert])
    assert store.alerts(open_only=True) == [alert]
    # type: ignore[attr-defined]
    closed = Alert(**{**{f: getattr(alert, f) for f in alert.__slots__}, "status": "resolved"})
    store.write_alerts([closed])
    assert store.alerts(open_only=True) == []
    assert store.alerts() == [closed]


def test_summary_matches_reference(store: AnyStore, make_record: Callable[..., Record]) -> None:
    records = [make_record(i) for i in range(30)]
    store.write_records(records)
    store.write_feedback([FeedbackEvent("cmpl-1", T0, "thumbs_down")])
    got = store.summary()
    want = summarize(records, n_feedback=1)
    assert got == want
    assert got.flags == {"unexpected_script": 6}


def test_duckdb_persists_and_records_its_migrations(tmp_path: Path, make_record: Callable[..., Record]) -> None:
    path = tmp_path / "p.duckdb"
    with DuckDBStore(path) as s:
        s.write_records([make_record(1)])
        salt = session_salt(s)
    with DuckDBStore(path) as s:
        assert s.schema_version == STORE_SCHEMA_VERSION
        assert [r.record_id for r in s.records()] == ["cmpl-1"]
        assert session_salt(s) == salt
        versions = s._run(lambda con: con.execute("SELECT version FROM schema_migrations").fetchall())
        assert versions == [(1,), (2,), (3,)]
    with DuckDBStore(path, read_only=True) as s:
        assert len(s.records()) == 1


def test_duckdb_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "new.duckdb"
    with DuckDBStore(path) as s:
        s._run(lambda con: con.execute("INSERT INTO schema_migrations VALUES (99, 'future', NULL)"))
    with pytest.raises(StoreError, match="schema version 99, newer than this parity supports"):
        DuckDBStore(path)


def test_read_only_open_of_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "nope.duckdb", read_only=True)


def test_closed_store_raises_store_error(tmp_path: Path) -> None:
    s = DuckDBStore(tmp_path / "c.duckdb")
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.records()


def test_session_salt_configured_wins_and_persists() -> None:
    s = MemoryStore()
    random_salt = session_salt(s)
    assert len(random_salt) == 32
    assert session_salt(s, "team") == "team"
    assert session_salt(s) == "team"


def test_large_batch_insert(tmp_path: Path, make_record: Callable[..., Record]) -> None:
    records = [make_record(i) for i in range(5000)]
    with DuckDBStore(tmp_path / "big.duckdb") as s:
        s.write_records(records)
        assert s.summary().records == 5000


def test_odd_detector_names_round_trip(store: AnyStore, make_record: Callable[..., Record]) -> None:
    """Quotes, backslashes, commas and braces in a detector's name survive every backend (PostgreSQL writes them
    into an array literal)."""
    from parity.monitor import DetectorObservation

    odd = 'my "det",\\x{1}'
    records = [make_record(i, observations=(DetectorObservation(odd, i % 2 == 0, 0.5),)) for i in range(4)]
    store.write_records(records)
    assert store.records() == records
    assert store.summary().flags == {odd: 2}


def test_duckdb_keeps_the_request_token_estimate(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from parity.monitor import Record
    from parity.monitor.storage.store import DuckDBStore

    rec = Record(record_id="r", time=datetime(2025, 8, 5, tzinfo=UTC), model="H", context_tokens=9, request_tokens=41)
    bare = Record(record_id="s", time=datetime(2025, 8, 5, 1, tzinfo=UTC), model="H")
    with DuckDBStore(str(tmp_path / "p.duckdb")) as store:
        store.write_records([rec, bare])
        assert [r.request_tokens for r in store.records()] == [41, None]


def test_decided_signals_context_class_and_version_round_trip(
    store: AnyStore, make_record: Callable[..., Record]
) -> None:
    decided = make_record(1, context_class="long", signals={"unexpected_script": 1.0, "x.score": float("inf")})
    undecided = make_record(2)
    store.write_records([decided, undecided])
    back = store.records()
    assert back == [decided, undecided]
    assert (back[0].context_class, back[0].signals, back[1].signals) == ("long", decided.signals, None)
    assert back[0].parity_version == parity.__version__
    assert back[0].schema_version == SCHEMA_VERSION


#: A store as schema version 2 left it: the migrations up to 2, one record and the writer's split in meta.
_V2_RECORD = (
    "INSERT INTO records (record_id, time, model, pool, platform, region, config_version, server, context_tokens,"
    " output_tokens, status_code, observations, source, schema_version{extra}) VALUES ('old-{n}', {time}, 'S',"
    " 'long', 'gpu', 'unknown', 'unknown', 'unknown', {n}, 5, 200, '[[\"unexpected_script\",true,0.5]]', 'proxy',"
    " 2{extra_values})"
)


def test_duckdb_store_of_schema_2_migrates_on_open(tmp_path: Path) -> None:
    import duckdb

    from parity.monitor.storage.store import MIGRATIONS

    path = tmp_path / "v2.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description VARCHAR, applied_at TIMESTAMPTZ)"
    )
    for version, description, statements in MIGRATIONS[:2]:
        for sql in statements:
            con.execute(sql)
        con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [version, description])
    con.execute("INSERT INTO meta VALUES ('long_context_tokens', '192')")
    for n in (150, 250):
        con.execute(_V2_RECORD.format(n=n, time="TIMESTAMPTZ '2025-08-05 12:00:00+00'", extra="", extra_values=""))
    con.close()
    with DuckDBStore(path) as s:
        assert s.schema_version == STORE_SCHEMA_VERSION == 3
        old = s.records()
    # split where the writer's fleet splits (192, from meta), not at the record default of 8192
    assert [(r.record_id, r.context_class) for r in old] == [("old-150", "short"), ("old-250", "long")]
    assert [(r.signals, r.parity_version, r.schema_version) for r in old] == [(None, None, 2)] * 2


def test_postgres_store_of_schema_2_migrates_on_open(postgres_url: str) -> None:
    from parity.monitor.storage.store import PG_MIGRATIONS

    psycopg = pytest.importorskip("psycopg")
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description TEXT, applied_at TIMESTAMPTZ)"
        )
        for version, description, statements in PG_MIGRATIONS[:2]:
            for sql in statements:
                conn.execute(sql)
            conn.execute("INSERT INTO schema_migrations VALUES (%s, %s, now())", [version, description])
        conn.execute("INSERT INTO meta VALUES ('long_context_tokens', '192')")
        for n in (150, 250):
            conn.execute(
                _V2_RECORD.format(
                    n=n,
                    time="TIMESTAMPTZ '2025-08-05 12:00:00+00'",
                    extra=", detectors, flagged",
                    extra_values=", '{unexpected_script}', '{t}'",
                )
            )
    with PostgresStore(postgres_url) as s:
        assert s.schema_version == 3
        old = s.records()
    assert [(r.record_id, r.context_class) for r in old] == [("old-150", "short"), ("old-250", "long")]
    assert [(r.signals, r.parity_version, r.schema_version) for r in old] == [(None, None, 2)] * 2
