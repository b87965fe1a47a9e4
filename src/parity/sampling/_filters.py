"""The fast numpy reference: kept sets by per-row thresholds, with no full sort of the vocabulary.

Every filter keeps an upper set of the scaled logits ``z``, so the kept set of a row is ``{i: z_i >= t}`` (finite
``z_i`` only) for one threshold ``t`` that the stages raise in turn:

* top-k: ``t = max(t, k-th largest z)`` by ``np.partition`` (O(V));
* min-p: ``t = max(t, smallest z with z - z_max >= log(min_p))`` (O(V));
* top-p: a weighted histogram of the log-probabilities ``z - z_max`` (one ``np.bincount`` over the batch) finds
  the bucket where the cumulative mass crosses ``top_p``; only that bucket's tokens are sorted, and the boundary
  level is decided by :func:`~parity.sampling._boundary.level_from_candidates` unless it lies within the float64
  error band, where the exact :func:`~parity.sampling._boundary.canonical_topp_level` decides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from parity.sampling._boundary import (
    HIST_SCALE,
    boundary_levels,
    canonical_topp_level,
    hist_buckets,
    mass_guard,
)
from parity.sampling._input import as_logits, scale_logits
from parity.sampling._params import DEFAULT_ORDER, SamplingParams, resolve_params

__all__ = ["filter_logits", "kept_mask", "probabilities"]


def kept_mask(
    logits: Any,
    params: SamplingParams | None = None,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    order: Sequence[str] = DEFAULT_ORDER,
) -> NDArray[np.bool_]:
    """Which tokens survive temperature, top-k, top-p and min-p (in ``order``); same shape as ``logits``.

    >>> kept_mask([3.0, 1.0, 2.0, 0.0], top_p=0.85).tolist()
    [True, False, True, False]
    >>> kept_mask([[0.0, 5.0, 5.0]], temperature=0.0).tolist()  # greedy: the lowest index among exact ties
    [[False, True, False]]
    """
    prm = resolve_params(params, temperature, top_k, top_p, min_p, order)
    x, was_1d = as_logits(logits)
    z = scale_logits(x, prm.temperature)
    keep = _kept(x, z, prm)
    return keep[0] if was_1d else keep


def filter_logits(
    logits: Any,
    params: SamplingParams | None = None,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    order: Sequence[str] = DEFAULT_ORDER,
) -> NDArray[np.float64]:
    """``logits / temperature`` in float64 with every removed token at ``-inf`` (greedy: the logits unscaled).

    >>> filter_logits([2.0, 1.0, 0.0], temperature=0.5, top_k=2).tolist()
    [4.0, 2.0, -inf]
    """
    prm = resolve_params(params, temperature, top_k, top_p, min_p, order)
    x, was_1d = as_logits(logits)
    z = scale_logits(x, prm.temperature)
    out = np.where(_kept(x, z, prm), z, -np.inf)
    return out[0] if was_1d else out


def probabilities(
    logits: Any,
    params: SamplingParams | None = None,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    order: Sequence[str] = DEFAULT_ORDER,
) -> NDArray[np.float64]:
    """The exact sampling distribution: softmax over the kept tokens (float64, stable), zero elsewhere.

    >>> probabilities([0.0, 0.0, -np.inf], top_p=0.5).tolist()  # the tie at the boundary is kept whole
    [0.5, 0.5, 0.0]
    """
    prm = resolve_params(params, temperature, top_k, top_p, min_p, order)
    x, was_1d = as_logits(logits)
    z = scale_logits(x, prm.temperature)
    out = softmax_kept(z, _kept(x, z, prm))
    return out[0] if was_1d else out


def softmax_kept(z: NDArray[np.float64], keep: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Row-wise softmax of ``z`` over ``keep`` (the max-subtracted, log-sum-exp stable form)."""
    zk = np.where(keep, z, -np.inf)
    w = np.exp(zk - zk.max(axis=1, keepdims=True))
    out: NDArray[np.float64] = w / w.sum(axis=1, keepdims=True)
    return out


def _kept(x: NDArray[np.float64], z: NDArray[np.float64], prm: SamplingParams) -> NDArray[np.bool_]:
    """The kept mask ``[B, V]`` of checked, scaled logits."""
    b, v = z.shape
    if prm.greedy:
        keep = np.zeros((b, v), dtype=bool)
        keep[np.arange(b), np.argmax(x, axis=1)] = True
        return keep
    z_max = z.max(axis=1)
    thr = np.full(b, -np.inf)
    for name in prm.order:
        if name == "top_k" and prm.top_k_enabled and prm.top_k < v:
            thr = np.maximum(thr, np.partition(z, v - prm.top_k, axis=1)[:, v - prm.top_k])
        elif name == "min_p" and prm.min_p_enabled:
            ok = (z - z_max[:, None]) >= math.log(prm.min_p)
            thr = np.maximum(thr, np.where(ok, z, np.inf).min(axis=1))
        elif name == "top_p" and prm.top_p_enabled:
            thr = topp_thresholds(z, z_max, thr, prm.top_p)
    kept: NDArray[np.bool_] = np.isfinite(z) & (z >= thr[:, None])
    return kept


def topp_thresholds(
    z: NDArray[np.float64], z_max: NDArray[np.float64], thr: NDArray[np.float64], top_p: float
) -> NDArray[np.float64]:
    """Raise each row's threshold ``thr`` to its top-p boundary level over the survivors ``z >= thr``."""
    b, v = z.shape
    d = z - z_max[:, None]
    if bool(np.any(thr > -np.inf)):
        d = np.where(z >= thr[:, None], d, -np.inf)  # non-survivors weigh nothing and land in the last bucket
    w = np.exp(d)
    total = w.sum(axis=1)
    last = hist_buckets(v)  # the open-ended last bucket
    nb = last + 1
    key = np.minimum(d * -HIST_SCALE, last).astype(np.intp)
    flat = (key + (np.arange(b, dtype=np.intp) * nb)[:, None]).ravel()
    mass = np.bincount(flat, weights=w.ravel(), minlength=b * nb).reshape(b, nb)
    cum = np.cumsum(mass, axis=1)
    target = top_p * total
    guard = mass_guard(v) * total
    lo = (cum < (target - guard)[:, None]).sum(axis=1)
    hi = np.minimum((cum < (target + guard)[:, None]).sum(axis=1), last)
    above = np.where(lo > 0, np.take_along_axis(cum, np.maximum(lo - 1, 0)[:, None], axis=1)[:, 0], 0.0)
    rows, cols = np.nonzero((key >= lo[:, None]) & (key <= hi[:, None]) & (d > -np.inf))
    levels = boundary_levels(rows, z[rows, cols], w[rows, cols], above, target, guard)
    for r in np.flatnonzero(np.isnan(levels)):  # within the float64 error band: the exact decision
        levels[r] = canonical_topp_level(z[r], np.isfinite(z[r]) & (z[r] >= thr[r]), top_p)
    out: NDArray[np.float64] = np.maximum(thr, levels)
    return out
