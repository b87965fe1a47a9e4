"""Scale-out: the monitor on N workers (in-process and Ray actors on a local cluster) raises exactly the alerts of
one ``SegmentMonitor``, with the same attribution; ``parity monitor`` runs it over logs into a store."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from parity import InvalidInputError
from parity.cli._main import main
from parity.monitor import Alert, Change, DetectorObservation, FeedbackEvent, Record
from parity.monitor._codec import change_from_dict, feedback_from_dict
from parity.monitor.detection.distributed import ShardedMonitor
from parity.monitor.detection.incidents import group_incidents
from parity.monitor.detection.pipeline import MonitorConfig, SegmentMonitor
from parity.monitor.detection.segments import StatsConfig
from parity.monitor.storage.store import open_store

REPLAY = Path(__file__).resolve().parents[1] / "data" / "replay" / "replay.json.gz"

#: The replay's lattice without two dimensions (16 segments per record instead of 64): a quarter of the work, and
#: still every alert of the full lattice (the same four, on the same segments, attributed to the same changes).
REPLAY_CONFIG = MonitorConfig(
    stats=StatsConfig(dimensions=("model", "pool", "platform", "context_class"), score_max_order=0)
)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """A local Ray cluster for the session: 2 CPUs, no dashboard, on 127.0.0.1 only; shut down at the end."""
    ray = pytest.importorskip("ray", reason="ray is in the `dist` extra (pip install 'parity[dist]') and not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()


#: The replay up to here holds two of its four faults (a routing invariant on the long pool, an unexpected-script
#: rate on one platform), both alerted and attributed: half of the records, to keep the test within its budget.
REPLAY_UNTIL = datetime(2025, 8, 28, tzinfo=UTC)


def _replay(until: datetime = REPLAY_UNTIL) -> tuple[list[Record | FeedbackEvent], list[Change]]:
    data = json.loads(gzip.decompress(REPLAY.read_bytes()))
    records: list[Record | FeedbackEvent] = [Record.from_dict(r) for r in data["records"]]
    records = [r for r in records if r.time < until]
    feedback = [f for f in map(feedback_from_dict, data["feedback"]) if f.time < until]
    events = sorted(records + feedback, key=lambda e: e.time)
    return events, [change_from_dict(c) for c in data["changes"]]


def _single(config: MonitorConfig, events: list[Record | FeedbackEvent], changes: list[Change]) -> list[Alert]:
    mon = SegmentMonitor(config=config)
    mon.add_changes(changes)
    for e in events:
        if isinstance(e, Record):
            mon.observe(e)
        else:
            mon.observe_feedback(e)
    return sorted(mon.alerts, key=lambda a: a.alert_id)


def test_ray_workers_raise_the_single_process_alerts_on_the_replay(ray_cluster: Any) -> None:
    events, changes = _replay()
    want = _single(REPLAY_CONFIG, events, changes)
    assert {a.signal for a in want} == {"routing.short_on_long_pool", "unexpected_script"}
    assert all(a.attributed_changes for a in want)
    for workers in (1, 2, 4):
        with ShardedMonitor(config=REPLAY_CONFIG, workers=workers, engine="ray") as mon:
            mon.add_changes(changes)
            mon.observe_all(events)
            got = sorted(mon.alerts, key=lambda a: a.alert_id)
        assert got == want, f"{workers} workers"  # every field: segment, times, effect, attributed changes


def _batched(mon: SegmentMonitor | ShardedMonitor, events: list[Record | FeedbackEvent], decided: list[Record]) -> None:
    """Feed ``events`` the way ``MonitorWorker`` does: the records between two feedback events in batches of at
    most 512 (``observe_batch``, keeping the decided records), each feedback event after the records before it."""
    batch: list[Record] = []
    for e in [*events, None]:
        if isinstance(e, Record):
            batch.append(e)
            if len(batch) < 512:
                continue
        if batch:
            mon.observe_batch(batch, decided=decided)
            batch = []
        if isinstance(e, FeedbackEvent):
            mon.observe_feedback(e)


def test_the_batch_path_on_ray_decides_signals_in_the_coordinator_with_the_single_process_alerts(
    ray_cluster: Any,
) -> None:
    """``observe_batch`` (what the proxy's and ingest's worker drive) on 2 Ray workers: the alerts of one process,
    and every record comes back decided, with the signals one process stores."""
    events, changes = _replay()
    single = SegmentMonitor(config=REPLAY_CONFIG)
    single.add_changes(changes)
    want_decided: list[Record] = []
    _batched(single, events, want_decided)
    want = sorted(single.alerts, key=lambda a: a.alert_id)
    assert {a.signal for a in want} == {"routing.short_on_long_pool", "unexpected_script"}
    with ShardedMonitor(config=REPLAY_CONFIG, workers=2, engine="ray") as mon:
        mon.add_changes(changes)
        got_decided: list[Record] = []
        _batched(mon, events, got_decided)
        mon.drain()
        assert sorted(mon.alerts, key=lambda a: a.alert_id) == want
        assert mon.audit is not None
        assert mon.audit.rules
    n_records = sum(isinstance(e, Record) for e in events)
    assert len(got_decided) == len(want_decided) == n_records
    assert all(r.signals for r in got_decided)
    assert sum(r.signals["routing.short_on_long_pool"] for r in got_decided if r.signals) > 0
    assert [(r.record_id, r.context_class) for r in got_decided] == [
        (r.record_id, r.context_class) for r in want_decided
    ]
    # every signal the statistics read is the one process's; the sticky-session rule (stored, never fed to the
    # statistics) asks whether the segment alerts, which the coordinator knows up to the batches in flight
    sticky = "routing.sticky_degraded_session"
    differ = [i for i, (g, w) in enumerate(zip(got_decided, want_decided, strict=True)) if g.signals != w.signals]
    assert all(
        {k for k in (w.signals or {}) if (g.signals or {}).get(k) != (w.signals or {}).get(k)} == {sticky}
        for g, w in ((got_decided[i], want_decided[i]) for i in differ)
    )
    assert len(differ) <= 2 * mon.batch * len(want), differ


def test_a_ray_checkpoint_round_trip_continues_with_the_single_process_alerts(ray_cluster: Any) -> None:
    """The sharded monitor's state (coordinator and every actor's) goes to the store's checkpoint; a new monitor
    on new actors restores it, replays the stored records it has not seen, and ends with one process's alerts."""
    from parity.monitor.detection.checkpoint import Checkpointer
    from parity.monitor.intake.scoring import RecordBuilder
    from parity.monitor.runtime.worker import MonitorWorker
    from parity.monitor.storage.store import MemoryStore

    events, changes = _replay()
    records = [e for e in events if isinstance(e, Record)]
    cut = 2 * len(records) // 3  # after the routing fault's alert: an open alert and its watch cross the restart
    # the reference: one process through the same round trip (a restore re-ranks the open alerts' changes at the
    # restart, as it does for one process, so the attribution differs from an uninterrupted run's)
    single_store = MemoryStore()
    single = SegmentMonitor(config=REPLAY_CONFIG)
    single.add_changes(changes)
    single.observe_batch(records[:cut])
    single_store.write_records(records)
    Checkpointer(single_store).save(single)
    single = SegmentMonitor(config=REPLAY_CONFIG)
    assert Checkpointer(single_store).restore(single).replayed == len(records) - cut
    want = sorted(single.alerts, key=lambda a: a.alert_id)
    # the routing fault (c-0805), its rollout to tpu (c-0812, a change of its own: a second alert since the
    # second-fault rule) and the corruption
    assert len(want) == 3
    store = MemoryStore()
    with ShardedMonitor(config=REPLAY_CONFIG, workers=2, engine="ray") as first:
        first.add_changes(changes)
        first.observe_batch(records[:cut])
        store.write_records(records)  # all were stored; the process died after observing the first part
        Checkpointer(store).save(first)
        assert first.alerts  # the snapshot holds open alerts
        before = first.alerts
    assert store.get_meta("monitor_checkpoint.by_signal.2workers")
    assert store.get_meta("monitor_checkpoint.0of1") is None  # a single-process monitor's checkpoint is its own
    with ShardedMonitor(config=REPLAY_CONFIG, workers=2, engine="ray") as second:
        result = Checkpointer(store).restore(second)
        assert result.restored
        assert result.replayed == len(records) - cut
        assert {a.alert_id for a in before} <= {a.alert_id for a in second.alerts}
        assert sorted(second.alerts, key=lambda a: a.alert_id) == want
        assert second.n_records == len(records)
        assert MonitorWorker(store, RecordBuilder(salt="s"), hook=second, checkpoint_interval_s=60).checkpointer
    other = ShardedMonitor(config=REPLAY_CONFIG, workers=3)  # another worker count: another key, a fresh start
    assert not Checkpointer(store).restore(other).restored
    other.close()


