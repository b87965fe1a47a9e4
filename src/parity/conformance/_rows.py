"""The kit's row generators: seeded logits rows of the shapes that break samplers.

Gaussian, peaked, Zipf-like, bf16/fp16-quantised, integer (many exact ties) and near-tied rows; rows whose argmax
sits at the top-p boundary; one-hot rows (the postmortem's repro).

>>> import numpy as np
>>> random_rows(np.random.default_rng(0), 3, 10).shape
(3, 10)
>>> one_hot(4, np.array([2])).tolist()
[[0.0, 0.0, 1.0, 0.0]]
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from parity.conformance.faulty import round_to_bf16

__all__ = ["one_hot", "peaked_rows", "random_rows"]


def random_rows(rng: np.random.Generator, n: int, vocab: int) -> NDArray[np.float32]:
    """Rows of several shapes: gaussian, peaked, Zipf-like, bf16/fp16-quantised, integer (many ties), near-tied top."""
    rows = np.empty((n, vocab), dtype=np.float32)
    for i in range(n):
        style = int(rng.integers(7))
        if style == 0:
            row = rng.normal(0.0, rng.choice([0.5, 1.0, 3.0]), vocab)
        elif style == 1:
            row = rng.normal(0.0, 1.0, vocab)
            row[rng.integers(vocab)] += rng.uniform(2.0, 14.0)
        elif style == 2:
            row = -rng.uniform(0.8, 1.5) * np.log(rng.permutation(vocab) + 1.0) * 3.0
        elif style == 3:
            row = round_to_bf16(rng.normal(0.0, 2.0, vocab).astype(np.float32)).astype(np.float64)
        elif style == 4:
            row = rng.normal(0.0, 2.0, vocab).astype(np.float16).astype(np.float64)
        elif style == 5:
            row = np.round(rng.normal(0.0, 1.5, vocab))
        else:
            row = rng.normal(0.0, 1.0, vocab)
            top = rng.choice(vocab, size=min(2, vocab), replace=False)
            row[top] = rng.uniform(4.0, 9.0)
            if vocab > 1:  # one bf16 ulp apart
                hi = round_to_bf16(np.array([row[top[0]]], dtype=np.float32))[0]
                row[top[0]] = hi
                row[top[1]] = np.nextafter(hi, np.float32(-np.inf), dtype=np.float32) if rng.random() < 0.5 else hi
        rows[i] = row
    return rows


def peaked_rows(rng: np.random.Generator, n: int, vocab: int, mass: float) -> NDArray[np.float32]:
    """Rows whose argmax holds about ``mass`` of the probability (the top-p boundary sits on the argmax)."""
    rows = rng.normal(0.0, 1.0, (n, vocab))
    top = rng.integers(vocab, size=n)
    weights = np.exp(rows)
    rest = weights.sum(axis=1) - weights[np.arange(n), top]
    target = np.clip(mass + rng.uniform(-0.01, 0.01, n), 0.05, 0.99995)
    rows[np.arange(n), top] = np.log(target * rest / (1.0 - target))
    if rng.random() < 0.5:
        return round_to_bf16(rows.astype(np.float32))
    return rows.astype(np.float32)


def one_hot(vocab: int, indices: NDArray[np.int64]) -> NDArray[np.float32]:
    """One row per index: zeros with a single 1.0 there."""
    rows = np.zeros((indices.size, vocab), dtype=np.float32)
    rows[np.arange(indices.size), indices] = 1.0
    return rows
