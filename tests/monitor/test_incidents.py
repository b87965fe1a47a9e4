"""Incidents: one per fault, grouping alarms on nested segments and related signals; the serving signals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from parity.monitor import Change, DetectorObservation, Record
from parity.monitor.alerting.alerts import MemoryNotifier
from parity.monitor.detection.incidents import group_incidents
from parity.monitor.detection.pipeline import MonitorConfig, SegmentMonitor
from parity.monitor.detection.segments import StatsConfig

T0 = datetime(2026, 12, 1, tzinfo=UTC)
MODELS = ("S", "H", "O")


def run(fault: str, n_clean: int = 3000, n_faulty: int = 1500, seed: int = 5) -> tuple[SegmentMonitor, int, int]:
    """Clean traffic over three models, then ``fault`` on model H; returns the monitor, the alerts raised in the
    clean phase, and how many affected requests came before the first alert (-1: none)."""
    rng = np.random.default_rng(seed)
    memory = MemoryNotifier()
    config = MonitorConfig(stats=StatsConfig(dimensions=("model", "platform"), rate_warmup=300, mean_warmup=100))
    mon = SegmentMonitor(config=config, notifiers=[memory])
    clean_alerts, affected, first = 0, 0, -1
    for i in range(n_clean + n_faulty):
        model = MODELS[i % 3]
        faulty = i >= n_clean and model == "H"
        history = rng.random() < 0.3
        request = int(rng.integers(60, 200)) if history else int(rng.integers(10, 60))
        served = max(1, int(request * rng.uniform(0.9, 1.3)))
        max_tokens = 32
        out = int(rng.integers(5, 33))
        finish = "length" if out == 32 else "stop"
        flagged = bool(rng.random() < 0.01)
        if faulty and fault == "cap":
            out, finish = min(out, 4), "length" if out >= 4 else finish
            affected += 1
        if faulty and fault == "context" and history:
            served = max(1, int(served * 0.25))
            affected += 1
        if faulty and fault == "script":
            flagged = bool(rng.random() < 0.3)
            affected += 1
        rec = Record(
            record_id=f"r{i}",
            time=T0 + timedelta(seconds=i / 12),
            model=model,
            platform=("gpu", "tpu")[i % 2],
            context_tokens=served,
            request_tokens=request,
            output_tokens=out,
            max_tokens=max_tokens,
            finish_reason=finish,
            observations=(DetectorObservation("degeneration", flagged, 0.9 if flagged else 0.05),),
        )
        raised = mon.observe(rec)
        if raised and i < n_clean:
            clean_alerts += len(raised)
        if raised and i >= n_clean and first < 0:
            first = affected
    return mon, clean_alerts, first


def test_a_max_tokens_cap_is_one_incident_on_its_model() -> None:
    mon, clean, first = run("cap")
    assert clean == 0
    incidents = group_incidents(mon.alerts, open_only=True)
    assert len(incidents) == 1, [a.to_dict() for a in mon.alerts]
    assert incidents[0].lead.signal == "output.cut"
    assert incidents[0].lead.segment == {"model": "H"}
    assert 0 < first <= 300


def test_dropped_history_is_one_incident_on_its_model() -> None:
    mon, clean, first = run("context")
    assert clean == 0
    incidents = group_incidents(mon.alerts, open_only=True)
    assert len(incidents) == 1, [a.to_dict() for a in mon.alerts]
    assert incidents[0].lead.signal == "context.dropped"
    assert incidents[0].lead.segment == {"model": "H"}
    assert 0 < first <= 300


def test_a_rate_and_its_score_are_one_incident() -> None:
    mon, clean, _ = run("script")
    assert clean == 0
    incidents = group_incidents(mon.alerts, open_only=True)
    assert len(incidents) == 1, [a.to_dict() for a in mon.alerts]
    assert incidents[0].lead.segment == {"model": "H"}
    assert incidents[0].lead.signal == "degeneration"


def test_clean_traffic_raises_nothing() -> None:
    mon, clean, first = run("none", n_clean=4500, n_faulty=0)
    assert (clean, first, mon.alerts) == (0, -1, [])


def test_a_score_alarm_on_a_pool_that_only_the_faulty_model_explains_is_absorbed() -> None:
    """A mean score is watched on one-dimension segments only (score_max_order=1), so an alarm on ``pool=short``
    cannot drill into ``model=O, pool=short``: the open alert on model=O absorbs it (no other model degraded)."""
    rng = np.random.default_rng(11)
    config = MonitorConfig(
        stats=StatsConfig(dimensions=("model", "pool"), rate_warmup=300, mean_warmup=100, score_max_order=1),
        routing_audit=False,
    )
    mon = SegmentMonitor(config=config)
    for i in range(6000):
        model = MODELS[i % 3]
        pool = "short" if rng.random() < 0.8 else "long"
        bad = i >= 3000 and model == "O"
        score = float(rng.uniform(0.3, 1.0)) if bad and rng.random() < 0.5 else float(rng.uniform(0.0, 0.02))
        flagged = score > 0.25
        obs = (DetectorObservation("sampling_consistency", flagged, score),)
        mon.observe(Record(record_id=f"r{i}", time=T0 + timedelta(seconds=i), model=model, pool=pool,
                           observations=obs))  # fmt: skip
    segments = {(a.signal, tuple(a.segment.items())) for a in mon.alerts if a.status == "open"}
    assert segments == {
        ("sampling_consistency", (("model", "O"),)),
        ("sampling_consistency.score", (("model", "O"),)),
    }
    assert len(group_incidents(mon.alerts)) == 1


def _two_faults_on_one_platform(batch: bool) -> SegmentMonitor:
    """The shortened replay's flaky case, made deterministic: a corruption on models S and O on tpu opens an alert on
    ``platform=tpu`` (two models degraded: localisation cannot drill), and a sampler fault on model H on tpu starts
    two hours later, while it is open. Every model on tpu is then degraded, so H's own alarm climbs back to
    ``platform=tpu``."""
    rng = np.random.default_rng(4)
    config = MonitorConfig(
        stats=StatsConfig(dimensions=("model", "platform"), rate_warmup=300, mean_warmup=100, score_max_order=0),
        routing_audit=False,
    )
    mon = SegmentMonitor(config=config)
    onset, sampler = T0 + timedelta(minutes=3000), T0 + timedelta(minutes=3120)
    mon.add_changes(
        [
            Change(
                "corruption-S", onset, "corruption", {"model": "S", "platform": "tpu"}, params={"config_version": "v2"}
            ),
            Change(
                "corruption-O", onset, "corruption", {"model": "O", "platform": "tpu"}, params={"config_version": "v2"}
            ),
            Change("sampler-H", sampler, "sampler", {"model": "H", "platform": "tpu"}, params={"config_version": "v3"}),
        ]
    )
    records = []
    for i in range(6000):
        model, platform, time = MODELS[i % 3], ("gpu", "tpu")[(i // 3) % 2], T0 + timedelta(minutes=i)
        bad = platform == "tpu" and (time >= sampler if model == "H" else time >= onset)
        flagged = bool(rng.random() < (0.12 if bad else 0.01))
        obs = (DetectorObservation("sampling_consistency", flagged, 0.0),)
        records.append(Record(record_id=f"r{i}", time=time, model=model, platform=platform, observations=obs))
    if batch:
        mon.observe_batch(records)
    else:
        for record in records:
            mon.observe(record)
    return mon


def test_a_second_fault_inside_an_open_alert_on_its_platform_gets_its_own_alert() -> None:
    """The corruption's alert on ``platform=tpu`` is explained by models S and O (its best changes): model H's alarm
    inside it is a second fault, raised as one alert of its own, in an incident of its own; the tpu alert stays open."""
    mon = _two_faults_on_one_platform(batch=False)
    alerts = [(a.segment, a.status, a.attributed_changes[0].change_id) for a in mon.alerts]
    first = mon.alerts[0]
    assert first.segment == {"platform": "tpu"}, alerts
    assert {c.change_id for c in first.attributed_changes[:2]} == {"corruption-S", "corruption-O"}, alerts
    sampler = [a for a in mon.alerts if a.segment.get("model") == "H"]
    assert len(sampler) == 1, alerts
    assert sampler[0].segment == {"model": "H", "platform": "tpu"}
    assert sampler[0].attributed_changes[0].change_id == "sampler-H"
    assert sampler[0].incident != first.incident
    assert mon._alerts[first.alert_id].status == "open", alerts
    assert len(group_incidents(mon.alerts)) == 2, alerts
    assert [a.to_dict() for a in _two_faults_on_one_platform(batch=True).alerts] == [a.to_dict() for a in mon.alerts]
