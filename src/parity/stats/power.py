"""Power analysis: the budget a test needs for an effect, and the effect a budget can detect.

Two questions frame every equivalence test. Before sending: *how many samples do I need to detect an effect of
this size?* After: *what is the smallest effect the samples I used could have detected?* A "no difference" verdict
means little without the second answer.

Analytic formulas (normal approximation) cover the tests with a known variance: the two-proportion test
(detector flag rates) and a shift in a mean (per-token log-likelihood). Permutation tests get a minimum
detectable effect from their own null distribution (:func:`permutation_mde`), and any test gets a simulated power
curve (:func:`simulate_power`).

>>> proportion_budget(0.01, 0.03, alpha=0.05, power=0.8)
769
>>> round(proportion_mde(0.01, 769, alpha=0.05, power=0.8), 3)
0.02
>>> round(mean_shift_mde(1.0, 100, alpha=0.05, power=0.8), 3)
0.396
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, stats

from parity._exceptions import InvalidInputError

__all__ = [
    "PowerCurve",
    "mean_shift_budget",
    "mean_shift_mde",
    "permutation_mde",
    "proportion_budget",
    "proportion_mde",
    "rare_event_mde",
    "simulate_power",
    "tolerance_rate_mde",
    "tolerance_rate_power",
]


def _check_level(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise InvalidInputError(name, "must be in (0, 1)", value)


def _z(alpha: float, power: float, two_sided: bool) -> float:
    z_alpha = stats.norm.ppf(1.0 - alpha / 2.0) if two_sided else stats.norm.ppf(1.0 - alpha)
    return float(z_alpha + stats.norm.ppf(power))


def _proportion_power(p0: float, p1: float, n: float, alpha: float, two_sided: bool) -> float:
    """Power of the pooled two-proportion z-test with ``n`` per side (normal approximation)."""
    if p0 == p1:
        return alpha
    pbar = (p0 + p1) / 2.0
    se0 = math.sqrt(2.0 * pbar * (1.0 - pbar) / n)
    se1 = math.sqrt((p0 * (1.0 - p0) + p1 * (1.0 - p1)) / n)
    z_alpha = stats.norm.ppf(1.0 - alpha / 2.0) if two_sided else stats.norm.ppf(1.0 - alpha)
    return float(stats.norm.cdf((abs(p1 - p0) - z_alpha * se0) / se1))


def proportion_budget(
    p_reference: float, p_candidate: float, *, alpha: float = 0.05, power: float = 0.8, two_sided: bool = True
) -> int:
    """Samples per side for a two-proportion test to detect ``p_reference -> p_candidate``.

    Uses the pooled-variance normal approximation (Fleiss, *Statistical Methods for Rates and Proportions*, 1981).

    >>> proportion_budget(0.001, 0.02)
    451
    """
    _check_level("p_reference", p_reference)
    _check_level("p_candidate", p_candidate)
    _check_level("alpha", alpha)
    _check_level("power", power)
    if p_reference == p_candidate:
        raise InvalidInputError("p_candidate", "must differ from `p_reference`", p_candidate)
    pbar = (p_reference + p_candidate) / 2.0
    z_a = stats.norm.ppf(1.0 - alpha / 2.0) if two_sided else stats.norm.ppf(1.0 - alpha)
    z_b = stats.norm.ppf(power)
    num = z_a * math.sqrt(2 * pbar * (1 - pbar)) + z_b * math.sqrt(
        p_reference * (1 - p_reference) + p_candidate * (1 - p_candidate)
    )
    return math.ceil(float(num / (p_candidate - p_reference)) ** 2)


def proportion_mde(
    p_reference: float, n: int, *, alpha: float = 0.05, power: float = 0.8, two_sided: bool = True
) -> float:
    """Smallest increase of a rate above ``p_reference`` detectable with ``n`` samples per side.

    Returns ``p_candidate - p_reference`` solved from the same approximation as :func:`proportion_budget`;
    ``p_reference`` may be 0 (a rate never seen in the reference).

    >>> round(proportion_mde(0.0, 1000), 4)
    0.0078
    """
    if not 0.0 <= p_reference < 1.0:
        raise InvalidInputError("p_reference", "must be in [0, 1)", p_reference)
    if n < 1:
        raise InvalidInputError("n", "must be >= 1", n)
    _check_level("alpha", alpha)
    _check_level("power", power)
    upper = 1.0 - 1e-12
    if _proportion_power(p_reference, upper, n, alpha, two_sided) < power:
        return 1.0 - p_reference

    def gap(p1: float) -> float:
        return _proportion_power(p_reference, p1, n, alpha, two_sided) - power

    root = optimize.brentq(gap, p_reference + 1e-12, upper, xtol=1e-10)
    return float(root) - p_reference


def rare_event_mde(n: int, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest per-unit probability of an event the reference never shows that ``n`` units detect.

    For a within-prompt permutation test against a reference floor of 0 (the support and greedy tests of
    ``parity compare``): each unit (a completion) with the event halves the p-value, so rejecting at ``alpha``
    takes ``ceil(log2(1 / alpha))`` such units; returns the probability ``pi`` at which ``Binomial(n, pi)``
    reaches that count with probability ``power``.

    >>> round(rare_event_mde(64, alpha=0.05), 3)
    0.103
    """
    if n < 1:
        raise InvalidInputError("n", "must be >= 1", n)
    _check_level("alpha", alpha)
    _check_level("power", power)
    need = math.ceil(math.log2(1.0 / alpha))
    if need > n:
        return 1.0

    def gap(pi: float) -> float:
        return float(stats.binom.sf(need - 1, n, pi)) - power

    if gap(1.0 - 1e-12) < 0:
        return 1.0
    return float(optimize.brentq(gap, 1e-12, 1.0 - 1e-12, xtol=1e-10))


