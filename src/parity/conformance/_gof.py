"""Goodness of fit of sampled token frequencies against the exact reference distribution, with stated power.

Pearson's chi-square test over the tokens of the reference distribution (tokens whose expected count is below
:data:`MIN_EXPECTED` are pooled into one bin). Power is stated as the smallest total-variation (TV) deviation
detected with probability :data:`GOF_POWER` at :data:`GOF_ALPHA` with the draws made: for any alternative ``q``
over the bins, Cauchy-Schwarz gives ``chi2(q || p) = sum (q_i - p_i)^2 / p_i >= (sum |q_i - p_i|)^2 = 4 TV^2``,
and Pearson's statistic under ``q`` is approximately non-central chi-square with ``df`` degrees of freedom and
non-centrality ``n chi2(q || p)``; so every deviation with TV >= d has power at least that of non-centrality
``4 n d^2``. Deviations inside the pooled bin are invisible to this test (the support check covers draws outside
the kept set).

>>> import numpy as np
>>> p = np.full(10, 0.1)
>>> result = chi_square_gof(np.full(10, 10_000), p)
>>> result.pvalue > GOF_ALPHA, round(result.detectable_tv, 4)
(True, 0.0117)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, stats

__all__ = ["GOF_ALPHA", "GOF_POWER", "MIN_EXPECTED", "GoodnessOfFitResult", "chi_square_gof", "detectable_tv"]

#: Significance level of each goodness-of-fit test. The kit runs a handful of them, so the family-wise false
#: alarm rate of a full run stays below 1e-5 (vLLM's test uses 1e-6 too).
GOF_ALPHA = 1e-6
#: The power at which the detectable deviation is stated.
GOF_POWER = 0.9
#: Tokens with a smaller expected count are pooled into one bin (the usual validity rule of Pearson's test).
MIN_EXPECTED = 5.0


@dataclass(frozen=True)
class GoodnessOfFitResult:
    """Pearson chi-square goodness of fit: statistic and p-value first, then the size and the stated power."""

    statistic: float
    pvalue: float
    df: int
    n: int
    alpha: float
    #: The smallest TV deviation (over the bins) detected with probability GOF_POWER at ``alpha`` with ``n`` draws.
    detectable_tv: float
    #: Observed and expected counts per bin, largest expected first (the pooled bin last).
    observed: NDArray[np.float64]
    expected: NDArray[np.float64]

    @property
    def rejected(self) -> bool:
        return self.pvalue < self.alpha


def detectable_tv(n: int, df: int, *, alpha: float = GOF_ALPHA, power: float = GOF_POWER) -> float:
    """The smallest TV deviation a chi-square test with ``df`` degrees of freedom detects at ``power``.

    >>> round(detectable_tv(100_000, 31), 4)
    0.0138
    """
    if df < 1 or n < 1:
        return 1.0
    critical = float(stats.chi2.isf(alpha, df))

    def shortfall(lam: float) -> float:
        return float(stats.ncx2.sf(critical, df, lam)) - power

    hi = 1.0
    while shortfall(hi) < 0:
        hi *= 2.0
    lam = float(optimize.brentq(shortfall, 1e-9, hi, xtol=1e-6))
    return min(1.0, float(np.sqrt(lam / (4.0 * n))))


def chi_square_gof(
    counts: NDArray[np.integer] | NDArray[np.floating], probs: NDArray[np.floating], *, alpha: float = GOF_ALPHA
) -> GoodnessOfFitResult:
    """Test observed ``counts`` per token against the reference ``probs`` (same length)."""
    counts = np.asarray(counts, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    n = int(counts.sum())
    impossible = float(counts[probs <= 0.0].sum())
    if impossible:  # a draw the reference gives probability 0: no test needed
        return GoodnessOfFitResult(math.inf, 0.0, 0, n, alpha, 0.0, np.array([impossible]), np.array([0.0]))
    expected = n * probs
    big = expected >= MIN_EXPECTED
    order = np.flatnonzero(big)[np.argsort(-expected[big], kind="stable")]
    obs = list(counts[order])
    exp = list(expected[order])
    if (~big).any():
        obs.append(float(counts[~big].sum()))
        exp.append(float(expected[~big].sum()))
    o, e = np.array(obs), np.array(exp)
    if len(o) >= 2 and e[-1] < MIN_EXPECTED:  # a pooled bin too small on its own joins the smallest big bin
        o = np.append(o[:-2], o[-2] + o[-1])
        e = np.append(e[:-2], e[-2] + e[-1])
    df = len(o) - 1
    if df < 1:
        impossible = float(o.sum() - o[0]) if len(o) else 0.0
        return GoodnessOfFitResult(impossible, 0.0 if impossible else 1.0, 0, n, alpha, 1.0, o, e)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(e > 0, (o - e) ** 2 / np.where(e > 0, e, 1.0), np.where(o > 0, np.inf, 0.0))
    statistic = float(terms.sum())
    pvalue = 0.0 if not np.isfinite(statistic) else float(stats.chi2.sf(statistic, df))
    return GoodnessOfFitResult(statistic, pvalue, df, n, alpha, detectable_tv(n, df, alpha=alpha), o, e)
