"""Hostile bodies against the lab server: every one is an OpenAI-style 4xx, never a 500; big bodies are refused
with 413 before any tokenization."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

DEEP = b'{"model": "S", "prompt": "hi", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}"
CHAT = '{"model": "S", "messages": [{"role": "user", "content": "%s"}], "max_tokens": 2}'
HOSTILE: list[tuple[str, bytes, str]] = [
    ("completions", b'{"model": "S", "prompt": "a\\ud800b", "max_tokens": 2}', "invalid_unicode"),
    ("chat", (CHAT % "a\\udfffb").encode(), "invalid_unicode"),
    ("chat", b'{"model": "S", "messages": [{"role": "user", "content": "x"}], "user": "\\ud83d"}', "invalid_unicode"),
    ("completions", DEEP, "too_deep"),
    ("chat", b"[" * 5000, "too_deep"),
    ("completions", b'{"model": "S", "prompt": "x", "temperature": NaN}', "invalid_json"),
    ("completions", b'{"model": "S", "prompt": "x", "top_p": Infinity}', "invalid_json"),
    ("chat", b'{"model": "S", "messages": [], "seed": -Infinity}', "invalid_json"),
    ("completions", b'{"model": "S", "prompt": "x", "seed": ' + b"9" * 5000 + b"}", "invalid_json"),
    ("completions", b'{"model": "S", "prompt": "caf\xe9"}', "invalid_encoding"),
    ("completions", b'{"model": "S", "prompt": "x"', "invalid_json"),
    ("completions", b"", "invalid_json"),
    ("chat", b'"just a string"', "invalid_json"),
    ("chat", b"null", "invalid_json"),
    ("completions", b"42", "invalid_json"),
    ("completions", b'[{"model": "S", "prompt": "x"}]', "invalid_json"),
    ("completions", b'{"model": ["S"], "prompt": "x"}', "invalid_value"),
    ("completions", b'{"model": "S", "prompt": {"a": 1}}', "invalid_value"),
    ("chat", b'{"model": "S", "messages": [{"role": "user", "content": [{"text": 5}]}]}', "invalid_value"),
    ("chat", b'{"model": "S", "messages": [{"role": "user", "content": "x"}], "stream_options": 3}', "invalid_value"),
    ("completions", b'{"model": "S", "prompt": "x", "max_tokens": 1e300}', "invalid_value"),
    ("completions", b'{"model": "S", "prompt": "x", "n": true}', "invalid_value"),
]


def _path(kind: str) -> str:
    return "/v1/completions" if kind == "completions" else "/v1/chat/completions"


def _assert_openai_error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    return error


@pytest.mark.parametrize(("kind", "body", "code"), HOSTILE, ids=[f"{k}-{c}-{i}" for i, (k, _, c) in enumerate(HOSTILE)])
def test_every_hostile_body_is_an_openai_400(lab: Any, kind: str, body: bytes, code: str) -> None:
    resp = httpx.post(lab.url + _path(kind), content=body, headers={"content-type": "application/json"}, timeout=30)
    error = _assert_openai_error(resp, 400)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code


def test_admin_changes_refuse_hostile_bodies_in_the_error_shape(lab: Any) -> None:
    for body in (DEEP, b'{"id": "a\\ud800"}', b"{NaN}"):
        resp = httpx.post(lab.url + "/admin/changes", content=body, headers=lab.admin_headers, timeout=30)
        _assert_openai_error(resp, 400)


def test_a_10_mb_prompt_is_refused_with_413_before_tokenization(lab: Any) -> None:
    before = lab.server.requests_total
    body = json.dumps({"model": "S", "prompt": "word " * 2_000_000, "max_tokens": 1}).encode()
    assert len(body) > 10_000_000
    resp = httpx.post(lab.url + "/v1/completions", content=body, timeout=60)
    error = _assert_openai_error(resp, 413)
    assert error["code"] == "request_too_large"
    assert str(lab.server.max_body_bytes) in error["message"]
    assert lab.server.requests_total == before  # never routed, never tokenized (counted only after routing)


def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(lab: Any) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "S", "prompt": "'
        for _ in range(80):
            yield b"x" * 65536  # 5 MiB in all, past the 4 MiB default
        yield b'"}'

    resp = httpx.post(lab.url + "/v1/completions", content=chunks(), timeout=60)
    assert _assert_openai_error(resp, 413)["code"] == "request_too_large"


def test_a_declared_length_over_the_limit_is_refused_without_reading_the_body(lab: Any) -> None:
    """Only the headers are sent: the 413 arrives although the body never does."""
    host = urlsplit(lab.url)
    with socket.create_connection((host.hostname, host.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 50000000\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):  # the server closes the connection after the refusal
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    assert b'"request_too_large"' in answer


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
_VALUES = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip
_FIELDS = st.sampled_from(["model", "prompt", "messages", "max_tokens", "temperature", "top_p", "top_k", "n", "seed",
                           "stop", "stream", "logprobs", "top_logprobs", "echo", "user", "stream_options"])  # fmt: skip
_RAW_TAILS = st.sampled_from(
    [b"", b"NaN", b"Infinity", b'"\\ud800"', b"[" * 300, b"\xff\xfe", b'"\\u0000"', b"}", b"1e999", b"-0"]
)


@st.composite
def _bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["completions", "chat"]))
    body: dict[str, Any] = {"model": "S", "max_tokens": 1}
    body["prompt" if kind == "completions" else "messages"] = (
        "hi" if kind == "completions" else [{"role": "user", "content": "hi"}]
    )
    for key in draw(st.lists(_FIELDS, max_size=3)):
        body[key] = draw(_VALUES)
    if isinstance(body.get("max_tokens"), int) and not isinstance(body["max_tokens"], bool):
        body["max_tokens"] = body["max_tokens"] % 3  # keep generation short: the fuzz is about parsing
    body.pop("n", None) if isinstance(body.get("n"), int) and body["n"] > 2 else None
    raw = json.dumps(body).encode()
    how = draw(st.integers(0, 3))
    if how == 1:  # splice a hostile literal into a value position
        raw = raw[:-1] + b', "x": ' + draw(_RAW_TAILS) + b"}"
    elif how == 2:  # truncate
        raw = raw[: draw(st.integers(0, len(raw)))]
    return kind, raw


@settings(max_examples=30)
@given(case=_bodies())
def test_fuzzed_bodies_never_get_a_500(lab: Any, case: tuple[str, bytes]) -> None:
    kind, raw = case
    resp = httpx.post(lab.url + _path(kind), content=raw, headers={"content-type": "application/json"}, timeout=60)
    assert resp.status_code in (200, 400, 404), (resp.status_code, raw[:300], resp.text[:300])
    if resp.status_code != 200:
        _assert_openai_error(resp, resp.status_code)


def test_the_body_limit_is_validated_and_offered_on_the_command_line() -> None:
    from click.testing import CliRunner

    from parity.cli._main import main
    from parity.lab.fleet import FleetConfig, default_config_path
    from parity.lab.server import LabServer

    with pytest.raises(ValueError, match="`max_body_bytes` must be a positive integer"):
        LabServer(FleetConfig.load(default_config_path("incident")), max_body_bytes=0)
    assert "--max-body-bytes" in CliRunner().invoke(main, ["lab", "serve", "--help"]).output
