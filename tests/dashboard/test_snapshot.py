"""Snapshots of a store and the context split: read-only, in time order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from parity._exceptions import InvalidInputError
from parity.dashboard._snapshot import long_context_threshold, take_snapshot
from parity.monitor import LONG_CONTEXT_THRESHOLD_TOKENS, Change, MemoryStore, Record
from parity.monitor.store import LONG_CONTEXT_KEY

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


def test_long_context_threshold_from_argument_meta_or_default() -> None:
    store = MemoryStore()
    assert long_context_threshold(store) == LONG_CONTEXT_THRESHOLD_TOKENS
    assert long_context_threshold(object()) == LONG_CONTEXT_THRESHOLD_TOKENS  # no get_meta (an HTTPStore)
    store.set_meta(LONG_CONTEXT_KEY, "192")
    assert long_context_threshold(store) == 192
    assert long_context_threshold(store, 1000) == 1000
    with pytest.raises(InvalidInputError, match="`long_context_tokens` must be an integer >= 1, got 0"):
        long_context_threshold(store, 0)
    store.set_meta(LONG_CONTEXT_KEY, "lots")
    with pytest.raises(InvalidInputError, match=r"got 'lots' \(the store's meta key long_context_tokens\)"):
        long_context_threshold(store)
