"""The proxy's upstream client (:mod:`parity.monitor.intake.upstream_client`) against real HTTP/1.1 servers on
127.0.0.1 that answer byte by byte as scripted (well, badly, slowly, or not at all), then the same failures
through a running proxy: the client gets a clear answer, the proxy counts what happened, nothing raises."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from parity.monitor.intake.proxy import ParityProxy, ProxyConfig
from parity.monitor.intake.scoring import RecordBuilder
from parity.monitor.intake.upstream_client import HIGH_WATER, UpstreamClient, UpstreamError, UpstreamResponse
from parity.monitor.storage.store import MemoryStore

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

CHAT = {"model": "S", "messages": [{"role": "user", "content": "hello"}]}
TLS = Path(__file__).parents[1] / "data" / "tls"  # a self-signed certificate for localhost (test data)


class RawUpstream:
    """An HTTP/1.1 server on 127.0.0.1 in its own thread and event loop; ``handler`` answers each connection."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went, or the test ended
        finally:
            writer.close()

    def __enter__(self) -> RawUpstream:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls), self.loop
        ).result(10)
        base = "https://localhost" if self.tls else "http://127.0.0.1"  # the certificate names localhost
        self.url = f"{base}:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def _shutdown(self) -> None:
        assert self.server is not None
        self.server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request's head and body (sized by content-length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(length)


def answer(body: bytes, *extra: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), b"".join(extra), body)


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(main(), 20))


async def fetch(client: UpstreamClient, method: bytes = b"POST", body: bytes = b"{}") -> tuple[int, bytes]:
    headers = [(b"host", b"upstream"), (b"content-length", b"%d" % len(body))]
    response = await client.request(method, b"/v1/chat/completions", headers, body)
    try:
        return response.status, await response.read_all()
    finally:
        await response.aclose()


async def read_into(response: UpstreamResponse, pieces: list[bytes]) -> None:
    while piece := await response.read():
        pieces.append(piece)


# -- the client on its own -------------------------------------------------------------------------------
async def _keeps_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        _, body = await read_request(reader)
        writer.write(answer(b"re: " + body))


async def _says_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    _, body = await read_request(reader)
    writer.write(answer(b"re: " + body, b"connection: close\r\n"))
    await writer.drain()


@pytest.mark.parametrize(("handler", "opened"), [(_keeps_alive, 1), (_says_close, 3)], ids=["keep-alive", "close"])
def test_keep_alive_reuses_one_connection_unless_the_upstream_says_close(handler: Handler, opened: int) -> None:
    with RawUpstream(handler) as upstream:

        async def main() -> list[tuple[int, bytes]]:
            client = UpstreamClient(upstream.url)
            got = [await fetch(client, body=b"%d" % i) for i in range(3)]
            assert client.connections_opened == opened
            await client.aclose()
            return got

        assert run(main) == [(200, b"re: %d" % i) for i in range(3)]
        assert upstream.connections == opened