def _two_faults() -> list[Record]:
    """Signal ``a`` breaks on tpu first; ``b`` breaks on gpu later and then worsens: the worsening watch of ``b``'s
    alert is the monitor's second, whichever worker owns ``b``."""
    rng = np.random.default_rng(5)
    t0 = datetime(2025, 8, 25, tzinfo=UTC)
    out = []
    for i in range(16_000):
        platform = ("gpu", "tpu")[i % 2]
        ra = 0.05 if platform == "tpu" and i >= 2000 else 0.002
        rb = 0.002 if platform == "tpu" or i < 5000 else (0.02 if i < 11_000 else 0.3)
        obs = (
            DetectorObservation("a", bool(rng.random() < ra), 0.0),
            DetectorObservation("b", bool(rng.random() < rb), 0.0),
        )
        out.append(
            Record(record_id=f"r{i}", time=t0 + timedelta(seconds=i), model="S", platform=platform, observations=obs)
        )
    return out


def test_worsening_watches_are_numbered_globally_across_workers() -> None:
    config = MonitorConfig(
        stats=StatsConfig(dimensions=("model", "platform"), horizon=100_000, score_max_order=0), worsening_window=400
    )
    records = _two_faults()
    want = _single(config, list(records), [])
    assert [(a.signal, a.worsens is not None) for a in sorted(want, key=lambda a: a.detected_at)] == [
        ("a", False),
        ("b", False),
        ("b", True),
    ]
    with ShardedMonitor(config=config, workers=3) as mon:
        mon.observe_all(records)
        assert mon.assignment is not None
        assert mon.assignment["a"] != mon.assignment["b"]  # the case that needs the coordinator's numbering
        assert sorted(mon.alerts, key=lambda a: a.alert_id) == want


