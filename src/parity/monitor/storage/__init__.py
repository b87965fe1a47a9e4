"""The store: ``open_store`` and the store protocols, the DuckDB, PostgreSQL and in-memory backends, the row codec,
summaries, and the HTTP read API a proxy serves. Modules: ``_duckdb_store``, ``_memory_store``, ``_postgres_store``,
``_record_rows``, ``_store_protocol``, ``_store_summary``, ``read_api``, ``store``.

The public API is ``parity.monitor``; import a module of this stage by its full path, e.g.
``from parity.monitor.storage.read_api import ...``. The modules are not imported here: a module of
one stage must not import every other (the proxy's web stack with each record builder), and the stages
import each other's modules (ingest drives the worker, the worker builds records).
"""

__all__ = ["read_api", "store"]
