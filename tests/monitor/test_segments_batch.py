"""The segment monitor's batch path raises exactly the alerts of the per-record path on the replay's records, and a
checkpoint taken in the middle of a batch (with counts still deferred) continues as if never taken."""

from __future__ import annotations

import gzip
import json
import pickle
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from parity.monitor import Alert, Change, FeedbackEvent, Record
from parity.monitor._codec import change_from_dict, feedback_from_dict
from parity.monitor.detection._score_bank import COMPILED, KINDS, ScoreStream
from parity.monitor.detection.audit import PoolContextRule, RoutingAudit, StickySessionRule
from parity.monitor.detection.distributed import ShardedMonitor, _SignalStatistics
from parity.monitor.detection.lattice import SegmentKey
from parity.monitor.detection.pipeline import MonitorConfig, SegmentMonitor
from parity.monitor.detection.segments import Firing, SegmentStatistics, StatsConfig
from parity.monitor.detection.signals import Members, SignalStage
from parity.monitor.intake.scoring import RecordBuilder
from parity.monitor.runtime.worker import MonitorWorker
from parity.monitor.storage.store import MemoryStore

REPLAY = Path(__file__).resolve().parents[1] / "data" / "replay" / "replay.json.gz"

#: The defaults of issue 12 (64 segments per record, every detector's flag and score, the routing audit), with the
#: replay's fleet split at 192 context tokens.
DEFAULT_CONFIG = MonitorConfig()

#: The replay's own lattice (``tests/dashboard/make_replay.py``): 16 segments, scores on the global segment only.
REPLAY_CONFIG = MonitorConfig(
    stats=StatsConfig(
        dimensions=("model", "pool", "platform", "context_class"),
        alpha=0.01,
        horizon=100_000,
        max_streams=5000,
        rate_warmup=300,
        mean_warmup=100,
        score_max_order=0,
    )
)


@pytest.fixture(scope="module")
def replay() -> tuple[list[Record], list[FeedbackEvent], list[Change]]:
    data = json.loads(gzip.decompress(REPLAY.read_bytes()))
    records = [Record.from_dict(r) for r in data["records"]]
    feedback = sorted(map(feedback_from_dict, data["feedback"]), key=lambda e: e.time)
    return records, feedback, [change_from_dict(c) for c in data["changes"]]


def _per_record(mon: SegmentMonitor, records: Sequence[Record], feedback: Sequence[FeedbackEvent]) -> list[Alert]:
    out: list[Alert] = []
    j = 0
    for record in records:
        while j < len(feedback) and feedback[j].time <= record.time:
            out.extend(mon.observe_feedback(feedback[j]))
            j += 1
        out.extend(mon.observe(record))
    return out


def _batched(
    mon: SegmentMonitor, records: Sequence[Record], feedback: Sequence[FeedbackEvent], size: int
) -> list[Alert]:
    """Batches of at most ``size`` records, cut wherever a feedback event falls between two records."""
    out: list[Alert] = []
    j = 0
    batch: list[Record] = []
    for record in records:
        if (j < len(feedback) and feedback[j].time <= record.time) or len(batch) >= size:
            out.extend(mon.observe_batch(batch))
            batch = []
        while j < len(feedback) and feedback[j].time <= record.time:
            out.extend(mon.observe_feedback(feedback[j]))
            j += 1
        batch.append(record)
    out.extend(mon.observe_batch(batch))
    return out


def test_batches_raise_the_per_record_alerts_on_the_whole_replay(
    replay: tuple[list[Record], list[FeedbackEvent], list[Change]],
) -> None:
    """All 9,000 records, feedback interleaved by time, the change log known: its four faults, alerts equal field
    by field (ids, times, effects, attribution, superseded chains) and in the same order as returned."""
    records, feedback, changes = replay
    one = SegmentMonitor(config=REPLAY_CONFIG)
    one.add_changes(changes)
    want = _per_record(one, records, feedback)
    assert len({a.signal for a in one.alerts}) == 4
    assert any(a.status == "superseded" for a in one.alerts)  # localisation refined an alert
    assert all(w.n > 0 for w in one._watches.values())  # the worsening watches saw their records
    for size in (97, 4096):
        mon = SegmentMonitor(config=REPLAY_CONFIG)
        mon.add_changes(changes)
        assert _batched(mon, records, feedback, size) == want, f"batches of {size}"
        assert mon.alerts == one.alerts
        assert (mon.n_records, mon.n_absorbed, len(mon.stats)) == (one.n_records, one.n_absorbed, len(one.stats))


