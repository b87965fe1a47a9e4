"""A restart neither re-alerts an open incident, nor forgets it, nor relearns its baselines from faulty traffic."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from parity.monitor import DetectorObservation, DuckDBStore, MemoryStore, Record
from parity.monitor.alerting.alerts import MemoryNotifier
from parity.monitor.detection.checkpoint import Checkpointer
from parity.monitor.detection.pipeline import MonitorConfig, SegmentMonitor
from parity.monitor.detection.segments import StatsConfig

CONFIG = MonitorConfig(stats=StatsConfig(dimensions=("model", "platform"), alpha=0.01, horizon=100_000))
T0 = datetime(2025, 8, 25, tzinfo=UTC)


def traffic(start: int, stop: int, *, fault_from: int, seed: int = 3) -> Iterator[Record]:
    """Two platforms; from record ``fault_from`` on, tpu flags 5% of responses instead of 0.2%."""
    rng = np.random.default_rng(seed + start)
    for i in range(start, stop):
        platform = ("gpu", "tpu")[i % 2]
        bad = platform == "tpu" and i >= fault_from
        flagged = bool(rng.random() < (0.05 if bad else 0.002))
        yield Record(
            record_id=f"r{i}",
            time=T0 + timedelta(seconds=i),
            model="S",
            platform=platform,
            observations=(DetectorObservation("unexpected_script", flagged, 0.0),),
        )


def run(monitor: SegmentMonitor, records: Iterator[Record], store: MemoryStore | DuckDBStore) -> list[str]:
    """Observe and store like the proxy's worker does; the ids of the alerts raised."""
    raised: list[str] = []
    batch: list[Record] = []
    for record in records:
        batch.append(record)
        alerts = monitor.observe(record)
        if alerts:
            store.write_records(batch)
            batch = []
            store.write_alerts(alerts)
            raised.extend(a.alert_id for a in alerts if a.status == "open")
    store.write_records(batch)
    return raised


def test_an_open_alert_stays_open_and_is_not_raised_again_after_a_restart() -> None:
    store = MemoryStore()
    before = MemoryNotifier()
    first = SegmentMonitor(config=CONFIG, notifiers=[before])
    raised = run(first, traffic(0, 24_000, fault_from=20_000), store)
    assert len(raised) == 1, raised
    Checkpointer(store).save(first)

    after = MemoryNotifier()
    second = SegmentMonitor(config=CONFIG, notifiers=[after])
    result = Checkpointer(store).restore(second)
    assert result.restored
    assert result.replayed == 0
    assert [a.alert_id for a in second.open_alerts] == raised
    # the fault goes on after the restart: no second alert, nothing re-sent
    assert run(second, traffic(24_000, 34_000, fault_from=20_000), store) == []
    assert after.alerts == []
    assert [a.alert_id for a in store.alerts(open_only=True)] == raised


def test_a_restart_keeps_the_baseline_learned_before_the_fault() -> None:
    """Snapshot on clean traffic, restart, fault: the restored monitor alerts; one that relearned from the
    faulty traffic would take the fault for normal."""
    store = MemoryStore()
    first = SegmentMonitor(config=CONFIG)
    assert run(first, traffic(0, 20_000, fault_from=20_000), store) == []
    Checkpointer(store).save(first)

    restored = SegmentMonitor(config=CONFIG)
    assert Checkpointer(store).restore(restored).restored
    assert len(run(restored, traffic(20_000, 26_000, fault_from=20_000), store)) == 1

    fresh = SegmentMonitor(config=CONFIG)
    assert run(fresh, traffic(20_000, 26_000, fault_from=20_000), MemoryStore()) == []


def test_records_stored_after_the_snapshot_are_replayed_and_only_unsent_alerts_are_sent() -> None:
    store = MemoryStore()
    first = SegmentMonitor(config=CONFIG)
    run(first, traffic(0, 20_000, fault_from=20_000), store)
    Checkpointer(store).save(first)
    # the process went on observing and storing the fault, then died before its next snapshot
    raised = run(first, traffic(20_000, 24_000, fault_from=20_000), store)
    assert len(raised) == 1

    after = MemoryNotifier()
    second = SegmentMonitor(config=CONFIG, notifiers=[after])
    result = Checkpointer(store).restore(second)
    assert result.replayed == 4_000
    assert [a.alert_id for a in second.open_alerts] == raised  # the same alert, rebuilt by the replay
    assert result.new_alerts == ()  # it was sent before the crash
    assert after.alerts == []

    # a store that lost the alert (written after the last flush) gets it back, and it is to be sent now
    lost = MemoryStore()
    lost.write_records(store.records())
    lost.set_meta(Checkpointer.key(first), str(store.get_meta(Checkpointer.key(first))))
    third = SegmentMonitor(config=CONFIG)
    result = Checkpointer(lost).restore(third)
    assert [a.alert_id for a in result.new_alerts] == raised
    assert [a.alert_id for a in result.alerts if a.status == "open"] == raised


