"""The monitor's per-segment vocabulary in one import: the segment lattice, the statistics bank and the signals.

Each is defined in its own module and re-exported here: :mod:`parity.monitor.detection.lattice` (segment keys, the
lattice of marginals, sharding by key), :mod:`parity.monitor.detection.statistics` (the bank of per-stream sequential
tests, with its batch path) and :mod:`parity.monitor.detection.signals` (every per-record signal: each detector's flag
and score, ``feedback``, ``output.cut``, ``context.dropped``, ``routing.<rule>``, defined once). Scores are watched by
the same CUSUM bank (valid for bounded means, see ``parity.stats.sequential``) on segments with at most
``score_max_order`` fixed dimensions (a score is rarely exactly 0, so it costs ~10x a rate update); ``"invariant"``
signals have a baseline fixed at ``StatsConfig.invariant_rate``, the tolerance a correct fleet stays under, so a handful
of violations alarm even on a segment with little traffic.

>>> from datetime import datetime, timezone
>>> from parity.monitor import DetectorObservation, Record
>>> r = Record(record_id="r", time=datetime(2025, 8, 5, tzinfo=timezone.utc), model="S",
...            observations=(DetectorObservation("unexpected_script", True, 0.9),))
>>> [s.signal for s in record_signals(r)]
['unexpected_script', 'unexpected_script.score', 'feedback']
"""

from __future__ import annotations

from parity.monitor.detection.lattice import (
    WILDCARD,
    SegmentKey,
    SegmentLattice,
    is_refinement,
    key_of,
    segment_dict,
    segment_label,
    shard_of,
)

# the signal definitions live in parity.monitor.detection.signals; re-exported here
from parity.monitor.detection.signals import (
    CONTEXT_DROPPED_SIGNAL,
    FEEDBACK_SIGNAL,
    MIN_REQUEST_TOKENS,
    NEGATIVE_FEEDBACK,
    OUTPUT_CUT_SIGNAL,
    SERVED_CONTEXT_RATIO,
    SignalValue,
    audit_signal,
    record_signals,
    score_signal,
    serving_signals,
)
from parity.monitor.detection.statistics import Firing, SegmentStatistics, StatsConfig

__all__ = [
    "CONTEXT_DROPPED_SIGNAL",
    "FEEDBACK_SIGNAL",
    "MIN_REQUEST_TOKENS",
    "NEGATIVE_FEEDBACK",
    "OUTPUT_CUT_SIGNAL",
    "SERVED_CONTEXT_RATIO",
    "WILDCARD",
    "Firing",
    "SegmentKey",
    "SegmentLattice",
    "SegmentStatistics",
    "SignalValue",
    "StatsConfig",
    "audit_signal",
    "is_refinement",
    "key_of",
    "record_signals",
    "score_signal",
    "segment_dict",
    "segment_label",
    "serving_signals",
    "shard_of",
]
