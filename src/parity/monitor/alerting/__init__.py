"""Where alerts go: the notifiers (log, memory, webhook) and the Alertmanager format. Modules: ``_alertmanager``,
``alerts``.

The public API is ``parity.monitor``; import a module of this stage by its full path, e.g.
``from parity.monitor.alerting.alerts import ...``. The modules are not imported here: a module of
one stage must not import every other (the proxy's web stack with each record builder), and the stages
import each other's modules (ingest drives the worker, the worker builds records).
"""

__all__ = ["alerts"]
