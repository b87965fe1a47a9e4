"""The continuous monitor: records -> detectors -> segment statistics -> alerts and attribution -> store.

>>> from parity.monitor import SCHEMA_VERSION
>>> SCHEMA_VERSION
1
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
from parity.monitor._store_protocol import Store

__all__ = [
    "LONG_CONTEXT_THRESHOLD_TOKENS",
    "SCHEMA_VERSION",
    "SEGMENT_DIMENSIONS",
    "Alert",
    "AttributedChange",
    "Change",
    "DetectorObservation",
    "FeedbackEvent",
    "Record",
    "Store",
    "context_class_of",
]
