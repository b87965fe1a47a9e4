"""Lab fleet fixtures: a real LabServer over the committed weights, served by uvicorn on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass
class RunningLab:
    """A started lab server: ``url`` is the base URL (no ``/v1``), ``token`` the admin token."""

    server: object
    url: str
    token: str

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


def _start(config: str = "incident") -> Iterator[RunningLab]:
    torch = pytest.importorskip("torch")
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    torch.set_num_threads(1)
    from parity.lab.fleet import FleetConfig, default_config_path
    from parity.lab.server import LabServer, ServerThread

    server = LabServer(FleetConfig.load(default_config_path(config)), admin_token="test-token", max_wait_s=0.01)
    with ServerThread(server) as thread:
        yield RunningLab(server, thread.url, "test-token")


@pytest.fixture(scope="session")
def lab() -> Iterator[RunningLab]:
    """One incident-shaped fleet shared by the read-only tests (no faults are posted to it)."""
    yield from _start()


@pytest.fixture(scope="module")
def fault_lab() -> Iterator[RunningLab]:
    """A fleet of its own for a module that posts changes."""
    yield from _start()
