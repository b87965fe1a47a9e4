"""The public surface others build on: names, shapes, defaults, validation messages."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import parity.detectors as det
from parity import InvalidInputError
from parity.detectors import Detector, Observation, ResponseContext, default_detectors, score_response


def test_public_names() -> None:
    for name in (
        "ResponseContext",
        "Observation",
        "Detector",
        "UnexpectedScriptDetector",
        "CodeIntegrityDetector",
        "DegenerationDetector",
        "SamplingConsistencyDetector",
        "default_detectors",
        "score_response",
    ):
        assert name in det.__all__
        assert hasattr(det, name)


def test_default_detectors_are_detectors_with_distinct_names() -> None:
    detectors = default_detectors()
    assert all(isinstance(d, Detector) for d in detectors)
    names = [d.name for d in detectors]
    assert names == ["unexpected_script", "code_integrity", "degeneration", "sampling_consistency"]


def test_score_response_clean_text() -> None:
    obs = score_response(ResponseContext("A short, clean answer.", prompt="Say something."))
    assert all(isinstance(o, Observation) and not o.flagged for o in obs)


def test_score_response_with_explicit_detectors() -> None:
    obs = score_response(ResponseContext("x ไทย y", prompt="Say x and y."), [det.UnexpectedScriptDetector()])
    assert [o.detector for o in obs] == ["unexpected_script"]
    assert obs[0].flagged


def test_context_validation_names_the_argument() -> None:
    with pytest.raises(InvalidInputError, match=r"`top_p` must be a number in \(0, 1\]"):
        ResponseContext("x", top_p=1.5)
    with pytest.raises(InvalidInputError, match="`temperature` must be a finite number"):
        ResponseContext("x", temperature=-1.0)
    with pytest.raises(InvalidInputError, match="`top_logprobs` must have one entry per token"):
        ResponseContext("x", tokens=["x"], top_logprobs=[{}, {}])
    with pytest.raises(InvalidInputError, match="`ctx` must be a ResponseContext"):
        score_response("x")  # type: ignore[arg-type]


@given(
    response=st.text(max_size=400),
    prompt=st.text(max_size=80),
    fence=st.sampled_from(["", "```python\n", "```json\n", "```\n"]),
)
@settings(max_examples=150, deadline=None)
def test_any_text_scores_without_raising(response: str, prompt: str, fence: str) -> None:
    for obs in score_response(ResponseContext(fence + response, prompt=prompt)):
        assert isinstance(obs, Observation)
        assert 0.0 <= obs.score <= 1.0
        if obs.span is not None:
            assert 0 <= obs.span[0] <= obs.span[1] <= len(fence + response)
