"""The monitor's worker: it cannot die, a failing store never drops a record, a hard kill loses at most the
write-ahead log's flush interval, and health tells the truth about each of these."""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from benchmarks.bench_reliability import FailingStore as FlakyStore
from click.testing import CliRunner

from parity.cli._main import main
from parity.monitor import Alert, Change, FeedbackEvent, Record
from parity.monitor.intake.proxy import ParityProxy, ProxyConfig
from parity.monitor.intake.scoring import Exchange, RecordBuilder
from parity.monitor.runtime.spool import Spool
from parity.monitor.runtime.wal import WriteAheadLog
from parity.monitor.runtime.worker import MAX_JSON_DEPTH, MonitorWorker, RawExchange, json_depth
from parity.monitor.storage.store import DuckDBStore, MemoryStore

T0 = datetime(2025, 8, 5, 12, 0, tzinfo=UTC)


class Clock:
    """A monotonic clock the test moves (store retry backoff, log rate limit, 'recent' windows)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def exchange(i: int) -> Exchange:
    body = (
        f'{{"id": "c{i}", "choices": [{{"message": {{"content": "fine"}}, "finish_reason": "stop"}}],'
        ' "usage": {"prompt_tokens": 3, "completion_tokens": 1}}'
    )
    return Exchange(path="/v1/chat/completions", time=T0 + timedelta(seconds=i), request={"model": "S"},
                    status_code=200, response_body=body)  # fmt: skip


def stored_ids(store: Any) -> list[int]:
    return sorted(int(r.record_id[1:]) for r in store.records())


ENOSPC = OSError(errno.ENOSPC, "No space left on device")


# -- the worker cannot die ----------------------------------------------------------------------------------------
def test_json_depth_is_bounded_before_parsing() -> None:
    deep = b'{"model": "lab", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    assert json_depth(deep) == 1001
    raw = RawExchange("/v1/completions", T0, deep, {}, 200, {}, [b"{}"], 1.0, False)
    with pytest.raises(ValueError, match=f"nested 1001 deep \\(limit {MAX_JSON_DEPTH}\\)"):
        raw.to_exchange()


def test_a_1000_deep_body_then_100_requests_all_stored(upstream: Any, serve_app: Callable[[Any], Any]) -> None:
    """Issue 18.1: the body that once ended the worker thread is a counted rejection; the next 100 are stored."""
    store = MemoryStore()
    proxy = ParityProxy(ProxyConfig(upstream=upstream.url, flush_interval_s=0.05), store,
                        RecordBuilder(salt="s", scorer=None))  # fmt: skip
    handle = serve_app(proxy.app)
    nested = '{"model": "S", "messages": [{"role": "user", "content": "hi"}], "x": ' + "[" * 1000 + "]" * 1000 + "}"
    with httpx.Client(base_url=handle.url, timeout=10) as c:
        first = c.post("/v1/chat/completions", content=nested, headers={"content-type": "application/json"})
        direct = httpx.post(upstream.url + "/v1/chat/completions", content=nested,
                            headers={"content-type": "application/json"})  # fmt: skip
        assert first.status_code == direct.status_code  # answered as the upstream answered it
        answers = [c.post("/v1/chat/completions", json={"model": "S", "messages": [{"role": "user", "content": "q"}]})
                   for _ in range(100)]  # fmt: skip
    assert all(a.status_code == 200 for a in answers)
    assert proxy.wait_idle(20)
    assert sorted(r.record_id for r in store.records()) == sorted(a.json()["id"] for a in answers)
    assert proxy.worker.rejected == 1
    assert "parity_monitor_rejected_exchanges_total 1.0" in httpx.get(handle.url + "/metrics").text


class SystemExitHook:
    """A monitor hook that raises what no stage guard catches (``SystemExit`` ends a thread silently) once."""

    def __init__(self) -> None:
        self.raised = False

    def observe(self, record: Record) -> list[Alert]:
        if not self.raised:
            self.raised = True
            raise SystemExit("hook gone mad")
        return []

    def observe_feedback(self, event: FeedbackEvent) -> list[Alert]:
        return []

    def add_changes(self, changes: Sequence[Change]) -> list[Alert]:
        return []

    @property
    def open_alerts(self) -> list[Alert]:
        return []


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread dies on purpose
def test_supervisor_restarts_a_loop_that_fails_and_a_thread_that_dies() -> None:
    store = MemoryStore()
    worker = MonitorWorker(store, RecordBuilder(salt="s", scorer=None), hook=SystemExitHook(), flush_interval_s=0.02)
    worker.start()
    try:
        worker.submit(exchange(0))  # the hook ends the thread
        for _ in range(200):
            if worker._thread is not None and not worker._thread.is_alive():
                break
            worker._stop.wait(0.01)
        health = worker.health()
        assert health.status == "failing"
        assert "the monitor worker thread is dead: nothing is being stored" in health.reasons
        worker.submit(exchange(1))  # submit notices and restarts it
        worker.submit(object())  # type: ignore[arg-type]  # an item no stage expects: the loop fails, restarts
        worker.submit(exchange(2))
        assert worker.wait_idle(10)
        assert stored_ids(store) == [0, 1, 2]
        assert worker.restarts == 2
        assert worker.rejected == 1  # the item the loop failed on is counted, not silently gone
        health = worker.health()
        assert health.status == "degraded"
        assert health.conditions["worker_restarted"]
        assert not health.conditions["worker_dead"]
        assert "parity_monitor_worker_restarts_total 2.0" in worker.metrics.render().decode()
    finally:
        worker.stop()


# -- a store failure never drops a record -------------------------------------------------------------------------
def test_failing_store_spools_retries_with_backoff_and_drains(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="parity.monitor")
    clock = Clock()
    store = FlakyStore(DuckDBStore(tmp_path / "s.duckdb"))
    worker = MonitorWorker(store, RecordBuilder(salt="s", scorer=None), spool=Spool(tmp_path / "spool.jsonl"),
                           batch_size=10, clock=clock)  # fmt: skip
    store.error = ENOSPC
    for i in range(30):
        worker.process(exchange(i))
        clock.t += 0.02
    assert store.failed_writes == 1  # the first batch failed; the next two waited for the backoff (0.5 s)
    clock.t += 0.6
    for i in range(30, 40):
        worker.process(exchange(i))  # the retry fails too; the backoff doubles
    worker.flush()
    assert store.inner.summary().records == 0
    assert worker.store_spooled == 40
    assert worker.spool is not None
    assert worker.spool.pending == 40
    assert worker.dropped == 0
    assert store.failed_writes == 2
    assert sum("store write failed" in r.message for r in caplog.records) == 1  # at most once a minute
    health = worker.health()
    assert health.status == "degraded"
    assert any("No space left on device" in r for r in health.reasons)
    assert health.counts["spool_pending"] == 40
    text = worker.metrics.render().decode()
    assert "parity_store_errors_total 2.0" in text
    assert "parity_spool_records 40.0" in text
    store.error = None
    clock.t += 0.5
    worker.drain()
    assert store.failed_writes == 2
    assert worker.spool.pending == 40
    clock.t += 5
    worker.drain()
    assert stored_ids(store.inner) == list(range(40))
    assert worker.spool.pending == 0
    assert worker.health().status == "ok"
    store.inner.close()


def test_spool_left_by_a_failed_run_drains_on_the_next_start_without_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    store = FlakyStore(DuckDBStore(path))
    spool = Spool(tmp_path / "spool.jsonl")
    worker = MonitorWorker(store, RecordBuilder(salt="s", scorer=None), spool=spool, batch_size=5)
    for i in range(5):
        worker.process(exchange(i))  # stored
    store.error = OSError(errno.EROFS, "Read-only file system")
    for i in range(5, 20):
        worker.process(exchange(i))  # spooled
    worker.flush()
    store.inner.close()
    assert spool.pending == 15
    spool.extend([{"kind": "record", "record": exchange(0).to_dict() | {}}])  # garbage: not a record; rejected
    # the next start: a fresh worker on the same store and spool drains it before anything else
    with DuckDBStore(path) as reopened:
        again = MonitorWorker(reopened, RecordBuilder(salt="s", scorer=None), spool=Spool(tmp_path / "spool.jsonl"))
        again.recover()
        assert stored_ids(reopened) == list(range(20))
        assert again.spool is not None
        assert again.spool.pending == 0
        assert again.rejected == 1


def test_when_the_spool_cannot_be_written_drops_are_counted_and_health_fails(tmp_path: Path) -> None:
    (tmp_path / "spool.jsonl").mkdir()  # a directory where the spool file should be: every append fails
    store = FlakyStore(MemoryStore())
    worker = MonitorWorker(store, RecordBuilder(salt="s", scorer=None), spool=Spool(tmp_path / "spool.jsonl"))
    store.error = ENOSPC
    for i in range(7):
        worker.process(exchange(i))
    worker.flush()
    assert worker.dropped == 7
    health = worker.health()
    assert health.status == "failing"
    assert health.conditions["dropping"]
    assert health.counts["dropped"] == 7
    assert "parity_monitor_dropped_records_total 7.0" in worker.metrics.render().decode()


# -- the crash window ---------------------------------------------------------------------------------------------
def test_write_ahead_log_replays_a_crashed_run_once(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with DuckDBStore(path) as store:
        wal = WriteAheadLog(tmp_path / "s.parity-wal.jsonl", flush_interval_s=0.01)
        worker = MonitorWorker(store, RecordBuilder(salt="s", scorer=None), wal=wal, batch_size=100)
        for i in range(3):
            worker.process(exchange(i))
        worker.flush()  # stored: the log is emptied
        for i in range(3, 8):
            worker.process(exchange(i))
        wal.sync()  # the periodic flush ran; then the process is killed before its batch reached the store
        assert stored_ids(store) == [0, 1, 2]
    for _ in range(2):  # replaying twice stores each record once
        with DuckDBStore(path) as store:
            again = MonitorWorker(
                store, RecordBuilder(salt="s", scorer=None), wal=WriteAheadLog(tmp_path / "s.parity-wal.jsonl")
            )
            again.recover()
            assert stored_ids(store) == list(range(8))
    assert (tmp_path / "s.parity-wal.jsonl").stat().st_size == 0


def raw_exchange(i: int) -> RawExchange:
    ex = exchange(i)
    return RawExchange(ex.path, ex.time, b'{"model": "S"}', {}, 200, {}, [ex.response_body.encode()], 1.0, False)


def test_write_ahead_log_holds_exchanges_still_queued_when_the_run_is_killed(tmp_path: Path) -> None:
    # under load the queue holds answered exchanges for seconds: they are logged when handed over, not when built
    wal_path = tmp_path / "s.parity-wal.jsonl"
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        worker = MonitorWorker(store, RecordBuilder(salt="s", scorer=None), wal=WriteAheadLog(wal_path))
        for i in range(5):
            worker.submit(raw_exchange(i))  # the worker thread never reaches them: killed first
        assert worker.wal is not None
        worker.wal.sync()
        otlp = Record(record_id="o1", time=T0, model="S")
        worker.submit_record(otlp)  # a queued record (the OTLP receiver's) is logged the same way
        worker.wal.sync()
        assert store.records() == []
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        again = MonitorWorker(store, RecordBuilder(salt="s", scorer=None), wal=WriteAheadLog(wal_path))
        again.recover()
        assert sorted(r.record_id for r in store.records()) == ["c0", "c1", "c2", "c3", "c4", "o1"]
    assert wal_path.stat().st_size == 0


def test_write_ahead_log_forgets_exchanges_once_stored_and_compacts_under_a_steady_stream(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path / "w.jsonl", compact_bytes=2_000)
    seqs = [wal.append_exchange(raw_exchange(i)) for i in range(20)]
    wal.done(seqs[:10])  # stored before the log's flush: never written
    wal.sync()
    for k in range(10, 50):  # the oldest stored, one more handed over, per flush: never empty, so compacted
        wal.done([seqs[k]])
        seqs.append(wal.append_exchange(raw_exchange(k + 10)))
        wal.sync()
    assert wal.compactions > 0
    left = WriteAheadLog(tmp_path / "w.jsonl").replay()
    assert [RawExchange.from_wal(e).time for e in left if isinstance(e, dict)] == [
        exchange(i).time for i in range(50, 60)
    ]
    live_bytes = sum(len(json.dumps({"seq": 99, "exchange": e}, separators=(",", ":"))) + 1 for e in left)
    assert (tmp_path / "w.jsonl").stat().st_size <= max(2_000, 2 * live_bytes) + live_bytes // len(left)
    wal.done(range(1000))
    assert wal.live == 0
    assert (tmp_path / "w.jsonl").stat().st_size == 0


def test_write_ahead_log_of_an_older_version_replays(tmp_path: Path) -> None:
    # before exchanges were logged, each line was a bare record; a run upgraded after a crash still stores them
    record = Record(record_id="r1", time=T0, model="S")
    (tmp_path / "w.jsonl").write_text(json.dumps(record.to_dict()) + "\n")
    assert WriteAheadLog(tmp_path / "w.jsonl").replay() == [record]


def test_write_ahead_log_left_in_place_is_not_hidden_by_the_next_runs_done_markers(tmp_path: Path) -> None:
    # a crashed run's entries, still in the file when the next run starts logging (it could not empty the log after
    # replaying it): the next run's entries are numbered after them, so marking its own done hides none of them
    crashed = WriteAheadLog(tmp_path / "w.jsonl")
    crashed.append_exchange(raw_exchange(0))
    crashed.append_exchange(raw_exchange(1))
    crashed.sync()
    wal = WriteAheadLog(tmp_path / "w.jsonl")
    assert len(wal.replay()) == 2
    seqs = [wal.append_exchange(raw_exchange(2)), wal.append_exchange(raw_exchange(3))]
    wal.sync()
    wal.done(seqs[:1])
    wal.sync()
    left = WriteAheadLog(tmp_path / "w.jsonl").replay()
    assert [RawExchange.from_wal(e).time for e in left if isinstance(e, dict)] == [exchange(i).time for i in (0, 1, 3)]


def test_write_ahead_log_syncs_on_its_own_thread_while_the_worker_is_busy(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path / "w.jsonl", flush_interval_s=0.01)
    wal.start()
    try:
        wal.append_exchange(raw_exchange(0))
        for _ in range(500):
            if (tmp_path / "w.jsonl").exists() and (tmp_path / "w.jsonl").stat().st_size:
                break
            wal._stop.wait(0.01)
        assert len(WriteAheadLog(tmp_path / "w.jsonl").replay()) == 1
    finally:
        wal.close()


# -- health -------------------------------------------------------------------------------------------------------
def test_health_endpoint_reports_behind_and_change_log_conditions(
    upstream: Any, serve_app: Callable[[Any], Any]
) -> None:
    def broken_log() -> list[Change]:
        raise OSError("change log host unreachable")

    store = MemoryStore()
    proxy = ParityProxy(ProxyConfig(upstream=upstream.url, changes_poll_s=0.05), store,
                        RecordBuilder(salt="s", scorer=None), changes_source=broken_log)  # fmt: skip
    handle = serve_app(proxy.app)
    for _ in range(100):
        body = httpx.get(handle.url + "/parity/health").json()
        if body["status"] != "ok":
            break
        proxy.worker._stop.wait(0.02)
    assert body["status"] == "degraded"
    assert body["reasons"] == ["the change log cannot be polled (change log host unreachable)"]
    assert (
        'parity_monitor_health_condition{condition="changes_unavailable"} 1.0'
        in httpx.get(handle.url + "/metrics").text
    )
    out = CliRunner().invoke(main, ["status", "--proxy", handle.url]).output
    assert "monitor: degraded (pending 0, spool pending 0, dropped 0)" in out
    assert "  - the change log cannot be polled (change log host unreachable)" in out


def test_health_reports_a_worker_behind_its_bound() -> None:
    worker = MonitorWorker(MemoryStore(), RecordBuilder(salt="s", scorer=None))  # not started: items wait
    for i in range(3):
        worker.submit(exchange(i))
    assert worker.health(behind_bound=3).status == "ok"
    worker.submit(exchange(3))
    health = worker.health(behind_bound=3)
    assert health.status == "degraded"
    assert health.reasons == ("4 exchange(s) wait for the worker (bound 3)",)


def test_status_reports_what_waits_beside_a_store(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    store = FlakyStore(DuckDBStore(path))
    worker = MonitorWorker(store, RecordBuilder(salt="s", scorer=None), spool=Spool(f"{path}.spool.jsonl"),
                           wal=WriteAheadLog(f"{path}.parity-wal.jsonl"))  # fmt: skip
    store.error = OSError(errno.EROFS, "Read-only file system")
    for i in range(3):
        worker.process(exchange(i))
    worker.flush()  # spooled
    worker.process(exchange(3))
    assert worker.wal is not None
    worker.wal.sync()  # logged ahead, then the run is killed
    store.inner.close()
    out = CliRunner().invoke(main, ["status", "--store", str(path)]).output
    assert "monitor: degraded (spool pending 3, wal 1)" in out
    assert "3 item(s) wait in" in out
    assert "1 record(s) in" in out


def test_ingest_rejects_a_1000_deep_line_by_number_and_stores_the_rest() -> None:
    import io
    import json

    from parity.monitor.intake.ingest import ingest_lines

    good = [json.dumps({"request": {"model": "S", "messages": []}, "response": json.loads(exchange(i).response_body)})
            for i in range(6)]  # fmt: skip
    deep = '{"request": {"model": "S", "x": ' + "[" * 1000 + "]" * 1000 + '}, "response": {}}'
    store = MemoryStore()
    result = ingest_lines(io.StringIO("\n".join([*good[:3], deep, *good[3:]]) + "\n"), store, salt="s", scorer=None)
    assert (result.records, result.rejected) == (6, 1)
    assert result.errors == [(4, "`line` must nest objects and arrays at most 128 levels deep")]
    assert len(store.records()) == 6


def test_a_drain_the_store_refuses_leaves_the_batch_in_the_spool(tmp_path: Path) -> None:
    clock = Clock()
    store = FlakyStore(MemoryStore())
    worker = MonitorWorker(store, RecordBuilder(salt="s", scorer=None), spool=Spool(tmp_path / "spool.jsonl"),
                           batch_size=10, clock=clock)  # fmt: skip
    store.error = ENOSPC
    for i in range(25):
        worker.process(exchange(i))
    worker.flush()
    assert worker.spool is not None
    assert worker.spool.pending == 25
    clock.t += 60
    worker.drain()  # the retry fails on the first batch: nothing is taken, nothing is duplicated
    assert worker.spool.pending == 25
    assert store.inner.records() == []
    store.error = None
    clock.t += 60
    worker.drain()
    assert stored_ids(store.inner) == list(range(25))
    assert len(store.inner.records()) == 25
    assert worker.spool.pending == 0
    assert not (tmp_path / "spool.jsonl.draining").exists()