def test_batches_raise_the_per_record_alerts_at_the_defaults(
    replay: tuple[list[Record], list[FeedbackEvent], list[Change]],
) -> None:
    """64 segments per record and scores on every one-dimension segment: the first 3,000 records (the routing
    fault and its alert, and hundreds of score-stream alarms absorbed by localisation)."""
    records, _, changes = replay
    records = records[:3000]
    one = SegmentMonitor(config=DEFAULT_CONFIG)
    one.add_changes(changes)
    want = [a for r in records for a in one.observe(r)]
    assert want
    assert one.n_absorbed > 100
    mon = SegmentMonitor(config=DEFAULT_CONFIG)
    mon.add_changes(changes)
    got = [a for s in range(0, len(records), 512) for a in mon.observe_batch(records[s : s + 512])]
    assert got == want
    assert (mon.n_absorbed, len(mon.stats), mon.stats.untracked) == (one.n_absorbed, len(one.stats), 0)
    for signal, key in list(one.stats.streams())[::50]:  # every stream's detector in the same state
        a, b = one.stats.sequential_test(signal, key), mon.stats.sequential_test(signal, key)
        assert a is not None
        assert b is not None
        assert (a.n, a.statistic, a.mean) == (b.n, b.statistic, b.mean)


@pytest.mark.skipif(not COMPILED, reason="numba (the `monitor` extra) is not installed: no compiled score bank")
def test_the_compiled_score_bank_is_the_object_bank_exactly(
    replay: tuple[list[Record], list[FeedbackEvent], list[Change]],
) -> None:
    """At the defaults, the streams of every kind as rows of the numba banks (scores, rates, and invariants with their
    fixed baseline) raise the alerts of one ``BernoulliCUSUM`` per stream, and every stream ends in the same state, to
    the last bit (counts, CUSUMs, baselines, change estimates)."""
    records, _, changes = replay
    records = records[:2000]
    monitors = []
    for compiled in (False, True):
        mon = SegmentMonitor(config=DEFAULT_CONFIG)
        mon.stats = SegmentStatistics(DEFAULT_CONFIG.stats, compiled=compiled)
        mon.add_changes(changes)
        alerts = [a for s in range(0, len(records), 512) for a in mon.observe_batch(records[s : s + 512])]
        monitors.append((alerts, mon))
    (want, objects), (got, compiled_mon) = monitors
    assert want
    assert got == want
    assert compiled_mon.n_absorbed == objects.n_absorbed > 20  # dozens of alarms, each localised alike
    streams = list(objects.stats.streams())
    assert streams == list(compiled_mon.stats.streams())
    kinds: dict[str, int] = {}
    for signal, key in streams:
        a, b = objects.stats.sequential_test(signal, key), compiled_mon.stats.sequential_test(signal, key)
        assert a is not None
        assert b is not None
        assert (a.n, a.statistic, a.mean, a.baseline, a.drift_detected, a.estimate()) == (
            b.n, b.statistic, b.mean, b.baseline, b.drift_detected, b.estimate()
        ), (signal, key)  # fmt: skip
        assert isinstance(b, ScoreStream)  # every stream is compiled, whatever its kind
        assert b.fixed_baseline == a.fixed_baseline
        kind = KINDS[b.bank.kind]
        kinds[kind] = kinds.get(kind, 0) + 1
        assert (kind == "mean") == signal.endswith(".score")
        assert (kind == "invariant") == (a.fixed_baseline is not None)
    assert set(kinds) == set(KINDS)
    # the routing fault's invariant streams alarmed, in both banks alike
    assert compiled_mon.stats.alarmed == objects.stats.alarmed
    assert any(getattr(objects.stats.sequential_test(*sk), "fixed_baseline", None) for sk in objects.stats.alarmed)
    restored = pickle.loads(pickle.dumps(compiled_mon))  # a checkpoint of the compiled bank continues alike
    more = records[2000:2600]
    assert restored.observe_batch(more) == objects.observe_batch(more)


