"""Run a deployment-equivalence comparison between two OpenAI-compatible endpoints.

The order of operations (each step uses only what the endpoints offer):

1. probe both endpoints (models, logprobs, prompt logprobs via ``echo``, a tokenizer fingerprint);
2. plan: spread the budget over the prompts, state the effects that budget can detect (:class:`BudgetPlan`);
3. sample ``budget`` completions from each endpoint (same prompts, independent seeds);
4. black-box tests on the samples: MMD-Hamming and per-prompt token frequencies;
5. detector-rate test, when ``parity.detectors`` is installed: the share of completions any detector flags;
6. with prompt logprobs on the reference: score every completion under the reference (log-likelihood shift, and
   how often the sampled token was the reference's argmax);
7. with prompt logprobs on the reference: the sampler tests of :mod:`parity.compare._support`: whether each
   sampled token lies in the set the reference's sampler keeps there (support violations, against the rate of the
   reference's own samples), the randomised PIT of each token under the reference's filtered distribution
   (calibration), and greedy probes (temperature 0 on both endpoints from shared prefixes: the candidate's token
   must be the reference's argmax, ties within the reference's noise allowed);
8. with prompt logprobs on both and the same tokenizer: teacher-force shared contexts through the candidate and a
   second time, one request at a time (another batch size), through the reference; per-position divergence
   against that noise floor (the same re-scored contexts give the noise tolerance of step 7);
9. combine every test that ran with Holm's correction at ``alpha``.

When both endpoints name tokens by id (``Capabilities.token_ids``) and share a tokenizer, every prompt is sent as
token ids, the sampled ids come back with each completion, and steps 6-7 teacher-force exactly those ids: a
completion's text encoded again is not always the sequence that was sampled, and every such position would read
as a sampler violation or a missed argmax on both sides (the noise floor the support and greedy tests must beat).

The sampling settings are chosen to expose sampler faults: by default every sampled completion uses temperature
1, top-k 20 and top-p 0.9 (a nucleus that usually ends inside the 20 alternatives the reference lists, so every
kept set and PIT is exact; see :mod:`parity.compare._support` for what looser settings leave undecided), and
``greedy_probes`` greedy requests per endpoint test the argmax path.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import httpx
import numpy as np

from parity._exceptions import EndpointError, InvalidInputError
from parity._version import __version__
from parity.compare._client import IDS_FROM_PIECES, Capabilities, Completion, EndpointClient, ScoredText
from parity.compare._support import KEPT, VIOLATION, TokenCheck, check_completion, check_completions, exactly_decidable
from parity.sampling import DEFAULT_ORDER, SamplingParams
from parity.stats.calibration import DEFAULT_TOLERANCE_RATE, pit_uniformity_test, violation_floor_test
from parity.stats.power import (
    mean_shift_mde,
    proportion_budget,
    proportion_mde,
    tolerance_rate_mde,
    tolerance_rate_power,
)
from parity.stats.twosample import (
    PositionDivergence,
    TwoSampleResult,
    argmax_rate_test,
    combine,
    loglik_shift_test,
    mmd_hamming_test,
    next_token_divergence_test,
    position_divergence,
    token_frequency_test,
    two_proportion_test,
)

__all__ = [
    "REPORT_SCHEMA_VERSION",
    "BudgetPlan",
    "CompareConfig",
    "ComparisonReport",
    "Outcome",
    "compare_endpoints",
    "plan_budget",
]

T = TypeVar("T")
#: The version of the report's JSON shape (``ComparisonReport.to_json``): raised when a field changes meaning or
#: goes away (adding a field does not raise it). Reports also carry the parity version that wrote them.
REPORT_SCHEMA_VERSION = 1

#: progress callback: (task description, completed, total)
ProgressFn = Callable[[str, int, int], None]

#: The tests that judge the candidate's sampler against the reference's kept sets (:mod:`parity.compare._support`).
SAMPLER_TESTS = ("support", "calibration", "greedy")

#: The effect size at which ``--plan-only`` states the support and greedy tests' power: this share of tokens
#: outside the reference's kept set (or off its argmax).
EFFECT_RATE = 0.01

#: Fewest completions per prompt per side: below this a within-prompt permutation has too few arrangements.
MIN_PER_PROMPT = 4


@dataclass(frozen=True)
class CompareConfig:
    """Settings of one comparison (the CLI's options).

    ``contexts``: shared contexts teacher-forced for the per-position test; its exact sign-flip p-value cannot go
    below ``2**-contexts``, so use at least 10 for it to reject after a Holm correction over the family.
    Sampling requests carry ``temperature``, ``top_p`` and, when enabled, ``top_k`` and ``min_p`` (sampler faults
    only show inside a nucleus; the defaults keep the nucleus inside the ``top_logprobs`` alternatives the reference
    lists, so the support and calibration tests decide every token exactly). ``sampler_order`` is the order in
    which the reference applies its filters (:data:`parity.sampling.DEFAULT_ORDER`; vLLM's is
    :data:`parity.sampling.VLLM_ORDER`). ``greedy_probes``: greedy requests per endpoint, on prefixes of the
    reference's samples. ``violation_tolerance``: the per-token rate at which the reference itself may draw (or
    greedily pick) outside its own kept set, from numerical noise; the support and greedy tests count the
    candidate's violating tokens against it (:func:`parity.stats.calibration.violation_floor_test`, which falls
    back to a permutation against the reference's measured floor when the reference's own tokens exceed it).
    """

    budget: int = 300
    alpha: float = 0.05
    max_tokens: int = 32
    temperature: float = 1.0
    top_p: float = 0.9
    top_k: int = 20
    min_p: float = 0.0
    sampler_order: tuple[str, ...] = DEFAULT_ORDER
    greedy_probes: int = 32
    seed: int = 0
    contexts: int = 24
    top_logprobs: int = 20
    n_resamples: int = 1000
    max_concurrency: int = 8
    max_retries: int = 4
    violation_tolerance: float = DEFAULT_TOLERANCE_RATE

    def __post_init__(self) -> None:
        if self.budget < 2 * MIN_PER_PROMPT:
            raise InvalidInputError("budget", f"must be >= {2 * MIN_PER_PROMPT} completions per endpoint", self.budget)
        if not 0.0 < self.alpha < 1.0:
            raise InvalidInputError("alpha", "must be in (0, 1)", self.alpha)
        if self.max_tokens < 1:
            raise InvalidInputError("max_tokens", "must be >= 1", self.max_tokens)
        sampling = self.sampling_params  # the sampling parameters' own rules, checked in parity.sampling
        if not sampling.temperature > 0.0:
            raise InvalidInputError(
                "temperature", "must be > 0 (the tests compare sampled distributions)", self.temperature
            )
        if sampling.top_k < 0:
            raise InvalidInputError("top_k", "must be >= 0 (0 disables it)", self.top_k)
        if sampling.min_p == 1.0:
            raise InvalidInputError("min_p", "must be in [0, 1) (0 disables it)", self.min_p)
        if self.greedy_probes < 0:
            raise InvalidInputError("greedy_probes", "must be >= 0", self.greedy_probes)
        if self.contexts < 0:
            raise InvalidInputError("contexts", "must be >= 0", self.contexts)
        if not 1 <= self.top_logprobs <= 20:
            raise InvalidInputError("top_logprobs", "must be in [1, 20]", self.top_logprobs)
        if not 0.0 <= self.violation_tolerance < 1.0:
            raise InvalidInputError(
                "violation_tolerance", "must be a per-token rate in [0, 1)", self.violation_tolerance
            )

    @property
    def sampling_params(self) -> SamplingParams:
        """The reference sampler's settings for the sampled completions."""
        return SamplingParams(
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            min_p=self.min_p,
            order=self.sampler_order,
        )


