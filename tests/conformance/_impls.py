"""Correct implementations nobody would call the reference: float32 arithmetic, other tie-breaks, other tie policy.

The kit must pass every one of them (a false alarm is a defect), and catch the deliberately broken ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray


def float32_filter(
    logits: Any,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    highest_index_first: bool = False,
) -> NDArray[np.float32]:
    """A plain float32 sort-based filter (HF/vLLM style): descending cumsum, keeps exactly one of tied tokens.

    Ties are broken towards the lowest index, or the highest with ``highest_index_first``.
    """
    x = np.asarray(logits, dtype=np.float32)
    batch, vocab = x.shape
    if np.isnan(x).any():
        raise ValueError("NaN logits")
    out = np.full(x.shape, -np.inf, dtype=np.float32)
    for r in range(batch):
        row = x[r]
        if not np.isfinite(row).any():
            raise ValueError(f"row {r} is all -inf")
        idx = np.arange(vocab)[::-1] if highest_index_first else np.arange(vocab)
        if temperature == 0.0:
            best = idx[np.argmax(row[idx])]
            out[r, best] = row[best]
            continue
        z = (row / np.float32(temperature)).astype(np.float32)
        order = idx[np.argsort(-z[idx], kind="stable")]
        order = order[np.isfinite(z[order])]
        if top_k > 0:
            order = order[:top_k]
        if top_p < 1.0:
            w = np.exp(z[order] - z[order[0]], dtype=np.float32)
            probs = (w / w.sum(dtype=np.float32)).astype(np.float32)
            before = np.cumsum(probs, dtype=np.float32) - probs
            order = order[before < np.float32(top_p)]
        if min_p > 0.0:
            w = np.exp(z[order] - z[order[0]], dtype=np.float32)
            order = order[w >= np.float32(min_p)]
        out[r, order] = z[order]
    return out


def float32_filter_reversed_ties(logits: Any, **kwargs: Any) -> NDArray[np.float32]:
    """:func:`float32_filter` breaking ties towards the highest index."""
    return float32_filter(logits, highest_index_first=True, **kwargs)


def float32_sampler(
    logits: Any, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0, seed: int = 0
) -> NDArray[np.int64]:
    """Gumbel-max sampling in float64 over :func:`float32_filter`'s output."""
    out = float32_filter(logits, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p).astype(np.float64)
    gumbel = np.random.default_rng(seed).gumbel(size=out.shape)
    return np.asarray(np.argmax(out + gumbel, axis=1), dtype=np.int64)


def double_temperature_sampler(
    logits: Any, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0, seed: int = 0
) -> NDArray[np.int64]:
    """Broken: applies the temperature twice when sampling (the kept set is right, the distribution is not)."""
    out = float32_filter(logits, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p).astype(np.float64)
    if temperature > 0.0:
        out = out / temperature
    gumbel = np.random.default_rng(seed).gumbel(size=out.shape)
    return np.asarray(np.argmax(out + gumbel, axis=1), dtype=np.int64)
