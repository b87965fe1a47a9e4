"""Two-sample tests: do two deployments produce the same distribution of completions?

Every test returns a :class:`TwoSampleResult` (``statistic`` and ``pvalue`` first, then ``n``, ``method``,
``null_distribution``, ``effect`` and ``min_detectable_effect``). Permutation p-values are ``(k + 1) / (B + 1)``,
never 0. Randomness is the keyword-only ``rng``.

Samples are grouped by prompt: ``reference[i]`` and ``candidate[i]`` hold the completions (or scores) drawn for
prompt ``i``. Permutations shuffle the reference/candidate labels *within* each prompt, which is exact under the
null whatever the per-prompt distributions are, and removes the between-prompt variance from the null.

The tests:

- :func:`mmd_hamming_test` - MMD with a Hamming kernel over codepoints padded to a fixed length, zero between
  different prompts (Gao, Liang and Guestrin, *Model Equality Testing*, ICLR 2025). Black-box, samples only.
- :func:`token_frequency_test` - a chi-square homogeneity statistic over per-prompt token counts (word tokens,
  the first word, and the Unicode script of non-ASCII characters), summed across prompts. Black-box and
  alignment-free: a change of a word early in a completion shifts every later character position, which blurs
  the Hamming kernel, but a bag of tokens sees it.
- :func:`loglik_shift_test` - the per-token log-likelihood of each completion under the *reference* model
  (teacher-forced scoring). A candidate that samples from a distorted distribution produces completions the
  reference finds less (or more) likely; the mean is a one-number summary with a known variance.
- :func:`argmax_rate_test` - how often the sampled tokens are the reference's argmax (same scoring pass): the
  signature of a sampler that drops the top token.
- :func:`next_token_divergence_test` - per-position next-token distributions on shared contexts from both
  endpoints, judged against the reference's own run-to-run noise floor by a paired sign-flip test.
- :func:`two_proportion_test` - detector flag rates (Fisher's exact test).
- :func:`holm` / :func:`combine` - Holm's step-down correction across all of them (controls the family-wise
  error rate under any dependence between the tests).

This module is the public surface; the text features (``_text``), the result object (``_result``) and Holm's
combination (``_holm``) live in private modules beside it.

>>> rng = np.random.default_rng(0)
>>> ref = [["the cat sat", "the cat ran"] * 5 for _ in range(4)]
>>> cand = [["a dog ran", "the cat ran"] * 5 for _ in range(4)]
>>> result = mmd_hamming_test(ref, cand, rng=rng)
>>> result.pvalue < 0.01, result.method
(True, 'mmd-hamming')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import product

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from parity._exceptions import InvalidInputError
from parity.stats._holm import CombinedResult, combine, holm
from parity.stats._result import TwoSampleResult
from parity.stats._text import DEFAULT_LENGTH, encode_completions, token_features
from parity.stats.power import mean_shift_mde, permutation_mde, proportion_mde

__all__ = [
    "DEFAULT_LENGTH",
    "DEFAULT_RESAMPLES",
    "CombinedResult",
    "PositionDivergence",
    "TwoSampleResult",
    "argmax_rate_test",
    "combine",
    "encode_completions",
    "holm",
    "loglik_shift_test",
    "mmd_hamming_test",
    "next_token_divergence_test",
    "position_divergence",
    "token_features",
    "token_frequency_test",
    "two_proportion_test",
]

#: Permutations per test: the p-value resolution is 1/1001, ample for alpha = 0.05 after a Holm correction over
#: about ten tests (the smallest Holm threshold is then 0.005).
DEFAULT_RESAMPLES = 1000


def _generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _check_resamples(n_resamples: int) -> None:
    if n_resamples < 1:
        raise InvalidInputError("n_resamples", "must be >= 1", n_resamples)


def _check_groups(reference: Sequence[Sequence[object]], candidate: Sequence[Sequence[object]]) -> None:
    if len(reference) != len(candidate):
        raise InvalidInputError(
            "candidate", f"must have one group per prompt like `reference` ({len(reference)} groups)", len(candidate)
        )
    if not any(len(r) and len(c) for r, c in zip(reference, candidate, strict=True)):
        raise InvalidInputError("reference", "must have at least one prompt with samples on both sides")


def _pvalue(observed: float, null: NDArray[np.float64]) -> float:
    # A tiny relative tolerance so that floating-point ties with the observed value count as "as extreme".
    tol = 1e-12 * max(1.0, abs(observed))
    k = int(np.count_nonzero(null >= observed - tol))
    return (k + 1) / (null.size + 1)


def _label_matrix(n_x: int, n_total: int, n_resamples: int, gen: np.random.Generator) -> NDArray[np.float64]:
    """Row 0: the observed labels (first ``n_x`` are reference); rows 1..: within-group permutations."""
    base = np.zeros(n_total)
    base[:n_x] = 1.0
    keys = gen.random((n_resamples, n_total))
    perms = np.argsort(keys, axis=1)
    return np.vstack([base[None, :], base[perms]])


def mmd_hamming_test(
    reference: Sequence[Sequence[str]],
    candidate: Sequence[Sequence[str]],
    *,
    length: int = DEFAULT_LENGTH,
    n_resamples: int = DEFAULT_RESAMPLES,
    alpha: float = 0.05,
    rng: np.random.Generator | int | None = None,
) -> TwoSampleResult:
    """MMD two-sample test with the Hamming kernel over completions, as in Model Equality Testing.

    ``k(x, y) = (1/L) * #{i < L : x_i == y_i}`` for completions of the same prompt (codepoints padded to ``L``),
    0 across prompts. The statistic is the unbiased MMD^2 estimate normalised by the number of same-prompt pairs;
    its null distribution comes from permuting labels within prompts. ``effect`` is MMD^2 minus its null mean.

    >>> same = [["abc", "abd", "xyz"]] * 3
    >>> mmd_hamming_test(same, same, rng=0).pvalue > 0.05
    True
    """
    _check_groups(reference, candidate)
    _check_resamples(n_resamples)
    gen = _generator(rng)
    n_xx = n_yy = n_xy = 0
    sums = np.zeros((n_resamples + 1, 3))
    per_prompt = []
    for ref_texts, cand_texts in zip(reference, candidate, strict=True):
        nx, ny = len(ref_texts), len(cand_texts)
        if nx == 0 or ny == 0:
            per_prompt.append(math.nan)
            continue
        codes = encode_completions([*ref_texts, *cand_texts], length=length)
        kernel = (codes[:, None, :] == codes[None, :, :]).mean(axis=2)
        np.fill_diagonal(kernel, 0.0)
        labels = _label_matrix(nx, nx + ny, n_resamples, gen)
        weighted = labels @ kernel
        s_xx = np.einsum("pi,pi->p", weighted, labels)
        s_xy = np.einsum("pi,pi->p", weighted, 1.0 - labels)
        s_yy = kernel.sum() - s_xx - 2.0 * s_xy
        sums += np.stack([s_xx, s_xy, s_yy], axis=1)
        n_xx += nx * (nx - 1)
        n_yy += ny * (ny - 1)
        n_xy += nx * ny
        px = s_xx[0] / max(nx * (nx - 1), 1)
        py = s_yy[0] / max(ny * (ny - 1), 1)
        per_prompt.append(float(px + py - 2.0 * s_xy[0] / (nx * ny)))
    mmd = sums[:, 0] / max(n_xx, 1) - 2.0 * sums[:, 1] / max(n_xy, 1) + sums[:, 2] / max(n_yy, 1)
    observed, null = float(mmd[0]), mmd[1:]
    n = sum(min(len(r), len(c)) for r, c in zip(reference, candidate, strict=True))
    return TwoSampleResult(
        statistic=observed,
        pvalue=_pvalue(observed, null),
        n=n,
        method="mmd-hamming",
        null_distribution=null,
        effect=observed - float(null.mean()),
        min_detectable_effect=permutation_mde(null, alpha=alpha) if null.size > 1 else math.nan,
        details={"per_prompt": per_prompt, "length": length},
    )


def token_frequency_test(
    reference: Sequence[Sequence[str]],
    candidate: Sequence[Sequence[str]],
    *,
    features: Callable[[str], Mapping[str, int]] = token_features,
    n_resamples: int = DEFAULT_RESAMPLES,
    alpha: float = 0.05,
    rng: np.random.Generator | int | None = None,
) -> TwoSampleResult:
    """Per-prompt token-frequency test: chi-square homogeneity statistics summed over prompts, permutation null.

    For each prompt and feature ``v`` with reference count ``a`` and candidate count ``b`` (completions rescaled to
    equal totals when the sides differ in size) the contribution is ``(a - b)^2 / (a + b)``. A feature seen once in
    a prompt contributes the same under every permutation and so carries no weight in the p-value; the statistic
    listens to features that recur. ``effect`` is the statistic minus its null mean (in chi-square units).

    >>> ref = [["the cat sat down"] * 12]
    >>> cand = [["the cat sat down"] * 6 + ["the dog ran off"] * 6]
    >>> token_frequency_test(ref, cand, rng=0).pvalue < 0.05
    True
    """
    _check_groups(reference, candidate)
    _check_resamples(n_resamples)
    gen = _generator(rng)
    totals = np.zeros(n_resamples + 1)
    per_prompt = []
    for ref_texts, cand_texts in zip(reference, candidate, strict=True):
        nx, ny = len(ref_texts), len(cand_texts)
        if nx == 0 or ny == 0:
            per_prompt.append(math.nan)
            continue
        rows = [features(t) for t in [*ref_texts, *cand_texts]]
        vocab = sorted({key for row in rows for key in row})
        if not vocab:
            per_prompt.append(0.0)
            continue
        index = {key: j for j, key in enumerate(vocab)}
        matrix = np.zeros((nx + ny, len(vocab)))
        for i, row in enumerate(rows):
            for key, count in row.items():
                matrix[i, index[key]] = count
        labels = _label_matrix(nx, nx + ny, n_resamples, gen)
        scale_x, scale_y = (nx + ny) / (2.0 * nx), (nx + ny) / (2.0 * ny)
        counts_x = (labels @ matrix) * scale_x
        counts_y = ((1.0 - labels) @ matrix) * scale_y
        total = counts_x + counts_y
        with np.errstate(divide="ignore", invalid="ignore"):
            contrib = np.where(total > 0, (counts_x - counts_y) ** 2 / total, 0.0)
        prompt_stat = contrib.sum(axis=1)
        totals += prompt_stat
        per_prompt.append(float(prompt_stat[0] - prompt_stat[1:].mean()))
    observed, null = float(totals[0]), totals[1:]
    n = sum(min(len(r), len(c)) for r, c in zip(reference, candidate, strict=True))
    return TwoSampleResult(
        statistic=observed,
        pvalue=_pvalue(observed, null),
        n=n,
        method="token-frequency-chi2",
        null_distribution=null,
        effect=observed - float(null.mean()),
        min_detectable_effect=permutation_mde(null, alpha=alpha) if null.size > 1 else math.nan,
        details={"per_prompt": per_prompt},
    )


def argmax_rate_test(
    reference: Sequence[Sequence[float]],
    candidate: Sequence[Sequence[float]],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    alpha: float = 0.05,
    rng: np.random.Generator | int | None = None,
) -> TwoSampleResult:
    """Two-sided test for a change in how often sampled tokens are the reference model's argmax.

    ``reference[i]`` / ``candidate[i]``: per completion sampled for prompt ``i``, the fraction of its tokens that
    were the reference model's most likely next token (teacher-forced scoring under the reference). A sampler that
    drops the argmax (an approximate top-k that misses it, a top-p whose threshold and comparison disagree in
    precision) or a sharper/flatter sampler moves this rate while leaving the model's logits untouched - the
    teacher-forced per-position test cannot see it, and the rank information is denser than the log-likelihood.
    Same stratified permutation as :func:`loglik_shift_test`; ``effect`` is ``reference - candidate``.

    >>> r = argmax_rate_test([[0.6, 0.7, 0.65] * 4] * 5, [[0.4, 0.5, 0.45] * 4] * 5, rng=0)
    >>> r.pvalue < 0.01, round(r.effect, 2), r.method
    (True, 0.2, 'argmax-rate')
    """
    result = loglik_shift_test(reference, candidate, n_resamples=n_resamples, alpha=alpha, rng=rng)
    return replace(result, method="argmax-rate")


def loglik_shift_test(
    reference: Sequence[Sequence[float]],
    candidate: Sequence[Sequence[float]],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    alpha: float = 0.05,
    rng: np.random.Generator | int | None = None,
) -> TwoSampleResult:
    """Two-sided test for a shift in per-token log-likelihood under the reference model, stratified by prompt.

    ``reference[i]`` / ``candidate[i]``: the mean per-token log-likelihood (nats), under the reference model, of
    each completion each side sampled for prompt ``i``. The statistic is the absolute difference of the
    prompt-weighted means; ``effect`` is the signed difference ``reference - candidate`` (positive: the candidate's
    completions are less likely under the reference) in nats per token.

    >>> rng = np.random.default_rng(0)
    >>> ref = [list(rng.normal(-2.0, 0.3, 10)) for _ in range(10)]
    >>> cand = [list(rng.normal(-2.3, 0.3, 10)) for _ in range(10)]
    >>> r = loglik_shift_test(ref, cand, rng=1)
    >>> r.pvalue < 0.01, round(r.effect, 1)
    (True, 0.3)
    """
    _check_groups(reference, candidate)
    _check_resamples(n_resamples)
    gen = _generator(rng)
    diffs = np.zeros(n_resamples + 1)
    weights = 0
    residuals: list[float] = []
    per_prompt = []
    for ref_scores, cand_scores in zip(reference, candidate, strict=True):
        nx, ny = len(ref_scores), len(cand_scores)
        if nx == 0 or ny == 0:
            per_prompt.append(math.nan)
            continue
        values = np.asarray([*ref_scores, *cand_scores], dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise InvalidInputError("reference", "scores must be finite log-likelihoods")
        labels = _label_matrix(nx, nx + ny, n_resamples, gen)
        mean_x = labels @ values / nx
        mean_y = (1.0 - labels) @ values / ny
        diffs += mean_x - mean_y
        weights += 1
        per_prompt.append(float(mean_x[0] - mean_y[0]))
        residuals.extend(values[:nx] - values[:nx].mean())
        residuals.extend(values[nx:] - values[nx:].mean())
    diffs /= max(weights, 1)
    effect = float(diffs[0])
    observed, null = abs(effect), np.abs(diffs[1:])
    n = sum(min(len(r), len(c)) for r, c in zip(reference, candidate, strict=True))
    sd = float(np.std(residuals, ddof=1)) if len(residuals) > 1 else 0.0
    return TwoSampleResult(
        statistic=observed,
        pvalue=_pvalue(observed, null),
        n=n,
        method="loglik-shift",
        null_distribution=null,
        effect=effect,
        min_detectable_effect=mean_shift_mde(sd, max(n, 1), alpha=alpha),
        details={"per_prompt": per_prompt, "sd": sd},
    )


@dataclass(frozen=True)
class PositionDivergence:
    """Divergence between two next-token distributions at each position of one shared context.

    ``tv``: a lower bound on the total variation distance from the two top-k lists (a token missing from one
    list is given the largest probability that list allows, capped at the other side's). ``log_ratio``: the
    difference of log-probabilities of the actual context token (reference minus other); its mean over contexts
    sampled from the reference estimates KL(reference || other). ``top1``: whether the argmax tokens agree.
    """

    tv: NDArray[np.float64]
    log_ratio: NDArray[np.float64]
    top1: NDArray[np.bool_]

    @property
    def mean_tv(self) -> float:
        """Mean TV lower bound over positions (0 for an empty context)."""
        return float(self.tv.mean()) if self.tv.size else 0.0


def _tv_lower_bound(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    if not a or not b:
        return 0.0
    floor_a = math.exp(min(a.values()))
    floor_b = math.exp(min(b.values()))
    total = 0.0
    for token in a.keys() | b.keys():
        pa = math.exp(a[token]) if token in a else None
        pb = math.exp(b[token]) if token in b else None
        if pa is None and pb is not None:
            pa = min(floor_a, pb)
        if pb is None and pa is not None:
            pb = min(floor_b, pa)
        total += abs((pa or 0.0) - (pb or 0.0))
    return 0.5 * total


def position_divergence(
    reference_logprobs: Sequence[float],
    reference_top: Sequence[Mapping[str, float]],
    other_logprobs: Sequence[float],
    other_top: Sequence[Mapping[str, float]],
) -> PositionDivergence:
    """Per-position divergence of two teacher-forced passes over the same tokens (see :class:`PositionDivergence`).

    >>> d = position_divergence([-0.1], [{"a": -0.1, "b": -2.4}], [-0.7], [{"a": -0.7, "b": -0.7}])
    >>> round(d.mean_tv, 3), bool(d.top1[0])
    (0.407, True)
    """
    n = len(reference_logprobs)
    if not (len(reference_top) == len(other_logprobs) == len(other_top) == n):
        raise InvalidInputError(
            "other_logprobs", "must cover the same positions as `reference_logprobs`", len(other_logprobs)
        )
    tv = np.array([_tv_lower_bound(a, b) for a, b in zip(reference_top, other_top, strict=True)], dtype=np.float64)
    log_ratio = np.asarray(reference_logprobs, dtype=np.float64) - np.asarray(other_logprobs, dtype=np.float64)
    top1 = np.array(
        [
            bool(a) and bool(b) and max(a, key=a.__getitem__) == max(b, key=b.__getitem__)
            for a, b in zip(reference_top, other_top, strict=True)
        ],
        dtype=bool,
    )
    return PositionDivergence(tv=tv, log_ratio=log_ratio, top1=top1)


def next_token_divergence_test(
    candidate: Sequence[PositionDivergence],
    noise: Sequence[PositionDivergence],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    alpha: float = 0.05,
    rng: np.random.Generator | int | None = None,
) -> TwoSampleResult:
    """Is the candidate further from the reference than the reference is from itself?

    ``candidate[i]``: divergence of the reference's pass over context ``i`` from the candidate's pass;
    ``noise[i]``: from a second reference pass (another batch size). Under the null the candidate is one more run
    of the reference, so the paired differences of mean TV are symmetric about 0; the statistic is their mean and
    the null comes from random sign flips (enumerated exactly for up to 12 contexts). One-sided. ``effect`` is the
    mean TV above the noise floor; ``details`` carries KL and top-1 agreement for both passes.

    >>> z = np.zeros(3)
    >>> same = PositionDivergence(z, z, np.ones(3, dtype=bool))
    >>> off = PositionDivergence(np.full(3, 0.2), np.full(3, 0.1), np.ones(3, dtype=bool))
    >>> next_token_divergence_test([off] * 20, [same] * 20, rng=0).pvalue < 0.001
    True
    """
    if len(candidate) != len(noise):
        raise InvalidInputError("noise", f"must pair one noise pass with each of {len(candidate)} contexts", len(noise))
    if not candidate:
        raise InvalidInputError("candidate", "must hold at least one context")
    _check_resamples(n_resamples)
    gen = _generator(rng)
    diffs = np.array([c.mean_tv - z.mean_tv for c, z in zip(candidate, noise, strict=True)])
    n = diffs.size
    if n <= 12:
        signs = np.array(list(product((1.0, -1.0), repeat=n)))
    else:
        signs = gen.choice(np.array([1.0, -1.0]), size=(n_resamples, n))
    null = (signs * diffs).mean(axis=1)
    observed = float(diffs.mean())
    if n <= 12:
        k = int(np.count_nonzero(null >= observed - 1e-12 * max(1.0, abs(observed))))
        pvalue = k / null.size
    else:
        pvalue = _pvalue(observed, null)

    def pooled(items: Sequence[PositionDivergence], attr: str) -> float:
        arrays = [getattr(item, attr) for item in items if getattr(item, attr).size]
        return float(np.concatenate(arrays).astype(np.float64).mean()) if arrays else math.nan

    sd = float(diffs.std(ddof=1)) if n > 1 else 0.0
    mde = mean_shift_mde(sd, n, alpha=alpha, two_sided=False) / math.sqrt(2.0)
    return TwoSampleResult(
        statistic=observed,
        pvalue=pvalue,
        n=n,
        method="next-token-tv-vs-noise",
        null_distribution=null,
        effect=observed,
        min_detectable_effect=mde,
        details={
            "candidate_tv": pooled(candidate, "tv"),
            "noise_tv": pooled(noise, "tv"),
            "candidate_kl": pooled(candidate, "log_ratio"),
            "noise_kl": pooled(noise, "log_ratio"),
            "candidate_top1": pooled(candidate, "top1"),
            "noise_top1": pooled(noise, "top1"),
            "per_context": diffs.tolist(),
        },
    )


def two_proportion_test(
    reference_flagged: int,
    reference_n: int,
    candidate_flagged: int,
    candidate_n: int,
    *,
    alpha: float = 0.05,
) -> TwoSampleResult:
    """Do two flag rates differ? Fisher's exact test, two-sided (valid at any count, zeros included).

    ``statistic`` is the candidate rate minus the reference rate (also ``effect``); ``min_detectable_effect`` the
    smallest increase over the reference rate detectable at this size (normal approximation, 80% power).

    >>> r = two_proportion_test(1, 500, 15, 500)
    >>> r.pvalue < 0.001, r.effect
    (True, 0.028)
    """
    for name, value in (("reference_n", reference_n), ("candidate_n", candidate_n)):
        if value < 1:
            raise InvalidInputError(name, "must be >= 1", value)
    if not 0 <= reference_flagged <= reference_n:
        raise InvalidInputError("reference_flagged", f"must be in [0, {reference_n}]", reference_flagged)
    if not 0 <= candidate_flagged <= candidate_n:
        raise InvalidInputError("candidate_flagged", f"must be in [0, {candidate_n}]", candidate_flagged)
    table = [[reference_flagged, reference_n - reference_flagged], [candidate_flagged, candidate_n - candidate_flagged]]
    pvalue = float(stats.fisher_exact(table).pvalue)
    p_ref, p_cand = reference_flagged / reference_n, candidate_flagged / candidate_n
    effect = p_cand - p_ref
    base = min(p_ref, 1.0 - 1e-9)
    return TwoSampleResult(
        statistic=effect,
        pvalue=min(1.0, pvalue),
        n=min(reference_n, candidate_n),
        method="fisher-exact",
        effect=effect,
        min_detectable_effect=proportion_mde(base, min(reference_n, candidate_n), alpha=alpha),
        details={"reference_rate": p_ref, "candidate_rate": p_cand},
    )
