"""The signals of a record, and (re-exported) the segment lattice and the statistics bank they feed.

The monitor's per-segment statistics are in two modules: :mod:`parity.monitor.lattice` (segment keys, the lattice
of marginals, sharding by key) and :mod:`parity.monitor.statistics` (the bank of per-stream detectors). This module
defines what a record contributes to them.

**Signals.** For each record and segment (see :func:`record_signals`):

- ``<detector>``: the detector's flag rate (Bernoulli), one per detector that ran - sampling-consistency
  violations are the flag rate of the sampling-consistency detector;
- ``<detector>.score``: the detector's mean score, clipped to [0, 1] (higher = more suspicious, the detectors'
  convention), watched for an increase by the same CUSUM bank (valid for bounded means, see
  ``parity.stats.sequential``), on segments with at most ``score_max_order`` fixed dimensions (a score is rarely
  exactly 0, so it costs ~10x a rate update);
- ``feedback``: negative user feedback (thumbs-down, bug report) per request;
- ``output.cut`` (:data:`OUTPUT_CUT_SIGNAL`): the answer ended at a length limit the client did not ask for
  (``finish_reason="length"`` with fewer output tokens than the requested ``max_tokens``, or no ``max_tokens``
  requested): a silent ``max_tokens`` cap shows as a rise;
- ``context.dropped`` (:data:`CONTEXT_DROPPED_SIGNAL`): the upstream's ``usage.prompt_tokens`` is under
  :data:`SERVED_CONTEXT_RATIO` of the proxy's estimate of the forwarded request (``Record.request_tokens``), on
  requests of at least :data:`MIN_REQUEST_TOKENS`: a fleet that drops or truncates history shows a rise;
- ``routing.<rule>``: routing-audit violations per request (``parity.monitor.audit``). A rule that states an
  *invariant* (``PoolContextRule``: a correct fleet never serves a short request from the long pool) is an
  ``"invariant"`` signal: its baseline is not learned but fixed at ``StatsConfig.invariant_rate``, the tolerance a
  correct fleet stays under, so a handful of violations alarm even on a segment with little traffic, and the
  false-alarm bound holds as derived for a known baseline.

>>> from datetime import datetime, timezone
>>> from parity.monitor import DetectorObservation
>>> r = Record(record_id="r", time=datetime(2025, 8, 5, tzinfo=timezone.utc), model="S",
...            observations=(DetectorObservation("unexpected_script", True, 0.9),))
>>> [s.signal for s in record_signals(r)]
['unexpected_script', 'unexpected_script.score', 'feedback']
"""

from __future__ import annotations

from parity.monitor._records import Record
from parity.monitor.lattice import (
    WILDCARD,
    SegmentKey,
    SegmentLattice,
    is_refinement,
    key_of,
    segment_dict,
    segment_label,
    shard_of,
)
from parity.monitor.statistics import Firing, SegmentStatistics, SignalValue, StatsConfig

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

#: The negative-feedback signal.
FEEDBACK_SIGNAL = "feedback"

#: Answers cut at a length limit below the requested ``max_tokens`` (or with none requested).
OUTPUT_CUT_SIGNAL = "output.cut"

#: Requests whose served context (``usage.prompt_tokens``) is well under what the forwarded request implies.
CONTEXT_DROPPED_SIGNAL = "context.dropped"

#: ``context.dropped`` counts a request whose reported prompt tokens are under this share of the estimate: a
#: byte-level BPE on English serves ~1x the characters / 4 estimate (plus its chat template); a request that
#: lost its history keeps only its last message, a fraction of the estimate.
SERVED_CONTEXT_RATIO = 0.6

#: Requests smaller than this (estimated tokens) carry no ``context.dropped`` observation: too little text for
#: the estimate to mean anything.
MIN_REQUEST_TOKENS = 24

#: Feedback kinds that count as a 1 of the feedback signal (here, below the pipeline and the dashboard, which both
#: read it).
NEGATIVE_FEEDBACK = frozenset({"thumbs_down", "bug_report"})


def score_signal(detector: str) -> str:
    """Name of a detector's mean-score signal.

    >>> score_signal("reference")
    'reference.score'
    """
    return f"{detector}.score"


def audit_signal(rule: str) -> str:
    """Name of a routing rule's violation-rate signal.

    >>> audit_signal("short_on_long_pool")
    'routing.short_on_long_pool'
    """
    return f"routing.{rule}"


def record_signals(record: Record, *, scores: bool = True) -> list[SignalValue]:
    """The detector signals of one record: each detector's flag (and score when ``scores``); the feedback signal's
    zero (the request happened, no negative feedback yet).

    >>> from datetime import datetime, timezone
    >>> from parity.monitor import DetectorObservation
    >>> r = Record(record_id="r", time=datetime(2025, 8, 5, tzinfo=timezone.utc), model="S",
    ...            observations=(DetectorObservation("unexpected_script", True, 0.9),))
    >>> [(s.signal, s.value) for s in record_signals(r)]
    [('unexpected_script', 1.0), ('unexpected_script.score', 0.9), ('feedback', 0.0)]
    """
    out: list[SignalValue] = []
    for obs in record.observations:
        out.append(SignalValue(obs.detector, "rate", 1.0 if obs.flagged else 0.0))
        if scores and obs.score == obs.score:  # NaN scores carry no information
            out.append(SignalValue(score_signal(obs.detector), "mean", min(max(float(obs.score), 0.0), 1.0)))
    out.append(SignalValue(FEEDBACK_SIGNAL, "rate", 0.0))
    out.extend(serving_signals(record))
    return out


def serving_signals(record: Record) -> list[SignalValue]:
    """The signals read from how the request was served, not from the text: ``output.cut`` when the finish
    reason is known, ``context.dropped`` when the upstream reported its prompt tokens on a request of at least
    :data:`MIN_REQUEST_TOKENS` (estimated); none for failed requests.

    >>> from datetime import datetime, timezone
    >>> t = datetime(2025, 8, 5, tzinfo=timezone.utc)
    >>> capped = Record(record_id="r", time=t, model="H", max_tokens=64, output_tokens=4, finish_reason="length",
    ...                 context_tokens=12, request_tokens=80)
    >>> [(s.signal, s.value) for s in serving_signals(capped)]
    [('output.cut', 1.0), ('context.dropped', 1.0)]
    >>> full = Record(record_id="r", time=t, model="H", max_tokens=64, output_tokens=64, finish_reason="length",
    ...               context_tokens=90, request_tokens=80)
    >>> [(s.signal, s.value) for s in serving_signals(full)]
    [('output.cut', 0.0), ('context.dropped', 0.0)]
    """
    if not 200 <= record.status_code < 300:
        return []
    out: list[SignalValue] = []
    finish = record.finish_reason
    if finish is not None:
        cut = finish == "length" and (record.max_tokens is None or 0 < record.output_tokens < record.max_tokens)
        out.append(SignalValue(OUTPUT_CUT_SIGNAL, "rate", 1.0 if cut else 0.0))
    estimate = record.request_tokens
    if estimate is not None and estimate >= MIN_REQUEST_TOKENS and record.context_tokens > 0:
        dropped = record.context_tokens < SERVED_CONTEXT_RATIO * estimate
        out.append(SignalValue(CONTEXT_DROPPED_SIGNAL, "rate", 1.0 if dropped else 0.0))
    return out
