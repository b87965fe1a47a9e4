"""Run a deployment-equivalence comparison between two OpenAI-compatible endpoints.

The order of operations (each step uses only what the endpoints offer):

1. probe both endpoints (models, logprobs, prompt logprobs via ``echo``, a tokenizer fingerprint);
2. plan: spread the budget over the prompts, state the effects that budget can detect (:class:`BudgetPlan`);
3. sample ``budget`` completions from each endpoint (same prompts, independent seeds);
4. black-box tests on the samples: MMD-Hamming and per-prompt token frequencies;
5. detector-rate test, when ``parity.detectors`` is installed: the share of completions any detector flags;
6. with prompt logprobs on the reference: score every completion under the reference (log-likelihood shift, and
   how often the sampled token was the reference's argmax);
7. with prompt logprobs on both and the same tokenizer: teacher-force shared contexts through the candidate and a
   second time, one request at a time (another batch size), through the reference; per-position divergence
   against that noise floor;
8. combine every test that ran with Holm's correction at ``alpha``.
"""

from __future__ import annotations

import asyncio
import importlib
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import numpy as np

from parity._exceptions import EndpointError, InvalidInputError
from parity.compare._client import Capabilities, Completion, EndpointClient, ScoredText
from parity.stats.power import mean_shift_mde, proportion_budget, proportion_mde
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

__all__ = ["BudgetPlan", "CompareConfig", "ComparisonReport", "Outcome", "compare_endpoints", "plan_budget"]

T = TypeVar("T")
#: progress callback: (task description, completed, total)
ProgressFn = Callable[[str, int, int], None]

#: Fewest completions per prompt per side: below this a within-prompt permutation has too few arrangements.
MIN_PER_PROMPT = 4


@dataclass(frozen=True)
class CompareConfig:
    """Settings of one comparison (the CLI's options).

    ``contexts``: shared contexts teacher-forced for the per-position test; its exact sign-flip p-value cannot go
    below ``2**-contexts``, so use at least 10 for it to reject after a Holm correction over five tests.
    ``top_p`` below 1 is sent with every sampling request (sampler faults only show inside a nucleus).
    """

    budget: int = 300
    alpha: float = 0.05
    max_tokens: int = 32
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    contexts: int = 24
    top_logprobs: int = 5
    n_resamples: int = 1000
    max_concurrency: int = 8
    max_retries: int = 4

    def __post_init__(self) -> None:
        if self.budget < 2 * MIN_PER_PROMPT:
            raise InvalidInputError("budget", f"must be >= {2 * MIN_PER_PROMPT} completions per endpoint", self.budget)
        if not 0.0 < self.alpha < 1.0:
            raise InvalidInputError("alpha", "must be in (0, 1)", self.alpha)
        if self.max_tokens < 1:
            raise InvalidInputError("max_tokens", "must be >= 1", self.max_tokens)
        if not self.temperature > 0.0:
            raise InvalidInputError(
                "temperature", "must be > 0 (the tests compare sampled distributions)", self.temperature
            )
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidInputError("top_p", "must be in (0, 1]", self.top_p)
        if self.contexts < 0:
            raise InvalidInputError("contexts", "must be >= 0", self.contexts)
        if not 1 <= self.top_logprobs <= 20:
            raise InvalidInputError("top_logprobs", "must be in [1, 20]", self.top_logprobs)


@dataclass(frozen=True)
class BudgetPlan:
    """What a budget buys, stated before sending."""

    budget: int
    prompts: int
    per_prompt: int
    detector_rate_mde: float
    loglik_mde_sd: float
    budget_for_rate_1_to_3_percent: int

    def describe(self) -> str:
        """One paragraph for the terminal.

        >>> print(plan_budget(300, 32, alpha=0.05).describe())
        budget 288 completions per endpoint (32 prompts x 9); detects a flag rate rising from 0 to 2.7%, ...
        """
        return (
            f"budget {self.budget} completions per endpoint ({self.prompts} prompts x {self.per_prompt}); detects a "
            f"flag rate rising from 0 to {self.detector_rate_mde:.1%}, a log-likelihood shift of "
            f"{self.loglik_mde_sd:.2f} sd (80% power); a flag rate 1% -> 3% needs "
            f"{self.budget_for_rate_1_to_3_percent} per endpoint"
        )


