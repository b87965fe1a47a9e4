"""A free TCP port on 127.0.0.1, for a server started as a child process (the lab in the demo, benchmark and test
servers) whose command line needs the port before it binds.

The port is free when this returns; another process may still take it before the child binds (servers that bind
in this process take ``port=0`` instead, see :class:`parity._background_server.BackgroundServer`).

>>> 1024 <= free_port() <= 65535
True
"""

from __future__ import annotations

import socket

__all__ = ["free_port"]


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