@dataclass(frozen=True)
class BudgetPlan:
    """What a budget buys, stated before sending: each test's smallest detectable effect at 80% power."""

    budget: int
    prompts: int
    per_prompt: int
    detector_rate_mde: float
    loglik_mde_sd: float
    budget_for_rate_1_to_3_percent: int
    greedy_probes: int = 0
    support_violation_mde: float = math.nan
    greedy_violation_mde: float = math.nan
    pit_shift_mde: float = math.nan
    violation_tolerance: float = DEFAULT_TOLERANCE_RATE
    support_power: float = math.nan
    greedy_power: float = math.nan
    tests: int = 9
    settings: str = ""

    def describe(self) -> str:
        """One paragraph for the terminal.

        >>> print(plan_budget(300, 32, alpha=0.05).describe())
        budget 288 completions per endpoint (32 prompts x 9); detects a flag rate rising from 0 to 2.7%, ...
        """
        text = (
            f"budget {self.budget} completions per endpoint ({self.prompts} prompts x {self.per_prompt}); detects a "
            f"flag rate rising from 0 to {self.detector_rate_mde:.1%}, a log-likelihood shift of "
            f"{self.loglik_mde_sd:.2f} sd (80% power); a flag rate 1% -> 3% needs "
            f"{self.budget_for_rate_1_to_3_percent} per endpoint"
        )
        if math.isfinite(self.support_violation_mde):
            text += (
                f". Sampler tests (80% power, Holm over {self.tests} tests, reference floor at most "
                f"{self.violation_tolerance:g} per token): support - {self.support_violation_mde:.2%} of sampled "
                f"tokens outside the reference's kept set (power {self.support_power:.2f} against {EFFECT_RATE:.0%}); "
                f"calibration - a mean PIT shift of {self.pit_shift_mde:.3f} (uniform: 0.5); greedy - "
                f"{self.greedy_violation_mde:.2%} of greedy tokens off the reference's argmax over "
                f"{self.greedy_probes} probes (power {self.greedy_power:.2f} against {EFFECT_RATE:.0%})"
            )
        if self.settings:
            text += f". Sampling: {self.settings}"
        return text


