"""The compiled code of :mod:`parity.sampling._kernel` (numba; imported on first use, never at package import).

Importing numba costs about a second, so :mod:`parity.sampling` does not: :mod:`parity.sampling._kernel` imports
this module the first time a kernel runs. Without numba the functions stay plain Python (never called then).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np

__all__ = ["CHUNK", "COMPILED", "exp32_fill", "topp_rows"]

_numba: Any
try:  # numba is optional: without it the float32 fast path keeps its numpy code (same kept sets)
    import numba as _numba
    from llvmlite import ir as _ir  # type: ignore[import-untyped]
    from numba.extending import intrinsic as _intrinsic
except ImportError:  # pragma: no cover - exercised where numba is not installed
    _numba = None

#: Whether numba is installed (the functions here are compiled).
COMPILED = _numba is not None
#: Values per chunk of the fused pass: the chunk's float32 weights stay in the L1 cache between its loops.
CHUNK = 2048
#: Log-probability buckets per nat of the subsample's histogram (for the cut) and their number (down to -32).
_SUB_SCALE = 16.0
_SUB_BUCKETS = 512
_F = TypeVar("_F", bound=Callable[..., Any])


def _njit(**kwargs: Any) -> Callable[[_F], _F]:
    """numba's ``njit`` (cached on disk), or the plain function without numba (never called then)."""

    def wrap(fn: _F) -> _F:
        if _numba is None:  # pragma: no cover
            return fn
        return cast(_F, _numba.njit(cache=True, **kwargs)(fn))

    return wrap


def _bits_typer(typingctx: Any, v: Any) -> Any:
    """numba typing of :func:`_f32_from_bits`: the float32 whose bits are the int32 ``v`` (a plain bitcast, which
    the vectoriser keeps)."""
    sig = _numba.types.float32(_numba.types.int32)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], _ir.FloatType())

    return sig, codegen


def _bits_py(v: Any) -> Any:  # pragma: no cover - only without numba
    return np.array([v], dtype=np.int32).view(np.float32)[0]


_f32_from_bits: Any = _intrinsic(_bits_typer) if COMPILED else _bits_py


_f32 = np.float32
#: float32 constants of the polynomial (Cephes expf): ln 2 split in two, and the Taylor-like coefficients.
_LOG2E = _f32(1.44269504088896341)
_C1 = _f32(0.693359375)
_C2 = _f32(-2.12194440e-4)
_P0, _P1, _P2 = _f32(1.9875691500e-4), _f32(1.3981999507e-3), _f32(8.3334519073e-3)
_P3, _P4, _P5 = _f32(4.1665795894e-2), _f32(1.6666665459e-1), _f32(5.0000001201e-1)
_LOW = _f32(-87.0)
_HALF, _ONE, _ZERO, _BIG = _f32(0.5), _f32(1.0), _f32(0.0), _f32(-1e30)


@_njit(inline="always")
def exp32(d: Any) -> Any:
    """``exp(d)`` for a float32 ``d <= 0`` in float32 (0 for ``d <= -87``, NaN-free for ``-inf``)."""
    t = d * _LOG2E
    n = _f32(np.floor(t + _HALF))
    r = d - n * _C1
    r = r - n * _C2
    p = _P0
    p = p * r + _P1
    p = p * r + _P2
    p = p * r + _P3
    p = p * r + _P4
    p = p * r + _P5
    p = p * (r * r) + r + _ONE
    live = d > _LOW
    ni = np.int32(n) if live else np.int32(0)
    s = _f32_from_bits((ni + np.int32(127)) << np.int32(23))
    return p * s if live else _ZERO


@_njit()
def exp32_fill(d: Any, out: Any) -> None:
    """``out[i] = exp32(d[i])`` over two 1-D float32 arrays."""
    for i in range(d.size):
        out[i] = exp32(d[i])


@_njit(inline="always")
def _weights_chunk(xr: Any, c0: int, c1: int, mr: Any, inv: Any, lo: Any, w: Any, wd: Any) -> None:
    """float32 weights of ``xr[c0:c1]`` (0 below ``lo``) and ``w |d|`` (selects only: the loop is vectorised)."""
    for i in range(c0, c1):
        xi = xr[i]
        d = (xi - mr) * inv
        e = exp32(d)
        e = e if xi >= lo else _ZERO
        w[i - c0] = e
        wd[i - c0] = -(e * max(d, _BIG))  # e = 0 wherever d is -inf or below -87


@_njit(inline="always")
def _weights_chunk_all(xr: Any, c0: int, c1: int, mr: Any, inv: Any, w: Any, wd: Any) -> None:
    """:func:`_weights_chunk` with every finite value a survivor (``exp32(-inf)`` is 0 already: no select)."""
    for i in range(c0, c1):
        d = (xr[i] - mr) * inv
        e = exp32(d)
        w[i - c0] = e
        wd[i - c0] = -(e * max(d, _BIG))


