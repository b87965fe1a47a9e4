"""Segments, signals and the per-segment statistics of the monitor, sharded by segment key.

**Segments.** A record's finest segment is one value per dimension (``Record.segment()``). The monitor tracks
that segment and every *marginal* of it: every subset of the dimensions, the others replaced by ``"*"``
(:data:`WILDCARD`). With the six dimensions that is ``2**6 = 64`` segments per record, all of which have traffic
by construction; ``max_order`` bounds the lattice to subsets of at most that many fixed dimensions when the
per-record cost matters more than the finest combinations. A segment key is the tuple of values in dimension
order, e.g. ``("S", "*", "tpu", "*", "*", "*")``.

**Signals.** Defined once in :mod:`parity.monitor.signals` (re-exported here): each detector's flag and score,
``feedback``, ``output.cut``, ``context.dropped`` and ``routing.<rule>``. Scores are watched by the same CUSUM
bank (valid for bounded means, see ``parity.stats.sequential``) on segments with at most ``score_max_order``
fixed dimensions (a score is rarely exactly 0, so it costs ~10x a rate update); ``"invariant"`` signals have a
baseline fixed at ``StatsConfig.invariant_rate``, the tolerance a correct fleet stays under, so a handful of
violations alarm even on a segment with little traffic.

**Sharding.** Each (signal, segment) stream is owned by exactly one shard, ``shard_of(key, n_shards)``, a stable
hash of the segment key, so a fleet of workers each running :class:`SegmentStatistics` with its own ``shard``
sees every record but updates only the streams it owns; no state is shared or merged.

>>> lattice = SegmentLattice(("model", "platform"))
>>> lattice.keys(("S", "tpu"))
[('*', '*'), ('S', '*'), ('*', 'tpu'), ('S', 'tpu')]
>>> segment_dict(("S", "*"), ("model", "platform"))
{'model': 'S'}
>>> shard_of(("S", "*"), 4) == shard_of(("S", "*"), 4) < 4
True
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from parity._exceptions import InvalidInputError
from parity.monitor._records import LONG_CONTEXT_THRESHOLD_TOKENS, SEGMENT_DIMENSIONS, Record, context_class_of
from parity.monitor.signals import (  # the signal definitions live in parity.monitor.signals; re-exported here
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
from parity.stats.sequential import BernoulliCUSUM, ChangeEstimate, cusum_threshold

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

#: The value of a dimension a segment does not fix.
WILDCARD = "*"

#: Finest segments whose lattice keys are memoised (the cache is cleared when full).
KEY_CACHE_SIZE = 4096

SegmentKey = tuple[str, ...]


def segment_dict(key: SegmentKey, dimensions: Sequence[str] = SEGMENT_DIMENSIONS) -> dict[str, str]:
    """The dimensions a segment fixes, as a dict (the ``Alert.segment`` shape)."""
    return {d: v for d, v in zip(dimensions, key, strict=True) if v != WILDCARD}


def key_of(segment: Mapping[str, str], dimensions: Sequence[str] = SEGMENT_DIMENSIONS) -> SegmentKey:
    """Inverse of :func:`segment_dict`; unknown dimensions are rejected.

    >>> key_of({"platform": "tpu"}, ("model", "platform"))
    ('*', 'tpu')
    """
    unknown = sorted(set(segment) - set(dimensions))
    if unknown:
        raise InvalidInputError("segment", f"has dimensions {unknown} outside {list(dimensions)}")
    return tuple(segment.get(d, WILDCARD) for d in dimensions)


def segment_label(key: SegmentKey, dimensions: Sequence[str] = SEGMENT_DIMENSIONS) -> str:
    """A short human-readable label: ``model=S,platform=tpu``, or ``all`` for the global segment.

    >>> segment_label(("S", "*", "tpu"), ("model", "pool", "platform")), segment_label(("*",), ("model",))
    ('model=S,platform=tpu', 'all')
    """
    parts = [f"{d}={v}" for d, v in zip(dimensions, key, strict=True) if v != WILDCARD]
    return ",".join(parts) or "all"


def is_refinement(child: SegmentKey, parent: SegmentKey) -> bool:
    """Whether ``child`` fixes every dimension ``parent`` fixes, to the same value (a segment refines itself).

    >>> is_refinement(("S", "tpu"), ("S", "*")), is_refinement(("S", "*"), ("S", "tpu"))
    (True, False)
    """
    return all(p in (WILDCARD, c) for c, p in zip(child, parent, strict=True))


def order_of(key: SegmentKey) -> int:
    """How many dimensions a segment fixes."""
    return sum(1 for v in key if v != WILDCARD)


def shard_of(key: SegmentKey, n: int) -> int:
    """The shard (``0 <= shard < n``) that owns every stream of segment ``key``: CRC-32 of the key, stable across
    processes and machines (Python's ``hash`` is salted per process)."""
    if n < 1:
        raise InvalidInputError("n", "must be >= 1", n)
    return zlib.crc32("\x1f".join(key).encode()) % n


class SegmentLattice:
    """All marginals of a finest segment over ``dimensions``, with at most ``max_order`` fixed dimensions.

    >>> len(SegmentLattice(SEGMENT_DIMENSIONS).keys(("a",) * 6)), len(SegmentLattice(SEGMENT_DIMENSIONS, 2).masks)
    (64, 22)
    """

    def __init__(
        self,
        dimensions: Sequence[str] = SEGMENT_DIMENSIONS,
        max_order: int | None = None,
        *,
        long_context_threshold: int = LONG_CONTEXT_THRESHOLD_TOKENS,
    ) -> None:
        self.dimensions = tuple(dimensions)
        if long_context_threshold < 1:
            raise InvalidInputError("long_context_threshold", "must be >= 1", long_context_threshold)
        self.long_context_threshold = long_context_threshold
        if not self.dimensions or len(set(self.dimensions)) != len(self.dimensions):
            raise InvalidInputError("dimensions", "must be non-empty and distinct", self.dimensions)
        self.max_order = len(self.dimensions) if max_order is None else max_order
        if not 0 <= self.max_order <= len(self.dimensions):
            raise InvalidInputError("max_order", f"must be in [0, {len(self.dimensions)}]", max_order)
        k = len(self.dimensions)
        masks = [m for m in itertools.product((False, True), repeat=k) if sum(m) <= self.max_order]
        masks.sort(key=lambda m: (sum(m), [not b for b in m]))
        #: one tuple of booleans per segment: True = the dimension is fixed
        self.masks: tuple[tuple[bool, ...], ...] = tuple(masks)
        self._cache: dict[tuple[str, ...], list[SegmentKey]] = {}

    def keys(self, values: Sequence[str]) -> list[SegmentKey]:
        """The keys of every marginal of the finest segment ``values``, coarsest first (memoised: a fleet has
        few finest segments, and every record of one shares the list)."""
        values = tuple(values)
        keys = self._cache.get(values)
        if keys is None:
            if len(self._cache) >= KEY_CACHE_SIZE:
                self._cache.clear()
            keys = self._cache[values] = [
                tuple(v if m else WILDCARD for v, m in zip(values, mask, strict=True)) for mask in self.masks
            ]
        return keys

    def values_of(self, record: Record) -> SegmentKey:
        """The record's finest segment as a key over these dimensions (``context_class`` by this lattice's
        ``long_context_threshold``: a fleet whose router splits at 192 tokens, like the lab's, sets it)."""
        seg = record.segment()
        seg["context_class"] = context_class_of(record.context_tokens, self.long_context_threshold)
        return tuple(seg.get(d, getattr(record, d, WILDCARD)) for d in self.dimensions)


@dataclass(frozen=True, slots=True)
class StatsConfig:
    """Settings of the per-segment statistics.

    ``alpha`` is the family-wise false-alarm probability over ``horizon`` observations per stream, split
    (Bonferroni) across ``max_streams`` streams and each detector's alternatives; streams beyond ``max_streams``
    are not tracked (counted in ``SegmentStatistics.untracked``). ``warmup`` is the number of baseline
    observations a stream needs before it may alarm. ``invariant_rate`` is the known baseline of invariant signals
    (a routing rule a correct fleet never breaks: at most one violation in 100,000 requests by default) and
    ``invariant_ratios`` their post-change alternatives: up to 10,000x, so that on a segment the violation itself
    defines (short requests on the long pool, where every request is one) three violations cross a threshold of
    27, the production one, while on a busy segment a 1% share still alarms within a few violations.
    """

    dimensions: tuple[str, ...] = SEGMENT_DIMENSIONS
    max_order: int | None = None
    long_context_threshold: int = LONG_CONTEXT_THRESHOLD_TOKENS
    score_max_order: int = 1
    alpha: float = 0.01
    horizon: int = 1_000_000
    max_streams: int = 20_000
    rate_warmup: int = 1000
    mean_warmup: int = 200
    threshold: float | None = None
    invariant_rate: float = 1e-5
    invariant_ratios: tuple[float, ...] = (10.0, 100.0, 1000.0, 10_000.0)

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise InvalidInputError("alpha", "must be in (0, 1)", self.alpha)
        if self.horizon < 1:
            raise InvalidInputError("horizon", "must be >= 1", self.horizon)
        if self.max_streams < 1:
            raise InvalidInputError("max_streams", "must be >= 1", self.max_streams)
        if self.rate_warmup < 1 or self.mean_warmup < 1:
            raise InvalidInputError("rate_warmup/mean_warmup", "must be >= 1", (self.rate_warmup, self.mean_warmup))
        if self.score_max_order < 0:
            raise InvalidInputError("score_max_order", "must be >= 0", self.score_max_order)
        if not 1e-6 <= self.invariant_rate < 1e-2:
            raise InvalidInputError("invariant_rate", "must be in [1e-6, 0.01)", self.invariant_rate)
        if not self.invariant_ratios or any(r <= 1 or r * self.invariant_rate >= 1 for r in self.invariant_ratios):
            raise InvalidInputError(
                "invariant_ratios", "must be > 1 with ratio * invariant_rate < 1", self.invariant_ratios
            )


@dataclass(frozen=True, slots=True)
class Firing:
    """A stream's detector alarmed: the signal, the segment key and the detector's change estimate."""

    signal: str
    key: SegmentKey
    estimate: ChangeEstimate


Detector = BernoulliCUSUM


class SegmentStatistics:
    """The (signal, segment) streams one shard owns, each with its own sequential detector.

    >>> from datetime import datetime, timezone
    >>> from parity.monitor import DetectorObservation
    >>> stats = SegmentStatistics(StatsConfig(dimensions=("model", "platform")))
    >>> r = Record(record_id="r", time=datetime(2025, 8, 5, tzinfo=timezone.utc), model="S", platform="tpu",
    ...            observations=(DetectorObservation("unexpected_script", False, 0.1),))
    >>> stats.observe(stats.lattice.values_of(r), record_signals(r), t=0.0)
    []
    >>> len(stats), sorted({s for s, _ in stats.streams()})
    (11, ['feedback', 'unexpected_script', 'unexpected_script.score'])
    """

    def __init__(self, config: StatsConfig | None = None, *, shard: int = 0, n_shards: int = 1) -> None:
        self.config = config or StatsConfig()
        if n_shards < 1:
            raise InvalidInputError("n_shards", "must be >= 1", n_shards)
        if not 0 <= shard < n_shards:
            raise InvalidInputError("shard", f"must be in [0, {n_shards})", shard)
        self.shard = shard
        self.n_shards = n_shards
        self.lattice = SegmentLattice(
            self.config.dimensions, self.config.max_order, long_context_threshold=self.config.long_context_threshold
        )
        self._mask_orders = [sum(m) for m in self.lattice.masks]
        self._rate_threshold = self.config.threshold or cusum_threshold(
            alpha=self.config.alpha,
            horizon=self.config.horizon,
            n_streams=self.config.max_streams,
            n_alternatives=max(len(BernoulliCUSUM(threshold=1.0).ratios), len(self.config.invariant_ratios)),
        )
        self._streams: dict[tuple[str, SegmentKey], Detector] = {}
        # Lazy zeros: a record's zero observations are not fed one by one. Each segment counts its records per
        # *signature* (the tuple of signals they carried); each stream remembers, per signature, how many of
        # those records it has accounted for, and takes the difference as zeros (``add_zeros``) when it next
        # sees a non-zero or is read. Per record this costs one counter per segment instead of one detector
        # call per segment and signal.
        self._clocks: dict[SegmentKey, dict[int, int]] = {}
        self._synced: dict[tuple[str, SegmentKey], dict[int, int]] = {}
        self._signatures: dict[tuple[tuple[str, str], ...], int] = {}
        self._members: list[tuple[tuple[str, str], ...]] = []
        self._owned: dict[SegmentKey, bool] = {}
        #: streams not created because ``max_streams`` was reached
        self.untracked = 0
        #: streams that have alarmed at least once (a detector restarts after its alarm; this keeps the fact)
        self.alarmed: set[tuple[str, SegmentKey]] = set()

    def __len__(self) -> int:
        return len(self._streams)

    @property
    def rate_threshold(self) -> float:
        """The alarm threshold of every rate stream (the family-wise bound of ``StatsConfig``)."""
        return self._rate_threshold

    def has_traffic(self, key: SegmentKey) -> bool:
        """Whether segment ``key`` (owned by this shard) has seen a record."""
        return key in self._clocks

    def owns(self, key: SegmentKey) -> bool:
        """Whether this shard owns segment ``key``."""
        owned = self._owned.get(key)
        if owned is None:
            owned = self._owned[key] = shard_of(key, self.n_shards) == self.shard
        return owned

    def streams(self) -> Iterator[tuple[str, SegmentKey]]:
        """Every (signal, segment key) this shard tracks."""
        return iter(list(self._streams))

    def detector(self, signal: str, key: SegmentKey) -> Detector | None:
        """The detector of one stream, brought up to date, or ``None`` when it has no traffic here."""
        sk = (signal, key)
        det = self._streams.get(sk)
        if det is not None:
            self._sync(sk, det)
        return det

    def _new(self, kind: str) -> Detector:
        if kind == "rate":
            return BernoulliCUSUM(threshold=self._rate_threshold, warmup=self.config.rate_warmup)
        if kind == "invariant":
            return BernoulliCUSUM(
                threshold=self._rate_threshold,
                baseline=self.config.invariant_rate,
                ratios=self.config.invariant_ratios,
            )
        return BernoulliCUSUM(threshold=self._rate_threshold, warmup=self.config.mean_warmup)

    def _sync(self, sk: tuple[str, SegmentKey], det: Detector) -> None:
        synced = self._synced[sk]
        clocks = self._clocks[sk[1]]
        missed = 0
        for sid, seen in synced.items():
            now = clocks[sid]
            if now != seen:
                missed += now - seen
                synced[sid] = now
        if missed:
            det.add_zeros(missed)

    def _signature(self, members: tuple[tuple[str, str], ...]) -> int:
        sid = self._signatures.get(members)
        if sid is None:
            sid = self._signatures[members] = len(self._members)
            self._members.append(members)
        return sid

    def _join(self, key: SegmentKey, sid: int) -> None:
        """First record of signature ``sid`` in segment ``key``: its streams start counting it."""
        self._clocks.setdefault(key, {})[sid] = 0
        for signal, kind in self._members[sid]:
            sk = (signal, key)
            if sk not in self._streams:
                if len(self._streams) >= self.config.max_streams:
                    self.untracked += 1
                    continue
                self._streams[sk] = self._new(kind)
                self._synced[sk] = {}
            self._synced[sk][sid] = 0

    def _fire(self, sk: tuple[str, SegmentKey], det: Detector, fired: list[Firing]) -> None:
        if det.drift_detected:
            self.alarmed.add(sk)
            est = det.estimate()
            if est is not None:
                fired.append(Firing(sk[0], sk[1], est))

    def update(self, signal: SignalValue, keys: Sequence[SegmentKey], t: float) -> list[Firing]:
        """Feed one *extra* observation of one signal (not part of a record: e.g. a feedback event) to the
        existing streams of ``keys`` this shard owns; return the alarms."""
        fired: list[Firing] = []
        for key in keys:
            sk = (signal.signal, key)
            det = self._streams.get(sk)
            if det is None:
                continue
            self._sync(sk, det)
            det.update(signal.value, t)
            self._fire(sk, det, fired)
        return fired

    def observe(self, values: SegmentKey, signals: Sequence[SignalValue], t: float) -> list[Firing]:
        """Feed one record's signals (its finest segment ``values``) to every owned stream; return the alarms."""
        keys = self.lattice.keys(values)
        score_order = self.config.score_max_order
        full = self._signature(tuple((s.signal, s.kind) for s in signals))
        rates = self._signature(tuple((s.signal, s.kind) for s in signals if s.kind != "mean"))
        nonzero = [s for s in signals if s.value != 0.0]
        fired: list[Firing] = []
        streams, synced_all, clocks_all = self._streams, self._synced, self._clocks
        sharded = self.n_shards > 1
        for key, order in zip(keys, self._mask_orders, strict=True):
            if sharded and not self.owns(key):
                continue
            scores = order <= score_order
            sid = full if scores else rates
            clocks = clocks_all.get(key)
            if clocks is None or sid not in clocks:
                self._join(key, sid)
                clocks = clocks_all[key]
            for sig in nonzero:
                if sig.kind == "mean" and not scores:
                    continue
                sk = (sig.signal, key)
                det = streams.get(sk)
                if det is None:
                    continue
                self._sync(sk, det)
                det.update(sig.value, t)
                synced_all[sk][sid] += 1
                self._fire(sk, det, fired)
            clocks[sid] += 1
        return fired
