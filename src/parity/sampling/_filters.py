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

from parity._exceptions import InvalidInputError
from parity.sampling._boundary import (
    HIST_SCALE,
    boundary_levels,
    canonical_topp_level,
    hist_buckets,
    mass_guard,
)
from parity.sampling._fastpath import fast_eligible, minp_thresholds, topk_values, topp_thresholds_f32
from parity.sampling._input import as_rows, scale_logits, upcast_rows
from parity.sampling._kernel import COMPILED
from parity.sampling._params import DEFAULT_ORDER, SamplingParams, resolve_params

__all__ = [
    "CHUNK_VALUES",
    "draw_from_kept",
    "fast_kept",
    "fast_thresholds",
    "filter_logits",
    "kept_mask",
    "probabilities",
    "run_chunks",
]

#: Rows are processed in chunks of about this many values, so every float64 temporary stays near 8 MB: reused by
#: the allocator and warm in cache, where fresh 100 MB temporaries cost page faults that dominated the run time.
#: Results do not depend on it: every step is row-local.
CHUNK_VALUES = 1 << 20


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
    out: NDArray[np.bool_] = run_chunks(logits, prm, "mask")
    return out


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
    out: NDArray[np.float64] = run_chunks(logits, prm, "filter")
    return out


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
    out: NDArray[np.float64] = run_chunks(logits, prm, "probs")
    return out


