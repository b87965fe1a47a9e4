"""The continuous monitor: records -> detectors -> signals -> per-segment sequential tests -> alerts -> store.

>>> from parity.monitor import SCHEMA_VERSION
>>> SCHEMA_VERSION
3
"""

from parity.monitor._records import (
    LONG_CONTEXT_THRESHOLD_TOKENS,
    SCHEMA_VERSION,
    SEGMENT_DIMENSIONS,
    Alert,
    AttributedChange,
    Change,
    DetectorObservation,
    FeedbackEvent,
    Record,
    context_class_of,
)
from parity.monitor.storage._store_protocol import MetaStore, Store, StoreReader, StoreWriter
from parity.monitor.storage.store import DuckDBStore, HTTPStore, MemoryStore, PostgresStore, StoreSummary, open_store

__all__ = [
    "LONG_CONTEXT_THRESHOLD_TOKENS",
    "SCHEMA_VERSION",
    "SEGMENT_DIMENSIONS",
    "Alert",
    "AttributedChange",
    "Change",
    "DetectorObservation",
    "DuckDBStore",
    "FeedbackEvent",
    "HTTPStore",
    "MemoryStore",
    "MetaStore",
    "PostgresStore",
    "Record",
    "Store",
    "StoreReader",
    "StoreSummary",
    "StoreWriter",
    "context_class_of",
    "open_store",
]
