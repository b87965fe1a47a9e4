"""parity.sampling: the documented semantics, case by case, and every validation message."""

from __future__ import annotations

import math
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from scipy import stats

from parity._exceptions import InvalidInputError
from parity.sampling import (
    DEFAULT_ORDER,
    VLLM_ORDER,
    SamplingParams,
    filter_logits,
    kept_mask,
    plain_kept_mask,
    probabilities,
    sample,
    validate_params,
)
from parity.sampling._boundary import canonical_topp_level  # an internal, tested directly

# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": -0.1}, r"`temperature` must be a finite number >= 0 \(0 is greedy\), got -0.1"),
        ({"temperature": math.inf}, r"`temperature` must be a finite number >= 0"),
        ({"temperature": math.nan}, r"`temperature` must be a finite number >= 0"),
        ({"temperature": "1"}, r"`temperature` must be a finite number >= 0"),
        ({"top_k": 2.5}, r"`top_k` must be an integer \(<= 0 disables\), got 2.5"),
        ({"top_k": True}, r"`top_k` must be an integer"),
        ({"top_p": 0.0}, r"`top_p` must be a number in \(0, 1\] \(1 disables\), got 0.0"),
        ({"top_p": 1.5}, r"`top_p` must be a number in \(0, 1\]"),
        ({"top_p": math.nan}, r"`top_p` must be a number in \(0, 1\]"),
        ({"min_p": -0.1}, r"`min_p` must be a number in \[0, 1\] \(0 disables\), got -0.1"),
        ({"min_p": 1.01}, r"`min_p` must be a number in \[0, 1\]"),
        ({"order": ("top_k", "top_p")}, r"`order` must be a permutation of \('top_k', 'top_p', 'min_p'\)"),
        ({"order": ("top_k", "top_k", "min_p")}, r"`order` must be a permutation"),
        ({"order": "top_k"}, r"`order` must be a permutation"),
    ],
)
def test_bad_parameters_are_named(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        validate_params(**kwargs)
    with pytest.raises(InvalidInputError, match=match):
        SamplingParams(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=match):
        kept_mask(np.zeros(3), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("logits", "match"),
    [
        ([[0.0, 1.0], [0.0, math.nan]], r"`logits` row 1 contains NaN \(every value must be finite or -inf\)"),
        ([[0.0, math.inf]], r"`logits` row 0 contains \+inf"),
        ([[0.0, 1.0], [-math.inf, -math.inf]], r"`logits` row 1 is entirely -inf \(at least one value must be finite"),
        (np.zeros((2, 2, 2)), r"`logits` must be a 1-D \[V\] or 2-D \[B, V\] array, got 'shape \(2, 2, 2\)'"),
        (np.zeros((2, 0)), r"`logits` must have a non-empty vocabulary axis"),
        (np.array([True, False]), r"`logits` must be a real floating-point array, got 'dtype bool'"),
        (np.array([1 + 1j]), r"`logits` must be a real floating-point array"),
        (np.array(["a"]), r"`logits` must be a real floating-point array"),
    ],
)
def test_bad_logits_are_named(logits: object, match: str) -> None:
    for fn in (kept_mask, filter_logits, probabilities, sample, plain_kept_mask):
        with pytest.raises(InvalidInputError, match=match):
            fn(logits)


def test_overflowing_temperature_names_the_row() -> None:
    with pytest.raises(InvalidInputError, match=r"`temperature` is too small for these logits.*\(row 1\)"):
        kept_mask(np.array([[0.0, 1.0], [0.0, 1e300]]), temperature=1e-10)


def test_params_object_excludes_keywords() -> None:
    prm = SamplingParams(top_k=2)
    assert kept_mask([3.0, 2.0, 1.0], prm).tolist() == [True, True, False]
    with pytest.raises(InvalidInputError, match=r"`params` must not be combined with keyword parameters"):
        kept_mask([3.0, 2.0, 1.0], prm, top_p=0.5)
    with pytest.raises(InvalidInputError, match=r"`params` must be a SamplingParams or None"):
        kept_mask([3.0, 2.0, 1.0], {"top_k": 2})  # type: ignore[arg-type]


def test_sample_randomness_arguments_are_validated() -> None:
    x = np.zeros((2, 3))
    with pytest.raises(InvalidInputError, match=r"`seeds` must not be given together with `rng`"):
        sample(x, rng=np.random.default_rng(0), seeds=[1, 2])
    with pytest.raises(InvalidInputError, match=r"`seeds` must be 2 non-negative integers \(one per row\)"):
        sample(x, seeds=[1])
    with pytest.raises(InvalidInputError, match=r"`seeds` must be 2 non-negative integers"):
        sample(x, seeds=[0.5, 1.5])
    with pytest.raises(InvalidInputError, match=r"`seeds` must be non-negative integers"):
        sample(x, seeds=[1, -1])
    with pytest.raises(InvalidInputError, match=r"`rng` must be a numpy.random.Generator or None"):
        sample(x, rng=42)  # type: ignore[arg-type]


# ---------------------------------------------------------------- semantics


def test_disabled_filters_keep_every_finite_token() -> None:
    x = np.array([[1.0, -np.inf, 0.5, -3.0]])
    assert kept_mask(x, top_k=0, top_p=1.0, min_p=0.0).tolist() == [[True, False, True, True]]
    assert kept_mask(x, top_k=-1).tolist() == [[True, False, True, True]]
    assert kept_mask(x, top_k=10).tolist() == [[True, False, True, True]]


def test_top_k_keeps_all_ties_with_the_kth() -> None:
    assert kept_mask([1.0, 3.0, 2.0, 2.0, 0.0], top_k=2).tolist() == [False, True, True, True, False]
    assert kept_mask([5.0, 5.0, 1.0], top_k=1).tolist() == [True, True, False]


def test_greedy_keeps_lowest_index_of_exact_ties() -> None:
    assert kept_mask([5.0, 1.0, 5.0], temperature=0.0).tolist() == [True, False, False]
    assert filter_logits([5.0, 1.0, 5.0], temperature=0.0, top_p=0.1).tolist() == [5.0, -np.inf, -np.inf]
    assert probabilities([1.0, 9.0, 9.0], temperature=0.0).tolist() == [0.0, 1.0, 0.0]


def test_top_p_minimal_prefix_with_ties_kept_whole() -> None:
    # probabilities 0.4, 0.3, 0.3 (a tie at the boundary) and p = 0.5: the boundary level {0.3, 0.3} is kept whole
    x = np.log([0.4, 0.3, 0.3])
    assert kept_mask(x, top_p=0.5).tolist() == [True, True, True]
    assert kept_mask(x, top_p=0.39).tolist() == [True, False, False]
    x = np.log([0.5, 0.3, 0.2])
    assert kept_mask(x, top_p=0.79).tolist() == [True, True, False]


def test_top_p_renormalises_over_top_k_survivors() -> None:
    x = np.log([0.4, 0.3, 0.2, 0.1])
    # over all four, 0.4 < 0.55 needs two; over the top-2 survivors, 0.4 / 0.7 = 0.571 >= 0.55 needs one
    assert kept_mask(x, top_p=0.55).tolist() == [True, True, False, False]
    assert kept_mask(x, top_k=2, top_p=0.55).tolist() == [True, False, False, False]
    assert kept_mask(x, top_k=2, top_p=0.6).tolist() == [True, True, False, False]
    assert kept_mask(x, top_p=0.75).tolist() == [True, True, True, False]


def test_min_p_rule_and_order_matters() -> None:
    x = np.log([0.5, 0.25, 0.15, 0.1])
    assert kept_mask(x, min_p=0.3).tolist() == [True, True, True, False]  # 0.15 >= 0.3 * 0.5
    assert kept_mask(x, min_p=1.0).tolist() == [True, False, False, False]
    # top-p 0.6 then min-p keeps {0.5, 0.25}; min-p 0.25 first leaves {0.5, 0.25, 0.15}, whose 0.6 needs both too;
    # with top_p 0.55: default order keeps 0.5 and 0.25 (0.5 < 0.55); vLLM order renormalises over 0.9: 0.5/0.9 >= 0.55
    assert kept_mask(x, top_p=0.55, min_p=0.25, order=DEFAULT_ORDER).tolist() == [True, True, False, False]
    assert kept_mask(x, top_p=0.55, min_p=0.25, order=VLLM_ORDER).tolist() == [True, False, False, False]


def test_neg_inf_never_kept_and_row_errors_do_not_leak() -> None:
    x = np.array([[-np.inf, 0.0, -np.inf], [1.0, 1.0, 1.0]])
    assert kept_mask(x, top_k=3).tolist() == [[False, True, False], [True, True, True]]
    assert probabilities(x)[0].tolist() == [0.0, 1.0, 0.0]


def test_filter_logits_scales_and_removes() -> None:
    out = filter_logits(np.array([[2.0, 1.0, 0.0]]), temperature=2.0, top_k=2)
    assert out.dtype == np.float64
    assert out.tolist() == [[1.0, 0.5, -np.inf]]


def test_probabilities_sum_to_one_and_vanish_outside() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 200)) * 3
    p = probabilities(x, top_p=0.9, top_k=50, temperature=0.7)
    keep = kept_mask(x, top_p=0.9, top_k=50, temperature=0.7)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(p[~keep] == 0.0)
    assert np.all(p[keep] > 0.0)


