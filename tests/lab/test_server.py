"""The lab server through the official `openai` client: models, chat, streaming, completions, errors, headers."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest

openai = pytest.importorskip("openai")

from parity.lab._batcher import MicroBatcher, QueueFullError  # noqa: E402

HEADERS = ("x-parity-server", "x-parity-pool", "x-parity-platform", "x-parity-config-version", "x-parity-model")


@pytest.fixture(scope="module")
def client(lab: Any) -> Any:
    with openai.OpenAI(base_url=f"{lab.url}/v1", api_key="unused", max_retries=0, timeout=60) as c:
        yield c


def test_models_lists_the_fleet(client: Any) -> None:
    assert sorted(m.id for m in client.models.list()) == ["H", "O", "S"]


def test_chat_answers_with_trace_headers_and_logprobs(client: Any) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="S",
        messages=[{"role": "user", "content": "What does `json.dumps` do?"}],
        max_tokens=6,
        logprobs=True,
        top_logprobs=3,
        seed=7,
        user="alice",
    )
    for name in HEADERS:
        assert raw.headers.get(name), name
    assert raw.headers["x-parity-model"] == "S"
    assert raw.headers["x-parity-pool"] == "short"
    completion = raw.parse()
    choice = completion.choices[0]
    assert choice.finish_reason in ("stop", "length")
    assert completion.usage.completion_tokens == len(choice.logprobs.content) <= 6
    for item in choice.logprobs.content:
        assert item.logprob <= 0
        assert len(item.top_logprobs) == 3
        assert item.top_logprobs[0].logprob >= item.top_logprobs[-1].logprob
        assert item.top_logprobs[0].logprob >= item.logprob - 1e-9  # the top alternative is at least as likely


def test_streaming_matches_the_non_streaming_answer_for_a_seed(client: Any) -> None:
    kwargs: dict[str, Any] = {
        "model": "O",
        "messages": [{"role": "user", "content": "What does `os.path.join` do?"}],
        "max_tokens": 10,
        "seed": 11,
        "temperature": 1.0,
        "user": "bob",
    }
    whole = client.chat.completions.create(**kwargs).choices[0].message.content
    stream = client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True})
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(pieces) == whole
    assert finish in ("stop", "length")
    assert usage is not None
    assert usage.completion_tokens <= 10


def test_streaming_responses_carry_the_headers(lab: Any) -> None:
    body = {"model": "H", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True}
    with httpx.stream("POST", f"{lab.url}/v1/chat/completions", json=body, timeout=60) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        for name in HEADERS:
            assert resp.headers.get(name), name
        lines = [line for line in resp.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"


def test_completion_echo_with_zero_tokens_scores_the_prompt(client: Any) -> None:
    prompt = "import os\nimport sys\n"
    completion = client.completions.create(model="S", prompt=prompt, max_tokens=0, echo=True, logprobs=2)
    choice = completion.choices[0]
    assert choice.text == prompt
    lp = choice.logprobs
    assert lp.token_logprobs[0] is None
    assert all(v <= 0 for v in lp.token_logprobs[1:])
    assert "".join(lp.tokens) == prompt
    assert len(lp.tokens) == completion.usage.prompt_tokens
    assert all(len(top) <= 2 for top in lp.top_logprobs[1:])
    assert completion.usage.completion_tokens == 0


def test_completion_greedy_is_reproducible_and_honours_stop(client: Any) -> None:
    kwargs: dict[str, Any] = {"model": "S", "prompt": "def add(a, b):\n", "max_tokens": 8, "temperature": 0}
    first = client.completions.create(**kwargs).choices[0].text
    assert client.completions.create(**kwargs).choices[0].text == first
    if first:
        stop = first[len(first) // 2 :][:1] or first[:1]
        cut = client.completions.create(**kwargs, stop=[stop]).choices[0]
        assert stop not in cut.text
        assert cut.finish_reason == "stop"


def test_completion_n_gives_several_choices(client: Any) -> None:
    out = client.completions.create(model="H", prompt="The json module", max_tokens=3, n=3, seed=1)
    assert [c.index for c in out.choices] == [0, 1, 2]


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"top_p": 1.5}, "top_p"),
        ({"temperature": -1}, "temperature"),
        ({"max_tokens": 100000}, "max_tokens"),
        ({"extra_body": {"min_p": 2}}, "min_p"),
        ({"extra_body": {"top_k": 1.5}}, "top_k"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"n": 2, "stream": True}, "n"),
        ({"logprobs": 50}, "logprobs"),
        ({"stream": True, "echo": True, "max_tokens": 0}, "max_tokens"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(client: Any, kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="S", prompt="hi", **{"max_tokens": 3, **kwargs})
    assert info.value.status_code == 400
    assert info.value.body["param"] == param
    assert param in info.value.body["message"]


def test_unknown_model_is_404(client: Any) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert info.value.body["code"] == "model_not_found"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"model": "S"}',
        b'{"model": "S", "messages": "hi"}',
        b'{"model": "S", "messages": [{"role": "robot", "content": "x"}]}',
        b'{"model": "S", "messages": [{"role": "user", "content": 5}]}',
        b'{"model": "S", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}',
        b'{"model": "S", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 3}',
        b'{"model": 5, "messages": []}',
    ],
)
def test_malformed_chat_bodies_are_400_not_500(lab: Any, body: bytes) -> None:
    resp = httpx.post(f"{lab.url}/v1/chat/completions", content=body, timeout=30)
    assert resp.status_code == 400
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    "body",
    [
        {"model": "S", "prompt": [True, False]},
        {"model": "S", "prompt": [999999]},
        {"model": "S", "prompt": "x", "max_tokens": 0},
        {"model": "S", "prompt": [100] * 5000},  # beyond even the long pool's 4096-token window
        {"model": "S", "prompt": "x", "seed": "one"},
        {"model": "S", "prompt": "x", "echo": "yes"},
    ],
)
def test_malformed_completion_bodies_are_400_not_500(lab: Any, body: dict[str, Any]) -> None:
    resp = httpx.post(f"{lab.url}/v1/completions", json=body, timeout=30)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] in ("prompt", "max_tokens", "seed", "echo")


def test_unknown_route_answers_in_the_error_shape(lab: Any) -> None:
    resp = httpx.get(f"{lab.url}/v1/nothing", timeout=10)
    assert resp.status_code == 404
    assert resp.json()["error"]["type"] == "not_found_error"


def test_concurrent_requests_all_succeed(lab: Any) -> None:
    results: list[int] = []

    def one(i: int) -> None:
        body = {"model": "S", "prompt": f"def f{i}(x):\n", "max_tokens": 4, "user": f"u{i}"}
        results.append(httpx.post(f"{lab.url}/v1/completions", json=body, timeout=60).status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 8


def test_micro_batcher_prefills_waiting_requests_together() -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from parity.lab.engine import Engine, GenerationRequest

    engine = Engine.load()
    batcher = MicroBatcher(lambda key: engine, max_batch=8)
    gate = threading.Event()

    async def scenario() -> list[Any]:
        blocker = asyncio.ensure_future(batcher.call(gate.wait))  # hold the worker so the requests queue up
        await asyncio.sleep(0.05)
        ids = engine.tokenizer.encode("import")
        jobs = [
            asyncio.ensure_future(batcher.submit("k", GenerationRequest(ids, max_tokens=2, seed=i))) for i in range(5)
        ]
        await asyncio.sleep(0.05)
        gate.set()
        await blocker
        return list(await asyncio.gather(*jobs))

    try:
        results = asyncio.run(scenario())
    finally:
        batcher.close()
    assert batcher.stats.largest == 5  # all five ran in the first step
    assert batcher.stats.joined == 0
    assert batcher.stats.requests == 5
    assert len(results) == 5
    assert all(r.completion_tokens <= 2 for r in results)


def test_a_request_arriving_mid_batch_joins_it_and_leaves_first() -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    import numpy as np

    from parity.lab.engine import Engine, GenerationRequest

    engine = Engine.load()
    stops = sorted(engine.tokenizer.stop_ids)

    def never_stop(logits: Any, step: int, rng: Any) -> Any:
        logits[stops] = -np.inf
        return logits

    long = GenerationRequest(engine.tokenizer.encode("def read(path):"), max_tokens=24, temperature=0.0)
    long.logits_processor = never_stop
    short = GenerationRequest(engine.tokenizer.encode("The json module"), max_tokens=4, temperature=0.0)
    short.logits_processor = never_stop
    [long_alone] = engine.generate([long])
    [short_alone] = engine.generate([short])
    batcher = MicroBatcher(lambda key: engine, max_batch=8)
    order: list[str] = []

    async def scenario() -> tuple[Any, Any]:
        streamed = asyncio.Event()
        seen: list[Any] = []

        def on_token(event: Any) -> None:
            seen.append(event)
            if len(seen) == 3:
                streamed.set()

        async def run(name: str, request: Any, callback: Any = None) -> Any:
            result = await batcher.submit("k", request, callback)
            order.append(name)
            return result

        first = asyncio.ensure_future(run("long", long, on_token))
        await streamed.wait()  # the long request is decoding: the short one arrives mid-batch
        second = asyncio.ensure_future(run("short", short))
        return await first, await second

    try:
        long_result, short_result = asyncio.run(scenario())
    finally:
        batcher.close()
    assert batcher.stats.joined == 1
    assert batcher.stats.largest == 2
    assert order == ["short", "long"]  # it left the batch as soon as it was done
    assert long_result.token_ids == long_alone.token_ids
    assert len(long_result.token_ids) == 24
    assert short_result.token_ids == short_alone.token_ids
    assert len(short_result.token_ids) == 4


def test_a_full_queue_is_refused_at_once() -> None:
    batcher = MicroBatcher(lambda key: None, max_queue=1)
    gate = threading.Event()

    async def scenario() -> None:
        blocker = asyncio.ensure_future(batcher.call(gate.wait))
        await asyncio.sleep(0.05)  # the worker holds the blocker; the queue is empty again
        waiting = asyncio.ensure_future(batcher.call(lambda: 1))
        await asyncio.sleep(0)
        with pytest.raises(QueueFullError, match="saturated"):
            await batcher.call(lambda: 2)
        gate.set()
        await blocker
        assert await waiting == 1

    try:
        asyncio.run(scenario())
    finally:
        gate.set()
        batcher.close()


def test_session_header_and_user_field_route_alike(lab: Any) -> None:
    body = {"model": "S", "prompt": "x", "max_tokens": 1}
    by_user = httpx.post(f"{lab.url}/v1/completions", json={**body, "user": "carol"}, timeout=60)
    by_header = httpx.post(f"{lab.url}/v1/completions", json=body, headers={"x-session-id": "carol"}, timeout=60)
    assert by_user.headers["x-parity-server"] == by_header.headers["x-parity-server"]


def test_streamed_completion_echoes_then_continues(client: Any) -> None:
    kwargs: dict[str, Any] = {"model": "S", "prompt": "import json\n", "max_tokens": 5, "seed": 4}
    whole = client.completions.create(**kwargs).choices[0].text
    pieces = [c.choices[0].text for c in client.completions.create(**kwargs, echo=True, stream=True) if c.choices]
    assert pieces[0] == "import json\n"
    assert "".join(pieces[1:]) == whole


def test_a_cancelled_request_leaves_the_running_batch() -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    import numpy as np

    from parity.lab.engine import Engine, GenerationRequest

    engine = Engine.load()
    stops = sorted(engine.tokenizer.stop_ids)

    def never_stop(logits: Any, step: int, rng: Any) -> Any:
        logits[stops] = -np.inf
        return logits

    ids = engine.tokenizer.encode("import")
    batcher = MicroBatcher(lambda key: engine)
    streamed: list[Any] = []

    async def scenario() -> Any:
        started = asyncio.Event()

        def on_token(event: Any) -> None:
            streamed.append(event)
            started.set()

        request = GenerationRequest(ids, max_tokens=400, temperature=0.0, logits_processor=never_stop)
        abandoned = asyncio.ensure_future(batcher.submit("k", request, on_token))
        await started.wait()
        abandoned.cancel()  # what a closed stream does to its generation
        answer = await batcher.submit("k", GenerationRequest(ids, max_tokens=2, temperature=0.0))
        for _ in range(200):  # the worker drops the abandoned request at its next step
            if batcher.running == 0:
                break
            await asyncio.sleep(0.05)
        return answer

    try:
        answer = asyncio.run(scenario())
    finally:
        batcher.close()
    assert answer.completion_tokens <= 2
    assert batcher.stats.cancelled == 1
    assert batcher.running == 0
    assert len(streamed) < 400


def test_admin_state_reports_each_engines_prefix_cache(client: Any, lab: Any) -> None:
    messages = [{"role": "user", "content": "What does `shlex.split` do? Answer in one sentence, please."}]
    for _ in range(2):  # the second request starts like the first: its prompt comes from the cache
        client.chat.completions.create(model="S", messages=messages, max_tokens=3, seed=1, user="prefix-cache")
    state = httpx.get(f"{lab.url}/admin/state", timeout=30).json()
    caches = state["prefix_cache"]
    assert caches, state
    assert sum(c["tokens_reused"] for c in caches.values()) > 0
    assert all(c["bytes"] >= 0 and c["entries"] >= 0 for c in caches.values())