def plan_budget(
    budget: int,
    n_prompts: int,
    *,
    alpha: float = 0.05,
    config: CompareConfig | None = None,
) -> BudgetPlan:
    """Spread ``budget`` over up to ``n_prompts`` prompts (at least :data:`MIN_PER_PROMPT` each) and state the
    smallest effects it detects with 80% power (analytic: normal approximations; for the support and greedy tests,
    the exact binomial test of violating tokens against ``config.violation_tolerance`` at Holm's smallest
    threshold), and the power of those two against :data:`EFFECT_RATE` of tokens (the lab's 1% corruption puts
    about that many sampled tokens outside the kept set).

    >>> plan_budget(40, 32).prompts, plan_budget(40, 32).per_prompt
    (10, 4)
    >>> p = plan_budget(64, 32, config=CompareConfig(budget=64))
    >>> round(p.support_violation_mde, 4), p.greedy_probes, round(p.support_power, 3)
    (0.0027, 32, 1.0)
    """
    if n_prompts < 1:
        raise InvalidInputError("prompts", "must contain at least one prompt", n_prompts)
    prompts = max(1, min(n_prompts, budget // MIN_PER_PROMPT))
    per_prompt = max(1, budget // prompts)
    used = prompts * per_prompt
    plan = BudgetPlan(
        budget=used,
        prompts=prompts,
        per_prompt=per_prompt,
        detector_rate_mde=proportion_mde(0.0, used, alpha=alpha),
        loglik_mde_sd=mean_shift_mde(1.0, used, alpha=alpha),
        budget_for_rate_1_to_3_percent=proportion_budget(0.01, 0.03, alpha=alpha),
    )
    if config is None:
        return plan
    tests = 9
    holm_alpha = alpha / tests  # the smallest Holm threshold: what a test must reach when every test is run
    tokens = used * config.max_tokens
    greedy_tokens = config.greedy_probes * config.max_tokens
    eps = config.violation_tolerance
    exact = exactly_decidable(config.sampling_params, config.top_logprobs)
    settings = (
        f"temperature {config.temperature:g}, top-k {config.top_k or 'off'}, top-p {config.top_p:g}, min-p "
        f"{config.min_p:g} ("
        + ("every token decided exactly" if exact else "kept sets decided by bounds: some tokens undecided, no PITs")
        + f"); {config.greedy_probes} greedy probes of {config.max_tokens} tokens per endpoint"
    )
    return replace(
        plan,
        greedy_probes=config.greedy_probes,
        support_violation_mde=tolerance_rate_mde(max(tokens, 1), tolerance=eps, alpha=holm_alpha),
        greedy_violation_mde=tolerance_rate_mde(greedy_tokens, tolerance=eps, alpha=holm_alpha)
        if greedy_tokens
        else math.nan,
        support_power=tolerance_rate_power(max(tokens, 1), EFFECT_RATE, tolerance=eps, alpha=holm_alpha),
        greedy_power=tolerance_rate_power(greedy_tokens, EFFECT_RATE, tolerance=eps, alpha=holm_alpha)
        if greedy_tokens
        else math.nan,
        violation_tolerance=eps,
        pit_shift_mde=mean_shift_mde(math.sqrt(1 / 12), max(tokens, 1), alpha=holm_alpha / 2),
        tests=tests,
        settings=settings,
    )


@dataclass(frozen=True)
class Outcome:
    """One test of the family, with its Holm-adjusted p-value."""

    name: str
    result: TwoSampleResult
    adjusted_pvalue: float
    rejected: bool


@dataclass(frozen=True)
class ComparisonReport:
    """Everything a comparison found; :meth:`to_json` is the ``--json`` contract."""

    equivalent: bool
    alpha: float
    budget_used: int
    tests: tuple[Outcome, ...]
    skipped: tuple[tuple[str, str], ...]
    reference: Capabilities
    candidate: Capabilities
    plan: BudgetPlan
    prompts: tuple[str, ...]
    reference_samples: tuple[tuple[str, ...], ...] = field(repr=False)
    candidate_samples: tuple[tuple[str, ...], ...] = field(repr=False)
    position_tv: tuple[float, ...] = field(default=(), repr=False)
    noise_position_tv: tuple[float, ...] = field(default=(), repr=False)
    requests: int = 0
    retries: int = 0
    elapsed_s: float = 0.0
    seed: int = 0
    correction: str = "holm"
    #: what the run had to do differently from the plan, and how often (e.g. completions scored by text)
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The machine-readable verdict (``parity compare --json``), with its provenance: ``schema_version``
        (:data:`REPORT_SCHEMA_VERSION`) and the ``parity_version`` that wrote it."""
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "parity_version": __version__,
            "equivalent": self.equivalent,
            "alpha": self.alpha,
            "budget_used": self.budget_used,
            "correction": self.correction,
            "tests": [
                {
                    "name": t.name,
                    "statistic": _finite(t.result.statistic),
                    "pvalue": _finite(t.result.pvalue),
                    "adjusted_pvalue": _finite(t.adjusted_pvalue),
                    "effect": _finite(t.result.effect),
                    "min_detectable_effect": _finite(t.result.min_detectable_effect),
                    "method": t.result.method,
                    "n": t.result.n,
                    "rejected": t.rejected,
                }
                for t in self.tests
            ],
            "skipped": [{"name": n, "reason": r} for n, r in self.skipped],
            "reference": {
                "url": self.reference.url,
                "model": self.reference.model,
                "notes": list(self.reference.notes),
            },
            "candidate": {
                "url": self.candidate.url,
                "model": self.candidate.model,
                "notes": list(self.candidate.notes),
            },
            "requests": self.requests,
            "retries": self.retries,
            "elapsed_s": round(self.elapsed_s, 3),
            "seed": self.seed,
            "notes": list(self.notes),
        }

    def test(self, name: str) -> Outcome:
        """The outcome of the test called ``name``."""
        for outcome in self.tests:
            if outcome.name == name:
                return outcome
        raise InvalidInputError("name", f"must be one of {[t.name for t in self.tests]}", name)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


async def _gather(jobs: Sequence[Awaitable[T]], label: str, progress: ProgressFn | None) -> list[T]:
    done = 0
    total = len(jobs)
    if progress:
        progress(label, 0, total)

    async def tracked(job: Awaitable[T]) -> T:
        nonlocal done
        value = await job
        done += 1
        if progress:
            progress(label, done, total)
        return value

    return list(await asyncio.gather(*(tracked(j) for j in jobs)))


def _detector_scorer() -> Callable[[str, str], bool] | None:
    """``flagged(prompt, response)`` from ``parity.detectors`` when it is installed, else ``None``."""
    try:
        from parity.detectors import ResponseContext as context_type
        from parity.detectors import score_response
    except ImportError:  # a build without the detectors
        return None

    def flagged(prompt: str, response: str) -> bool:
        observations = score_response(context_type(response=response, prompt=prompt))
        return any(bool(getattr(obs, "flagged", False)) for obs in observations)

    return flagged


async def _compare(
    reference: EndpointClient,
    candidate: EndpointClient,
    prompts: Sequence[str],
    config: CompareConfig,
    progress: ProgressFn | None,
    on_plan: Callable[[BudgetPlan], None] | None,
) -> ComparisonReport:
    started = time.perf_counter()
    ref_caps, cand_caps = await asyncio.gather(reference.probe(), candidate.probe())
    plan = plan_budget(config.budget, len(prompts), alpha=config.alpha, config=config)
    if on_plan:
        on_plan(plan)
    rng = np.random.default_rng(config.seed)
    chosen = sorted(rng.choice(len(prompts), size=plan.prompts, replace=False).tolist())
    used_prompts = [prompts[i] for i in chosen]
    use_ids = ref_caps.token_ids and cand_caps.token_ids and ref_caps.tokens == cand_caps.tokens
    prompt_ids: list[tuple[int, ...]] = (
        list(await asyncio.gather(*(reference.tokenize(p) for p in used_prompts))) if use_ids else []
    )
    notes: list[str] = []
    if use_ids and IDS_FROM_PIECES in (ref_caps.token_ids_from, cand_caps.token_ids_from):
        # ids read from text pieces are the other side's ids only if both number the vocabulary alike
        other = candidate if cand_caps.token_ids_from == IDS_FROM_PIECES else reference
        theirs = list(await asyncio.gather(*(other.tokenize(p) for p in used_prompts)))
        if theirs != prompt_ids:
            use_ids = False
            prompt_ids = []
            notes.append("the endpoints encode the prompts to different token ids: completions scored by text")

    def sample_jobs(client: EndpointClient, side: int) -> list[Awaitable[Completion]]:
        jobs: list[Awaitable[Completion]] = []
        for p, prompt in enumerate(used_prompts):
            for j in range(plan.per_prompt):
                seed = (config.seed * 1_000_003 + (p * plan.per_prompt + j) * 2 + side) % (2**31)
                jobs.append(
                    client.sample(
                        p,
                        prompt_ids[p] if use_ids else prompt,
                        max_tokens=config.max_tokens,
                        temperature=config.temperature,
                        top_p=config.top_p,
                        seed=seed,
                        top_k=config.top_k,
                        min_p=config.min_p,
                        token_ids=use_ids,
                    )
                )
        return jobs

    ref_done, cand_done = await asyncio.gather(
        _gather(sample_jobs(reference, 0), "sampling reference", progress),
        _gather(sample_jobs(candidate, 1), "sampling candidate", progress),
    )
    ref_groups: list[list[str]] = [[] for _ in used_prompts]
    cand_groups: list[list[str]] = [[] for _ in used_prompts]
    ref_id_groups: list[list[tuple[int, ...]]] = [[] for _ in used_prompts]
    cand_id_groups: list[list[tuple[int, ...]]] = [[] for _ in used_prompts]
    for c in ref_done:
        ref_groups[c.prompt_index].append(c.text)
        ref_id_groups[c.prompt_index].append(c.token_ids)
    for c in cand_done:
        cand_groups[c.prompt_index].append(c.text)
        cand_id_groups[c.prompt_index].append(c.token_ids)

    tests: dict[str, TwoSampleResult] = {}
    skipped: list[tuple[str, str]] = []
    seeds = np.random.default_rng(config.seed + 1).integers(0, 2**31, size=8)
    tests["mmd-hamming"] = mmd_hamming_test(
        ref_groups, cand_groups, n_resamples=config.n_resamples, alpha=config.alpha, rng=int(seeds[0])
    )
    tests["token-frequency"] = token_frequency_test(
        ref_groups, cand_groups, n_resamples=config.n_resamples, alpha=config.alpha, rng=int(seeds[1])
    )

    flagged = _detector_scorer()
    if flagged is None:
        skipped.append(("detector-rate", "parity.detectors is not installed"))
    else:
        ref_flags = sum(flagged(used_prompts[p], t) for p, g in enumerate(ref_groups) for t in g)
        cand_flags = sum(flagged(used_prompts[p], t) for p, g in enumerate(cand_groups) for t in g)
        tests["detector-rate"] = two_proportion_test(
            ref_flags, len(ref_done), cand_flags, len(cand_done), alpha=config.alpha
        )

    position_tv: list[float] = []
    noise_tv: list[float] = []
    if not ref_caps.echo or not ref_caps.echo_consistent:
        reason = (
            "reference returns no prompt logprobs (echo)"
            if not ref_caps.echo
            else "reference's prompt logprobs (echo) disagree with its sampled logprobs"
        )
        for name in ("loglik-shift", "argmax-rate", *SAMPLER_TESTS, "next-token-divergence"):
            skipped.append((name, reason))
    else:

        def score_jobs(
            client: EndpointClient, groups: list[list[str]], id_groups: list[list[tuple[int, ...]]]
        ) -> list[Awaitable[ScoredText]]:
            if use_ids:  # a completion whose ids could not be read exactly (text pieces) is scored by its text
                return [
                    client.score_ids(prompt_ids[p], ids, top_logprobs=config.top_logprobs)
                    if ids or not text
                    else client.score(used_prompts[p], text, top_logprobs=config.top_logprobs)
                    for p, (texts, group) in enumerate(zip(groups, id_groups, strict=True))
                    for text, ids in zip(texts, group, strict=True)
                ]
            return [
                client.score(used_prompts[p], text, top_logprobs=config.top_logprobs)
                for p, group in enumerate(groups)
                for text in group
            ]

        for label, groups, id_groups in (
            ("reference", ref_groups, ref_id_groups),
            ("candidate", cand_groups, cand_id_groups),
        ):
            by_text = sum(bool(t) and not i for ts, g in zip(groups, id_groups, strict=True)
                          for t, i in zip(ts, g, strict=True)) if use_ids else 0  # fmt: skip
            if by_text:
                notes.append(
                    f"{by_text} of {sum(map(len, groups))} {label} completions scored by re-encoded text: their token "
                    "ids could not be read exactly from the server's text pieces"
                )
        ref_scored, cand_scored = await asyncio.gather(
            _gather(score_jobs(reference, ref_groups, ref_id_groups), "scoring reference samples", progress),
            _gather(score_jobs(reference, cand_groups, cand_id_groups), "scoring candidate samples", progress),
        )
        per = plan.per_prompt
        ref_ll = [[s.mean_logprob for s in ref_scored[p * per : (p + 1) * per]] for p in range(plan.prompts)]
        cand_ll = [[s.mean_logprob for s in cand_scored[p * per : (p + 1) * per]] for p in range(plan.prompts)]
        tests["loglik-shift"] = loglik_shift_test(
            ref_ll, cand_ll, n_resamples=config.n_resamples, alpha=config.alpha, rng=int(seeds[2])
        )
        ref_top1 = [[s.argmax_rate for s in ref_scored[p * per : (p + 1) * per]] for p in range(plan.prompts)]
        cand_top1 = [[s.argmax_rate for s in cand_scored[p * per : (p + 1) * per]] for p in range(plan.prompts)]
        tests["argmax-rate"] = argmax_rate_test(
            ref_top1, cand_top1, n_resamples=config.n_resamples, alpha=config.alpha, rng=int(seeds[4])
        )
        picked = _pick_contexts(ref_groups, ref_scored, config.contexts, int(seeds[3]))
        noise_scored = await _noise_floor(reference, used_prompts, picked, config, progress)
        tolerance = _tolerance([s for _, _, s in picked], noise_scored)
        await _sampler_tests(
            reference,
            candidate,
            used_prompts,
            [[ids for g in ref_id_groups for ids in g], prompt_ids] if use_ids else None,
            ref_scored,
            cand_scored,
            per,
            config,
            tolerance,
            int(seeds[5]),
            progress,
            tests,
            skipped,
            notes,
        )
        if config.contexts == 0:
            skipped.append(("next-token-divergence", "--contexts 0"))
        elif not cand_caps.echo:
            skipped.append(("next-token-divergence", "candidate returns no prompt logprobs (echo)"))
        elif not cand_caps.echo_consistent:
            skipped.append(
                ("next-token-divergence", "candidate's prompt logprobs (echo) disagree with its sampled logprobs")
            )
        elif ref_caps.tokens != cand_caps.tokens:
            skipped.append(("next-token-divergence", "tokenizers differ (probe text tokenised differently)"))
        else:
            result, position_tv, noise_tv = await _divergence(
                candidate, used_prompts, picked, noise_scored, config, int(seeds[3]), progress
            )
            if result is None:
                skipped.append(("next-token-divergence", "no shared context tokenised the same on both endpoints"))
            else:
                tests["next-token-divergence"] = result

    combined = combine(tests, alpha=config.alpha)
    outcomes = tuple(
        Outcome(name=n, result=r, adjusted_pvalue=p, rejected=p <= config.alpha)
        for n, r, p in zip(combined.names, combined.results, combined.adjusted_pvalues, strict=True)
    )
    return ComparisonReport(
        equivalent=combined.equivalent,
        alpha=config.alpha,
        budget_used=plan.budget,
        tests=outcomes,
        skipped=tuple(skipped),
        reference=ref_caps,
        candidate=cand_caps,
        plan=plan,
        prompts=tuple(used_prompts),
        reference_samples=tuple(tuple(g) for g in ref_groups),
        candidate_samples=tuple(tuple(g) for g in cand_groups),
        position_tv=tuple(position_tv),
        noise_position_tv=tuple(noise_tv),
        requests=reference.requests_sent + candidate.requests_sent,
        retries=reference.retries_used + candidate.retries_used,
        elapsed_s=time.perf_counter() - started,
        seed=config.seed,
        notes=tuple(notes),
    )


def _pick_contexts(
    ref_groups: Sequence[Sequence[str]], ref_scored: Sequence[ScoredText], contexts: int, seed: int
) -> list[tuple[int, str, ScoredText]]:
    """Up to ``contexts`` reference completions (prompt index, text, reference score), chosen at random."""
    flat = [(p, text) for p, group in enumerate(ref_groups) for text in group]
    order = np.random.default_rng(seed).permutation(len(flat))[:contexts]
    return [(flat[i][0], flat[i][1], ref_scored[i]) for i in sorted(order.tolist())]


async def _noise_floor(
    reference: EndpointClient,
    prompts: Sequence[str],
    picked: Sequence[tuple[int, str, ScoredText]],
    config: CompareConfig,
    progress: ProgressFn | None,
) -> list[ScoredText]:
    """The picked contexts scored again by the reference, one request at a time (another batch composition)."""
    noise_scored: list[ScoredText] = []
    if progress and picked:
        progress("reference noise floor (one at a time)", 0, len(picked))
    for k, (p, text, _) in enumerate(picked):
        noise_scored.append(await reference.score(prompts[p], text, top_logprobs=config.top_logprobs))
        if progress:
            progress("reference noise floor (one at a time)", k + 1, len(picked))
    return noise_scored


def _tolerance(base: Sequence[ScoredText], again: Sequence[ScoredText]) -> float:
    """The largest change of any log-probability (chosen tokens and shared alternatives) between two reference
    scorings of the same texts: the noise within which the sampler tests call two values tied.

    >>> a = ScoredText(("x",), (-1.0,), ({"x": -1.0, "y": -2.0},))
    >>> _tolerance([a], [ScoredText(("x",), (-1.0,), ({"x": -1.0, "y": -2.25},))])
    0.25
    """
    worst = 0.0
    for one, two in zip(base, again, strict=True):
        if one.tokens != two.tokens:
            continue
        for x, y, tx, ty in zip(one.logprobs, two.logprobs, one.top_logprobs, two.top_logprobs, strict=False):
            worst = max(worst, abs(x - y), *(abs(tx[k] - ty[k]) for k in tx.keys() & ty.keys()))
    return worst


def _counts(checks: Sequence[TokenCheck]) -> tuple[int, int]:
    """(violations, decided tokens) of one completion."""
    violations = sum(c.status == VIOLATION for c in checks)
    return violations, violations + sum(c.status == KEPT for c in checks)


async def _sampler_tests(
    reference: EndpointClient,
    candidate: EndpointClient,
    prompts: Sequence[str],
    ids: Sequence[Sequence[tuple[int, ...]]] | None,
    ref_scored: Sequence[ScoredText],
    cand_scored: Sequence[ScoredText],
    per: int,
    config: CompareConfig,
    tolerance: float,
    seed: int,
    progress: ProgressFn | None,
    tests: dict[str, TwoSampleResult],
    skipped: list[tuple[str, str]],
    notes: list[str],
) -> None:
    """Support, calibration and greedy tests (see :mod:`parity.compare._support`); results go into ``tests``.
    ``ids``: (the reference completions' token ids, the prompts' token ids) when scoring by token id."""
    params = config.sampling_params
    n = config.top_logprobs
    rng = np.random.default_rng(seed)
    ref_checks = check_completions(ref_scored, params, alternatives=n, tolerance=tolerance, rng=rng)
    cand_checks = check_completions(cand_scored, params, alternatives=n, tolerance=tolerance, rng=rng)
    n_prompts = len(ref_scored) // per
    ref_items = [[_counts(c) for c in ref_checks[p * per : (p + 1) * per]] for p in range(n_prompts)]
    cand_items = [[_counts(c) for c in cand_checks[p * per : (p + 1) * per]] for p in range(n_prompts)]
    decided = sum(d for g in cand_items for _, d in g), sum(d for g in ref_items for _, d in g)
    if min(decided) == 0:
        skipped.append(("support", "no sampled token's membership in the reference's kept set could be decided"))
    else:
        result = violation_floor_test(
            ref_items,
            cand_items,
            tolerance=config.violation_tolerance,
            n_resamples=config.n_resamples,
            alpha=config.alpha,
            rng=int(rng.integers(2**31)),
        )
        tests["support"] = replace(result, details={**result.details, "tolerance_nats": tolerance})
    ref_pits = [
        [c.pit for s in ref_checks[p * per : (p + 1) * per] for c in s if c.pit is not None] for p in range(n_prompts)
    ]
    cand_pits = [
        [c.pit for s in cand_checks[p * per : (p + 1) * per] for c in s if c.pit is not None] for p in range(n_prompts)
    ]
    if sum(map(len, ref_pits)) < 2 or sum(map(len, cand_pits)) < 2:
        skipped.append(
            ("calibration", "no PIT is exact at these settings (needs top-k <= top_logprobs applied before top-p)")
        )
    else:
        own = pit_uniformity_test(ref_pits, alpha=config.alpha)
        if own.pvalue <= config.alpha / 10:  # a systematic mismatch, not the 1-in-20 chance of a fair check
            skipped.append(
                (
                    "calibration",
                    f"the reference's own PITs are not uniform (p = {own.pvalue:.2g}): its echo does not describe "
                    "its sampler (re-tokenisation, another sampler order?)",
                )
            )
        else:
            result = pit_uniformity_test(cand_pits, alpha=config.alpha)
            tests["calibration"] = replace(result, details={**result.details, "reference_pvalue": own.pvalue})
    if config.greedy_probes == 0:
        skipped.append(("greedy", "--greedy-probes 0"))
        return
    probes = _greedy_prefixes(prompts, ref_scored, per, config.greedy_probes, rng)
    id_probes = _greedy_id_prefixes(ids[1], ids[0], per, config.greedy_probes, rng) if ids is not None else []
    pieced = next((c for c in (candidate, reference) if c.ids_from_pieces), None)
    if id_probes and pieced is not None:  # a text-only server is sent the text: both sides get its own encoding
        canonical = await asyncio.gather(*(pieced.canonical_ids(p) for p in id_probes))
        id_probes = [c or ids[1][i % len(ids[1])] for i, c in enumerate(canonical)]  # type: ignore[index]

    async def greedy(client: EndpointClient, label: str) -> list[ScoredText]:
        done = await _gather(
            [
                client.sample(
                    i,
                    id_probes[i] if ids is not None else text,
                    max_tokens=config.max_tokens,
                    temperature=0.0,
                    token_ids=ids is not None,
                )
                for i, text in enumerate(probes)
            ],
            f"greedy probes ({label})",
            progress,
        )
        if ids is not None:  # ids not read exactly from text pieces: scored by text (counted in the notes)
            jobs = [
                reference.score_ids(id_probes[c.prompt_index], c.token_ids, top_logprobs=n)
                if c.token_ids or not c.text
                else reference.score(c.prompt_text, c.text, top_logprobs=n)
                for c in done
            ]
            if by_text := sum(bool(c.text) and not c.token_ids for c in done):
                notes.append(f"{by_text} of {len(done)} {label} greedy probes scored by re-encoded text")
        else:
            jobs = [reference.score(probes[c.prompt_index], c.text, top_logprobs=n) for c in done]
        return list(await asyncio.gather(*jobs))

    ref_greedy, cand_greedy = await asyncio.gather(greedy(reference, "reference"), greedy(candidate, "candidate"))
    argmax = SamplingParams(temperature=0.0)
    g_ref = [[_counts(check_completion(s, argmax, alternatives=n, tolerance=tolerance))] for s in ref_greedy]
    g_cand = [[_counts(check_completion(s, argmax, alternatives=n, tolerance=tolerance))] for s in cand_greedy]
    if sum(d for g in g_cand for _, d in g) == 0:
        skipped.append(("greedy", "the greedy probes produced no scorable token"))
        return
    result = violation_floor_test(
        g_ref,
        g_cand,
        tolerance=config.violation_tolerance,
        n_resamples=config.n_resamples,
        alpha=config.alpha,
        rng=int(rng.integers(2**31)),
    )
    tests["greedy"] = replace(
        result, method=f"greedy-argmax ({result.method})", details={**result.details, "tolerance_nats": tolerance}
    )


def _greedy_prefixes(
    prompts: Sequence[str], ref_scored: Sequence[ScoredText], per: int, count: int, rng: np.random.Generator
) -> list[str]:
    """``count`` greedy probe texts: each prompt in turn, extended by a random-length token prefix of one of the
    reference's completions for it (new contexts at no extra cost, the same ones on both endpoints)."""
    out = []
    for i in range(count):
        p = i % len(prompts)
        scored = ref_scored[p * per + int(rng.integers(per))]
        cut = int(rng.integers(len(scored.tokens) + 1)) if i >= len(prompts) else 0
        out.append(prompts[p] + "".join(scored.tokens[:cut]))
    return out


def _greedy_id_prefixes(
    prompt_ids: Sequence[tuple[int, ...]],
    completions: Sequence[tuple[int, ...]],
    per: int,
    count: int,
    rng: np.random.Generator,
) -> list[tuple[int, ...]]:
    """:func:`_greedy_prefixes` in token ids: each prompt in turn, extended by a random-length prefix of one of the
    reference's sampled completions for it.

    >>> _greedy_id_prefixes([(1,), (2,)], [(5, 6), (7,), (8, 9), (10,)], 2, 3, np.random.default_rng(0))[:2]
    [(1,), (2,)]
    """
    out = []
    for i in range(count):
        p = i % len(prompt_ids)
        sampled = completions[p * per + int(rng.integers(per))]
        cut = int(rng.integers(len(sampled) + 1)) if i >= len(prompt_ids) else 0
        out.append((*prompt_ids[p], *sampled[:cut]))
    return out


async def _divergence(
    candidate: EndpointClient,
    prompts: Sequence[str],
    picked: Sequence[tuple[int, str, ScoredText]],
    noise_scored: Sequence[ScoredText],
    config: CompareConfig,
    seed: int,
    progress: ProgressFn | None,
) -> tuple[TwoSampleResult | None, list[float], list[float]]:
    """Teacher-forced per-position comparison on reference completions used as shared contexts."""
    cand_jobs = [candidate.score(prompts[p], t, top_logprobs=config.top_logprobs) for p, t, _ in picked]
    cand_scored = await _gather(cand_jobs, "teacher-forcing candidate", progress)
    cand_div: list[PositionDivergence] = []
    noise_div: list[PositionDivergence] = []
    for (_, _, base), cand, noise in zip(picked, cand_scored, noise_scored, strict=True):
        if base.tokens != cand.tokens or base.tokens != noise.tokens or not base.tokens:
            continue
        cand_div.append(position_divergence(base.logprobs, base.top_logprobs, cand.logprobs, cand.top_logprobs))
        noise_div.append(position_divergence(base.logprobs, base.top_logprobs, noise.logprobs, noise.top_logprobs))
    if not cand_div:
        return None, [], []
    result = next_token_divergence_test(
        cand_div, noise_div, n_resamples=config.n_resamples, alpha=config.alpha, rng=seed
    )
    return result, _by_position(cand_div), _by_position(noise_div)


def _by_position(items: Sequence[PositionDivergence]) -> list[float]:
    longest = max(item.tv.size for item in items)
    out = []
    for i in range(longest):
        values = [float(item.tv[i]) for item in items if item.tv.size > i]
        out.append(sum(values) / len(values))
    return out


def compare_endpoints(
    reference_url: str,
    candidate_url: str,
    *,
    prompts: Sequence[str],
    config: CompareConfig | None = None,
    reference_model: str | None = None,
    candidate_model: str | None = None,
    api_key: str | None = None,
    progress: ProgressFn | None = None,
    on_plan: Callable[[BudgetPlan], None] | None = None,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    reference_extra_body: Mapping[str, Any] | None = None,
    candidate_extra_body: Mapping[str, Any] | None = None,
) -> ComparisonReport:
    """Compare two OpenAI-compatible endpoints; blocking. ``transports`` maps a URL to a test transport;
    ``*_extra_body`` are merged into every completions request to that side (a server's own sampling fields)."""
    cfg = config or CompareConfig()
    if not prompts:
        raise InvalidInputError("prompts", "must contain at least one prompt", len(prompts))
    transports = transports or {}

    async def run() -> ComparisonReport:
        ref = EndpointClient(
            reference_url,
            model=reference_model,
            api_key=api_key,
            max_concurrency=cfg.max_concurrency,
            max_retries=cfg.max_retries,
            transport=transports.get(reference_url),
            extra_body=reference_extra_body,
        )
        cand = EndpointClient(
            candidate_url,
            model=candidate_model,
            api_key=api_key,
            max_concurrency=cfg.max_concurrency,
            max_retries=cfg.max_retries,
            transport=transports.get(candidate_url),
            extra_body=candidate_extra_body,
        )
        async with ref, cand:
            return await _compare(ref, cand, prompts, cfg, progress, on_plan)

    try:
        return asyncio.run(run())
    except EndpointError:
        raise
    except httpx.HTTPError as err:  # anything the client did not classify
        raise EndpointError(f"HTTP failure: {type(err).__name__}: {err}") from err
