"""Support-violation and PIT-uniformity tests: validity under the null, power, edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from parity._exceptions import InvalidInputError
from parity.stats.calibration import MIN_PVALUE, pit_uniformity_test, violation_rate_test


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
