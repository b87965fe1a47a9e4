"""Change attribution: the exact-scope change just before the start ranks first; time and scope rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from parity._exceptions import InvalidInputError
from parity.monitor import Change
from parity.monitor.attribution import AttributionConfig, rank_changes

T = datetime(2025, 8, 29, 12, tzinfo=UTC)
SEG = {"model": "S", "platform": "tpu"}


def ids(ranked: tuple[object, ...]) -> list[str]:
    return [c.change_id for c in ranked]  # type: ignore[attr-defined]


def test_exact_scope_just_before_the_start_ranks_first() -> None:
    changes = [
        Change("fleet", T - timedelta(minutes=1), "deploy", {}),
        Change("model", T - timedelta(minutes=2), "deploy", {"model": "S"}),
        Change("exact", T - timedelta(minutes=20), "config", {"model": "S", "platform": "tpu"}),
        Change("old-exact", T - timedelta(days=10), "config", {"model": "S", "platform": "tpu"}),
    ]
    ranked = rank_changes(SEG, T, T + timedelta(hours=1), changes)
    assert ids(ranked)[0] == "exact"
    assert ranked[0].score > 0.9
    assert ranked[0].score > ranked[1].score
    assert "matches the segment exactly" in ranked[0].evidence


def test_changes_after_detection_or_well_after_the_start_are_excluded() -> None:
    changes = [
        Change("after-detection", T + timedelta(hours=2), "config", SEG),
        Change("after-start", T + timedelta(hours=1, minutes=-1), "config", SEG),
        Change("within-tolerance", T + timedelta(minutes=10), "config", SEG),
    ]
    ranked = rank_changes(SEG, T, T + timedelta(hours=1), changes)
    assert ids(ranked) == ["within-tolerance"]
    assert "after the estimated start" in ranked[0].evidence
    assert ranked[0].score < 0.5


def test_disjoint_scope_scores_zero() -> None:
    changes = [Change("gpu", T - timedelta(minutes=1), "config", {"platform": "gpu"})]
    assert rank_changes(SEG, T, T, changes) == ()


def test_list_scope_values_cover_the_segment() -> None:
    changes = [Change("both", T - timedelta(minutes=1), "config", {"model": "O,S", "platform": "tpu"})]
    assert ids(rank_changes(SEG, T, T, changes)) == ["both"]


def test_clean_siblings_penalise_a_broad_change() -> None:
    change = Change("model-wide", T - timedelta(minutes=1), "deploy", {"model": "S"})

    def clean_siblings(dim: str) -> list[tuple[dict[str, str], bool]]:
        return [({"model": "S", "platform": "gpu"}, False)] if dim == "platform" else []

    def alerting_siblings(dim: str) -> list[tuple[dict[str, str], bool]]:
        return [({"model": "S", "platform": "gpu"}, True)] if dim == "platform" else []

    penalised = rank_changes(SEG, T, T, [change], siblings=clean_siblings)[0]
    kept = rank_changes(SEG, T, T, [change], siblings=alerting_siblings)[0]
    assert penalised.score == pytest.approx(kept.score / 2, rel=1e-3)
    assert "not alerting" in penalised.evidence
    assert "alerting too" in kept.evidence


def test_max_candidates_and_validation() -> None:
    changes = [Change(f"c{i}", T - timedelta(minutes=i), "deploy", {}) for i in range(10)]
    assert len(rank_changes(SEG, T, T, changes, config=AttributionConfig(max_candidates=3))) == 3
    with pytest.raises(InvalidInputError, match="`sibling_penalty` must be in"):
        AttributionConfig(sibling_penalty=2.0)
    with pytest.raises(InvalidInputError, match="`recency_scale` must be > 0"):
        AttributionConfig(recency_scale=timedelta(0))
