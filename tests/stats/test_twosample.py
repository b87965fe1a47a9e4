"""Two-sample tests: calibration under the null, power under alternatives, validation, Holm."""

from __future__ import annotations

import numpy as np
import pytest

from parity._exceptions import InvalidInputError
from parity.stats.twosample import (
    PositionDivergence,
    argmax_rate_test,
    combine,
    encode_completions,
    holm,
    loglik_shift_test,
    mmd_hamming_test,
    next_token_divergence_test,
    position_divergence,
    token_frequency_test,
    two_proportion_test,
)

WORDS = np.array(["the ", "cat ", "sat ", "on ", "mat ", "dog ", "ran ", "far ", "a ", "sun "])


def draw(rng: np.random.Generator, probs: np.ndarray, n_prompts: int, per_prompt: int) -> list[list[str]]:
    """Completions of 6 words from a per-prompt unigram distribution (rows of ``probs``)."""
    return [
        ["".join(rng.choice(WORDS, size=6, p=probs[i % len(probs)])) for _ in range(per_prompt)]
        for i in range(n_prompts)
    ]


def base_probs(rng: np.random.Generator) -> np.ndarray:
    return rng.dirichlet(np.ones(len(WORDS)), size=4)


@pytest.mark.parametrize("test", [mmd_hamming_test, token_frequency_test])
def test_null_rejection_rate_is_at_most_alpha(test, rng: np.random.Generator) -> None:
    probs = base_probs(rng)
    pvalues = [test(draw(rng, probs, 4, 6), draw(rng, probs, 4, 6), n_resamples=99, rng=rng).pvalue for _ in range(60)]
    # 60 repetitions at alpha 0.05: expect 3 rejections; 9 or more has probability < 0.5% under a calibrated test.
    assert sum(p <= 0.05 for p in pvalues) <= 8
    assert min(pvalues) >= 1 / 100  # (k + 1) / (B + 1): never 0


def test_token_frequency_is_more_powerful_than_mmd_on_a_word_shift(rng: np.random.Generator) -> None:
    probs = base_probs(rng)
    shifted = 0.8 * probs
    shifted[:, 5] += 0.2  # 20% of words become "dog", wherever they fall: position-aligned kernels blur this
    hits = {"mmd": 0, "freq": 0}
    for _ in range(20):
        ref, cand = draw(rng, probs, 4, 8), draw(rng, shifted, 4, 8)
        hits["mmd"] += mmd_hamming_test(ref, cand, n_resamples=199, rng=rng).pvalue <= 0.05
        hits["freq"] += token_frequency_test(ref, cand, n_resamples=199, rng=rng).pvalue <= 0.05
    # measured: 19/20 against 2/20 (seeded); a margin of 8 leaves room for numpy version changes
    assert hits["freq"] >= hits["mmd"] + 8


def test_mmd_detects_a_large_change_and_reports_effect(rng: np.random.Generator) -> None:
    ref = [["aaaa"] * 8, ["bbbb"] * 8]
    cand = [["zzzz"] * 8, ["bbbb"] * 8]
    result = mmd_hamming_test(ref, cand, rng=rng)
    assert result.pvalue <= 0.01
    assert result.effect > result.min_detectable_effect > 0
    assert result.null_distribution is not None
    assert result.null_distribution.size == 1000
    assert result.details["per_prompt"][0] > result.details["per_prompt"][1]


def test_encode_pads_and_truncates() -> None:
    codes = encode_completions(["abc", ""], length=2)
    assert codes.tolist() == [[97, 98], [-1, -1]]
    with pytest.raises(InvalidInputError, match="`length` must be >= 1"):
        encode_completions(["a"], length=0)


def test_group_validation() -> None:
    with pytest.raises(InvalidInputError, match="`candidate` must have one group per prompt"):
        mmd_hamming_test([["a"]], [["a"], ["b"]])
    with pytest.raises(InvalidInputError, match="`reference` must have at least one prompt"):
        token_frequency_test([[]], [["a"]])
    with pytest.raises(InvalidInputError, match="`n_resamples` must be >= 1"):
        loglik_shift_test([[1.0]], [[1.0]], n_resamples=0)
    with pytest.raises(InvalidInputError, match="scores must be finite"):
        loglik_shift_test([[float("nan")]], [[1.0]])