def test_a_checkpoint_between_batches_continues_exactly(
    replay: tuple[list[Record], list[FeedbackEvent], list[Change]],
) -> None:
    """Pickling folds the deferred counts into the state; the restored monitor (and the one that was pickled)
    go on exactly as one that never stopped."""
    records, _, changes = replay
    records = [r for r in records if r.time < datetime(2025, 8, 28, tzinfo=UTC)]
    cut = len(records) // 2
    one = SegmentMonitor(config=REPLAY_CONFIG)
    one.add_changes(changes)
    want = one.observe_batch(records)
    assert want
    first = SegmentMonitor(config=REPLAY_CONFIG)
    first.add_changes(changes)
    got = first.observe_batch(records[:cut])
    # zeros deferred when the snapshot is taken (pending in the compiled banks' rows, else counted per finest segment)
    banks = first.stats._banks
    assert any(b.pend[: b.rows].any() for b in banks) if banks is not None else first.stats._pending
    restored: SegmentMonitor = pickle.loads(pickle.dumps(first))
    fresh = SegmentMonitor(config=REPLAY_CONFIG)
    fresh.adopt_state(restored)
    assert got + fresh.observe_batch(records[cut:]) == want
    assert got + first.observe_batch(records[cut:]) == want


class _CountingStatistics(_SignalStatistics):
    """The real worker statistics, counting the records of each call to the batch path."""

    def __init__(self, config: StatsConfig, *, worker: int, workers: int) -> None:
        super().__init__(config, worker=worker, workers=workers)
        self.runs: list[int] = []

    def feed(self, items: Sequence[tuple[SegmentKey, Members, tuple[float, ...], float]]) -> tuple[int, list[Firing]]:
        self.runs.append(len(items))
        return super().feed(items)


@pytest.mark.skipif(not COMPILED, reason="numba (the `monitor` extra) is not installed: no compiled score bank")
def test_the_workers_of_a_sharded_monitor_take_the_batch_path_with_the_alerts_of_one_process(
    replay: tuple[list[Record], list[FeedbackEvent], list[Change]],
) -> None:
    """The statistics of each worker of ``ShardedMonitor`` (the class a Ray actor runs) take a batch's records in
    runs through the compiled banks, its own signals only, at the defaults: the alerts of one process
    (``tests/monitor/test_distributed.py`` proves it for Ray actors with 1, 2 and 4 workers on the replay)."""
    records, _, changes = replay
    records = records[:3000]
    one = SegmentMonitor(config=DEFAULT_CONFIG)
    one.add_changes(changes)
    for r in records:
        one.observe(r)
    with ShardedMonitor(config=DEFAULT_CONFIG, workers=2) as mon:
        for worker in mon._local:
            worker.monitor.stats = _CountingStatistics(
                DEFAULT_CONFIG.stats, worker=worker.monitor.stats.worker, workers=2
            )
        mon.add_changes(changes)
        for s in range(0, len(records), 512):
            mon.observe_batch(records[s : s + 512])
        mon.drain()
        assert sorted(mon.alerts, key=lambda a: a.alert_id) == sorted(one.alerts, key=lambda a: a.alert_id)
        assert one.alerts
        assert mon.n_absorbed == one.n_absorbed
        for worker in mon._local:
            stats = worker.monitor.stats
            assert isinstance(stats, _CountingStatistics)
            assert sum(stats.runs) >= len(records)  # every record through the batch path
            assert max(stats.runs) > 100  # in runs, not record by record
            assert all(stats.owns_signal(signal) for signal, _ in stats.streams())


#: ``tests/data/checkpoints``: a checkpoint of the statistics made by the code from before the compiled banks took the
#: rate and invariant streams (``make_segrate_checkpoint.py``, with its configuration), and the streams' states after
#: that code went on.
CHECKPOINTS = REPLAY.parents[1] / "checkpoints"
SEGRATE_CONFIG = MonitorConfig(stats=replace(REPLAY_CONFIG.stats, score_max_order=1))


