"""The replay's summary: alerts matched to the scripted faults by signal, segment and onset; false alerts listed."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from parity._exceptions import InvalidInputError
from parity.demo import DemoSummary, ReplayConfig, incident_timeline, summarize
from parity.monitor import Alert, AttributedChange, Record

TL = incident_timeline()


def alert(
    alert_id: str,
    signal: str,
    segment: dict[str, str],
    started: str,
    blamed: str | None,
    *,
    hours: float = 6.0,
    worsens: str | None = None,
    status: str = "open",
) -> Alert:
    start = datetime.fromisoformat(f"2025-{started}+00:00")
    changes = (AttributedChange(blamed, 0.8, "scope and time"),) if blamed else ()
    return Alert(
        alert_id, signal, segment, start, start + timedelta(hours=hours), 0.1, 0.01, 0.11, 50, changes, status, worsens
    )


def test_each_alert_goes_to_the_fault_it_is_about() -> None:
    alerts = [
        alert(
            "a1", "routing.short_on_long_pool", {"pool": "long", "context_class": "short"}, "08-09T10:00", "routing-1p"
        ),
        alert("a2", "routing.short_on_long_pool", {"pool": "long"}, "08-29T12:00", "lb-0829", worsens="a1"),
        alert("a3", "unexpected_script", {"platform": "tpu"}, "08-25T11:00", "corruption-S"),
        alert("a4", "sampling_consistency", {"platform": "tpu", "model": "H"}, "08-26T15:00", "corruption-S"),
        alert("a5", "code_integrity", {"model": "O", "platform": "gpu"}, "08-14T00:00", "release-0819"),
    ]
    summary = summarize(TL, alerts, [])
    rows = {f.name: f for f in summary.faults}
    assert rows["routing"].alert_id == "a1"
    assert rows["routing"].attribution_correct
    assert rows["routing-growth"].alert_id == "a2"
    assert rows["routing-growth"].attribution_correct
    assert rows["corruption"].alert_id == "a3"
    assert rows["sampler"].alert_id == "a4"
    assert not rows["sampler"].attribution_correct  # blamed the corruption: caught, wrongly attributed
    assert [a.alert_id for a in summary.false_alerts] == ["a5"]  # gpu: no fault there
    assert not summary.all_caught_and_attributed


def test_an_alert_before_the_fault_is_not_about_it() -> None:
    early = alert("a1", "unexpected_script", {"platform": "tpu"}, "08-20T00:00", "release-0819")
    summary = summarize(TL, [early], [])
    assert not any(f.caught for f in summary.faults)
    assert summary.false_alerts[0].attributed_change == "release-0819"


def test_an_early_start_whose_support_reaches_the_onset_is_about_the_fault() -> None:
    """A rare signal's start estimate can land days early (a chance burst before the onset); the alert is about the
    fault when the latest start its data support reaches the onset's slack."""
    early = alert("a1", "unexpected_script", {"platform": "tpu", "model": "S"}, "08-23T06:00", "corruption-S")
    assert summarize(TL, [early], []).false_alerts
    supported = replace(early, latest_start=datetime(2025, 8, 25, 12, tzinfo=UTC))
    summary = summarize(TL, [supported], [])
    assert not summary.false_alerts
    rows = {f.name: f for f in summary.faults}
    assert rows["corruption"].alert_id == "a1"
    assert rows["corruption"].attribution_correct


def test_a_worsening_is_only_about_the_growth_fault() -> None:
    plain = alert("a1", "routing.short_on_long_pool", {"model": "S"}, "08-30T00:00", "lb-0829")
    rows = {f.name: f for f in summarize(TL, [plain], []).faults}
    assert rows["routing"].caught
    assert not rows["routing-growth"].caught


def test_requests_after_onset_count_the_fleet_and_the_faults_segment() -> None:
    t0 = datetime(2025, 8, 25, 8, tzinfo=UTC)
    records = [
        Record(
            record_id=f"r{i}",
            time=t0 + timedelta(minutes=30 * i),
            model="S",
            platform=("tpu", "gpu")[i % 2],
            config_version="2025-08-25.tpu-perf" if i % 2 == 0 else "2025-08-19.1",
            context_tokens=50,
        )
        for i in range(20)
    ]
    found = alert("a1", "unexpected_script", {"platform": "tpu"}, "08-25T10:00", "corruption-O", hours=2)
    row = summarize(TL, [found], records).faults[2]
    # onset 09:00, alert at 12:00: records at 09:00, 09:30, ..., 12:00 -> 7, of which tpu (even i) 4
    assert row.requests_after_onset == 7
    assert row.segment_requests_after_onset == 4


def test_the_json_document_has_the_documented_keys() -> None:
    doc = DemoSummary(summarize(TL, [], []).faults, [], requests=3, wall_seconds=1.26).to_dict()
    assert set(doc) >= {"faults", "false_alerts", "wall_seconds"}
    assert doc["wall_seconds"] == 1.3
    assert set(doc["faults"][0]) >= {
        "name", "onset", "alerted_at", "requests_after_onset", "segment", "attributed_change", "attribution_correct",
    }  # fmt: skip


