"""The torch backend of the exact reference: the same semantics and exactly the same kept sets as the numpy core.

The O(V) work (upcast, scaling, ``torch.topk`` for top-k, the log-probability histogram by ``scatter_add_`` for
top-p) runs on the tensor's device in float64; the few boundary candidates per row go to the shared decision in
:mod:`parity.sampling._boundary`, so both backends decide top-p by one definition. Needs the ``torch`` extra
(imported lazily; a missing torch raises :class:`~parity._exceptions.MissingDependencyError`).

>>> import torch
>>> x = torch.tensor([[2.0, 1.0, 0.5, -float("inf")], [0.0, 3.0, 3.0, 1.0]], dtype=torch.bfloat16)
>>> kept_mask_torch(x, top_p=0.7).tolist()
[[True, True, False, False], [False, True, True, False]]
>>> filter_logits_torch(x, temperature=0.5, top_k=1).tolist()
[[4.0, -inf, -inf, -inf], [-inf, 6.0, 6.0, -inf]]
>>> sample_torch(x, temperature=0.0, seeds=[3, 4]).tolist()
[0, 1]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from parity._exceptions import InvalidInputError
from parity._optional import import_optional
from parity.sampling._boundary import (
    HIST_SCALE,
    boundary_levels,
    canonical_topp_level,
    hist_buckets,
    mass_guard,
)
from parity.sampling._fastpath import fast_eligible
from parity.sampling._filters import CHUNK_VALUES, fast_kept
from parity.sampling._input import check_rows
from parity.sampling._kernel import COMPILED
from parity.sampling._params import DEFAULT_ORDER, SamplingParams, resolve_params

#: The least number of tokens the head search of top-p ranks per row (``torch.topk``); see :func:`head_size`.
TOPK_CANDIDATES = 8192


def head_size(v: int) -> int:
    """Tokens the top-p head search ranks in a row of ``v``: at least :data:`TOPK_CANDIDATES`, and 1/16 of large
    vocabularies (rows whose boundary lies deeper, nearly flat ones, fall back to the histogram search).

    >>> head_size(1000), head_size(128256), head_size(262144)
    (1000, 8192, 16384)
    """
    return min(v, max(TOPK_CANDIDATES, v // 16))


if TYPE_CHECKING:
    import torch as _torch_t

__all__ = ["filter_logits_torch", "kept_mask_torch", "probabilities_torch", "sample_torch"]


def _torch() -> Any:
    return import_optional("torch", extra="torch")


def kept_mask_torch(
    logits: _torch_t.Tensor,
    params: SamplingParams | None = None,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    order: Sequence[str] = DEFAULT_ORDER,
) -> _torch_t.Tensor:
    """:func:`parity.sampling.kept_mask` on a tensor: a bool tensor of the same shape and device."""
    prm = resolve_params(params, temperature, top_k, top_p, min_p, order)
    return _run(logits, prm, "mask")  # type: ignore[no-any-return]


def filter_logits_torch(
    logits: _torch_t.Tensor,
    params: SamplingParams | None = None,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    order: Sequence[str] = DEFAULT_ORDER,
) -> _torch_t.Tensor:
    """:func:`parity.sampling.filter_logits` on a tensor: float64 ``logits / temperature``, ``-inf`` removed."""
    prm = resolve_params(params, temperature, top_k, top_p, min_p, order)
    return _run(logits, prm, "filter")  # type: ignore[no-any-return]


def probabilities_torch(
    logits: _torch_t.Tensor,
    params: SamplingParams | None = None,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    order: Sequence[str] = DEFAULT_ORDER,
) -> _torch_t.Tensor:
    """:func:`parity.sampling.probabilities` on a tensor (float64 softmax over the kept tokens, zero elsewhere).

    >>> import torch
    >>> probabilities_torch(torch.tensor([0.0, 0.0, -float("inf")]), top_p=0.5).tolist()
    [0.5, 0.5, 0.0]
    """
    prm = resolve_params(params, temperature, top_k, top_p, min_p, order)
    return _run(logits, prm, "probs")  # type: ignore[no-any-return]


def sample_torch(
    logits: _torch_t.Tensor,
    params: SamplingParams | None = None,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    order: Sequence[str] = DEFAULT_ORDER,
    generator: _torch_t.Generator | None = None,
    seeds: ArrayLike | None = None,
) -> _torch_t.Tensor:
    """:func:`parity.sampling.sample` on a tensor: one int64 token per row (shape ``[B]``, or ``()`` for 1-D).

    Randomness comes from ``generator`` (a CPU ``torch.Generator``; row ``i`` uses the ``i``-th of ``B``
    uniforms) or from ``seeds`` (one per row; a row's token then depends only on its own logits and seed).
    The draw is the inverse-CDF draw of the numpy backend over exactly the same kept set.

    >>> import torch
    >>> x = torch.tensor([[0.0, 1.0, 2.0], [5.0, 0.0, 0.0]])
    >>> sample_torch(x, top_k=2, generator=torch.Generator().manual_seed(0)).tolist()
    [2, 0]
    """
    prm = resolve_params(params, temperature, top_k, top_p, min_p, order)
    _check_tensor(logits)
    u = _uniforms(logits.shape[0] if logits.dim() == 2 else 1, generator, seeds)
    return _run(logits, prm, "sample", u)  # type: ignore[no-any-return]


def _run(logits: Any, prm: SamplingParams, mode: str, u: Any = None) -> Any:
    """Run the pipeline over row chunks on the tensor's device (chunks only on CPU; see ``CHUNK_VALUES``)."""
    torch = _torch()
    _check_tensor(logits)
    arr = logits.detach()
    was_1d = arr.dim() == 1
    if was_1d:
        arr = arr.unsqueeze(0)
    b, v = arr.shape
    dev = arr.device
    if mode == "mask":
        out = torch.empty((b, v), dtype=torch.bool, device=dev)
    elif mode == "sample":
        out = torch.empty(b, dtype=torch.int64, device=dev)
    else:
        out = torch.empty((b, v), dtype=torch.float64, device=dev)
    # on the CPU, float32 / float16 / bfloat16 rows share the numpy float32 threshold path (zero-copy for float32)
    fast = dev.type == "cpu" and fast_eligible(arr.dtype, prm)
    step = max(1, CHUNK_VALUES // v) if dev.type == "cpu" else b
    work = np.empty((2, min(b, step), v), dtype=np.float32) if fast and prm.top_p_enabled and not COMPILED else None
    for s in range(0, b, step):
        e = min(b, s + step)
        if fast:
            if mode == "mask":  # written straight into the output (a CPU bool tensor shares its memory)
                fast_kept(arr[s:e].to(torch.float32).numpy(), prm, s, work, out=out[s:e].numpy())
                continue
            keep = torch.from_numpy(fast_kept(arr[s:e].to(torch.float32).numpy(), prm, s, work))
            x = arr[s:e].to(torch.float64)
            z = _scale(x, prm.temperature, s)
        else:
            x = arr[s:e].to(torch.float64)
            x_max = x.amax(dim=1)
            if not bool(torch.isfinite(x_max).all()):
                flags = torch.stack([torch.isnan(x).any(1), torch.isposinf(x).any(1), torch.isneginf(x).all(1)])
                f = flags.cpu().numpy()
                check_rows(f[0], f[1], f[2], first_row=s)
            z = _scale(x, prm.temperature, s)
            keep = _kept(x, z, x_max, prm, arr[s:e])
        if mode == "mask":
            out[s:e] = keep
        elif mode == "filter":
            out[s:e] = z.masked_fill(keep.logical_not_(), -math.inf)
        elif mode == "probs":
            out[s:e] = torch.softmax(z.masked_fill(~keep, -math.inf), dim=1)
        else:
            zk = z.masked_fill(~keep, -math.inf)
            cum = torch.cumsum(torch.exp(zk - zk.amax(dim=1, keepdim=True)), dim=1)
            idx = (cum <= (u[s:e].to(dev) * cum[:, -1])[:, None]).sum(dim=1)
            last_kept = v - 1 - torch.argmax(keep.flip(1).to(torch.int8), dim=1)
            out[s:e] = torch.minimum(idx, last_kept)  # u * total rounded up to the total: the last kept token
    if was_1d:
        return out[0]
    return out


def _check_tensor(logits: Any) -> None:
    torch = _torch()
    if not isinstance(logits, torch.Tensor):
        raise InvalidInputError("logits", "must be a torch.Tensor (use parity.sampling for arrays)", type(logits))
    if not logits.is_floating_point():
        raise InvalidInputError("logits", "must be a real floating-point tensor", f"dtype {logits.dtype}")
    if logits.dim() not in (1, 2):
        raise InvalidInputError("logits", "must be a 1-D [V] or 2-D [B, V] tensor", f"shape {tuple(logits.shape)}")
    if logits.shape[-1] == 0:
        raise InvalidInputError("logits", "must have a non-empty vocabulary axis", f"shape {tuple(logits.shape)}")


def _uniforms(n_rows: int, generator: Any, seeds: ArrayLike | None) -> Any:
    torch = _torch()
    if generator is not None and seeds is not None:
        raise InvalidInputError("seeds", "must not be given together with `generator` (give one or the other)")
    if seeds is None:
        if generator is not None and not isinstance(generator, torch.Generator):
            raise InvalidInputError("generator", "must be a torch.Generator or None", generator)
        return torch.rand(n_rows, generator=generator, dtype=torch.float64)
    arr = np.asarray(seeds)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or arr.shape[0] != n_rows or arr.dtype.kind not in "iu" or bool((arr < 0).any()):
        raise InvalidInputError(
            "seeds", f"must be {n_rows} non-negative integers (one per row)", f"shape {arr.shape} dtype {arr.dtype}"
        )
    draws = [torch.rand(1, generator=torch.Generator().manual_seed(int(s)), dtype=torch.float64) for s in arr]
    return torch.cat(draws) if draws else torch.zeros(0, dtype=torch.float64)


def _scale(x: Any, temperature: float, first_row: int) -> Any:
    torch = _torch()
    if temperature in (0.0, 1.0):
        return x
    z = x / temperature
    if temperature > 1.0:
        return z
    overflow = torch.isinf(z) & torch.isfinite(x)
    if bool(overflow.any()):
        row = first_row + int(torch.nonzero(overflow.any(dim=1))[0, 0])
        raise InvalidInputError(
            "temperature",
            "is too small for these logits (logits / temperature overflows float64)",
            temperature,
            detail=f"row {row}",
        )
    return z


def _kept(x: Any, z: Any, x_max: Any, prm: SamplingParams, rank_key: Any) -> Any:
    torch = _torch()
    b, v = z.shape
    if prm.greedy:
        keep = torch.zeros((b, v), dtype=torch.bool, device=z.device)
        keep[torch.arange(b, device=z.device), torch.argmax(x, dim=1)] = True
        return keep
    z_max = x_max if prm.temperature == 1.0 else x_max / prm.temperature  # division is monotone
    thr = torch.full((b,), -math.inf, dtype=torch.float64, device=z.device)
    for name in prm.order:
        if name == "top_k" and prm.top_k_enabled and prm.top_k < v:
            thr = torch.maximum(thr, torch.topk(z, prm.top_k, dim=1, sorted=False).values.amin(dim=1))
        elif name == "min_p" and prm.min_p_enabled:
            ok = (z - z_max[:, None]) >= math.log(prm.min_p)
            thr = torch.maximum(thr, torch.where(ok, z, torch.full_like(z, math.inf)).amin(dim=1))
        elif name == "top_p" and prm.top_p_enabled:
            thr = _topp_thresholds(z, z_max, thr, prm.top_p, rank_key)
    keep = z >= thr[:, None]
    if bool((thr == -math.inf).any()):
        keep &= z > -math.inf
    return keep


def _topp_thresholds(z: Any, z_max: Any, thr: Any, top_p: float, rank_key: Any) -> Any:
    """Per-row top-p thresholds: a top-k head search first, the histogram search for the rows it cannot decide.

    The head search needs no histogram and one host round trip: ``torch.topk`` ranks the :func:`head_size`
    largest logits of ``rank_key`` (the caller's logits in their own dtype: ``z`` is a monotone function of them,
    so they rank alike, and a float32 or bfloat16 ranking takes fewer radix passes than a float64 one;
    non-survivors of earlier filters rank last). Their float64 weights are summed in that order, and a row is
    decided when its target mass is reached inside the head, strictly above the head's last value (so the
    boundary level is whole inside it), and no prefix sum lies within
    :func:`~parity.sampling._boundary.mass_guard` of the target. That is
    :func:`~parity.sampling._boundary.level_from_candidates` with nothing above the candidates, so the decision
    is the canonical one. Rows it cannot decide (flat rows whose boundary lies below the head, or a prefix sum
    within the guard) go to the histogram search, which is exact for every row.
    """
    torch = _torch()
    v = z.shape[1]
    d = z - z_max[:, None]
    d.masked_fill_(z < thr[:, None], -math.inf)  # non-survivors weigh nothing (a no-op where thr is -inf)
    w = torch.exp(d)
    total = w.sum(dim=1)
    target = top_p * total
    guard = mass_guard(v) * total
    k = head_size(v)
    idx = torch.topk(rank_key, k, dim=1, sorted=True).indices
    dk = d.gather(1, idx)
    cum = torch.cumsum(w.gather(1, idx), dim=1)
    reached = cum >= target[:, None]
    first = torch.argmax(reached.to(torch.int8), dim=1)
    level_d = dk.gather(1, first[:, None])[:, 0]
    whole = (level_d > dk[:, -1]) if k < v else torch.ones_like(reached[:, 0])
    close = ((cum - target[:, None]).abs() <= guard[:, None]).any(dim=1)
    decided = reached[:, -1] & whole & ~close & (level_d > -math.inf)
    level_z = z.gather(1, idx.gather(1, first[:, None]))[:, 0]
    out = torch.where(decided, torch.maximum(thr, level_z), thr)
    rest = torch.nonzero(~decided)[:, 0]  # the one host round trip
    if rest.numel():
        out[rest] = _topp_thresholds_hist(z[rest], d[rest], w[rest], target[rest], guard[rest], thr[rest], top_p)
    return out


def _topp_thresholds_hist(z: Any, d: Any, w: Any, target: Any, guard: Any, thr: Any, top_p: float) -> Any:
    """The histogram search: mass per log-probability bucket, then the exact decision on the boundary buckets."""
    torch = _torch()
    b, v = z.shape
    last = hist_buckets(v)  # the open-ended last bucket
    key = d.mul(-HIST_SCALE).clamp_(max=float(last)).to(torch.int64)
    mass = torch.zeros((b, last + 1), dtype=torch.float64, device=z.device).scatter_add_(1, key, w)
    cum = torch.cumsum(mass, dim=1)
    lo = (cum < (target - guard)[:, None]).sum(dim=1)
    hi = torch.clamp((cum < (target + guard)[:, None]).sum(dim=1), max=last)
    above = torch.where(lo > 0, cum.gather(1, torch.clamp(lo - 1, min=0)[:, None])[:, 0], torch.zeros_like(target))
    cand = key.ge(lo[:, None]).logical_and_(key.le(hi[:, None]))
    rows, cols = torch.nonzero(cand, as_tuple=True)
    live = d[rows, cols] > -math.inf  # -inf logits and non-survivors are never boundary candidates
    rows, cols = rows[live], cols[live]
    thr_np = thr.cpu().numpy()
    levels = boundary_levels(
        rows.cpu().numpy(),
        z[rows, cols].cpu().numpy(),
        w[rows, cols].cpu().numpy(),
        above.cpu().numpy(),
        target.cpu().numpy(),
        guard.cpu().numpy(),
    )
    for r in np.flatnonzero(np.isnan(levels)):  # within the float64 error band: the exact decision
        zr = z[r].cpu().numpy()
        levels[r] = canonical_topp_level(zr, np.isfinite(zr) & (zr >= thr_np[r]), top_p)
    return torch.from_numpy(np.maximum(thr_np, levels)).to(z.device)
