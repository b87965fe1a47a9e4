"""The network backend of the proxy's upstream pool: httpcore's anyio backend with a cheap idle-connection check.

Before it reuses a pooled connection, httpcore asks every idle connection of the pool whether the server closed it
(``get_extra_info("is_readable")``). On anyio's streams that question rebuilds the stream's whole attribute table
(the peer address included, a ``getpeername`` system call) before it polls the socket, for every idle connection
on every request: py-spy put it at a quarter of the proxy thread's CPU in the demo's replay, with about thirty idle
connections to the lab. These streams keep their raw socket from the connect and poll it directly; everything else
is anyio's.

>>> import asyncio, socket
>>> async def check() -> bool:
...     listener = socket.create_server(("127.0.0.1", 0))
...     port = listener.getsockname()[1]
...     stream = await UpstreamBackend().connect_tcp("127.0.0.1", port)
...     peer, _ = listener.accept()
...     idle = stream.get_extra_info("is_readable")
...     peer.close()  # the server closes the idle connection
...     await asyncio.sleep(0.05)
...     closed = stream.get_extra_info("is_readable")
...     await stream.aclose()
...     listener.close()
...     return not idle and closed
>>> asyncio.run(check())
True
"""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore

__all__ = ["UpstreamBackend"]


def _readable(sock: socket.socket | None) -> bool:
    """Whether a read on ``sock`` would return at once (on an idle connection: the server closed it)."""
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True  # gone: as good as closed
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream, sock: socket.socket | None = None) -> None:
        self._inner = inner
        self._sock = sock if sock is not None else inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout), self._sock)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return _readable(self._sock)
        if info == "socket":
            return self._sock
        return self._inner.get_extra_info(info)


class UpstreamBackend(httpcore.AsyncNetworkBackend):
    """anyio's backend (``httpcore.AnyIOBackend``) whose streams answer ``is_readable`` from their own socket."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
