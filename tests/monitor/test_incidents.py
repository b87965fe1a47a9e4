"""Incidents: one per fault, grouping alarms on nested segments and related signals; the serving signals; one alert a
person sees per fault (the webhook, ``/metrics``, the replay), every alarm kept as its evidence."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.dashboard.make_replay import OUT as REPLAY
from tests.dashboard.make_replay import run_monitor

from parity.monitor import Alert, Change, DetectorObservation, Record
from parity.monitor._codec import feedback_from_dict
from parity.monitor.alerting.alerts import MemoryNotifier, WebhookNotifier
from parity.monitor.detection.incidents import group_incidents, notified, related
from parity.monitor.detection.pipeline import MonitorConfig, SegmentMonitor
from parity.monitor.detection.segments import StatsConfig
from parity.monitor.intake.scoring import RecordBuilder
from parity.monitor.runtime.metrics import ProxyMetrics
from parity.monitor.runtime.worker import MonitorWorker
from parity.monitor.storage.store import MemoryStore

T0 = datetime(2026, 12, 1, tzinfo=UTC)
MODELS = ("S", "H", "O")


def traffic(fault: str, n_clean: int = 3000, n_faulty: int = 1500, seed: int = 5) -> list[tuple[Record, bool]]:
    """Clean traffic over three models, then ``fault`` on model H: each record, and whether the fault changed it."""
    rng = np.random.default_rng(seed)
    out: list[tuple[Record, bool]] = []
    for i in range(n_clean + n_faulty):
        model = MODELS[i % 3]
        faulty = i >= n_clean and model == "H"
        affected = False
        history = rng.random() < 0.3
        request = int(rng.integers(60, 200)) if history else int(rng.integers(10, 60))
        served = max(1, int(request * rng.uniform(0.9, 1.3)))
        max_tokens = 32
        out_tokens = int(rng.integers(5, 33))
        finish = "length" if out_tokens == 32 else "stop"
        flagged = bool(rng.random() < 0.01)
        if faulty and fault == "cap":
            out_tokens, finish = min(out_tokens, 4), "length" if out_tokens >= 4 else finish
            affected = True
        if faulty and fault == "context" and history:
            served = max(1, int(served * 0.25))
            affected = True
        if faulty and fault == "script":
            flagged = bool(rng.random() < 0.3)
            affected = True
        rec = Record(
            record_id=f"r{i}",
            time=T0 + timedelta(seconds=i / 12),
            model=model,
            platform=("gpu", "tpu")[i % 2],
            context_tokens=served,
            request_tokens=request,
            output_tokens=out_tokens,
            max_tokens=max_tokens,
            finish_reason=finish,
            observations=(DetectorObservation("degeneration", flagged, 0.9 if flagged else 0.05),),
        )
        out.append((rec, affected))
    return out


def config(score_max_order: int = 1) -> MonitorConfig:
    return MonitorConfig(
        stats=StatsConfig(
            dimensions=("model", "platform"), rate_warmup=300, mean_warmup=100, score_max_order=score_max_order
        )
    )


def run(fault: str, n_clean: int = 3000, n_faulty: int = 1500, seed: int = 5) -> tuple[SegmentMonitor, int, int]:
    """:func:`traffic` through a monitor; returns the monitor, the alerts raised in the clean phase, and how many
    affected requests came before the first alert (-1: none)."""
    memory = MemoryNotifier()
    mon = SegmentMonitor(config=config(), notifiers=[memory])
    clean_alerts, affected, first = 0, 0, -1
    for i, (rec, changed) in enumerate(traffic(fault, n_clean, n_faulty, seed)):
        affected += changed
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
    # two faults, two alerts a person sees: the corruption's on platform=tpu and the sampler's own
    assert [a.alert_id for a in notified(mon.alerts)] == [first.alert_id, sampler[0].alert_id]
    assert [a.to_dict() for a in _two_faults_on_one_platform(batch=True).alerts] == [a.to_dict() for a in mon.alerts]


def receiver(serve_app: Callable[[Any], Any]) -> tuple[str, list[dict[str, Any]]]:
    """A webhook receiver on 127.0.0.1: its URL and the JSON bodies it was sent."""
    seen: list[dict[str, Any]] = []

    async def hook(request: Request) -> Response:
        seen.append(await request.json())
        return Response(status_code=204)

    handle = serve_app(Starlette(routes=[Route("/hook", hook, methods=["POST"])]))
    return handle.url + "/hook", seen


def test_a_rate_and_its_score_on_one_segment_are_one_alert(serve_app: Callable[[Any], Any]) -> None:
    """``degeneration`` and ``degeneration.score`` alarm on model=H: the worker stores both alarms (the evidence),
    the webhook sends one message, ``/metrics`` counts one alert and two alarms."""
    url, seen = receiver(serve_app)
    webhook = WebhookNotifier(url, backoff=0.0)
    metrics, store = ProxyMetrics(), MemoryStore()
    worker = MonitorWorker(store, RecordBuilder(salt="s", scorer=None), metrics=metrics,
                           hook=SegmentMonitor(config=config()), notifiers=[webhook])  # fmt: skip
    for rec, _ in traffic("script"):
        worker.accept(rec)
    worker.flush()
    webhook.close()
    alarms = store.alerts()
    assert sorted((a.signal, tuple(a.segment.items())) for a in alarms) == [
        ("degeneration", (("model", "H"),)),
        ("degeneration.score", (("model", "H"),)),
    ]
    (incident,) = group_incidents(alarms)
    assert [e["id"] for e in incident.to_dict()["evidence"]] == [incident.lead.alert_id] + [
        a.alert_id for a in alarms if a is not incident.lead
    ]
    assert [(m["id"], m["signal"], m["segment"], m["incident"]) for m in seen] == [
        (incident.incident_id, "degeneration", {"model": "H"}, incident.incident_id)
    ]
    assert (webhook.sent, webhook.skipped, webhook.failures) == (1, 1, 0)
    text = metrics.render().decode()
    assert 'parity_monitor_alerts_total{signal="degeneration"} 1.0' in text
    assert 'parity_monitor_alerts_total{signal="degeneration.score"}' not in text
    assert 'parity_monitor_alarms_total{signal="degeneration"} 1.0' in text
    assert 'parity_monitor_alarms_total{signal="degeneration.score"} 1.0' in text
    assert "parity_monitor_open_incidents 1.0" in text


def test_a_segment_alarm_and_the_all_traffic_alarm_of_its_signal_are_one_alert(
    serve_app: Callable[[Any], Any],
) -> None:
    """A mean score watched on all traffic only (``score_max_order=0``): the fault on model H alarms there too, with
    the same onset. One alert, on model=H, listing both segments; both alarms kept."""
    url, seen = receiver(serve_app)
    memory = MemoryNotifier()
    webhook = WebhookNotifier(url, backoff=0.0)
    mon = SegmentMonitor(config=config(score_max_order=0), notifiers=[memory, webhook])
    for rec, _ in traffic("script"):
        mon.observe(rec)
    webhook.close()
    assert sorted((a.signal, tuple(a.segment.items())) for a in mon.alerts) == [
        ("degeneration", (("model", "H"),)),
        ("degeneration.score", ()),
    ]
    assert len({a.started_at for a in mon.alerts}) == 1  # one onset
    (incident,) = group_incidents(mon.alerts)
    assert (incident.segments, incident.signals) == (["model=H", "all"], ["degeneration", "degeneration.score"])
    assert incident.lead.segment == {"model": "H"}
    assert [m["segment"] for m in seen] == [{"model": "H"}]
    assert [a.alert_id for a in notified(mon.alerts)] == [incident.incident_id]
    assert len(memory.alerts) == 2  # the log and the store get every alarm


def test_the_replay_has_one_alert_per_fault_and_keeps_every_alarm() -> None:
    """The dashboard's replay fixture (five faulty changes) through the monitor that made it: eight alarms - the
    corruption's on platform=tpu, then on model=S,platform=tpu (the same signal, a nested segment, superseding it),
    the routing growth's degeneration on three nested segments of model S - in five incidents: five alerts a person
    sees, each blaming another of the five changes."""
    data = json.loads(gzip.decompress(REPLAY.read_bytes()))
    records = [Record.from_dict(r) for r in data["records"]]
    _, alarms = run_monitor(records, [feedback_from_dict(f) for f in data["feedback"]])
    pages = notified(alarms)
    incidents = group_incidents(alarms)
    assert len(alarms) > len(pages) == len(incidents)
    assert sorted(a.attributed_changes[0].change_id for a in pages) == [
        "c-0805-routing", "c-0812-routing", "c-0825-corruption", "c-0826-sampler", "c-0829-lb"
    ]  # fmt: skip
    corruption = next(i for i in incidents if "unexpected_script" in i.signals)
    assert corruption.segments == ["model=S,platform=tpu", "platform=tpu"]
    assert corruption.lead.segment == {"model": "S", "platform": "tpu"}
    assert [a.status for a in corruption.alerts] == ["superseded", "open"]


def test_a_fault_that_starts_minutes_after_a_false_alarm_on_an_intersecting_segment_is_its_own_incident() -> None:
    # the drill's case: a false unexpected_script alarm on model=S, then re-encoding on platform=tpu 14.8 min later
    t = datetime(2025, 8, 25, 12, tzinfo=UTC)
    false = Alert("a-f", "unexpected_script", {"model": "S"}, t, t + timedelta(minutes=3), 0.04, 0.13, 0.17, 199)
    fault_start = t + timedelta(minutes=14.8)
    fault = Alert("a-r", "degeneration", {"platform": "tpu"}, fault_start, fault_start + timedelta(minutes=2), 0.1, 0.0,
                  0.1, 33, latest_start=fault_start + timedelta(minutes=1))  # fmt: skip
    assert not related(false, fault)
    assert not related(fault, false)
    # a sparse stream on a segment holding the fault's sees it late, while the fault's alarm is being raised
    late = t + timedelta(minutes=16)
    lagging = Alert("a-g", "greedy_disagreement", {}, late, late + timedelta(minutes=3), 0.2, 0.0, 0.2, 40)
    assert related(fault, lagging)
    # ... but not a lagging alarm whose excursion began only after the fault's alarm was detected and closed
    after = fault.detected_at + timedelta(minutes=1)
    unrelated = Alert("a-u", "greedy_disagreement", {}, after, after + timedelta(minutes=3), 0.2, 0.0, 0.2, 40)
    assert not related(replace(fault, status="resolved"), unrelated)


COFLAG_CONFIG = MonitorConfig(
    stats=StatsConfig(dimensions=("model", "platform"), horizon=10_000, rate_warmup=300, score_max_order=0),
    routing_audit=False,
)


def _coflag_drill(second: Callable[[int, bool], bool]) -> SegmentMonitor:
    """A fault on platform=tpu flags ``degeneration`` on a fifth of its answers from record 600; from record 800,
    ``greedy_disagreement`` flags what ``second(i, tpu)`` says, on top of a 1% baseline (records a second apart)."""
    monitor = SegmentMonitor(config=COFLAG_CONFIG)
    t0 = datetime(2025, 8, 5, 12, 0, tzinfo=UTC)
    for i in range(1400):
        tpu = i % 2 == 1
        degenerate = i % 50 == 0 or (i >= 600 and tpu and (i // 2) % 5 == 0)
        disagrees = i % 100 == 7 or (i >= 800 and second(i, tpu))
        observations = (
            DetectorObservation("degeneration", degenerate, 0.0),
            DetectorObservation("greedy_disagreement", disagrees, 0.0),
        )
        record = Record(record_id=f"r{i}", time=t0 + timedelta(seconds=i), model="HOS"[i % 3],
                        platform="tpu" if tpu else "gpu", observations=observations)  # fmt: skip
        monitor.observe(record)
    return monitor


def test_an_alarm_whose_flags_the_open_incident_flagged_joins_it() -> None:
    """The drill's re-encoding: mojibake answers on tpu are ``degeneration`` flags, and identical greedy requests then
    disagree, half of the disagreements on those very answers (the other half on gpu, answering after a tpu one):
    ``greedy_disagreement`` on all traffic, starting after the ``degeneration`` alarm was raised, is the same fault's
    evidence (one alert a person sees), not a second fault. Without the co-flag rule it was a second alert."""
    monitor = _coflag_drill(lambda i, tpu: (i // 2) % 10 == 0 if tpu else i % 20 == 4)
    incidents = group_incidents(monitor.alerts)
    assert [(i.lead.signal, i.lead.segment) for i in incidents] == [("degeneration", {"platform": "tpu"})]
    assert "greedy_disagreement" in incidents[0].signals
    assert len(notified(monitor.alerts)) == 1


def test_an_alarm_whose_flags_fall_on_the_open_incidents_at_chance_stays_apart() -> None:
    """A second fault on traffic the open incident shares (model O, on tpu too), flagging answers regardless of the
    first fault's flags, is notified on its own."""
    monitor = _coflag_drill(lambda i, tpu: i % 3 == 1 and i % 4 < 2)
    incidents = group_incidents(monitor.alerts)
    assert [i.lead.signal for i in incidents] == ["degeneration", "greedy_disagreement"]
    assert "model=O" in incidents[1].segments
    assert len(notified(monitor.alerts)) == 2
