"""Built-in faulty samplers that reproduce the sampler bugs of the August 2025 incident.

Each is a plain numpy *filter* with the conformance kit's filter protocol::

    f(logits: ndarray[B, V] float32, *, temperature, top_k, top_p, min_p) -> ndarray[B, V]

returning the sampling logits (``logits / temperature``) with removed tokens at ``-inf``, so the lab's fleet can
plug them in as configurable faulty samplers and the kit can prove that it catches each of them:

``approx-topk-10240``
    :func:`approx_topk_10240`: a bucketed approximate top-k whose miscompiled variant never sees the columns at
    index >= 10240, and only for some batch sizes (:data:`DEFAULT_AFFECTED_BATCH_SIZES`), as on the affected
    hardware. Every selection goes through it (top-k, the candidate search of top-p, the argmax of greedy), so a
    one-hot row with its 1.0 at index 10240 or later loses its maximum. :func:`make_approx_topk` builds variants
    with another cut-off or another set of batch sizes (the lab's small vocabulary needs a lower cut-off).
``mixed-precision-topp``
    :func:`mixed_precision_topp`: top-p whose threshold (the probability of the boundary token) is rounded to
    bf16 while the comparison runs in fp32. When rounding goes up, the boundary token is dropped; when the
    boundary token is the argmax (a peaked row) the whole row is dropped.
``december-workaround``
    :func:`december_workaround`: the December 2024 workaround
    ``where((probs >= prob_limit) | argmax_mask, logits, logits - 50000)`` on top of the same precision bug:
    the argmax is forced back, but other boundary tokens are still dropped, and removed tokens are pushed down by
    50000 instead of being set to ``-inf``.

``reference`` in :data:`BUILTINS` is the exact reference :func:`parity.sampling.filter_logits` behind the same
protocol.

>>> import numpy as np
>>> row = np.zeros((8, 12000), dtype=np.float32)
>>> row[:, 11000] = 1.0
>>> out = approx_topk_10240(row, temperature=1.0, top_k=256, top_p=1.0, min_p=0.0)
>>> bool(np.isfinite(out[0, 11000]))  # batch size 8 is affected: the maximum is gone
False
>>> out = approx_topk_10240(row[:1], temperature=1.0, top_k=256, top_p=1.0, min_p=0.0)
>>> bool(np.isfinite(out[0, 11000]))  # batch size 1 is not
True
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import numpy as np
from numpy.typing import NDArray

from parity._exceptions import InvalidInputError
from parity.sampling import validate_params

__all__ = [
    "BUILTINS",
    "DEFAULT_AFFECTED_BATCH_SIZES",
    "SAMPLERS",
    "approx_topk_10240",
    "december_workaround",
    "make_approx_topk",
    "mixed_precision_topp",
    "reference_filter",
    "reference_sampler",
    "round_to_bf16",
    "sampler_from_filter",
]

#: Batch sizes for which the miscompiled approximate top-k drops the columns past its cut-off: the multiples of
#: 8 up to 1024. Batch sizes 1-7 (and every other size) get the exact result, so a single-request test passes.
DEFAULT_AFFECTED_BATCH_SIZES: frozenset[int] = frozenset(range(8, 1025, 8))

#: What the December 2024 workaround subtracts from removed logits instead of setting them to -inf.
DECEMBER_OFFSET = 50000.0

Filter = Callable[..., NDArray[Any]]


def _as_batch(logits: Any) -> NDArray[np.float32]:
    x = np.asarray(logits, dtype=np.float32)
    if x.ndim != 2:
        raise InvalidInputError("logits", "must be a 2-D array [batch, vocab]", f"shape {x.shape}")
    return x


def _check_params(temperature: float, top_k: int, top_p: float, min_p: float) -> None:
    validate_params(temperature, top_k, top_p, min_p)  # the faults are in the filtering, not in the validation


def round_to_bf16(x: NDArray[np.float32]) -> NDArray[np.float32]:
    """Round float32 values to the nearest bfloat16 value (ties to even), returned as float32.

    >>> float(round_to_bf16(np.array([0.1], dtype=np.float32))[0])
    0.10009765625
    """
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    bias = ((bits >> np.uint64(16)) & np.uint64(1)) + np.uint64(0x7FFF)
    rounded = ((bits + bias) & np.uint64(0xFFFF0000)).astype(np.uint32)
    return rounded.view(np.float32).reshape(np.shape(x))


def reference_filter(
    logits: Any, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0
) -> NDArray[np.float64]:
    """The exact reference :func:`parity.sampling.filter_logits` behind the kit's filter protocol."""
    from parity.sampling import filter_logits

    return np.asarray(filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p))