def run_chunks(logits: Any, prm: SamplingParams, mode: str, u: NDArray[np.float64] | None = None) -> NDArray[Any]:
    """Run the pipeline over row chunks; ``mode`` is ``mask``, ``filter``, ``probs`` or ``sample`` (uniforms ``u``).

    Every row is checked before its chunk is processed; the output has the input's shape (``[B]`` or ``()``
    for ``sample``).
    """
    arr, was_1d = as_rows(logits)
    b, v = arr.shape
    out: NDArray[Any]
    if mode == "mask":
        out = np.empty((b, v), dtype=bool)
    elif mode == "sample":
        out = np.empty(b, dtype=np.int64)
    else:
        out = np.empty((b, v), dtype=np.float64)
    fast = fast_eligible(arr.dtype, prm)
    step = max(1, CHUNK_VALUES // v)
    work = np.empty((2, min(b, step), v), dtype=np.float32) if fast and prm.top_p_enabled and not COMPILED else None
    for s in range(0, b, step):
        e = min(b, s + step)
        if fast:  # float32 / float16 / bfloat16: one threshold per row, no float64 pass over the row
            if mode == "mask":
                fast_kept(arr[s:e], prm, s, work, out=out[s:e])
                continue
            keep = fast_kept(arr[s:e], prm, s, work)
            x = np.asarray(arr[s:e], dtype=np.float64)
        else:
            x, x_max = upcast_rows(arr[s:e], s)
        z = scale_logits(x, prm.temperature, s)
        if not fast:
            keep = _kept(x, z, x_max, prm)
        if mode == "mask":
            out[s:e] = keep
        elif mode == "filter":
            np.copyto(out[s:e], -np.inf)
            np.copyto(out[s:e], z, where=keep)
        elif mode == "probs":
            out[s:e] = softmax_kept(z, keep)
        elif u is not None:
            out[s:e] = draw_from_kept(z, keep, u[s:e])
        else:
            raise InvalidInputError("mode", "must be 'mask', 'filter', 'probs' or 'sample' (with uniforms)", mode)
    if was_1d:
        return out.reshape(out.shape[1:]) if mode != "sample" else out.reshape(())
    return out


def fast_kept(
    rows: NDArray[Any],
    prm: SamplingParams,
    first_row: int = 0,
    work: NDArray[np.float32] | None = None,
    out: NDArray[np.bool_] | None = None,
) -> NDArray[np.bool_]:
    """The kept mask of float32 / float16 / bfloat16 ``rows`` by the float32 threshold path (checks the rows);
    ``work`` is the optional scratch of :func:`~parity.sampling._fastpath.topp_thresholds_f32`; ``out``, if
    given, receives the mask (and is returned).

    >>> fast_kept(np.array([[3.0, 1.0, 2.0, -np.inf]], dtype=np.float32), SamplingParams(top_p=0.85)).tolist()
    [[True, False, True, False]]
    """
    x32 = np.asarray(rows, dtype=np.float32)
    m = x32.max(axis=1)
    if not bool(np.isfinite(m).all()):
        upcast_rows(rows, first_row)  # raises, naming the first bad row
    b, v = x32.shape
    kept: NDArray[np.bool_] = np.empty((b, v), dtype=bool) if out is None else out
    if prm.greedy:
        kept[:] = False
        kept[np.arange(b), np.argmax(x32, axis=1)] = True
        return kept
    tx = fast_thresholds(x32, m, prm, work)
    np.greater_equal(x32, tx[:, None], out=kept)
    if bool((tx == -np.inf).any()):
        kept &= x32 > -np.inf
    return kept


def fast_thresholds(
    x32: NDArray[np.float32], m: NDArray[np.float32], prm: SamplingParams, work: NDArray[np.float32] | None = None
) -> NDArray[np.float32]:
    """Per-row float32 thresholds ``tx`` with kept set ``{finite x >= tx}`` (``-inf``: every finite value).

    ``x32`` are checked float32 rows, ``m`` their maxima, ``prm`` not greedy, with a temperature in
    :data:`~parity.sampling._fastpath.FAST_TEMPERATURES`. Rows the float32 bounds cannot decide are decided by
    the float64 path (:func:`_kept`) and turned into a threshold the same way: the smallest kept value.

    >>> x = np.array([[2.0, 1.0, 1.0, 0.0]], dtype=np.float32)
    >>> fast_thresholds(x, x.max(axis=1), SamplingParams(top_k=2)).tolist()
    [1.0]
    """
    b, v = x32.shape
    t = prm.temperature
    tx = np.full(b, -np.inf, dtype=np.float32)
    redo = np.zeros(b, dtype=bool)
    for name in prm.order:
        if name == "top_k" and prm.top_k_enabled and prm.top_k < v:
            tx = np.maximum(tx, topk_values(x32, prm.top_k))
        elif name == "min_p" and prm.min_p_enabled:
            tx = np.maximum(tx, minp_thresholds(m, t, prm.min_p))
        elif name == "top_p" and prm.top_p_enabled:
            tx, again = topp_thresholds_f32(x32, m, tx, prm.top_p, t, work)
            redo |= again
    for r in np.flatnonzero(redo).tolist():
        x = x32[r : r + 1].astype(np.float64)
        keep = _kept(x, scale_logits(x, t, r), x.max(axis=1), prm)[0]
        tx[r] = x32[r][keep].min()
    return tx


def softmax_kept(z: NDArray[np.float64], keep: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Row-wise softmax of ``z`` over ``keep`` (the max-subtracted, log-sum-exp stable form)."""
    zk = np.where(keep, z, -np.inf)
    w = np.exp(zk - zk.max(axis=1, keepdims=True))
    out: NDArray[np.float64] = w / w.sum(axis=1, keepdims=True)
    return out


def _kept(
    x: NDArray[np.float64], z: NDArray[np.float64], x_max: NDArray[np.float64], prm: SamplingParams
) -> NDArray[np.bool_]:
    """The kept mask ``[B, V]`` of checked logits ``x``, scaled ``z`` and the row maxima of ``x``."""
    b, v = z.shape
    if prm.greedy:
        keep = np.zeros((b, v), dtype=bool)
        keep[np.arange(b), np.argmax(x, axis=1)] = True
        return keep
    # max(fl(x_i / T)) == fl(max(x_i) / T): correctly rounded division is monotone
    z_max = x_max if prm.temperature == 1.0 else x_max / prm.temperature
    thr = np.full(b, -np.inf)
    for name in prm.order:
        if name == "top_k" and prm.top_k_enabled and prm.top_k < v:
            thr = np.maximum(thr, np.partition(z, v - prm.top_k, axis=1)[:, v - prm.top_k])
        elif name == "min_p" and prm.min_p_enabled:
            ok = (z - z_max[:, None]) >= math.log(prm.min_p)
            thr = np.maximum(thr, np.where(ok, z, np.inf).min(axis=1))
        elif name == "top_p" and prm.top_p_enabled:
            thr = topp_thresholds(z, z_max, thr, prm.top_p)
    kept: NDArray[np.bool_] = z >= thr[:, None]
    if bool((thr == -np.inf).any()):
        kept &= z > -np.inf
    return kept


def topp_thresholds(
    z: NDArray[np.float64], z_max: NDArray[np.float64], thr: NDArray[np.float64], top_p: float
) -> NDArray[np.float64]:
    """Raise each row's threshold ``thr`` to its top-p boundary level over the survivors ``z >= thr``."""
    b, v = z.shape
    d = z - z_max[:, None]
    if bool(np.any(thr > -np.inf)):
        d[z < thr[:, None]] = -np.inf  # non-survivors weigh nothing and land in the last bucket
    w = np.exp(d)
    total = w.sum(axis=1)
    last = hist_buckets(v)  # the open-ended last bucket
    nb = last + 1
    keyf = np.multiply(d, -HIST_SCALE)
    np.minimum(keyf, last, out=keyf)
    key = keyf.astype(np.intp)
    offsets = np.arange(b, dtype=np.intp) * nb
    key += offsets[:, None]  # row r's buckets are r * nb ... r * nb + last
    mass = np.bincount(key.ravel(), weights=w.ravel(), minlength=b * nb).reshape(b, nb)
    cum = np.cumsum(mass, axis=1)
    target = top_p * total
    guard = mass_guard(v) * total
    lo = (cum < (target - guard)[:, None]).sum(axis=1)
    hi = np.minimum((cum < (target + guard)[:, None]).sum(axis=1), last)
    above = np.where(lo > 0, np.take_along_axis(cum, np.maximum(lo - 1, 0)[:, None], axis=1)[:, 0], 0.0)
    cand = key >= (lo + offsets)[:, None]
    cand &= key <= (hi + offsets)[:, None]
    rows, cols = np.nonzero(cand)
    live = d[rows, cols] > -np.inf  # -inf logits and non-survivors are never boundary candidates
    rows, cols = rows[live], cols[live]
    levels = boundary_levels(rows, z[rows, cols], w[rows, cols], above, target, guard)
    for r in np.flatnonzero(np.isnan(levels)):  # within the float64 error band: the exact decision
        levels[r] = canonical_topp_level(z[r], np.isfinite(z[r]) & (z[r] >= thr[r]), top_p)
    out: NDArray[np.float64] = np.maximum(thr, levels)
    return out


def draw_from_kept(z: NDArray[np.float64], keep: NDArray[np.bool_], u: NDArray[np.float64]) -> NDArray[np.int64]:
    """Inverse-CDF draw per row over the kept tokens; every step is row-local (a sequential cumsum per row)."""
    zk = np.where(keep, z, -np.inf)
    cum = np.cumsum(np.exp(zk - zk.max(axis=1, keepdims=True)), axis=1)
    t = u * cum[:, -1]
    idx = (cum <= t[:, None]).sum(axis=1)
    last_kept = z.shape[1] - 1 - np.argmax(keep[:, ::-1], axis=1)
    tokens: NDArray[np.int64] = np.minimum(idx, last_kept).astype(np.int64)  # u * total rounded up: last kept
    return tokens
