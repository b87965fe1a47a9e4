from __future__ import annotations

import math

import numpy as np
import pytest

from parity import InvalidInputError
from parity.detectors import ResponseContext, SamplingConsistencyDetector

DET = SamplingConsistencyDetector()


def ctx(chosen: str, lp: float, alts: dict[str, float], **kw: object) -> ResponseContext:
    return ResponseContext(chosen, tokens=[chosen], token_logprobs=[lp], top_logprobs=[alts], **kw)  # type: ignore[arg-type]


def test_no_logprobs_is_not_applicable() -> None:
    obs = DET.score(ResponseContext("text"))
    assert not obs.flagged
    assert obs.score == 0.0


def test_temperature_zero_argmax() -> None:
    assert DET.score(ctx("b", -1.2, {"a": -0.4, "b": -1.2}, temperature=0.0)).flagged
    assert not DET.score(ctx("a", -0.4, {"a": -0.4, "b": -1.2}, temperature=0.0)).flagged
    # a bf16-sized near tie is not proof of a wrong argmax
    assert not DET.score(ctx("b", -0.72, {"a": -0.70, "b": -0.72}, temperature=0.0)).flagged


def test_top_k_counts_only_what_the_alternatives_prove() -> None:
    alts = {"a": -0.5, "b": -1.0, "c": -2.0, "d": -6.0}
    assert DET.score(ctx("d", -6.0, alts, temperature=1.0, top_k=3)).flagged
    assert not DET.score(ctx("c", -2.0, alts, temperature=1.0, top_k=3)).flagged
    # only 2 alternatives returned: a token below both could still be third
    assert not DET.score(ctx("z", -9.0, {"a": -0.5, "b": -1.0}, temperature=1.0, top_k=3)).flagged
    assert not DET.score(ctx("d", -6.0, alts, temperature=1.0, top_k=0)).flagged  # 0 = disabled


def test_top_p_nucleus_bound() -> None:
    alts = {"a": math.log(0.6), "b": math.log(0.35), "c": math.log(0.04)}
    # 0.95 of the mass is above "c": outside a 0.9 nucleus, inside a 0.99 one
    assert DET.score(ctx("c", alts["c"], alts, temperature=1.0, top_p=0.9)).flagged
    assert not DET.score(ctx("c", alts["c"], alts, temperature=1.0, top_p=0.99)).flagged
    # below temperature 1 the bound still holds; above it nothing is proven
    assert DET.score(ctx("c", alts["c"], alts, temperature=0.7, top_p=0.9)).flagged
    assert not DET.score(ctx("c", alts["c"], alts, temperature=1.3, top_p=0.9)).flagged
    # processed logprobs: the top-p mass check is off
    assert (
        not SamplingConsistencyDetector(mode="processed")
        .score(ctx("c", alts["c"], alts, temperature=1.0, top_p=0.9))
        .flagged
    )


def test_far_below_and_impossible_tokens() -> None:
    assert DET.score(ctx("x", -30.0, {"a": -0.1}, temperature=1.0)).flagged
    assert not DET.score(ctx("x", -20.0, {"a": -0.1}, temperature=1.0)).flagged
    assert not DET.score(ctx("x", -30.0, {"a": -0.1}, temperature=2.0)).flagged  # gap scales with temperature
    assert DET.score(ctx("x", float("-inf"), {"a": -0.1})).flagged


def test_missing_values_and_span() -> None:
    c = ResponseContext(
        "Hi there",
        tokens=["Hi", " there"],
        token_logprobs=[None, -5.0],  # type: ignore[list-item]
        top_logprobs=[{}, {" you": -0.1, " there": -5.0}],
        temperature=0.0,
    )
    obs = DET.score(c)
    assert obs.flagged
    assert obs.evidence == " there"
    assert obs.span == (2, 8)
    assert obs.score == 0.5


def test_validation() -> None:
    with pytest.raises(InvalidInputError, match="`mode` must be 'raw' or 'processed'"):
        SamplingConsistencyDetector(mode="x")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="`far_below_nats` must be a finite number >= 0"):
        SamplingConsistencyDetector(far_below_nats=-1)


# ---- the incident's sampler bugs on a simulated model, logprobs reported from the raw distribution ----

VOCAB = 2000
TOP_N = 20


def _responses(
    sampler: str, *, top_p: float, temperature: float, seed: int, n: int = 60, length: int = 15
) -> list[ResponseContext]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        tokens: list[str] = []
        lps: list[float] = []
        tops: list[dict[str, float]] = []
        for _ in range(length):
            logits = rng.standard_normal(VOCAB) * 3.0
            logp = logits - np.logaddexp.reduce(logits)
            order = np.argsort(-logp)
            scaled = logits / max(temperature, 0.05)  # temperature 0 takes keep[0] below
            p = np.exp(scaled - np.logaddexp.reduce(scaled))
            if sampler == "correct":
                ps = p[order]
                keep = order[: int(np.searchsorted(np.cumsum(ps), top_p) + 1)]
            elif sampler == "no_top_p":  # threshold applied at the wrong precision: nothing cut
                keep = order
            else:  # "drop_argmax": the approximate top-k miscompile loses the maximum
                ps = p[order]
                keep = order[1 : int(np.searchsorted(np.cumsum(ps), top_p) + 2)]
            q = p[keep] / p[keep].sum()
            token = int(rng.choice(keep, p=q)) if temperature > 0 else int(keep[0])
            tokens.append(f"t{token}")
            lps.append(float(logp[token]))
            tops.append({f"t{i}": float(logp[i]) for i in order[:TOP_N]})
        out.append(
            ResponseContext(
                "".join(tokens),
                tokens=tokens,
                token_logprobs=lps,
                top_logprobs=tops,
                temperature=temperature,
                top_p=top_p,
            )
        )
    return out


def _flag_rate(responses: list[ResponseContext]) -> float:
    return sum(DET.score(r).flagged for r in responses) / len(responses)


def test_correct_sampler_is_never_flagged() -> None:
    assert _flag_rate(_responses("correct", top_p=0.9, temperature=0.8, seed=1)) == 0.0
    assert _flag_rate(_responses("correct", top_p=1.0, temperature=0.0, seed=2)) == 0.0


def test_incident_sampler_bugs_are_caught() -> None:
    assert _flag_rate(_responses("drop_argmax", top_p=1.0, temperature=0.0, seed=3)) == 1.0
    assert _flag_rate(_responses("no_top_p", top_p=0.5, temperature=1.0, seed=4)) > 0.5


def test_processed_logprobs_are_recognised_by_minus_infinity() -> None:
    # a server reporting the distribution after top-p: renormalised over the kept tokens, the rest at -inf
    kept = {"a": math.log(0.88 / 0.93), "b": math.log(0.05 / 0.93), "c": float("-inf")}
    assert not DET.score(ctx("b", kept["b"], kept, temperature=1.0, top_p=0.9)).flagged
