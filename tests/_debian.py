"""Debian packages the tests (and benchmarks) need, found or installed once with ``apt-get`` under a file lock.

The CI machine is a fresh clone running ``make test`` as root with the Debian mirror reachable: there the install
must happen and the test must run. Only when ``apt-get`` itself is unusable (not Debian, or not root and no
password-less sudo) is the reason returned, for a skip. A failing ``apt-get`` run is an error, not a skip: the test
would otherwise vanish silently. ``apt-get update`` runs only when the first install attempt fails (a fresh image
has no package lists). Used for Chromium (the dashboard's browser tests) and PostgreSQL (the store tests).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

#: Seconds one ``apt-get`` call may take (a cold download of Chromium and its libraries is ~100 MB).
APT_TIMEOUT_S = 600


class DebianInstallError(RuntimeError):
    """``apt-get`` ran and failed; the message holds the end of its output."""


def apt_prefix() -> list[str] | None:
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


def ensure_packages(packages: Sequence[str], installed: Callable[[], bool], purpose: str) -> str | None:
    """Install ``packages`` unless ``installed()`` already holds; ``None`` when it holds after, else why it cannot.

    Serialised across processes by an exclusive lock on a file in the temp directory, so parallel test workers
    (or two sessions on one machine) install once. ``purpose`` names what needs the packages, for the skip reason.
    Raises :class:`DebianInstallError` when ``apt-get`` ran and failed.
    """
    if installed():
        return None
    prefix = apt_prefix()
    if prefix is None:
        return (
            f"cannot install Debian's {' '.join(packages)} for {purpose}: apt-get is not available to this user "
            "(needs Debian and root or password-less sudo)"
        )
    lock_path = Path(tempfile.gettempdir()) / f"parity-{packages[0]}-install.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if installed():  # another process installed them while we waited
                return None
            install = ("install", "-y", "--no-install-recommends", *packages)
            result = _apt(prefix, *install)
            if result.returncode != 0:
                update = _apt(prefix, "update")
                if update.returncode != 0:
                    raise DebianInstallError(f"apt-get update failed:\n{(update.stdout + update.stderr)[-3000:]}")
                result = _apt(prefix, *install)
            if result.returncode != 0 or not installed():
                raise DebianInstallError(
                    f"apt-get install {' '.join(packages)} failed:\n{(result.stdout + result.stderr)[-3000:]}"
                )
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return None
