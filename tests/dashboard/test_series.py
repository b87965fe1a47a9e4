"""Segment series on a hand-built store: exact counts, rates, shares, affected fraction and baselines."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from parity._exceptions import InvalidInputError
from parity.dashboard._bins import bins_for
from parity.dashboard._series import segment_series, signal_table
from parity.dashboard._timeline import timeline_rows
from parity.monitor import Alert, DetectorObservation, FeedbackEvent, Record, context_class_of

T0 = datetime(2025, 8, 5, tzinfo=UTC)
BINS = bins_for(T0, T0 + timedelta(hours=3), max_bins=4)  # four 1-hour bins


def rec(
    i: int,
    hour: float,
    model: str,
    platform: str,
    *,
    pool: str = "short",
    ctx: int = 100,
    flag: bool = False,
    session: str | None = None,
    server: str = "unknown",
) -> Record:
    return Record(
        record_id=f"r{i}",
        time=T0 + timedelta(hours=hour),
        model=model,
        platform=platform,
        pool=pool,
        context_tokens=ctx,
        context_class=context_class_of(ctx, 192),  # built at the fleet's split
        session_hash=session,
        server=server,
        observations=(DetectorObservation("unexpected_script", flag, 0.9 if flag else 0.1),),
    )


RECORDS = [
    rec(0, 0.1, "S", "gpu", flag=True),
    rec(1, 0.2, "O", "gpu"),
    rec(2, 1.1, "S", "tpu", pool="long", ctx=100),  # short request on the long pool (split at 192 tokens)
    rec(3, 1.2, "S", "tpu", pool="long", ctx=500),  # long request, long pool: fine
    rec(4, 3.5, "S", "gpu"),
]
FEEDBACK = [
    FeedbackEvent("r4", T0 + timedelta(hours=3.6), "thumbs_down"),
    FeedbackEvent("r0", T0 + timedelta(hours=0.5), "thumbs_up"),  # not negative: not a 1
]
ALERT = Alert(
    "a1",
    "routing.short_on_long_pool",
    {"model": "S", "platform": "tpu"},
    T0 + timedelta(hours=1),
    T0 + timedelta(hours=1.5),
    0.5,
    0.0,
    0.5,
    2,
)


def test_signal_table_uses_the_monitors_signals_and_the_records_context_class() -> None:
    table = signal_table(RECORDS, FEEDBACK, bins=BINS)
    assert table.signals == (
        "feedback",
        "routing.short_on_long_pool",
        "routing.sticky_degraded_session",
        "unexpected_script",
    )
    assert table.bin_of == (0, 0, 1, 1, 3)
    assert [f["context_class"] for f in table.finest] == ["short", "short", "short", "long", "short"]
    assert [sorted(p) for p in table.positive] == [
        ["unexpected_script"],
        [],
        ["routing.short_on_long_pool"],
        [],
        ["feedback"],
    ]
    # the same requests built at the default split (8192): the table follows the records, it never reclassifies
    default = [replace(r, context_class=context_class_of(r.context_tokens)) for r in RECORDS]
    wide = signal_table(default, FEEDBACK, bins=BINS)
    assert [f["context_class"] for f in wide.finest] == ["short"] * 5
    assert "routing.short_on_long_pool" in wide.positive[3]  # 500 tokens is short at the default split


def test_segment_series_counts_rates_shares_and_affected_fraction() -> None:
    table = signal_table(RECORDS, FEEDBACK, [ALERT], bins=BINS)
    rows = timeline_rows([ALERT], [])
    s = segment_series(table, {"model": "S"}, alerts=[ALERT], rows=rows)
    assert s.requests == (1, 2, 0, 1)
    assert s.total == (2, 2, 0, 1)
    assert s.traffic_share() == [0.5, 1.0, None, 1.0]
    assert s.affected == (0, 2, 0, 0)  # S on tpu from the alert's start, no fix: both bin-1 requests
    assert s.affected_fraction() == [0.0, 1.0, None, 0.0]
    script = s.signal("unexpected_script")
    assert (script.n, script.k) == ((1, 2, 0, 1), (1, 0, 0, 0))
    assert script.rates() == [1.0, 0.0, None, 0.0]
    assert s.signal("routing.short_on_long_pool").k == (0, 1, 0, 0)
    assert s.signal("feedback").k == (0, 0, 0, 1)
    assert s.signals[0].signal == "routing.short_on_long_pool"  # alerted signals first
    assert s.signals[0].alerted
    with pytest.raises(InvalidInputError, match="`signal` must be one of"):
        s.signal("nope")


def test_baseline_falls_back_from_segment_to_fleet_to_whole_store(monkeypatch: pytest.MonkeyPatch) -> None:
    table = signal_table(RECORDS, FEEDBACK, [ALERT], bins=BINS)

    def script(minimum: int) -> tuple[str, float]:
        monkeypatch.setattr("parity.dashboard._series.MIN_BASELINE_REQUESTS", minimum)
        series = segment_series(table, {"model": "S"}, alerts=[ALERT]).signal("unexpected_script")
        assert series.baseline_until == ALERT.started_at
        return series.baseline_source, series.band.center

    assert script(1) == ("segment", 0.75)  # r0 alone: (1 + 1/2) / (1 + 1)
    assert script(2) == ("fleet", 0.5)  # r0, r1 before the alert: (1 + 1/2) / (2 + 1)
    assert script(3) == ("fleet, whole store", 0.25)  # all five: (1 + 1/2) / (5 + 1)
    band = segment_series(table, {"model": "S"}, alerts=[ALERT]).signal("unexpected_script").band
    assert band.lower[2] is None  # no S requests in bin 2
    assert band.upper[1] == pytest.approx(min(1.0, 0.25 + 3 * (0.25 * 0.75 / 2) ** 0.5))


def test_sticky_sessions_violate_while_their_segment_is_alerting() -> None:
    alert = Alert("a", "unexpected_script", {"platform": "tpu"}, T0, T0 + timedelta(hours=1), 0.1, 0.0, 0.1, 9)
    records = [rec(10 + i, 2 + i / 10, "S", "tpu", session="h", server="tpu-short-0") for i in range(4)]
    records.insert(0, rec(9, 0.5, "S", "tpu", session="h", server="tpu-short-0"))  # before detection
    table = signal_table(records, [], [alert], bins=BINS)
    sticky = ["routing.sticky_degraded_session" in p for p in table.positive]
    assert sticky == [False, False, True, True, True]  # the 3rd+ request in a row on one server, while alerting
