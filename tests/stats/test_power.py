"""Power analysis: analytic formulas agree with simulation; validation names the argument."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from parity._exceptions import InvalidInputError
from parity.stats.power import (
    mean_shift_budget,
    mean_shift_mde,
    permutation_mde,
    proportion_budget,
    proportion_mde,
    simulate_power,
)
from parity.stats.twosample import two_proportion_test


def test_proportion_budget_and_mde_are_inverse() -> None:
    n = proportion_budget(0.02, 0.05)
    assert proportion_mde(0.02, n) == pytest.approx(0.03, abs=0.001)


def test_mean_shift_budget_and_mde_are_inverse() -> None:
    n = mean_shift_budget(0.2, 0.7)
    assert mean_shift_mde(0.7, n) <= 0.2 < mean_shift_mde(0.7, n - 2)


def test_analytic_proportion_power_agrees_with_simulation() -> None:
    n = proportion_budget(0.01, 0.04)

    def test(budget: int, rng: np.random.Generator) -> float:
        return two_proportion_test(rng.binomial(budget, 0.01), budget, rng.binomial(budget, 0.04), budget).pvalue

    curve = simulate_power(test, [n], repetitions=200, rng=5)
    low, high = curve.confidence_interval(0)
    # Fisher's exact test is a little conservative against the z-approximation: power 0.8 +- sampling error.
    assert low <= 0.85
    assert high >= 0.65


def test_mean_shift_mde_agrees_with_simulated_t_test() -> None:
    mde = mean_shift_mde(1.0, 50)

    def test(budget: int, rng: np.random.Generator) -> float:
        return float(stats.ttest_ind(rng.normal(mde, 1, budget), rng.normal(0, 1, budget)).pvalue)

    curve = simulate_power(test, [50], repetitions=300, rng=6)
    assert 0.7 <= curve.power[0] <= 0.9


def test_permutation_mde_scales_with_spread() -> None:
    null = np.random.default_rng(1).normal(size=5000)
    assert permutation_mde(3 * null) == pytest.approx(3 * permutation_mde(null))


def test_curve_budget_for() -> None:
    curve = simulate_power(lambda n, rng: 0.0 if n >= 20 else 1.0, [10, 20, 30], repetitions=5, rng=0)
    assert curve.power == (0.0, 1.0, 1.0)
    assert curve.budget_for(0.9) == 20


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: proportion_budget(0.1, 0.1), "`p_candidate` must differ"),
        (lambda: proportion_budget(0.0, 0.1), r"`p_reference` must be in \(0, 1\)"),
        (lambda: proportion_mde(0.1, 0), "`n` must be >= 1"),
        (lambda: mean_shift_mde(-1.0, 10), "`sd` must be >= 0"),
        (lambda: mean_shift_budget(0.0, 1.0), "`effect` must be > 0"),
        (lambda: permutation_mde(np.zeros(1)), "`null_distribution` must be a 1-d array"),
        (lambda: simulate_power(lambda n, r: 1.0, []), "`budgets` must name at least one"),
        (lambda: mean_shift_mde(1.0, 10, power=1.0), r"`power` must be in \(0, 1\)"),
    ],
)
def test_validation(call, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        call()
