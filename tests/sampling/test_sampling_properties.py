"""Property tests: argmax survival, minimality, order, batch invariance, numpy == plain == torch kept sets."""

from __future__ import annotations

import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from parity.sampling import DEFAULT_ORDER, VLLM_ORDER, SamplingParams, kept_mask, plain_kept_mask, sample
from parity.sampling.torch import kept_mask_torch, sample_torch

torch.set_num_threads(1)

_values = st.one_of(
    st.floats(-30.0, 30.0, allow_nan=False, width=32),
    st.sampled_from([0.0, 1.0, -1.0, 2.5, -math.inf]),  # exact ties and -inf
)


@st.composite
def logit_batches(draw: st.DrawFn) -> np.ndarray:
    b = draw(st.integers(1, 4))
    v = draw(st.integers(1, 48))
    x = draw(hnp.arrays(np.float64, (b, v), elements=_values))
    x[:, 0] = np.where(np.isneginf(x).all(axis=1), 0.0, x[:, 0])  # no all -inf rows here
    cast = draw(st.sampled_from(["f64", "f32", "f16", "bf16"]))
    if cast == "f32":
        x = x.astype(np.float32).astype(np.float64)
    elif cast == "f16":
        x = x.astype(np.float16).astype(np.float64)
    elif cast == "bf16":
        x = x.astype(ml_dtypes.bfloat16).astype(np.float64)
    return x


params_st = st.builds(
    SamplingParams,
    temperature=st.sampled_from([0.0, 0.05, 0.7, 1.0, 1.5]),
    top_k=st.sampled_from([0, 1, 2, 5, 40]),
    top_p=st.sampled_from([1.0, 0.999, 0.99, 0.9, 0.5, 0.1]) | st.floats(0.01, 1.0),
    min_p=st.sampled_from([0.0, 0.0, 0.05, 0.5, 1.0]),
    order=st.sampled_from([DEFAULT_ORDER, VLLM_ORDER, ("top_p", "min_p", "top_k")]),
)


@given(logit_batches(), params_st)
def test_fast_plain_and_torch_agree_exactly(x: np.ndarray, prm: SamplingParams) -> None:
    fast = kept_mask(x, prm)
    assert np.array_equal(fast, plain_kept_mask(x, prm))
    assert np.array_equal(fast, kept_mask_torch(torch.from_numpy(x), prm).numpy())


@given(logit_batches(), params_st)
def test_argmax_survives_and_neg_inf_never_kept(x: np.ndarray, prm: SamplingParams) -> None:
    keep = kept_mask(x, prm)
    assert keep[np.arange(x.shape[0]), np.argmax(x, axis=1)].all()
    assert not keep[np.isneginf(x)].any()
    if prm.greedy:
        assert (keep.sum(axis=1) == 1).all()


def _exact_masses(z: np.ndarray, keep: np.ndarray, alive: np.ndarray) -> tuple[Fraction, Fraction, Fraction]:
    """Exact (kept mass, kept mass without its lowest level, survivor mass) over math.exp weights."""
    z_max = float(z[alive].max())
    w = {i: Fraction(math.exp(float(z[i]) - z_max)) for i in np.flatnonzero(alive)}
    kept = sum((w[i] for i in np.flatnonzero(keep)), Fraction(0))
    low = float(z[keep].min())
    without = sum((w[i] for i in np.flatnonzero(keep) if z[i] != low), Fraction(0))
    return kept, without, sum(w.values(), Fraction(0))


@given(logit_batches(), st.floats(0.01, 0.999), st.sampled_from([0.5, 1.0, 2.0]))
def test_top_p_reaches_p_and_is_minimal(x: np.ndarray, p: float, t: float) -> None:
    keep = kept_mask(x, top_p=p, temperature=t)
    z = x / t
    for r in range(x.shape[0]):
        kept, without, total = _exact_masses(z[r], keep[r], np.isfinite(z[r]))
        assert kept >= Fraction(p) * total
        assert without < Fraction(p) * total  # dropping the lowest kept level falls below p


@given(logit_batches(), st.integers(1, 50))
def test_top_k_keeps_k_up_to_ties(x: np.ndarray, k: int) -> None:
    keep = kept_mask(x, top_k=k)
    for r in range(x.shape[0]):
        finite = np.isfinite(x[r])
        n = int(keep[r].sum())
        assert n >= min(k, int(finite.sum()))
        if n > k:  # only ties with the k-th value may exceed k
            kth = np.sort(x[r][finite])[::-1][k - 1]
            assert np.all(x[r][keep[r]] >= kth)
            assert int((x[r][keep[r]] > kth).sum()) < k
        if keep[r].any():  # kept tokens outrank removed finite ones
            removed = finite & ~keep[r]
            assert not removed.any() or x[r][keep[r]].min() > x[r][removed].max()


@given(logit_batches(), st.floats(0.01, 1.0), st.floats(0.01, 1.0), st.integers(1, 20), st.integers(1, 20))
def test_kept_set_grows_with_p_and_k(x: np.ndarray, p1: float, p2: float, k1: int, k2: int) -> None:
    lo_p, hi_p = sorted((p1, p2))
    lo_k, hi_k = sorted((k1, k2))
    assert not (kept_mask(x, top_p=lo_p) & ~kept_mask(x, top_p=hi_p)).any()
    assert not (kept_mask(x, top_k=lo_k) & ~kept_mask(x, top_k=hi_k)).any()


@given(logit_batches(), params_st, st.randoms(use_true_random=False))
def test_batch_invariance(x: np.ndarray, prm: SamplingParams, rnd: object) -> None:
    b = x.shape[0]
    perm = np.array(sorted(range(b), key=lambda _: rnd.random()))  # type: ignore[attr-defined]
    keep = kept_mask(x, prm)
    assert np.array_equal(kept_mask(x[perm], prm), keep[perm])
    for r in range(b):
        assert np.array_equal(kept_mask(x[r], prm), keep[r])
    seeds = np.arange(b) * 7 + 3
    tokens = sample(x, prm, seeds=seeds)
    assert np.array_equal(sample(x[perm], prm, seeds=seeds[perm]), tokens[perm])
    assert keep[np.arange(b), tokens].all()
    t_tokens = sample_torch(torch.from_numpy(x), prm, seeds=seeds).numpy()
    assert np.array_equal(sample_torch(torch.from_numpy(x[perm]), prm, seeds=seeds[perm]).numpy(), t_tokens[perm])
    assert keep[np.arange(b), t_tokens].all()


@pytest.mark.parametrize("p", [0.9, 0.99, 0.999])
def test_near_tie_bf16_rows_keep_the_argmax_in_both_backends(p: float) -> None:
    rng = np.random.default_rng(7)
    base = rng.normal(size=(32, 2048)) * 3
    base[:, 5] = base.max(axis=1) + rng.uniform(0, 0.02, size=32)  # argmax within a bf16 ulp of the runner-up
    x = base.astype(ml_dtypes.bfloat16)
    xt = torch.from_numpy(base.astype(np.float32)).to(torch.bfloat16)
    for t in (0.05, 0.5, 1.0):
        keep = kept_mask(x, top_p=p, temperature=t)
        keep_t = kept_mask_torch(xt, top_p=p, temperature=t).numpy()
        assert np.array_equal(keep, keep_t)
        x64 = np.asarray(x, dtype=np.float64)
        assert keep[np.arange(32), np.argmax(x64, axis=1)].all()