def test_timeline_days_and_changes() -> None:
    assert TL.days[0] == date(2025, 8, 1)
    assert TL.days[-1] == date(2025, 9, 18)
    assert [c.change_id for c in TL.changes_on(date(2025, 8, 25))] == ["corruption-O", "corruption-S"]
    body = TL.change("lb-0829").to_json()
    assert body["time"] == "2025-08-29T09:00:00Z"
    assert body["params"] == {"misroute_multiplier": 20.0}
    with pytest.raises(InvalidInputError, match="`change_id` must name a scripted change"):
        TL.change("nope")


def test_replay_config_names_bad_values() -> None:
    with pytest.raises(InvalidInputError, match="`requests_per_day` must be >= 10"):
        ReplayConfig(requests_per_day=3)
    with pytest.raises(InvalidInputError, match="`concurrency`"):
        ReplayConfig(concurrency=0)
    with pytest.raises(InvalidInputError, match="`quiet_requests_per_day` must be >= 1"):
        ReplayConfig(quiet_requests_per_day=0)
    with pytest.raises(InvalidInputError, match="`busy_days` must be"):
        ReplayConfig(busy_days=(date(2025, 9, 4), date(2025, 8, 5)))


def test_a_detectors_mean_score_alert_belongs_to_its_fault() -> None:
    """The 60-a-day SmolLM2 run counted a ``degeneration.score`` alert on platform=tpu as false: the fault lists the
    detector ``degeneration``, and its mean-score signal did not match. SmolLM2 flags degeneration in 0.7% of clean
    tpu answers and 9.6% under the corrupting config; the alert is the corruption's."""
    score = alert("a1", "degeneration.score", {"platform": "tpu"}, "08-25T12:00", "corruption-O")
    summary = summarize(TL, [score], [])
    assert summary.false_alerts == []
    row = {f.name: f for f in summary.faults}["corruption"]
    assert row.signals == ("degeneration.score",)
    assert row.attribution_correct
    # a family prefix still matches only its family, and a score signal of another detector matches nothing here
    other = alert("a2", "reference.score", {"platform": "tpu"}, "08-25T12:00", "corruption-O")
    assert [a.alert_id for a in summarize(TL, [other], []).false_alerts] == ["a2"]


def test_the_demo_spends_its_requests_on_the_incidents_days() -> None:
    from click.testing import CliRunner

    from parity.cli import main
    from parity.demo.replay import DEMO_BUSY_DAYS, DEMO_QUIET_REQUESTS_PER_DAY, DEMO_REQUESTS_PER_DAY

    config = ReplayConfig(quiet_requests_per_day=DEMO_QUIET_REQUESTS_PER_DAY)
    per_day = [config.requests_on(d) for d in TL.days]
    busy = [d for d in TL.days if DEMO_BUSY_DAYS[0] <= d <= DEMO_BUSY_DAYS[1]]
    assert sum(per_day) == DEMO_REQUESTS_PER_DAY * len(busy) + DEMO_QUIET_REQUESTS_PER_DAY * (49 - len(busy))
    # every scripted fault's onset and the last rollback are busy days
    assert all(DEMO_BUSY_DAYS[0] <= f.onset.date() <= DEMO_BUSY_DAYS[1] for f in TL.faults)
    assert TL.change("rollback-sampler-H").at.date() == DEMO_BUSY_DAYS[1]
    # `parity demo`'s defaults are these constants
    help_text = CliRunner().invoke(main, ["demo", "--help"], terminal_width=200).output
    assert f"[default: {DEMO_REQUESTS_PER_DAY};" in help_text
    assert f"[default: {DEMO_QUIET_REQUESTS_PER_DAY};" in help_text


def test_a_faults_alerts_count_what_a_person_is_notified_of() -> None:
    """The corruption raised three alarms: its script rate on platform=tpu, then on model=S,platform=tpu (superseding
    it), and the script score - one incident, one alert a person is notified of (the first), three alarms. A second
    incident on the same fault (nothing joined it) is a second alert."""
    tpu = replace(alert("a1", "unexpected_script", {"platform": "tpu"}, "08-25T11:00", "corruption-S"),
                  status="superseded", incident="a1")  # fmt: skip
    s_tpu = replace(alert("a2", "unexpected_script", {"platform": "tpu", "model": "S"}, "08-25T11:00",
                          "corruption-S", hours=9), incident="a1")  # fmt: skip
    score = replace(alert("a3", "unexpected_script.score", {"platform": "tpu"}, "08-25T11:00", "corruption-S",
                          hours=10), incident="a1")  # fmt: skip
    row = {f.name: f for f in summarize(TL, [tpu, s_tpu, score], []).faults}["corruption"]
    assert (row.alerts, row.incidents, row.alarms) == (1, 1, 3)
    assert row.to_dict()["alarms"] == 3
    apart = replace(alert("a4", "code_integrity", {"platform": "tpu"}, "08-25T11:00", "corruption-S", hours=12),
                    incident="a4")  # fmt: skip
    row = {f.name: f for f in summarize(TL, [tpu, s_tpu, score, apart], []).faults}["corruption"]
    assert (row.alerts, row.incidents, row.alarms) == (2, 2, 4)
