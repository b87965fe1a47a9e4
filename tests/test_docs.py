"""The documentation site builds offline with ``mkdocs build --strict`` and without a single warning."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="the dev extra (mkdocs) is not installed")
pytest.importorskip("material", reason="the dev extra (mkdocs-material) is not installed")

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_strict_without_warnings(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path])}
    # no network at build time: HTTP clients that honour the proxy variables cannot reach anything
    env.update({"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""})
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "WARNING" not in log, log
    site = tmp_path / "site"
    cli = (site / "reference" / "cli" / "index.html").read_text()
    for command in ("conform", "compare", "proxy", "receive", "ingest"):
        assert f"parity {command}" in cli, command
    assert "--junit-xml" in cli
    assert "yield_checks" in (site / "reference" / "api" / "index.html").read_text()
    assert "proxy" in (site / "benchmarks" / "index.html").read_text()
    for page in ("conformance-ci", "deploy-gate", "monitor", "otlp"):
        assert (site / "quickstart" / page / "index.html").is_file(), page
    assert "fonts.googleapis.com" not in (site / "index.html").read_text()  # the built site loads no web fonts