def test_a_checkpoint_of_another_configuration_or_a_corrupt_one_starts_fresh() -> None:
    store = MemoryStore()
    first = SegmentMonitor(config=CONFIG)
    run(first, traffic(0, 2_000, fault_from=10**9), store)
    Checkpointer(store).save(first)
    other = SegmentMonitor(config=MonitorConfig(stats=StatsConfig(dimensions=("model",))))
    store.set_meta(Checkpointer.key(other), str(store.get_meta(Checkpointer.key(first))))
    result = Checkpointer(store).restore(other)
    assert (result.restored, result.reason) == (False, "configuration changed")
    assert other.n_records == 0

    store.set_meta(Checkpointer.key(first), "parity-checkpoint-v1:not base64 at all")
    fresh = SegmentMonitor(config=CONFIG)
    assert Checkpointer(store).restore(fresh).restored is False
    assert fresh.n_records == 0


def test_a_checkpoint_survives_closing_and_reopening_a_duckdb_store(tmp_path: Path) -> None:
    path = tmp_path / "parity.duckdb"
    with DuckDBStore(path) as store:
        first = SegmentMonitor(config=CONFIG)
        raised = run(first, traffic(0, 24_000, fault_from=20_000), store)
        Checkpointer(store).save(first)
    with DuckDBStore(path) as store:
        second = SegmentMonitor(config=CONFIG)
        assert Checkpointer(store).restore(second).restored
        assert [a.alert_id for a in second.open_alerts] == raised
        assert run(second, traffic(24_000, 26_000, fault_from=20_000), store) == []


def test_maybe_save_waits_for_its_interval_and_never_raises() -> None:
    class Refusing(MemoryStore):
        def set_meta(self, key: str, value: str) -> None:
            raise OSError(28, "No space left on device")

    monitor = SegmentMonitor(config=CONFIG)
    every = Checkpointer(MemoryStore(), interval_s=0.0)
    assert every.maybe_save(monitor)
    assert every.saves == 1
    assert Checkpointer(MemoryStore(), interval_s=3600.0).maybe_save(monitor) is False
    refused = Checkpointer(Refusing(), interval_s=0.0)
    assert refused.maybe_save(monitor) is False
    assert refused.failures == 1


@pytest.mark.parametrize("tracked", [0, 200_000])
def test_replay_without_remembered_ids_trusts_the_snapshot_time(tracked: int) -> None:
    config = MonitorConfig(stats=CONFIG.stats, max_tracked_responses=tracked)
    store = MemoryStore()
    first = SegmentMonitor(config=config)
    records = list(traffic(0, 100, fault_from=10**9))
    for r in records[:60]:
        first.observe(r)
    store.write_records(records)
    Checkpointer(store).save(first)
    second = SegmentMonitor(config=config)
    assert Checkpointer(store).restore(second).replayed == 40
    assert second.n_records == 100


def test_the_worker_restores_on_start_and_snapshots_on_its_last_step() -> None:
    """The wiring the proxy and ingest use: a second worker on the same store continues the first's alert."""
    from parity.monitor.intake.scoring import RecordBuilder
    from parity.monitor.runtime.worker import MonitorWorker

    store = MemoryStore()
    sent = MemoryNotifier()
    first = MonitorWorker(
        store, RecordBuilder(salt="s", scorer=None), hook=SegmentMonitor(config=CONFIG), notifiers=[sent],
        checkpoint_interval_s=3600.0,
    )  # fmt: skip
    first.recover()
    assert first.restored is not None
    assert first.restored.reason == "no checkpoint"
    for record in traffic(0, 24_000, fault_from=20_000):
        first.accept(record)
    first.flush()
    first.checkpoint()
    opened = [a.alert_id for a in sent.alerts if a.status == "open"]
    assert len(opened) == 1

    again = MemoryNotifier()
    second = MonitorWorker(
        store, RecordBuilder(salt="s", scorer=None), hook=SegmentMonitor(config=CONFIG), notifiers=[again],
        checkpoint_interval_s=3600.0,
    )  # fmt: skip
    second.recover()
    assert second.restored is not None
    assert second.restored.restored
    for record in traffic(24_000, 30_000, fault_from=20_000):
        second.accept(record)
    second.flush()
    assert again.alerts == []
    assert [a.alert_id for a in store.alerts(open_only=True)] == opened
    assert len(store.records()) == 30_000
