"""The statistics bank: one sequential test per (signal, segment) stream that a shard owns.

See ``parity.monitor.detection.segments`` for the signals a record carries and ``parity.monitor.detection.lattice`` for
the segments. Each stream runs a :class:`~parity.stats.sequential.BernoulliCUSUM`: ``"rate"`` signals (0/1, baseline
learned), ``"invariant"`` ones (0/1, baseline fixed at :attr:`StatsConfig.invariant_rate`) and ``"mean"`` ones (a score
in [0, 1], watched for an increase by the same bank, valid for bounded means, see ``parity.stats.sequential``).

**Cost per record.** Most observations are zeros, which only decay a CUSUM; they are never fed one by one (see
:class:`SegmentStatistics`). Per record the bank pays one counter per segment with at most ``score_max_order``
fixed dimensions (the few that also watch scores, updated on every record) and one counter per *finest segment*
for the rest: the counts of the finer segments are kept per (finest segment, signature) and folded into the
segments' clocks only when one of their streams is read or sees a non-zero. :meth:`SegmentStatistics.observe_batch`
feeds a batch of records at once and stops at the first record that alarms, so that the caller handles its alarms
before the next record, exactly as record by record.

**The compiled banks' batch path** (:meth:`SegmentStatistics.feed`, numba installed): every stream is a row of the
compiled bank of its kind (scores, rates, and invariants with their fixed baseline) that counts its own zeros, and a
run of records is one kernel call over all its updates, zero or not; only new (finest segment, signals) pairs and
alarms go through the interpreter. The same zeros in the same chunks, so the same state to the bit, as the object
bank (``tests/monitor/test_segments_batch.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from parity._exceptions import InvalidInputError
from parity.monitor._records import SEGMENT_DIMENSIONS
from parity.monitor.detection._score_bank import COMPILED, KINDS, PlanTable, ScoreBank, ScoreStream
from parity.monitor.detection._score_bank import feed as feed_banks
from parity.monitor.detection.lattice import KEY_CACHE_SIZE, SegmentKey, SegmentLattice, shard_of
from parity.monitor.detection.signals import Members, SignalValue
from parity.stats.sequential import BernoulliCUSUM, ChangeEstimate, cusum_threshold

__all__ = ["Firing", "Members", "SegmentStatistics", "SignalValue", "StatsConfig"]

#: Plans (finest segment x signals) kept before the cache is cleared (``SegmentStatistics._plan_of``).
PLAN_CACHE_SIZE = 4 * KEY_CACHE_SIZE


@dataclass(frozen=True, slots=True)
class StatsConfig:
    """Settings of the per-segment statistics.

    ``alpha`` is the family-wise false-alarm probability over ``horizon`` observations per stream, split
    (Bonferroni) across ``max_streams`` streams and each test's alternatives; streams beyond ``max_streams``
    are not tracked (counted in ``SegmentStatistics.untracked``). ``warmup`` is the number of baseline
    observations a stream needs before it may alarm. ``invariant_rate`` is the known baseline of invariant signals
    (a routing rule a correct fleet never breaks: at most one violation in 100,000 requests by default) and
    ``invariant_ratios`` their post-change alternatives: up to 10,000x, so that on a segment the violation itself
    defines (short requests on the long pool, where every request is one) three violations cross a threshold of
    27, the production one, while on a busy segment a 1% share still alarms within a few violations.
    """

    dimensions: tuple[str, ...] = SEGMENT_DIMENSIONS
    max_order: int | None = None
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
    """A stream's sequential test alarmed: the signal, the segment key and the test's change estimate."""

    signal: str
    key: SegmentKey
    estimate: ChangeEstimate


#: A stream's sequential test: an object, or a row of the compiled score bank (the score streams, numba installed)
SequentialTest = BernoulliCUSUM | ScoreStream


class _Plan:
    """What one (finest segment, signals) pair feeds: its owned segments (those that watch scores, then the rest),
    its signatures, and - once it has joined its segments - the streams of its updates, in the object path's order
    (each segment that watches scores with every signal, then each other segment with the rate signals): their keys
    (``sks``), and row ``index`` of ``SegmentStatistics._table`` (``_score_bank.PlanTable``: their bank rows, by
    signal)."""

    __slots__ = ("full", "high", "index", "joined", "low", "members", "pk", "rate_pos", "sks")

    def __init__(
        self, values: SegmentKey, members: Members, full: int, rates: int, low: list[SegmentKey], high: list[SegmentKey]
    ) -> None:
        self.members = members
        self.full = full
        self.low = low
        self.high = high
        self.pk = (values, full, rates)
        self.rate_pos = tuple(p for p, (_, kind) in enumerate(members) if kind != "mean")
        self.sks: list[tuple[str, SegmentKey]] = []
        self.index = -1
        self.joined = False


class SegmentStatistics:
    """The (signal, segment) streams one shard owns, each with its own sequential test.

    >>> from datetime import datetime, timezone
    >>> from parity.monitor import DetectorObservation, Record
    >>> from parity.monitor.detection.segments import record_signals
    >>> stats = SegmentStatistics(StatsConfig(dimensions=("model", "platform")))
    >>> r = Record(record_id="r", time=datetime(2025, 8, 5, tzinfo=timezone.utc), model="S", platform="tpu",
    ...            observations=(DetectorObservation("unexpected_script", False, 0.1),))
    >>> stats.observe(stats.lattice.values_of(r), record_signals(r), t=0.0)
    []
    >>> len(stats), sorted({s for s, _ in stats.streams()})
    (11, ['feedback', 'unexpected_script', 'unexpected_script.score'])
    >>> stats.observe_batch([(stats.lattice.values_of(r), record_signals(r), 1.0)] * 3)
    (3, [])
    >>> stats.sequential_test("unexpected_script", ("S", "tpu")).n
    4
    """

    def __init__(
        self, config: StatsConfig | None = None, *, shard: int = 0, n_shards: int = 1, compiled: bool | None = None
    ) -> None:
        self.config = config or StatsConfig()
        if n_shards < 1:
            raise InvalidInputError("n_shards", "must be >= 1", n_shards)
        if not 0 <= shard < n_shards:
            raise InvalidInputError("shard", f"must be in [0, {n_shards})", shard)
        self.shard = shard
        self.n_shards = n_shards
        self.lattice = SegmentLattice(self.config.dimensions, self.config.max_order)
        self._mask_orders = [sum(m) for m in self.lattice.masks]
        self._rate_threshold = self.config.threshold or cusum_threshold(
            alpha=self.config.alpha,
            horizon=self.config.horizon,
            n_streams=self.config.max_streams,
            n_alternatives=max(len(BernoulliCUSUM(threshold=1.0).ratios), len(self.config.invariant_ratios)),
        )
        self._streams: dict[tuple[str, SegmentKey], SequentialTest] = {}
        #: the streams' compiled banks, one per kind (``KINDS``: score, rate, invariant; see
        #: ``parity.monitor.detection._score_bank``), ``None``: one object per stream (``compiled=False``, or numba not
        #: installed); the same results either way
        self._banks: tuple[ScoreBank, ScoreBank, ScoreBank] | None = None
        if COMPILED if compiled is None else compiled and COMPILED:
            self._banks = self._new_banks()
        # Lazy zeros: a record's zero observations are not fed one by one. Each segment counts its records per
        # *signature* (the tuple of signals they carried); each stream remembers, per signature, how many of
        # those records it has accounted for, and takes the difference as zeros (``add_zeros``) when it next
        # sees a non-zero or is read. Per record this costs one counter per segment instead of one sequential test
        # call per segment and signal.
        self._clocks: dict[SegmentKey, dict[int, int]] = {}
        self._synced: dict[tuple[str, SegmentKey], dict[int, int]] = {}
        self._signatures: dict[tuple[tuple[str, str], ...], int] = {}
        self._members: list[tuple[tuple[str, str], ...]] = []
        self._owned: dict[SegmentKey, bool] = {}
        #: streams not created because ``max_streams`` was reached
        self.untracked = 0
        #: streams that have alarmed at least once (a stream's test restarts after its alarm; this keeps the fact)
        self.alarmed: set[tuple[str, SegmentKey]] = set()
        self._init_fast()

    # -- the fast path's bookkeeping (derived, rebuilt after unpickling) ---------------------------------------

    def _init_fast(self) -> None:
        # Deferred clocks: the segments with more than ``score_max_order`` fixed dimensions see a non-zero only
        # when a rate signal fires (rare), so their clocks are not ticked record by record: ``_pending`` counts
        # records per (finest segment, signature) and :meth:`_fold` adds the counts to every such segment's clock
        # before any of their streams is synced or read. Same clocks at every sync, so the same zeros, in the same
        # chunks, as ticking them one by one.
        self._pending: dict[tuple[SegmentKey, int], int] = {}
        self._joined: set[tuple[SegmentKey, int]] = set()  # (finest, signature) whose fine segments are joined
        self._split: dict[SegmentKey, tuple[list[SegmentKey], list[SegmentKey]]] = {}
        self._sig_cache: dict[tuple[tuple[str, str], ...], tuple[int, int]] = {}
        self._prototypes: dict[str, BernoulliCUSUM] = {}
        # The compiled bank's batch path (:meth:`feed`): one plan per (finest segment, signals), the bank rows of
        # each plan's score updates as one table, and the record counts of every segment deferred per plan.
        self._init_plans()

    def _new_banks(self) -> tuple[ScoreBank, ScoreBank, ScoreBank]:
        """The compiled banks, one per kind (``KINDS``), with the tests :meth:`_new` gives the object bank."""
        threshold = self._rate_threshold
        return (
            ScoreBank(threshold=threshold, warmup=self.config.mean_warmup, kind=0),
            ScoreBank(threshold=threshold, warmup=self.config.rate_warmup, kind=1),
            ScoreBank(
                threshold=threshold,
                warmup=1,
                ratios=self.config.invariant_ratios,
                baseline=self.config.invariant_rate,
                kind=2,
            ),
        )

    def __getstate__(self) -> dict[str, Any]:
        """The learned state (pending counts folded in; the fast path's caches are rebuilt on load)."""
        self._fold()
        skip = {"_pending", "_joined", "_split", "_sig_cache", "_plans", "_table", "_prototypes"}
        return {k: v for k, v in self.__dict__.items() if k not in skip}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        old_scores = state.pop("_scores", None)
        self.__dict__.update(state)
        if "_banks" not in state:  # a checkpoint from before the banks of every kind (see :meth:`_adopt_objects`)
            self._banks = None
            if old_scores is not None:
                banks = self._new_banks()
                self._banks = (old_scores, banks[1], banks[2])
        self._init_fast()
        if self._banks is not None:
            self._adopt_objects()

    def _adopt_objects(self) -> None:
        """A checkpoint from before the compiled banks kept every kind (rate and invariant streams were
        ``BernoulliCUSUM`` objects), or before the score streams counted their own zeros (their zeros were the
        segments' clocks): each stream becomes a row of its kind's bank holding its state, with the zeros its
        clocks hold for it still pending - the same state, so it goes on as the old code would."""
        assert self._banks is not None
        kinds = {signal: kind for members in self._members for signal, kind in members}
        for sk, det in list(self._streams.items()):
            synced = self._synced.pop(sk, None)
            missed = 0
            if synced is not None:
                clocks = self._clocks[sk[1]]
                missed = sum(clocks[sid] - seen for sid, seen in synced.items())
            if isinstance(det, ScoreStream):
                det.bank.pend[det.row] += missed
            else:
                bank = self._banks[KINDS.index(kinds.get(sk[0], "rate"))]
                self._streams[sk] = bank.adopt(det, missed)

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

    def sequential_test(self, signal: str, key: SegmentKey) -> SequentialTest | None:
        """The sequential test of one stream, brought up to date, or ``None`` when it has no traffic here."""
        sk = (signal, key)
        det = self._streams.get(sk)
        if det is not None:
            if self._pending:
                self._fold()
            self._sync(sk, det)
        return det

    def _new(self, kind: str) -> SequentialTest:
        if self._banks is not None:
            return self._banks[KINDS.index(kind)].new()
        # A fresh test is a copy of a prototype of its kind: the same state as constructing it (its lists copied),
        # without recomputing the thresholds and log-likelihood steps for each of the thousands of new streams.
        proto = self._prototypes.get(kind)
        if proto is None:
            if kind == "rate":
                proto = BernoulliCUSUM(threshold=self._rate_threshold, warmup=self.config.rate_warmup)
            elif kind == "invariant":
                proto = BernoulliCUSUM(
                    threshold=self._rate_threshold,
                    baseline=self.config.invariant_rate,
                    ratios=self.config.invariant_ratios,
                )
            else:
                proto = BernoulliCUSUM(threshold=self._rate_threshold, warmup=self.config.mean_warmup)
            self._prototypes[kind] = proto
        det = object.__new__(BernoulliCUSUM)
        det.__dict__.update({k: v.copy() if type(v) is list else v for k, v in proto.__dict__.items()})
        return det

    def _sync(self, sk: tuple[str, SegmentKey], det: SequentialTest) -> None:
        if type(det) is ScoreStream:  # the compiled bank counts its rows' zeros itself
            if det.bank.pend.item(det.row):
                det.bank.flush(det.row)
            return
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

    def _sids(self, signals: Sequence[SignalValue]) -> tuple[int, int]:
        """The signatures of a record's signals: all of them, and the rate/invariant ones only."""
        return self._sids_of(tuple((s.signal, s.kind) for s in signals))

    def _sids_of(self, full_members: Members) -> tuple[int, int]:
        sids = self._sig_cache.get(full_members)
        if sids is None:
            full = self._signature(full_members)
            rates = self._signature(tuple(m for m in full_members if m[1] != "mean"))
            sids = self._sig_cache[full_members] = (full, rates)
        return sids

    def _keys_of(self, values: SegmentKey) -> tuple[list[SegmentKey], list[SegmentKey]]:
        """The owned keys of finest segment ``values``, lattice order: those that watch scores, then the rest."""
        split = self._split.get(values)
        if split is None:
            if len(self._split) >= KEY_CACHE_SIZE:
                self._fold()
                self._split.clear()
                self._joined.clear()
            low: list[SegmentKey] = []
            high: list[SegmentKey] = []
            score_order = self.config.score_max_order
            for key, order in zip(self.lattice.keys(values), self._mask_orders, strict=True):
                if self.n_shards > 1 and not self.owns(key):
                    continue
                (low if order <= score_order else high).append(key)
            split = self._split[values] = (low, high)
        return split

    def _fold(self) -> None:
        """Add the deferred record counts to the clocks of the fine segments (see :meth:`_init_fast`; the object
        bank's: the compiled banks' rows count their own zeros)."""
        clocks_all = self._clocks
        if self._pending:
            pending, self._pending = self._pending, {}
            for (values, sid), count in pending.items():
                for key in self._keys_of(values)[1]:
                    clocks_all[key][sid] += count

    def _join(self, key: SegmentKey, sid: int) -> None:
        """First record of signature ``sid`` in segment ``key``: its streams start counting it."""
        self._clocks.setdefault(key, {})[sid] = 0
        for signal, kind in self._members[sid]:
            sk = (signal, key)
            det = self._streams.get(sk)
            if det is None:
                if len(self._streams) >= self.config.max_streams:
                    self.untracked += 1
                    continue
                det = self._streams[sk] = self._new(kind)
                if type(det) is ScoreStream:  # its zeros are counted in the bank (see :meth:`feed`)
                    continue
                self._synced[sk] = {}
            elif type(det) is ScoreStream:
                continue
            self._synced[sk][sid] = 0

    def _fire(self, sk: tuple[str, SegmentKey], det: SequentialTest, fired: list[Firing]) -> None:
        if det.drift_detected:
            self.alarmed.add(sk)
            est = det.estimate()
            if est is not None:
                fired.append(Firing(sk[0], sk[1], est))

    def update(self, signal: SignalValue, keys: Sequence[SegmentKey], t: float) -> list[Firing]:
        """Feed one *extra* observation of one signal (not part of a record: e.g. a feedback event) to the
        existing streams of ``keys`` this shard owns; return the alarms."""
        self._fold()
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

    @property
    def compiled(self) -> bool:
        """Whether the streams are rows of the compiled banks (then :meth:`feed` takes batches)."""
        return self._banks is not None

    def observe(self, values: SegmentKey, signals: Sequence[SignalValue], t: float) -> list[Firing]:
        """Feed one record's signals (its finest segment ``values``) to every owned stream; return the alarms."""
        if self._banks is not None:
            members = tuple((s.signal, s.kind) for s in signals)
            return self.feed([(values, members, tuple(s.value for s in signals), t)])[1]
        fired: list[Firing] = []
        self._observe(values, signals, t, fired)
        return fired

    # -- the compiled bank's batch path --------------------------------------------------------------------------

    def _plan_of(self, values: SegmentKey, members: Members) -> _Plan:
        plan = self._plans.get((values, members))
        if plan is None:
            full, rates = self._sids_of(members)
            low, high = self._keys_of(values)
            plan = self._plans[(values, members)] = _Plan(values, members, full, rates, low, high)
        return plan

    def _join_plan(self, plan: _Plan) -> None:
        """A plan's first record: its segments' streams start counting its signatures (in the object path's order:
        the segments that watch scores, then the rest), and its streams' rows go to the plan table."""
        clocks_all = self._clocks
        full, rates = plan.pk[1], plan.pk[2]
        for key in plan.low:
            clocks = clocks_all.get(key)
            if clocks is None or full not in clocks:
                self._join(key, full)
        for key in plan.high:
            clocks = clocks_all.get(key)
            if clocks is None or rates not in clocks:
                self._join(key, rates)
        streams, members = self._streams, plan.members
        updates: list[tuple[int, int, int, int]] = []  # (position of the signal, kind, bank row, order)
        sks: list[tuple[str, SegmentKey]] = []
        for keys, positions in ((plan.low, range(len(members))), (plan.high, plan.rate_pos)):
            for key in keys:
                for p in positions:
                    sk = (members[p][0], key)
                    det = streams.get(sk)
                    if type(det) is ScoreStream:  # else: not tracked (``max_streams``)
                        updates.append((p, det.bank.kind, det.row, len(sks)))
                        sks.append(sk)
        updates.sort(key=lambda u: u[0])  # by signal (stable: each signal's segments in order)
        plan.index = self._table.add(updates)
        plan.sks = sks
        plan.joined = True

    def feed(self, items: Sequence[tuple[SegmentKey, Members, tuple[float, ...], float]]) -> tuple[int, list[Firing]]:
        """Feed records ``(values, members, values of the members, t)`` in order until one alarms; return how many
        were fed (that one included) and its alarms, as :meth:`observe` record by record would (the compiled banks
        only; :meth:`observe_batch` otherwise).

        The records go in runs: a run ends before the first record of a new (finest segment, signals) pair (whose
        streams must join the plan table first). A run's updates - every signal's value, zero or not, on every
        stream of its plan - go to the banks in one kernel call (``_score_bank.feed``), which stops at the first
        record that alarms. The zeros, in the same chunks, and the alarms, in the same order (segment, then
        signal), as the object bank."""
        banks = self._banks
        if banks is None:
            raise InvalidInputError("feed", "needs the compiled banks (numba); use observe_batch")
        if len(self._plans) >= PLAN_CACHE_SIZE:
            self._init_plans()
        n = len(items)
        pos = 0
        plans_of = self._plans
        while pos < n:
            values, members, vals, t = items[pos]
            plan = plans_of.get((values, members)) or self._plan_of(values, members)
            if not plan.joined:
                self._join_plan(plan)
            plans: list[_Plan] = [plan]
            xs: list[float] = list(vals)
            offsets: list[int] = [0]
            ts: list[float] = [t]
            end = pos + 1
            while end < n:
                values, members, vals, t = items[end]
                plan = plans_of.get((values, members)) or self._plan_of(values, members)
                if not plan.joined:
                    break
                plans.append(plan)
                offsets.append(len(xs))
                xs.extend(vals)
                ts.append(t)
                end += 1
            m = end - pos
            table = self._table
            r, hits = feed_banks(
                banks,
                table,
                np.array([q.index for q in plans], dtype=np.int64),
                np.array(xs, dtype=np.float64) if xs else np.zeros(1),
                np.array(offsets, dtype=np.int64),
                np.array(ts, dtype=np.float64),
                m,
            )
            if hits:
                fired: list[Firing] = []
                streams, sks = self._streams, plans[r].sks
                for j in sorted(table.out[:hits].tolist()):  # the object path's order: segment, then signal
                    sk = sks[j]
                    self._fire(sk, streams[sk], fired)
                return pos + r + 1, fired
            pos = end
        return n, []

    def _init_plans(self) -> None:
        self._plans: dict[tuple[SegmentKey, Members], _Plan] = {}
        self._table = PlanTable()

    def observe_batch(
        self, items: Iterable[tuple[SegmentKey, Sequence[SignalValue], float]]
    ) -> tuple[int, list[Firing]]:
        """Feed records ``(values, signals, t)`` in order until one alarms; return how many were fed (that one
        included) and its alarms. The caller handles the alarms (localisation reads other streams as they stand
        after that record) and calls again with the rest, or with the same iterator: the result is the same as
        :meth:`observe` record by record."""
        n = 0
        observe = self.observe
        for values, signals, t in items:
            n += 1
            fired = observe(values, signals, t)
            if fired:
                return n, fired
        return n, []

    def _observe(self, values: SegmentKey, signals: Sequence[SignalValue], t: float, fired: list[Firing]) -> None:
        low, high = self._keys_of(values)
        full, rates = self._sids(signals)
        nonzero = [s for s in signals if s.value != 0.0]
        streams, synced_all, clocks_all = self._streams, self._synced, self._clocks
        fire = self._fire
        # the object bank (the compiled one takes its records through :meth:`feed`)
        # the segments that watch scores: every non-zero, clocks ticked now (they see a score on most records)
        for key in low:
            clocks = clocks_all.get(key)
            if clocks is None or full not in clocks:
                self._join(key, full)
                clocks = clocks_all[key]
            for sig in nonzero:
                sk = (sig.signal, key)
                det = streams.get(sk)
                if det is None:
                    continue
                synced = synced_all[sk]
                missed = 0
                for seen_sid, seen in synced.items():  # _sync, inline: the zeros since this stream last moved
                    now = clocks[seen_sid]
                    if now != seen:
                        missed += now - seen
                        synced[seen_sid] = now
                if missed:
                    det.add_zeros(missed)
                det.update(sig.value, t)
                synced[full] += 1
                if det.drift_detected:
                    fire(sk, det, fired)
            clocks[full] += 1
        if not high:
            return
        pk = (values, rates)
        if pk not in self._joined:
            for key in high:
                clocks = clocks_all.get(key)
                if clocks is None or rates not in clocks:
                    self._join(key, rates)
            self._joined.add(pk)
        events = [s for s in nonzero if s.kind != "mean"]
        if not events:  # the usual record: one count for all its fine segments, folded in later
            self._pending[pk] = self._pending.get(pk, 0) + 1
            return
        self._fold()
        for key in high:
            clocks = clocks_all[key]
            for sig in events:
                sk = (sig.signal, key)
                det = streams.get(sk)
                if det is None:
                    continue
                synced = synced_all[sk]
                missed = 0
                for seen_sid, seen in synced.items():  # _sync, inline: the zeros since this stream last moved
                    now = clocks[seen_sid]
                    if now != seen:
                        missed += now - seen
                        synced[seen_sid] = now
                if missed:
                    det.add_zeros(missed)
                det.update(sig.value, t)
                synced[rates] += 1
                if det.drift_detected:
                    fire(sk, det, fired)
            clocks[rates] += 1
