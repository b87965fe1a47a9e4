"""One TLS context per process for parity's HTTP clients.

httpx builds a fresh :class:`ssl.SSLContext` (loading the CA bundle, tens of milliseconds of CPU) for every client
it creates, even one that only ever speaks plain HTTP to loopback. Clients that parity creates often (a traffic
run per simulated day piece) pass this shared one instead.

>>> tls_context() is tls_context()
True
"""

from __future__ import annotations

import ssl
from functools import lru_cache

__all__ = ["tls_context"]


@lru_cache(maxsize=1)
def tls_context() -> ssl.SSLContext:
    """The process's default client TLS context (certificate checks on), built once."""
    return ssl.create_default_context()
