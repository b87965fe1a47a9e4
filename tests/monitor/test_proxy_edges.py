"""The proxy's own answers to hostile input: OpenAI-style 4xx, never a 500; bodies over the limit are refused
with 413 before anything is forwarded, and counted."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parity.monitor.intake.proxy import ParityProxy, ProxyConfig
from parity.monitor.intake.scoring import RecordBuilder
from parity.monitor.storage.store import MemoryStore

CHAT = {"model": "S", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def proxy_at(upstream: Any, serve_app: Callable[[Any], Any]) -> Callable[..., tuple[ParityProxy, Any]]:
    def start(**config: Any) -> tuple[ParityProxy, Any]:
        proxy = ParityProxy(
            ProxyConfig(upstream=upstream.url, flush_interval_s=0.05, **config),
            MemoryStore(),
            RecordBuilder(salt="s", scorer=None),
        )
        return proxy, serve_app(proxy.app)

    return start


def _openai_error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


FEEDBACK_BODIES: list[tuple[bytes, str, str | None]] = [
    (b'{"response_id": "a\\ud800b", "kind": "thumbs_up"}', "invalid_unicode", None),
    (b'{"response_id": "r", "kind": "thumbs_up", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}", "too_deep", None),
    (b'{"response_id": "r", "kind": "thumbs_up", "n": NaN}', "invalid_json", None),
    (b'{"response_id": "r", "kind": Infinity}', "invalid_json", None),
    (b"[1, 2]", "invalid_value", None),
    (b'"thumbs_up"', "invalid_value", None),
    (b"null", "invalid_value", None),
    (b"", "invalid_json", None),
    (b"\xff\xfe", "invalid_encoding", None),
    (b'{"response_id": 5, "kind": "thumbs_up"}', "invalid_value", "response_id"),
    (b'{"response_id": "r", "kind": ["thumbs_up"]}', "invalid_value", "kind"),
    (b'{"response_id": "r", "kind": "meh"}', "invalid_value", "kind"),
    (b'{"response_id": "r", "kind": "thumbs_up", "time": 12}', "invalid_value", "time"),
    (b'{"response_id": "r", "kind": "thumbs_up", "time": "yesterday"}', "invalid_value", "time"),
]


def test_every_hostile_feedback_body_is_an_openai_400(proxy_at: Callable[..., tuple[ParityProxy, Any]]) -> None:
    proxy, handle = proxy_at()
    for body, code, param in FEEDBACK_BODIES:
        error = _openai_error(httpx.post(handle.url + "/v1/feedback", content=body), 400)
        assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param), body[:80]
    assert httpx.post(handle.url + "/v1/feedback", json={"response_id": "r", "kind": "thumbs_up"}).status_code == 202
    assert proxy.wait_idle()
    assert len(proxy.store.feedback()) == 1


def test_the_proxys_own_404_and_405_are_openai_errors(proxy_at: Callable[..., tuple[ParityProxy, Any]]) -> None:
    _, handle = proxy_at()
    assert _openai_error(httpx.get(handle.url + "/parity/nothing"), 404)["type"] == "not_found_error"
    _openai_error(httpx.delete(handle.url + "/parity/alerts"), 405)
    _openai_error(httpx.get(handle.url + "/parity/records?since=last-week"), 400)


def test_a_10_mb_prompt_is_refused_with_413_and_never_forwarded(
    upstream: Any, proxy_at: Callable[..., tuple[ParityProxy, Any]]
) -> None:
    _, handle = proxy_at()
    big = {"model": "S", "messages": [{"role": "user", "content": "word " * 2_000_000}]}
    resp = httpx.post(handle.url + "/v1/chat/completions", json=big, timeout=60)
    error = _openai_error(resp, 413)
    assert error["code"] == "request_too_large"
    assert upstream.state.get("n", 0) == 0  # the upstream never saw it
    assert httpx.post(handle.url + "/v1/chat/completions", json=CHAT).status_code == 200
    metrics = httpx.get(handle.url + "/metrics").text
    assert 'parity_proxy_refused_requests_total{reason="body_too_large"} 1.0' in metrics


def test_the_limit_is_configurable_and_exact(upstream: Any, proxy_at: Callable[..., tuple[ParityProxy, Any]]) -> None:
    _, handle = proxy_at(max_body_bytes=300)
    body = json.dumps(CHAT).encode()
    fits = body[:-1] + b" " * (300 - len(body)) + b"}"
    assert len(fits) == 300
    assert httpx.post(handle.url + "/v1/chat/completions", content=fits).status_code == 200
    over = fits[:-1] + b" }"
    assert _openai_error(httpx.post(handle.url + "/v1/chat/completions", content=over), 413)
    chunked = httpx.post(handle.url + "/v1/chat/completions", content=iter([over[:200], over[200:]]))
    assert _openai_error(chunked, 413)["code"] == "request_too_large"
    assert _openai_error(httpx.post(handle.url + "/v1/feedback", content=b"x" * 301), 413)
    assert upstream.state["n"] == 1
    with pytest.raises(ValueError, match="`max_body_bytes` must be a positive integer"):
        ProxyConfig(upstream=upstream.url, max_body_bytes=0)


_FEEDBACK_FUZZ = st.one_of(
    st.binary(max_size=64),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.sampled_from(["response_id", "kind", "time", "x"]), inner, max_size=4)
        ),
        max_leaves=8,
    ).map(lambda v: json.dumps(v).encode()),  # floats may be NaN/Infinity: json.dumps writes the literals
)


def test_fuzzed_feedback_never_gets_a_500(proxy_at: Callable[..., tuple[ParityProxy, Any]]) -> None:
    _, handle = proxy_at()  # one proxy for every example

    @settings(max_examples=40)
    @given(body=_FEEDBACK_FUZZ)
    def check(body: bytes) -> None:
        resp = httpx.post(handle.url + "/v1/feedback", content=body)
        assert resp.status_code in (202, 400), (resp.status_code, body, resp.text)
        if resp.status_code == 400:
            _openai_error(resp, 400)

    check()


def test_the_command_offers_the_limit_and_the_tokens() -> None:
    from click.testing import CliRunner

    from parity.cli._main import main

    text = CliRunner().invoke(main, ["proxy", "--help"]).output
    for option in ("--max-body-bytes", "--token", "--feedback-token", "--dashboard-token"):
        assert option in text
    bad = CliRunner().invoke(main, ["proxy", "--upstream", "http://127.0.0.1:9", "--max-body-bytes", "0"])
    assert bad.exit_code == 2
    assert "--max-body-bytes" in bad.output
