"""``parity proxy`` as users run it: a process in front of an upstream, forwarding, storing, serving the dashboard."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from parity._loopback import free_port

pytest.importorskip("duckdb")


@pytest.fixture
def proxy_process(tmp_path: Path, upstream: Any) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "parity", "proxy", "--upstream", upstream.url, "--listen", f"127.0.0.1:{port}",
               "--store", str(tmp_path / "p.duckdb"), "--long-context-tokens", "192"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/parity/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                raise AssertionError(f"parity proxy did not start: {out}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def test_the_proxy_process_forwards_and_serves_the_dashboard(proxy_process: str) -> None:
    body = {"model": "S", "messages": [{"role": "user", "content": "hello"}]}
    resp = httpx.post(f"{proxy_process}/v1/chat/completions", json=body, timeout=30)
    assert resp.status_code == 200
    assert resp.headers["x-parity-platform"] == "gpu"
    page = httpx.get(f"{proxy_process}/dashboard/", timeout=30)
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "parity" in page.text.lower()
    deadline = time.monotonic() + 20
    while httpx.get(f"{proxy_process}/parity/health", timeout=5).json()["records_written"] < 1:
        assert time.monotonic() < deadline, "the exchange was never stored"
        time.sleep(0.1)
