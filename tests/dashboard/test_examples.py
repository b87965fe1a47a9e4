"""Drill-down examples: the alert's segment, signal and live window; captured text first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from parity.dashboard._bins import bins_for
from parity.dashboard._examples import alert_examples
from parity.dashboard._series import signal_table
from parity.monitor import Alert, DetectorObservation, Record

T0 = datetime(2025, 8, 25, tzinfo=UTC)


def rec(i: int, platform: str, flagged: bool, text: str | None = None) -> Record:
    return Record(
        record_id=f"r{i}",
        time=T0 + timedelta(hours=i),
        model="S",
        platform=platform,
        observations=(DetectorObservation("unexpected_script", flagged, 0.8 if flagged else 0.1),),
        captured_text=text,
    )


RECORDS = [
    rec(0, "tpu", True, "before the start"),
    rec(1, "tpu", True),
    rec(2, "gpu", True, "other platform"),
    rec(3, "tpu", False),
    rec(4, "tpu", True, "สวัสดี [EMAIL]"),
    rec(5, "tpu", True, "after the fix"),
]
ALERT = Alert(
    "a1", "unexpected_script", {"platform": "tpu"}, T0 + timedelta(hours=1), T0 + timedelta(hours=2), 0.5, 0.0, 0.5, 3
)


def test_examples_are_flagged_requests_of_the_segment_in_the_live_window() -> None:
    table = signal_table(RECORDS, bins=bins_for(T0, RECORDS[-1].time))
    found = alert_examples(ALERT, RECORDS, table, until=T0 + timedelta(hours=5))
    assert found.capture_on
    assert found.matched == 2
    assert [(e.record_id, e.captured_text, e.score) for e in found.examples] == [
        ("r4", "สวัสดี [EMAIL]", 0.8),  # captured text first
        ("r1", None, 0.8),
    ]
    assert found.to_dict()["examples"][0]["platform"] == "tpu"
    assert alert_examples(ALERT, RECORDS, table, limit=1).matched == 3  # no fix: up to the end of the store
    assert len(alert_examples(ALERT, RECORDS, table, limit=1).examples) == 1


def test_without_capture_the_examples_carry_metadata_only() -> None:
    records = [rec(i, "tpu", True) for i in range(3)]
    table = signal_table(records, bins=bins_for(T0, records[-1].time))
    found = alert_examples(ALERT, records, table)
    assert not found.capture_on
    assert [e.record_id for e in found.examples] == ["r1", "r2"]
    assert all(e.captured_text is None for e in found.examples)
