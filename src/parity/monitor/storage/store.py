"""Record stores: :class:`DuckDBStore` (default, one embedded file), :class:`PostgresStore` (a PostgreSQL database that
several processes write at once), :class:`MemoryStore` (the test double) and :class:`HTTPStore` (a read-only view of
a running proxy's store), all behind the store protocols: :class:`StoreReader` (every one), :class:`StoreWriter`
(all but ``HTTPStore``), and :class:`MetaStore` (DuckDB, PostgreSQL and memory).

Which to use: DuckDB while one process (one proxy, or one ``parity ingest``) writes; PostgreSQL
(``open_store("postgresql://...")``, ``pip install 'parity[dist]'``) when several proxies or monitors share a store
or ``parity status`` and the dashboard must read it directly while it is written.

Reading a store that a proxy is writing: DuckDB allows one process per file while it is open for writing, so
open the proxy's URL instead of the file (``open_store("http://127.0.0.1:8080")``); the proxy answers from the
same store it writes.

>>> store = open_store(":memory:")
>>> type(store).__name__, store.schema_version
('DuckDBStore', 3)
>>> type(open_store(None)).__name__
'MemoryStore'
"""

from __future__ import annotations

import secrets
from pathlib import Path

from parity._exceptions import StoreError
from parity.monitor.storage._duckdb_store import MIGRATIONS, STORE_SCHEMA_VERSION, DuckDBStore
from parity.monitor.storage._memory_store import MemoryStore
from parity.monitor.storage._postgres_store import PG_MIGRATIONS, PostgresStore, is_postgres_url, redact_url
from parity.monitor.storage._store_protocol import MetaStore, Store, StoreReader, StoreWriter
from parity.monitor.storage._store_summary import StoreSummary, summarize
from parity.monitor.storage.read_api import HTTPStore

__all__ = [
    "MIGRATIONS",
    "PG_MIGRATIONS",
    "SALT_KEY",
    "STORE_SCHEMA_VERSION",
    "AnyStore",
    "DuckDBStore",
    "HTTPStore",
    "MemoryStore",
    "MetaStore",
    "PostgresStore",
    "Store",
    "StoreReader",
    "StoreSummary",
    "StoreWriter",
    "default_spool_path",
    "is_postgres_url",
    "open_store",
    "open_writable_store",
    "redact_url",
    "session_salt",
    "summarize",
]

#: ``meta`` key under which the session-hash salt is persisted.
SALT_KEY = "session_salt"


#: What :func:`open_store` returns.
AnyStore = DuckDBStore | PostgresStore | MemoryStore | HTTPStore


def open_store(location: str | Path | None, *, read_only: bool = False) -> AnyStore:
    """Open the store at ``location``: a DuckDB file path (created and migrated if needed), ``":memory:"``,
    a ``postgresql://`` URL (migrated if needed), an ``http(s)://`` URL of a running proxy (read-only), or ``None``
    for a :class:`MemoryStore`."""
    if location is None:
        return MemoryStore()
    text = str(location)
    if text.startswith(("http://", "https://")):
        return HTTPStore(text)
    if is_postgres_url(text):
        return PostgresStore(text, read_only=read_only)
    return DuckDBStore(text, read_only=read_only)


def open_writable_store(location: str | Path) -> DuckDBStore | PostgresStore:
    """The store a writer (``parity proxy``, ``ingest``, ``monitor``) opens: a DuckDB file or a ``postgresql://``
    URL; a proxy's ``http(s)://`` URL is read-only and refused with a message saying so.

    >>> open_writable_store("http://127.0.0.1:8080")
    Traceback (most recent call last):
    ...
    parity._exceptions.StoreError: http://127.0.0.1:8080 is a proxy's read-only view; --store takes ...
    """
    text = str(location)
    if text.startswith(("http://", "https://")):
        raise StoreError(f"{text} is a proxy's read-only view; --store takes a DuckDB file or a postgresql:// URL")
    if is_postgres_url(text):
        return PostgresStore(text)
    return DuckDBStore(text)


def default_spool_path(location: str | Path) -> str:
    """Where a writer spools what its store cannot take: beside a DuckDB file, in the working folder for a URL.

    >>> default_spool_path("data/parity.duckdb"), default_spool_path("postgresql://db/parity")
    ('data/parity.duckdb.spool.jsonl', 'parity.spool.jsonl')
    """
    return "parity.spool.jsonl" if is_postgres_url(str(location)) else f"{location}.spool.jsonl"


def default_wal_path(location: str | Path, port: int) -> str:
    """Where a proxy keeps its write-ahead log: beside a DuckDB file; for a URL (a store several proxies share), in
    the working folder, one per listening port, so that proxies sharing a folder never share a log.

    >>> default_wal_path("data/parity.duckdb", 8080), default_wal_path("postgresql://db/parity", 8080)
    ('data/parity.duckdb.parity-wal.jsonl', 'parity-8080.parity-wal.jsonl')
    """
    return f"parity-{port}.parity-wal.jsonl" if is_postgres_url(str(location)) else f"{location}.parity-wal.jsonl"


def session_salt(store: MetaStore, configured: str | None = None) -> str:
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