def test_loglik_shift_null_and_alternative(rng: np.random.Generator) -> None:
    null_p = [
        loglik_shift_test(
            [list(rng.normal(-2, 0.4, 8)) for _ in range(5)],
            [list(rng.normal(-2, 0.4, 8)) for _ in range(5)],
            n_resamples=99,
            rng=rng,
        ).pvalue
        for _ in range(60)
    ]
    assert sum(p <= 0.05 for p in null_p) <= 8
    ref = [list(rng.normal(-2.0, 0.4, 20)) for _ in range(10)]
    cand = [list(rng.normal(-2.2, 0.4, 20)) for _ in range(10)]
    result = loglik_shift_test(ref, cand, rng=rng)
    assert result.pvalue < 0.01
    assert result.effect == pytest.approx(0.2, abs=0.08)
    # the analytic MDE at n = 200 per side: (1.96 + 0.84) * sd * sqrt(2 / 200), sd estimated within prompts
    sd = float(result.details["sd"])
    assert 0.33 < sd < 0.45
    assert result.min_detectable_effect == pytest.approx(2.8016 * sd * 0.1, rel=1e-3)


def test_argmax_rate_detects_a_sampler_that_drops_the_top_token(rng: np.random.Generator) -> None:
    # the reference picks its argmax at 60% of steps; the candidate loses it at 1 step in 10 (an approximate top-k
    # miss): 24-token completions, 8 per prompt, 10 prompts
    ref = [list(rng.binomial(24, 0.6, 8) / 24) for _ in range(10)]
    cand = [list(rng.binomial(24, 0.54, 8) / 24) for _ in range(10)]
    result = argmax_rate_test(ref, cand, rng=rng)
    assert result.method == "argmax-rate"
    assert result.pvalue < 0.05
    assert result.effect > 0


def test_position_divergence_identical_is_zero() -> None:
    top = [{"a": -0.2, "b": -1.8}, {"c": -0.05}]
    d = position_divergence([-0.2, -0.05], top, [-0.2, -0.05], top)
    assert d.mean_tv == 0.0
    assert d.top1.all()
    assert np.all(d.log_ratio == 0)
    with pytest.raises(InvalidInputError, match="`other_logprobs` must cover the same positions"):
        position_divergence([-0.2], top[:1], [], [])


def test_position_divergence_flags_a_dropped_argmax() -> None:
    ref_top = [{"a": np.log(0.6), "b": np.log(0.3)}]
    other_top = [{"b": np.log(0.7), "c": np.log(0.2)}]  # the argmax "a" vanished
    d = position_divergence([np.log(0.3)], ref_top, [np.log(0.7)], other_top)
    assert not d.top1[0]
    assert d.mean_tv >= 0.4 - 1e-12  # at least |0.6 - 0.2| + |0.3 - 0.7| ... halved, with "c" bounded by the floor


def test_next_token_divergence_against_noise(rng: np.random.Generator) -> None:
    def item(scale: float) -> PositionDivergence:
        tv = np.abs(rng.normal(0, scale, 10))
        return PositionDivergence(tv, rng.normal(0, scale, 10), np.ones(10, dtype=bool))

    same = next_token_divergence_test([item(0.01) for _ in range(30)], [item(0.01) for _ in range(30)], rng=rng)
    worse = next_token_divergence_test([item(0.05) for _ in range(30)], [item(0.01) for _ in range(30)], rng=rng)
    assert worse.pvalue < 0.01 < same.pvalue
    assert worse.details["candidate_tv"] > worse.details["noise_tv"]
    with pytest.raises(InvalidInputError, match="`noise` must pair one noise pass"):
        next_token_divergence_test([item(0.1)], [])


def test_two_proportion() -> None:
    assert two_proportion_test(0, 200, 0, 200).pvalue == 1.0
    result = two_proportion_test(2, 1000, 20, 1000)
    assert result.pvalue < 0.001
    assert result.effect == pytest.approx(0.018)
    assert 0 < result.min_detectable_effect < 0.02
    with pytest.raises(InvalidInputError, match=r"`candidate_flagged` must be in \[0, 10\]"):
        two_proportion_test(0, 10, 11, 10)
    with pytest.raises(InvalidInputError, match="`reference_n` must be >= 1"):
        two_proportion_test(0, 0, 0, 10)


def test_holm_matches_the_definition() -> None:
    p = [0.001, 0.02, 0.03, 0.5]
    assert holm(p).tolist() == pytest.approx([0.004, 0.06, 0.06, 0.5])
    with pytest.raises(InvalidInputError, match="`pvalues` must be"):
        holm([1.5])
    with pytest.raises(InvalidInputError, match=r"`alpha` must be in \(0, 1\)"):
        combine({}, alpha=0)
