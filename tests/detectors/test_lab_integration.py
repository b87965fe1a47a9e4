"""The detectors against the lab server over HTTP: clean output is not flagged, reference scoring works."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from parity.detectors import (
    EndpointScorer,
    ReferenceScoreDetector,
    ResponseContext,
    SamplingConsistencyDetector,
    default_detectors,
    score_response,
)

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
torch = pytest.importorskip("torch")

PROMPTS = ("def add(a, b):\n", "The os module provides")


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[str, str]]:
    torch.set_num_threads(1)
    from parity.lab.fleet import FleetConfig, default_config_path
    from parity.lab.server import LabServer, running

    server = LabServer(FleetConfig.load(default_config_path("fleet")), weights_dir="parity-lab-9m", admin_token="t")
    model = sorted(server.fleet.models)[0]
    with running(server) as url:
        yield url, model


@pytest.fixture(scope="module")
def samples(lab: tuple[str, str]) -> list[ResponseContext]:
    url, model = lab
    out = []
    for prompt in PROMPTS:
        body = {"model": model, "prompt": prompt, "max_tokens": 16, "temperature": 0.8, "top_p": 0.95}
        body |= {"logprobs": 5, "n": 12, "seed": 3}
        choices = httpx.post(f"{url}/v1/completions", json=body, timeout=120).json()["choices"]
        for c in choices:
            lp = c["logprobs"]
            out.append(
                ResponseContext(
                    c["text"],
                    prompt=prompt,
                    tokens=lp["tokens"],
                    token_logprobs=lp["token_logprobs"],
                    top_logprobs=lp["top_logprobs"],
                    temperature=0.8,
                    top_p=0.95,
                    finish_reason=c.get("finish_reason"),
                )
            )
    return out


def test_clean_lab_output_passes_sampling_consistency(samples: list[ResponseContext]) -> None:
    det = SamplingConsistencyDetector()
    assert len(samples) == 24
    assert [s.response for s in samples if det.score(s).flagged] == []


def test_default_detectors_run_on_lab_output(samples: list[ResponseContext]) -> None:
    for s in samples:
        assert len(score_response(s, default_detectors())) == 4


def test_endpoint_scorer_matches_served_logprobs(lab: tuple[str, str], samples: list[ResponseContext]) -> None:
    url, model = lab
    matched = 0
    with EndpointScorer(url, model) as scorer:
        for s in samples[:8]:
            values = scorer.score(s.prompt, s.response)
            assert s.token_logprobs is not None
            # teacher forcing reproduces the served logprobs exactly where the text re-tokenizes the same way
            # (sampled text need not: "ab" drawn as "a" + "b" comes back as the single token "ab")
            if len(values) == len(s.token_logprobs) and values == pytest.approx(list(s.token_logprobs), abs=1e-3):
                matched += 1
    assert matched >= 3


def test_reference_scoring_flags_injected_text(lab: tuple[str, str], samples: list[ResponseContext]) -> None:
    url, model = lab
    with EndpointScorer(url, model) as scorer:
        det = ReferenceScoreDetector(scorer, alpha=0.05).fit(samples)
        assert det.reference_statistics == sorted(det.reference_statistics)
        assert not all(det.score(s).flagged for s in samples[:4])
        garbage = ResponseContext(" สวัสดี 你好 @@ ;) }} 数据 ครับ ภาษาไทย", prompt=PROMPTS[0])
        assert det.score(garbage).flagged


def test_chat_completion_scored_through_the_chat_template(lab: tuple[str, str]) -> None:
    url, model = lab
    messages = [{"role": "user", "content": "What does the os module do?"}]
    body = {"model": model, "messages": messages, "max_tokens": 12, "temperature": 0.0, "logprobs": True}
    choice = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120).json()["choices"][0]
    served = [c["logprob"] for c in choice["logprobs"]["content"]]

    def template(ctx: ResponseContext) -> str:  # the lab's chat template (parity.lab.engine.Engine.chat_prompt)
        return "".join(f"<|{m['role']}|>{m['content']}<|end|>\n" for m in ctx.messages) + "<|assistant|>"

    with EndpointScorer(url, model) as scorer:
        det = ReferenceScoreDetector(scorer, threshold=-50.0, render_prompt=template)
        ctx = ResponseContext(choice["message"]["content"], messages=messages)
        values = scorer.score(det.prompt_for(ctx), ctx.response)
        assert not det.score(ctx).flagged
    assert values
    # teacher forcing through the template reproduces the served chat logprobs (where it re-tokenizes the same)
    if len(values) == len(served):
        assert values == pytest.approx(served, abs=1e-3)
