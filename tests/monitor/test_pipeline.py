"""End-to-end tests of the statistics pipeline on simulated fleet traffic: the right segment, the right change
ranked first, de-duplication, feedback, sharding and the false-alarm rate on clean traffic."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from parity._exceptions import InvalidInputError
from parity.monitor import Alert, Change, DetectorObservation, FeedbackEvent, Record
from parity.monitor.alerting.alerts import MemoryNotifier
from parity.monitor.detection.pipeline import MonitorConfig, SegmentMonitor
from parity.monitor.detection.segments import StatsConfig, shard_of

T0 = datetime(2025, 8, 25, tzinfo=UTC)
DIMS = ("model", "pool", "platform", "context_class")
FAULT_AT = 12_000


def fleet(
    rng: np.random.Generator,
    n: int,
    *,
    corrupt: Callable[[int, str, str], bool] = lambda i, model, platform: False,
    misroute_share: float = 0.0,
    base_rate: float = 0.002,
    bad_rate: float = 0.04,
) -> Iterator[Record]:
    """Two models on two platforms; 10% long-context requests on the long pool; one request per second."""
    models = rng.choice(["S", "O"], size=n)
    platforms = rng.choice(["gpu", "tpu"], size=n)
    long_ctx = rng.random(n) < 0.1
    u = rng.random(n)
    route = rng.random(n)
    for i in range(n):
        model, platform = str(models[i]), str(platforms[i])
        pool = "long" if long_ctx[i] else "short"
        rate = base_rate
        if i >= FAULT_AT and model == "S" and not long_ctx[i] and route[i] < misroute_share:
            pool, rate = "long", bad_rate
        if corrupt(i, model, platform):
            rate = bad_rate
        flagged = bool(u[i] < rate)
        yield Record(
            record_id=f"r{i}",
            time=T0 + timedelta(seconds=i),
            model=model,
            pool=pool,
            platform=platform,
            server=f"{platform}-{pool}-{i % 3}",
            session_hash=f"s{i % 500}",
            context_tokens=20_000 if long_ctx[i] else 500,
            observations=(DetectorObservation("unexpected_script", flagged, 0.0),),
        )


def monitor(**kwargs: object) -> tuple[SegmentMonitor, MemoryNotifier]:
    memory = MemoryNotifier()
    stats = StatsConfig(dimensions=DIMS, alpha=0.01, horizon=1_000_000, max_streams=2000, score_max_order=0)
    config = MonitorConfig(stats=stats, **kwargs)  # type: ignore[arg-type]
    return SegmentMonitor(config=config, notifiers=[memory]), memory


def first_alert(mon: SegmentMonitor, records: Iterator[Record], signal: str) -> tuple[Alert, int]:
    for i, rec in enumerate(records):
        for alert in mon.observe(rec):
            if alert.signal == signal and alert.status == "open":
                return alert, i
    raise AssertionError(f"no {signal} alert")


CHANGES = [
    Change("deploy-fleet", T0 + timedelta(seconds=FAULT_AT - 3000), "deploy", {}, "weekly deploy"),
    Change(
        "cfg-tpu-O", T0 + timedelta(seconds=FAULT_AT - 300), "config", {"platform": "tpu", "model": "O"}, "perf flag"
    ),
    Change("cfg-gpu", T0 + timedelta(seconds=FAULT_AT - 60), "config", {"platform": "gpu"}, "gpu driver"),
    Change("lb-S-long", T0 + timedelta(seconds=FAULT_AT - 120), "load_balancing", {"model": "S", "pool": "long"}),
    Change("later", T0 + timedelta(seconds=FAULT_AT + 20_000), "deploy", {"platform": "tpu", "model": "O"}),
]


def test_corruption_on_one_platform_and_model_is_localised_and_attributed(rng: np.random.Generator) -> None:
    mon, memory = monitor()
    mon.add_changes(CHANGES)
    records = fleet(rng, 40_000, corrupt=lambda i, m, p: i >= FAULT_AT and m == "O" and p == "tpu")
    alert, i = first_alert(mon, records, "unexpected_script")
    assert i >= FAULT_AT, "false alarm before the fault"
    assert alert.segment == {"model": "O", "platform": "tpu"}
    assert alert.attributed_changes[0].change_id == "cfg-tpu-O"
    assert "matches the segment exactly" in alert.attributed_changes[0].evidence
    assert "later" not in {c.change_id for c in alert.attributed_changes}
    assert abs((alert.started_at - (T0 + timedelta(seconds=FAULT_AT))).total_seconds()) < 1500
    assert alert.effect > 0.01
    assert alert.n_after > 0
    assert alert.detected_at > alert.started_at
    assert memory.alerts[-1] == alert
    assert mon.open_alerts[-1].alert_id == alert.alert_id


def test_routing_fault_raises_an_audit_alert_on_the_misrouted_pool(rng: np.random.Generator) -> None:
    mon, _ = monitor()
    mon.add_changes(CHANGES)
    alert, i = first_alert(mon, fleet(rng, 30_000, misroute_share=0.02), "routing.short_on_long_pool")
    assert i >= FAULT_AT
    assert i - FAULT_AT < 2000  # ~1% of requests violate a rule that never fired before: quick
    # the segment that appeared with the fault: short requests (of model S, the only one misrouted) on the long pool
    assert alert.segment in (
        {"model": "S", "pool": "long", "context_class": "short"},
        {"pool": "long", "context_class": "short"},
    )
    assert alert.attributed_changes[0].change_id == "lb-S-long"


def test_clean_traffic_raises_no_alert(rng: np.random.Generator) -> None:
    mon, memory = monitor()
    for rec in fleet(rng, 30_000):
        mon.observe(rec)
    assert memory.alerts == []
    assert mon.n_records == 30_000


def test_changes_added_after_the_alert_re_attribute_it(rng: np.random.Generator) -> None:
    mon, memory = monitor()
    records = fleet(rng, 40_000, corrupt=lambda i, m, p: i >= FAULT_AT and m == "O" and p == "tpu")
    alert, _ = first_alert(mon, records, "unexpected_script")
    assert alert.attributed_changes == ()
    updated = mon.add_changes(CHANGES)
    assert [a.alert_id for a in updated] == [alert.alert_id]
    assert updated[0].attributed_changes[0].change_id == "cfg-tpu-O"
    assert memory.alerts[-1] == updated[0]


def test_a_more_specific_alert_supersedes_a_coarser_one() -> None:
    """A segment alarm whose children are not yet distinguishable names the coarse segment; when a child later
    becomes the only degraded one, the new alert supersedes the coarse one."""
    mon, memory = monitor()
    coarse_key = ("O", "*", "*", "*")
    fine_key = ("O", "*", "tpu", "*")
    mon._keys["old"] = coarse_key  # an open alert on model=O, as the coarse alarm would leave it
    mon._alerts["old"] = Alert("old", "unexpected_script", {"model": "O"}, T0, T0, 0.01, 0.002, 0.012, 100)
    rng = np.random.default_rng(7)
    records = fleet(rng, 40_000, corrupt=lambda i, m, p: i >= FAULT_AT and m == "O" and p == "tpu")
    returned: list[Alert] = []
    for rec in records:
        returned = mon.observe(rec)
        if returned:
            break
    assert (returned[0].alert_id, returned[0].status) == ("old", "superseded")
    alert = returned[-1]
    assert alert.segment == {"model": "O", "platform": "tpu"}
    assert mon._keys[alert.alert_id] == fine_key
    statuses = {a.alert_id: a.status for a in mon.alerts}
    assert statuses["old"] == "superseded"
    assert any(a.alert_id == "old" and a.status == "superseded" for a in memory.alerts)


def test_negative_feedback_on_one_segment_alerts(rng: np.random.Generator) -> None:
    mon, _ = monitor()
    alerts: list[Alert] = []
    for i, rec in enumerate(fleet(rng, 30_000)):
        alerts += mon.observe(rec)
        bad = i >= FAULT_AT and rec.platform == "tpu" and rec.model == "S"
        if rng.random() < (0.05 if bad else 0.001):
            alerts += mon.observe_feedback(FeedbackEvent(rec.record_id, rec.time, "thumbs_down"))
        if rng.random() < 0.01:  # thumbs-up is not a negative signal
            alerts += mon.observe_feedback(FeedbackEvent(rec.record_id, rec.time, "thumbs_up"))
        if alerts:
            break
    assert {a.signal for a in alerts} == {"feedback"}
    assert alerts[0].segment == {"model": "S", "platform": "tpu"}, [a.segment for a in alerts]
    assert mon.observe_feedback(FeedbackEvent("unknown-id", T0, "bug_report")) == []


def test_sticky_sessions_on_an_alerting_segment_are_violations(make_record: Callable[..., Record]) -> None:
    mon, _ = monitor()
    mon._keys["tpu"] = ("*", "*", "tpu", "*")
    mon._alerts["tpu"] = Alert("tpu", "unexpected_script", {"platform": "tpu"}, T0, T0, 0.01, 0.002, 0.012, 100)
    assert mon.is_alerting({"model": "S", "platform": "tpu", "pool": "short"})
    assert not mon.is_alerting({"platform": "gpu"})
    assert mon.audit is not None
    for i in range(5):
        mon.observe(make_record(i, platform="tpu", server="tpu-1", session_hash="sess"))
    assert mon.audit.counts["sticky_degraded_session"] == 3  # the 3rd, 4th and 5th request in a row


def test_shards_partition_the_streams(rng: np.random.Generator) -> None:
    records = list(fleet(rng, 2000))
    monitors = [
        SegmentMonitor(config=MonitorConfig(stats=StatsConfig(dimensions=DIMS), shard=k, n_shards=3)) for k in range(3)
    ]
    for rec in records:
        for mon in monitors:
            mon.observe(rec)
    owned = [set(m.stats.streams()) for m in monitors]
    assert not owned[0] & owned[1]
    assert not owned[1] & owned[2]
    assert not owned[0] & owned[2]
    single = SegmentMonitor(config=MonitorConfig(stats=StatsConfig(dimensions=DIMS)))
    for rec in records:
        single.observe(rec)
    assert set(single.stats.streams()) == owned[0] | owned[1] | owned[2]
    assert all(shard_of(key, 3) == k for k, streams in enumerate(owned) for _, key in streams)


def test_config_validation() -> None:
    with pytest.raises(InvalidInputError, match="`evidence_threshold` must be > 0"):
        MonitorConfig(evidence_threshold=0.0)
    with pytest.raises(InvalidInputError, match="`shard` must be in"):
        SegmentMonitor(config=MonitorConfig(shard=3, n_shards=2))
    with pytest.raises(InvalidInputError, match="`alpha` must be in"):
        StatsConfig(alpha=2.0)


def test_clock_stamps_detection_time(rng: np.random.Generator) -> None:
    stamp = datetime(2030, 1, 1, tzinfo=UTC)
    memory = MemoryNotifier()
    stats = StatsConfig(dimensions=DIMS, score_max_order=0)
    mon = SegmentMonitor(config=MonitorConfig(stats=stats), notifiers=[memory], clock=lambda: stamp)
    records = fleet(rng, 40_000, corrupt=lambda i, m, p: i >= FAULT_AT and m == "O" and p == "tpu")
    alert, _ = first_alert(mon, records, "unexpected_script")
    assert alert.detected_at == stamp


def _misrouting(rng: np.random.Generator, shares: list[tuple[int, float]]) -> Iterator[Record]:
    """Models S and O, 10% long-context requests on the long pool; in each (count, share) period that share of
    model S's short requests is served by the long pool."""
    i = 0
    for n, share in shares:
        for _ in range(n):
            model = ("S", "O")[int(rng.random() < 0.3)]
            long_ctx = rng.random() < 0.1
            misrouted = model == "S" and not long_ctx and rng.random() < share
            yield Record(
                record_id=f"m{i}",
                time=T0 + timedelta(seconds=i),
                model=model,
                pool="long" if long_ctx or misrouted else "short",
                platform=("gpu", "tpu")[i % 2],
                context_tokens=20_000 if long_ctx else 500,
            )
            i += 1


