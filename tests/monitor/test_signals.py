"""Per-record signals are decided once: the worker stores what the monitor decided, the monitor reads a record's
stored signals instead of deciding them again, and the routing audit (which keeps state) runs once per record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from parity._exceptions import InvalidInputError
from parity.monitor import DetectorObservation, MemoryStore, Record
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


ONCE_CONFIG = MonitorConfig(
    stats=StatsConfig(dimensions=("model",), horizon=10_000, rate_warmup=200, score_max_order=0),
    routing_audit=False,
)


def _script_alarms(monitor: SegmentMonitor, records: list[Record]) -> list[str]:
    return [a.signal for r in records for a in monitor.observe(r) if a.status == "open"]


def _clean_then(make_record: Callable[..., Record], tail: list[tuple[str, bool]]) -> list[Record]:
    """400 clean records (one session each, 4% flagged), then ``tail``: (session, flagged) per record."""
    plan = [(f"c{i}", i % 25 == 0) for i in range(400)] + tail
    return [
        make_record(i, session_hash=s, observations=(DetectorObservation("unexpected_script", f, 0.0),))
        for i, (s, f) in enumerate(plan)
    ]


def test_one_session_flagging_answer_after_answer_counts_once_and_raises_no_alert(
    make_record: Callable[..., Record],
) -> None:
    """The faultbox drill's clean-phase false alert: a session whose answers keep flagging (its sampling temperature,
    its language) is one flagged session, not 30 independent flagged requests; the stored flags are unchanged."""
    tail = [("loop", True) if k % 4 else (f"t{k}", False) for k in range(40)]
    records = _clean_then(make_record, tail)
    assert _script_alarms(SegmentMonitor(config=ONCE_CONFIG), records) == []
    # each flag counted as an independent request (the old behaviour) alarms on the same records
    per_request = replace(ONCE_CONFIG, session_once=())
    assert "unexpected_script" in _script_alarms(SegmentMonitor(config=per_request), records)
    decided = SegmentMonitor(config=ONCE_CONFIG).decide(records[-2])
    assert decided.signals is not None
    assert decided.signals["unexpected_script"] == 1.0  # stored as flagged: only what the statistics read changed


def test_a_fault_flagging_answers_across_sessions_still_alarms(make_record: Callable[..., Record]) -> None:
    tail = [(f"f{k}", k % 2 == 0) for k in range(40)]  # half of the answers flagged, each in its own session
    assert "unexpected_script" in _script_alarms(SegmentMonitor(config=ONCE_CONFIG), _clean_then(make_record, tail))


def test_a_session_counts_again_once_its_window_has_passed(make_record: Callable[..., Record]) -> None:
    stage = SegmentMonitor(config=replace(ONCE_CONFIG, session_window_s=10.0)).signal_stage

    def counted(i: int) -> bool:
        record = make_record(i, session_hash="s", observations=(DetectorObservation("unexpected_script", True, 0.0),))
        return any(v.signal == "unexpected_script" for v in stage.values(record))

    assert [counted(i) for i in (0, 5, 9, 10, 11, 30)] == [True, False, False, True, False, True]
    with pytest.raises(InvalidInputError, match="session_window_s"):
        MonitorConfig(session_window_s=0.0)
