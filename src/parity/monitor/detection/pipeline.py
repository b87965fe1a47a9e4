"""The monitor's statistics pipeline: records -> signals -> per-segment sequential tests -> alerts + attribution.

The order of operations for every record (:meth:`SegmentMonitor.observe`):

1. its signals are decided once (:meth:`SegmentMonitor.decide`, ``parity.monitor.detection.signals``: the detectors'
   flags and scores, the serving signals, and the routing audit's 0/1 per rule as ``routing.<rule>``), unless the
   record already carries them (a replay of stored records reads the stored values);
2. its signals update the sequential test of every (signal, segment) stream
   of the segment lattice that this shard owns;
3. each stream that alarms is *localised* (below), de-duplicated against the open alerts, attributed to the
   change log (``parity.monitor.detection.attribution``) and sent to the notifiers.

Feedback events (:meth:`SegmentMonitor.observe_feedback`) add a 1 to the ``feedback`` signal of the segments of
the response they refer to (remembered for the last ``max_tracked_responses`` responses).

**Which segment an alert names.** Marginals pool more traffic, so they usually alarm first. When a stream on
segment ``S`` alarms, the monitor looks for the most specific segment that explains the change:

- *climb*: while, along some dimension ``S`` fixes, every sibling of ``S`` with traffic is degraded too (or there is
  none), the change is not specific to that value: drop the dimension;
- *drill down*: while, along some dimension ``S`` leaves free, exactly one child of ``S`` is degraded and at least
  one other child with traffic is not, the change lives in that child: fix the dimension (the child with the
  largest statistic when several dimensions qualify).

"Degraded" means the child's CUSUM statistic is above ``evidence_threshold`` (default ``log 100``, i.e. locally
significant at 1% without the family-wise correction), or it has an open alert, or it is in the warm-up that
follows its own alarm (a stream's test restarts after alarming), or it is still in its first warm-up (a segment that
appeared with the change, like short requests on the long pool) and its mean is at least the alarm's post-change
level; a stream in its first warm-up otherwise counts as having no traffic. A dimension with a single value in
``S`` is never fixed: it adds no contrast. Then, for the same signal: if an open alert already names the target
segment or a refinement of it, the alarm is absorbed (no new alert); if open alerts name a coarser segment that
contains the target, they are marked ``superseded`` and re-sent, and the new, more specific alert replaces them.
An alarm the localisation could not drill into (a mean score has no stream on ``pool=short`` *and* ``model=O``)
is also absorbed by an open alert of its signal on an intersecting segment when, along the dimensions that alert
fixes, no other value is degraded on its own marginal: the one fault's score rose on the pool it runs in.

**A second fault inside an open alert.** Absorption assumes the open alert's fault explains the alarm. When the
localisation climbed out of a refinement into the segment of the open alerts that would absorb it (model H's alarm
climbs to ``platform=tpu`` because models S and O on tpu are degraded too), that refinement is checked against each
of them: if an alert's excess is explained by another part of its segment, one the refinement has no traffic in -
its best-ranked changes all name another value (the corruption of models S and O), or, with nothing attributed, the
alert would drill into a part without the refinement's traffic (model S, or S's config version) - the refinement is
a second fault - unless another open alert sharing its traffic can explain it (the sampler's own alert on its config
version absorbs model H on tpu). It gets one alert of its own, in an incident of its own, and the alerts it is apart
from are neither superseded nor joined; the same holds for any new alert next to an open alert sharing its traffic,
and no new alert joins the incident of an alert that another fault explains (the corruption's alert on
``model=S,platform=tpu`` and the sampler's on its config version intersect as segments, not as causes).
An alarm absorbed as explained by an intersecting alert (the rule above) is checked the same way, on its own
segment: the sampler's score alarm on ``model=H`` is not explained by the corruption's score alert on ``platform=tpu``.
Two faults nothing tells apart (changes of both scopes ranked alike, or every part degraded) stay one alert.

**Alarms the open incident's flagged records explain.** A new alarm of another signal family that no rule above
relates to an open alert joins that alert's incident when, on the new alarm's segment, over its evidence period
``[started_at, detected_at]``, the records its signal flagged are also flagged by the open alert's signal far more
often than that signal flags the segment's records at all: at least :data:`MIN_COFLAGGED` of them, and a binomial
tail probability under :data:`COFLAG_ALPHA` (one fault changing the same answers both ways; an unrelated fault's
flags fall on the open signal's flagged records at its base rate). A re-encoding platform's mojibake answers are
``degeneration`` flags, and the repeated greedy requests they answered disagree with the earlier, clean answers:
``greedy_disagreement`` on all traffic, half of whose flags are ``degeneration``'s (7 of 14 in the drill, against a
base rate near 0.1), is evidence of the re-encoding incident, not a second fault to notify. With a change log, an
alarm whose best-ranked change differs from the open alert's stays apart (its own change, its own alert). The
monitor keeps the flagged signals of its last :data:`RECENT_RECORDS` records for this.

**Worsening.** Once an alert is raised, its *level* is watched: the signal's rate on the alert's segment (or, when
the signal defines that segment - short requests on the long pool are all violations - on the parent with the most
traffic, where the rate is the share that matters). The first ``MonitorConfig.worsening_window`` observations after
the alert calibrate the level (an upper confidence bound, as for baselines); from then on a CUSUM with that level
as its *known* baseline and alternatives :data:`WORSENING_RATIOS` times it watches for a further rise. The watches
are their own family of tests, few next to the segment streams, so they get their own false-alarm budget: the
``k``-th watch this monitor starts spends ``alpha * 6 / (pi**2 k**2)`` of it (the sum over every ``k`` is
``alpha``, with no cap on how many alerts there may be), so its threshold is ``log(G * horizon / alpha_k)`` - about
13 for the first watch of the replay against 21 for a segment stream. Streams and watches together stay below
``2 * alpha``; with ``n_shards`` monitors each spends ``alpha / n_shards``. When it
alarms, a new alert is raised that ``worsens`` the old one (which becomes ``superseded``), attributed for its own
start: a second change on top of the first gets ranked on its own (the incident's load-balancing change of 08-29
took a 0.8% routing fault to 16% and was not tied to it for days).

>>> from datetime import datetime, timedelta, timezone
>>> import numpy as np
>>> from parity.monitor import DetectorObservation, Record
>>> from parity.monitor.alerting.alerts import MemoryNotifier
>>> rng = np.random.default_rng(3)
>>> memory = MemoryNotifier()
>>> mon = SegmentMonitor(config=MonitorConfig(stats=StatsConfig(dimensions=("model", "platform"), alpha=0.01,
...                                                               horizon=100_000, score_max_order=0)),
...                      notifiers=[memory])
>>> t0 = datetime(2025, 8, 25, tzinfo=timezone.utc)
>>> for i in range(40_000):
...     platform = ("gpu", "tpu")[i % 2]
...     bad = platform == "tpu" and i >= 20_000
...     flagged = bool(rng.random() < (0.05 if bad else 0.002))
...     rec = Record(record_id=f"r{i}", time=t0 + timedelta(seconds=i), model="S", platform=platform,
...                  observations=(DetectorObservation("unexpected_script", flagged, 0.0),))
...     if mon.observe(rec):
...         break
>>> alert = memory.alerts[-1]
>>> alert.signal, alert.segment, 20_000 <= i < 21_000
('unexpected_script', {'platform': 'tpu'}, True)
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from parity._exceptions import InvalidInputError
from parity.monitor._records import Alert, AttributedChange, Change, FeedbackEvent, Record
from parity.monitor.alerting.alerts import Notifier
from parity.monitor.detection.attribution import AttributionConfig, rank_changes, scope_values
from parity.monitor.detection.audit import AuditContext, RoutingAudit
from parity.monitor.detection.incidents import related, signal_family
from parity.monitor.detection.segments import (
    WILDCARD,
    Firing,
    SegmentKey,
    SegmentStatistics,
    StatsConfig,
    is_refinement,
    key_of,
    segment_dict,
    segment_label,
)
from parity.monitor.detection.signals import (
    DEFAULT_LONG_POOLS,
    FEEDBACK_SIGNAL,
    NEGATIVE_FEEDBACK,
    SESSION_ONCE,
    SESSION_WINDOW_S,
    Members,
    SignalStage,
    SignalValue,
)
from parity.stats.sequential import BernoulliCUSUM, ChangeEstimate, cusum_threshold

__all__ = [
    "COFLAG_ALPHA",
    "MIN_COFLAGGED",
    "NEGATIVE_FEEDBACK",
    "RECENT_RECORDS",
    "MonitorConfig",
    "SegmentMonitor",
    "changes_contradict",
    "coflag_tail",
]

#: Records whose flagged signals the monitor keeps, to test whether an open incident's flags explain a new alarm.
RECENT_RECORDS = 20_000
#: the most distinct finest segments whose key tuples the remembered responses share (beyond it, sharing restarts)
MAX_SHARED_SEGMENTS = 65_536
#: A new alarm joins an open incident whose signal co-flags its records with a binomial tail under this.
COFLAG_ALPHA = 0.01
#: ... and on at least this many of its flagged records.
MIN_COFLAGGED = 3

_NO_FLAGS: frozenset[str] = frozenset()


def coflag_tail(k: int, j: int, q: float) -> float:
    """The probability that at least ``j`` of ``k`` records carry a flag that each carries with probability ``q``
    independently (the binomial upper tail, in log space).

    >>> round(coflag_tail(14, 7, 0.1), 5), coflag_tail(10, 0, 0.3), coflag_tail(5, 6, 0.5)
    (0.00018, 1.0, 0.0)
    """
    if j <= 0:
        return 1.0
    if j > k:
        return 0.0
    if q <= 0.0:
        return 0.0
    if q >= 1.0:
        return 1.0
    lq, lp = math.log(q), math.log1p(-q)
    base = math.lgamma(k + 1)
    return min(
        1.0,
        sum(
            math.exp(base - math.lgamma(i + 1) - math.lgamma(k - i + 1) + i * lq + (k - i) * lp)
            for i in range(j, k + 1)
        ),
    )


#: A stream in its warm-up needs this many observations before its mean counts as evidence in localisation.
MIN_YOUNG = 5

#: The batch path's runs (:meth:`SegmentMonitor._observe_runs`): this many records after an alarm, doubling up to
#: ``MAX_RUN`` while none comes.
MIN_RUN = 16
MAX_RUN = 4096

#: Default local evidence for "degraded" during localisation: a CUSUM of log(100).
EVIDENCE_THRESHOLD = 4.605

#: Alternatives of the worsening watch, as multiples of the alert's calibrated level: 3x is the smallest rise
#: reported as a new development (the level is an upper confidence bound, so a steady fault stays below it), 12x is
#: within a factor of 2 of the incident's 20x escalation.
WORSENING_RATIOS: tuple[float, ...] = (3.0, 6.0, 12.0)

#: An alert's changes scored at least this share of its best one's are its best explanation (ties: two changes of
#: one fault, such as the corruption of models O and S, score alike); a refinement that none of them can have caused
#: is a second fault (see ``SegmentMonitor._second_fault``).
BEST_SHARE = 0.9

#: A segment where the signal's mean is at least this is one the signal defines (its rate says nothing); the
#: worsening watch then reads the level on a parent segment.
DEGENERATE_LEVEL = 0.9


@dataclass
class _Watch:
    """The worsening watch of one alert: calibration counts, then a known-baseline CUSUM on ``key``."""

    alert_id: str
    signal: str
    key: SegmentKey
    number: int  # k: this is the k-th watch the monitor started (its share of the watches' alpha)
    n: int = 0
    s: float = 0.0
    cusum: BernoulliCUSUM | None = None


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    """Settings of :class:`SegmentMonitor` (statistics, attribution, routing audit, sharding; ``session_once`` and
    ``session_window_s``: the signals whose flags count once per session per window, see
    :mod:`parity.monitor.detection.signals`)."""

    stats: StatsConfig = field(default_factory=StatsConfig)
    attribution: AttributionConfig = field(default_factory=AttributionConfig)
    routing_audit: bool = True
    long_pools: tuple[str, ...] = DEFAULT_LONG_POOLS
    sticky_min_run: int = 3
    evidence_threshold: float = EVIDENCE_THRESHOLD
    worsening_window: int = 1000
    versioned_dimensions: tuple[str, ...] = ("config_version",)
    max_tracked_responses: int = 200_000
    shard: int = 0
    n_shards: int = 1
    session_once: tuple[str, ...] = SESSION_ONCE
    session_window_s: float = SESSION_WINDOW_S

    def __post_init__(self) -> None:
        if not self.session_window_s > 0:
            raise InvalidInputError("session_window_s", "must be > 0 seconds", self.session_window_s)
        if not self.evidence_threshold > 0:
            raise InvalidInputError("evidence_threshold", "must be > 0", self.evidence_threshold)
        if self.worsening_window < 1:
            raise InvalidInputError("worsening_window", "must be >= 1", self.worsening_window)
        if self.max_tracked_responses < 0:
            raise InvalidInputError("max_tracked_responses", "must be >= 0", self.max_tracked_responses)


def changes_contradict(alert: Alert, changes: Mapping[str, Change], implied: Mapping[str, str]) -> bool:
    """The change log's answer to whether an alarm on a segment whose traffic implies ``implied`` (every dimension
    its traffic has one value on) is a fault of its own next to ``alert``, which has attributed changes (see
    ``SegmentMonitor._second_fault``): none of ``alert``'s best-ranked changes (scored at least :data:`BEST_SHARE` of
    the best), nor a change of ``changes`` that shipped the same config version, can have caused it - each one's
    scope names, on a dimension, a value ``implied`` does not have. One definition for one monitor and for the
    sharded monitor's coordinator, which asks it of alerts another worker raised.

    >>> from datetime import datetime, timezone
    >>> from parity.monitor._records import AttributedChange
    >>> t = datetime(2025, 8, 25, tzinfo=timezone.utc)
    >>> fix = Change("c-1", t, "release", scope={"model": "S"})
    >>> alert = Alert("a", "x", {"platform": "tpu"}, t, t, 0.1, 0.0, 0.1, 9, (AttributedChange("c-1", 1.0, ""),))
    >>> changes_contradict(alert, {"c-1": fix}, {"model": "H"}), changes_contradict(alert, {"c-1": fix}, {"model": "S"})
    (True, False)
    """
    top = alert.attributed_changes[0].score
    best = [changes.get(c.change_id) for c in alert.attributed_changes if c.score >= BEST_SHARE * top]
    if any(change is None for change in best):
        return False
    # one deploy is one cause: the changes that shipped the same config version (the corruption of models O
    # and S on tpu came with one runtime optimisation) explain the alert together
    versions = {c.params.get("config_version") for c in best if c is not None} - {None}
    cause = [*best, *(c for c in changes.values() if c.params.get("config_version") in versions)]
    return all(
        change is not None
        and any(dim in implied and implied[dim] not in scope_values(v) for dim, v in change.scope.items())
        for change in cause
    )


def _by_signal(signals: Sequence[SignalValue]) -> dict[str, float]:
    """A record's signal values by name, as the worsening watches read them (:meth:`SegmentMonitor._watch`)."""
    return {sig.signal: sig.value for sig in signals}


