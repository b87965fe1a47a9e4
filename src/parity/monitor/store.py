"""Record stores: :class:`DuckDBStore` (default, one embedded file), :class:`MemoryStore` (the test double) and
:class:`HTTPStore` (a read-only view of a running proxy's store), all behind the :class:`~parity.monitor.Store`
protocol.

Reading a store that a proxy is writing: DuckDB allows one process per file while it is open for writing, so
open the proxy's URL instead of the file (``open_store("http://127.0.0.1:8080")``); the proxy answers from the
same store it writes.

>>> store = open_store(":memory:")
>>> type(store).__name__, store.schema_version
('DuckDBStore', 2)
>>> type(open_store(None)).__name__
'MemoryStore'
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Protocol

from parity.monitor._duckdb_store import MIGRATIONS, STORE_SCHEMA_VERSION, DuckDBStore
from parity.monitor._http_store import HTTPStore
from parity.monitor._memory_store import MemoryStore
from parity.monitor._store_summary import StoreSummary, summarize

__all__ = [
    "LONG_CONTEXT_KEY",
    "MIGRATIONS",
    "SALT_KEY",
    "STORE_SCHEMA_VERSION",
    "DuckDBStore",
    "HTTPStore",
    "MemoryStore",
    "StoreSummary",
    "open_store",
    "session_salt",
    "summarize",
]

#: ``meta`` key under which the session-hash salt is persisted.
SALT_KEY = "session_salt"

#: ``meta`` key under which a writer records the fleet router's short/long split in context tokens (the lab's is
#: 192), so readers such as the dashboard classify ``context_class`` the way the monitor did.
LONG_CONTEXT_KEY = "long_context_tokens"


def open_store(location: str | Path | None, *, read_only: bool = False) -> DuckDBStore | MemoryStore | HTTPStore:
    """Open the store at ``location``: a DuckDB file path (created and migrated if needed), ``":memory:"``,
    an ``http(s)://`` URL of a running proxy (read-only), or ``None`` for a :class:`MemoryStore`."""
    if location is None:
        return MemoryStore()
    text = str(location)
    if text.startswith(("http://", "https://")):
        return HTTPStore(text)
    return DuckDBStore(text, read_only=read_only)


class _MetaStore(Protocol):
    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...


def session_salt(store: _MetaStore, configured: str | None = None) -> str:
    """The salt for session hashes: ``configured`` when given (and persisted), else the store's own, drawn at
    random on first use and kept in the store so hashes stay joinable across restarts.

    >>> s = MemoryStore()
    >>> session_salt(s) == session_salt(s)
    True
    >>> session_salt(s, "team-salt")
    'team-salt'
    """
    if configured:
        if store.get_meta(SALT_KEY) != configured:
            store.set_meta(SALT_KEY, configured)
        return configured
    salt = store.get_meta(SALT_KEY)
    if salt is None:
        salt = secrets.token_hex(16)
        store.set_meta(SALT_KEY, salt)
    return salt
