"""Logits input: upcast anything array-like (float16, bfloat16, float32, torch tensors) to float64 and check rows."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from parity._exceptions import InvalidInputError

__all__ = ["as_logits", "as_rows", "check_rows", "scale_logits", "upcast_rows"]


def as_rows(logits: Any) -> tuple[NDArray[Any], bool]:
    """Return ``(arr, was_1d)``: ``logits`` as a 2-D ``[B, V]`` array in its own real dtype (not yet upcast).

    Accepts numpy arrays of any real float dtype (``float16``, ``ml_dtypes.bfloat16``, ``float32``...), nested
    lists and CPU/GPU torch tensors (bfloat16 tensors are upcast by torch). Only dtype and shape are checked here;
    :func:`upcast_rows` checks the values.

    >>> arr, one = as_rows([1.0, 2.0])
    >>> arr.shape, one
    ((1, 2), True)
    """
    if hasattr(logits, "detach") and hasattr(logits, "double"):  # a torch tensor, bfloat16 included
        logits = logits.detach().double().cpu().numpy()
    arr = np.asarray(logits)
    if arr.dtype.kind in "bcOUSMm":
        raise InvalidInputError("logits", "must be a real floating-point array", f"dtype {arr.dtype}")
    if arr.dtype.kind not in "fiu":
        try:  # ml_dtypes (bfloat16, float8...) register their casts to float64
            np.zeros(1, dtype=arr.dtype).astype(np.float64)
        except (TypeError, ValueError) as err:
            raise InvalidInputError("logits", "must be a real floating-point array", f"dtype {arr.dtype}") from err
    if arr.ndim not in (1, 2):
        raise InvalidInputError("logits", "must be a 1-D [V] or 2-D [B, V] array", f"shape {arr.shape}")
    if arr.shape[-1] == 0:
        raise InvalidInputError("logits", "must have a non-empty vocabulary axis", f"shape {arr.shape}")
    was_1d = arr.ndim == 1
    return (arr.reshape(1, -1) if was_1d else arr), was_1d


def upcast_rows(rows: NDArray[Any], first_row: int = 0) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(x, x_max)``: the rows upcast exactly to float64 and each row's maximum, after checking every row.

    One reduction does the check: a row's maximum is NaN if it has a NaN, +inf if it has +inf, -inf if it is
    entirely -inf; only then are the rows examined one by one for the message (rows numbered from
    ``first_row``).

    >>> upcast_rows(np.array([[0.0, float("nan")]]), first_row=3)
    Traceback (most recent call last):
    ...
    parity._exceptions.InvalidInputError: `logits` row 3 contains NaN (every value must be finite or -inf)
    """
    x = np.asarray(rows, dtype=np.float64)
    x_max = x.max(axis=1)
    if not bool(np.isfinite(x_max).all()):
        check_rows(
            np.asarray(np.isnan(x).any(axis=1)),
            np.asarray(np.isposinf(x).any(axis=1)),
            np.asarray(np.isneginf(x).all(axis=1)),
            first_row,
        )
    return x, x_max


def as_logits(logits: Any) -> tuple[NDArray[np.float64], bool]:
    """Return ``(x, was_1d)``: ``x`` the checked float64 ``[B, V]`` upcast of ``logits`` (exact).

    >>> x, one = as_logits([1.0, 2.0])
    >>> x.shape, x.dtype, one
    ((1, 2), dtype('float64'), True)
    >>> as_logits([[0.0, float("nan")]])
    Traceback (most recent call last):
    ...
    parity._exceptions.InvalidInputError: `logits` row 0 contains NaN (every value must be finite or -inf)
    """
    arr, was_1d = as_rows(logits)
    return upcast_rows(arr)[0], was_1d


def check_rows(
    has_nan: NDArray[np.bool_], has_posinf: NDArray[np.bool_], all_neginf: NDArray[np.bool_], first_row: int = 0
) -> None:
    """Raise naming the first bad row: NaN, +inf, or every value -inf (nothing could be sampled)."""
    for flags, what in (
        (has_nan, "contains NaN (every value must be finite or -inf)"),
        (has_posinf, "contains +inf (every value must be finite or -inf)"),
        (all_neginf, "is entirely -inf (at least one value must be finite)"),
    ):
        bad = np.flatnonzero(flags)
        if bad.size:
            raise InvalidInputError("logits", f"row {first_row + int(bad[0])} {what}")


def scale_logits(x: NDArray[np.float64], temperature: float, first_row: int = 0) -> NDArray[np.float64]:
    """``x / temperature`` in float64 (``x`` itself for temperature 0 or 1); raise if a finite logit overflows.

    Only a temperature below 1 can overflow, so only then is the result checked.

    >>> scale_logits(np.array([[1.0, -np.inf]]), 0.5).tolist()
    [[2.0, -inf]]
    """
    if temperature in (0.0, 1.0):
        return x
    with np.errstate(over="ignore"):
        z = x / temperature
    if temperature > 1.0:
        return z
    overflow = np.isinf(z) & np.isfinite(x)
    if bool(overflow.any()):
        row = first_row + int(np.flatnonzero(overflow.any(axis=1))[0])
        raise InvalidInputError(
            "temperature",
            "is too small for these logits (logits / temperature overflows float64)",
            temperature,
            detail=f"row {row}",
        )
    return z
