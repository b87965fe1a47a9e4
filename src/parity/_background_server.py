"""An ASGI app served by uvicorn from a background thread on a loopback port (the lab in tests, the demo's proxy).

>>> async def app(scope, receive, send):
...     await send({"type": "http.response.start", "status": 204, "headers": []})
...     await send({"type": "http.response.body", "body": b""})
>>> import httpx
>>> with BackgroundServer(app, lifespan="off") as server:
...     httpx.get(server.url).status_code
204
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any, Literal

from parity._exceptions import InvalidInputError, ParityError
from parity._optional import import_optional

__all__ = ["BackgroundServer"]


class BackgroundServer:
    """Serve ``app`` on ``host:port`` (``port=0``: a free one) from a daemon thread; a context manager.

    The socket is bound in the constructor, so :attr:`url` is known (and the port taken) before :meth:`start`;
    a port in use is an :class:`~parity.InvalidInputError` naming it.
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        lifespan: Literal["on", "off", "auto"] = "on",
        name: str = "server",
    ) -> None:
        self.host = host
        self.name = name
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError as err:
            self._sock.close()
            raise InvalidInputError("port", "must be free to bind", f"{host}:{port}", detail=str(err)) from err
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://{host}:{self.port}"
        uvicorn = import_optional("uvicorn", extra="monitor")
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan=lifespan)
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._uvicorn.run, kwargs={"sockets": [self._sock]}, name=f"parity-{name}", daemon=True
        )

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        """Start serving; wait until uvicorn accepts connections (its lifespan start-up included)."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._uvicorn.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise ParityError(f"the {self.name} did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Ask uvicorn to exit (running the lifespan shut-down) and wait for the thread."""
        self._uvicorn.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
