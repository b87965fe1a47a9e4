"""The proxy's exposure model: with a token, every read view, /metrics and feedback refuse anyone without it;
/v1/* is forwarded as it came; without a token (the loopback default) nothing is asked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from parity._loopback import free_port
from parity.cli._main import main as cli
from parity.monitor.intake.proxy import ParityProxy, ProxyConfig
from parity.monitor.intake.scoring import RecordBuilder
from parity.monitor.storage.store import HTTPStore, MemoryStore

TOKEN = "proxy-token-0123456789"
FEEDBACK_TOKEN = "feedback-only-token-987"

VIEWS = [
    "/parity/health",
    "/parity/alerts",
    "/parity/alerts?open_only=true",
    "/parity/records",
    "/parity/records/summary",
    "/parity/feedback",
    "/parity/changes",
    "/metrics",
]
FEEDBACK = {"response_id": "chatcmpl-1", "kind": "thumbs_down"}
CHAT = {"model": "S", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def guarded(upstream: Any, serve_app: Callable[[Any], Any]) -> tuple[ParityProxy, Any]:
    builder = RecordBuilder(salt="s", scorer=None)
    proxy = ParityProxy(
        ProxyConfig(upstream=upstream.url, flush_interval_s=0.05),
        MemoryStore(),
        builder,
        token=TOKEN,
        feedback_token=FEEDBACK_TOKEN,
    )
    return proxy, serve_app(proxy.app)


def _bearer(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token is not None else {}


@pytest.mark.parametrize(("token", "status"), [(None, 401), ("wrong-token", 401), (FEEDBACK_TOKEN, 401), (TOKEN, 200)])
def test_every_view_needs_the_token(guarded: tuple[ParityProxy, Any], token: str | None, status: int) -> None:
    _, handle = guarded
    for path in VIEWS:
        r = httpx.get(handle.url + path, headers=_bearer(token))
        assert r.status_code == status, (path, token, r.text)
        if status == 401:
            assert r.json()["error"]["type"] == "authentication_error"
            assert r.json()["error"]["code"] == "invalid_token"
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert "parity_" not in r.text
            assert "alerts" not in r.json()


@pytest.mark.parametrize(("token", "status"), [(None, 401), ("wrong-token", 401), (FEEDBACK_TOKEN, 202), (TOKEN, 202)])
def test_feedback_needs_the_token_or_the_feedback_token(
    guarded: tuple[ParityProxy, Any], token: str | None, status: int
) -> None:
    proxy, handle = guarded
    r = httpx.post(handle.url + "/v1/feedback", json=FEEDBACK, headers=_bearer(token))
    assert r.status_code == status, r.text
    assert proxy.wait_idle()
    stored = proxy.store.feedback()
    assert len(stored) == (1 if status == 202 else 0)


def test_a_token_in_the_query_string_or_another_scheme_is_not_enough(guarded: tuple[ParityProxy, Any]) -> None:
    _, handle = guarded
    assert httpx.get(handle.url + f"/parity/alerts?token={TOKEN}").status_code == 401
    assert httpx.get(handle.url + "/parity/alerts", headers={"authorization": f"Basic {TOKEN}"}).status_code == 401
    assert httpx.get(handle.url + "/parity/alerts", headers={"authorization": f"Bearer {TOKEN}x"}).status_code == 401


def test_forwarded_requests_need_no_parity_token_and_refusals_are_counted(guarded: tuple[ParityProxy, Any]) -> None:
    _proxy, handle = guarded
    r = httpx.post(handle.url + "/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-user-key"})
    assert r.status_code == 200
    assert r.json()["object"] == "chat.completion"
    httpx.get(handle.url + "/parity/records")
    metrics = httpx.get(handle.url + "/metrics", headers=_bearer(TOKEN)).text
    assert 'parity_proxy_refused_requests_total{reason="unauthorized"} 1.0' in metrics


def test_without_a_token_everything_stays_open(upstream: Any, serve_app: Callable[[Any], Any]) -> None:
    proxy = ParityProxy(ProxyConfig(upstream=upstream.url), MemoryStore(), RecordBuilder(salt="s", scorer=None))
    handle = serve_app(proxy.app)
    for path in VIEWS:
        assert httpx.get(handle.url + path).status_code == 200, path
    assert httpx.post(handle.url + "/v1/feedback", json=FEEDBACK).status_code == 202


def test_http_store_passes_the_token_and_names_the_fix_without_it(guarded: tuple[ParityProxy, Any]) -> None:
    from parity import EndpointError

    _, handle = guarded
    view = HTTPStore(handle.url, token=TOKEN)
    assert view.alerts() == []
    assert view.records() == []
    view.close()
    anonymous = HTTPStore(handle.url)
    with pytest.raises(EndpointError, match="asks for its token; pass --proxy-token or set PARITY_PROXY_TOKEN"):
        anonymous.alerts()
    anonymous.close()
    wrong = HTTPStore(handle.url, token="nope")
    with pytest.raises(EndpointError, match="refused the token given"):
        wrong.alerts()
    wrong.close()


def test_parity_status_passes_the_token_from_the_flag_or_the_environment(guarded: tuple[ParityProxy, Any]) -> None:
    _, handle = guarded
    runner = CliRunner()
    ok = runner.invoke(cli, ["status", "--proxy", handle.url, "--proxy-token", TOKEN, "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["alerts"] == []
    env = runner.invoke(cli, ["status", "--proxy", handle.url, "--json"], env={"PARITY_PROXY_TOKEN": TOKEN})
    assert env.exit_code == 0, env.output
    refused = runner.invoke(cli, ["status", "--proxy", handle.url], env={"PARITY_PROXY_TOKEN": None})
    assert refused.exit_code == 2
    assert "PARITY_PROXY_TOKEN" in refused.output
    assert "Traceback" not in refused.output


def test_parity_proxy_beyond_loopback_generates_a_token_and_guards_every_view(upstream: Any, tmp_path: Path) -> None:
    """The real command on 0.0.0.0: views and feedback refuse a tokenless request; the printed token opens them."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    env.pop("PARITY_PROXY_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "parity", "proxy", "--upstream", upstream.url, "--listen", f"0.0.0.0:{port}",
         "--store", str(tmp_path / "p.duckdb"), "--no-detectors"],
        stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        token = None
        deadline = time.monotonic() + 60
        assert proc.stderr is not None
        while token is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if line.startswith("token"):
                token = line.split(": ", 1)[1].split()[0]
        assert token, "the proxy printed no token"
        base = f"http://127.0.0.1:{port}"
        while time.monotonic() < deadline:
            try:
                httpx.get(base + "/parity/health")
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        for path in VIEWS:
            assert httpx.get(base + path).status_code == 401, path
            assert httpx.get(base + path, headers=_bearer(token)).status_code == 200, path
        assert httpx.post(base + "/v1/feedback", json=FEEDBACK).status_code == 401
        assert httpx.post(base + "/v1/feedback", json=FEEDBACK, headers=_bearer(token)).status_code == 202
        assert httpx.get(base + "/dashboard/").status_code in (401, 404)  # 404: dashboard extra not installed
        assert httpx.post(base + "/v1/chat/completions", json=CHAT).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()
