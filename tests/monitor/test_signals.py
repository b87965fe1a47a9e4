"""Per-record signals are decided once: the worker stores what the monitor decided, the monitor reads a record's
stored signals instead of deciding them again, and the routing audit (which keeps state) runs once per record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from parity.monitor import MemoryStore, Record
from parity.monitor.detection.pipeline import MonitorConfig, SegmentMonitor
from parity.monitor.detection.segments import StatsConfig
from parity.monitor.intake.scoring import RecordBuilder
from parity.monitor.runtime.worker import MonitorWorker

CONFIG = MonitorConfig(stats=StatsConfig(dimensions=("model", "pool"), horizon=1000, score_max_order=0))
RULE = "short_on_long_pool"


def test_the_worker_stores_what_the_monitor_decided_and_audits_each_record_once(
    make_record: Callable[..., Record],
) -> None:
    monitor = SegmentMonitor(config=CONFIG)
    store = MemoryStore()
    worker = MonitorWorker(store, RecordBuilder(salt="s", scorer=None), hook=monitor)
    for i in range(6):
        worker.accept(make_record(i, pool="long" if i % 2 else "short"))
    worker.flush()
    assert monitor.audit is not None
    assert monitor.audit.counts[RULE] == 3  # three misrouted records, each audited once (not again when observed)
    stored = store.records()
    assert [(r.signals or {}).get(f"routing.{RULE}") for r in stored] == [0.0, 1.0] * 3
    assert all(r.context_class == "short" for r in stored)


def test_a_record_carrying_signals_is_observed_with_them(make_record: Callable[..., Record]) -> None:
    monitor = SegmentMonitor(config=CONFIG)
    decided = monitor.decide(make_record(1, pool="short"))
    assert decided.signals is not None
    assert decided.signals[f"routing.{RULE}"] == 0.0
    # the stored verdict, not a new one: a replay reads what the monitor decided when the record was new
    monitor.observe(replace(decided, signals={**decided.signals, f"routing.{RULE}": 1.0}))
    assert monitor.audit is not None
    assert monitor.audit.counts[RULE] == 0
    detector = monitor.stats.sequential_test(f"routing.{RULE}", ("*", "*"))
    assert detector is not None
    assert (detector.n, detector.mean) == (1, 1.0)


def test_a_monitor_without_the_routing_audit_watches_no_stored_routing_verdict(
    make_record: Callable[..., Record],
) -> None:
    """Records stored by a monitor with the audit carry routing verdicts; a monitor with ``routing_audit=False``
    reading them (an offline re-run) must not watch them, the silent sticky-session rule included."""
    auditing = SegmentMonitor(config=CONFIG)
    decided = auditing.decide(make_record(1, pool="long"))
    assert decided.signals is not None
    assert decided.signals[f"routing.{RULE}"] == 1.0
    assert "routing.sticky_degraded_session" in decided.signals
    plain = SegmentMonitor(config=MonitorConfig(stats=CONFIG.stats, routing_audit=False))
    plain.observe(decided)
    assert plain.stats.sequential_test(f"routing.{RULE}", ("*", "*")) is None
    assert plain.stats.sequential_test("routing.sticky_degraded_session", ("*", "*")) is None