@pytest.mark.parametrize(
    ("wire", "close_after"),
    [
        (answer(b"x" * 1000), False),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunked(b"x" * 300, b"x" * 700), False),
        (b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 1000, True),  # no length: the body ends with the connection
    ],
    ids=["content-length", "chunked", "until-close"],
)
def test_bodies_by_length_by_chunks_and_until_close(wire: bytes, close_after: bool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(wire)
            if close_after:
                await writer.drain()
                return

    with RawUpstream(handler) as upstream:

        async def main() -> None:
            client = UpstreamClient(upstream.url)
            for _ in range(2):
                assert await fetch(client) == (200, b"x" * 1000)
            assert client.connections_opened == (2 if close_after else 1)
            await client.aclose()

        run(main)


def test_each_chunk_is_handed_over_before_the_upstream_sends_the_next() -> None:
    """The upstream sends the next SSE event only once the reader has the previous one: a client that waited
    for more (or for the whole body) would hang here."""
    taken = threading.Semaphore(0)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for i in range(3):
            event = b"data: %d\n\n" % i
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            assert await asyncio.to_thread(taken.acquire, True, 10)
        writer.write(b"0\r\n\r\n")
        await read_request(reader)

    with RawUpstream(handler) as upstream:

        async def main() -> list[bytes]:
            client = UpstreamClient(upstream.url)
            response = await client.request(b"POST", b"/v1/chat/completions", [(b"content-length", b"0")], b"")
            pieces = []
            while piece := await response.read():
                pieces.append(piece)
                taken.release()
            await response.aclose()
            await client.aclose()
            return pieces

        assert run(main) == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"]


@pytest.mark.parametrize(
    "wire",
    [answer(b"x" * 100)[:-60], b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n9\r\nwor"],
    ids=["content-length", "chunked"],
)
def test_an_upstream_closing_mid_body_is_a_broken_body_after_the_bytes_it_sent(wire: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(wire)
        await writer.drain()

    with RawUpstream(handler) as upstream:

        async def main() -> None:
            client = UpstreamClient(upstream.url)
            response = await client.request(b"POST", b"/v1/x", [(b"content-length", b"0")], b"")
            got: list[bytes] = []
            with pytest.raises(UpstreamError) as caught:
                await read_into(response, got)
            assert caught.value.reason == "broken_body"
            assert b"".join(got) in (b"x" * 40, b"hellowor")
            await response.aclose()
            assert client.idle_connections == 0  # never reused
            await client.aclose()

        run(main)


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    await asyncio.sleep(5)


async def _stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(answer(b"x" * 100)[:-50])
    await asyncio.sleep(5)


@pytest.mark.parametrize(("handler", "reason"), [(_silent, "timeout"), (_stalls, "broken_body")], ids=["head", "body"])
def test_timeouts_before_the_answer_and_mid_body(handler: Handler, reason: str) -> None:
    with RawUpstream(handler) as upstream:

        async def main() -> UpstreamError:
            client = UpstreamClient(upstream.url, timeout_s=0.2)
            with pytest.raises(UpstreamError) as caught:
                await fetch(client)
            await client.aclose()
            return caught.value

        t0 = time.monotonic()
        err = run(main)
        assert err.reason == reason
        assert "timed out after 0.2 s" in str(err)
        assert time.monotonic() - t0 < 3


def test_no_answer_or_one_that_is_not_http_is_a_clear_error(unused_port: int) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 abc def\r\nx: y\r\n\r\n")
        await writer.drain()

    async def hangs_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    for handler, reason, words in ((garbage, "protocol", "not HTTP/1.x"), (hangs_up, "connect", "without an answer")):
        with RawUpstream(handler) as upstream:

            async def main(url: str = upstream.url) -> UpstreamError:
                client = UpstreamClient(url)
                with pytest.raises(UpstreamError) as caught:
                    await fetch(client)
                await client.aclose()
                return caught.value

            err = run(main)
            assert (err.reason, err.url) == (reason, upstream.url)
            assert words in str(err)

    async def refused() -> UpstreamError:
        client = UpstreamClient(f"http://127.0.0.1:{unused_port}")
        with pytest.raises(UpstreamError) as caught:
            await fetch(client)
        return caught.value

    assert run(refused).reason == "connect"


def test_large_bodies_both_ways_and_a_slow_reader_pauses_the_upstream() -> None:
    big_request = bytes(range(256)) * (3 * 4096)  # 3 MiB
    big_answer = b"y" * (8 << 20)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, body = await read_request(reader)
        assert hashlib.sha256(body).digest() == hashlib.sha256(big_request).digest()
        writer.write(answer(big_answer))
        await writer.drain()
        await read_request(reader)

    with RawUpstream(handler) as upstream:

        async def main() -> None:
            client = UpstreamClient(upstream.url)
            headers = [(b"content-length", b"%d" % len(big_request))]
            response = await client.request(b"POST", b"/v1/x", headers, big_request)
            got, most = 0, 0
            while piece := await response.read():
                got += len(piece)
                await asyncio.sleep(0.0005)  # slower than loopback
                most = max(most, response.buffered_bytes)
            assert got == len(big_answer)
            assert most <= HIGH_WATER + (256 << 10)  # paused past the high-water mark (plus one socket read)
            await response.aclose()
            await client.aclose()

        run(main)


def test_interim_answers_are_skipped_and_head_has_no_body() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, _ = await read_request(reader)
            if head.startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n")
                writer.write(answer(b"done"))

    with RawUpstream(handler) as upstream:

        async def main() -> list[tuple[int, bytes]]:
            client = UpstreamClient(upstream.url)
            got = [await fetch(client), await fetch(client, method=b"HEAD", body=b"")]
            await client.aclose()
            return got

        assert run(main) == [(200, b"done"), (200, b"")]


def test_a_connection_the_upstream_closed_or_kept_too_long_is_not_reused() -> None:
    async def one_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(b"ok"))  # keep-alive by default, then closed all the same
        await writer.drain()

    async def keeps(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(answer(b"ok"))

    for handler, keepalive_s in ((one_answer, 60.0), (keeps, 0.05)):
        with RawUpstream(handler) as upstream:

            async def main(url: str = upstream.url, keepalive_s: float = keepalive_s) -> None:
                client = UpstreamClient(url, keepalive_s=keepalive_s)
                for _ in range(2):
                    assert await fetch(client) == (200, b"ok")
                    await asyncio.sleep(0.1)
                assert client.connections_opened == 2
                await client.aclose()

            run(main)


def test_at_max_connections_a_request_waits_for_a_free_one() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await asyncio.sleep(0.05)
            writer.write(answer(b"ok"))

    with RawUpstream(handler) as upstream:

        async def main() -> None:
            client = UpstreamClient(upstream.url, max_connections=1)
            assert await asyncio.gather(*(fetch(client) for _ in range(3))) == [(200, b"ok")] * 3
            assert client.connections_opened == 1
            await client.aclose()

        run(main)


def test_an_https_upstream_is_reached_over_tls_and_an_untrusted_one_is_refused_clearly() -> None:
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(TLS / "upstream.pem", TLS / "upstream.key")
    with RawUpstream(_keeps_alive, tls=server_tls) as upstream:

        async def main(trusted: bool) -> tuple[list[tuple[int, bytes]], int]:
            ctx = ssl.create_default_context(cafile=str(TLS / "upstream.pem")) if trusted else None
            client = UpstreamClient(upstream.url, ssl_context=ctx)
            try:
                return [await fetch(client, body=b"%d" % i) for i in range(2)], client.connections_opened
            finally:
                await client.aclose()

        assert run(lambda: main(True)) == ([(200, b"re: 0"), (200, b"re: 1")], 1)
        with pytest.raises(UpstreamError, match="certificate verify failed") as caught:
            run(lambda: main(False))  # the system's trust store does not know this certificate
        assert caught.value.reason == "connect"


# -- the same failures through a running proxy -----------------------------------------------------------
@contextmanager
def proxy_in_front(
    handler: Handler, serve_app: Callable[[Any], Any], **config: Any
) -> Iterator[tuple[ParityProxy, Any, MemoryStore]]:
    with RawUpstream(handler) as upstream:
        store = MemoryStore()
        proxy = ParityProxy(
            ProxyConfig(upstream=upstream.url, flush_interval_s=0.05, **config), store, RecordBuilder(salt="s")
        )
        yield proxy, serve_app(proxy.app), store


def test_through_the_proxy_a_client_leaving_mid_stream_still_gets_the_exchange_stored(
    serve_app: Callable[[Any], Any],
) -> None:
    left = threading.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            events = [b'data: {"id": "chatcmpl-9", "choices": [{"delta": {"content": "hi"}}]}\n\n', b"data: [DONE]\n\n"]
            writer.write(chunked(events[0])[:-5])
            await writer.drain()
            await asyncio.to_thread(left.wait, 10)  # the rest only once the client has gone
            writer.write(chunked(events[1]))

    with proxy_in_front(handler, serve_app) as (proxy, handle, store):
        with httpx.stream("POST", handle.url + "/v1/chat/completions", json=CHAT | {"stream": True}) as r:
            assert next(r.iter_raw()).startswith(b"data: ")
        left.set()  # the client closed its connection mid-stream
        assert proxy.wait_idle()
        assert [r.record_id for r in store.records()] == ["chatcmpl-9"]
        assert httpx.get(handle.url + "/parity/health").status_code == 200


def test_through_the_proxy_upstream_failures_are_openai_errors_and_counted(serve_app: Callable[[Any], Any]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, body = await read_request(reader)
        if b"garbage" in body:
            writer.write(b"HTTP/1.1 abc def\r\n\r\n")
        elif b"cut" in body:
            writer.write(answer(b"x" * 100)[:-60])
        elif b"slow" in body:
            await asyncio.sleep(3)
        await writer.drain()

    with proxy_in_front(handler, serve_app, upstream_timeout_s=0.3) as (proxy, handle, store):
        garbage = httpx.post(handle.url + "/v1/chat/completions", json=CHAT | {"user": "garbage"})
        slow = httpx.post(handle.url + "/v1/chat/completions", json=CHAT | {"user": "slow"})
        assert (garbage.status_code, garbage.json()["error"]["code"]) == (502, "connect")
        assert "not HTTP/1.x" in garbage.json()["error"]["message"]
        assert (slow.status_code, slow.json()["error"]["code"]) == (504, "timeout")
        with pytest.raises(httpx.RemoteProtocolError):  # the same bytes, then the same broken connection
            httpx.post(handle.url + "/v1/chat/completions", json=CHAT | {"user": "cut"})
        assert proxy.wait_idle()
        errors = proxy.metrics.upstream_errors
        counts = [errors.labels(reason=r)._value.get() for r in ("connect", "timeout", "broken_body")]
        assert counts == [1, 1, 1]
        assert store.records() == []  # no complete answer came back: nothing to score