@pytest.mark.skipif(not COMPILED, reason="numba (the `monitor` extra) is not installed: no compiled score bank")
def test_a_checkpoint_in_the_old_format_continues_as_the_old_code_did(
    replay: tuple[list[Record], list[FeedbackEvent], list[Change]],
) -> None:
    """Its rate and invariant streams (``BernoulliCUSUM`` objects) and score streams (zeros counted by the segments'
    clocks) become rows of the banks with their zeros pending: the monitor goes on with the alerts of one that never
    stopped, and every stream ends in the state, to the bit, that the old code reached from the same checkpoint."""
    old = json.loads((CHECKPOINTS / "segrate_streams.json").read_text())
    records = replay[0][: old["end"]]
    cut = old["cut"]
    straight = SegmentMonitor(config=SEGRATE_CONFIG)
    want = straight.observe_batch(records)
    mon = SegmentMonitor(config=SEGRATE_CONFIG)
    got = mon.observe_batch(records[:cut])
    stats = pickle.loads(gzip.decompress((CHECKPOINTS / "segrate_stats.pkl.gz").read_bytes()))
    assert isinstance(stats, SegmentStatistics)
    assert stats.config == SEGRATE_CONFIG.stats
    assert len(stats) == len(mon.stats)
    rows = [det for det in stats._streams.values() if isinstance(det, ScoreStream)]
    assert len(rows) == len(stats)  # every stream a row of the banks, of every kind
    assert {KINDS[det.bank.kind] for det in rows} == set(KINDS)
    mon.stats = stats
    assert got + mon.observe_batch(records[cut:]) == want
    assert want
    assert (len(mon.alerts), mon.n_absorbed) == (old["alerts"], old["absorbed"]) == (1, straight.n_absorbed)
    states = {}
    for signal, key in mon.stats.streams():
        det = mon.stats.sequential_test(signal, key)
        assert det is not None
        states[f"{signal}|{'|'.join(key)}"] = [det.n, det.statistic.hex(), det.mean.hex(), det.baseline.hex()]
    assert states == old["streams"]


class _CountingMonitor(SegmentMonitor):
    """The real monitor, counting how the worker calls it."""

    def __init__(self, config: MonitorConfig) -> None:
        super().__init__(config=config)
        self.calls = {"observe": 0, "observe_batch": 0}

    def observe(self, record: Record) -> list[Alert]:
        self.calls["observe"] += 1
        return super().observe(record)

    def observe_batch(self, records: Iterable[Record], decided: list[Record] | None = None) -> list[Alert]:
        self.calls["observe_batch"] += 1
        return super().observe_batch(records, decided=decided)


def test_the_worker_monitors_a_batch_per_flush_with_the_per_record_alerts(
    replay: tuple[list[Record], list[FeedbackEvent], list[Change]],
) -> None:
    """The proxy's and ingest's worker hands the monitor each pending batch in one call (before the batch, feedback
    or a change-log update is written), and the store ends up with the per-record path's alerts."""
    records, feedback, changes = replay
    until = datetime(2025, 8, 28, tzinfo=UTC)
    records = [r for r in records if r.time < until]
    feedback = [f for f in feedback if f.time < until]
    one = SegmentMonitor(config=REPLAY_CONFIG)
    one.add_changes(changes)
    _per_record(one, records, feedback)
    hook = _CountingMonitor(REPLAY_CONFIG)
    store = MemoryStore()
    worker = MonitorWorker(store, RecordBuilder(salt="s", scorer=None), hook=hook, batch_size=256)
    worker.add_changes(changes)
    j = 0
    for record in records:
        while j < len(feedback) and feedback[j].time <= record.time:
            worker.feedback(feedback[j])
            j += 1
        worker.accept(record)
    worker.flush()
    assert hook.calls["observe"] == 0
    assert 0 < hook.calls["observe_batch"] <= len(records) // 256 + j + 1
    assert hook.alerts == one.alerts
    assert sorted(store.alerts(), key=lambda a: a.alert_id) == sorted(one.alerts, key=lambda a: a.alert_id)
    assert store.summary().records == len(records)
    assert all(r.signals is not None for r in store.records())  # the records stored are the ones the monitor decided