def test_low_precision_input_is_upcast_exactly() -> None:
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(3, 500)) * 4).astype(np.float32)
    for low in (x.astype(np.float16), x.astype(ml_dtypes.bfloat16)):
        exact = np.asarray(low, dtype=np.float64)
        assert np.array_equal(kept_mask(low, top_p=0.95), kept_mask(exact, top_p=0.95))
        assert np.array_equal(filter_logits(low, top_k=7), filter_logits(exact, top_k=7))


def test_one_hot_rows_at_every_index_keep_the_maximum() -> None:
    """The postmortem's repro: a zero vector of 12000 with one 1.0; exact top-k 256 always keeps index i."""
    v = 12000
    idx = np.r_[0:v:97, 10230:10250, v - 10 : v]  # a spread, the postmortem's 10240 edge, and the end
    x = np.zeros((idx.size, v), dtype=np.float32)
    x[np.arange(idx.size), idx] = 1.0
    keep = kept_mask(x, top_k=256)
    assert keep[np.arange(idx.size), idx].all()
    assert (keep.sum(axis=1) == v).all()  # the other 11999 zeros tie with the 256th
    keep = kept_mask(x, top_p=0.0001)
    assert keep[np.arange(idx.size), idx].all()
    assert (keep.sum(axis=1) == 1).all()


