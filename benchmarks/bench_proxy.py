"""Latency the proxy adds: the same load sent to a canned upstream directly and through ``parity proxy``.

Set-up, all on loopback: a canned OpenAI-compatible upstream (starlette + uvicorn, its own process), the proxy
(``parity proxy``, its own process, default detectors scoring off the request path, DuckDB store), and a load
generator in this process (httpx, asyncio) that alternates blocks of requests between the two targets so drift
in machine load hits both arms alike. Added latency = percentile through the proxy minus the same percentile
direct (p50 and p99), for non-streaming and streaming (time to last byte) requests at concurrency 1 and 8.
The proxy's own ``parity_proxy_added_latency_seconds`` histogram (handling before the upstream call plus after
its headers) is reported beside it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks._results import write_section
from parity._loopback import free_port

REQUESTS_PER_ARM = int(os.environ.get("BENCH_PROXY_REQUESTS", "1200"))
BLOCK = 100
CONCURRENCY = tuple(int(c) for c in os.environ.get("BENCH_PROXY_CONCURRENCY", "1,8").split(","))

UPSTREAM = r"""
import json, sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
H = {"x-parity-server": "gpu-short-0", "x-parity-pool": "short", "x-parity-platform": "gpu",
     "x-parity-config-version": "v1", "x-parity-model": "S"}
TEXT = "The quick brown fox jumps over the lazy dog, and then it rests in the shade for a while."
BODY = json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 1754395200, "model": "S",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 20, "total_tokens": 32}}).encode()
CHUNKS = [("data: " + json.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1754395200,
    "model": "S", "choices": [{"index": 0, "delta": {"content": w + " "}, "finish_reason": None}]}) + "\n\n").encode()
    for w in TEXT.split()[:16]] + [b"data: [DONE]\n\n"]
async def chat(request):
    body = await request.json()
    if body.get("stream"):
        async def gen():
            for c in CHUNKS:
                yield c
        return StreamingResponse(gen(), media_type="text/event-stream", headers=H)
    return Response(BODY, media_type="application/json", headers=H)
uvicorn.run(Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])]), host="127.0.0.1",
            port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


#: What the runs said (written from them; the A/B of uvicorn's two HTTP parsers was measured by hand: httptools
#: uninstalled, then reinstalled, two interleaved pairs of this benchmark).
ANALYSIS = (
    "Where the time goes: the proxy's own histogram (above) counts only its on-path handling; the rest of what "
    "it adds is a second Python HTTP server and client on the path (parse the request, forward it through "
    "httpcore, parse the response, write it back), CPU that competes with the upstream and the load generator for "
    "the same 2 cores. Profiling on 2026-11-22 (cProfile, 400 sequential requests, worker disabled) put the wall "
    "time in the 4 `socket.send` calls per request; scoring, the segment monitor and DuckDB writes add <= 0.5 ms "
    "CPU per record, off the request path. uvicorn's C parser httptools (a dependency of the `monitor` extra since "
    "2026-12-01) against h11, two interleaved pairs of runs on 2026-12-01: added p50 at concurrency 1 2.43 / 2.52 "
    "ms against 2.87 / 2.72 ms (JSON) and 2.77 / 2.61 against 3.57 / 3.64 ms (SSE). At concurrency 8 the added "
    "tail is queueing on the shared cores. Next steps if the < 2 ms p99 goal matters more than a Python-only "
    "deployment: keep the request path out of Python (a mirror in the load balancer, nginx or Envoy, whose logs "
    "`parity ingest` reads: the same records, nothing added on the path), or a raw asyncio forwarder without ASGI."
)


def wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}")
        try:
            httpx.post(url + "/v1/chat/completions", json={"model": "S", "messages": []}, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not start")


async def one(client: httpx.AsyncClient, url: str, stream: bool) -> float:
    body = {"model": "S", "messages": [{"role": "user", "content": "hi"}], "stream": stream, "user": "u1"}
    t = time.perf_counter()
    async with client.stream("POST", url + "/v1/chat/completions", json=body) as r:
        async for _ in r.aiter_raw():
            pass
        assert r.status_code == 200
    return time.perf_counter() - t


async def run_block(client: httpx.AsyncClient, url: str, n: int, conc: int, stream: bool) -> list[float]:
    out: list[float] = []
    sem = asyncio.Semaphore(conc)

    async def task() -> None:
        async with sem:
            out.append(await one(client, url, stream))

    await asyncio.gather(*(task() for _ in range(n)))
    return out


async def measure(direct: str, proxy: str, conc: int, stream: bool) -> dict[str, list[float]]:
    lat: dict[str, list[float]] = {"direct": [], "proxy": []}
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        for url in (direct, proxy):  # warm-up
            await run_block(client, url, 50, conc, stream)
        for _ in range(REQUESTS_PER_ARM // BLOCK):
            lat["direct"] += await run_block(client, direct, BLOCK, conc, stream)
            lat["proxy"] += await run_block(client, proxy, BLOCK, conc, stream)
    return lat


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def internal_quantiles(metrics: str) -> tuple[float, float, int]:
    """(p50, p99) upper bucket bounds of the proxy's added-latency histogram, and its count."""
    buckets: list[tuple[float, float]] = []
    for line in metrics.splitlines():
        if line.startswith("parity_proxy_added_latency_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    total = buckets[-1][1]

    def q(p: float) -> float:
        return next(le for le, c in buckets if c >= p * total)

    return q(0.5), q(0.99), int(total)


def main() -> None:
    up_port, px_port = free_port(), free_port()
    direct, proxy = f"http://127.0.0.1:{up_port}", f"http://127.0.0.1:{px_port}"
    procs: list[subprocess.Popen[bytes]] = []
    rows = []
    added99: dict[tuple[bool, int], float] = {}
    with tempfile.TemporaryDirectory() as d:
        try:
            procs.append(subprocess.Popen([sys.executable, "-c", UPSTREAM, str(up_port)]))
            wait_up(direct, procs[0])
            parity = str(Path(sys.executable).with_name("parity"))
            cmd = [parity, "proxy", "--upstream", direct, "--listen", f"127.0.0.1:{px_port}", "--store",
                   os.path.join(d, "bench.duckdb"), *os.environ.get("BENCH_PROXY_ARGS", "").split()]  # fmt: skip
            procs.append(subprocess.Popen(cmd, stderr=subprocess.DEVNULL))
            wait_up(proxy, procs[1])
            cpu0 = [cpu_seconds(p.pid) for p in procs]
            n_sent = 0
            for stream in (False, True):
                for conc in CONCURRENCY:
                    lat = asyncio.run(measure(direct, proxy, conc, stream))
                    n_sent += len(lat["proxy"]) + 50
                    d50, d99 = (float(np.percentile(lat["direct"], q)) * 1e3 for q in (50, 99))
                    p50, p99 = (float(np.percentile(lat["proxy"], q)) * 1e3 for q in (50, 99))
                    row = (f"| {'SSE (last byte)' if stream else 'JSON'} | {conc} | {d50:.2f} / {d99:.2f} | "
                           f"{p50:.2f} / {p99:.2f} | **{p50 - d50:.2f}** / **{p99 - d99:.2f}** |")  # fmt: skip
                    rows.append(row)
                    added99[(stream, conc)] = p99 - d99
                    print(row, flush=True)
            httpx.get(proxy + "/parity/health")  # let the worker finish the last batch
            time.sleep(1.0)
            cpu_up, cpu_px = (cpu_seconds(p.pid) - c0 for p, c0 in zip(procs, cpu0, strict=True))
            n_direct = n_sent  # the same number of requests went to the upstream directly
            metrics = httpx.get(proxy + "/metrics").text
            i50, i99, n_int = internal_quantiles(metrics)
            summary = httpx.get(proxy + "/parity/records/summary").json()
            spooled = next(
                (float(x.rsplit(" ", 1)[1]) for x in metrics.splitlines()
                 if x.startswith("parity_proxy_spooled_records_total")), 0.0
            )  # fmt: skip
        finally:
            for p in reversed(procs):
                p.terminate()
                p.wait(timeout=30)
    load = os.getloadavg()
    serial = {k: v for k, v in added99.items() if k[1] == 1}
    worst = max(serial.values(), default=float("nan"))
    verdict = (
        f"**Goal met** at concurrency 1: at most {worst:.2f} ms p99 added."
        if worst < 2.0
        else f"**Goal missed here**: {worst:.2f} ms p99 added at concurrency 1 (JSON and SSE), against < 2 ms."
    )
    body = (
        f"{REQUESTS_PER_ARM} requests per arm and setting, alternating blocks of {BLOCK} direct / through the "
        "proxy; latency to the last byte at the client. Load average during the run "
        f"{load[0]:.1f} / {load[1]:.1f} (1 / 5 min) on a 2-core machine shared with other jobs: the tails are "
        "dominated by CPU contention and include it in both arms.\n\n"
        "| response | concurrency | direct p50 / p99 ms | via proxy p50 / p99 ms | added p50 / p99 ms |\n"
        "|---|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n\n"
        f"CPU per request (the contention-independent cost): upstream {cpu_up / (2 * n_direct) * 1e3:.2f} ms "
        f"(it served both arms), proxy {cpu_px / n_sent * 1e3:.2f} ms including off-path scoring, monitoring and "
        "DuckDB writes.\n\n"
        f"The proxy's own histogram of the time it adds on the request path: p50 <= {i50 * 1e3:.2f} ms, p99 <= "
        f"{i99 * 1e3:.2f} ms (bucket bounds, {n_int:,} requests). Records stored: {summary['records']:,} "
        f"(every proxied request, scored by the default detectors off the request path); spooled: {spooled:.0f}.\n"
        "Goal: < 2 ms p99 added. The difference of end-to-end percentiles also counts the extra loopback hop, "
        "HTTP parsing in a second server and the scoring worker competing for the same 2 cores.\n\n"
        + verdict
        + " "
        + ANALYSIS
    )
    write_section("proxy", "Proxy overhead", body)


if __name__ == "__main__":
    main()
