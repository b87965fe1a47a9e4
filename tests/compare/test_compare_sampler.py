"""The sampler tests of parity compare (support, calibration, greedy) against the in-process double."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from _compare_fake import FakeModel, transport

from parity.compare import CompareConfig, ScoredText, compare_endpoints, plan_budget
from parity.compare._support import check_completions, check_token, exactly_decidable
from parity.sampling import VLLM_ORDER, SamplingParams, kept_mask

REF, CAND = "http://reference.test", "http://candidate.test"
PROMPTS = ["the cat", "a dog ran", "we ate", "the sun was", "it was very", "then we"]
FAST = CompareConfig(budget=48, contexts=0, n_resamples=300, max_tokens=12, seed=5, greedy_probes=12, top_k=20)


def run(ref: FakeModel, cand: FakeModel, config: CompareConfig = FAST):
    return compare_endpoints(
        REF, CAND, prompts=PROMPTS, config=config, transports={REF: transport(ref), CAND: transport(cand)}
    )


def test_approximate_top_k_is_caught_by_support_and_greedy() -> None:
    report = run(FakeModel(), FakeModel(approx_cutoff=12))
    assert not report.equivalent
    support = report.test("support")
    assert support.rejected
    assert support.result.details["reference_violations"] == 0
    assert support.result.details["candidate_violations"] > 0
    assert report.test("greedy").rejected


def test_dropped_boundary_token_is_caught_by_calibration() -> None:
    # a narrow nucleus, where the boundary token carries a visible share of the mass
    report = run(FakeModel(), FakeModel(drop_boundary=True), replace(FAST, top_p=0.5))
    assert not report.equivalent
    calibration = report.test("calibration")
    assert calibration.rejected
    assert calibration.result.effect > 0  # the tail of the nucleus is never drawn: PITs too low
    assert calibration.result.details["reference_pvalue"] > 0.05
    assert not report.test("greedy").rejected  # greedy runs no top-p: nothing to drop


def test_loose_settings_decide_by_bounds_and_say_why_there_is_no_pit() -> None:
    config = CompareConfig(budget=48, contexts=0, n_resamples=200, max_tokens=8, seed=1, greedy_probes=0, top_k=0)
    report = run(FakeModel(), FakeModel(), config)
    skipped = dict(report.skipped)
    assert "top-k <= top_logprobs" in skipped["calibration"]
    assert "--greedy-probes 0" in skipped["greedy"]
    assert not report.test("support").rejected
    assert report.equivalent


def test_plan_states_each_sampler_test_power() -> None:
    text = plan_budget(64, 32, config=CompareConfig(budget=64)).describe()
    for name in ("support", "calibration", "greedy"):
        assert name in text
    assert "every token decided exactly" in text
    loose = plan_budget(64, 32, config=CompareConfig(budget=64, top_k=0)).describe()
    assert "decided by bounds" in loose


def _row(rng: np.random.Generator, v: int = 40) -> np.ndarray:
    x = rng.normal(0.0, 2.0, v)
    return x - np.logaddexp.reduce(x)


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(top_p=0.8),
        SamplingParams(temperature=0.7, top_p=0.9),
        SamplingParams(temperature=1.5, top_p=0.9, min_p=0.05),
        SamplingParams(top_k=30, top_p=0.95),
        SamplingParams(top_p=0.9, min_p=0.1, order=VLLM_ORDER),
    ],
)
def test_bounded_decisions_never_contradict_the_full_distribution(params: SamplingParams) -> None:
    # every token of random rows, with only the top 10 listed: a decided token must agree with the exact kept set
    rng = np.random.default_rng(0)
    decided = 0
    assert not exactly_decidable(params, 10)
    for _ in range(30):
        lp = _row(rng)
        keep = kept_mask(lp, params)
        order = np.argsort(-lp)[:10]
        top = {f"t{i}": float(lp[i]) for i in order}
        for t in range(lp.size):
            status = check_token(f"t{t}", float(lp[t]), top, params, alternatives=10).status
            if status != "undecided":
                decided += 1
                assert (status == "kept") == bool(keep[t]), (t, status)
    assert decided > 300


def test_exact_decisions_and_pits_match_the_full_distribution() -> None:
    rng = np.random.default_rng(1)
    params = SamplingParams(top_k=8, top_p=0.7, min_p=0.02)
    pits = []
    for _ in range(200):
        lp = _row(rng, 30)
        order = np.argsort(-lp)[:10]
        top = {f"t{i}": float(lp[i]) for i in order}
        q = np.exp(lp - lp.max()) * kept_mask(lp, params)
        t = int(rng.choice(lp.size, p=q / q.sum()))
        scored = ScoredText((f"t{t}",), (float(lp[t]),), (top,))
        (check,) = check_completions([scored], params, alternatives=10, rng=rng)[0]
        assert check.status == "kept"
        assert check.pit is not None
        pits.append(check.pit)
        outside = int(np.flatnonzero(~kept_mask(lp, params))[0])
        assert check_token(f"t{outside}", float(lp[outside]), top, params, alternatives=10).status == "violation"
    # the PITs of tokens drawn from the reference are uniform
    hist = np.histogram(pits, bins=4, range=(0, 1))[0]
    assert hist.min() > 30


def test_noise_tolerance_keeps_near_ties() -> None:
    top = {"a": -1.0, "b": -1.0005, "c": -3.0}
    greedy = SamplingParams(temperature=0.0)
    assert check_token("b", -1.0005, top, greedy, alternatives=3).status == "violation"
    assert check_token("b", -1.0005, top, greedy, alternatives=3, tolerance=0.001).status == "kept"
    assert check_token("c", -3.0, top, greedy, alternatives=3, tolerance=0.001).status == "violation"
    assert check_token("x", -math.inf, top, greedy, alternatives=3).status == "violation"
