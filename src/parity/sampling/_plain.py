"""The plain reference path: one row at a time, full sorts, every top-p decision in exact arithmetic.

It is the definition written as directly as possible; the fast paths (:mod:`parity.sampling._filters`, the torch
backend) must give exactly its kept sets, and the tests check that they do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from parity.sampling._boundary import canonical_topp_level
from parity.sampling._input import as_logits, scale_logits
from parity.sampling._params import DEFAULT_ORDER, SamplingParams, resolve_params

__all__ = ["plain_kept_mask"]


def plain_kept_mask(
    logits: Any,
    params: SamplingParams | None = None,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    order: Sequence[str] = DEFAULT_ORDER,
) -> NDArray[np.bool_]:
    """The kept set by the plain definition (slow; for tests and as the executable specification).

    >>> plain_kept_mask([2.0, 1.0, 1.0, 0.0], top_k=2).tolist()  # the tie at the 2nd place is kept whole
    [True, True, True, False]
    """
    prm = resolve_params(params, temperature, top_k, top_p, min_p, order)
    x, was_1d = as_logits(logits)
    z = scale_logits(x, prm.temperature)
    out = np.zeros(x.shape, dtype=bool)
    for r in range(x.shape[0]):
        out[r] = _plain_row(x[r], z[r], prm)
    return out[0] if was_1d else out


def _plain_row(x: NDArray[np.float64], z: NDArray[np.float64], prm: SamplingParams) -> NDArray[np.bool_]:
    finite = np.isfinite(z)
    if prm.greedy:
        keep = np.zeros(z.shape, dtype=bool)
        keep[int(np.argmax(x))] = True
        return keep
    z_max = float(z.max())
    thr = -math.inf
    for name in prm.order:
        alive = finite & (z >= thr)
        if name == "top_k" and prm.top_k_enabled:
            ranked = np.sort(z[alive])[::-1]
            if prm.top_k < ranked.size:
                thr = max(thr, float(ranked[prm.top_k - 1]))
        elif name == "min_p" and prm.min_p_enabled:
            ok = alive & (z - z_max >= math.log(prm.min_p))
            thr = max(thr, float(z[ok].min()))
        elif name == "top_p" and prm.top_p_enabled:
            thr = max(thr, canonical_topp_level(z, alive, prm.top_p))
    kept: NDArray[np.bool_] = finite & (z >= thr)
    return kept
