"""Fixtures of the monitor's traffic-side tests: record factories and a tiny real OpenAI-compatible upstream."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from _pg_server import PostgresServer, ensure_postgres, start_postgres

from parity._loopback import free_port
from parity.monitor import DetectorObservation, Record

T0 = datetime(2025, 8, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
def make_record() -> Callable[..., Record]:
    """Build a record with sensible defaults; ``i`` spaces records a second apart."""

    def build(i: int = 0, **overrides: Any) -> Record:
        values: dict[str, Any] = {
            "record_id": f"cmpl-{i}",
            "time": T0 + timedelta(seconds=i),
            "model": "S",
            "pool": "short",
            "platform": ["gpu", "tpu", "trainium"][i % 3],
            "context_tokens": 100 + i,
            "output_tokens": 20,
            "session_hash": f"h{i % 7}",
            "temperature": 0.7 if i % 2 else None,
            "top_p": 0.99,
            "top_k": 40 if i % 2 else None,
            "observations": (DetectorObservation("unexpected_script", i % 5 == 0, 0.1 * (i % 10)),),
            "logprob_summary": {"mean_logprob": -0.5, "min_logprob": -3.0} if i % 2 else {},
        }
        values.update(overrides)
        return Record(**values)

    return build


@dataclass
class ServerHandle:
    """A uvicorn server running in a thread of the test process."""

    url: str
    server: Any
    thread: threading.Thread
    state: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve_in_thread(app: Any) -> ServerHandle:
    """Start ``app`` with uvicorn on 127.0.0.1 and a free port; wait until it accepts connections."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    return ServerHandle(url=f"http://127.0.0.1:{port}", server=server, thread=thread)


ENGLISH = "The quick brown fox jumps over the lazy dog. Contact me at jane.doe@example.com today."
THAI_INSERT = "The answer is simple สวัสดีครับ and then it continues in English as expected."


def upstream_app(state: dict[str, Any]) -> Any:
    """A tiny real OpenAI-compatible upstream serving canned chat completions (and errors on demand).

    The request's last user message picks the behaviour: ``"fail"`` -> 429 OpenAI error, ``"thai"`` -> a reply
    with a Thai insert; otherwise an English reply containing an e-mail address. Every response carries the lab's
    ``x-parity-*`` headers. ``state["seen"]`` collects the headers each request arrived with.
    """
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    headers = {
        "x-parity-server": "gpu-short-0",
        "x-parity-pool": "short",
        "x-parity-platform": "gpu",
        "x-parity-config-version": "v1",
        "x-parity-model": "S",
    }
    state.setdefault("seen", [])
    state.setdefault("n", 0)

    async def chat(request: Request) -> Response:
        body = await request.json()
        state["seen"].append(dict(request.headers))
        state["n"] += 1
        last = body["messages"][-1]["content"]
        if "fail" in last:
            err = {"error": {"message": "rate limited", "type": "rate_limit", "param": None, "code": "429"}}
            return JSONResponse(err, status_code=429, headers={"x-upstream": "yes"})
        text = THAI_INSERT if "thai" in last else ENGLISH
        rid = f"chatcmpl-{state['n']}"
        created = 1754395200
        want_lp = bool(body.get("logprobs"))
        words = text.split(" ")
        if body.get("stream"):

            async def events() -> AsyncIterator[bytes]:
                for j, w in enumerate(words):
                    piece = w if j == 0 else " " + w
                    delta: dict[str, Any] = {"content": piece}
                    if j == 0:
                        delta["role"] = "assistant"
                    choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": None}
                    if want_lp:
                        choice["logprobs"] = {
                            "content": [{"token": piece, "logprob": -0.1 * (j % 3), "bytes": None, "top_logprobs": []}]
                        }
                    chunk = {
                        "id": rid,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": "S",
                        "choices": [choice],
                    }
                    yield f"data: {json.dumps(chunk)}\n\n".encode()
                final = {
                    "id": rid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": "S",
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 12, "completion_tokens": len(words), "total_tokens": 12 + len(words)},
                }
                yield f"data: {json.dumps(final)}\n\n".encode()
                yield b"data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
        message: dict[str, Any] = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        if want_lp:
            choice["logprobs"] = {
                "content": [
                    {"token": w, "logprob": -0.1 * (j % 3), "bytes": None, "top_logprobs": []}
                    for j, w in enumerate(words)
                ]
            }
        payload = {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": "S",
            "choices": [choice],
            "usage": {"prompt_tokens": 12, "completion_tokens": len(words), "total_tokens": 12 + len(words)},
        }
        return JSONResponse(payload, headers=headers)

    async def models(request: Request) -> Response:
        return JSONResponse(
            {"object": "list", "data": [{"id": "S", "object": "model", "created": 0, "owned_by": "lab"}]}
        )

    return Starlette(
        routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/models", models, methods=["GET"])]
    )


@pytest.fixture
def serve_app() -> Iterator[Callable[[Any], ServerHandle]]:
    """Start ASGI apps on 127.0.0.1 (free ports); all are stopped after the test."""
    handles: list[ServerHandle] = []

    def start(app: Any) -> ServerHandle:
        handle = serve_in_thread(app)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.stop()


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on."""
    return free_port()


@pytest.fixture
def upstream() -> Iterator[ServerHandle]:
    """The canned upstream on 127.0.0.1, stopped after the test."""
    state: dict[str, Any] = {}
    handle = serve_in_thread(upstream_app(state))
    handle.state = state
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL cluster on 127.0.0.1 for the whole session (Debian's package, installed when missing),
    stopped and deleted at the end. Skips only when the package cannot be installed here (see ``_pg_server``)."""
    pytest.importorskip("psycopg", reason="psycopg is in the `dist` extra: pip install 'parity[dist]'")
    bin_dir, why_not = ensure_postgres()
    if bin_dir is None:
        pytest.skip(why_not or "PostgreSQL is not available")
    server = start_postgres(bin_dir)
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A ``postgresql://`` URL of a fresh, empty store (its own schema) on the session's server."""
    return postgres_server.new_url()
