"""The top-p boundary decision: one exact definition, and the guarded fast decision both backends share.

Definition (the *canonical* decision, the one every backend reproduces): for the survivors ``S`` of one row,
sorted by scaled logit ``z`` in decreasing order and grouped into levels of exactly equal ``z``, the weights are
the float64 numbers ``w_i = math.exp(z_i - z_max)``; the kept set is the shortest run of whole levels whose
weight sum reaches ``top_p`` times the weight sum of ``S``. The sums and the comparison are done in exact
integer arithmetic (every float64 is an integer multiple of ``2**-1074``), so the decision does not depend on
summation order, vectorisation, thread count or hardware.

The fast paths (numpy and torch) compute the same sums in float64 with a bounded error and decide directly when
every level's prefix mass is farther than :func:`mass_guard` from the target; otherwise the row goes to
:func:`canonical_topp_level`. So both backends give exactly the canonical kept set.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from itertools import accumulate

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "DENSE_CANDIDATES",
    "HIST_BUCKETS",
    "HIST_SCALE",
    "boundary_levels",
    "canonical_topp_level",
    "hist_buckets",
    "level_from_candidates",
    "mass_guard",
]

#: Buckets of the log-probability histogram the fast top-p search uses to find its few candidates.
HIST_BUCKETS = 1024
#: Buckets per nat of log-probability: bucket ``floor(-(z - z_max) * HIST_SCALE)``, the last one open-ended, so the
#: histogram spans log-probabilities down to ``-HIST_BUCKETS / HIST_SCALE = -32`` nats.
HIST_SCALE = 32.0
#: Rows with at most this many boundary candidates are decided together in one padded [B, n] array; rows with more
#: (nearly flat rows) are decided one by one, so the padded array never grows with the vocabulary.
DENSE_CANDIDATES = 2048
#: float64 unit roundoff.
_U = 2.0**-53
#: Every float64 in [0, 1] times 2**1074 is an integer.
_SHIFT = 1074


def hist_buckets(v: int) -> int:
    """Histogram buckets for a vocabulary of ``v``: about one per 8 tokens, at most :data:`HIST_BUCKETS`.

    Any monotone bucketing is correct (only the boundary bucket's tokens are sorted); small vocabularies get
    few buckets so the per-row histogram never outgrows the row.

    >>> hist_buckets(12), hist_buckets(128256)
    (1, 1024)
    """
    return max(1, min(HIST_BUCKETS, v // 8))


def mass_guard(n: int) -> float:
    """Relative half-width of the band in which a float64 fast path defers to the canonical decision.

    A fast path's prefix mass differs from the exact sum of the canonical weights by at most: ``exp`` error
    (a few ulps per term, numpy and torch both document <= 4 ulp), a float64 sum of at most ``n + HIST_BUCKETS``
    non-negative terms in any order (the a-priori bound ``(n - 1) u`` of recursive summation) and one rounding
    for ``top_p * total``. ``4 (n + HIST_BUCKETS + 64) u + 2**-40`` bounds all of them with room to spare
    (2.9e-11 relative at n = 128256); the 2**-40 floor keeps the band wide enough to be safe on odd libms.

    >>> mass_guard(128256) < 1e-10
    True
    """
    return 4.0 * (n + HIST_BUCKETS + 64) * _U + 2.0**-40


def _weight_ints(d: list[float]) -> list[int]:
    """``math.exp(v)`` for each ``v <= 0`` as an exact integer multiple of ``2**-1074``."""
    out = []
    for v in d:
        num, den = math.exp(v).as_integer_ratio()
        out.append(num << (_SHIFT + 1 - den.bit_length()))
    return out


def canonical_topp_level(z: NDArray[np.float64], survivors: NDArray[np.bool_], top_p: float) -> float:
    """The ``z`` value of the last kept level of top-p over ``z[survivors]``, decided in exact arithmetic.

    Keeps whole levels (all tokens tied with the boundary token survive). Cost O(n log n) plus a Python loop over
    the survivors, so the fast paths call it only for rows within the guard band.

    >>> z = np.log(np.array([0.5, 0.3, 0.1, 0.1]))
    >>> round(float(np.exp(canonical_topp_level(z, np.ones(4, dtype=bool), 0.7))), 6)  # 0.5 + 0.3 reaches 0.7
    0.3
    >>> round(float(np.exp(canonical_topp_level(z, np.ones(4, dtype=bool), 0.85))), 6)  # the tie is kept whole
    0.1
    """
    zs = np.sort(z[survivors])[::-1]
    d = (zs - zs[0]).tolist()
    ints = _weight_ints(d)
    prefix = list(accumulate(ints))
    ends = np.append(np.flatnonzero(zs[1:] != zs[:-1]), zs.size - 1)
    p_num, p_den = float(top_p).as_integer_ratio()
    need = p_num * prefix[-1]
    reached = [prefix[int(e)] * p_den >= need for e in ends]
    j = bisect_left(reached, True)
    return float(zs[int(ends[min(j, len(ends) - 1)])])


def level_from_candidates(
    zc: NDArray[np.float64], wc: NDArray[np.float64], above: float, target: float, guard: float
) -> float | None:
    """The boundary level among candidates ``zc`` (weights ``wc``) after mass ``above``, or None if too close.

    ``above`` is the mass of every survivor ranked above all candidates; ``target = top_p * total``. Returns
    None when some level's prefix mass lies within ``guard`` of the target (the caller then uses
    :func:`canonical_topp_level`) or when the candidates do not reach the target.

    >>> level_from_candidates(np.array([0.0, -1.0, -1.0]), np.array([0.5, 0.2, 0.2]), 0.1, 0.7, 1e-9)
    -1.0
    """
    if zc.size == 0:
        return None
    order = np.argsort(zc, kind="stable")[::-1]
    zs = zc[order]
    cum = above + np.cumsum(wc[order])
    ends = np.append(np.flatnonzero(zs[1:] != zs[:-1]), zs.size - 1)
    at_ends = cum[ends]
    reached = at_ends >= target
    if bool(np.any(np.abs(at_ends - target) <= guard)) or not bool(reached.any()):
        return None
    return float(zs[ends[int(np.argmax(reached))]])


def boundary_levels(
    rows: NDArray[np.intp],
    zc: NDArray[np.float64],
    wc: NDArray[np.float64],
    above: NDArray[np.float64],
    target: NDArray[np.float64],
    guard: NDArray[np.float64],
) -> NDArray[np.float64]:
    """:func:`level_from_candidates` for a whole batch at once; NaN where the row needs the canonical decision.

    ``rows`` (non-decreasing) gives each candidate's row; ``above``, ``target`` and ``guard`` are per row. Rows
    with at most :data:`DENSE_CANDIDATES` candidates are sorted and summed in one padded array (each row's
    cumulative sum stays row-local and sequential); larger rows go through :func:`level_from_candidates`.

    >>> boundary_levels(np.array([0, 0, 1]), np.array([0.0, -1.0, 0.0]), np.array([0.6, 0.4, 1.0]),
    ...                 np.zeros(2), np.array([0.5, 0.5]), np.full(2, 1e-9)).tolist()
    [0.0, 0.0]
    """
    b = above.shape[0]
    out = np.full(b, np.nan)
    counts = np.bincount(rows, minlength=b)
    starts = np.concatenate(([0], np.cumsum(counts)))
    dense_rows = (counts > 0) & (counts <= DENSE_CANDIDATES)
    for r in np.flatnonzero(counts > DENSE_CANDIDATES):
        sl = slice(int(starts[r]), int(starts[r + 1]))
        level = level_from_candidates(zc[sl], wc[sl], float(above[r]), float(target[r]), float(guard[r]))
        out[r] = np.nan if level is None else level
    if not dense_rows.any():
        return out
    sel = dense_rows[rows]
    rows_d, zc_d, wc_d = rows[sel], zc[sel], wc[sel]
    width = int(counts[dense_rows].max())
    pos = np.arange(rows_d.size) - np.concatenate(([0], np.cumsum(counts * dense_rows)))[rows_d]
    zd = np.full((b, width), -np.inf)
    wd = np.zeros((b, width))
    zd[rows_d, pos] = zc_d
    wd[rows_d, pos] = wc_d
    order = np.argsort(-zd, axis=1, kind="stable")
    zs = np.take_along_axis(zd, order, axis=1)
    cum = above[:, None] + np.cumsum(np.take_along_axis(wd, order, axis=1), axis=1)
    end = np.ones((b, width), dtype=bool)
    end[:, :-1] = zs[:, 1:] != zs[:, :-1]
    end &= np.arange(width)[None, :] < counts[:, None]
    close = (end & (np.abs(cum - target[:, None]) <= guard[:, None])).any(axis=1)
    reached = end & (cum >= target[:, None])
    first = np.argmax(reached, axis=1)
    ok = dense_rows & ~close & reached.any(axis=1)
    out[ok] = zs[ok, first[ok]]
    return out