def test_an_invariant_rule_alerts_after_a_handful_of_violations(rng: np.random.Generator) -> None:
    """Short requests on the long pool never happen in a correct fleet: its baseline is the stated tolerance, not
    learned, so a 0.8% share alarms within a few violations even on a small segment."""
    mon, _memory = monitor()
    records = list(_misrouting(rng, [(500, 0.0), (5000, 0.008)]))
    alert, i = first_alert(mon, iter(records), "routing.short_on_long_pool")
    violations = sum(r.pool == "long" and r.context_tokens == 500 for r in records[: i + 1])
    assert 3 <= violations <= 8
    assert alert.baseline == pytest.approx(1e-5)
    # short requests on the long pool: only model S's reach it, so the model adds no contrast (no sibling there)
    assert alert.segment == {"pool": "long", "context_class": "short"}


def test_a_worse_level_on_an_open_alert_is_a_new_alert_that_escalates_it(rng: np.random.Generator) -> None:
    mon, _memory = monitor()
    mon.add_changes(
        [
            Change("route-bug", T0 + timedelta(seconds=499), "routing", {"model": "S"}, "misrouting"),
            Change("lb", T0 + timedelta(seconds=4999), "load_balancing", {"model": "S"}, "rebalance"),
        ]
    )
    for rec in _misrouting(rng, [(500, 0.0), (4500, 0.008), (3000, 0.16)]):
        mon.observe(rec)
    routing = [a for a in mon.alerts if a.signal == "routing.short_on_long_pool"]
    first, worse = routing[0], routing[-1]
    assert first.status == "superseded"
    assert first.worsens is None
    assert worse.status == "open"
    assert worse.worsens == first.alert_id
    assert worse.started_at >= T0 + timedelta(seconds=4990)
    assert worse.current >= 3 * worse.baseline  # the level rose several-fold over the alerted level
    assert first.attributed_changes[0].change_id == "route-bug"
    assert worse.attributed_changes[0].change_id == "lb"
    assert [a.alert_id for a in mon.open_alerts if a.signal == first.signal] == [worse.alert_id]


