"""Debian's Chromium for the browser tests: found, or installed once with ``apt-get`` under a file lock.

There is no downloaded Playwright browser on the machines this project runs on (no internet beyond the Debian
mirror), so Playwright drives the system ``/usr/bin/chromium``. The CI machine is a fresh clone running ``make
test`` as root with the Debian mirror reachable: there the install must happen and the test must run. Only when
``apt-get`` itself is unusable (not Debian, or not root and no password-less sudo) is the reason returned, for a
skip. A failing ``apt-get`` run is an error, not a skip: the browser test would otherwise vanish silently.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

#: Where Debian's ``chromium`` package puts the browser.
CHROMIUM = Path("/usr/bin/chromium")

#: Packages installed: the browser and one font family, so text renders in screenshots.
PACKAGES = ("chromium", "fonts-dejavu-core")

#: Flags for a quiet, offline, sandbox-free headless Chromium (the test runs as root in a container).
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

#: Seconds one ``apt-get`` call may take (a cold download of Chromium and its libraries is ~100 MB).
APT_TIMEOUT_S = 600


class ChromiumInstallError(RuntimeError):
    """``apt-get`` ran and failed; the message holds the end of its output."""


def _apt_prefix() -> list[str] | None:
    """How to run apt-get here: directly as root, through password-less sudo, or not at all."""
    if shutil.which("apt-get") is None:
        return None
    if os.geteuid() == 0:
        return []
    sudo = shutil.which("sudo")
    if sudo and subprocess.run([sudo, "-n", "true"], capture_output=True).returncode == 0:
        return [sudo, "-n"]
    return None


def _apt(prefix: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(
        [*prefix, "apt-get", "-q", "-o", "DPkg::Lock::Timeout=300", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=APT_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )


def ensure_chromium() -> str | None:
    """Make ``/usr/bin/chromium`` exist; return ``None`` when it does, or why it cannot (apt-get unusable).

    Serialised across processes by an exclusive lock on a file in the temp directory, so parallel test workers
    (or two sessions on one machine) install once. ``apt-get update`` runs only when the first install attempt
    fails (a fresh image has no package lists).
    """
    if CHROMIUM.exists():
        return None
    prefix = _apt_prefix()
    if prefix is None:
        return (
            "cannot install Debian's chromium for the browser test: apt-get is not available to this user "
            "(needs Debian and root or password-less sudo)"
        )
    lock_path = Path(tempfile.gettempdir()) / "parity-chromium-install.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if CHROMIUM.exists():  # another process installed it while we waited
                return None
            install = ("install", "-y", "--no-install-recommends", *PACKAGES)
            result = _apt(prefix, *install)
            if result.returncode != 0:
                update = _apt(prefix, "update")
                if update.returncode != 0:
                    raise ChromiumInstallError(f"apt-get update failed:\n{(update.stdout + update.stderr)[-3000:]}")
                result = _apt(prefix, *install)
            if result.returncode != 0 or not CHROMIUM.exists():
                raise ChromiumInstallError(
                    f"apt-get install {' '.join(PACKAGES)} failed:\n{(result.stdout + result.stderr)[-3000:]}"
                )
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return None
