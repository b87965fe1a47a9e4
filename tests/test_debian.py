"""The Debian set-up of the browser and store tests: found when present, a skip reason only when apt-get is
unusable, and an error (never a silent skip) when apt-get runs and fails."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from tests import _debian


def test_present_packages_need_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_debian, "_apt", lambda *a: pytest.fail("apt-get must not run"))
    assert _debian.ensure_packages(("chromium",), lambda: True, "the browser test") is None


def test_without_apt_get_the_reason_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_debian.shutil, "which", lambda name: None)
    reason = _debian.ensure_packages(("postgresql",), lambda: False, "the store tests")
    assert reason is not None
    assert "apt-get is not available" in reason
    assert "postgresql" in reason
    assert "the store tests" in reason


def test_a_failing_install_is_an_error_not_a_skip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[str, ...]] = []

    def fake_apt(prefix: list[str], *args: str) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        return subprocess.CompletedProcess(["apt-get", *args], 100, "", "E: Unable to locate package chromium")

    monkeypatch.setattr(_debian, "apt_prefix", lambda: [])
    monkeypatch.setattr(_debian, "_apt", fake_apt)
    monkeypatch.setattr(_debian.tempfile, "gettempdir", lambda: str(tmp_path))
    with pytest.raises(_debian.DebianInstallError, match="apt-get update failed"):
        _debian.ensure_packages(("chromium",), lambda: False, "the browser test")
    assert calls[0][:3] == ("install", "-y", "--no-install-recommends")
    assert calls[1] == ("update",)
