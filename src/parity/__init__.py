"""parity: catch silent quality regressions in LLM serving.

parity proves sampler implementations correct (``parity.sampling``, ``parity.conformance``), tests whether two
deployments serve the same model (``parity compare``), and watches production traffic per segment for the
kind of silent degradation that no error rate shows (``parity proxy``, ``parity ingest``, ``parity status``).

>>> import parity
>>> parity.__version__
'0.1.0'
"""

from parity._exceptions import (
    APIError,
    ConfigError,
    ConformanceError,
    EndpointError,
    InvalidInputError,
    MissingDependencyError,
    ParityError,
    QueueFullError,
    StoreError,
)
from parity._version import __version__

__all__ = [
    "APIError",
    "ConfigError",
    "ConformanceError",
    "EndpointError",
    "InvalidInputError",
    "MissingDependencyError",
    "ParityError",
    "QueueFullError",
    "StoreError",
    "__version__",
]
