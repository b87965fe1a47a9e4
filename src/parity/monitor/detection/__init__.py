"""Detection: the segment lattice, each record's signals (routing audit included), the per-stream statistics bank, the
segment monitor (localisation, de-duplication, worsening watches), its scale-out on Ray actors, attribution to the
change log, incidents, and checkpoints of what it learned. Modules: ``_score_bank``, ``attribution``, ``audit``,
``checkpoint``, ``distributed``, ``incidents``, ``lattice``, ``pipeline``, ``segments``, ``signals``,
``statistics``.

The public API is ``parity.monitor``; import a module of this stage by its full path, e.g.
``from parity.monitor.detection.attribution import ...``. The modules are not imported here: a module of
one stage must not import every other (the proxy's web stack with each record builder), and the stages
import each other's modules (ingest drives the worker, the worker builds records).
"""

__all__ = [
    "attribution",
    "audit",
    "checkpoint",
    "distributed",
    "incidents",
    "lattice",
    "pipeline",
    "segments",
    "signals",
    "statistics",
]