def _by_member(members: Members, vals: Sequence[float]) -> dict[str, float]:
    """The same from the batch path's inputs (:meth:`SignalStage.inputs`: each member's name first, its value)."""
    return {member[0]: value for member, value in zip(members, vals, strict=True)}


def _signal_stage(config: MonitorConfig, audit: RoutingAudit | None = None) -> SignalStage:
    return SignalStage(
        long_pools=config.long_pools,
        sticky_min_run=config.sticky_min_run,
        routing=config.routing_audit,
        audit=audit,
        # a configuration pickled before sessions counted once has neither field
        session_once=getattr(config, "session_once", SESSION_ONCE),
        session_window_s=getattr(config, "session_window_s", SESSION_WINDOW_S),
    )


def _ts(t: float | None, fallback: datetime) -> datetime:
    return fallback if t is None else datetime.fromtimestamp(t, UTC)


class SegmentMonitor:
    """Per-segment sequential detection with alert localisation, de-duplication and change attribution.

    ``notifiers`` receive every new alert and every update of one. ``clock`` (returning an aware ``datetime``)
    stamps ``detected_at``; by default the time of the record that triggered the alert is used, so replays of
    logs give the same alerts as live traffic. One instance is used by one thread; run one per shard
    (``config.shard`` of ``config.n_shards``) to spread the work.
    """

    def __init__(
        self,
        *,
        config: MonitorConfig | None = None,
        notifiers: Sequence[Notifier] = (),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config or MonitorConfig()
        self.notifiers = tuple(notifiers)
        self.clock = clock
        self.stats = SegmentStatistics(self.config.stats, shard=self.config.shard, n_shards=self.config.n_shards)
        self.dimensions = self.config.stats.dimensions
        #: decides each record's signals once (``parity.monitor.detection.signals``), with the routing audit configured
        # here
        self.signal_stage = _signal_stage(self.config)
        self._audit_ctx = AuditContext(is_alerting=self.is_alerting, segment_of=self._segment_of)
        self._alerts: dict[str, Alert] = {}
        self._keys: dict[str, SegmentKey] = {}
        self._watches: dict[str, _Watch] = {}  # open alert id -> its worsening watch
        self._watches_started = 0
        self._changes: dict[str, Change] = {}
        self._values: list[set[str]] = [set() for _ in self.dimensions]
        self._responses: OrderedDict[str, SegmentKey] = OrderedDict()
        #: one tuple per distinct finest segment, which the remembered responses and recent records share: each
        #: record's own tuple (of strings parsed from its request) cost ~85 B more per remembered response (measured)
        self._finest: dict[SegmentKey, SegmentKey] = {}
        #: the last records' (time, finest segment, flagged signals): what explains a new alarm (:meth:`_coflagged`)
        self._recent: deque[tuple[float, SegmentKey, frozenset[str]]] = deque(maxlen=RECENT_RECORDS)
        #: records observed, and alarms absorbed by an existing alert
        self.n_records = 0
        self.n_absorbed = 0
        #: the latest record time observed (a checkpoint's replay starts from it)
        self.newest_record_time: datetime | None = None

    #: open alerts of other faults while a new alert is raised (see :meth:`_new_alert_apart`); empty otherwise
    _apart: tuple[Alert, ...] = ()
    #: while one record's alarms are handled (:meth:`_raise`): each stream's :meth:`_degraded_unless_young`
    #: and each (open alert, segment)'s :meth:`_second_fault`
    #: and where each segment's localisation walks on to (:meth:`_localise`)
    _memo: dict[tuple[str, SegmentKey] | tuple[str, str, SegmentKey], Any] | None = None
    #: answers of streams in their first warm-up read so far (they depend on the alarm's level: :meth:`_degraded`)
    _young_reads = 0

    # -- state -----------------------------------------------------------------------------------------------

    #: Attributes that belong to this process, not to the statistics: never part of a checkpoint.
    _PROCESS_LOCAL = ("notifiers", "clock", "_audit_ctx", "_finest")

    def __getstate__(self) -> dict[str, Any]:
        """Everything the statistics learned (streams, baselines, open alerts and their watches, the change log,
        remembered responses), without the notifiers, the clock or the audit's callbacks (see
        :mod:`parity.monitor.detection.checkpoint`)."""
        return {k: v for k, v in self.__dict__.items() if k not in self._PROCESS_LOCAL}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "signal_stage" not in state:  # a checkpoint taken before the signal stage existed held the audit itself
            self.signal_stage = _signal_stage(self.config, state.pop("audit", None))
            self.__dict__.pop("audit", None)
        if "_recent" not in state:  # a checkpoint from before incidents read co-flagged records
            self._recent = deque(maxlen=RECENT_RECORDS)
        self.notifiers = ()
        self.clock = None
        self._finest = {}
        self._audit_ctx = AuditContext(is_alerting=self.is_alerting, segment_of=self._segment_of)

    def adopt_state(self, other: SegmentMonitor) -> None:
        """Take over ``other``'s learned state (a checkpoint's), keeping this monitor's notifiers and clock.

        ``other.config`` must equal this monitor's: thresholds, lattice and shard all derive from it, so a state
        learned under another configuration would be judged by the wrong rules.
        """
        if other.config != self.config:
            raise InvalidInputError("state", "was learned under another monitor configuration", detail="start fresh")
        self.__dict__.update(other.__getstate__())
        self._audit_ctx = AuditContext(is_alerting=self.is_alerting, segment_of=self._segment_of)

    def remembers(self, record_id: str) -> bool:
        """Whether this monitor has observed ``record_id`` among its last ``max_tracked_responses`` records."""
        return record_id in self._responses

    # -- reading ---------------------------------------------------------------------------------------------

    @property
    def alerts(self) -> list[Alert]:
        """Every alert raised so far (open and superseded), oldest first."""
        return sorted(self._alerts.values(), key=lambda a: a.detected_at)

    @property
    def open_alerts(self) -> list[Alert]:
        """Alerts with status ``open``."""
        return [a for a in self.alerts if a.status == "open"]

    @property
    def changes(self) -> list[Change]:
        """The change log known to the monitor, by time."""
        return sorted(self._changes.values(), key=lambda c: c.time)

    @property
    def audit(self) -> RoutingAudit | None:
        """The routing audit (its rules and violation counts), ``None`` when ``config.routing_audit`` is off."""
        return self.signal_stage.audit

    def _segment_of(self, record: Record) -> dict[str, str]:
        return dict(zip(self.dimensions, self.stats.lattice.values_of(record), strict=True))

    def is_alerting(self, segment: dict[str, str]) -> bool:
        """Whether an open alert names ``segment`` or a marginal containing it."""
        key = key_of(segment, self.dimensions) if set(segment) <= set(self.dimensions) else None
        if key is None:
            key = tuple(segment.get(d, WILDCARD) for d in self.dimensions)
        return any(a.status == "open" and is_refinement(key, self._keys[a.alert_id]) for a in self._alerts.values())

    # -- writing ---------------------------------------------------------------------------------------------

    def decide(self, record: Record) -> Record:
        """``record`` with its signals decided (:meth:`parity.monitor.detection.signals.SignalStage.decide`, the routing
        audit asking this monitor which segments alert); a record that carries signals is returned as it is. Call it
        once
        per record, before :meth:`observe` (which then reads the decided signals): the audit keeps state."""
        return self.signal_stage.decide(record, self._audit_ctx)

    def observe(self, record: Record) -> list[Alert]:
        """Process one record (its stored signals when it carries them, else decided now); return the alerts it
        raised, each preceded by the alerts it supersedes (status ``superseded``), so a caller that writes the
        returned alerts to a store (insert or replace by id) keeps the store in step."""
        values, signals, t, _ = self._prepare(record)
        fired = self.stats.observe(values, signals, t)
        out = self._raise(fired, record.time)
        if self._watches:
            out.extend(self._watch(values, _by_signal(signals), t, record.time))
        return out

    def observe_batch(self, records: Iterable[Record], decided: list[Record] | None = None) -> list[Alert]:
        """Process records in order; return the alerts they raised, as :meth:`observe` would one by one (the
        same alerts, in the same order: a test proves it on the replay). Each record's signals are decided in
        turn (:meth:`decide`), after every earlier record's alerts; the decided records are appended to
        ``decided`` when it is given (the worker stores those).

        The statistics bank takes the batch in one call (:meth:`SegmentStatistics.observe_batch`) and hands it
        back at the first record that alarms; that record's alarms are handled, then the bank goes on. Each
        record's audit runs only when the bank asks for it, after every earlier record's alerts and worsening
        watches, so it sees the alerts as record by record.
        """
        if type(self.stats) is SegmentStatistics and self.stats.compiled:
            return self._observe_runs(list(records), decided)
        out: list[Alert] = []
        last: list[tuple[SegmentKey, list[SignalValue], float, datetime]] = []

        def watch(values: SegmentKey, signals: list[SignalValue], t: float, when: datetime) -> list[Alert]:
            return self._watch(values, _by_signal(signals), t, when)

        def items() -> Iterator[tuple[SegmentKey, list[SignalValue], float]]:
            for record in records:
                if last:  # the previous record's worsening watches, after its alarms, before this record's audit
                    prev = last.pop()
                    if self._watches:
                        out.extend(watch(*prev))
                values, signals, t, record = self._prepare(record)
                if decided is not None:
                    decided.append(record)
                last.append((values, signals, t, record.time))
                yield values, signals, t
            if last:
                prev = last.pop()
                if self._watches:
                    out.extend(watch(*prev))

        feed = items()
        while True:
            n, fired = self.stats.observe_batch(feed)
            if not n:
                return out
            if fired:
                out.extend(self._raise(fired, last[-1][3]))

    def _observe_runs(self, records: list[Record], decided: list[Record] | None) -> list[Alert]:
        """:meth:`observe_batch` on the compiled bank: the records go to :meth:`SegmentStatistics.feed` in runs,
        each ended by the first record that alarms, or one an open worsening watch might alarm on (a record of its
        segment that carries its signal non-zero), or - when the routing signals
        the statistics read need the monitor (:attr:`SignalStage.context_free` false) - one not decided yet.
        The records a run fed are then counted and decided in order, and their watches fed, before the alarms of
        its last record are handled: deciding reads only the alerts, which change only at that last record, and
        the watches of the earlier ones cannot alarm, so nothing reads the statistics before the alarms, exactly
        as record by record."""
        out: list[Alert] = []
        stage = self.signal_stage
        pure = stage.context_free
        values_of = self.stats.lattice.values_of
        prepared: list[tuple[SegmentKey, Members, tuple[float, ...], float] | None] = [None] * len(records)
        n = len(records)
        pos = 0
        # A run prepared past the record that alarms is prepared again from the next one: runs start short after an
        # alarm and double while none comes, so a batch full of alarms is not prepared over and over.
        cap = MIN_RUN
        while pos < n:
            run: list[tuple[SegmentKey, Members, tuple[float, ...], float]] = []
            j = pos
            while j < n and j - pos < cap:
                item = prepared[j]
                if item is None:
                    record = records[j]
                    signals = stage.statistics_signals(record) if pure or record.signals is not None else None
                    if signals is None:
                        if j > pos:
                            break  # decided only after the alarms before it
                        record = records[j] = self.decide(record)
                        signals = record.signals
                    members, vals = stage.inputs(record, signals)
                    item = prepared[j] = (values_of(record), members, vals, record.time.timestamp())
                run.append(item)
                j += 1
                if self._watches and self._may_worsen(item):
                    break
            fed, fired = self.stats.feed(run)
            cap = MIN_RUN if fired else min(2 * cap, MAX_RUN)
            last = pos + fed - 1
            for k in range(pos, last + 1):
                values, members, vals, t = run[k - pos]
                record = self.decide(records[k])
                self._count(record, values)
                if decided is not None:
                    decided.append(record)
                if k < last and self._watches:
                    out.extend(self._watch(values, _by_member(members, vals), t, record.time))
            if fired:
                out.extend(self._raise(fired, records[last].time))
            if self._watches:
                values, members, vals, t = run[fed - 1]
                when = records[last].time
                out.extend(self._watch(values, _by_member(members, vals), t, when))
            pos = last + 1
        return out

    def _may_worsen(self, item: tuple[SegmentKey, Members, tuple[float, ...], float]) -> bool:
        """Whether an open worsening watch might alarm on this record (see :meth:`_observe_runs`): it is in the
        watch's segment and carries its signal non-zero (a zero never raises a CUSUM's alarm, nor ends a watch's
        calibration with one)."""
        values, members, vals, _ = item
        for watch in self._watches.values():
            for (name, _kind), value in zip(members, vals, strict=True):
                if name == watch.signal:
                    if value != 0.0 and is_refinement(values, watch.key):
                        return True
                    break
        return False

    def _count(self, record: Record, values: SegmentKey) -> None:
        """Count one record: its time, its segment's values (localisation reads them), its response id."""
        self.n_records += 1
        finest = self._finest
        shared = finest.get(values)
        if shared is None:
            if len(finest) >= MAX_SHARED_SEGMENTS:  # a flood of distinct segments: start sharing afresh
                finest.clear()
            shared = finest[values] = values
        values = shared
        if self.newest_record_time is None or record.time > self.newest_record_time:
            self.newest_record_time = record.time
        signals = record.signals
        flagged = [name for name, v in signals.items() if v] if signals else None
        self._recent.append((record.time.timestamp(), values, frozenset(flagged) if flagged else _NO_FLAGS))
        for i, v in enumerate(values):
            self._values[i].add(v)
        if self.config.max_tracked_responses:
            self._responses[record.record_id] = values
            if len(self._responses) > self.config.max_tracked_responses:
                self._responses.popitem(last=False)

    def _prepare(self, record: Record) -> tuple[SegmentKey, list[SignalValue], float, Record]:
        """Count one record and derive what the statistics need: its finest segment, its signals (decided now,
        the routing audit's included, unless it carries them) and its time; and the decided record."""
        t = record.time.timestamp()
        values = self.stats.lattice.values_of(record)
        record = self.decide(record)
        self._count(record, values)
        signals = self.signal_stage.values(record)
        return values, signals, t, record

    def observe_feedback(self, event: FeedbackEvent) -> list[Alert]:
        """Process one feedback event; negative feedback on a remembered response updates ``feedback``."""
        if event.kind not in NEGATIVE_FEEDBACK:
            return []
        values = self._responses.get(event.response_id)
        if values is None:
            return []
        sig = SignalValue(FEEDBACK_SIGNAL, "rate", 1.0)
        fired = self.stats.update(sig, self.stats.lattice.keys(values), event.time.timestamp())
        return self._raise(fired, event.time)

    def add_changes(self, changes: Iterable[Change]) -> list[Alert]:
        """Add (or replace by id) changes; re-attribute open alerts and return those whose ranking changed (they
        are re-sent to the notifiers)."""
        for change in changes:
            self._changes[change.change_id] = change
        updated: list[Alert] = []
        for alert in self.open_alerts:
            ranked = self._attribute(alert)
            if ranked != alert.attributed_changes:
                new = replace(alert, attributed_changes=ranked)
                self._alerts[alert.alert_id] = new
                updated.append(new)
                self._notify(new)
        return updated

    # -- internals -------------------------------------------------------------------------------------------

    def _notify(self, alert: Alert) -> None:
        for notifier in self.notifiers:
            try:
                notifier.send(alert)
            except Exception:  # a notifier must not break the pipeline; the shipped ones never raise
                continue

    def _degraded(self, signal: str, key: SegmentKey, level: float | None = None) -> bool | None:
        """True/False for a stream with traffic here; None when it has none. A stream still in its warm-up (a
        segment that appeared recently, such as short requests on the long pool) is degraded when its mean is at
        least ``level``, the post-change level of the alarm being localised."""
        memo = self._memo
        if memo is None:
            young = self._degraded_unless_young(signal, key)
        else:
            if (signal, key) not in memo:
                memo[(signal, key)] = self._degraded_unless_young(signal, key)
            young = memo[(signal, key)]
        if young is None or young is True or young is False:
            return young
        if memo is not None:
            self._young_reads += 1
        return True if level is not None and young >= level else None

    def _degraded_unless_young(self, signal: str, key: SegmentKey) -> bool | float | None:
        """:meth:`_degraded` without the alarm's level: for a stream in its first warm-up with at least
        :data:`MIN_YOUNG` records, its mean (degraded when at least the level), else the answer."""
        det = self.stats.sequential_test(signal, key)
        if det is None:
            return None
        if det.statistic >= self.config.evidence_threshold:
            return True
        if det.n < det.warmup:
            # restarted by its own alarm: that alarm is the evidence; otherwise no baseline yet, so evidence only
            # from a high mean, else no information
            if (signal, key) in self.stats.alarmed:
                return True
            return float(det.mean) if det.n >= MIN_YOUNG else None
        return any(
            a.status == "open" and a.signal == signal and is_refinement(self._keys[a.alert_id], key)
            for a in self._alerts.values()
        )

    def _siblings(
        self, signal: str, key: SegmentKey, dim: int, level: float | None = None
    ) -> list[tuple[SegmentKey, bool]]:
        out: list[tuple[SegmentKey, bool]] = []
        for v in sorted(self._values[dim]):
            if v == key[dim]:
                continue
            sib = (*key[:dim], v, *key[dim + 1 :])
            status = self._degraded(signal, sib, level)
            if status is not None:
                out.append((sib, status))
        return out

    def _localise(self, signal: str, key: SegmentKey, level: float | None = None) -> list[SegmentKey]:
        """The segments localisation visits from ``key`` (see the module docstring), ``key`` first and the target
        last."""
        current = key
        trail = [key]
        memo = self._memo
        budget = 4 * len(self.dimensions)
        young = [self._young_reads]  # young streams read before each step: the steps the alarm's level decided
        for step in range(budget):
            if memo is not None:  # this record's alarms already walked on from here (see :meth:`_raise`)
                known = memo.get(("trail", signal, current))
                if isinstance(known, tuple) and known[1] <= budget - step:
                    trail.extend(known[0])
                    return trail
            moved = False
            for i, v in enumerate(current):  # climb
                if v == WILDCARD:
                    continue
                sibs = self._siblings(signal, current, i, level)
                if all(degraded for _, degraded in sibs):  # also when it has no sibling: no contrast
                    current = (*current[:i], WILDCARD, *current[i + 1 :])
                    trail.append(current)
                    moved = True
                    break
            if moved:
                young.append(self._young_reads)
                continue
            best: tuple[float, SegmentKey] | None = None
            for i, v in enumerate(current):  # drill down
                if v != WILDCARD:
                    continue
                children: list[tuple[SegmentKey, bool]] = []
                for value in sorted(self._values[i]):
                    child = (*current[:i], value, *current[i + 1 :])
                    status = self._degraded(signal, child, level)
                    if status is not None:
                        children.append((child, status))
                bad = [c for c, degraded in children if degraded]
                if len(bad) == 1 and len(children) > 1:
                    det = self.stats.sequential_test(signal, bad[0])
                    stat = det.statistic if det is not None else 0.0
                    if best is None or stat > best[0]:
                        best = (stat, bad[0])
            if best is None:
                if memo is not None:
                    # the walk on from each segment of the trail, when no young stream (whose answer depends on the
                    # alarm's level) decided it: that segment's remaining trail, and the steps it took
                    for at in range(len(trail) - 1, -1, -1):
                        if young[at] != self._young_reads:
                            break
                        memo[("trail", signal, trail[at])] = (tuple(trail[at + 1 :]), len(trail) - at)
                break
            current = best[1]
            trail.append(current)
            young.append(self._young_reads)
        return trail

    def _estimate(self, signal: str, key: SegmentKey, fallback: ChangeEstimate) -> ChangeEstimate:
        """The change estimate of segment ``key``: its own sequential test's when that holds evidence; else the alarm's
        (``fallback``, from a marginal), started no earlier than ``key``'s own excursion. A marginal pools other
        segments, whose events (another fault) may have begun its excursion earlier; blaming changes by that start
        would rule out the change that began ``key``'s trouble."""
        det = self.stats.sequential_test(signal, key)
        est = det.estimate() if det is not None else None
        if est is not None and est.statistic >= self.config.evidence_threshold:
            return est
        own = est.change_time if est is not None else None
        if own is not None and (fallback.change_time is None or own > fallback.change_time):
            latest = fallback.latest_change_time
            return replace(fallback, change_time=own, latest_change_time=own if latest is None else max(latest, own))
        return fallback

    def _implied(self, key: SegmentKey, *, versions: bool = True) -> SegmentKey:
        """``key`` with every free dimension fixed on which its traffic has a single value (``versions=False``:
        except the versioned dimensions, which the next deploy changes): all of config version X's traffic is model
        H's on tpu, so a change to model S cannot explain an alert on X."""
        out = list(key)
        for i, value in enumerate(key):
            if value != WILDCARD or (not versions and self.dimensions[i] in self.config.versioned_dimensions):
                continue
            present = [v for v in self._values[i] if self.stats.has_traffic((*key[:i], v, *key[i + 1 :]))]
            if len(present) == 1:
                out[i] = present[0]
        return tuple(out)

    def _attribute(self, alert: Alert) -> tuple[AttributedChange, ...]:
        """Rank the change log for ``alert``, on its segment with the values its traffic implies (see
        :meth:`_implied`): a change whose scope contradicts them cannot be the cause."""
        key = self._keys[alert.alert_id]
        implied = self._implied(key)

        def siblings(dim: str) -> list[tuple[dict[str, str], bool]]:
            i = self.dimensions.index(dim)
            return [(segment_dict(k, self.dimensions), bad) for k, bad in self._siblings(alert.signal, key, i)]

        return rank_changes(
            segment_dict(implied, self.dimensions),
            alert.started_at,
            alert.detected_at,
            self._changes.values(),
            latest_start=alert.latest_start,
            siblings=siblings,
            config=self.config.attribution,
        )

    def _level_key(self, signal: str, key: SegmentKey) -> SegmentKey:
        """Where an alert's level is watched: its own segment, unless the signal is (almost) always on there - a
        segment the signal defines, such as short requests on the long pool. Then: fix every free dimension
        on which the segment's traffic has a single value (only model S's short requests reach the long
        pool, all from gpu) - except versions, which the next deploy changes - and release the fixed
        dimension whose parent has the most traffic at a non-degenerate rate (the pool): the share of model
        S's short gpu requests that were misrouted."""
        det = self.stats.sequential_test(signal, key)
        if det is None or det.mean < DEGENERATE_LEVEL:
            return key
        implied = self._implied(key, versions=False)
        best: tuple[int, SegmentKey] | None = None
        for i, value in enumerate(key):
            if value == WILDCARD:
                continue
            parent = (*implied[:i], WILDCARD, *implied[i + 1 :])
            pdet = self.stats.sequential_test(signal, parent)
            if pdet is not None and pdet.mean < DEGENERATE_LEVEL and (best is None or pdet.n > best[0]):
                best = (pdet.n, parent)
        return best[1] if best is not None else key

    def _watch_threshold(self, number: int) -> float:
        """The threshold of the ``number``-th worsening watch (see the module docstring): its share
        ``alpha * 6 / (pi**2 number**2)`` of the watches' budget, or ``StatsConfig.threshold`` when one is fixed."""
        stats = self.config.stats
        if stats.threshold is not None:
            return stats.threshold
        share = stats.alpha / self.config.n_shards * 6.0 / (math.pi**2 * number**2)
        return cusum_threshold(alpha=share, horizon=stats.horizon, n_alternatives=len(WORSENING_RATIOS))

    def _watch(self, values: SegmentKey, by_signal: Mapping[str, float], t: float, when: datetime) -> list[Alert]:
        """Feed one record (its signals' values by name) to the worsening watches of the open alerts (see the
        module docstring)."""
        out: list[Alert] = []
        for watch in list(self._watches.values()):
            if watch.signal not in by_signal or not is_refinement(values, watch.key):
                continue
            x = by_signal[watch.signal]
            if watch.cusum is None:
                watch.n += 1
                watch.s += x
                if watch.n >= self.config.worsening_window:
                    level = (watch.s + 1.0 + 0.5 * math.sqrt(watch.s + 1.0)) / (watch.n + 1.0)
                    if level * max(WORSENING_RATIOS) < 1.0:
                        watch.cusum = BernoulliCUSUM(
                            threshold=self._watch_threshold(watch.number),
                            baseline=max(level, 1e-6),
                            ratios=WORSENING_RATIOS,
                        )
                    else:
                        del self._watches[watch.alert_id]  # already near 1: there is no worse to watch for
                continue
            watch.cusum.update(x, t)
            if not watch.cusum.drift_detected:
                continue
            est = watch.cusum.estimate()
            old = self._alerts.get(watch.alert_id)
            del self._watches[watch.alert_id]
            if est is None or old is None or old.status != "open":
                continue
            out.extend(self._new_alert(watch.signal, self._keys[old.alert_id], est, when, worsens=old))
        return out

    def _incident_of(self, alert: Alert, key: SegmentKey, worsens: Alert | None, apart: Sequence[Alert] = ()) -> str:
        """The incident of a new alert on ``key`` (see ``parity.monitor.detection.incidents``): a worsening is a new
        development (a second change on top of the first, attributed on its own), so a new incident; else that of
        the earliest alert it is related to and that another fault does not explain (:meth:`_second_fault`: the
        corruption's alert on ``model=S,platform=tpu`` and the sampler's on its config version intersect, as
        segments, but not as causes), except the incidents of ``apart``; else a new one (its own id)."""
        if worsens is not None:
            return alert.alert_id
        others = {a.incident or a.alert_id for a in apart}
        for other in self.alerts:  # oldest first
            incident = other.incident or other.alert_id
            if incident not in others and related(alert, other) and not self._second_fault(other, key):
                return incident
        for other in self.alerts:
            incident = other.incident or other.alert_id
            if other.status == "open" and incident not in others and self._coflagged(alert, key, other):
                return incident
        return alert.alert_id

    def _coflagged(self, alert: Alert, key: SegmentKey, other: Alert) -> bool:
        """Whether open ``other`` (another signal family, on a segment intersecting ``key``) explains ``alert`` on
        ``key``: over ``alert``'s evidence period, the records of ``key`` its signal flagged carry ``other``'s flag
        more often than chance allows (see the module docstring, :data:`COFLAG_ALPHA`), and the change log, when
        both are attributed, blames the same change first."""
        mine, theirs = signal_family(alert.signal), signal_family(other.signal)
        theirs_key = self._keys.get(other.alert_id)
        if mine == theirs or theirs_key is None:
            return False
        if any(x != WILDCARD and y != WILDCARD and x != y for x, y in zip(key, theirs_key, strict=True)):
            return False  # no traffic in common
        t0, t1 = alert.started_at.timestamp(), alert.detected_at.timestamp()
        n = m = k = j = 0
        for t, values, flags in self._recent:
            if not t0 <= t <= t1 or not is_refinement(values, key):
                continue
            n += 1
            both = theirs in flags
            m += both
            if mine in flags:
                k += 1
                j += both
        if j < MIN_COFLAGGED or not n or coflag_tail(k, j, m / n) >= COFLAG_ALPHA:
            return False
        if self._changes and other.attributed_changes:
            # the change log tells causes apart where it can: a new alarm blamed on another change than the open one
            # is that change's alert (the replay's load-balancer change degrades the answers its routing bug misroutes,
            # weeks after the routing change's alert opened)
            self._keys[alert.alert_id] = key
            try:
                ranked = self._attribute(alert)
            finally:
                del self._keys[alert.alert_id]
            if ranked and ranked[0].change_id != other.attributed_changes[0].change_id:
                return False
        return True

    def _raise(self, fired: list[Firing], event_time: datetime) -> list[Alert]:
        # The alarms of one record are localised against the same streams: each stream's answer (:meth:`_degraded`)
        # is read once and remembered until an alarm raises or supersedes an alert (the open alerts are part of the
        # answer). Nothing updates a stream in between, and a stream's second read would apply no pending zeros, so
        # skipping it changes no statistic, not even in its last bits.
        out: list[Alert] = []
        self._memo = {}
        try:
            for firing in fired:
                new = self._handle(firing, event_time)
                if new:
                    self._memo = {}
                out.extend(new)
        finally:
            del self._memo
            self.__dict__.pop("_young_reads", None)
        return out

    def _handle(self, firing: Firing, event_time: datetime) -> list[Alert]:
        signal = firing.signal
        trail = self._localise(signal, firing.key, firing.estimate.current)
        target = trail[-1]
        same = [a for a in self._alerts.values() if a.status == "open" and a.signal == signal]
        absorbing = [a for a in same if is_refinement(self._keys[a.alert_id], target) or self._explains(a, target)]
        if absorbing:
            # A refinement the localisation climbed out of, into the segment of an open alert whose excess another
            # part of it explains, is a second fault: raised on that refinement, apart from the alerts it is not.
            own = self._own_segment(signal, trail)
            if own is None and not any(is_refinement(self._keys[a.alert_id], target) for a in absorbing):
                own = target  # absorbed only as explained (no stream on the meet): the alarm's own segment
            if own is None:
                self.n_absorbed += 1
                return []
            # every open alert of the signal that shares its traffic must be another fault's: one that can explain it
            # (the sampler's alert on its config version, for model H on tpu) absorbs it
            sharing = [a for a in same if a in absorbing or self._overlaps(self._keys[a.alert_id], own)]
            if not all(self._second_fault(a, own) for a in sharing):
                self.n_absorbed += 1
                return []
            est = self._estimate(signal, own, firing.estimate)
            return self._new_alert_apart(signal, own, est, event_time, sharing)
        # a new alert is kept apart from the open alerts sharing its traffic that another fault explains: it neither
        # supersedes them nor joins their incident
        apart = [a for a in same if self._overlaps(self._keys[a.alert_id], target) and self._second_fault(a, target)]
        return self._new_alert_apart(signal, target, self._estimate(signal, target, firing.estimate), event_time, apart)

    def _new_alert_apart(
        self, signal: str, target: SegmentKey, est: ChangeEstimate, event_time: datetime, apart: Sequence[Alert]
    ) -> list[Alert]:
        """:meth:`_new_alert`, apart from the open alerts ``apart`` of other faults (see :meth:`_second_fault`):
        they are neither superseded nor joined. (Passed beside the call, not through it: subclasses such as the
        distributed worker's monitor override :meth:`_new_alert` with its own signature.)"""
        self._apart = tuple(apart)
        try:
            return self._new_alert(signal, target, est, event_time)
        finally:
            del self._apart

    def _own_segment(self, signal: str, trail: Sequence[SegmentKey]) -> SegmentKey | None:
        """The last segment of a localisation ``trail`` that strictly refines its target and is degraded on its own:
        where the alarm was before climbing (``model=H,platform=tpu`` when every model on tpu is degraded)."""
        target = trail[-1]
        for key in reversed(trail[:-1]):
            if key != target and is_refinement(key, target) and self._degraded(signal, key):
                return key
        return None

    def _overlaps(self, a: SegmentKey, b: SegmentKey) -> bool:
        """Whether segments ``a`` and ``b`` share traffic (unknown, when this shard does not own their meet)."""
        if any(x != WILDCARD and y != WILDCARD and x != y for x, y in zip(a, b, strict=True)):
            return False
        meet = tuple(y if x == WILDCARD else x for x, y in zip(a, b, strict=True))
        if meet in (a, b) or not self.stats.owns(meet):
            return True
        return self.stats.has_traffic(meet)

    def _second_fault(self, alert: Alert, own: SegmentKey) -> bool:
        """Whether an alarm on ``own`` is a fault of its own next to open ``alert`` (of its signal, on a segment
        that contains ``own``, or that localisation joined to it): ``alert``'s excess is explained by another part
        of its segment, one ``own`` has no traffic in.

        With a change log: none of ``alert``'s best-ranked changes (scored at least :data:`BEST_SHARE` of the
        best), nor a change that shipped the same config version, can have caused ``own``'s alarm (each scope names
        another value: the corruptions of models S and O on tpu explain ``platform=tpu``; a sampler fault of model H
        on tpu is another fault). Without one (nothing
        attributed), from the data, as localisation would drill: along some dimension the alert's segment leaves
        free, a part of it that ``own`` has no traffic in is degraded and a part with traffic is not (the alert would
        drill into model S, or into S's config version, were model H left out). Two faults that nothing tells apart
        (a fault on every model of a platform, or one per model starting together) stay one alert."""
        memo = self._memo
        if memo is None:
            return self._second_fault_read(alert, own)
        # the alarms of one record: see :meth:`_raise`
        known = ("second fault", alert.alert_id, own)
        if known not in memo:
            memo[known] = self._second_fault_read(alert, own)
        return bool(memo[known])

    def _second_fault_read(self, alert: Alert, own: SegmentKey) -> bool:
        """:meth:`_second_fault`, read from the streams."""
        if alert.attributed_changes:
            return changes_contradict(alert, self._changes, segment_dict(self._implied(own), self.dimensions))
        key = self._keys[alert.alert_id]
        for i, value in enumerate(key):
            if value != WILDCARD:
                continue
            parts: list[tuple[SegmentKey, bool]] = []
            for v in sorted(self._values[i]):
                part = (*key[:i], v, *key[i + 1 :])
                status = self._degraded(alert.signal, part)
                if status is not None:
                    parts.append((part, status))
            elsewhere = any(bad and not self._overlaps(part, own) for part, bad in parts)
            if elsewhere and not all(bad for _, bad in parts):
                return True
        return False

    def _explains(self, alert: Alert, target: SegmentKey) -> bool:
        """Whether open ``alert`` explains an alarm on ``target`` that localisation could not drill into: their
        segments intersect, the signal has no stream on the intersection (a mean score is watched on segments of at
        most ``score_max_order`` fixed dimensions), and along each dimension the alert fixes and ``target`` leaves
        free, no other value is degraded on its own marginal (only model O's score rose: ``pool=short`` rose
        through it)."""
        key = self._keys[alert.alert_id]
        if any(k != WILDCARD and t != WILDCARD and k != t for k, t in zip(key, target, strict=True)):
            return False
        meet = tuple(t if t != WILDCARD else k for k, t in zip(key, target, strict=True))
        if meet == key or self.stats.sequential_test(alert.signal, meet) is not None:
            return False
        for i, value in enumerate(key):
            if value == WILDCARD or target[i] != WILDCARD:
                continue
            for other in self._values[i] - {value}:
                alone = tuple(other if j == i else WILDCARD for j in range(len(key)))
                if self._degraded(alert.signal, alone):
                    return False
        return True

    def _new_alert(
        self, signal: str, target: SegmentKey, est: ChangeEstimate, event_time: datetime, worsens: Alert | None = None
    ) -> list[Alert]:
        """Raise an alert on ``target`` (superseding the open alerts it refines, and ``worsens``, but not those of
        other faults, :attr:`_apart`); start its watch."""
        apart = self._apart
        same = [a for a in self._alerts.values() if a.status == "open" and a.signal == signal]
        detected_at = self.clock() if self.clock is not None else event_time
        started_at = min(_ts(est.change_time, detected_at), detected_at)
        latest_start = min(max(_ts(est.latest_change_time, started_at), started_at), detected_at)
        label = segment_label(target, self.dimensions)
        digest = hashlib.sha1(f"{signal}|{label}|{detected_at.isoformat()}".encode()).hexdigest()[:10]
        alert = Alert(
            alert_id=f"a-{digest}",
            signal=signal,
            segment=segment_dict(target, self.dimensions),
            started_at=started_at,
            detected_at=detected_at,
            effect=est.effect,
            baseline=est.baseline,
            current=est.current,
            n_after=est.n_after,
            worsens=worsens.alert_id if worsens is not None else None,
            latest_start=latest_start,
        )
        alert = replace(alert, incident=self._incident_of(alert, target, worsens, apart))
        self._alerts[alert.alert_id] = alert
        self._keys[alert.alert_id] = target
        self._watches_started += 1
        self._watches[alert.alert_id] = _Watch(
            alert.alert_id, signal, self._level_key(signal, target), self._watches_started
        )
        alert = replace(alert, attributed_changes=self._attribute(alert))
        self._alerts[alert.alert_id] = alert
        escalated = {worsens.alert_id} if worsens is not None else set()
        kept = {a.alert_id for a in apart}
        out: list[Alert] = []
        for old in same:
            if old.alert_id in kept:
                continue
            if is_refinement(target, self._keys[old.alert_id]) or old.alert_id in escalated:
                superseded = replace(old, status="superseded")
                self._alerts[old.alert_id] = superseded
                self._watches.pop(old.alert_id, None)
                self._notify(superseded)
                out.append(superseded)
        self._notify(alert)
        out.append(alert)
        return out
