"""Tests on per-token checks against a reference sampler: support violations and PIT calibration.

Two questions a reference can answer token by token when it scores a candidate's completions:

- *Could the reference have drawn this token here?* A token outside the set the reference's sampler keeps at that
  position has probability 0 under the null, up to the reference's own numerical noise. :func:`violation_rate_test`
  compares the candidate's violation rate with the rate the reference's *own* samples show when scored the same
  way (the noise floor: batch composition, decode vs prefill rounding, re-tokenisation), by a permutation of the
  endpoint labels of whole completions within each prompt. One-sided: only a higher candidate rate rejects.
- *Is each sampled token as likely as it should be?* The randomised probability-integral transform (PIT) of a
  sampled token under the reference's filtered distribution ``q`` is ``F(t-) + U q(t)`` with ``F(t-)`` the mass of
  the tokens ranked before ``t`` and ``U ~ Uniform(0, 1)``. Under the null it is Uniform(0, 1), and along one
  completion the PITs are independent (each is uniform given the prefix, Rosenblatt's transform), so all tokens
  of all completions form one i.i.d. uniform sample. :func:`pit_uniformity_test` tests that with two statistics,
  Bonferroni-corrected for the choice: a Cramer-von Mises test over every token (a sampler that moves mass between
  the head and the tail of the kept set everywhere) and, per prompt, the squared z-score of the mean PIT summed
  into a chi-square (a distortion confined to some prompts, which a pooled test dilutes).

Both return :class:`~parity.stats.twosample.TwoSampleResult` so they combine with the other tests under Holm's
correction; permutation p-values are ``(k + 1) / (B + 1)`` and the analytic ones are floored at
:data:`MIN_PVALUE`, so no p-value is exactly 0.

>>> r = violation_rate_test([[(0, 30)] * 4] * 8, [[(1, 30)] * 4] * 8, rng=0)
>>> r.pvalue < 0.01, round(r.effect, 4), r.method
(True, 0.0333, 'support-violation')
>>> violation_floor_test([[(0, 30)] * 4] * 8, [[(0, 30)] * 3 + [(3, 30)]] + [[(0, 30)] * 4] * 7).pvalue < 0.002
True
>>> u = np.random.default_rng(0).random((10, 40))
>>> pit_uniformity_test(u.tolist()).pvalue > 0.05
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from parity._exceptions import InvalidInputError
from parity.stats.power import proportion_mde, tolerance_rate_mde
from parity.stats.twosample import DEFAULT_RESAMPLES, TwoSampleResult

__all__ = ["DEFAULT_TOLERANCE_RATE", "MIN_PVALUE", "pit_uniformity_test", "violation_floor_test", "violation_rate_test"]

#: Per-token violation rate the reference's own sampler is allowed before a candidate's excess counts (see
#: :func:`violation_floor_test`): above the lab's measured floor on the token-id path (0 violations in every
#: reference-vs-reference run, about 1,000 decided tokens a side each; docs/compare.md) and small enough that 3
#: violating tokens in 1,000 reject under Holm over 9 tests.
DEFAULT_TOLERANCE_RATE = 2e-4

#: Floor of analytic p-values (float64 cannot tell smaller tail probabilities from rounding in their computation).
MIN_PVALUE = 1e-16


def _generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def violation_rate_test(
    reference: Sequence[Sequence[tuple[int, int]]],
    candidate: Sequence[Sequence[tuple[int, int]]],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    alpha: float = 0.05,
    rng: np.random.Generator | int | None = None,
) -> TwoSampleResult:
    """One-sided test: does the candidate violate the reference's kept sets more often than the reference does?

    ``reference[i]`` / ``candidate[i]``: for each completion of prompt ``i``, ``(violations, decided)``: how many of
    its tokens lay outside the reference's kept set, out of the tokens whose membership could be decided. The
    statistic is the candidate's pooled violation rate minus the reference's; its null distribution comes from
    permuting the labels of whole completions within each prompt (exact under the null whatever the prompts and
    however violations cluster inside a completion). ``effect`` is the same difference; ``details`` carry both
    rates and counts. With a reference floor of 0 violations, a candidate needs about ``log2(1/alpha)`` violating
    completions, each in a different permutation unit, to reject.

    >>> violation_rate_test([[(0, 10), (0, 10)]], [[(0, 10), (0, 10)]], rng=0).pvalue
    1.0
    """
    if len(reference) != len(candidate):
        raise InvalidInputError("candidate", f"must have one group per prompt like `reference` ({len(reference)})")
    if n_resamples < 1:
        raise InvalidInputError("n_resamples", "must be >= 1", n_resamples)
    gen = _generator(rng)
    stat = np.zeros(n_resamples + 1)
    ref_v = np.zeros(n_resamples + 1)
    ref_n = np.zeros(n_resamples + 1)
    cand_v = np.zeros(n_resamples + 1)
    cand_n = np.zeros(n_resamples + 1)
    for ref_items, cand_items in zip(reference, candidate, strict=True):
        items = [*ref_items, *cand_items]
        if not items:
            continue
        values = np.asarray(items, dtype=np.float64).reshape(-1, 2)
        if np.any(values < 0) or np.any(values[:, 0] > values[:, 1]):
            raise InvalidInputError("reference", "items must be (violations, decided) with 0 <= violations <= decided")
        nx = len(ref_items)
        labels = np.zeros((n_resamples + 1, len(items)))
        labels[0, :nx] = 1.0
        if n_resamples:
            labels[1:] = gen.permuted(np.broadcast_to(labels[0], (n_resamples, len(items))), axis=1)
        ref_v += labels @ values[:, 0]
        ref_n += labels @ values[:, 1]
        cand_v += (1.0 - labels) @ values[:, 0]
        cand_n += (1.0 - labels) @ values[:, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        stat = np.where(cand_n > 0, cand_v / np.maximum(cand_n, 1), 0.0) - np.where(
            ref_n > 0, ref_v / np.maximum(ref_n, 1), 0.0
        )
    observed = float(stat[0])
    null = stat[1:]
    tol = 1e-12 * max(1.0, abs(observed))
    k = int(np.count_nonzero(null >= observed - tol))
    pvalue = (k + 1) / (null.size + 1)
    ref_rate = float(ref_v[0] / ref_n[0]) if ref_n[0] else 0.0
    cand_rate = float(cand_v[0] / cand_n[0]) if cand_n[0] else 0.0
    n_tokens = int(min(ref_n[0], cand_n[0]))
    return TwoSampleResult(
        statistic=observed,
        pvalue=pvalue,
        n=n_tokens,
        method="support-violation",
        null_distribution=null,
        effect=observed,
        min_detectable_effect=proportion_mde(min(ref_rate, 1 - 1e-9), max(n_tokens, 1), alpha=alpha)
        if n_tokens
        else math.nan,
        details={
            "reference_rate": ref_rate,
            "candidate_rate": cand_rate,
            "reference_violations": int(ref_v[0]),
            "candidate_violations": int(cand_v[0]),
            "reference_decided": int(ref_n[0]),
            "candidate_decided": int(cand_n[0]),
        },
    )


def violation_floor_test(
    reference: Sequence[Sequence[tuple[int, int]]],
    candidate: Sequence[Sequence[tuple[int, int]]],
    *,
    tolerance: float = DEFAULT_TOLERANCE_RATE,
    n_resamples: int = DEFAULT_RESAMPLES,
    alpha: float = 0.05,
    rng: np.random.Generator | int | None = None,
) -> TwoSampleResult:
    """One-sided exact test of the candidate's violations against a stated per-token tolerance, for a reference
    whose own floor is (near) zero. Same inputs as :func:`violation_rate_test`.

    Null: each decided candidate token lies outside the reference's kept set independently with probability at
    most ``tolerance`` (the reference's numerical noise, stated, not estimated). With ``c`` violations in ``n``
    decided tokens the p-value is ``P(Binomial(n, tolerance) >= c)`` (1 when ``c = 0``), floored at
    :data:`MIN_PVALUE`. Where :func:`violation_rate_test` counts violating *completions* (a zero floor needs about
    ``log2(1/alpha)`` of them), this counts violating *tokens*: at 1,000 decided tokens and ``tolerance`` 2e-4, 3
    violating tokens reach ``p = 1.1e-3``, under Holm's smallest threshold for 9 tests.

    The tolerance is checked on the run itself: the reference's own samples, scored the same way, must not reject
    it (``P(Binomial(n_ref, tolerance) >= r) > alpha``). When they do, the stated floor is wrong for this
    reference (re-tokenised text, a noisy kernel) and the test falls back to :func:`violation_rate_test`'s
    permutation against the measured floor; ``details["fallback"]`` then says why. The false-positive rate is at
    most ``alpha`` when the reference's true per-token rate is at most ``tolerance`` and violations are
    independent across tokens; a floor above the tolerance that the reference's own check misses can inflate it,
    which is why the runner's reference-vs-reference validation matters (docs/compare.md).

    >>> r = violation_floor_test([[(0, 500)] * 2], [[(2, 500), (1, 500)]])
    >>> r.method, r.details["candidate_violations"], r.pvalue < 0.002
    ('violation-floor-binomial', 3, True)
    >>> violation_floor_test([[(0, 500)] * 2], [[(0, 500), (0, 500)]]).pvalue
    1.0
    >>> violation_floor_test([[(30, 500)] * 2], [[(30, 500)] * 2], rng=0).details["fallback"][:30]
    "the reference's own violations"
    """
    if not 0.0 <= tolerance < 1.0:
        raise InvalidInputError("tolerance", "must be a per-token rate in [0, 1)", tolerance)
    if len(reference) != len(candidate):
        raise InvalidInputError("candidate", f"must have one group per prompt like `reference` ({len(reference)})")
    for side in (reference, candidate):
        for items in side:
            for v, d in items:
                if v < 0 or v > d:
                    raise InvalidInputError(
                        "reference", "items must be (violations, decided) with 0 <= violations <= decided"
                    )
    r = sum(v for g in reference for v, _ in g)
    n_r = sum(d for g in reference for _, d in g)
    c = sum(v for g in candidate for v, _ in g)
    n_c = sum(d for g in candidate for _, d in g)
    ref_p = float(stats.binom.sf(r - 1, n_r, tolerance)) if r else 1.0
    counts = {
        "reference_rate": r / n_r if n_r else 0.0,
        "candidate_rate": c / n_c if n_c else 0.0,
        "reference_violations": r,
        "candidate_violations": c,
        "reference_decided": n_r,
        "candidate_decided": n_c,
        "tolerance_rate": tolerance,
        "reference_floor_pvalue": ref_p,
    }
    if ref_p <= alpha:
        fallback = violation_rate_test(reference, candidate, n_resamples=n_resamples, alpha=alpha, rng=rng)
        reason = (
            f"the reference's own violations ({r} of {n_r} tokens) reject the stated tolerance {tolerance:g} "
            f"(p = {ref_p:.2g}); compared with the reference's measured floor by permutation instead"
        )
        return TwoSampleResult(
            statistic=fallback.statistic,
            pvalue=fallback.pvalue,
            n=fallback.n,
            method=fallback.method,
            null_distribution=fallback.null_distribution,
            effect=fallback.effect,
            min_detectable_effect=fallback.min_detectable_effect,
            details={**fallback.details, **counts, "fallback": reason},
        )
    pvalue = max(float(stats.binom.sf(c - 1, n_c, tolerance)), MIN_PVALUE) if c else 1.0
    return TwoSampleResult(
        statistic=float(c),
        pvalue=pvalue,
        n=int(n_c),
        method="violation-floor-binomial",
        effect=counts["candidate_rate"] - counts["reference_rate"],
        min_detectable_effect=tolerance_rate_mde(n_c, tolerance=tolerance, alpha=alpha) if n_c else math.nan,
        details=counts,
    )


def pit_uniformity_test(pits: Sequence[Sequence[float]], *, alpha: float = 0.05) -> TwoSampleResult:
    """Are the randomised PITs of sampled tokens Uniform(0, 1)? ``pits[i]``: the PITs of prompt ``i``'s tokens.

    Two statistics, each with an analytic p-value, and the smaller p-value doubled (Bonferroni over the choice):

    - global: the Cramer-von Mises statistic of all PITs against Uniform(0, 1) (``scipy.stats.cramervonmises``);
    - per prompt: ``sum_i z_i**2`` with ``z_i = (mean_i - 1/2) / sqrt(1 / (12 n_i))``, chi-square with one degree of
      freedom per prompt (normal approximation of each prompt's mean; prompts with fewer than 5 PITs are left out).

    ``statistic`` is the CvM statistic; ``effect`` is ``1/2 - mean PIT`` (positive: the candidate draws tokens the
    reference ranks higher than it should, as a sampler that truncates the tail does); ``min_detectable_effect``
    the mean shift the pooled mean would detect with 80% power (``2.8 sqrt(1 / (12 n))``).

    >>> import numpy as np
    >>> squeezed = (np.random.default_rng(1).random((10, 40)) * 0.9).tolist()  # the top 10% never drawn
    >>> r = pit_uniformity_test(squeezed)
    >>> r.pvalue < 0.01, r.method
    (True, 'pit-uniformity')
    """
    groups = [np.asarray(g, dtype=np.float64) for g in pits]
    flat = np.concatenate(groups) if groups else np.zeros(0)
    if flat.size < 2:
        raise InvalidInputError("pits", "must hold at least 2 values", int(flat.size))
    if np.any(~np.isfinite(flat)) or np.any((flat < 0) | (flat > 1)):
        raise InvalidInputError("pits", "must be probabilities in [0, 1]")
    cvm = stats.cramervonmises(flat, "uniform")
    p_global = float(cvm.pvalue) if math.isfinite(float(cvm.pvalue)) else MIN_PVALUE
    z2 = [((g.mean() - 0.5) / math.sqrt(1.0 / (12.0 * g.size))) ** 2 for g in groups if g.size >= 5]
    p_prompt = float(stats.chi2.sf(sum(z2), len(z2))) if z2 else 1.0
    pvalue = min(1.0, 2.0 * min(p_global, p_prompt))
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(0.8)
    return TwoSampleResult(
        statistic=float(cvm.statistic),
        pvalue=max(pvalue, MIN_PVALUE),
        n=int(flat.size),
        method="pit-uniformity",
        effect=float(0.5 - flat.mean()),
        min_detectable_effect=float(z * math.sqrt(1.0 / (12.0 * flat.size))),
        details={"cvm_pvalue": p_global, "per_prompt_pvalue": p_prompt, "prompts": len(z2)},
    )
