"""Debian's Chromium for the browser tests: found, or installed once with ``apt-get`` under a file lock.

There is no downloaded Playwright browser on the machines this project runs on (no internet beyond the Debian
mirror), so Playwright drives the system ``/usr/bin/chromium``, installed the way ``tests/_debian.py`` says.
"""

from __future__ import annotations

from pathlib import Path

from tests._debian import ensure_packages

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


def ensure_chromium() -> str | None:
    """Make ``/usr/bin/chromium`` exist; return ``None`` when it does, or why it cannot (apt-get unusable)."""
    return ensure_packages(PACKAGES, CHROMIUM.exists, "the browser test")
