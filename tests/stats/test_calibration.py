"""Support-violation and PIT-uniformity tests: validity under the null, power, edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from parity._exceptions import InvalidInputError
from parity.stats.calibration import MIN_PVALUE, pit_uniformity_test, violation_floor_test, violation_rate_test
from parity.stats.power import tolerance_rate_power


def test_violation_test_is_one_sided_and_never_zero() -> None:
    ref = [[(0, 20)] * 4 for _ in range(8)]
    worse = [[(2, 20)] * 4 for _ in range(8)]
    assert 0 < violation_rate_test(ref, worse, n_resamples=200, rng=0).pvalue <= 1 / 201
    assert violation_rate_test(worse, ref, n_resamples=200, rng=0).pvalue > 0.5  # fewer violations: no rejection


def test_violation_test_false_positive_rate_under_the_null() -> None:
    rng = np.random.default_rng(3)
    rejections = 0
    for _ in range(200):
        groups = [[(int(rng.binomial(20, 0.02)), 20) for _ in range(8)] for _ in range(4)]
        rejections += (
            violation_rate_test([g[:4] for g in groups], [g[4:] for g in groups], n_resamples=199, rng=rng).pvalue
            <= 0.05
        )
    assert rejections / 200 <= 0.08


def test_violation_test_rejects_bad_items() -> None:
    with pytest.raises(InvalidInputError, match="violations"):
        violation_rate_test([[(3, 2)]], [[(0, 2)]])
    with pytest.raises(InvalidInputError, match="one group per prompt"):
        violation_rate_test([[(0, 2)]], [])


def _sides(rng: np.random.Generator, ref_rate: float, cand_rate: float) -> tuple[list[list[tuple[int, int]]], ...]:
    """16 prompts x 4 completions x 16 tokens a side (the benchmark's budget-64 run), violations i.i.d."""
    return tuple(
        [[(int(rng.binomial(16, rate)), 16) for _ in range(4)] for _ in range(16)] for rate in (ref_rate, cand_rate)
    )


@pytest.mark.slow
def test_floor_test_false_positive_rate_at_the_tolerance() -> None:
    # the worst null: both sides violate at exactly the stated tolerance (larger, so that the test sees events)
    rng = np.random.default_rng(11)
    pvalues = np.array([violation_floor_test(*_sides(rng, 2e-3, 2e-3), tolerance=2e-3).pvalue for _ in range(1000)])
    assert np.mean(pvalues <= 0.05) <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 1000)
    assert np.mean(pvalues <= 0.05 / 9) <= 0.05 / 9 + 2 * np.sqrt(0.05 / 9 / 1000)


def test_floor_test_power_matches_the_plan_and_beats_the_permutation() -> None:
    # 1% corrupted tokens against a zero floor: the analytic power the plan states is what simulation gives
    rng = np.random.default_rng(12)
    holm = 0.05 / 9
    runs = [_sides(rng, 0.0, 0.004) for _ in range(300)]
    exact = np.mean([violation_floor_test(r, c).pvalue <= holm for r, c in runs])
    predicted = tolerance_rate_power(1024, 0.004, tolerance=2e-4, alpha=holm)
    assert abs(exact - predicted) < 0.08
    permutation = np.mean([violation_rate_test(r, c, n_resamples=499, rng=0).pvalue <= holm for r, c in runs[:60]])
    assert exact > permutation + 0.2


def test_floor_test_falls_back_when_the_reference_refutes_the_tolerance() -> None:
    rng = np.random.default_rng(13)
    ref, cand = _sides(rng, 0.02, 0.02)
    result = violation_floor_test(ref, cand, n_resamples=199, rng=0)
    assert "reject the stated tolerance" in str(result.details["fallback"])
    assert result.method == "support-violation"  # the permutation against the measured floor
    assert result.pvalue > 0.05 / 9
    with pytest.raises(InvalidInputError, match="per-token rate"):
        violation_floor_test(ref, cand, tolerance=1.5)
    with pytest.raises(InvalidInputError, match="violations"):
        violation_floor_test([[(3, 2)]], [[(0, 2)]])


def test_pit_test_false_positive_rate_under_the_null() -> None:
    rng = np.random.default_rng(4)
    pvalues = [pit_uniformity_test(rng.random((8, 30)).tolist()).pvalue for _ in range(300)]
    assert np.mean(np.asarray(pvalues) <= 0.05) <= 0.07


def test_pit_test_sees_a_shift_confined_to_one_prompt() -> None:
    rng = np.random.default_rng(5)
    pits = rng.random((12, 60))
    pits[0] = pits[0] ** 3  # one prompt's tokens drawn from the reference's head too often
    result = pit_uniformity_test(pits.tolist())
    assert result.details["per_prompt_pvalue"] < result.details["cvm_pvalue"]
    assert result.pvalue < 0.01


def test_pit_test_floors_its_pvalue_and_checks_input() -> None:
    assert pit_uniformity_test([[0.0] * 200]).pvalue >= MIN_PVALUE
    with pytest.raises(InvalidInputError, match="probabilities"):
        pit_uniformity_test([[0.5, 1.5]])
    with pytest.raises(InvalidInputError, match="at least 2"):
        pit_uniformity_test([[0.5]])
