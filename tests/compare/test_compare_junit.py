"""``parity compare --junit-xml`` over real HTTP: one test case per statistical test, skipped ones, exit codes.

The endpoints are the in-process bigram double (``_compare_fake``) served by uvicorn on 127.0.0.1, so the CLI runs
exactly as in a deploy pipeline.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _compare_fake import FakeModel
from click.testing import CliRunner

from parity._background_server import BackgroundServer
from parity._loopback import free_port
from parity.cli._main import main


def _asgi(model: FakeModel) -> Any:
    """The double's handler as an ASGI app."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = httpx.Request(scope["method"], f"http://fake{scope['path']}", content=body)
        response = model.handler(request)
        headers = [(k.encode(), v.encode()) for k, v in response.headers.items()]
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": response.content})

    return app


@pytest.fixture
def endpoints() -> Iterator[tuple[str, str, str]]:
    """Reference, an identical candidate and a skewed candidate."""
    servers = [BackgroundServer(_asgi(m), lifespan="off") for m in (FakeModel(), FakeModel(), FakeModel(skew=1.0))]
    for server in servers:
        server.start()
    try:
        yield servers[0].url + "/v1", servers[1].url + "/v1", servers[2].url + "/v1"
    finally:
        for server in servers:
            server.stop()


def _compare(reference: str, candidate: str, out: Path, prompts: Path) -> int:
    args = ["compare", "--reference", reference, "--candidate", candidate, "--prompts", str(prompts)]
    args += ["--budget", "48", "--contexts", "12", "--max-tokens", "12", "--seed", "3", "--junit-xml", str(out)]
    return CliRunner().invoke(main, args).exit_code


def _suite(path: Path) -> ET.Element:
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert int(suite.get("tests", "-1")) == len(cases)
    assert int(suite.get("failures", "-1")) == sum(c.find("failure") is not None for c in cases)
    assert int(suite.get("skipped", "-1")) == sum(c.find("skipped") is not None for c in cases)
    return suite


def test_deploy_gate_junit(endpoints: tuple[str, str, str], tmp_path: Path) -> None:
    reference, same, skewed = endpoints
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the cat\na dog ran\nwe ate\nthe sun was\nit was very\nthen we\n")

    assert _compare(reference, same, tmp_path / "same.xml", prompts) == 0
    suite = _suite(tmp_path / "same.xml")
    assert suite.get("failures") == "0"
    names = [c.get("name") for c in suite.findall("testcase")]
    assert "next-token-divergence" in names
    assert "mmd-hamming" in names
    for case in suite.findall("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert 0 < float(props["pvalue"] or "nan") <= 1
        assert float(props["adjusted_pvalue"] or "nan") >= float(props["pvalue"] or "nan")

    assert _compare(reference, skewed, tmp_path / "skewed.xml", prompts) == 1
    suite = _suite(tmp_path / "skewed.xml")
    failure = suite.find("testcase[@name='next-token-divergence']/failure")
    assert failure is not None
    assert failure.get("message", "").startswith("the candidate differs: Holm-adjusted p")
    suite_props = {p.get("name"): p.get("value") for p in suite.find("properties").iter("property")}  # type: ignore[union-attr]
    assert suite_props["equivalent"] == "false"
    assert suite_props["candidate_url"] == skewed


def test_unreachable_endpoint_is_an_error_case(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    out = tmp_path / "gate.xml"
    args = ["compare", "--reference", url, "--candidate", url, "--budget", "8", "--junit-xml", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    suite = _suite(out)
    assert (suite.get("tests"), suite.get("errors")) == ("1", "1")
    assert "unreachable" in suite.find("testcase/error").get("message", "")  # type: ignore[union-attr]
