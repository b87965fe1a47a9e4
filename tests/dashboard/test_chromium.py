"""The Chromium set-up of the browser test: found when present, a skip reason only when apt-get is unusable."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import _chromium


def test_present_chromium_needs_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    browser = tmp_path / "chromium"
    browser.write_text("")
    monkeypatch.setattr(_chromium, "CHROMIUM", browser)
    monkeypatch.setattr(_chromium, "_apt", lambda *a: pytest.fail("apt-get must not run"))
    assert _chromium.ensure_chromium() is None


def test_without_apt_get_the_reason_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(_chromium, "CHROMIUM", tmp_path / "missing")
    monkeypatch.setattr(_chromium.shutil, "which", lambda name: None)
    reason = _chromium.ensure_chromium()
    assert reason is not None
    assert "apt-get is not available" in reason


def test_a_failing_install_is_an_error_not_a_skip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import subprocess

    calls: list[tuple[str, ...]] = []

    def fake_apt(prefix: list[str], *args: str) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        return subprocess.CompletedProcess(["apt-get", *args], 100, "", "E: Unable to locate package chromium")

    monkeypatch.setattr(_chromium, "CHROMIUM", tmp_path / "missing")
    monkeypatch.setattr(_chromium, "_apt_prefix", lambda: [])
    monkeypatch.setattr(_chromium, "_apt", fake_apt)
    monkeypatch.setattr(_chromium.tempfile, "gettempdir", lambda: str(tmp_path))
    with pytest.raises(_chromium.ChromiumInstallError, match="apt-get update failed"):
        _chromium.ensure_chromium()
    assert calls[0][:3] == ("install", "-y", "--no-install-recommends")
    assert calls[1] == ("update",)
