"""Adapters that put real implementations nobody here wrote behind the kit's filter protocol.

* ``hf-warpers`` (:func:`hf_warpers_filter`, torch framework): Hugging Face transformers'
  ``TemperatureLogitsWarper``, ``TopKLogitsWarper``, ``TopPLogitsWarper`` and ``MinPLogitsWarper`` in the order
  ``generate()`` builds them (temperature, top-k, top-p, min-p = the kit's default order). transformers does
  greedy decoding outside the warpers (``do_sample=False``), so the adapter answers ``temperature == 0`` with
  ``torch.argmax``; a warper is left out when its setting disables it, as ``generate()`` does.
* ``jax-top-k`` / ``jax-approx-max-k`` (:func:`jax_top_k_filter`, :func:`jax_approx_max_k_filter`, numpy
  framework): a float32 sampler in the style of the incident's TPU sampler: the candidates come from
  ``jax.lax.top_k`` or ``jax.lax.approx_max_k`` (k = top_k, or the whole vocabulary when top-k is off, so the
  selection op is exercised on every call), then top-p and min-p on the sorted candidates in float32. Only the
  selection op differs between the two; everything else is the adapter's.

Both need optional packages (transformers + torch; jax) that the dev extra installs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from parity._optional import import_optional

__all__ = ["THIRD_PARTY", "hf_warpers_filter", "jax_approx_max_k_filter", "jax_top_k_filter"]


def hf_warpers_filter(
    logits: Any, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0
) -> Any:
    """Hugging Face's logits warpers as one filter (torch tensors in and out)."""
    torch = import_optional("torch", extra="torch")
    lp = import_optional("transformers.generation.logits_process", extra="dev")
    scores = logits
    if temperature == 0.0:
        best = torch.argmax(scores, dim=-1, keepdim=True)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter(-1, best, scores.gather(-1, best))
    warpers: list[Any] = [lp.TemperatureLogitsWarper(temperature)]
    if top_k > 0:
        warpers.append(lp.TopKLogitsWarper(top_k=top_k))
    if top_p < 1.0:
        warpers.append(lp.TopPLogitsWarper(top_p=top_p))
    if min_p > 0.0:
        warpers.append(lp.MinPLogitsWarper(min_p=min_p))
    input_ids = torch.zeros((scores.shape[0], 1), dtype=torch.long)
    for warper in warpers:
        scores = warper(input_ids, scores)
    return scores


def _jax_filter(
    logits: Any,
    temperature: float,
    top_k: int,
    top_p: float,
    min_p: float,
    select: Callable[[Any, int], tuple[Any, Any]],
) -> NDArray[np.float32]:
    jnp = import_optional("jax.numpy", extra="dev")
    jax = import_optional("jax", extra="dev")
    x = jnp.asarray(np.asarray(logits, dtype=np.float32))
    batch, vocab = x.shape
    rows = jnp.arange(batch)[:, None]
    if temperature == 0.0:
        values, idx = select(x, 1)
        out = jnp.full(x.shape, -jnp.inf, dtype=jnp.float32).at[rows, idx].set(values)
        return np.asarray(out)
    z = x / jnp.float32(temperature)
    k = top_k if 0 < top_k < vocab else vocab
    values, idx = select(z, k)
    probs = jax.nn.softmax(values, axis=-1)
    keep = jnp.ones(values.shape, dtype=bool)
    if top_p < 1.0:
        before = jnp.cumsum(probs, axis=-1) - probs
        keep &= before < jnp.float32(top_p)
    if min_p > 0.0:
        keep &= probs >= jnp.float32(min_p) * probs[:, :1]
    keep = keep.at[:, 0].set(True)
    kept_values = jnp.where(keep, values, -jnp.inf)
    out = jnp.full(x.shape, -jnp.inf, dtype=jnp.float32).at[rows, idx].set(kept_values)
    return np.asarray(out)


def jax_top_k_filter(
    logits: Any, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0
) -> NDArray[np.float32]:
    """A float32 jax sampler whose candidates come from the exact ``jax.lax.top_k``."""
    lax = import_optional("jax.lax", extra="dev")
    return _jax_filter(logits, temperature, top_k, top_p, min_p, lambda v, k: lax.top_k(v, k))


def jax_approx_max_k_filter(
    logits: Any, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0
) -> NDArray[np.float32]:
    """The same sampler with candidates from ``jax.lax.approx_max_k`` (default recall_target 0.95)."""
    lax = import_optional("jax.lax", extra="dev")
    return _jax_filter(logits, temperature, top_k, top_p, min_p, lambda v, k: lax.approx_max_k(v, k))


#: Third-party implementations by builtin name, with the framework their protocol uses.
THIRD_PARTY: dict[str, tuple[Callable[..., Any], str]] = {
    "hf-warpers": (hf_warpers_filter, "torch"),
    "jax-top-k": (jax_top_k_filter, "numpy"),
    "jax-approx-max-k": (jax_approx_max_k_filter, "numpy"),
}
