"""A real PostgreSQL for the store tests: Debian's ``postgresql`` found or installed, a throwaway cluster started.

The package is installed the way ``tests/_debian.py`` says (on the CI machine, a fresh clone running ``make test``
as root, it is; a skip only when ``apt-get`` itself is unusable).

PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres`` user the package creates
and every server command runs through ``runuser -u postgres``. The cluster lives in a temporary folder, listens on
127.0.0.1 only (a free port) with trust authentication, runs without fsync (test data), and is stopped and deleted
afterwards. Each test store gets its own schema (``?options=-csearch_path=...`` in the URL), which is much cheaper
than a database per test.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests._debian import ensure_packages

from parity._loopback import free_port

#: Debian packages the store tests install when PostgreSQL's server binaries are missing.
PACKAGES = ("postgresql",)

#: The database user of the test cluster (trust authentication on loopback).
USER = "parity"


class PostgresInstallError(RuntimeError):
    """The server did not start; the message holds the end of its output."""


def _bin_dir() -> Path | None:
    """Debian keeps the server binaries in /usr/lib/postgresql/<major>/bin (the newest wins), not on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def ensure_postgres() -> tuple[Path | None, str | None]:
    """The server binaries' folder, installing Debian's ``postgresql`` when missing; or ``(None, why not)``."""
    why_not = ensure_packages(PACKAGES, lambda: _bin_dir() is not None, "the store tests")
    return (None, why_not) if why_not is not None else (_bin_dir(), None)


@dataclass
class PostgresServer:
    """A running throwaway cluster on 127.0.0.1."""

    bin_dir: Path
    root: Path
    port: int
    as_user: list[str]

    @property
    def base_url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"

    def new_url(self) -> str:
        """A URL whose connections default to a new, empty schema: one store per call."""
        import psycopg

        schema = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.base_url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        return f"{self.base_url}?options=-csearch_path%3D{schema}"

    def stop(self) -> None:
        subprocess.run(
            [*self.as_user, str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(bin_dir: Path, *, fsync: bool = False) -> PostgresServer:
    """``initdb`` into a temporary folder and ``pg_ctl start`` on a free loopback port (as ``postgres`` when
    root; without fsync unless ``fsync``, as test data needs no durability). Raises :class:`PostgresInstallError`
    with the server log when it does not come up."""
    root = Path(tempfile.mkdtemp(prefix="parity-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres", group="postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = root / "data", root / "server.log"

    def run(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120, cwd=root)

    init = run(str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8", "--locale=C", "-N")
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise PostgresInstallError(f"initdb failed:\n{(init.stdout + init.stderr)[-3000:]}")
    for _ in range(5):  # the port may be taken between free_port() and the bind: retry on another
        port = free_port()
        opts = f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c max_connections=100" + ("" if fsync else " -F")
        start = run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "60", "start")
        if start.returncode == 0:
            server = PostgresServer(bin_dir, root, port, as_user)
            deadline = time.monotonic() + 30
            while subprocess.run(
                [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
            ).returncode:
                if time.monotonic() > deadline:
                    server.stop()
                    raise PostgresInstallError("PostgreSQL started but does not accept connections")
                time.sleep(0.1)
            return server
    text = log.read_text() if log.exists() else ""
    shutil.rmtree(root, ignore_errors=True)
    raise PostgresInstallError(f"pg_ctl start failed:\n{text[-3000:]}")
