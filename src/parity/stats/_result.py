"""The result of a two-sample test (scipy's shape: ``statistic`` and ``pvalue`` first, then the extras)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = ["TwoSampleResult"]


@dataclass(frozen=True)
class TwoSampleResult:
    """The outcome of one two-sample test.

    ``effect`` is the observed size of the difference in the test's own units (see ``method``) and
    ``min_detectable_effect`` the size the test would detect with 80% power at the same alpha and sample size.
    """

    statistic: float
    pvalue: float
    n: int
    method: str
    null_distribution: NDArray[np.float64] | None = field(default=None, repr=False, compare=False)
    effect: float = math.nan
    min_detectable_effect: float = math.nan
    details: Mapping[str, object] = field(default_factory=dict, repr=False, compare=False)

    def rejects(self, alpha: float = 0.05) -> bool:
        """Whether the test rejects equality at level ``alpha`` (uncorrected).

        >>> TwoSampleResult(1.0, 0.01, 10, "x").rejects(0.05)
        True
        """
        return self.pvalue <= alpha
