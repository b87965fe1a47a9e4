"""CPU the proxy's upstream pool spends per request, by how many idle connections it holds: httpcore's anyio
backend against :class:`parity.monitor.intake.upstream_backend.UpstreamBackend`, in the same process.

A canned upstream (uvicorn, its own process, keep-alive longer than the run) answers ``GET /x``; this process
fills an ``httpcore.AsyncConnectionPool`` (the proxy's settings) with N idle connections, then sends requests one
after another and counts its own CPU time per request (``time.process_time``). The two backends alternate within
each repeat so that drift in machine load hits both; median over repeats. The pool asks every idle connection
whether the upstream closed it before each request, so its cost grows with N; a proxy holds about as many idle
connections as it has requests in flight at its busiest (the demo's replay: about 30).

``python -m benchmarks upstream_pool`` (about a minute; ``BENCH_POOL_REQUESTS``, ``BENCH_POOL_REPEATS``).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time

import httpcore
import httpx

from benchmarks._results import write_section
from parity._loopback import free_port
from parity.monitor.intake.proxy import UPSTREAM_KEEPALIVE_S
from parity.monitor.intake.upstream_backend import UpstreamBackend

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


async def cpu_per_request(url: str, backend: httpcore.AsyncNetworkBackend | None, idle: int) -> float:
    """Microseconds of this process's CPU per request, with ``idle`` idle connections in the pool."""
    extra = {} if backend is None else {"network_backend": backend}
    async with httpcore.AsyncConnectionPool(
        max_connections=1000, max_keepalive_connections=200, keepalive_expiry=600.0, **extra
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
                anyio_us.append(asyncio.run(cpu_per_request(url, None, idle)))
                ours_us.append(asyncio.run(cpu_per_request(url, UpstreamBackend(), idle)))
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
            "| idle connections | anyio backend, µs CPU per request | UpstreamBackend, µs | ratio |",
            "|---:|---:|---:|---:|",
            *rows,
            "",
            "Both backends still pay httpcore's scan of the pool per request (every idle connection is polled, and "
            "counting idle connections is itself a scan per connection), so the cost keeps growing with the pool; "
            "UpstreamBackend removes anyio's attribute-table rebuild (a `getpeername` system call and a dict per "
            "connection per request) from that scan.",
        ]
    )
    write_section("upstream_pool", "The proxy's upstream pool: CPU per request by idle connections", body)


if __name__ == "__main__":
    main()
