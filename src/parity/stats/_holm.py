"""Combining several two-sample tests: Holm's step-down correction (family-wise error control under any
dependence between the tests) and the combined verdict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from parity._exceptions import InvalidInputError
from parity.stats._result import TwoSampleResult

__all__ = ["CombinedResult", "combine", "holm"]


def holm(pvalues: Sequence[float]) -> NDArray[np.float64]:
    """Holm step-down adjusted p-values (family-wise error control under any dependence).

    >>> holm([0.01, 0.04, 0.03]).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1 or np.any((p < 0) | (p > 1)) or np.any(np.isnan(p)):
        raise InvalidInputError("pvalues", "must be a 1-d sequence of probabilities in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


@dataclass(frozen=True)
class CombinedResult:
    """Several named tests combined with Holm's correction: ``equivalent`` when none rejects at ``alpha``."""

    equivalent: bool
    alpha: float
    names: tuple[str, ...]
    results: tuple[TwoSampleResult, ...]
    adjusted_pvalues: tuple[float, ...]
    correction: str = "holm"

    @property
    def rejected(self) -> tuple[str, ...]:
        """Names of the tests that reject after correction."""
        return tuple(n for n, p in zip(self.names, self.adjusted_pvalues, strict=True) if p <= self.alpha)


def combine(tests: Mapping[str, TwoSampleResult], *, alpha: float = 0.05) -> CombinedResult:
    """Combine named tests with Holm's correction.

    >>> a = TwoSampleResult(0.0, 0.5, 10, "x")
    >>> b = TwoSampleResult(1.0, 0.001, 10, "y")
    >>> combine({"a": a, "b": b}).rejected
    ('b',)
    """
    if not 0.0 < alpha < 1.0:
        raise InvalidInputError("alpha", "must be in (0, 1)", alpha)
    names = tuple(tests)
    results = tuple(tests.values())
    adjusted = tuple(float(x) for x in holm([r.pvalue for r in results])) if results else ()
    return CombinedResult(
        equivalent=all(p > alpha for p in adjusted),
        alpha=alpha,
        names=names,
        results=results,
        adjusted_pvalues=adjusted,
    )
