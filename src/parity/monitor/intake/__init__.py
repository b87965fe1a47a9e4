"""How records come in and are built: the OpenAI-compatible proxy, log ingest, the OTLP receiver, the capture policy
(what text may be kept), scoring (an exchange -> a record with its detectors' observations) and change logs.
Modules: ``capture``, ``changes``, ``ingest``, ``otlp_receiver``, ``proxy``, ``scoring``.

The public API is ``parity.monitor``; import a module of this stage by its full path, e.g.
``from parity.monitor.intake.capture import ...``. The modules are not imported here: a module of
one stage must not import every other (the proxy's web stack with each record builder), and the stages
import each other's modules (ingest drives the worker, the worker builds records).
"""

__all__ = ["capture", "changes", "ingest", "otlp_receiver", "proxy", "scoring"]
