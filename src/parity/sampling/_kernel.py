"""The compiled top-p kernel: the float32 fast path's dense rows in a few fused passes (numba, one thread).

Same decision as the numpy code of :func:`~parity.sampling._fastpath.topp_thresholds_f32`, row by row, with no
temporary of the batch's size (the code is in :mod:`parity.sampling._kernel_njit`, imported on first use):

1. a strided subsample (:data:`~parity.sampling._fastpath.SUBSAMPLE` values) places four cuts, a ladder of
   estimated tail masses around :data:`~parity.sampling._fastpath.CUT_TAIL` of ``1 - top_p`` (a
   histogram of the subsample's weights, no sort);
2. one pass over the row in chunks of 2,048 values: float32 weights from the kernel's own ``exp`` (a branch-free
   polynomial the compiler vectorises, :func:`exp32_array`), their float64 sum and that of ``w |d|`` (for the
   error bound), and a copy of the survivors above the lowest cut. The copied head's float32 weights are
   recomputed (bit for bit the same operations) and summed above each cut, so each cut's tail is the total
   minus its head; the highest cut whose tail is at most ``CUT_TAIL * (1 - top_p)`` of the total is kept;
3. the head (survivors at or above that cut) gets float64 weights exactly as the reference computes them
   (``math.exp(fl(x / T) - z_max)``), a histogram of their log-probabilities finds the boundary buckets, and
   their tokens are sorted and decided against ``top_p * total`` with the guard ``2 mass_guard(V) total +
   tail_error + flush_error``. A row within the guard, or whose head does not reach the target, is marked for
   the float64 path (``redo``), exactly as the numpy code does.

The float32 ``exp`` is not a library's: it is Cephes' ``expf`` (Cody-Waite reduction by ``ln 2``, degree-7
polynomial, scaling by the exponent bits), compiled without contraction or reassociation, so it gives the same
bits on every machine. Its error against ``exp`` of the same float32 argument is within
:data:`~parity.sampling._fastpath.EXP32_ULPS` ulp on every float32 in ``(-87, 0]`` (all 1.12e9 of them are
checked by the sampling benchmark; tests/sampling checks a dense stride); arguments at or below -87 give 0, an
absolute error under ``2**-125`` per token (:func:`flush_error`).

numba is optional (the ``monitor`` extra has it): without it :data:`COMPILED` is false and the numpy code runs.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["COMPILED", "exp32_array", "flush_error", "topp_rows"]

#: Whether the compiled kernel can run (numba is installed); checked without importing numba.
COMPILED = importlib.util.find_spec("numba") is not None


def _impl() -> ModuleType:
    from parity.sampling import _kernel_njit  # numba (~1 s to import) only where a kernel runs

    return _kernel_njit


def exp32_array(d: NDArray[np.float32]) -> NDArray[np.float32]:
    """The kernel's float32 ``exp`` of each value of a 1-D float32 array (for checks of its error).

    >>> exp32_array(np.array([0.0, -1.0, -np.inf], dtype=np.float32)).tolist() if COMPILED else [1.0, 0.0, 0.0]
    [1.0, 0.3678794503211975, 0.0]
    """
    src = np.ascontiguousarray(d, dtype=np.float32)
    out = np.empty_like(src)
    _impl().exp32_fill(src, out)
    return out


def flush_error(n: int) -> float:
    """Bound on the mass the kernel's ``exp`` drops over ``n`` tokens (``exp(d) < 2**-125`` for ``d <= -87``).

    >>> flush_error(1 << 20) < 1e-30
    True
    """
    return n * 2.0**-125


def topp_rows(
    x: NDArray[np.float32],
    rows: NDArray[np.intp],
    m: NDArray[np.float32],
    tx: NDArray[np.float32],
    top_p: float,
    temperature: float,
    **bounds: Any,
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Top-p thresholds of the rows ``rows`` of ``x`` over the survivors ``x >= tx``, and which rows need the
    float64 path (their thresholds are left as ``tx``); ``bounds`` are the constants of the error bounds.

    ``bounds``: ``guard_rel`` (:func:`~parity.sampling._boundary.mass_guard` of the vocabulary), ``hist_scale``,
    ``last`` (the histogram's last bucket), ``exp_rel`` (the float32 exp's relative error), ``u32``,
    ``subsample``, ``cut_tail``.
    """
    out_tx = np.empty(rows.size, dtype=np.float32)
    out_redo = np.empty(rows.size, dtype=np.bool_)
    _impl().topp_rows(
        np.ascontiguousarray(x, dtype=np.float32), rows.astype(np.int64), m.astype(np.float32),
        tx.astype(np.float32), float(top_p), float(temperature), np.float32(1.0 / temperature),
        float(bounds["guard_rel"]), float(bounds["hist_scale"]), int(bounds["last"]), float(bounds["exp_rel"]),
        float(bounds["u32"]), int(bounds["subsample"]), float(bounds["cut_tail"]), out_tx, out_redo,
    )  # fmt: skip
    return out_tx, out_redo