def make_approx_topk(
    *, cutoff: int = 10240, affected_batch_sizes: Collection[int] = DEFAULT_AFFECTED_BATCH_SIZES
) -> Filter:
    """Build a faulty filter whose approximate top-k ignores columns ``>= cutoff`` for the affected batch sizes.

    Every token selection of the sampler (top-k, the top-p candidate search, the max for min-p, greedy's argmax)
    runs through the faulty operation, so for an affected batch every column at or past ``cutoff`` is removed
    whenever any filtering is asked for; the rest of the pipeline is the exact reference. A row whose finite
    logits all lie past the cut-off comes back with every token removed.

    >>> f = make_approx_topk(cutoff=4, affected_batch_sizes={2})
    >>> x = np.array([[0.0, 0.0, 0.0, 0.0, 5.0]] * 2, dtype=np.float32)
    >>> np.argmax(f(x, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0), axis=1).tolist()  # greedy misses index 4
    [0, 0]
    """
    if cutoff < 1:
        raise InvalidInputError("cutoff", "must be a positive column index", cutoff)
    affected = frozenset(int(b) for b in affected_batch_sizes)

    def approx_topk_filter(
        logits: Any, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0
    ) -> NDArray[np.float64]:
        x = _as_batch(logits)
        _check_params(temperature, top_k, top_p, min_p)
        selects = temperature == 0.0 or top_k > 0 or top_p < 1.0 or min_p > 0.0
        if not (selects and x.shape[0] in affected and x.shape[1] > cutoff):
            return reference_filter(x, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
        seen = x.copy()
        seen[:, cutoff:] = -np.inf  # the miscompiled reduction never reads the last partial tiles
        out = np.full(x.shape, -np.inf)
        alive = np.isfinite(seen).any(axis=1)
        if alive.any():
            out[alive] = reference_filter(seen[alive], temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
        return out

    approx_topk_filter.__doc__ = (
        f"Faulty approximate top-k: columns >= {cutoff} lost for batch sizes {sorted(affected)[:4]}..."
    )
    return approx_topk_filter


#: The incident's approximate top-k: misses every column >= 10240 for batch sizes in DEFAULT_AFFECTED_BATCH_SIZES.
approx_topk_10240: Filter = make_approx_topk()


def _float32_pipeline(
    logits: Any, temperature: float, top_k: int, top_p: float, min_p: float, *, december: bool
) -> NDArray[np.float32]:
    x = _as_batch(logits)
    _check_params(temperature, top_k, top_p, min_p)
    rows = np.arange(x.shape[0])
    if temperature == 0.0:
        out = np.full(x.shape, -np.inf, dtype=np.float32)
        best = np.argmax(x, axis=1)
        out[rows, best] = x[rows, best]
        return out
    z = x / np.float32(temperature)
    keep = np.isfinite(z)
    if 0 < top_k < z.shape[1]:
        kth = -np.partition(-np.where(keep, z, -np.inf), top_k - 1, axis=1)[:, top_k - 1 : top_k]
        keep &= z >= kth
    masked = np.where(keep, z, -np.inf).astype(np.float32)
    peak = masked.max(axis=1, keepdims=True)
    weights = np.exp(masked - peak, dtype=np.float32)
    probs = (weights / weights.sum(axis=1, keepdims=True, dtype=np.float32)).astype(np.float32)
    pushed = np.zeros(x.shape, dtype=bool)
    if top_p < 1.0:
        order = np.argsort(-probs, axis=1, kind="stable")
        sorted_probs = np.take_along_axis(probs, order, axis=1)
        cumulative = np.cumsum(sorted_probs, axis=1, dtype=np.float32)
        boundary = np.minimum((cumulative < np.float32(top_p)).sum(axis=1), x.shape[1] - 1)
        limit_fp32 = sorted_probs[rows, boundary][:, None]
        prob_limit = round_to_bf16(limit_fp32)  # the threshold is computed in bf16 ...
        survives = probs >= prob_limit  # ... and the comparison runs in fp32
        if december:
            argmax_mask = np.zeros(x.shape, dtype=bool)
            argmax_mask[rows, np.argmax(probs, axis=1)] = True
            pushed = keep & ~(survives | argmax_mask)
            survives |= argmax_mask
        keep &= survives | pushed
    if min_p > 0.0:
        live = keep & ~pushed
        best = np.where(live, probs, 0.0).max(axis=1, keepdims=True)
        keep &= (probs >= np.float32(min_p) * best) | pushed
    out = np.where(keep, z, -np.inf).astype(np.float32)
    return np.where(pushed, z - np.float32(DECEMBER_OFFSET), out).astype(np.float32)


def mixed_precision_topp(
    logits: Any, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0
) -> NDArray[np.float32]:
    """Faulty top-p: boundary probability rounded to bf16, compared in fp32 (drops tokens, argmax included).

    >>> x = np.array([[4.0, 0.0, 0.0]], dtype=np.float32)  # p(argmax) = 0.964; bf16 rounds it up to 0.965
    >>> int(np.isfinite(mixed_precision_topp(x, temperature=1.0, top_p=0.9)).sum())
    0
    """
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return _float32_pipeline(logits, temperature, top_k, top_p, min_p, december=False)


def december_workaround(
    logits: Any, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0
) -> NDArray[np.float32]:
    """The December 2024 workaround: argmax forced back, removed logits pushed down by 50000, bf16 bug kept.

    >>> x = np.array([[4.0, 0.0, 0.0]], dtype=np.float32)
    >>> december_workaround(x, temperature=1.0, top_p=0.9).tolist()
    [[4.0, -50000.0, -50000.0]]
    """
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return _float32_pipeline(logits, temperature, top_k, top_p, min_p, december=True)


def reference_sampler(
    logits: Any, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0, seed: int = 0
) -> NDArray[np.int64]:
    """The exact reference :func:`parity.sampling.sample` behind the kit's sampler protocol (one seed per call)."""
    from parity.sampling import sample

    rng = np.random.default_rng(seed)
    return np.asarray(
        sample(logits, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, rng=rng), dtype=np.int64
    )


def sampler_from_filter(filter_fn: Filter) -> Callable[..., NDArray[np.int64]]:
    """Turn a filter into a sampler (inverse-CDF draw from ``softmax(filter(logits))``, seeded per call).

    A row the filter emptied gets token 0, the constant output engines give on such rows.

    >>> draw = sampler_from_filter(mixed_precision_topp)
    >>> draw(np.array([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0]], dtype=np.float32), top_p=0.9, seed=1).tolist()
    [0, 0]
    """

    def sampler(
        logits: Any,
        *,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        min_p: float = 0.0,
        seed: int = 0,
    ) -> NDArray[np.int64]:
        out = np.asarray(
            filter_fn(logits, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p), dtype=np.float64
        )
        u: NDArray[np.float64] = np.asarray(np.random.default_rng(seed).random(out.shape[0]), dtype=np.float64)
        ids = np.zeros(out.shape[0], dtype=np.int64)
        for r in range(out.shape[0]):
            row = np.where(np.isnan(out[r]), -np.inf, out[r])
            if not np.isfinite(row).any():
                continue
            w = np.exp(row - row.max())
            c = np.cumsum(w / w.sum())
            ids[r] = min(int(np.searchsorted(c, float(u[r]), side="right")), out.shape[1] - 1)
        return ids

    sampler.__doc__ = f"Sampler drawing from {getattr(filter_fn, '__name__', 'a filter')}."
    return sampler


#: The built-in filters, by the name ``parity conform builtin:NAME`` takes.
BUILTINS: dict[str, Filter] = {
    "reference": reference_filter,
    "approx-topk-10240": approx_topk_10240,
    "mixed-precision-topp": mixed_precision_topp,
    "december-workaround": december_workaround,
}

#: The built-in samplers (``parity conform builtin:NAME --kind sampler``): the reference and each faulty filter.
SAMPLERS: dict[str, Callable[..., NDArray[np.int64]]] = {
    "reference": reference_sampler,
    **{name: sampler_from_filter(fn) for name, fn in BUILTINS.items() if name != "reference"},
}
