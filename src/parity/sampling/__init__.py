"""The exact reference sampler: which tokens survive temperature, top-k, top-p and min-p, and drawing from them.

A leaf library (it imports nothing from parity but the exceptions and the optional-import helper). numpy is the
core backend; ``parity.sampling.torch`` (the ``torch`` extra) gives exactly the same kept sets on tensors.

Semantics, per row of logits ``x`` (float64 after an exact upcast of float16 / bfloat16 / float32 input):

1. **temperature** first: ``z = x / temperature``. Temperature 0 is **greedy**: only the argmax survives, the
   lowest index among exactly tied maxima; the other filters cannot change that.
2. The three filters then run in ``order`` (default :data:`DEFAULT_ORDER` = top-k, top-p, min-p; engines with
   another documented order, such as vLLM's :data:`VLLM_ORDER` = min-p, top-k, top-p, are tested against it).
   Each one sees only the survivors of the previous ones.

   * **top-k** keeps the ``k`` largest ``z``. Ties: every token tied with the k-th largest value is kept, so the
     kept set may exceed ``k`` (and top-k 1 keeps all exactly tied maxima, unlike greedy).
   * **top-p** keeps the minimal prefix of the survivors sorted by probability (renormalised over the
     survivors) whose mass reaches ``top_p`` (``>=``). Ties: the prefix is made of whole levels of equal ``z``;
     a tie at the boundary keeps all tied tokens. The decision is exact (see below).
   * **min-p** keeps ``p_i >= min_p * p_max``, decided as ``z_i - z_max >= log(min_p)`` in float64 (renormalising
     over survivors does not change the ratio, and ``z_max`` always survives).

   ``top_k <= 0``, ``top_p == 1`` and ``min_p == 0`` disable a filter. Every filter keeps an upper set of ``z``
   that contains the maximum, so **the argmax always survives**.
3. ``-inf`` logits are legal and never kept. A row with NaN, with ``+inf``, or entirely ``-inf`` raises
   :class:`~parity._exceptions.InvalidInputError` naming the row.

Exactness: top-k and min-p decisions are comparisons of float64 values that both backends compute bit for bit
alike. The top-p decision is defined over the float64 weights ``math.exp(z_i - z_max)`` with sums and the
comparison with ``top_p`` in exact integer arithmetic; the fast paths use float64 sums with a proven error bound
and defer to the exact computation for rows within that bound of the threshold, so the kept set never depends on
summation order, batch, thread count or backend. No full sort of the vocabulary is needed: top-k by partial
selection, top-p by a log-probability histogram that leaves only the boundary bucket to sort. For float32,
float16 and bfloat16 logits (the usual case) every kept set is ``{x >= t}`` for one float32 threshold ``t`` per
row, found with float32 passes and float64 work only above a cut near the top-p boundary; rows a float32 error
bound cannot decide take the float64 path, so the kept sets are the same.

>>> import numpy as np
>>> x = np.array([[2.0, 1.0, 0.5, -np.inf], [0.0, 3.0, 3.0, 1.0]])
>>> kept_mask(x, top_p=0.7).tolist()
[[True, True, False, False], [False, True, True, False]]
>>> probabilities(x, top_k=1).round(3).tolist()
[[1.0, 0.0, 0.0, 0.0], [0.0, 0.5, 0.5, 0.0]]
>>> sample(x, temperature=0.0, seeds=[0, 1]).tolist()
[0, 1]
"""

from __future__ import annotations

from parity.sampling._filters import filter_logits, kept_mask, probabilities
from parity.sampling._params import (
    DEFAULT_ORDER,
    FILTERS,
    LLAMACPP_ORDER,
    NAMED_ORDERS,
    VLLM_ORDER,
    SamplingParams,
    parse_order,
    validate_order,
    validate_params,
)
from parity.sampling._plain import plain_kept_mask
from parity.sampling._sample import sample

__all__ = [
    "DEFAULT_ORDER",
    "FILTERS",
    "LLAMACPP_ORDER",
    "NAMED_ORDERS",
    "VLLM_ORDER",
    "SamplingParams",
    "filter_logits",
    "kept_mask",
    "parse_order",
    "plain_kept_mask",
    "probabilities",
    "sample",
    "validate_order",
    "validate_params",
]
