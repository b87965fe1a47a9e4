"""``parity dashboard``: one-line errors (exit 2, no traceback) and a real run serving a store file."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from parity.cli._main import main
from parity.cli.dashboard import resolve_token

from .conftest import free_port


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["dashboard", *args])
    return result.exit_code, result.output


def test_help_lists_the_options() -> None:
    code, out = run("--help")
    assert code == 0
    for option in ("--store", "--proxy", "--host", "--port", "--token"):
        assert option in out
    assert "--long-context-tokens" not in out  # accepted for older scripts, ignored: records carry their class


def test_a_missing_store_file(tmp_path: Path) -> None:
    code, out = run("--store", str(tmp_path / "nope.duckdb"))
    assert code == 2
    assert out.startswith("parity: error: no store at ")
    assert "--proxy URL" in out
    assert "Traceback" not in out


def test_a_file_that_is_not_a_store(tmp_path: Path) -> None:
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"this is not a database\n" * 100)
    code, out = run("--store", str(junk))
    assert code == 2
    assert out.startswith(f"parity: error: {junk} is not a DuckDB store file")
    assert "Traceback" not in out
    assert len(out.strip().splitlines()) == 1


def test_store_and_proxy_are_exclusive_and_the_proxy_must_be_a_url(replay_file: Path) -> None:
    code, out = run("--store", str(replay_file), "--proxy", "http://127.0.0.1:9")
    assert (code, out.strip()) == (2, "parity: error: `--store/--proxy` are exclusive: give one source")
    code, out = run("--proxy", "127.0.0.1:8080")
    assert (code, out.strip()) == (2, "parity: error: `--proxy` must be an http(s) URL, got '127.0.0.1:8080'")


def test_an_unreachable_proxy() -> None:
    port = free_port()
    code, out = run("--proxy", f"http://127.0.0.1:{port}")
    assert code == 2
    assert out.startswith(f"parity: error: http://127.0.0.1:{port}/parity/alerts: cannot reach the proxy")


def test_a_port_in_use(replay_file: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out = run("--store", str(replay_file), "--port", str(port))
    assert code == 2
    assert out.startswith(f"parity: error: `--port` must be free to listen on at 127.0.0.1, got {port}")
    assert "Traceback" not in out


def test_an_empty_token_and_a_bad_context_split(replay_file: Path) -> None:
    code, out = run("--store", str(replay_file), "--token", " ")
    assert (code, out.strip()) == (2, "parity: error: `--token` must be a non-empty string, got ' '")
    code, out = run("--store", str(replay_file), "--long-context-tokens", "0")
    assert code == 2
    assert "--long-context-tokens" in out


def test_a_token_is_generated_beyond_loopback() -> None:
    assert resolve_token("127.0.0.1", None) == (None, False)
    assert resolve_token("::1", None) == (None, False)
    assert resolve_token("0.0.0.0", "mine") == ("mine", False)
    token, generated = resolve_token("0.0.0.0", None)
    assert generated
    assert token is not None
    assert len(token) >= 32
    assert resolve_token("10.0.0.5", None)[0] != token


def test_serves_a_store_file_until_interrupted(replay_file: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "parity",
            "dashboard",
            "--store",
            str(replay_file),
            "--port",
            str(port),
            "--token",
            "tok3n",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                first = httpx.get(f"{url}/api/overview", timeout=5)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the dashboard did not start: {proc.communicate()}")
                time.sleep(0.1)
        assert first.status_code == 401
        ok = httpx.get(f"{url}/api/overview", headers={"Authorization": "Bearer tok3n"}, timeout=30)
        assert ok.status_code == 200
        assert ok.json()["records"] > 0
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"http://127.0.0.1:{port}/?token=tok3n" in err
    assert "(read-only)" in err
    assert "parity dashboard stopped" in err
