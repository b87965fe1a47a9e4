"""Where the read-only commands (``parity status``, ``parity dashboard``) read a store from: a DuckDB file opened
read-only, a ``postgresql://`` URL (read while other processes write it), or a running proxy's read-only endpoints
(DuckDB lets no other process open a file a proxy writes).

Every failure is one :class:`~parity.StoreError` or :class:`~parity.InvalidInputError` line naming the source.

>>> open_read_source(store="no/such/file.duckdb", proxy=None)
Traceback (most recent call last):
...
parity._exceptions.StoreError: no store at no/such/file.duckdb: pass --store FILE, or --proxy URL for a running proxy
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from parity._exceptions import InvalidInputError, ParityError, StoreError

if TYPE_CHECKING:
    from parity.monitor.storage.store import AnyStore

__all__ = ["DEFAULT_STORE", "open_read_source"]

#: The store file the monitor's commands use when none is given.
DEFAULT_STORE = "parity.duckdb"

#: A DuckDB database file has these bytes at offset 8 (after the header checksum).
DUCKDB_MAGIC = b"DUCK"


def _is_duckdb_file(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(12)[8:12] == DUCKDB_MAGIC


def open_read_source(*, store: str | None, proxy: str | None, proxy_token: str | None = None) -> AnyStore:
    """The store to read (exactly one of ``store``, ``proxy``; neither: :data:`DEFAULT_STORE`), checked to answer
    now rather than at the first read; ``proxy_token``: the proxy's token, when it asks for one. The caller
    closes it."""
    from parity.monitor.storage.store import HTTPStore, is_postgres_url, open_store

    if store is not None and proxy is not None:
        raise InvalidInputError("--store/--proxy", "are exclusive: give one source")
    source: AnyStore
    if proxy is not None:
        if not proxy.startswith(("http://", "https://")):
            raise InvalidInputError("--proxy", "must be an http(s) URL", proxy)
        source = HTTPStore(proxy, token=proxy_token)
    elif store is not None and is_postgres_url(store):
        source = open_store(store, read_only=True)
    else:
        path = store or DEFAULT_STORE
        if not Path(path).is_file():
            raise StoreError(f"no store at {path}: pass --store FILE, or --proxy URL for a running proxy")
        try:
            duckdb_file = _is_duckdb_file(Path(path))
        except OSError as err:
            raise StoreError(f"cannot read {path}: {err.strerror or err}") from err
        if not duckdb_file:
            raise StoreError(f"{path} is not a DuckDB store file (written by `parity proxy`, `ingest` or `demo`)")
        try:
            source = open_store(path, read_only=True)
        except ParityError:
            raise
        except Exception as err:  # duckdb raises its own IOException when a writer holds the file
            raise StoreError(f"cannot open {path} ({err}); if a proxy is writing it, use --proxy URL") from err
    try:
        source.alerts()
    except ParityError:
        source.close()
        raise
    except Exception as err:
        source.close()
        raise StoreError(f"cannot read {store or proxy} ({err})") from err
    return source