def plan_budget(budget: int, n_prompts: int, *, alpha: float = 0.05) -> BudgetPlan:
    """Spread ``budget`` over up to ``n_prompts`` prompts (at least :data:`MIN_PER_PROMPT` each) and state the
    smallest effects it detects with 80% power (analytic, normal approximation).

    >>> plan_budget(40, 32).prompts, plan_budget(40, 32).per_prompt
    (10, 4)
    """
    if n_prompts < 1:
        raise InvalidInputError("prompts", "must contain at least one prompt", n_prompts)
    prompts = max(1, min(n_prompts, budget // MIN_PER_PROMPT))
    per_prompt = max(1, budget // prompts)
    used = prompts * per_prompt
    return BudgetPlan(
        budget=used,
        prompts=prompts,
        per_prompt=per_prompt,
        detector_rate_mde=proportion_mde(0.0, used, alpha=alpha),
        loglik_mde_sd=mean_shift_mde(1.0, used, alpha=alpha),
        budget_for_rate_1_to_3_percent=proportion_budget(0.01, 0.03, alpha=alpha),
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

    def to_json(self) -> dict[str, Any]:
        """The machine-readable verdict (``parity compare --json``)."""
        return {
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
        detectors: Any = importlib.import_module("parity.detectors")
        context_type = detectors.ResponseContext
        score_response = detectors.score_response
    except (ImportError, AttributeError):
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
    plan = plan_budget(config.budget, len(prompts), alpha=config.alpha)
    if on_plan:
        on_plan(plan)
    rng = np.random.default_rng(config.seed)
    chosen = sorted(rng.choice(len(prompts), size=plan.prompts, replace=False).tolist())
    used_prompts = [prompts[i] for i in chosen]

    def sample_jobs(client: EndpointClient, side: int) -> list[Awaitable[Completion]]:
        jobs: list[Awaitable[Completion]] = []
        for p, prompt in enumerate(used_prompts):
            for j in range(plan.per_prompt):
                seed = (config.seed * 1_000_003 + (p * plan.per_prompt + j) * 2 + side) % (2**31)
                jobs.append(
                    client.sample(
                        p,
                        prompt,
                        max_tokens=config.max_tokens,
                        temperature=config.temperature,
                        top_p=config.top_p,
                        seed=seed,
                    )
                )
        return jobs

    ref_done, cand_done = await asyncio.gather(
        _gather(sample_jobs(reference, 0), "sampling reference", progress),
        _gather(sample_jobs(candidate, 1), "sampling candidate", progress),
    )
    ref_groups: list[list[str]] = [[] for _ in used_prompts]
    cand_groups: list[list[str]] = [[] for _ in used_prompts]
    for c in ref_done:
        ref_groups[c.prompt_index].append(c.text)
    for c in cand_done:
        cand_groups[c.prompt_index].append(c.text)

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
        skipped.append(("loglik-shift", reason))
        skipped.append(("argmax-rate", reason))
        skipped.append(("next-token-divergence", reason))
    else:

        def score_jobs(client: EndpointClient, groups: list[list[str]]) -> list[Awaitable[ScoredText]]:
            return [
                client.score(used_prompts[p], text, top_logprobs=config.top_logprobs)
                for p, group in enumerate(groups)
                for text in group
            ]

        ref_scored, cand_scored = await asyncio.gather(
            _gather(score_jobs(reference, ref_groups), "scoring reference samples", progress),
            _gather(score_jobs(reference, cand_groups), "scoring candidate samples", progress),
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
                reference, candidate, used_prompts, ref_groups, ref_scored, config, int(seeds[3]), progress
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
    )


async def _divergence(
    reference: EndpointClient,
    candidate: EndpointClient,
    prompts: Sequence[str],
    ref_groups: Sequence[Sequence[str]],
    ref_scored: Sequence[ScoredText],
    config: CompareConfig,
    seed: int,
    progress: ProgressFn | None,
) -> tuple[TwoSampleResult | None, list[float], list[float]]:
    """Teacher-forced per-position comparison on reference completions used as shared contexts."""
    flat = [(p, text) for p, group in enumerate(ref_groups) for text in group]
    order = np.random.default_rng(seed).permutation(len(flat))[: config.contexts]
    picked = [(flat[i][0], flat[i][1], ref_scored[i]) for i in sorted(order.tolist())]
    cand_jobs = [candidate.score(prompts[p], t, top_logprobs=config.top_logprobs) for p, t, _ in picked]
    cand_scored = await _gather(cand_jobs, "teacher-forcing candidate", progress)
    noise_scored: list[ScoredText] = []
    if progress:
        progress("reference noise floor (one at a time)", 0, len(picked))
    for k, (p, text, _) in enumerate(picked):
        noise_scored.append(await reference.score(prompts[p], text, top_logprobs=config.top_logprobs))
        if progress:
            progress("reference noise floor (one at a time)", k + 1, len(picked))
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