def test_large_vocab_fast_path_matches_plain() -> None:
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(3, 131072)) * 2.5).astype(np.float32)
    x[0, 100_000] = 30.0
    for prm in (SamplingParams(top_p=0.9), SamplingParams(top_p=0.999, temperature=0.8), SamplingParams(top_k=50)):
        assert np.array_equal(kept_mask(x, prm), plain_kept_mask(x, prm))


def test_bf16_softmax_precision_trap_keeps_argmax() -> None:
    """The incident's mixed-precision top-p: peaked bf16 logits at p = 0.99 / 0.999 keep the argmax."""
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(64, 4096)) * 2).astype(ml_dtypes.bfloat16)
    x[:, 17] = 40.0
    for p in (0.9, 0.99, 0.999):
        keep = kept_mask(x, top_p=p, temperature=0.3)
        assert keep[:, 17].all()


# ---------------------------------------------------------------- exactness of the top-p boundary


def _fraction_topp_count(z: np.ndarray, p: float) -> int:
    """An independent oracle: the kept count by exact rationals over math.exp weights (levels kept whole)."""
    zs = sorted((float(v) for v in z if v > -math.inf), reverse=True)
    w = [Fraction(math.exp(v - zs[0])) for v in zs]
    total = sum(w, Fraction(0))
    acc = Fraction(0)
    for i, wi in enumerate(w):
        acc += wi
        if (i + 1 == len(zs) or zs[i + 1] != zs[i]) and acc >= Fraction(p) * total:
            return i + 1
    return len(zs)


def test_canonical_decision_matches_rational_oracle_at_exact_boundaries() -> None:
    rng = np.random.default_rng(4)
    for _ in range(200):
        v = int(rng.integers(2, 40))
        z = np.round(rng.normal(size=v) * 3, int(rng.integers(0, 3)))
        zs = np.sort(z)[::-1]
        w = [Fraction(math.exp(float(t - zs[0]))) for t in zs]
        j = int(rng.integers(0, v))
        # p placed exactly at (the float nearest to) a prefix mass: the hardest case for float arithmetic
        p = min(1.0, float(sum(w[: j + 1], Fraction(0)) / sum(w, Fraction(0))))
        if p <= 0.0:
            continue
        expected = _fraction_topp_count(z, p)
        level = canonical_topp_level(z, np.ones(v, dtype=bool), p)
        assert int((z >= level).sum()) == expected
        assert int(kept_mask(z, top_p=p).sum()) == expected


# ---------------------------------------------------------------- sampling


def test_sample_is_batch_invariant_with_seeds() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 300)) * 2
    seeds = np.arange(100, 106)
    together = sample(x, top_p=0.9, seeds=seeds)
    alone = [int(sample(x[i], top_p=0.9, seeds=[int(seeds[i])])) for i in range(6)]
    perm = rng.permutation(6)
    permuted = sample(x[perm], top_p=0.9, seeds=seeds[perm])
    assert together.tolist() == alone
    assert permuted.tolist() == together[perm].tolist()
    assert together.dtype == np.int64


def test_sample_never_leaves_the_kept_set_and_fits_the_distribution() -> None:
    """50,000 draws over a 12-token row: support exact, chi-square against :func:`probabilities` (alpha 1e-4)."""
    x = np.log(np.array([0.3, 0.2, 0.12, 0.1, 0.08, 0.06, 0.05, 0.04, 0.02, 0.015, 0.01, 0.005]))
    prm = SamplingParams(top_k=10, top_p=0.95, temperature=0.9)
    probs = probabilities(x, prm)
    draws = sample(np.tile(x, (50_000, 1)), prm, rng=np.random.default_rng(6))
    counts = np.bincount(draws, minlength=x.size)
    assert np.all(counts[probs == 0] == 0)
    kept = probs > 0
    result = stats.chisquare(counts[kept], probs[kept] * draws.size)
    assert result.pvalue > 1e-4


def test_greedy_sample_is_the_argmax() -> None:
    x = np.array([[0.0, 2.0, 2.0], [3.0, 0.0, 1.0]])
    assert sample(x, temperature=0.0, rng=np.random.default_rng(0)).tolist() == [1, 0]
