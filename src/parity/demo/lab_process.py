"""The lab fleet as a child process (``parity lab serve``), reached over HTTP only, as any serving fleet would be.

A separate process also lets the lab's torch threads and the monitor's Python work run on different cores. The
child binds 127.0.0.1 on a free port, gets a random admin token, and is stopped (terminate, then kill) when the
context exits; if it dies while starting, the error carries the tail of what it printed.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import httpx

from parity._exceptions import ParityError
from parity._loopback import free_port
from parity._tls import tls_context

__all__ = ["LabProcess"]


class LabProcess:
    """``parity lab serve --config CONFIG`` on 127.0.0.1 in a child process; a context manager (``weights``: another
    weights directory than the committed one).

    :attr:`url` is the base URL, :attr:`admin_token` the bearer token of ``POST /admin/changes``.
    """

    def __init__(
        self,
        config: str | Path,
        *,
        threads: int = 1,
        max_batch: int = 16,
        port: int | None = None,
        weights: str | Path | None = None,
        startup_timeout_s: float = 120.0,
    ) -> None:
        self.config = Path(config)
        self.weights = Path(weights) if weights is not None else None
        self.threads = threads
        self.max_batch = max_batch
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = secrets.token_urlsafe(16)
        self.startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        # one client for the health polls and the change posts (a new one per call cost a TLS context each)
        self._client = httpx.Client(timeout=30.0, verify=tls_context())

    def start(self) -> LabProcess:
        """Start the child and wait until ``GET /health`` answers (engines warmed up)."""
        command = [
            sys.executable,
            "-m",
            "parity",
            "lab",
            "serve",
            "--config",
            str(self.config),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--admin-token",
            self.admin_token,
            "--threads",
            str(self.threads),
            "--max-batch",
            str(self.max_batch),
            *(["--weights", str(self.weights)] if self.weights is not None else []),
            "--parent-pid",  # the fleet stops itself if this process dies without stopping it (SIGKILL)
            str(os.getpid()),
        ]
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child; closed in stop()
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads)}
        self._proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            if self._proc.poll() is not None:
                raise ParityError(
                    f"the lab fleet exited while starting (code {self._proc.returncode}): {self.output()}"
                )
            try:
                if self._client.get(f"{self.url}/health", timeout=2.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise ParityError(f"the lab fleet did not answer on {self.url} within {self.startup_timeout_s:.0f} s")
            time.sleep(0.25)

    def output(self, limit: int = 2000) -> str:
        """The last ``limit`` characters the child printed."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", errors="replace")[-limit:].strip()

    def post_change(self, change: dict[str, Any]) -> dict[str, Any]:
        """``POST /admin/changes``; a refusal is a :class:`~parity.ParityError` with the lab's message."""
        resp = self._client.post(
            f"{self.url}/admin/changes", json=change, headers={"authorization": f"Bearer {self.admin_token}"}
        )
        if resp.status_code != 201:
            raise ParityError(f"the lab refused change {change.get('id')}: HTTP {resp.status_code} {resp.text[:300]}")
        data: dict[str, Any] = resp.json()
        return data

    def stop(self) -> None:
        """Terminate the child (kill it if it does not exit within 10 s).

        Whatever interrupts the wait (a second SIGTERM or Ctrl-C while a busy fleet finishes its batch) still kills
        the child before it propagates: the fleet never outlives its parent's clean-up.
        """
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                proc.terminate()
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        self._client.close()

    def __enter__(self) -> LabProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
