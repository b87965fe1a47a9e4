"""The faultbox in front of the real lab server: each fault changes what the upstream serves, on its segment only."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from tests.lab.conftest import RunningLab

from parity._background_server import BackgroundServer
from parity.lab.faultbox import FaultBox, FaultPlan

HISTORY = [
    {"role": "user", "content": "Tell me about the history of the city of Lyon and its old silk weaving trade."},
    {"role": "assistant", "content": "Lyon was a centre of silk weaving from the sixteenth century onwards."},
    {"role": "user", "content": "And today?"},
]


@pytest.fixture
def box(lab: RunningLab, request: pytest.FixtureRequest) -> Iterator[tuple[str, FaultBox]]:
    app = FaultBox(lab.url, request.param)
    with BackgroundServer(app, name="faultbox") as server:
        yield server.url, app


def chat(url: str, model: str, **extra: object) -> httpx.Response:
    body = {"model": model, "messages": HISTORY, "max_tokens": 16, "temperature": 0.0, **extra}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)


@pytest.mark.parametrize("box", [FaultPlan("max-tokens-cap", 1.0, {"model": "H"}, cap=3)], indirect=True)
def test_max_tokens_cap_on_its_model_only(box: tuple[str, FaultBox]) -> None:
    url, app = box
    hit = chat(url, "H")
    assert hit.headers["x-faultbox-injected"] == "max-tokens-cap"
    assert hit.json()["usage"]["completion_tokens"] <= 3
    assert hit.json()["choices"][0]["finish_reason"] == "length"
    other = chat(url, "S")
    assert other.headers["x-faultbox-injected"] == "none"
    assert other.json()["usage"]["completion_tokens"] > 3
    assert httpx.get(f"{url}/faultbox/stats").json() | {} == app.stats()
    assert (app.seen, app.in_segment, app.injected) == (2, 1, 1)


@pytest.mark.parametrize("box", [FaultPlan("drop-context", 1.0, {"model": "H"})], indirect=True)
def test_dropped_context_shrinks_the_served_prompt(box: tuple[str, FaultBox], lab: RunningLab) -> None:
    url, app = box
    direct = chat(lab.url, "H").json()["usage"]["prompt_tokens"]
    answer = chat(url, "H").json()
    assert answer["usage"]["prompt_tokens"] < direct / 2
    # a request without history loses nothing: injected, but not changed; only the changed one's id is kept
    single = httpx.post(
        f"{url}/v1/chat/completions", json={"model": "H", "messages": HISTORY[-1:], "max_tokens": 4}, timeout=120
    )
    assert single.headers["x-faultbox-injected"] == "drop-context"
    assert (app.injected, app.changed, list(app.changed_ids)) == (2, 1, [answer["id"]])


@pytest.mark.parametrize("box", [FaultPlan("reencode", 1.0, {})], indirect=True)
def test_reencode_makes_mojibake_json_and_sse(box: tuple[str, FaultBox], lab: RunningLab) -> None:
    url, app = box
    body = {"model": "S", "messages": [{"role": "user", "content": "Write this in Thai: hello"}], "max_tokens": 12}
    direct = httpx.post(f"{lab.url}/v1/chat/completions", json=body | {"seed": 1}, timeout=120).json()
    boxed = httpx.post(f"{url}/v1/chat/completions", json=body | {"seed": 1}, timeout=120).json()
    text = direct["choices"][0]["message"]["content"]
    assert boxed["choices"][0]["message"]["content"] == text.encode("utf-8").decode("cp1252", errors="replace")
    streamed = body | {"seed": 1, "stream": True}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=streamed, timeout=120) as resp:
        assert resp.headers["x-faultbox-injected"] == "reencode"
        lines = [ln for ln in resp.iter_lines() if ln.startswith("data:")]
    assert lines[-1].strip() == "data: [DONE]"
    thai = any(not ch.isascii() for ch in text)
    assert app.changed == (2 if thai else 0)  # the JSON answer and the stream: changed only when not ASCII


@pytest.mark.parametrize("box", [FaultPlan("ignore-sampling", 1.0, {"model": "H"})], indirect=True)
def test_ignored_sampling_parameters(box: tuple[str, FaultBox]) -> None:
    url, app = box
    assert chat(url, "H", top_p=0.5).status_code == 200
    assert app.injected == 1


@pytest.mark.parametrize("box", [FaultPlan("latency", 1.0, {"model": "H"}, delay=0.5)], indirect=True)
def test_latency_spike_leaves_the_answer_alone(box: tuple[str, FaultBox], lab: RunningLab) -> None:
    url, _ = box
    direct = chat(lab.url, "H").json()["choices"][0]["message"]["content"]
    slow = chat(url, "H")
    assert slow.headers["x-faultbox-injected"] == "latency"
    assert slow.elapsed.total_seconds() >= 0.5
    assert slow.json()["choices"][0]["message"]["content"] == direct


def test_bad_upstream_is_a_502_naming_it() -> None:
    app = FaultBox("http://127.0.0.1:9", FaultPlan("latency", 0.0))
    with BackgroundServer(app, name="faultbox") as server:
        resp = httpx.post(f"{server.url}/v1/chat/completions", json={"model": "H"}, timeout=30)
    assert resp.status_code == 502
    assert "upstream http://127.0.0.1:9 failed" in resp.json()["error"]["message"]
