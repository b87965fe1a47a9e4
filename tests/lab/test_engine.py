"""The lab engine over the committed weights: batching, caching, seeds, logprobs, plug points, validation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from parity._exceptions import InvalidInputError  # noqa: E402
from parity.lab.engine import Engine, GenerationRequest, TokenEvent  # noqa: E402
from parity.sampling import SamplingParams  # noqa: E402

#: generate() reports logprobs from the cached, batched decode; score() from one uncached forward. Same fp32
#: maths in another summation order: differences are ~1e-6 nats; 1e-3 leaves room and still catches misalignment.
LOGPROB_ATOL = 1e-3

#: bf16 keeps 8 mantissa bits: per-token logprobs move by up to a few tenths of a nat on this model.
BF16_ATOL = 1.0

CODE = "def add(a, b):\n    return"
PROSE = "The json module"


@pytest.fixture(scope="module")
def engine() -> Engine:
    torch.set_num_threads(1)
    return Engine.load()


def _req(engine: Engine, text: str, **kwargs: Any) -> GenerationRequest:
    return GenerationRequest(prompt_ids=engine.tokenizer.encode(text), **kwargs)


def test_load_describes_the_model(engine: Engine) -> None:
    assert engine.model_id.startswith("parity-lab")
    assert engine.max_context == 512
    assert engine.tokenizer.vocab_size == 16384
    assert engine.chat_prompt([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]) == (
        "<|system|>Be brief.<|end|>\n<|user|>Hi<|end|>\n<|assistant|>"
    )


def test_batched_greedy_equals_one_at_a_time(engine: Engine) -> None:
    requests = [
        _req(engine, CODE, max_tokens=12, temperature=0.0),
        _req(engine, PROSE, max_tokens=7, temperature=0.0),
        _req(engine, "import", max_tokens=12, temperature=0.0),
    ]
    batched = engine.generate(requests)
    for request, result in zip(requests, batched, strict=True):
        [alone] = engine.generate([request])
        assert result.token_ids == alone.token_ids
        assert result.completion_tokens == len(result.token_ids) <= request.max_tokens
        assert result.prompt_tokens == len(request.prompt_ids)
        if result.finish_reason == "length":
            assert result.completion_tokens == request.max_tokens


def test_seeded_sampling_is_reproducible_and_independent_of_the_batch(engine: Engine) -> None:
    request = _req(engine, CODE, max_tokens=10, temperature=1.0, top_p=0.95, seed=7)
    [alone] = engine.generate([request])
    [again] = engine.generate([request])
    batched = engine.generate(
        [_req(engine, PROSE, max_tokens=4, temperature=0.7, seed=1), request, _req(engine, "x", max_tokens=3)]
    )
    assert alone.token_ids == again.token_ids == batched[1].token_ids
    [negative] = engine.generate([_req(engine, CODE, max_tokens=3, seed=-5)])  # any integer seed is accepted
    assert negative.completion_tokens >= 1 or negative.finish_reason == "stop"
    other = engine.generate([_req(engine, CODE, max_tokens=10, temperature=1.0, top_p=0.95, seed=8)])[0]
    assert len({tuple(alone.token_ids), tuple(other.token_ids)}) in (1, 2)  # different seeds may still agree


def test_logprobs_match_teacher_forced_scores(engine: Engine) -> None:
    request = _req(engine, CODE, max_tokens=8, temperature=0.0, top_logprobs=3)
    [result] = engine.generate([request])
    scored = engine.score(request.prompt_ids, result.token_ids, top_logprobs=3)
    np.testing.assert_allclose([s for s, _ in scored], result.token_logprobs, atol=LOGPROB_ATOL)
    for token, top in zip(result.tokens, result.top_logprobs, strict=True):
        assert len(top) == 3
        assert [lp for _, lp in top] == sorted((lp for _, lp in top), reverse=True)
        assert top[0][0] == token  # greedy picks the most likely token


def test_streamed_texts_concatenate_to_the_result(engine: Engine) -> None:
    streamed: dict[int, list[TokenEvent]] = {0: [], 1: []}
    requests = [
        _req(engine, "สวัสดี", max_tokens=10, temperature=1.0, seed=3),
        _req(engine, CODE, max_tokens=10, temperature=0.0),
    ]
    results = engine.generate(requests, on_token=lambda i, event: streamed[i].append(event))
    for i, result in enumerate(results):
        assert "".join(e.text for e in streamed[i]) == result.text
        assert [e.token_id for e in streamed[i]][: len(result.token_ids)] == result.token_ids


def test_stop_strings_cut_the_text(engine: Engine) -> None:
    [free] = engine.generate([_req(engine, CODE, max_tokens=12, temperature=0.0)])
    assert len(free.text) >= 3
    stop = free.text[1:3]
    [stopped] = engine.generate([_req(engine, CODE, max_tokens=12, temperature=0.0, stop=(stop,))])
    assert stopped.finish_reason == "stop"
    assert stopped.text == free.text[: free.text.find(stop)]


def test_logits_processor_runs_before_sampling_and_logprobs_stay_raw(engine: Engine) -> None:
    forced = 12000
    steps: list[int] = []

    def boost(logits: np.ndarray, step: int, rng: np.random.Generator) -> np.ndarray:
        steps.append(step)
        logits[forced] += 1000.0
        return logits

    request = _req(engine, CODE, max_tokens=4, temperature=0.0, logits_processor=boost)
    [result] = engine.generate([request])
    assert result.token_ids == [forced] * 4
    assert steps == [0, 1, 2, 3]
    scored = engine.score(request.prompt_ids, result.token_ids)
    np.testing.assert_allclose([s for s, _ in scored], result.token_logprobs, atol=LOGPROB_ATOL)
    assert max(result.token_logprobs) < -1.0  # the raw model did not want it


def test_a_custom_sampler_filter_sees_the_whole_group(engine: Engine) -> None:
    batch_sizes: list[int] = []

    def only_token_42(logits: np.ndarray, **params: float) -> np.ndarray:
        batch_sizes.append(logits.shape[0])
        out = np.full_like(logits, -np.inf)
        out[:, 42] = 0.0
        return out

    requests = [_req(engine, text, max_tokens=2, sampler=only_token_42) for text in (CODE, PROSE, "x")]
    results = engine.generate(requests)
    assert all(r.token_ids == [42, 42] for r in results)
    assert batch_sizes == [3, 3]


def test_bf16_and_rope_scaling_load(engine: Engine) -> None:
    request = _req(engine, CODE, max_tokens=6, temperature=0.0)
    [reference] = engine.generate([request])
    bf16 = Engine.load(precision="bf16")
    scored = bf16.score(request.prompt_ids, reference.token_ids)
    np.testing.assert_allclose([s for s, _ in scored], reference.token_logprobs, atol=BF16_ATOL)
    long = Engine.load(rope_scaling=8.0)
    assert long.max_context == 8 * engine.max_context
    moved = long.score(request.prompt_ids, reference.token_ids)
    assert not np.allclose([s for s, _ in moved], reference.token_logprobs, atol=1e-3)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"prompt_ids": []}, r"`requests\[0\]\.prompt_ids` must be a non-empty list"),
        ({"prompt_ids": [16384]}, r"`requests\[0\]\.prompt_ids` must hold ids in \[0, 16384\)"),
        ({"max_tokens": 0}, r"`requests\[0\]\.max_tokens` must be an integer >= 1"),
        ({"max_tokens": 600}, r"`requests\[0\]\.max_tokens` plus the prompt's"),
        ({"top_logprobs": 21}, r"`requests\[0\]\.top_logprobs` must be an integer in \[0, 20\]"),
        ({"stop": ("",)}, r"`requests\[0\]\.stop` must hold non-empty strings"),
        ({"seed": 1.5}, r"`requests\[0\]\.seed` must be an integer or None"),
    ],
)
def test_bad_requests_name_the_argument(engine: Engine, change: dict[str, Any], match: str) -> None:
    fields: dict[str, Any] = {"prompt_ids": [1, 2, 3], **change}
    with pytest.raises(InvalidInputError, match=match):
        engine.generate([GenerationRequest(**fields)])


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"temperature": -1.0}, r"`temperature` must be a finite number >= 0"),
        ({"top_p": 0.0}, r"`top_p` must be a number in \(0, 1\]"),
        ({"top_k": 1.5}, r"`top_k` must be an integer"),
        ({"min_p": 1.5}, r"`min_p` must be a number in \[0, 1\]"),
        ({"sampling": SamplingParams(), "top_p": 0.9}, r"`sampling` must not be combined with keyword"),
        ({"sampling": {"top_p": 0.9}}, r"`sampling` must be a parity.sampling.SamplingParams"),
    ],
)
def test_bad_sampling_parameters_are_refused_by_the_one_bundle(change: dict[str, Any], match: str) -> None:
    """The request's sampling parameters are a parity.sampling.SamplingParams, checked where it is built."""
    with pytest.raises(InvalidInputError, match=match):
        GenerationRequest([1, 2, 3], **change)


