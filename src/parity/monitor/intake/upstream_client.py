"""The proxy's upstream client: HTTP/1.1 over asyncio protocols, with httptools' C response parser and a
keep-alive connection pool; nothing else on the request path.

Profiled, the proxy spent about half of its event-loop CPU in httpcore's client (h11's pure-Python HTTP/1.1 over
anyio's streams, a checkpoint per operation, headers and body sent in two writes). This client sends the request
line, headers and body in one write, lets llhttp (through ``httptools``) parse the answer inside the transport's
``data_received`` callback, and hands body bytes to the reader as they arrive, chunk by chunk (SSE events
included: each chunk of a chunked body is its own piece, as the upstream wrote it).

What it handles: ``content-length``, chunked and read-until-close bodies (chunked ones come out de-chunked, as
from any HTTP client); ``1xx`` interim answers (skipped); ``HEAD``; keep-alive reuse of idle connections for at
most ``keepalive_s`` (a connection the upstream closed, or one that sent bytes while idle, is never reused);
``https://`` upstreams through asyncio's TLS; back-pressure (a reader that falls behind pauses the upstream
socket past :data:`HIGH_WATER` buffered bytes); timeouts for the connect and for every wait on the upstream
(headers, each body read); and every way an upstream can fail, as an :class:`UpstreamError` whose ``reason`` says
which: ``connect`` (refused, unreachable, reset before any answer), ``timeout``, ``protocol`` (not HTTP/1.x),
``broken_body`` (closed or timed out mid-body).

>>> import asyncio
>>> async def demo() -> tuple[int, bytes, int]:
...     async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
...         for _ in range(2):  # two requests on one keep-alive connection
...             await reader.readuntil(b"\\r\\n\\r\\n")
...             writer.write(b"HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\n\\r\\nhi")
...         writer.close()
...     server = await asyncio.start_server(serve, "127.0.0.1", 0)
...     port = server.sockets[0].getsockname()[1]
...     client = UpstreamClient(f"http://127.0.0.1:{port}")
...     bodies = []
...     for _ in range(2):
...         response = await client.request(b"GET", b"/v1/models", [(b"host", b"x")], b"")
...         bodies.append(await response.read_all())
...         await response.aclose()
...     opened = client.connections_opened
...     await client.aclose()
...     server.close()
...     return response.status, bodies[1], opened
>>> asyncio.run(demo())
(200, b'hi', 1)
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from parity._exceptions import EndpointError, InvalidInputError
from parity._optional import import_optional

__all__ = ["HIGH_WATER", "UpstreamClient", "UpstreamError", "UpstreamResponse"]

#: Body bytes buffered for a reader before the upstream socket is paused (resumed once the reader takes them).
HIGH_WATER = 1 << 20

#: A request body up to this size is sent in the same write as the head (one system call); larger ones after it.
_JOIN_BODY_BYTES = 1 << 16


class UpstreamError(EndpointError):
    """The upstream could not be reached or broke off; ``reason`` is ``connect``, ``timeout``, ``protocol`` or
    ``broken_body``."""

    def __init__(self, message: str, *, reason: str, url: str | None = None) -> None:
        self.reason = reason
        super().__init__(message, url=url)


class _Connection(asyncio.Protocol):
    """One upstream connection; feeds what it reads to the current response's parser."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.response: UpstreamResponse | None = None
        self.closed = False
        self.counted_out = False  # its slot in the pool's connection count is given back
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # bytes nobody asked for on an idle connection: never reuse it
            self.close()
            return
        response._feed(data)

    def eof_received(self) -> bool:
        return False  # the transport closes itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.response is not None:
            self.response._lost(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class UpstreamResponse:
    """One answer: ``status`` and ``headers`` (raw ``(name, value)`` byte pairs, as received) once
    :meth:`UpstreamClient.request` returns; the body through :meth:`read` (or :meth:`read_all`). Always
    :meth:`aclose` it: a complete answer gives its connection back to the pool, anything else closes it."""

    def __init__(self, client: UpstreamClient, connection: _Connection, head_only: bool) -> None:
        self._client = client
        self._connection = connection
        self._head_only = head_only
        self._parser = client._httptools.HttpResponseParser(self)
        self._loop = client._loop
        self._waiter: asyncio.Future[None] | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._interim = False
        self._sized = False  # content-length or chunked: the end is known without the connection closing
        self._received = False
        self._keep_alive = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.complete = False
        self.error: UpstreamError | None = None

    # -- parser callbacks (inside data_received) -----------------------------------------------------------
    def on_header(self, name: bytes, value: bytes | None) -> None:
        value = value or b""
        self.headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length" or (lower == b"transfer-encoding" and b"chunked" in value.lower()):
            self._sized = True

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # interim (100 Continue, 103 Early Hints): the answer follows
            self._interim = True
            self.headers = []
            self._sized = False
            return
        self.status = status
        self.headers_done = True
        self._keep_alive = self._parser.should_keep_alive()  # here: llhttp resets its flags after the message
        if self._head_only or status in (204, 304):
            self._sized = True
            if self._head_only:  # no body follows, whatever the headers say: parse nothing more on this connection
                self.complete = True
                self._connection.response = None
                self._connection.close()
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self._interim or self.complete:
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self._connection.transport is not None:
            self._paused = True
            self._connection.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self.complete = True
        self._wake()

    # -- connection events -----------------------------------------------------------------------------
    def _feed(self, data: bytes) -> None:
        self._received = True
        try:
            self._parser.feed_data(data)
        except self._client._httptools.HttpParserUpgrade:
            self._fail("protocol", "switched protocols (101); only HTTP/1.1 answers can be forwarded")
        except self._client._httptools.HttpParserError as err:
            self._fail("protocol", f"answered something that is not HTTP/1.x ({err})")

    def _lost(self, exc: Exception | None) -> None:
        if self.complete or self.error is not None:
            return
        if self.headers_done and not self._sized:  # a body delimited by the close: the close ends it
            self.complete = True
            self._wake()
            return
        if not self.headers_done:
            reason = "connect"
            what = "closed the connection without an answer" if not self._received else "closed mid-headers"
        else:
            reason, what = "broken_body", "closed the connection mid-body"
        self._fail(reason, what + (f" ({exc!r})" if exc is not None else ""))

    def _fail(self, reason: str, message: str) -> None:
        if self.error is None and not self.complete:
            self.error = UpstreamError(f"upstream {message}", reason=reason, url=self._client.url)
        self._connection.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _expire(self) -> None:
        what = "the answer's headers" if not self.headers_done else "more of the body"
        self._fail("timeout" if not self.headers_done else "broken_body",
                   f"timed out after {self._client.timeout_s:g} s waiting for {what}")  # fmt: skip

    async def _wait(self) -> None:
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_later(self._client.timeout_s, self._expire)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    # -- the reader's side -----------------------------------------------------------------------------
    async def _wait_headers(self) -> None:
        while not self.headers_done:
            if self.error is not None:
                raise self.error
            await self._wait()

    async def read(self) -> bytes:
        """The next piece of the body (waiting for one); ``b""`` once the body is complete.
        Raises :class:`UpstreamError` (``broken_body``) when the upstream closes or stalls mid-body."""
        while True:
            chunks = self._chunks
            if chunks:
                data = chunks.popleft()
                self._buffered -= len(data)
                if self._paused and self._buffered <= HIGH_WATER // 2:
                    self._paused = False
                    if not self._connection.closed and self._connection.transport is not None:
                        self._connection.transport.resume_reading()
                return data
            if self.complete:
                return b""
            if self.error is not None:
                raise self.error
            await self._wait()

    async def read_all(self) -> bytes:
        """The whole body (for tests and small answers; the proxy streams with :meth:`read`)."""
        parts = []
        while chunk := await self.read():
            parts.append(chunk)
        return b"".join(parts)

    @property
    def buffered_bytes(self) -> int:
        """Body bytes received and not yet read (at most about :data:`HIGH_WATER` plus one socket read)."""
        return self._buffered

    @property
    def finished(self) -> bool:
        """Whether the body is complete and every byte of it has been read."""
        return self.complete and not self._chunks

    async def aclose(self) -> None:
        """Give the connection back for reuse (the answer complete, the upstream keeping it alive) or close it."""
        connection = self._connection
        if connection.response is self:
            connection.response = None
        if self.complete and not connection.closed and self._keep_alive:
            self._client._release(connection)
        else:
            connection.close()
            self._client._forget(connection)


class UpstreamClient:
    """Requests to one upstream (``http://`` or ``https://`` URL; its path, if any, prefixes every target).

    ``keepalive_s``: how long an idle connection is kept for reuse (keep it under the upstream's own idle
    timeout); ``max_idle``: idle connections kept at most; ``max_connections``: open at once (more wait for one,
    up to ``timeout_s``); ``connect_timeout_s``; ``timeout_s``: the longest wait for the answer's headers and for
    each piece of its body; ``ssl_context``: for ``https://`` (default: the system's trust store).
    Make it inside the event loop that uses it."""

    def __init__(
        self,
        url: str,
        *,
        keepalive_s: float = 4.0,
        max_idle: int = 200,
        max_connections: int = 1000,
        connect_timeout_s: float = 10.0,
        timeout_s: float = 600.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._httptools: Any = import_optional("httptools", extra="monitor")  # llhttp, the C parser uvicorn uses
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInputError("upstream", "must be an http:// or https:// URL with a host", url)
        self.url = url.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/").encode("latin-1")
        self.ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self.ssl = ssl_context if ssl_context is not None else ssl.create_default_context()
        self.keepalive_s = keepalive_s
        self.max_idle = max_idle
        self.max_connections = max_connections
        self.connect_timeout_s = connect_timeout_s
        self.timeout_s = timeout_s
        self.connections_opened = 0
        self._loop = asyncio.get_running_loop()
        self._idle: list[_Connection] = []
        self._open = 0
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def request(
        self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> UpstreamResponse:
        """Send one request (``target``: path and query, as the client sent them; ``headers`` as given, ``host``
        and ``content-length`` included) and return once the answer's status and headers are in."""
        connection = self._take_idle()
        if connection is None:
            connection = await self._connect()
        response = UpstreamResponse(self, connection, head_only=method == b"HEAD")
        connection.response = response
        head = b"".join([method, b" ", self.prefix, target, b" HTTP/1.1\r\n",
                         *[b"%s: %s\r\n" % pair for pair in headers], b"\r\n"])  # fmt: skip
        assert connection.transport is not None
        if len(body) <= _JOIN_BODY_BYTES:
            connection.transport.write(head + body if body else head)
        else:
            connection.transport.write(head)
            connection.transport.write(body)
        try:
            await response._wait_headers()
        except BaseException:
            await response.aclose()
            raise
        return response

    def _take_idle(self) -> _Connection | None:
        idle = self._idle
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if connection.closed or now - connection.idle_since > self.keepalive_s:
                connection.close()
                self._forget(connection)
                continue
            return connection
        return None

    async def _connect(self) -> _Connection:
        while self._open >= self.max_connections:
            waiter = self._loop.create_future()
            self._slot_waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, self.timeout_s)
            except TimeoutError:
                raise UpstreamError(
                    f"no connection free: {self.max_connections} open, none released in {self.timeout_s:g} s",
                    reason="timeout", url=self.url,
                ) from None  # fmt: skip
            idle = self._take_idle()
            if idle is not None:
                return idle
        self._open += 1
        try:
            _, connection = await asyncio.wait_for(
                self._loop.create_connection(
                    _Connection, self.host, self.port, ssl=self.ssl, server_hostname=self.host if self.ssl else None
                ),
                self.connect_timeout_s,
            )
        except TimeoutError:
            self._open -= 1
            self._wake_slot()
            raise UpstreamError(f"connect timed out after {self.connect_timeout_s:g} s", reason="timeout",
                                url=self.url) from None  # fmt: skip
        except (OSError, ssl.SSLError) as err:
            self._open -= 1
            self._wake_slot()
            raise UpstreamError(f"connect failed: {err}", reason="connect", url=self.url) from err
        except BaseException:
            self._open -= 1
            self._wake_slot()
            raise
        self.connections_opened += 1
        return connection

    def _release(self, connection: _Connection) -> None:
        if self._closed or len(self._idle) >= self.max_idle:
            connection.close()
            self._forget(connection)
            return
        connection.idle_since = time.monotonic()
        self._idle.append(connection)
        self._wake_slot()

    def _forget(self, connection: _Connection) -> None:
        """A connection closed for good: its slot is free."""
        if not connection.counted_out:
            connection.counted_out = True
            self._open -= 1
            self._wake_slot()

    def _wake_slot(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    @property
    def idle_connections(self) -> int:
        """Idle connections held for reuse (some may have been closed by the upstream since)."""
        return len(self._idle)

    async def aclose(self) -> None:
        """Close every idle connection; connections still answering close when their answer is closed."""
        self._closed = True
        while self._idle:
            connection = self._idle.pop()
            connection.close()
            self._forget(connection)
