"""CPU the proxy's upstream client spends per request, by how many idle connections it holds: the httpcore pool
the proxy used until 2026-12-05 (anyio's backend with its cheaper idle check, :class:`UpstreamBackend` below)
against :class:`parity.monitor.intake.upstream_client.UpstreamClient`, in the same process.

A canned upstream (uvicorn, its own process, keep-alive longer than the run) answers ``GET /x``; this process
fills each client's pool with N idle connections, then sends requests one after another and counts its own CPU
time per request (``time.process_time``). The two clients alternate within each repeat so that drift in machine
load hits both; median over repeats. httpcore's pool asks every idle connection whether the upstream closed it
before each request, so its cost grows with N; UpstreamClient takes the last idle connection (the event loop has
already told it which ones the upstream closed). A proxy holds about as many idle connections as it has requests
in flight at its busiest (the demo's replay: about 30).

``python -m benchmarks upstream_pool`` (about a minute; ``BENCH_POOL_REQUESTS``, ``BENCH_POOL_REPEATS``).
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import httpcore
import httpx

from benchmarks._results import write_section
from parity._loopback import free_port
from parity.monitor.intake.proxy import UPSTREAM_KEEPALIVE_S
from parity.monitor.intake.upstream_client import UpstreamClient

REQUESTS = int(os.environ.get("BENCH_POOL_REQUESTS", "1000"))
REPEATS = int(os.environ.get("BENCH_POOL_REPEATS", "5"))
IDLE = (1, 8, 32, 128)

UPSTREAM = r"""
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"ok": true}'})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", timeout_keep_alive=600)
"""


class _Stream(httpcore.AsyncNetworkStream):
    """anyio's stream answering ``is_readable`` by polling its own socket (anyio rebuilds its attribute table,
    a ``getpeername`` call included, to answer it): the proxy's backend until 2026-12-05."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._sock: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            fd = -1 if self._sock is None else self._sock.fileno()
            if fd < 0:
                return True
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return bool(poller.poll(0))
        return self._inner.get_extra_info(info)


class UpstreamBackend(httpcore.AsyncNetworkBackend):
    """httpcore's anyio backend whose streams are :class:`_Stream`."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


async def cpu_per_request_lean(url: str, idle: int) -> float:
    """Microseconds of this process's CPU per request through UpstreamClient, ``idle`` idle connections held."""
    client = UpstreamClient(url, keepalive_s=600.0)
    headers = [(b"host", b"127.0.0.1")]

    async def one() -> None:
        response = await client.request(b"GET", b"/x", headers, b"")
        await response.read_all()
        await response.aclose()

    await asyncio.gather(*[one() for _ in range(idle)])  # opens `idle` connections, then leaves them idle
    t0 = time.process_time()
    for _ in range(REQUESTS):
        await one()
    spent = (time.process_time() - t0) / REQUESTS * 1e6
    await client.aclose()
    return spent


async def cpu_per_request(url: str, idle: int) -> float:
    """Microseconds of this process's CPU per request through httpcore's pool, ``idle`` idle connections held."""
    async with httpcore.AsyncConnectionPool(
        max_connections=1000, max_keepalive_connections=200, keepalive_expiry=600.0, network_backend=UpstreamBackend()
    ) as pool:
        request = httpcore.Request("GET", f"{url}/x", headers=[(b"host", b"127.0.0.1")])

        async def one() -> None:
            response = await pool.handle_async_request(request)
            await response.aread()
            await response.aclose()

        await asyncio.gather(*[one() for _ in range(idle)])  # opens `idle` connections, then leaves them idle
        t0 = time.process_time()
        for _ in range(REQUESTS):
            await one()
        return (time.process_time() - t0) / REQUESTS * 1e6


def main() -> None:
    port = free_port()
    upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/x", timeout=1.0)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        load = os.getloadavg()[0]
        rows = []
        for idle in IDLE:
            anyio_us, ours_us = [], []
            for _ in range(REPEATS):
                anyio_us.append(asyncio.run(cpu_per_request(url, idle)))
                ours_us.append(asyncio.run(cpu_per_request_lean(url, idle)))
            a, b = statistics.median(anyio_us), statistics.median(ours_us)
            rows.append(f"| {idle} | {a:,.0f} | {b:,.0f} | {a / b:.2f}x |")
            print(rows[-1], flush=True)
        load_end = os.getloadavg()[0]
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)
    body = "\n".join(
        [
            f"{REQUESTS} sequential requests per run after filling the pool, median of {REPEATS} alternating runs; "
            f"CPU of the client process only (the upstream runs in its own). The proxy keeps idle upstream "
            f"connections {UPSTREAM_KEEPALIVE_S:g} s. 1-minute load average {load:.1f} at the start and "
            f"{load_end:.1f} at the end"
            + (" (**measured under contention**: compare within a row)." if max(load, load_end) > 2.5 else "."),
            "",
            "| idle connections | httpcore pool (anyio, UpstreamBackend), µs CPU per request | UpstreamClient, µs "
            "| ratio |",
            "|---:|---:|---:|---:|",
            *rows,
            "",
            "httpcore's pool scans its connections per request (every idle connection is polled, and counting idle "
            "connections is itself a scan per connection), so its cost grows with the pool; UpstreamClient takes "
            "the last idle connection without a scan (a connection the upstream closed was marked by the event loop "
            "when it happened), and its per-request work is one write, httptools' parsing inside the protocol's "
            "callback and one wake-up of the reader: the proxy's client since 2026-12-05 (`benchmarks/results/"
            "proxy.md` has the end-to-end effect).",
        ]
    )
    write_section("upstream_pool", "The proxy's upstream client: CPU per request by idle connections", body)


if __name__ == "__main__":
    main()
