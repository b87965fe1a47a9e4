"""An ASGI middleware refusing request bodies over a size limit with ``413`` and an OpenAI-style JSON error,
before the application reads, parses, tokenizes or forwards any of it.

A declared ``Content-Length`` over the limit is refused at once, without reading the body; a body without one
(chunked) is read up to the limit and refused as soon as it passes it. A body within the limit is handed to the
application unchanged, in one piece.

>>> import asyncio, json
>>> async def echo(scope, receive, send):
...     body = (await receive())["body"]
...     await send({"type": "http.response.start", "status": 200, "headers": []})
...     await send({"type": "http.response.body", "body": body})
>>> def call(app, body):
...     sent = []
...     messages = [{"type": "http.request", "body": body, "more_body": False}]
...     async def receive():
...         return messages.pop(0) if messages else {"type": "http.disconnect"}
...     async def send(message):
...         sent.append(message)
...     scope = {"type": "http", "method": "POST", "headers": [(b"content-length", str(len(body)).encode())]}
...     asyncio.run(app(scope, receive, send))
...     body = sent[1]["body"]
...     return sent[0]["status"], body if sent[0]["status"] == 200 else json.loads(body)["error"]["message"]
>>> app = BodyLimit(echo, max_bytes=5)
>>> call(app, b"hello")
(200, b'hello')
>>> call(app, b"hello!")
(413, 'request body too large: 6 bytes over the limit of 5 bytes')
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from parity._exceptions import InvalidInputError

__all__ = ["DEFAULT_MAX_BODY_BYTES", "BodyLimit", "error_response_body"]

#: The default limit: 4 MiB. A long-context chat request of 128k tokens is about 0.5 MB of JSON; 4 MiB leaves
#: room for base64 content parts while refusing the 10 MB prompts that tie a tokenizer up for seconds.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def error_response_body(message: str, *, type: str = "invalid_request_error", param: str | None = None,
                        code: str | None = None) -> bytes:  # fmt: skip
    """OpenAI's ``{"error": {"message", "type", "param", "code"}}`` as JSON bytes.

    >>> error_response_body("no", code="x")
    b'{"error": {"message": "no", "type": "invalid_request_error", "param": null, "code": "x"}}'
    """
    return json.dumps({"error": {"message": message, "type": type, "param": param, "code": code}}).encode()


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` (see the module docstring). ``on_refused()`` is called once per
    refusal (the proxy counts them in a metric)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, on_refused: Callable[[], None] | None = None) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise InvalidInputError("max_body_bytes", "must be a positive integer", max_bytes)
        self.app = app
        self.max_bytes = max_bytes
        self.on_refused = on_refused

    async def _refuse(self, send: Send, size: str) -> None:
        if self.on_refused is not None:
            self.on_refused()
        body = error_response_body(
            f"request body too large: {size} over the limit of {self.max_bytes} bytes",
            code="request_too_large",
        )
        # no "connection: close": closing with the client's unread upload in the socket makes the kernel reset the
        # connection, which can destroy this answer before the client reads it; kept alive, the server reads and
        # discards the rest of the body (uvicorn drops body bytes once the response is complete)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope.get("headers") or ():
            if name.lower() == b"content-length":
                declared = int(value) if value.strip().isdigit() else None
                break
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, f"{declared} bytes")
            return
        if declared is not None:  # within the limit: the server enforces Content-Length itself
            await self.app(scope, receive, send)
            return
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send, f"more than {self.max_bytes} bytes")
                return
            parts.append(chunk)
            if not message.get("more_body", False):
                break
        whole = {"type": "http.request", "body": b"".join(parts), "more_body": False}
        await self.app(scope, _replay([whole], receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    async def replayed() -> Message:
        return messages.pop(0) if messages else await receive()

    return replayed
