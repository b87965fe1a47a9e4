"""The record contracts: round trips, validation, and the JSON codecs the store and the proxy share."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parity import InvalidInputError
from parity.monitor import (
    SCHEMA_VERSION,
    SEGMENT_DIMENSIONS,
    Alert,
    AttributedChange,
    Change,
    DetectorObservation,
    FeedbackEvent,
    Record,
)
from parity.monitor._codec import alert_from_dict, change_from_dict, feedback_from_dict, feedback_to_dict

T0 = datetime(2025, 8, 5, 12, 0, tzinfo=UTC)


def test_record_json_round_trip(make_record: Callable[..., Record]) -> None:
    for i in range(6):
        r = make_record(i, captured_text="x [EMAIL]" if i == 3 else None)
        assert Record.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_record_times_are_normalised_to_utc() -> None:
    t = datetime(2025, 8, 5, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    r = Record(record_id="r", time=t, model="S")
    assert r.time.tzinfo == UTC
    assert r.time.hour == 12
    with pytest.raises(InvalidInputError, match="`time` must be timezone-aware"):
        Record(record_id="r", time=datetime(2025, 8, 5), model="S")


def test_record_rejects_unknown_fields_and_negative_context() -> None:
    with pytest.raises(InvalidInputError, match="unknown fields \\['prompt'\\]"):
        Record.from_dict({"record_id": "r", "time": T0.isoformat(), "model": "S", "prompt": "secret"})
    with pytest.raises(InvalidInputError, match="`context_tokens` must be >= 0"):
        Record(record_id="r", time=T0, model="S", context_tokens=-1)


def test_record_has_no_text_field_but_captured_text() -> None:
    names = set(Record.__dataclass_fields__)
    assert not names & {"prompt", "response", "messages", "text", "session", "user"}
    assert "captured_text" in names


def test_segment_has_every_dimension(make_record: Callable[..., Record]) -> None:
    assert tuple(make_record(0).segment()) == SEGMENT_DIMENSIONS
    assert make_record(0, context_tokens=9000).segment()["context_class"] == "long"


def test_flagged_lookup() -> None:
    r = Record(record_id="r", time=T0, model="S", observations=(DetectorObservation("a", True, 1.0),))
    assert r.flagged("a") is True
    assert r.flagged("b") is None


def test_feedback_kinds_are_validated() -> None:
    assert FeedbackEvent("r", T0, "bug_report").schema_version == SCHEMA_VERSION
    with pytest.raises(InvalidInputError, match="`kind` must be one of"):
        FeedbackEvent("r", T0, "meh")


def test_codecs_round_trip() -> None:
    cause = (AttributedChange("c1", 0.8, "routing change 10 min before"),)
    alert = Alert("a", "feedback_rate", {"model": "S"}, T0, T0 + timedelta(hours=1), 0.05, 0.01, 0.06, 120, cause)
    assert alert_from_dict(json.loads(json.dumps(alert.to_dict()))) == alert
    uncertain = replace(alert, latest_start=T0 + timedelta(minutes=30))
    assert alert_from_dict(json.loads(json.dumps(uncertain.to_dict()))) == uncertain
    change = Change("c1", T0, "routing", {"model": "S"}, "share 0.8%")
    assert change_from_dict(change.to_dict()) == change
    event = FeedbackEvent("r1", T0, "thumbs_up")
    assert feedback_from_dict(feedback_to_dict(event)) == event


def test_lab_change_log_entries_parse() -> None:
    entry = {"time": "2025-08-29T00:00:00Z", "id": "chg-7", "kind": "load_balancing",
             "scope": {"model": "S", "platform": None}, "description": "shares", "params": {"x": 1}}  # fmt: skip
    c = change_from_dict(entry)
    assert (c.change_id, c.kind, c.scope) == ("chg-7", "load_balancing", {"model": "S"})
    with pytest.raises(InvalidInputError, match="missing field 'change_id'"):
        change_from_dict({"time": "2025-08-29T00:00:00Z", "kind": "deploy"})
    with pytest.raises(InvalidInputError, match="`alert` is missing fields"):
        alert_from_dict({"id": "a"})


@given(
    ctx=st.integers(0, 2_000_000),
    temp=st.none() | st.floats(0, 2),
    obs=st.lists(st.tuples(st.text(min_size=1, max_size=12), st.booleans(), st.floats(-1e6, 1e6)), max_size=4),
)
def test_record_round_trip_property(ctx: int, temp: float | None, obs: list[tuple[str, bool, float]]) -> None:
    r = Record(record_id="r", time=T0, model="S", context_tokens=ctx, temperature=temp,
               observations=tuple(DetectorObservation(*o) for o in obs))  # fmt: skip
    assert Record.from_dict(json.loads(json.dumps(r.to_dict()))) == r
