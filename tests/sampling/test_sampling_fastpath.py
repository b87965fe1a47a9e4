"""The float32 threshold path: float32 / float16 / bfloat16 input gives exactly the kept sets of the float64
reference and of the plain definition (ties at the boundary, -inf, extreme temperatures, top-k ties, min-p),
the decision defers to float64 where the float32 bound cannot decide, and the float32 exp stays within the
error the bound assumes."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from parity.sampling import DEFAULT_ORDER, VLLM_ORDER, SamplingParams, kept_mask, plain_kept_mask
from parity.sampling._fastpath import (
    EXP32_ULPS,
    FAST_TEMPERATURES,
    fast_eligible,
    minp_thresholds,
    topp_thresholds_f32,
)
from parity.sampling.torch import kept_mask_torch, sample_torch

torch.set_num_threads(1)

_DTYPES = {"f32": np.float32, "f16": np.float16, "bf16": ml_dtypes.bfloat16}

_values = st.one_of(
    st.floats(-30.0, 30.0, allow_nan=False, width=32),
    st.sampled_from([0.0, 1.0, -1.0, 2.5, 2.5, -math.inf]),  # exact ties and -inf
)

params_st = st.builds(
    SamplingParams,
    temperature=st.sampled_from([0.0, 2.0**-64, 1e-3, 0.05, 0.7, 1.0, 1.5, 1e6, 2.0**64, 2.0**-70, 2.0**70]),
    top_k=st.sampled_from([0, 1, 2, 5, 40]),
    top_p=st.sampled_from([1.0, 0.999, 0.9, 0.5, 0.1]) | st.floats(0.01, 1.0),
    min_p=st.sampled_from([0.0, 0.0, 0.05, 0.5, 1.0]),
    order=st.sampled_from([DEFAULT_ORDER, VLLM_ORDER, ("top_p", "min_p", "top_k")]),
)


@st.composite
def native_batches(draw: st.DrawFn) -> np.ndarray:
    b = draw(st.integers(1, 4))
    v = draw(st.integers(1, 64))
    x = draw(hnp.arrays(np.float64, (b, v), elements=_values))
    x[:, 0] = np.where(np.isneginf(x).all(axis=1), 0.0, x[:, 0])
    return np.asarray(x.astype(_DTYPES[draw(st.sampled_from(sorted(_DTYPES)))]))


def _agree(x: np.ndarray, prm: SamplingParams) -> None:
    x64 = np.asarray(x, dtype=np.float64)
    try:
        want = plain_kept_mask(x64, prm)
    except Exception as err:  # the float64 reference rejects the temperature: so must the fast path
        with pytest.raises(type(err)):
            kept_mask(x, prm)
        return
    assert np.array_equal(kept_mask(x, prm), want)
    assert np.array_equal(kept_mask(x64, prm), want)
    xt = torch.from_numpy(x64.astype(np.float32)) if x.dtype != np.float16 else torch.from_numpy(x)
    if x.dtype == ml_dtypes.bfloat16:
        xt = xt.to(torch.bfloat16)
    assert np.array_equal(kept_mask_torch(xt, prm).numpy(), want)


@given(native_batches(), params_st)
def test_native_dtypes_match_the_plain_definition(x: np.ndarray, prm: SamplingParams) -> None:
    _agree(x, prm)


def _rows(kind: str, b: int, v: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "dense":  # the benchmark's rows: thousands of tokens near the boundary
        return rng.standard_normal((b, v)) * 3.0
    if kind == "peaked":  # LLM-like: a few tokens hold most of the mass, the rest far below
        x = rng.standard_normal((b, v)) * 2.0 - 12.0
        x[:, rng.integers(0, v, size=8)] += rng.uniform(8, 14, size=(b, 8))
        return x
    if kind == "ties":  # bfloat16-coarse values: long runs of exact ties everywhere
        return np.round(rng.standard_normal((b, v)) * 3.0, 1)
    x = rng.standard_normal((b, v)) * 3.0  # "neginf": masked vocabulary blocks
    x[:, ::3] = -np.inf
    return x


@pytest.mark.parametrize("kind", ["dense", "peaked", "ties", "neginf"])
def test_large_vocab_rows_match_the_float64_path(kind: str) -> None:
    rng = np.random.default_rng(11)
    x64 = _rows(kind, 3, 20000, rng)
    for dtype in ("f32", "bf16"):
        x = x64.astype(_DTYPES[dtype])
        xr = np.asarray(x, dtype=np.float64)
        for prm in (
            SamplingParams(top_p=0.9),
            SamplingParams(top_p=0.5, temperature=0.7),
            SamplingParams(top_p=0.999, temperature=1.7),
            SamplingParams(top_k=50, top_p=0.9),
            SamplingParams(top_k=3000, top_p=0.95, min_p=0.01),
            SamplingParams(min_p=0.05, top_p=0.8, order=VLLM_ORDER),
            SamplingParams(min_p=0.2),
            SamplingParams(top_k=7),
        ):
            assert np.array_equal(kept_mask(x, prm), kept_mask(xr, prm)), (dtype, prm)
    assert np.array_equal(kept_mask(x, top_p=0.9)[:1], plain_kept_mask(xr[:1], top_p=0.9))


def test_top_k_ties_at_the_kth_value_are_kept_whole() -> None:
    x = np.full((2, 5000), -5.0, dtype=np.float32)
    x[:, :30] = 1.0  # 30 tokens tied for the top: top-k 10 keeps all 30
    x[1, 100] = 2.0
    keep = kept_mask(x, top_k=10)
    assert keep.sum(axis=1).tolist() == [30, 31]
    assert np.array_equal(keep, plain_kept_mask(x.astype(np.float64), top_k=10))


def test_a_boundary_on_top_p_within_float64_error_is_deferred_and_decided_exactly() -> None:
    # two tokens at 0 and -1: top_p = 1 / (1 + e**-1) puts the first level's mass within one rounding of the target
    x = np.full((2, 4096), -np.inf, dtype=np.float32)
    x[:, :2] = [0.0, -1.0]
    x[1, 2:] = -300.0  # a real tail, far below any float32 bound
    p = 1.0 / (1.0 + math.exp(-1.0))
    _, redo = topp_thresholds_f32(x, x.max(axis=1), np.full(2, -np.inf, np.float32), p, 1.0)
    assert redo.tolist() == [True, True]  # the guard saw it: the float64 path decides
    keep = kept_mask(x, top_p=p)
    assert np.array_equal(keep, plain_kept_mask(x.astype(np.float64), top_p=p))
    assert np.array_equal(kept_mask_torch(torch.from_numpy(x), top_p=p).numpy(), keep)


def test_min_p_threshold_is_the_smallest_passing_float32() -> None:
    m = np.array([0.0, 17.25, -3.0, 1e30], dtype=np.float32)
    for t in (1.0, 0.3, 7.0):
        for p in (0.05, 0.5, 1.0):
            tx = minp_thresholds(m, t, p)
            for mr, v in zip(m.tolist(), tx.tolist(), strict=True):
                z_max = mr if t == 1.0 else mr / t

                def ok(val: float, z_max: float = z_max, t: float = t, p: float = p) -> bool:
                    return (val if t == 1.0 else val / t) - z_max >= math.log(p)

                below = float(np.nextafter(np.float32(v), np.float32(-np.inf)))
                assert ok(v), (mr, t, p, v)
                assert not ok(below), (mr, t, p, v)


def test_temperatures_outside_the_fast_range_take_the_float64_path() -> None:
    assert fast_eligible(np.dtype(np.float32), SamplingParams(temperature=FAST_TEMPERATURES[1]))
    assert not fast_eligible(np.dtype(np.float32), SamplingParams(temperature=FAST_TEMPERATURES[1] * 2))
    assert not fast_eligible(np.dtype(np.float64), SamplingParams())
    x = (np.random.default_rng(3).standard_normal((2, 3000)) * 3).astype(np.float32)
    for t in (FAST_TEMPERATURES[0], FAST_TEMPERATURES[0] / 4, 1e30):
        assert np.array_equal(
            kept_mask(x, top_p=0.9, temperature=t), plain_kept_mask(x.astype(float), top_p=0.9, temperature=t)
        )


def test_bad_rows_are_named_as_on_the_float64_path() -> None:
    x = np.zeros((3, 8), dtype=np.float32)
    x[2, 1] = np.nan
    with pytest.raises(Exception, match="row 2 contains NaN"):
        kept_mask(x, top_p=0.9)
    x[2, 1] = -np.inf
    x[1] = -np.inf
    with pytest.raises(Exception, match="row 1 is entirely -inf"):
        kept_mask_torch(torch.from_numpy(x), top_p=0.9)


def test_torch_cpu_sampling_draws_inside_the_exact_kept_set() -> None:
    x = torch.from_numpy((np.random.default_rng(5).standard_normal((6, 5000)) * 3).astype(np.float32))
    prm = SamplingParams(top_p=0.8, temperature=0.9)
    tokens = sample_torch(x, prm, seeds=np.arange(6)).numpy()
    keep = plain_kept_mask(x.numpy().astype(np.float64), prm)
    assert keep[np.arange(6), tokens].all()


def test_float32_exp_is_within_the_assumed_ulps() -> None:
    d = np.linspace(-87.0, 0.0, 2_000_001, dtype=np.float32)  # the normal range of float32 exp
    got = np.exp(d).astype(np.float64)
    ref = np.exp(d.astype(np.float64))
    ulp = np.spacing(ref.astype(np.float32)).astype(np.float64)
    assert float(np.max(np.abs(got - ref) / ulp)) <= EXP32_ULPS
