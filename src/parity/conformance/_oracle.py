"""The property oracle: what a correct implementation may keep of one row, with documented float32 tolerances.

Conformance is defined by properties, not by equality with one implementation, so a correct implementation that
breaks ties differently or computes in float32 passes. For one row and one set of parameters the oracle works on
the float64 scaled logits ``z = logits / temperature`` sorted in decreasing order and derives:

* the **order rule**: every kept token outranks every removed finite token, up to the tie tolerance
  :func:`tie_tolerance` (every filter keeps an upper set of ``z``: top-k the k largest, top-p a prefix of the
  probability order, min-p a threshold on ``z``);
* the **argmax rule**: a token tied (within tolerance) with the maximum survives, and ``-inf`` is never kept;
* the **count interval** ``[lo, hi]``: the fewest and most tokens a correct implementation keeps, obtained by
  running the stages in the given order on count intervals: top-k keeps ``k`` tokens, or more only when they tie
  with the k-th; top-p keeps the shortest prefix whose renormalised mass reaches ``top_p`` within the mass
  tolerance :func:`mass_tolerance` (the boundary token may go either way when the prefix mass is that close to
  ``top_p``; a tie at the boundary may keep one or all tied tokens); min-p keeps ``z_i >= z_max + log(min_p)``
  within the tie tolerance. Count plus order fixes the kept set up to ties, so "mass reaches p" and "dropping
  the smallest member falls below p" (minimality) are both enforced by the interval.

Temperature is applied first unless ``order`` names a ``"temperature"`` stage: llama.cpp's default chain
(:data:`parity.sampling.LLAMACPP_ORDER`) runs top-k, top-p and min-p on the unscaled logits and divides by the
temperature last, so its top-p mass and min-p ratio are those of ``softmax(logits)``, not of
``softmax(logits / T)``; the kept set is still an upper set of ``z`` (a positive temperature does not reorder),
so only the count interval changes.

Temperature 0 is greedy: exactly one token (or several exactly tied ones) with the maximal logit, compared
without tolerance because greedy needs no arithmetic.

Tolerances (every one derived from float32 rounding, unit roundoff ``u = 2**-24``):

* :data:`TIE_ULPS` = 16: a float32 implementation computes ``x / T`` (1 rounding), ``z - z_max`` (1), ``exp``
  (<= 2 ulp in common libms), normalisation (1), maybe a ``log`` (1): the log-probability of a token is off by at
  most ~6u relative to ``|z| + |z_max|``; two tokens compared double it; 16 leaves headroom. Near-ties within
  ``16 u (|z_i| + |z_j| + 2 |z_max| + 1)`` may be ordered either way.
* :data:`SUM_ULPS` = 16 plus ``n``: the renormalised prefix mass of a float32 implementation is a sum of ``n``
  rounded probabilities; the classical a-priori bound for recursive summation of non-negative terms with total 1
  is ``(n - 1) u``; the softmax adds a few ulps. So ``mass_tolerance(n) = (n + 16) u``. It is the honest worst
  case of a sequential float32 cumsum (tiny tail probabilities below half an ulp of the running sum are lost);
  at n = 12000 it is 7.2e-4, at n = 128256 it is 7.6e-3, so at top_p = 0.999 and large vocabularies minimality
  cannot be told from float32 noise by the kept set alone; order, argmax survival and top-k stay exact there.

>>> import numpy as np
>>> b = row_bounds(np.array([3.0, 1.0, 2.0, 0.0]), temperature=1.0, top_k=0, top_p=0.9, min_p=0.0)
>>> (b.lo, b.hi)
(3, 3)
>>> b.violations(np.array([True, False, True, False]))
['kept 2 tokens; a correct implementation keeps 3 tokens: the 3 highest by logit [0, 2, 1]']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from parity.sampling import DEFAULT_ORDER, FILTERS

__all__ = [
    "FILTER_STAGES",
    "SUM_ULPS",
    "TIE_ULPS",
    "UNIT_ROUNDOFF",
    "RowBounds",
    "mass_tolerance",
    "row_bounds",
    "tie_tolerance",
]

#: float32 unit roundoff.
UNIT_ROUNDOFF = 2.0**-24
#: Near-ties of scaled logits within this many ulps (relative to the magnitudes involved) may be ordered either way.
TIE_ULPS = 16
#: Ulps added to the summation bound of the prefix mass for the softmax itself.
SUM_ULPS = 16

#: The stages an order permutes; ``"temperature"`` may also appear once (absent means first).
FILTER_STAGES: tuple[str, ...] = FILTERS


def tie_tolerance(a: float, b: float, z_max: float) -> float:
    """How far apart two scaled logits ``a`` and ``b`` may be and still be ordered either way by float32 code.

    >>> tie_tolerance(1.0, 1.0, 1.0) < 1e-5
    True
    """
    return TIE_ULPS * UNIT_ROUNDOFF * (abs(a) + abs(b) + 2.0 * abs(z_max) + 1.0)


def mass_tolerance(n: int) -> float:
    """How far a float32 implementation's renormalised prefix mass over ``n`` tokens may be from the exact one.

    >>> round(mass_tolerance(12000), 6)
    0.000716
    """
    return (n + SUM_ULPS) * UNIT_ROUNDOFF


@dataclass(frozen=True)
class RowBounds:
    """What a correct implementation may keep of one row: order, argmax and the count interval ``[lo, hi]``."""

    z: NDArray[np.float64]
    ranked: NDArray[np.int64]
    lo: int
    hi: int
    greedy: bool
    reasons: tuple[str, ...]

    @property
    def z_max(self) -> float:
        return float(self.z[self.ranked[0]])

    def may_keep(self) -> NDArray[np.bool_]:
        """Tokens some correct implementation keeps: everything ranked above ``hi`` plus its near-ties."""
        mask = np.zeros(self.z.shape, dtype=bool)
        if self.greedy:
            mask[self.z == self.z_max] = True
            return mask
        last = float(self.z[self.ranked[self.hi - 1]])
        finite = np.isfinite(self.z)
        band = np.array([tie_tolerance(last, float(v), self.z_max) if np.isfinite(v) else 0.0 for v in self.z])
        mask[finite & (self.z >= last - band)] = True
        return mask

    def must_keep(self) -> NDArray[np.bool_]:
        """Tokens every correct implementation keeps: those that outrank position ``lo`` beyond the tolerance."""
        mask = np.zeros(self.z.shape, dtype=bool)
        if self.lo >= len(self.ranked):
            mask[self.ranked] = True
            return mask
        nxt = float(self.z[self.ranked[self.lo]])
        for i in self.ranked[: self.lo]:
            if self.z[i] > nxt + (0.0 if self.greedy else tie_tolerance(float(self.z[i]), nxt, self.z_max)):
                mask[i] = True
        return mask

    def describe_expected(self) -> str:
        """What a correct implementation keeps, in words."""
        count = (
            f"{self.lo} token{'' if self.lo == 1 else 's'}" if self.lo == self.hi else f"{self.lo} to {self.hi} tokens"
        )
        return f"keeps {count}: the {self.lo} highest by logit {_listing(self.ranked, self.lo)}"

    def violations(self, kept: NDArray[np.bool_]) -> list[str]:
        """Everything wrong with the kept set ``kept`` (a bool vector), as messages; empty when it is correct."""
        z = self.z
        finite = np.isfinite(z)
        problems: list[str] = []
        bad = np.flatnonzero(kept & ~finite)
        if bad.size:
            problems.append(f"kept token {int(bad[0])} whose logit is -inf ({bad.size} such tokens)")
        kept = kept & finite
        n = int(kept.sum())
        top = int(self.ranked[0])
        if n == 0:
            problems.append(f"removed every token, the argmax (index {top}) included")
            return problems
        z_max = self.z_max
        near_top = z >= z_max if self.greedy else z >= z_max - tie_tolerance(z_max, z_max, z_max)
        if not (kept & near_top).any():
            problems.append(f"removed the argmax (index {top}, scaled logit {z_max:.7g})")
        kept_idx = np.flatnonzero(kept)
        lowest_kept = int(kept_idx[np.argmin(z[kept_idx])])
        dropped = np.flatnonzero(finite & ~kept)
        if dropped.size:
            highest_dropped = int(dropped[np.argmax(z[dropped])])
            a, b = float(z[lowest_kept]), float(z[highest_dropped])
            slack = 0.0 if self.greedy else tie_tolerance(a, b, z_max)
            if b > a + slack:
                problems.append(
                    f"kept token {lowest_kept} (scaled logit {a:.7g}) but removed token {highest_dropped} "
                    f"with a higher one ({b:.7g})"
                )
        if not self.lo <= n <= self.hi:
            problems.append(
                f"kept {n} token{'' if n == 1 else 's'}; a correct implementation {self.describe_expected()}"
            )
        return problems


def _listing(ranked: NDArray[np.int64], count: int) -> str:
    shown = ", ".join(str(int(i)) for i in ranked[: min(count, 8)])
    return f"[{shown}{', ...' if count > 8 else ''}]"


def _tie_end(zs: NDArray[np.float64], count: int, z_max: float) -> int:
    """Extend a prefix of ``count`` sorted tokens over the near-ties of its last member."""
    n = len(zs)
    while 0 < count < n and zs[count] >= zs[count - 1] - tie_tolerance(float(zs[count]), float(zs[count - 1]), z_max):
        count += 1
    return count


def row_bounds(
    logits: NDArray[np.floating] | Sequence[float],
    *,
    temperature: float,
    top_k: int,
    top_p: float,
    min_p: float,
    order: Sequence[str] = DEFAULT_ORDER,
) -> RowBounds:
    """The :class:`RowBounds` of one legal row (finite or ``-inf`` values, at least one finite)."""
    x = np.asarray(logits, dtype=np.float64)
    finite = np.isfinite(x)
    greedy = temperature == 0.0
    z = x.copy() if greedy else x / float(temperature)
    z[~finite] = -np.inf
    ranked = np.flatnonzero(finite)[np.argsort(-z[finite], kind="stable")].astype(np.int64)
    zs = z[ranked]
    n = len(ranked)
    z_max = float(zs[0])
    if greedy:
        ties = int((zs == z_max).sum())
        return RowBounds(z, ranked, 1, ties, True, ("temperature 0: greedy",))
    stages = tuple(order)
    temperature_at = stages.index("temperature") if "temperature" in stages else -1
    cumulatives: dict[float, NDArray[np.float64]] = {}
    lo, hi = n, n
    reasons: list[str] = []
    for position, stage in enumerate(stages):
        # A stage before the temperature sees x = z * T: its masses and log-ratios are in units of x.
        unit = float(temperature) if position < temperature_at else 1.0
        if stage == "top_k" and top_k > 0:
            lo, hi = min(lo, top_k), min(hi, _tie_end(zs, min(top_k, n), z_max))
            reasons.append(f"top_k={top_k}")
        elif stage == "top_p" and top_p < 1.0:
            if unit not in cumulatives:
                cumulatives[unit] = np.cumsum(np.exp((zs - z_max) * unit))
            cumulative = cumulatives[unit]
            lo = _prefix_reaching(cumulative, lo, top_p - mass_tolerance(lo))
            hi = min(hi, _tie_end(zs, _prefix_reaching(cumulative, hi, top_p + mass_tolerance(hi)), z_max))
            reasons.append(f"top_p={top_p}" + (" (before temperature)" if unit != 1.0 else ""))
        elif stage == "min_p" and min_p > 0.0:
            cut = z_max + math.log(min_p) / unit
            slack = tie_tolerance(cut * unit, z_max * unit, z_max * unit) / unit
            lo = min(lo, int((zs >= cut + slack).sum()))
            hi = min(hi, _tie_end(zs, int((zs >= cut - slack).sum()), z_max))
            reasons.append(f"min_p={min_p}" + (" (before temperature)" if unit != 1.0 else ""))
        else:
            continue
        lo, hi = max(lo, 1), max(hi, 1)
    return RowBounds(z, ranked, lo, max(hi, lo), False, tuple(reasons))


def _prefix_reaching(cumulative: NDArray[np.float64], within: int, fraction: float) -> int:
    """Shortest prefix of the first ``within`` sorted tokens whose mass reaches ``fraction`` of their total."""
    if fraction >= 1.0:
        return within
    target = fraction * cumulative[within - 1]
    return min(int(np.searchsorted(cumulative[:within], target, side="left")) + 1, within)