@pytest.mark.parametrize("sticky_alerts", [False, True], ids=["context-free-audit", "audit-reads-the-alerts"])
def test_undecided_records_are_decided_as_record_by_record(
    replay: tuple[list[Record], list[FeedbackEvent], list[Change]], sticky_alerts: bool
) -> None:
    """Records without signals (the proxy's and ingest's): the batch path reads the routing verdicts ahead only when
    every alerting rule reads the record alone, and decides each record after the alerts before it, so the decided
    records (the sticky-session verdicts read the open alerts), the audit's counts and the alerts are those of the
    per-record path; with a rule that reads the alerts (sticky sessions alerting), records are decided one by one."""
    records, _, changes = replay
    records = [replace(r, signals=None) for r in records[:4000]]
    runs = []
    for batched in (False, True):
        mon = SegmentMonitor(config=REPLAY_CONFIG)
        mon.signal_stage = SignalStage(audit=RoutingAudit([PoolContextRule(), StickySessionRule(alerts=sticky_alerts)]))
        mon.add_changes(changes)
        decided: list[Record] = []
        if batched:
            alerts = [a for s in range(0, len(records), 512) for a in mon.observe_batch(records[s : s + 512], decided)]
        else:
            alerts = []
            for r in records:
                decided.append(mon.decide(r))
                alerts.extend(mon.observe(decided[-1]))
        assert mon.audit is not None
        runs.append((alerts, decided, dict(mon.audit.counts)))
    (want, want_decided, want_counts), (got, got_decided, got_counts) = runs
    assert want
    assert got == want
    assert got_decided == want_decided
    assert got_counts == want_counts
    assert want_counts["sticky_degraded_session"] > 0  # the verdicts that read the alerts were exercised


class _Traced(SegmentMonitor):
    """A monitor that keeps every localisation's trail, and counts its streams' reads for localisation."""

    def __init__(self, config: MonitorConfig) -> None:
        super().__init__(config=config)
        self.trails: list[tuple[str, SegmentKey, float | None, list[SegmentKey]]] = []
        self.reads = 0

    def _localise(self, signal: str, key: SegmentKey, level: float | None = None) -> list[SegmentKey]:
        trail = super()._localise(signal, key, level)
        self.trails.append((signal, key, level, list(trail)))
        return trail

    def _degraded_unless_young(self, signal: str, key: SegmentKey) -> bool | float | None:
        self.reads += 1
        return super()._degraded_unless_young(signal, key)


class _Unremembered(_Traced):
    """Each alarm localised on its own, every stream read again (the code before the alarms of one record shared
    their reads)."""

    def _raise(self, fired: list[Firing], event_time: datetime) -> list[Alert]:
        return [a for firing in fired for a in self._handle(firing, event_time)]


@pytest.mark.parametrize("defaults", [False, True], ids=["whole-replay", "defaults"])
def test_the_alarms_of_one_record_sharing_their_reads_change_no_localisation(
    replay: tuple[list[Record], list[FeedbackEvent], list[Change]], defaults: bool
) -> None:
    """The alarms of one record remember each stream's answer, each second-fault check and where each segment's
    localisation walks on to (``SegmentMonitor._raise``): every localisation's trail, every alert and every
    stream's state to the last bit are those of localising each alarm on its own, reading every stream again."""
    records, feedback, changes = replay
    config = DEFAULT_CONFIG if defaults else REPLAY_CONFIG
    if defaults:
        records, feedback = records[:3000], []
    runs = []
    for cls in (_Unremembered, _Traced):
        mon = cls(config)
        mon.add_changes(changes)
        runs.append((_batched(mon, records, feedback, 512), mon))
    (want, plain), (got, shared) = runs
    assert want
    assert got == want
    assert shared.alerts == plain.alerts
    assert shared.trails == plain.trails
    assert len(plain.trails) > 100
    assert shared.reads < plain.reads / 2  # the shared reads are what it saves
    assert (shared.n_absorbed, len(shared.stats)) == (plain.n_absorbed, len(plain.stats))
    for signal, key in plain.stats.streams():
        a, b = plain.stats.sequential_test(signal, key), shared.stats.sequential_test(signal, key)
        assert a is not None
        assert b is not None
        assert (a.n, a.statistic, a.mean, a.estimate()) == (b.n, b.statistic, b.mean, b.estimate()), (signal, key)