def _rate_and_score_fault() -> list[Record]:
    """Clean traffic on three models, then model H's degeneration flags and scores up: one monitor raises
    ``degeneration`` and ``degeneration.score`` in one incident (``tests/monitor/test_incidents.py``'s script fault,
    smaller); two workers hold the two signals apart."""
    from tests.monitor.test_incidents import traffic

    return [record for record, _ in traffic("script", n_clean=1500, n_faulty=900)]


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_incidents_are_global_across_workers(engine: str, request: pytest.FixtureRequest) -> None:
    """An alert joins the incident one monitor would put it in, whichever worker raised the alerts: the rate's
    alert and its score's are one incident on 2 workers too (each worker used to number its own); on Ray the question
    for the other worker's alert goes to its actor."""
    if engine == "ray":
        request.getfixturevalue("ray_cluster")
    records = _rate_and_score_fault()
    want = _single(MonitorConfig(), list(records), [])
    assert [a.signal for a in sorted(want, key=lambda a: a.detected_at)] == ["degeneration", "degeneration.score"]
    assert len(group_incidents(want)) == 1
    with ShardedMonitor(workers=2, engine=engine) as mon:
        mon.observe_all(records)
        assert mon.assignment is not None
        assert mon.assignment["degeneration"] != mon.assignment["degeneration.score"]
        assert sorted(mon.alerts, key=lambda a: a.alert_id) == want  # every field, the incident included
        # nothing attributed, so whether a fault elsewhere explains the rate's alert is its worker's question
        assert mon.incidents_lagged == 1


