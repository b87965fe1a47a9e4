"""The dashboard draws what the monitor decided: the replay's traffic through the real worker and monitor into a
DuckDB store, then every alert's segment and signal, as the dashboard's series show them, carry the change the
alert reports.

The monitor is configured the way the dashboard could not guess: the fleet's long pool is called ``ctx-1m`` (not
one of the default long pools), and the records' context classes were decided when they were built at the fleet's
split (192 tokens; the dashboard is told nothing about it). A dashboard that re-derived the signals with its own
defaults would show no misrouting at all; one that draws the stored values shows the routing alert's rise.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from parity.dashboard._series import segment_series
from parity.dashboard._snapshot import take_snapshot
from parity.dashboard._views import DashboardViews
from parity.monitor import FeedbackEvent, Record
from parity.monitor.detection.pipeline import MonitorConfig, SegmentMonitor
from parity.monitor.detection.segments import StatsConfig
from parity.monitor.detection.signals import is_score_signal
from parity.monitor.intake.scoring import RecordBuilder
from parity.monitor.runtime.worker import MonitorWorker
from parity.monitor.storage.store import DuckDBStore

from .conftest import Replay

LONG_POOL = "ctx-1m"


def _as_served(record: Record) -> Record:
    """The replay's record as a builder at the fleet's split makes it: its context class decided (at 192 tokens, as
    the replay's records carry it), its signals not yet."""
    assert record.context_class
    return replace(record, signals=None, pool=LONG_POOL if record.pool == "long" else record.pool)


def test_dashboard_series_show_every_alerts_change(tmp_path: Path, replay: Replay) -> None:
    stats = StatsConfig(
        dimensions=("model", "pool", "platform", "context_class"),
        horizon=100_000,
        max_streams=5000,
        rate_warmup=300,
        mean_warmup=100,
        score_max_order=0,
    )
    monitor = SegmentMonitor(config=MonitorConfig(stats=stats, long_pools=(LONG_POOL,)))
    store = DuckDBStore(tmp_path / "agree.duckdb")
    try:
        worker = MonitorWorker(store, RecordBuilder(salt="s", scorer=None), hook=monitor, batch_size=2048)
        worker.add_changes(replay.changes)
        events: list[FeedbackEvent] = sorted(replay.feedback, key=lambda e: e.time)
        j = 0
        for record in sorted(replay.records, key=lambda r: r.time):
            while j < len(events) and events[j].time <= record.time:
                worker.feedback(events[j])
                j += 1
            worker.accept(_as_served(record))
        worker.flush()
        assert worker.health().status == "ok"
        snapshot = take_snapshot(store)
    finally:
        store.close()

    assert len(snapshot.records) == len(replay.records)
    assert all(r.signals is not None for r in snapshot.records)
    views = DashboardViews(snapshot)
    table = views.table
    assert table.undecided == 0
    alerts = [a for a in snapshot.alerts if a.status != "superseded" and not is_score_signal(a.signal)]
    assert "routing.short_on_long_pool" in {a.signal for a in alerts}
    for alert in alerts:
        series = segment_series(table, alert.segment, alerts=snapshot.alerts, changes=snapshot.changes)
        drawn = series.signal(alert.signal)
        assert drawn.alerted, alert.alert_id
        start, detected = table.bins.index(alert.started_at), table.bins.index(alert.detected_at)
        n_before, k_before = sum(drawn.n[:start]), sum(drawn.k[:start])
        n_after, k_after = sum(drawn.n[start : detected + 1]), sum(drawn.k[start : detected + 1])
        assert n_after > 0, alert.alert_id
        after = k_after / n_after
        what = f"{alert.signal} on {alert.segment}: {k_before}/{n_before} before, {k_after}/{n_after} after"
        assert k_after > 0, what
        if n_before:
            assert after > k_before / n_before, what
    # the routing alert's segment: the misrouted short requests, as their records were built (192 tokens)
    routing = views.routing_findings
    assert routing.n_violations == sum(
        1 for r in snapshot.records if r.pool == LONG_POOL and r.context_class == "short"
    )
    assert routing.n_violations > 0
