from __future__ import annotations

import json
import math

import httpx
import pytest

from parity import EndpointError, InvalidInputError
from parity.detectors import EndpointScorer, MockScorer, ReferenceScoreDetector, ReferenceScorer, ResponseContext


def per_char(prompt: str, completion: str) -> list[float]:
    """A reference that likes lowercase letters and dislikes everything else."""
    return [-0.2 if c.islower() else -6.0 for c in completion]


def test_mock_scorer_is_a_reference_scorer() -> None:
    scorer = MockScorer(per_char)
    assert isinstance(scorer, ReferenceScorer)
    assert scorer.score("p", "aB") == [-0.2, -6.0]
    with pytest.raises(InvalidInputError, match="`handler` must be callable"):
        MockScorer(3)  # type: ignore[arg-type]


def test_fit_and_flag() -> None:
    det = ReferenceScoreDetector(MockScorer(per_char), alpha=0.05)
    samples = [("p", "abcdefghij"[: k % 10 + 1] + ("X" if k % 7 == 0 else "")) for k in range(60)]
    det.fit(samples)
    assert det.threshold is not None
    assert len(det.reference_statistics) == 60
    clean = det.score(ResponseContext("abcdef", prompt="p"))
    assert not clean.flagged
    assert 0.0 <= clean.score < 0.95
    corrupt = det.score(ResponseContext("aXXX", prompt="p"))
    assert corrupt.flagged
    assert corrupt.score == pytest.approx(1 - 1 / 61)


def test_false_alarm_rate_on_the_references_own_samples_is_at_most_alpha() -> None:
    import random

    rng = random.Random(0)
    det = ReferenceScoreDetector(MockScorer(lambda p, c: [-rng.expovariate(1.0) for _ in c]), alpha=0.05)
    det.fit([("p", "x" * 20)] * 200)
    flags = sum(det.score(ResponseContext("x" * 20, prompt="p")).flagged for _ in range(2000))
    assert flags / 2000 <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 2000)


def test_threshold_without_fit_and_validation() -> None:
    det = ReferenceScoreDetector(MockScorer(per_char), threshold=-1.0)
    assert det.score(ResponseContext("XX")).flagged
    assert not det.score(ResponseContext("ab")).flagged
    with pytest.raises(InvalidInputError, match="`threshold` must be given, or fitted"):
        ReferenceScoreDetector(MockScorer(per_char)).score(ResponseContext("a"))
    with pytest.raises(InvalidInputError, match="`samples` must hold at least 99 reference samples"):
        ReferenceScoreDetector(MockScorer(per_char), alpha=0.01).fit([("p", "a")] * 30)
    with pytest.raises(InvalidInputError, match="`alpha` must be in"):
        ReferenceScoreDetector(MockScorer(per_char), alpha=1.0)
    with pytest.raises(InvalidInputError, match="`scorer` must have a score"):
        ReferenceScoreDetector(object())  # type: ignore[arg-type]


def _echo_server(requests: list[dict[str, object]], *, refuse_zero: bool = False) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        requests.append(body)
        if refuse_zero and body["max_tokens"] == 0:
            return httpx.Response(400, json={"error": {"message": "max_tokens must be >= 1"}})
        text = str(body["prompt"])
        tokens = [text[i : i + 2] for i in range(0, len(text), 2)]
        lps: list[float | None] = [None] + [-0.5] * (len(tokens) - 1)
        if body["max_tokens"]:
            tokens.append(" extra")
            lps.append(-1.0)
        offsets = [2 * i for i in range(len(tokens))]
        logprobs = {"tokens": tokens, "token_logprobs": lps, "text_offset": offsets}
        return httpx.Response(200, json={"choices": [{"text": text, "logprobs": logprobs}]})

    return httpx.MockTransport(handler)


def test_endpoint_scorer_echo() -> None:
    sent: list[dict[str, object]] = []
    with EndpointScorer("http://ref:8000/v1", "S", transport=_echo_server(sent)) as scorer:
        assert scorer.url == "http://ref:8000/v1/completions"
        assert scorer.score("abcd", "efgh") == [-0.5, -0.5]
    assert sent[0]["echo"] is True
    assert sent[0]["logprobs"] == 1
    assert sent[0]["max_tokens"] == 0
    assert sent[0]["prompt"] == "abcdefgh"


def test_endpoint_scorer_retries_with_one_token_and_drops_it() -> None:
    sent: list[dict[str, object]] = []
    scorer = EndpointScorer("http://ref", "S", transport=_echo_server(sent, refuse_zero=True))
    assert scorer.score("ab", "cdef") == [-0.5, -0.5]
    assert [r["max_tokens"] for r in sent] == [0, 1]


def test_endpoint_errors() -> None:
    def no_logprobs(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"choices": [{"text": "x"}]})

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def server_error(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text="busy")

    with pytest.raises(EndpointError, match="no prompt logprobs"):
        EndpointScorer("http://ref", "S", transport=httpx.MockTransport(no_logprobs)).score("a", "b")
    with pytest.raises(EndpointError, match="cannot reach the reference"):
        EndpointScorer("http://ref", "S", transport=httpx.MockTransport(down)).score("a", "b")
    with pytest.raises(EndpointError, match="answered HTTP 503") as info:
        EndpointScorer("http://ref", "S", transport=httpx.MockTransport(server_error)).score("a", "b")
    assert info.value.status_code == 503
    with pytest.raises(InvalidInputError, match="`base_url` must be an http"):
        EndpointScorer("ref:8000", "S")