def test_cli_monitor_on_two_workers_shows_the_incidents_of_one_process(tmp_path: Path) -> None:
    """`parity monitor --workers 2` stores the alerts of one process, in the same incidents."""
    records = _rate_and_score_fault()
    want = _single(MonitorConfig(), list(records), [])
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records))
    store = tmp_path / "two.duckdb"
    result = CliRunner().invoke(main, ["monitor", str(log), "--no-detectors", "--workers", "2", "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert "2 worker(s) on local" in result.output
    with open_store(store, read_only=True) as s:
        got = s.alerts()
    assert sorted(got, key=lambda a: a.alert_id) == want
    assert [(i.incident_id, i.signals) for i in group_incidents(got)] == [
        (i.incident_id, i.signals) for i in group_incidents(want)
    ]
    assert len(group_incidents(got)) == 1


def test_bad_arguments_name_what_is_wrong() -> None:
    with pytest.raises(InvalidInputError, match="workers"):
        ShardedMonitor(workers=0)
    with pytest.raises(InvalidInputError, match="engine"):
        ShardedMonitor(engine="spark")
    with pytest.raises(InvalidInputError, match="n_shards"):
        ShardedMonitor(config=MonitorConfig(n_shards=2, shard=1))


def test_cli_monitor_on_ray_matches_local_into_postgres(ray_cluster: Any, postgres_url: str, tmp_path: Path) -> None:
    """`parity monitor DIR --engine ray --workers 2 --store postgresql://...` stores the records and the same
    alerts as `--engine local` into DuckDB."""
    events, changes = _replay()
    records = [e for e in events if isinstance(e, Record)][:1400]  # the routing fault's alert comes at ~1,300
    logs = tmp_path / "logs"
    logs.mkdir()
    for part, chunk in enumerate((records[:700], records[700:])):
        (logs / f"part-{part}.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in chunk))
    change_file = tmp_path / "changes.jsonl"
    change_file.write_text("".join(json.dumps(c.to_dict()) + "\n" for c in changes))
    common = ["--no-detectors", "--long-context-tokens", "192", "--changes", str(change_file)]
    duck = tmp_path / "local.duckdb"
    local = CliRunner().invoke(main, ["monitor", str(logs), "--store", str(duck), *common])
    assert local.exit_code == 0, local.output
    assert "monitored 1,400 records" in local.output
    distributed = CliRunner().invoke(
        main, ["monitor", str(logs), "--engine", "ray", "--workers", "2", "--store", postgres_url, *common]
    )
    assert distributed.exit_code == 0, distributed.output
    assert "2 worker(s) on ray" in distributed.output
    with open_store(duck, read_only=True) as a, open_store(postgres_url, read_only=True) as b:
        assert b.summary().records == a.summary().records == 1400
        want = sorted(a.alerts(), key=lambda x: x.alert_id)
        assert want
        assert sorted(b.alerts(), key=lambda x: x.alert_id) == want


def test_cli_monitor_errors_are_one_line(tmp_path: Path) -> None:
    missing = CliRunner().invoke(main, ["monitor", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2
    assert "SOURCE" in missing.output
    (tmp_path / "empty").mkdir()
    empty = CliRunner().invoke(main, ["monitor", str(tmp_path / "empty")])
    assert empty.exit_code == 2
    assert "no *.jsonl file" in empty.output
    address = CliRunner().invoke(main, ["monitor", "-", "--address", "127.0.0.1:6379"])
    assert address.exit_code == 2
    assert "--address" in address.output
    assert "needs --engine ray" in address.output
    store = tmp_path / "p.duckdb"
    proxy = CliRunner().invoke(main, ["proxy", "--upstream", "http://127.0.0.1:9", "--store", str(store),
                                      "--address", "127.0.0.1:6379"])  # fmt: skip
    assert proxy.exit_code == 2
    assert "needs --engine ray" in proxy.output
    assert not store.exists()  # refused before anything was created


def _proxied_alerts(serve_app: Any, upstream: Any, hook: Any) -> tuple[list[tuple[str, dict[str, str]]], int]:
    """300 requests through a proxy whose monitor is ``hook``: 150 ordinary answers, then 150 with a Thai insert;
    the (signal, segment) of the alerts stored, and the records stored."""
    import httpx

    from parity.monitor.intake.proxy import ParityProxy, ProxyConfig
    from parity.monitor.intake.scoring import ParsedExchange, RecordBuilder
    from parity.monitor.storage.store import MemoryStore

    class ThaiScorer:  # the detectors would read "say thai" as asking for Thai; this flags any Thai
        def score(self, parsed: ParsedExchange) -> list[DetectorObservation]:
            flagged = any("\u0e00" <= ch <= "\u0e7f" for ch in parsed.text)
            return [DetectorObservation("unexpected_script", flagged, 1.0 if flagged else 0.0)]

    store = MemoryStore()
    proxy = ParityProxy(ProxyConfig(upstream=upstream.url, flush_interval_s=0.05), store,
                        RecordBuilder(salt="s", scorer=ThaiScorer()), hook=hook)  # fmt: skip
    handle = serve_app(proxy.app)
    with httpx.Client(base_url=handle.url, timeout=10) as client:
        for i in range(300):
            text = "hello there" if i < 150 else "say thai"
            body = {"model": "S", "messages": [{"role": "user", "content": text}]}
            resp = client.post("/v1/chat/completions", json=body)
            assert resp.status_code == 200
    assert proxy.wait_idle(30)
    proxy.worker.stop()
    alerts = sorted((a.signal, dict(a.segment)) for a in store.alerts())
    stored = store.records()
    assert all(r.signals for r in stored)  # decided once by the monitor, stored with the record
    return alerts, len(stored)


def test_the_proxy_hands_its_records_to_ray_workers_with_the_alerts_of_one_process(
    ray_cluster: Any, serve_app: Any, upstream: Any
) -> None:
    """``parity proxy --engine ray --workers 2``: the proxy's worker feeds a sharded monitor on Ray actors, drains it
    on each store flush (an alert waits at most one flush, however slow the traffic) and closes it on stop."""
    from parity.monitor.runtime.worker import default_monitor

    config = MonitorConfig(stats=StatsConfig(rate_warmup=100, mean_warmup=100))
    single, n_single = _proxied_alerts(serve_app, upstream, SegmentMonitor(config=config))
    sharded_hook = ShardedMonitor(config=config, workers=2, engine="ray")
    sharded, n_sharded = _proxied_alerts(serve_app, upstream, sharded_hook)
    assert n_single == n_sharded == 300
    assert single  # the Thai answers raise an alert
    assert sharded == single
    assert sharded_hook.n_records == 300
    assert sharded_hook._actors == []  # closed with the worker: its actors are gone
    assert isinstance(default_monitor(engine="ray", workers=2), ShardedMonitor)  # what `parity proxy --engine ray` runs
