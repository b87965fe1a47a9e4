"""Snapshots of a store: read-only, in time order, each record's context class as stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from parity.dashboard._snapshot import take_snapshot
from parity.monitor import Change, MemoryStore, Record

T = datetime(2025, 8, 5, tzinfo=UTC)


def test_snapshot_is_in_time_order_and_spans_the_records() -> None:
    store = MemoryStore()
    store.write_records([Record(record_id=f"r{i}", time=T + timedelta(hours=-i), model="S") for i in range(3)])
    store.write_changes([Change("c", T + timedelta(days=9), "deploy")])
    snap = take_snapshot(store)
    assert [r.record_id for r in snap.records] == ["r2", "r1", "r0"]
    assert (snap.start, snap.end) == (T - timedelta(hours=2), T)
    assert not snap.capture_on


def test_an_empty_store_spans_its_changes_or_the_last_hour() -> None:
    store = MemoryStore()
    assert take_snapshot(store).end - take_snapshot(store).start <= timedelta(hours=1, seconds=1)
    store.write_changes([Change("a", T, "deploy"), Change("b", T + timedelta(days=1), "deploy")])
    snap = take_snapshot(store)
    assert (snap.start, snap.end) == (T, T + timedelta(days=1))


def test_records_keep_the_context_class_they_were_built_with() -> None:
    """A 500-token record built at the lab's split (192) stays ``long``, one built at the default stays ``short``:
    the snapshot (and every view on it) reads the stored class and never reclassifies."""
    store = MemoryStore()
    store.write_records(
        [
            Record(record_id="lab", time=T, model="S", context_tokens=500, context_class="long"),
            Record(record_id="default", time=T + timedelta(seconds=1), model="S", context_tokens=500),
            Record(record_id="tiny", time=T + timedelta(seconds=2), model="S", context_tokens=20),
        ]
    )
    snap = take_snapshot(store)
    assert [r.context_class for r in snap.records] == ["long", "short", "short"]
    assert snap.short_context_max_tokens == 500
    assert take_snapshot(MemoryStore()).short_context_max_tokens is None