def test_a_steady_level_on_an_open_alert_is_absorbed(rng: np.random.Generator) -> None:
    mon, _ = monitor()
    for rec in _misrouting(rng, [(500, 0.0), (8000, 0.02)]):
        mon.observe(rec)
    routing = [a for a in mon.alerts if a.signal == "routing.short_on_long_pool"]
    assert len(routing) == 1
    assert routing[0].status == "open"
    assert mon.n_absorbed > 0


def test_worsening_watches_spend_their_own_alpha_one_share_per_watch() -> None:
    """The k-th watch gets alpha * 6 / (pi^2 k^2): thresholds rise with k, the first lies well below a segment
    stream's (a handful of watches, not thousands of streams), and the shares sum to at most alpha."""
    stats = StatsConfig(alpha=0.05, horizon=5_000, max_streams=4_000)
    mon = SegmentMonitor(config=MonitorConfig(stats=stats))
    thresholds = [mon._watch_threshold(k) for k in range(1, 200)]
    assert thresholds == sorted(thresholds)
    assert thresholds[0] < mon.stats.rate_threshold - 5
    # back out each watch's alpha from its threshold h = log(G * horizon / alpha_k), G = 3 alternatives
    spent = sum(3 * 5_000 / math.exp(h) for h in thresholds)
    assert spent == pytest.approx(0.05 * sum(6 / (math.pi**2 * k**2) for k in range(1, 200)))
    assert spent < 0.05
    sharded = SegmentMonitor(config=MonitorConfig(stats=stats, shard=0, n_shards=4))
    assert sharded._watch_threshold(1) == pytest.approx(thresholds[0] + math.log(4))
    fixed = SegmentMonitor(config=MonitorConfig(stats=StatsConfig(threshold=9.0)))
    assert fixed._watch_threshold(7) == 9.0