def _tolerance_critical(n: int, tolerance: float, alpha: float) -> int:
    """Smallest count ``k`` with ``P(Binomial(n, tolerance) >= k) <= alpha`` (``n + 1`` when none)."""
    k = int(stats.binom.isf(alpha, n, tolerance)) + 1 if tolerance > 0 else 1
    while k > 1 and float(stats.binom.sf(k - 2, n, tolerance)) <= alpha:
        k -= 1
    while k <= n and float(stats.binom.sf(k - 1, n, tolerance)) > alpha:
        k += 1
    return k


def tolerance_rate_power(n: int, rate: float, *, tolerance: float, alpha: float = 0.05) -> float:
    """Power of the exact binomial test against a stated per-unit tolerance (``parity compare``'s support and
    greedy tests, :func:`parity.stats.calibration.violation_floor_test`) when each of ``n`` units shows the event
    with probability ``rate``: ``P(Binomial(n, rate) >= k)`` with ``k`` the test's critical count at ``alpha``.

    >>> round(tolerance_rate_power(1024, 0.005, tolerance=2e-4, alpha=0.05 / 9), 3)
    0.886
    """
    if n < 1:
        raise InvalidInputError("n", "must be >= 1", n)
    _check_level("alpha", alpha)
    if not 0.0 <= tolerance < 1.0:
        raise InvalidInputError("tolerance", "must be in [0, 1)", tolerance)
    k = _tolerance_critical(n, tolerance, alpha)
    return float(stats.binom.sf(k - 1, n, rate)) if k <= n else 0.0