@_njit(fastmath={"reassoc", "nsz"})
def _sum_chunk(w: Any, wd: Any, n: int, acc: Any) -> None:
    """Add to ``acc[0]``, ``acc[1]`` the float64 sums of ``w[:n]`` and ``wd[:n]`` (any order: the bounds hold for
    every summation order)."""
    s = 0.0
    sd = 0.0
    for i in range(n):
        s += np.float64(w[i])
        sd += np.float64(wd[i])
    acc[0] += s
    acc[1] += sd


@_njit(fastmath={"reassoc", "nsz"})
def _sums_above(xs: Any, w: Any, wd: Any, n: int, cuts: Any, acc: Any) -> None:
    """``acc[q]``, ``acc[4 + q]``: float64 sums of ``w`` and ``wd`` over the first ``n`` values at or above
    ``cuts[q]`` (any order)."""
    k0, k1, k2, k3 = cuts[0], cuts[1], cuts[2], cuts[3]
    t0 = t1 = t2 = t3 = d0 = d1 = d2 = d3 = 0.0
    for i in range(n):
        xi = xs[i]
        a = np.float64(w[i])
        b = np.float64(wd[i])
        t0 += a if xi >= k0 else 0.0
        t1 += a if xi >= k1 else 0.0
        t2 += a if xi >= k2 else 0.0
        t3 += a if xi >= k3 else 0.0
        d0 += b if xi >= k0 else 0.0
        d1 += b if xi >= k1 else 0.0
        d2 += b if xi >= k2 else 0.0
        d3 += b if xi >= k3 else 0.0
    acc[0], acc[1], acc[2], acc[3] = t0, t1, t2, t3
    acc[4], acc[5], acc[6], acc[7] = d0, d1, d2, d3


@_njit(inline="always")
def _compact(xr: Any, c0: int, c1: int, lo: Any, out: Any, k: int) -> int:
    """Append the values of ``xr[c0:c1]`` at or above ``lo`` to ``out`` from ``k`` (branch-free); the new count."""
    for i in range(c0, c1):
        xi = xr[i]
        out[k] = xi
        k += 1 if xi >= lo else 0
    return k


@_njit()
def _cuts(xr: Any, mr: float, txr: float, temperature: float, step: int, tail: float, hist: Any, cuts: Any) -> None:
    """Four cuts, increasing, with ``(0.4, 0.8, 1.6, 3.2) * tail`` of the subsample's mass below them.

    The subsample estimates the tail's mass well (many small weights) but the total poorly: a few tokens near the
    maximum carry most of it and the subsample usually misses them, so its total is low (by about half on the
    benchmark's rows) or, when it catches one, high. The ladder spans both; the pass measures every cut's tail
    and the kernel keeps the highest acceptable one."""
    hist[:] = 0.0
    total = 0.0
    v = xr.size
    for i in range(0, v, step):
        xi = np.float64(xr[i])
        if xi >= txr and xi > -np.inf:
            d = (xi - mr) / temperature
            wi = math.exp(d)
            key = int(min(-d * _SUB_SCALE, _SUB_BUCKETS - 1.0))
            hist[key] += wi
            total += wi
    acc = 0.0
    kc = _SUB_BUCKETS - 1
    for j in range(4):
        budget = (0.4 * 2.0**j) * tail * total
        while kc >= 0 and acc + hist[kc] <= budget:
            acc += hist[kc]
            kc -= 1
        # the open last bucket holds more than the budget: no cut (every survivor is head)
        cuts[j] = -np.inf if kc == _SUB_BUCKETS - 1 else mr - (kc + 1) / _SUB_SCALE * temperature


