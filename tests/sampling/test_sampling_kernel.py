"""The compiled top-p kernel (numba): its float32 exp stays within the error the bound assumes, and its kept sets
are the float64 reference's on random rows (ties, -inf, top-k + top-p + min-p, temperatures, bfloat16 / float16),
on rows that mislead its subsample, and agree with the numpy code it replaces wherever both decide."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from parity.sampling import DEFAULT_ORDER, VLLM_ORDER, SamplingParams, kept_mask, plain_kept_mask
from parity.sampling._fastpath import EXP32_ULPS, topp_thresholds_f32
from parity.sampling._kernel import COMPILED, exp32_array
from parity.sampling.torch import kept_mask_torch

pytestmark = pytest.mark.skipif(not COMPILED, reason="numba is not installed: the numpy code runs instead")
torch.set_num_threads(1)

_DTYPES = {"f32": np.float32, "f16": np.float16, "bf16": ml_dtypes.bfloat16}


def test_exp32_is_within_the_assumed_ulps_on_a_dense_stride_of_float32() -> None:
    # every 389th float32 in [-87, 0] (2.9 million values) and the edges; the benchmark checks all 1.12e9
    lo = int(np.array([-87.0], dtype=np.float32).view(np.uint32)[0])
    bits = np.arange(0x80000000, lo + 1, 389, dtype=np.uint32)
    d = np.concatenate([bits.view(np.float32), np.float32([-86.99999, -87.0, -1e-30, -0.0, 0.0, -(2.0**-149)])])
    got = exp32_array(d).astype(np.float64)
    ref = np.exp(d.astype(np.float64))
    ulp = np.spacing(ref.astype(np.float32)).astype(np.float64)
    live = d > -87.0
    assert float(np.max(np.abs(got[live] - ref[live]) / ulp[live])) <= EXP32_ULPS
    assert exp32_array(np.float32([-87.0, -87.5, -1000.0, -np.inf])).tolist() == [0.0, 0.0, 0.0, 0.0]


_values = st.one_of(
    st.floats(-40.0, 40.0, allow_nan=False, width=32),
    st.sampled_from([0.0, 1.0, -1.0, 2.5, 2.5, 7.0, -math.inf]),  # exact ties and -inf
)


@st.composite
def kernel_batches(draw: st.DrawFn) -> np.ndarray:
    """Rows long enough for a real subsample (up to 3000 values), with ties and -inf, in the three dtypes."""
    b = draw(st.integers(1, 3))
    v = draw(st.integers(1, 3000))
    base = draw(st.sampled_from(["draw", "normal", "plateau"]))
    if base == "draw":
        x = draw(hnp.arrays(np.float64, (b, v), elements=_values))
    else:
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        x = rng.standard_normal((b, v)) * draw(st.sampled_from([0.3, 3.0, 12.0]))
        if base == "plateau":  # long runs of exact ties, some -inf blocks
            x = np.round(x, 0)
            x[:, :: draw(st.integers(2, 7))] = -np.inf
    x[:, 0] = np.where(np.isneginf(x).all(axis=1), 0.0, x[:, 0])
    return np.asarray(x.astype(_DTYPES[draw(st.sampled_from(sorted(_DTYPES)))]))


params_st = st.builds(
    SamplingParams,
    temperature=st.sampled_from([2.0**-64, 0.05, 0.7, 1.0, 1.5, 1e6, 2.0**64]),
    top_k=st.sampled_from([0, 0, 1, 5, 40, 1500]),
    top_p=st.sampled_from([0.999, 0.9, 0.5, 0.1]) | st.floats(0.01, 0.9999),
    min_p=st.sampled_from([0.0, 0.0, 0.001, 0.05, 0.5]),
    order=st.sampled_from([DEFAULT_ORDER, VLLM_ORDER, ("top_p", "min_p", "top_k")]),
)


@settings(max_examples=60, deadline=None)
@given(kernel_batches(), params_st)
def test_kernel_kept_sets_are_the_float64_references(x: np.ndarray, prm: SamplingParams) -> None:
    want = plain_kept_mask(np.asarray(x, dtype=np.float64), prm)
    assert np.array_equal(kept_mask(x, prm), want)
    if x.dtype != np.float16:  # torch CPU tensors share the kernel (bfloat16 through a float32 copy)
        xt = torch.from_numpy(np.asarray(x, dtype=np.float32))
        xt = xt.to(torch.bfloat16) if x.dtype == ml_dtypes.bfloat16 else xt
        assert np.array_equal(kept_mask_torch(xt, prm).numpy(), want)


def _mislead(kind: str, v: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal((2, v)) * 3.0
    if kind == "spike_off_stride":  # the mass sits on a token the subsample never sees
        x[:, 1] = 40.0
    elif kind == "spike_on_stride":  # ... or on one it sees, so its total is far too high
        x[:, 0] = 14.0
    elif kind == "flat":  # every weight equal: no cut helps, the whole row is head
        x[:] = 1.5
    elif kind == "two_levels":  # two tied levels; top-p lands inside the lower one
        x[:] = -2.0
        x[:, : v // 3] = 0.0
    return x.astype(np.float32)


@pytest.mark.parametrize("kind", ["spike_off_stride", "spike_on_stride", "flat", "two_levels"])
def test_rows_that_mislead_the_subsample_still_match(kind: str) -> None:
    x = _mislead(kind, 40000, np.random.default_rng(7))
    for prm in (SamplingParams(top_p=0.9), SamplingParams(top_p=0.3, temperature=0.5), SamplingParams(top_p=0.99)):
        assert np.array_equal(kept_mask(x, prm), plain_kept_mask(x.astype(np.float64), prm)), prm


def test_kernel_and_numpy_code_agree_and_rarely_defer_on_dense_rows() -> None:
    x = (np.random.default_rng(20250917).standard_normal((16, 32000)) * 3.0).astype(np.float32)
    m, tx = x.max(axis=1), np.full(16, -np.inf, dtype=np.float32)
    for p, t in ((0.9, 1.0), (0.5, 0.7), (0.99, 1.3)):
        k_tx, k_redo = topp_thresholds_f32(x, m, tx, p, t, compiled=True)
        n_tx, n_redo = topp_thresholds_f32(x, m, tx, p, t, compiled=False)
        both = ~k_redo & ~n_redo
        assert np.array_equal(k_tx[both], n_tx[both])
        assert int(k_redo.sum()) <= 2, (p, t, k_redo)  # the float64 path is the exception, not the rule