def test_a_request_carries_the_bundle_it_was_given(engine: Engine) -> None:
    params = SamplingParams(temperature=0.0, top_k=-1, order=("min_p", "top_k", "top_p"))
    request = GenerationRequest(engine.tokenizer.encode(CODE), max_tokens=3, sampling=params)
    assert request.sampling is params
    [greedy] = engine.generate([request])
    [again] = engine.generate([GenerationRequest(engine.tokenizer.encode(CODE), max_tokens=3, temperature=0.0)])
    assert greedy.token_ids == again.token_ids


def test_bad_load_and_chat_arguments(engine: Engine) -> None:
    with pytest.raises(InvalidInputError, match="`precision` must be 'fp32' or 'bf16'"):
        Engine.load(precision="fp16")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"`rope_scaling` must be a number >= 1\.0"):
        Engine.load(rope_scaling=0.5)
    with pytest.raises(InvalidInputError, match=r"`messages\[0\]\.role` must be one of"):
        engine.chat_prompt([{"role": "robot", "content": "hi"}])
    with pytest.raises(InvalidInputError, match="`continuation_ids` must be a non-empty list"):
        engine.score([1, 2], [])


def test_a_request_joining_a_running_batch_gives_its_solo_answer(engine: Engine) -> None:
    first = [_req(engine, CODE, max_tokens=16, temperature=0.0), _req(engine, PROSE, max_tokens=16, seed=3)]
    later = [_req(engine, "import", max_tokens=6, temperature=0.0), _req(engine, CODE, max_tokens=9, seed=5)]
    solo = {i: engine.generate([r])[0] for i, r in enumerate(first + later)}
    batch = engine.batch()
    for i, request in enumerate(first):
        batch.add(request, tag=i)
    done = batch.step() + batch.step() + batch.step()
    assert batch.running == 2 - len(done)
    for i, request in enumerate(later, start=len(first)):
        batch.add(request, tag=i)  # joins at the next step, beside the running ones
    while batch:
        done += batch.step()
    assert batch.largest >= 3
    assert sorted(tag for tag, _ in done) == [0, 1, 2, 3]
    for tag, result in done:
        assert result.token_ids == solo[tag].token_ids
        assert result.token_logprobs == pytest.approx(solo[tag].token_logprobs, abs=LOGPROB_ATOL)
