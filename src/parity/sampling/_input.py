"""Logits input: upcast anything array-like (float16, bfloat16, float32, torch tensors) to float64 and check rows."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from parity._exceptions import InvalidInputError

__all__ = ["as_logits", "check_rows", "scale_logits"]


def as_logits(logits: Any) -> tuple[NDArray[np.float64], bool]:
    """Return ``(x, was_1d)``: ``x`` a float64 ``[B, V]`` copy-free upcast of ``logits`` with every row checked.

    Accepts numpy arrays of any real float dtype (``float16``, ``ml_dtypes.bfloat16``, ``float32``...), nested
    lists and CPU/GPU torch tensors (upcast by torch, so bfloat16 works). Upcasting is exact.

    >>> x, one = as_logits([1.0, 2.0])
    >>> x.shape, x.dtype, one
    ((1, 2), dtype('float64'), True)
    >>> as_logits([[0.0, float("nan")]])
    Traceback (most recent call last):
    ...
    parity._exceptions.InvalidInputError: `logits` row 0 contains NaN (every value must be finite or -inf)
    """
    if hasattr(logits, "detach") and hasattr(logits, "double"):  # a torch tensor, bfloat16 included
        logits = logits.detach().double().cpu().numpy()
    arr = np.asarray(logits)
    if arr.dtype.kind in "bcOUSMm":
        raise InvalidInputError("logits", "must be a real floating-point array", f"dtype {arr.dtype}")
    try:
        x = np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InvalidInputError("logits", "must be a real floating-point array", f"dtype {arr.dtype}") from err
    if x.ndim not in (1, 2):
        raise InvalidInputError("logits", "must be a 1-D [V] or 2-D [B, V] array", f"shape {x.shape}")
    if x.shape[-1] == 0:
        raise InvalidInputError("logits", "must have a non-empty vocabulary axis", f"shape {x.shape}")
    was_1d = x.ndim == 1
    x2 = x.reshape(1, -1) if was_1d else x
    check_rows(
        np.asarray(np.isnan(x2).any(axis=1)),
        np.asarray(np.isposinf(x2).any(axis=1)),
        np.asarray(np.isneginf(x2).all(axis=1)),
    )
    return x2, was_1d


def check_rows(has_nan: NDArray[np.bool_], has_posinf: NDArray[np.bool_], all_neginf: NDArray[np.bool_]) -> None:
    """Raise naming the first bad row: NaN, +inf, or every value -inf (nothing could be sampled)."""
    for flags, what in (
        (has_nan, "contains NaN (every value must be finite or -inf)"),
        (has_posinf, "contains +inf (every value must be finite or -inf)"),
        (all_neginf, "is entirely -inf (at least one value must be finite)"),
    ):
        bad = np.flatnonzero(flags)
        if bad.size:
            raise InvalidInputError("logits", f"row {int(bad[0])} {what}")


def scale_logits(x: NDArray[np.float64], temperature: float) -> NDArray[np.float64]:
    """``x / temperature`` in float64 (``x`` itself for temperature 0 or 1); raise if a finite logit overflows.

    >>> scale_logits(np.array([[1.0, -np.inf]]), 0.5).tolist()
    [[2.0, -inf]]
    """
    if temperature in (0.0, 1.0):
        return x
    with np.errstate(over="ignore"):
        z = x / temperature
    overflow = np.isinf(z) & np.isfinite(x)
    if bool(overflow.any()):
        row = int(np.flatnonzero(overflow.any(axis=1))[0])
        raise InvalidInputError(
            "temperature",
            "is too small for these logits (logits / temperature overflows float64)",
            temperature,
            detail=f"row {row}",
        )
    return z