def tolerance_rate_mde(n: int, *, tolerance: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest per-unit event rate that the exact binomial test against ``tolerance`` detects in ``n`` units with
    probability ``power`` (see :func:`tolerance_rate_power`; 1.0 when no rate suffices).

    >>> round(tolerance_rate_mde(1024, tolerance=2e-4, alpha=0.05 / 9), 4)
    0.0042
    """
    _check_level("power", power)
    if tolerance_rate_power(n, 1.0 - 1e-12, tolerance=tolerance, alpha=alpha) < power:
        return 1.0
    k = _tolerance_critical(n, tolerance, alpha)
    return float(optimize.brentq(lambda r: float(stats.binom.sf(k - 1, n, r)) - power, 1e-12, 1.0 - 1e-12, xtol=1e-10))


def mean_shift_mde(sd: float, n: int, *, alpha: float = 0.05, power: float = 0.8, two_sided: bool = True) -> float:
    """Smallest shift in a mean detectable by comparing two samples of ``n`` each with per-sample spread ``sd``.

    >>> round(mean_shift_mde(0.5, 400), 3)
    0.099
    """
    if not sd >= 0.0:
        raise InvalidInputError("sd", "must be >= 0", sd)
    if n < 1:
        raise InvalidInputError("n", "must be >= 1", n)
    _check_level("alpha", alpha)
    _check_level("power", power)
    return _z(alpha, power, two_sided) * sd * math.sqrt(2.0 / n)


def mean_shift_budget(
    effect: float, sd: float, *, alpha: float = 0.05, power: float = 0.8, two_sided: bool = True
) -> int:
    """Samples per side to detect a shift ``effect`` in a mean with per-sample spread ``sd``.

    >>> mean_shift_budget(0.1, 0.5)
    393
    """
    if not effect > 0.0:
        raise InvalidInputError("effect", "must be > 0", effect)
    if not sd > 0.0:
        raise InvalidInputError("sd", "must be > 0", sd)
    _check_level("alpha", alpha)
    _check_level("power", power)
    return math.ceil(2.0 * (_z(alpha, power, two_sided) * sd / effect) ** 2)


def permutation_mde(null_distribution: NDArray[np.float64], *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable effect of a right-tailed permutation test, read off its null distribution.

    The effect is measured as the statistic minus the null mean. Under a location-shift alternative with the null's
    spread (normal approximation), the test rejects with probability ``power`` once the shift reaches
    ``q(1 - alpha) - mean + z(power) * sd``.

    >>> null = np.random.default_rng(0).normal(size=20000)
    >>> round(permutation_mde(null), 1)
    2.5
    """
    null = np.asarray(null_distribution, dtype=np.float64)
    if null.ndim != 1 or null.size < 2:
        raise InvalidInputError("null_distribution", "must be a 1-d array of at least 2 values", null.shape)
    _check_level("alpha", alpha)
    _check_level("power", power)
    quantile = float(np.quantile(null, 1.0 - alpha))
    return quantile - float(null.mean()) + float(stats.norm.ppf(power)) * float(null.std(ddof=1))


@dataclass(frozen=True)
class PowerCurve:
    """Simulated rejection rate of a test at each budget, with a 95% Wilson interval per point."""

    budgets: tuple[int, ...]
    power: tuple[float, ...]
    repetitions: int
    alpha: float
    rejections: tuple[int, ...] = field(repr=False, default=())

    def confidence_interval(self, index: int) -> tuple[float, float]:
        """Wilson 95% interval for the power at ``budgets[index]``.

        >>> PowerCurve((10,), (0.5,), 100, 0.05, (50,)).confidence_interval(0)
        (0.403..., 0.596...)
        """
        k, n = self.rejections[index], self.repetitions
        z = 1.959963984540054
        centre = (k + z * z / 2) / (n + z * z)
        half = z * math.sqrt(k * (n - k) / n + z * z / 4) / (n + z * z)
        return (centre - half, centre + half)

    def budget_for(self, target: float = 0.8) -> int | None:
        """The smallest simulated budget whose power reaches ``target``, or ``None``.

        >>> PowerCurve((10, 20), (0.5, 0.9), 100, 0.05, (50, 90)).budget_for(0.8)
        20
        """
        for budget, value in zip(self.budgets, self.power, strict=True):
            if value >= target:
                return budget
        return None


def simulate_power(
    test: Callable[[int, np.random.Generator], float],
    budgets: Sequence[int],
    *,
    repetitions: int = 100,
    alpha: float = 0.05,
    rng: np.random.Generator | int | None = None,
) -> PowerCurve:
    """Estimate power by simulation: ``test(budget, rng)`` draws fresh data and returns its p-value.

    >>> from scipy import stats as st
    >>> def test(n, rng):
    ...     return float(st.ttest_ind(rng.normal(0.5, 1, n), rng.normal(0, 1, n)).pvalue)
    >>> curve = simulate_power(test, [10, 100], repetitions=200, rng=1)
    >>> curve.power[0] < 0.5 < 0.9 < curve.power[1]
    True
    """
    if not budgets:
        raise InvalidInputError("budgets", "must name at least one budget", budgets)
    if repetitions < 1:
        raise InvalidInputError("repetitions", "must be >= 1", repetitions)
    _check_level("alpha", alpha)
    gen = np.random.default_rng(rng)
    rejections = []
    for budget in budgets:
        if budget < 1:
            raise InvalidInputError("budgets", "must all be >= 1", budget)
        hits = sum(test(int(budget), gen) <= alpha for _ in range(repetitions))
        rejections.append(int(hits))
    return PowerCurve(
        budgets=tuple(int(b) for b in budgets),
        power=tuple(r / repetitions for r in rejections),
        repetitions=repetitions,
        alpha=alpha,
        rejections=tuple(rejections),
    )