@_njit()
def topp_rows(
    x: Any,
    rows: Any,
    m: Any,
    tx: Any,
    top_p: float,
    temperature: float,
    inv_t: Any,
    guard_rel: float,
    hist_scale: float,
    last: int,
    exp_rel: float,
    u32: float,
    subsample: int,
    cut_tail: float,
    out_tx: Any,
    out_redo: Any,
) -> None:
    """Top-p thresholds of ``x[rows]`` (float32, C order) over the survivors ``x >= tx``; writes ``out_tx`` and
    ``out_redo`` at the same positions as ``rows`` (a redo row's threshold is left as ``tx``)."""
    v = x.shape[1]
    step = max(1, v // subsample)
    head = np.empty(v, dtype=np.float32)
    hw = np.empty(v, dtype=np.float64)
    hk = np.empty(v, dtype=np.int64)
    cx = np.empty(v, dtype=np.float32)
    cw = np.empty(v, dtype=np.float64)
    wbuf = np.empty(CHUNK, dtype=np.float32)
    wdbuf = np.empty(CHUNK, dtype=np.float32)
    sub_hist = np.zeros(_SUB_BUCKETS, dtype=np.float64)
    hist = np.zeros(last + 1, dtype=np.float64)
    cuts64 = np.empty(4, dtype=np.float64)
    cuts = np.empty(4, dtype=np.float32)
    sums = np.empty(2, dtype=np.float64)
    above4 = np.empty(8, dtype=np.float64)
    hw32 = np.empty(v, dtype=np.float32)
    hwd32 = np.empty(v, dtype=np.float32)
    smallest = _f32(np.nextafter(_f32(-np.inf), _ZERO))
    for j in range(rows.size):
        r = rows[j]
        xr = x[r]
        mr = m[r]
        txr = tx[r]
        out_tx[j] = txr
        out_redo[j] = False
        zmax = np.float64(mr) if temperature == 1.0 else np.float64(mr) / temperature
        lo = txr if txr > -np.inf else smallest
        _cuts(xr, np.float64(mr), np.float64(txr), temperature, step, cut_tail * (1.0 - top_p), sub_hist, cuts64)
        for q in range(4):
            cuts[q] = max(_f32(cuts64[q]), lo)
        sums[:] = 0.0
        k = 0
        for c0 in range(0, v, CHUNK):
            c1 = min(v, c0 + CHUNK)
            if txr > -np.inf:
                _weights_chunk(xr, c0, c1, mr, inv_t, lo, wbuf, wdbuf)
            else:
                _weights_chunk_all(xr, c0, c1, mr, inv_t, wbuf, wdbuf)
            _sum_chunk(wbuf, wdbuf, c1 - c0, sums)
            k = _compact(xr, c0, c1, cuts[0], head, k)
        # the same float32 weights of the copied head (bit for bit: same operations), summed above each cut; a
        # cut's tail is the total minus its head
        _weights_chunk_all(head, 0, k, mr, inv_t, hw32, hwd32)
        _sums_above(head, hw32, hwd32, k, cuts, above4)
        # the highest cut whose tail is at most CUT_TAIL of 1 - top_p (every head token above it gets float64
        # work); none: every survivor is head
        head_lo = lo
        t_sum = 0.0
        t_wd = 0.0
        for q in range(3, -1, -1):
            if sums[0] - above4[q] <= cut_tail * (1.0 - top_p) * sums[0]:
                head_lo = cuts[q]
                t_sum = max(0.0, sums[0] - above4[q])
                t_wd = max(0.0, sums[1] - above4[4 + q])
                break
        if head_lo < cuts[0]:
            k = 0
            for c0 in range(0, v, CHUNK):
                k = _compact(xr, c0, min(v, c0 + CHUNK), head_lo, head, k)
        # a difference of two float64 sums of at most v terms each: 2 v u of the total off at most
        sum_err = 2.0 * (v + 1) * 2.0**-53
        t_wd += sum_err * sums[1]
        # the tail's error bound (tail_error in _fastpath, plus exp32's flushed weights); wd as an upper bound
        wd_hi = t_wd * (1.0 + 2.0**-20)
        rel = exp_rel + 2.0**-51 * (abs(zmax) + 111.0)
        t_err = 1.02 * (rel * t_sum + 3.01 * u32 * wd_hi) + sum_err * sums[0] + v * 2.0**-140 + v * 2.0**-125
        hist[:] = 0.0
        h_sum = 0.0
        kh = 0
        for i in range(k):
            if head[i] < head_lo:
                continue  # between the lowest cut and the one kept: in the tail's sums
            head[kh] = head[i]
            kh += 1
        k = kh
        for i in range(k):
            xv = np.float64(head[i])
            z = xv if temperature == 1.0 else xv / temperature
            dc = z - zmax
            wc = math.exp(dc)
            key = int(min(-dc * hist_scale, np.float64(last)))
            hw[i] = wc
            hk[i] = key
            hist[key] += wc
            h_sum += wc
        total = h_sum + t_sum
        target = top_p * total
        guard = 2.0 * guard_rel * total + t_err
        # boundary buckets: from the first whose cumulative mass reaches target - guard to the first reaching
        # target + guard
        cum = 0.0
        b_lo = -1
        b_hi = last
        above = 0.0
        for b in range(last + 1):
            prev = cum
            cum += hist[b]
            if b_lo < 0 and cum >= target - guard:
                b_lo = b
                above = prev
            if cum >= target + guard:
                b_hi = b
                break
        if b_lo < 0:  # the head does not reach the target: the cut was too high
            out_redo[j] = True
            continue
        nc = 0
        for i in range(k):
            if hk[i] >= b_lo and hk[i] <= b_hi:
                cx[nc] = head[i]
                cw[nc] = hw[i]
                nc += 1
        order = np.argsort(cx[:nc])
        acc = above
        decided = False
        for q in range(nc - 1, -1, -1):
            i = order[q]
            acc += cw[i]
            if q > 0 and cx[order[q - 1]] == cx[i]:
                continue  # inside a level of equal values
            if abs(acc - target) <= guard:
                break
            if acc >= target:
                out_tx[j] = max(txr, cx[i])
                decided = True
                break
        out_redo[j] = not decided
