"""The float32 fast path: exact kept sets of float32 / float16 / bfloat16 logits as one threshold per row.

For these inputs the float64 upcast is exact and, for a temperature ``T`` in :data:`FAST_TEMPERATURES`, the
map ``x -> fl64(x / T)`` is *strictly* increasing on the input's values (no two float32 values collide in
float64 and nothing overflows or goes subnormal). Every filter keeps an upper set of ``z``, so every kept set is
``{x >= tx}`` (finite ``x``) for one float32 threshold ``tx`` per row, found without any float64 pass over
the row:

* top-k: a strided subsample gives a value ``c`` with at least ``k`` tokens above it (checked by counting);
  the k-th largest of those few is the k-th largest of the row (the whole row is partitioned if the check
  fails);
* min-p: the reference's own float64 predicate ``fl(x / T) - z_max >= log(min_p)`` is monotone in ``x``,
  so its threshold is the smallest float32 that satisfies it: found near ``x_max + T log(min_p)`` by stepping
  through float32 values, the row itself is not read;
* top-p: one float32 pass gives ``w = exp((x - x_max) / T)``, the row's mass (summed in float64) and
  ``sum w |d|`` (for the error bound); a subsample picks a low cut ``x_lo`` under which the estimated mass is
  :data:`CUT_TAIL` of ``1 - top_p``; only the tokens above the cut get float64 weights (the reference's own
  computation), a histogram of their log-probabilities finds the boundary bucket and
  :func:`~parity.sampling._boundary.boundary_levels` decides it. The mass under the cut enters only through
  the total, with the error bound :func:`tail_error`; a row whose decision lies within the bound, or whose cut
  was too high, is marked for the float64 path (``redo``), which is exact by construction. Where numba is
  installed, rows with many survivors take the compiled kernel (:mod:`parity.sampling._kernel`): the same
  decision with the same error bound, in fused passes over one row at a time with its own vectorised ``exp``.

So the kept sets are those of the float64 reference (the tests check it against the plain definition); only
the speed depends on the data.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from parity.sampling._boundary import HIST_SCALE, boundary_levels, hist_buckets, mass_guard
from parity.sampling._kernel import COMPILED, topp_rows
from parity.sampling._params import SamplingParams

__all__ = [
    "CUT_TAIL",
    "EXP32_ULPS",
    "FAST_TEMPERATURES",
    "SUBSAMPLE",
    "fast_dtype",
    "fast_eligible",
    "greedy_thresholds",
    "minp_thresholds",
    "tail_error",
    "topk_values",
    "topp_thresholds_f32",
]

#: Temperatures for which ``x -> fl64(x / T)`` is strictly increasing on float32 values: ``|x| <= 2**128``
#: divided by ``T >= 2**-64`` stays below ``2**192`` (no overflow), and the smallest float32 gap ``2**-149``
#: divided by ``T <= 2**64`` stays a normal float64 (no collision). 0 (greedy) and 1 are included.
FAST_TEMPERATURES = (2.0**-64, 2.0**64)
#: Error of the float32 ``exp`` of numpy and torch, in units in the last place: numpy documents its SIMD float32
#: ``exp`` within 2.52 ulp, torch's Sleef ``expf_u10`` within 1 ulp; 4 leaves room (tests/sampling checks the
#: installed ``exp`` against float64 over the whole range used here).
EXP32_ULPS = 4
#: Subsample size per row for the cut estimates (a strided view, sorted: 1024 values cost little next to one pass).
SUBSAMPLE = 1024
#: The cut sits where the subsample estimates this fraction of the top-p tail (``1 - top_p``) below it: the
#: estimate's noise must not push the cut above the boundary (the row would take the float64 path), and every
#: token above the cut gets float64 work.
CUT_TAIL = 0.75
#: float32 unit roundoff.
_U32 = 2.0**-24
#: Below this float32 ``exp`` is subnormal or zero: every such weight is off by at most a few ``2**-149``.
_TINY = 2.0**-140


def fast_dtype(dtype: object) -> bool:
    """Whether ``dtype`` is float32, float16 or bfloat16 (exactly representable in float32).

    >>> fast_dtype(np.dtype(np.float32)), fast_dtype(np.dtype(np.float64))
    (True, False)
    """
    name = getattr(dtype, "name", str(dtype)).removeprefix("torch.")
    return name in ("float32", "float16", "bfloat16")


def fast_eligible(dtype: object, prm: SamplingParams) -> bool:
    """Whether the float32 threshold path gives the reference's kept sets for this dtype and temperature.

    >>> fast_eligible(np.dtype(np.float32), SamplingParams(temperature=0.7, top_p=0.9))
    True
    >>> fast_eligible(np.dtype(np.float32), SamplingParams(temperature=1e-30))
    False
    """
    t = prm.temperature
    return fast_dtype(dtype) and (t in (0.0, 1.0) or FAST_TEMPERATURES[0] <= t <= FAST_TEMPERATURES[1])


def greedy_thresholds(x: NDArray[np.float32]) -> NDArray[np.intp]:
    """The greedy token of each row: the lowest index among exactly tied maxima (as on the float64 upcast)."""
    out: NDArray[np.intp] = np.argmax(x, axis=1)
    return out


def topk_values(x: NDArray[np.float32], k: int) -> NDArray[np.float32]:
    """The k-th largest value of each row (``-inf`` when fewer than ``k`` are finite), with ``0 < k < V``.

    >>> topk_values(np.array([[3.0, 1.0, 2.0, 2.0]], dtype=np.float32), 2).tolist()
    [2.0]
    """
    b, v = x.shape
    if 4 * k >= v:
        full: NDArray[np.float32] = np.partition(x, v - k, axis=1)[:, v - k]
        return full
    out = np.empty(b, dtype=np.float32)
    step = max(1, v // SUBSAMPLE)
    for r in range(b):
        xr = x[r]
        sub = np.sort(xr[::step])
        c = sub[sub.size - 1 - min(sub.size - 1, 2 * (k // step) + 16)]
        cand = xr[xr >= c] if c > -np.inf else xr
        if cand.size < k:  # the subsample misled: the whole row
            cand = xr
        out[r] = np.partition(cand, cand.size - k)[cand.size - k]
    return out


def _next32(v: np.float32, up: bool) -> np.float32:
    out: np.float32 = np.nextafter(v, np.float32(np.inf if up else -np.inf))
    return out


def minp_thresholds(m: NDArray[np.float32], temperature: float, min_p: float) -> NDArray[np.float32]:
    """The smallest float32 ``x`` with ``fl(x / T) - fl(x_max / T) >= log(min_p)`` (the reference's predicate).

    ``m`` holds the finite row maxima; ``-inf`` means every finite value passes.

    >>> t = minp_thresholds(np.array([0.0], dtype=np.float32), 1.0, 0.5)[0]
    >>> float(t) >= math.log(0.5), float(np.nextafter(t, np.float32(-1))) < math.log(0.5)  # the smallest that passes
    (True, True)
    """
    lm = math.log(min_p)
    out = np.empty(m.shape[0], dtype=np.float32)
    lowest = float(np.finfo(np.float32).min)
    for r, mr in enumerate(m.tolist()):
        z_max = mr if temperature == 1.0 else mr / temperature

        def ok(val: float, z_max: float = z_max) -> bool:
            return (val if temperature == 1.0 else val / temperature) - z_max >= lm

        c = mr + temperature * lm
        if ok(lowest):
            out[r] = -np.inf
            continue
        v = np.float32(max(c, lowest))
        steps = 0
        if ok(float(v)):  # step down while the next value down still passes
            while ok(float(w := _next32(v, up=False))) and steps < 64:
                v, steps = w, steps + 1
        else:  # step up to the first value that passes (x_max passes: the loop ends)
            while not ok(float(v)) and steps < 64:
                v, steps = _next32(v, up=True), steps + 1
        if steps >= 64:  # c was far off (it cannot be, by float64 error analysis): bisect on the ordered values
            v = _bisect_minp(ok, np.float32(mr))
        out[r] = v
    return out


def _bisect_minp(ok: object, hi: np.float32) -> np.float32:
    """The smallest float32 passing the monotone predicate ``ok`` (``hi`` passes), by bisection on bit order."""
    assert callable(ok)
    keys = np.array([np.finfo(np.float32).min, hi], dtype=np.float32).view(np.int32).astype(np.int64)
    lo_k, hi_k = (-(keys & 0x7FFFFFFF) if k < 0 else k for k in keys.tolist())
    while hi_k - lo_k > 1:
        mid = (lo_k + hi_k) // 2
        bits = mid if mid >= 0 else (-mid) | 0x80000000
        val = np.array([bits], dtype=np.uint32).view(np.float32)[0]
        if ok(float(val)):
            hi_k = mid
        else:
            lo_k = mid
    bits = hi_k if hi_k >= 0 else (-hi_k) | 0x80000000
    out: np.float32 = np.array([bits], dtype=np.uint32).view(np.float32)[0]
    return out


def tail_error(tail: float, wd_tail: float, n: int, z_max: float) -> float:
    """Bound on ``|sum of float32 weights - sum of the reference's float64 weights|`` over ``n`` tail tokens.

    ``tail`` is the float32 weights' sum, ``wd_tail`` a bound on ``sum w |d|``. Per token: the float32 ``exp``
    (:data:`EXP32_ULPS` ulp, at most ``2**-23`` relative each), the float32 ``d = (x - x_max) / T`` (three
    roundings of ``2**-24 |d|``), the reference's own float64 ``d`` (two roundings relative to
    ``|z|, |z_max| <= |z_max| + 111`` for any weight above ``2**-149``), and ``2**-140`` absolute for
    subnormal and flushed weights; 2% on top covers ``exp(e) - 1 <= 1.01 e`` and the rounding of this sum.

    >>> tail_error(1.0, 5.0, 10, 3.0) < 1e-5
    True
    """
    rel = EXP32_ULPS * 2.0**-23 + 2.0**-51 * (abs(z_max) + 111.0)
    return 1.02 * (rel * tail + 3.01 * _U32 * wd_tail) + n * _TINY


def topp_thresholds_f32(
    x: NDArray[np.float32],
    m: NDArray[np.float32],
    tx: NDArray[np.float32],
    top_p: float,
    temperature: float,
    work: NDArray[np.float32] | None = None,
    compiled: bool | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Raise the thresholds ``tx`` to each row's top-p level over the survivors ``x >= tx``; ``redo`` rows need
    the float64 path (returned as a mask; their thresholds are left unchanged). ``work``, if given, is a float32
    ``[2, >= B, V]`` scratch array reused across calls (fresh large temporaries cost page faults). ``compiled``
    (default: when numba is installed) sends the rows with many survivors to the compiled kernel
    (:func:`~parity.sampling._kernel.topp_rows`, the same decision in fused passes); False keeps the numpy code.

    >>> x = np.log(np.array([[0.5, 0.3, 0.1, 0.1]], dtype=np.float32))
    >>> t, redo = topp_thresholds_f32(x, x.max(axis=1), np.full(1, -np.inf, np.float32), 0.7, 1.0)
    >>> bool(redo[0]), (x[0] >= t[0]).tolist()
    (False, [True, True, False, False])
    """
    if not (COMPILED if compiled is None else compiled):
        return _topp_numpy(x, m, tx, top_p, temperature, work)
    b, v = x.shape
    x = np.ascontiguousarray(x)
    dense = np.ones(b, dtype=bool)
    for r in np.flatnonzero(tx > -np.inf).tolist():  # few survivors: decided on those alone (no pass over the row)
        dense[r] = int(np.count_nonzero(x[r] >= tx[r])) > max(SUBSAMPLE, v // 16)
    rows = np.flatnonzero(dense)
    out_tx, redo = tx.copy(), np.zeros(b, dtype=bool)
    if rows.size:
        k_tx, k_redo = topp_rows(
            x, rows, m, tx, top_p, temperature, guard_rel=mass_guard(v), hist_scale=HIST_SCALE,
            last=hist_buckets(v), exp_rel=EXP32_ULPS * 2.0**-23, u32=_U32, subsample=SUBSAMPLE, cut_tail=CUT_TAIL,
        )  # fmt: skip
        out_tx[rows], redo[rows] = k_tx, k_redo
    sparse = np.flatnonzero(~dense)
    if sparse.size:
        xs = x if sparse.size == b else x[sparse]  # (all sparse, as after top-k: no copy)
        s_tx, s_redo = _topp_numpy(xs, m[sparse], tx[sparse], top_p, temperature, None)
        out_tx[sparse], redo[sparse] = s_tx, s_redo
    return out_tx, redo


def _topp_numpy(
    x: NDArray[np.float32],
    m: NDArray[np.float32],
    tx: NDArray[np.float32],
    top_p: float,
    temperature: float,
    work: NDArray[np.float32] | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """:func:`topp_thresholds_f32` in numpy (vectorised over the batch, one float32 ``exp`` pass).

    >>> x = np.log(np.array([[0.5, 0.3, 0.1, 0.1]], dtype=np.float32))
    >>> t, redo = topp_thresholds_f32(x, x.max(axis=1), np.full(1, -np.inf, np.float32), 0.7, 1.0)
    >>> bool(redo[0]), (x[0] >= t[0]).tolist()
    (False, [True, True, False, False])
    """
    b, v = x.shape
    tx = tx.copy()
    redo = np.zeros(b, dtype=bool)
    z_max = m.astype(np.float64) if temperature == 1.0 else m.astype(np.float64) / temperature
    # rows an earlier filter cut to a few survivors (top-k, min-p) are decided on those alone: no exp pass
    sparse = np.zeros(b, dtype=bool)
    survivors: dict[int, NDArray[np.intp]] = {}
    for r in np.flatnonzero(tx > -np.inf).tolist():
        idx = np.flatnonzero(x[r] >= tx[r])
        if idx.size <= max(SUBSAMPLE, v // 16):
            sparse[r] = True
            survivors[r] = idx
    dense = np.flatnonzero(~sparse)
    # per row: the cut (the head is every survivor at or above it), the tail mass below it and its error bound
    cut = tx.copy()
    if dense.size:
        xd = x if dense.size == b else x[dense]
        n = dense.size
        use = work is not None and work.shape[0] == 2 and work.shape[1] >= n and work.shape[2] == v
        d = np.subtract(xd, m[dense, None], out=work[0, :n] if use and work is not None else None)
        if temperature != 1.0:
            d *= np.float32(1.0 / temperature)
        thr_d = tx[dense]
        if bool((thr_d > -np.inf).any()):
            d[xd < thr_d[:, None]] = -np.inf  # non-survivors weigh nothing
        w = np.exp(d, out=work[1, :n] if use and work is not None else None)
        total32 = w.sum(axis=1, dtype=np.float64)
        # sum w |d| per row, for the error bound: a float32 sum of n non-negative products is within
        # gamma_n = n u / (1 - n u) of the exact one, so the exact one is at most 1 + 4 n u times it (n u <= 1/4)
        # (einsum, not BLAS: no threads; vocabularies past 4M accumulate in float64)
        wd = -np.einsum("ij,ij->i", w, d, dtype=np.float32 if (v + 2) * _U32 <= 0.25 else np.float64)
        for bad in np.flatnonzero(~np.isfinite(wd)).tolist():  # -inf logits: 0 * -inf; their weight is exactly 0
            wd[bad] = -float(np.einsum("i,i->", w[bad], np.where(w[bad] > 0, d[bad], 0)))
        wd_hi = wd * (1.0 + 4.0 * min((v + 2) * _U32, 0.25))  # an upper bound of the exact sum
        # the cut: the largest subsample value with estimated mass below it at most CUT_TAIL of 1 - top_p
        step = max(1, v // SUBSAMPLE)
        xs = xd[:, ::step]
        order = np.argsort(xs, axis=1)
        cw = np.cumsum(np.take_along_axis(w[:, ::step], order, axis=1), axis=1, dtype=np.float64)
        cw *= v / xs.shape[1]
        j = (cw <= (CUT_TAIL * (1.0 - top_p) * total32)[:, None]).sum(axis=1)
        est = np.take_along_axis(xs, order, axis=1)[np.arange(dense.size), np.maximum(j - 1, 0)]
        cut[dense] = np.where(j > 0, np.maximum(thr_d, est), thr_d)
    # per row: the head (survivors at or above the cut) in float64 exactly as the reference computes it, a
    # histogram of its log-probabilities, and the boundary bucket's tokens as candidates
    last = hist_buckets(v)
    nb = last + 1
    pos = {r: i for i, r in enumerate(dense.tolist())}
    above, target, guard = np.zeros(b), np.zeros(b), np.zeros(b)
    c_rows: list[NDArray[np.intp]] = []
    c_x: list[NDArray[np.float64]] = []
    c_w: list[NDArray[np.float64]] = []
    for r in range(b):
        row = x[r]
        t_sum, t_err = 0.0, 0.0
        if r in survivors:
            idx = survivors[r]
        else:
            idx = np.flatnonzero(row >= cut[r]) if cut[r] > -np.inf else np.flatnonzero(row > -np.inf)
        xc = row.take(idx).astype(np.float64)
        dc = (xc if temperature == 1.0 else xc / temperature) - z_max[r]
        wc = np.exp(dc)
        if r in pos:
            i = pos[r]
            t_sum = max(0.0, float(total32[i]) - float(w[i].take(idx).sum(dtype=np.float64)))  # within mass_guard
            # a lower bound of the head's float32 sum of w |d| from its float64 weights: each float32 term is within
            # EXP32_ULPS ulp, 3.01 * 2**-24 |d| and the float64 d's own roundings of them (7 * 2**-24 |d| + slack
            # covers them with room), and a weight below e**-87 may be flushed to 0 in float32, so it counts for nothing
            slack = 2.0**-20 + 2.0**-49 * (abs(float(z_max[r])) + 111.0)  # exp ulps and the reference's own d
            lower = np.where(dc > -87.0, 1.0 - slack + 7.0 * _U32 * dc, 0.0)
            wd_head = -float(np.einsum("i,i,i->", wc, dc, np.maximum(lower, 0.0)))
            t_err = tail_error(t_sum, max(0.0, float(wd_hi[i]) - wd_head), v, float(z_max[r]))
        total = float(wc.sum()) + t_sum
        target[r] = top_p * total
        guard[r] = 2.0 * mass_guard(v) * total + t_err
        key = np.minimum(-dc * HIST_SCALE, last).astype(np.intp)
        cum = np.cumsum(np.bincount(key, weights=wc, minlength=nb))
        lo = int(np.searchsorted(cum, target[r] - guard[r], side="left"))
        hi = min(int(np.searchsorted(cum, target[r] + guard[r], side="left")), last)
        above[r] = float(cum[lo - 1]) if lo > 0 else 0.0
        sel = (key >= lo) & (key <= hi)
        c_rows.append(np.full(int(sel.sum()), r, dtype=np.intp))
        c_x.append(xc[sel])
        c_w.append(wc[sel])
    if b == 0:
        return tx, redo
    levels = boundary_levels(np.concatenate(c_rows), np.concatenate(c_x), np.concatenate(c_w), above, target, guard)
    redo = np.isnan(levels)  # close to the guard, or the cut was too high (the head does not reach the target)
    ok = ~redo
    tx[ok] = np.maximum(tx[ok], levels[ok].astype(np.float32))
    return tx, redo
