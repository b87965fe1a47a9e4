"""Drawing one token per row from the exact sampling distribution, with explicit randomness."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from parity._exceptions import InvalidInputError
from parity.sampling._filters import run_chunks
from parity.sampling._input import as_rows
from parity.sampling._params import DEFAULT_ORDER, SamplingParams, resolve_params

__all__ = ["row_uniforms", "sample"]


def sample(
    logits: Any,
    params: SamplingParams | None = None,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    order: Sequence[str] = DEFAULT_ORDER,
    rng: np.random.Generator | None = None,
    seeds: ArrayLike | None = None,
) -> NDArray[np.int64]:
    """One token id per row (shape ``[B]``, or ``()`` for 1-D logits), drawn from :func:`probabilities`.

    The draw is an inverse-CDF draw: one uniform ``u`` per row, token = the first kept index whose cumulative
    weight (in index order, float64) exceeds ``u`` times the row's total; a token outside the kept set is never
    returned. Randomness comes from ``rng`` (row ``i`` uses the ``i``-th of ``B`` uniforms) or from ``seeds``,
    one per row: then a row's token depends only on its own logits and seed (the same alone, in any batch, at any
    position). With neither, a fresh unseeded generator is used.

    >>> x = np.array([[0.0, 1.0, 2.0], [5.0, 0.0, 0.0]])
    >>> sample(x, top_k=2, seeds=[7, 8]).tolist()
    [2, 0]
    >>> int(sample(x[1], top_k=2, seeds=[8]))  # the same row, alone: the same token
    0
    """
    prm = resolve_params(params, temperature, top_k, top_p, min_p, order)
    arr, _ = as_rows(logits)
    u = row_uniforms(arr.shape[0], rng=rng, seeds=seeds)
    out: NDArray[np.int64] = run_chunks(logits, prm, "sample", u)
    return out


def row_uniforms(
    n_rows: int, *, rng: np.random.Generator | None = None, seeds: ArrayLike | None = None
) -> NDArray[np.float64]:
    """One uniform in [0, 1) per row, from ``rng`` or from one seed per row (validated here).

    >>> row_uniforms(2, seeds=[1, 1]).tolist() == [np.random.default_rng(1).random()] * 2
    True
    """
    if rng is not None and seeds is not None:
        raise InvalidInputError("seeds", "must not be given together with `rng` (give one or the other)")
    if seeds is None:
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise InvalidInputError("rng", "must be a numpy.random.Generator or None", rng)
        gen = rng if rng is not None else np.random.default_rng()
        return gen.random(n_rows)
    arr = np.asarray(seeds)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or arr.shape[0] != n_rows or arr.dtype.kind not in "iu":
        raise InvalidInputError(
            "seeds", f"must be {n_rows} non-negative integers (one per row)", f"shape {arr.shape} dtype {arr.dtype}"
        )
    if bool((arr < 0).any()):
        raise InvalidInputError("seeds", "must be non-negative integers", arr.tolist())
    return np.array([np.random.default_rng(int(s)).random() for s in arr], dtype=np.float64)