def test_a_stream_restarted_by_its_own_alarm_still_counts_as_degraded(rng: np.random.Generator) -> None:
    """A stream's sequential test restarts after alarming; until its new baseline is learned, the alarm itself says
    the segment is degraded, so a later alarm on a marginal still drills down to it instead of stopping above it."""
    mon, _ = monitor()
    records = fleet(rng, 30_000, corrupt=lambda i, model, platform: i >= FAULT_AT and platform == "tpu")
    alert, _ = first_alert(mon, records, "unexpected_script")
    assert alert.segment == {"platform": "tpu"}
    for _, rec in zip(range(20), records, strict=False):  # a few more requests: the alarmed tests restart
        mon.observe(rec)
    restarted = [key for signal, key in mon.stats.alarmed if signal == "unexpected_script"]
    assert restarted
    for key in restarted:
        det = mon.stats.sequential_test("unexpected_script", key)
        assert det is not None
        assert det.n < det.warmup  # it restarted when it alarmed
        assert mon._degraded("unexpected_script", key) is True


def test_sticky_sessions_are_counted_but_do_not_alert_by_default(make_record: Callable[..., Record]) -> None:
    mon, memory = monitor()
    mon._keys["all"] = ("*", "*", "*", "*")
    mon._alerts["all"] = Alert("all", "unexpected_script", {}, T0, T0, 0.01, 0.002, 0.012, 100)
    for i in range(2000):
        mon.observe(make_record(i, server="gpu-1", session_hash="one-session"))
    assert mon.audit is not None
    assert mon.audit.counts["sticky_degraded_session"] == 1998
    assert not [a for a in memory.alerts if a.signal == "routing.sticky_degraded_session"]
    assert mon.stats.sequential_test("routing.sticky_degraded_session", ("*", "*", "*", "*")) is None


def test_remembered_responses_share_one_key_tuple_per_segment(make_record: Callable[..., Record]) -> None:
    """Each record's segment values are strings of its own (parsed from its request); the monitor remembers up to
    ``max_tracked_responses`` of them, so it keeps one tuple per distinct segment instead of one per response."""
    monitor = SegmentMonitor()
    first = make_record(0, model="".join(["S", "mall"]), platform="gpu")
    second = make_record(3, model="".join(["Sma", "ll"]), platform="gpu")
    assert first.model is not second.model
    monitor.observe(first)
    monitor.observe(second)
    assert monitor.remembers("cmpl-0")
    assert monitor.remembers("cmpl-3")
    assert monitor._responses["cmpl-0"] is monitor._responses["cmpl-3"]
    assert monitor._recent[0][1] is monitor._recent[1][1]
