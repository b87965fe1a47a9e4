"""The worker that carries every accepted record durably to the monitor and the store: its queue and batches, the
write-ahead log, the spool, and the Prometheus metrics. Modules: ``metrics``, ``spool``, ``wal``, ``worker``.

The public API is ``parity.monitor``; import a module of this stage by its full path, e.g.
``from parity.monitor.runtime.metrics import ...``. The modules are not imported here: a module of
one stage must not import every other (the proxy's web stack with each record builder), and the stages
import each other's modules (ingest drives the worker, the worker builds records).
"""

__all__ = ["metrics", "spool", "wal", "worker"]
