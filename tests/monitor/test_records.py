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


def test_the_record_builder_puts_each_value_in_its_own_field() -> None:
    # ParsedExchange and Record are filled positionally on the hot path (record_of): distinct values per field show a
    # field that moved
    from parity.monitor.intake.scoring import RecordBuilder, parse_response_object, session_hash

    request = {"model": "asked", "messages": [{"role": "user", "content": "hello there"}], "temperature": 0.3,
               "top_p": 0.7, "top_k": 11, "max_tokens": 13, "user": "sess-1"}  # fmt: skip
    response = {"id": "resp-1", "model": "served", "usage": {"prompt_tokens": 17, "completion_tokens": 19},
                "choices": [{"message": {"content": "hi"}, "finish_reason": "length"}]}  # fmt: skip
    parsed = parse_response_object(request, response)
    assert (parsed.response_id, parsed.model, parsed.text, parsed.finish_reason) == ("resp-1", "served", "hi", "length")
    assert (parsed.prompt_tokens, parsed.completion_tokens, parsed.prompt, parsed.session) == (17, 19, "hello there",
                                                                                               "sess-1")  # fmt: skip
    assert (parsed.temperature, parsed.top_p, parsed.top_k, parsed.max_tokens) == (0.3, 0.7, 11, 13)
    builder = RecordBuilder(salt="s", labels={"region": "eu"}, source="ingest", long_context_tokens=10)
    t = datetime(2025, 8, 5, 9, tzinfo=UTC)
    headers = {"x-parity-pool": "long", "x-parity-platform": "tpu", "x-parity-config-version": "v7",
               "x-parity-server": "tpu-3"}  # fmt: skip
    r = builder.build_fields("/v1/chat/completions", t, request, 201, headers, 23.5, parsed)
    assert (r.record_id, r.time, r.model, r.pool, r.platform, r.region) == ("resp-1", t, "served", "long", "tpu", "eu")
    assert (r.config_version, r.server, r.context_tokens, r.output_tokens) == ("v7", "tpu-3", 17, 19)
    assert r.session_hash == session_hash("sess-1", "s")
    assert (r.temperature, r.top_p, r.top_k, r.max_tokens, r.finish_reason) == (0.3, 0.7, 11, 13, "length")
    assert (r.status_code, r.latency_ms, r.source, r.context_class) == (201, 23.5, "ingest", "long")
    assert r.observations == ()
    assert r.captured_text is None
