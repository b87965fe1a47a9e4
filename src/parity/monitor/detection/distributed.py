"""Scale-out of the segment monitor: its streams split across workers (Ray actors, or in-process), with alerts
identical to one :class:`~parity.monitor.detection.pipeline.SegmentMonitor`.

**What is sharded.** A stream is one (signal, segment) pair. :class:`ShardedMonitor` gives each worker the streams
of a subset of the *signals*, over every segment key. The signals of the first batch are balanced across workers by
their estimated cost in that batch (non-zero observations times the segments they update: a score is rarely 0, a
flag usually is), largest first onto the least loaded worker; a signal first seen later goes to
``signal_shard(signal, n)``, a CRC-32 of its name. The assignment is fixed once made and sent to every worker.
A worker is a ``SegmentMonitor`` that sees every record and feedback event but updates, localises and alerts only
on its signals. Sharding by signal rather than by segment key is what keeps the result exact and the traffic
small: every step after a stream's test alarms - localisation across nested segments (climb to a marginal, drill down to
a child), the de-duplication against open alerts, the worsening watch of an alert, the ranking of changes - reads
streams *of the alarm's own signal only*, so it runs inside the worker that owns the signal, on its state at that
very record. Sharding by segment key would split one signal's lattice across workers, and each alarm would need a
synchronous round trip to all of them at the record that raised it: the incident replay's 9,000 records raise
9,972 alarms (all but four absorbed by an open alert, with the lab's long-context split of 192 tokens), so that
design would be a round trip per record.

**What is global, and how it is merged.**

- *Records, feedback and the change log* go to every worker, in order, in batches (one serialisation per batch,
  shared by the workers). The change log is global: every worker ranks it for its own alerts.
- *Alerts* are merged by id: an alert id belongs to one signal, so to one worker; the coordinator keeps the latest
  version of each (status changes included) and sends every update to the notifiers and the store in record order.
- *The worsening watches' false-alarm budget* is global: the ``k``-th watch the whole monitor starts spends
  ``alpha * 6 / (pi**2 k**2)`` (``parity.monitor.detection.pipeline``). Workers number their new watches provisionally;
  after each batch the coordinator orders the new alerts of all workers the way one monitor would have raised them
  (record, then alarm order within the record: segment, then signal; alarms before worsenings) and sends the global
  numbers back. A watch needs ``worsening_window`` records before its threshold is used, so batches are kept to a
  quarter of that window (with one batch in flight); a watch that would calibrate before its number arrived raises
  an error instead of using a wrong threshold.
- *Incidents* are global (``parity.monitor.detection.incidents``): a worker numbers none; the coordinator puts each
  new alert, in the order one monitor raises them, in the incident one monitor would
  (``SegmentMonitor._incident_of``: the earliest related alert that another fault does not explain, except those it
  is kept apart from), over every worker's alerts, so ``x`` and ``x.score`` on two workers are one incident as in
  one process. Whether another fault explains an earlier alert needs that alert's streams: for the new alert's own
  worker's alerts the worker answers at the record (:class:`IncidentFacts`); for another worker's alert with
  attributed changes the change log answers (the same function one monitor asks); for one without, its worker
  answers when the batch is collected, on its streams one or two batches after the record
  (:attr:`ShardedMonitor.incidents_lagged` counts these, the one place the incidents may differ from one process's).
- *Counts* (records, absorbed alarms) are summed.

- *Each record's signals* are decided once, in the coordinator (:meth:`ShardedMonitor.decide`, the routing audit
  included: its sticky-session state is global), before the record is sent; the workers read the decided values
  and never decide again, and the caller stores the decided record (``observe_batch(records, decided=...)``, the
  batch interface ``MonitorWorker`` drives), so records stored from the Ray path carry their signals. The audit
  asks whether a segment alerts of the coordinator's merged alerts, which lag the records by the batches in flight
  (at most two): only the sticky-session rule asks, and it does not alert (it is stored, not fed to the
  statistics), so the alerts are exact; its stored value may differ from one process's for records within two
  batches of an alert opening.
- *Checkpoints* (``parity.monitor.detection.checkpoint``, the store's ``meta`` table, key
  :attr:`ShardedMonitor.checkpoint_key`) hold the coordinator's state (merged alerts, watch numbers, signal assignment,
  routing audit, counts) and every worker's learned state, fetched from its actor; a restart with the same configuration
  and worker count hands each worker its own state back (:meth:`ShardedMonitor.adopt_state`) and replays the stored
  records after it.

Everything per stream - the tests, their lazy zeros, their alarms and restarts - is owned by one worker and never
merged. A worker takes each batch's runs of records through the single process's batch path (the compiled banks,
``SegmentStatistics.feed``, its own signals only), each record's alerts tagged with the op it came from. A worker's
``max_streams`` caps its own streams, so the cap binds later than in one process (the only case where the alerts can
differ, reported as ``untracked``).

What it costs: each worker walks the segment lattice of every record (the lattice is per record, not per signal),
so the speed-up is bounded by the share of per-signal work; ``benchmarks/bench_scale.py`` measures it.

>>> from datetime import datetime, timedelta, timezone
>>> import numpy as np
>>> from parity.monitor import DetectorObservation, Record
>>> from parity.monitor.detection.pipeline import MonitorConfig, SegmentMonitor
>>> from parity.monitor.detection.segments import StatsConfig
>>> rng = np.random.default_rng(3)
>>> t0 = datetime(2025, 8, 25, tzinfo=timezone.utc)
>>> records = [Record(record_id=f"r{i}", time=t0 + timedelta(seconds=i), model="S", platform=("gpu", "tpu")[i % 2],
...                   observations=(DetectorObservation("unexpected_script",
...                                                     bool(rng.random() < (0.05 if i % 2 and i >= 4000 else 0.002)),
...                                                     0.0),))
...            for i in range(6000)]
>>> config = MonitorConfig(stats=StatsConfig(dimensions=("model", "platform"), horizon=100_000))
>>> single = SegmentMonitor(config=config)
>>> for r in records:
...     _ = single.observe(r)
>>> sharded = ShardedMonitor(config=config, workers=3)  # in-process workers; engine="ray" for actors
>>> sharded.observe_all(records)
>>> [(a.signal, a.segment) for a in sharded.alerts]
[('unexpected_script', {'platform': 'tpu'})]
>>> sharded.alerts == single.alerts
True
>>> sharded.close()
"""

from __future__ import annotations

import itertools
import pickle
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from parity._exceptions import InvalidInputError
from parity._optional import import_optional
from parity.monitor._records import Alert, Change, FeedbackEvent, Record
from parity.monitor.alerting.alerts import Notifier
from parity.monitor.detection.audit import AuditContext, RoutingAudit
from parity.monitor.detection.checkpoint import loads
from parity.monitor.detection.incidents import related
from parity.monitor.detection.pipeline import MonitorConfig, SegmentMonitor, changes_contradict
from parity.monitor.detection.segments import (
    FEEDBACK_SIGNAL,
    WILDCARD,
    Firing,
    SegmentKey,
    SegmentLattice,
    SegmentStatistics,
    SignalValue,
    StatsConfig,
    audit_signal,
    is_refinement,
    record_signals,
    segment_dict,
)
from parity.monitor.detection.signals import Members, SignalStage
from parity.stats.sequential import ChangeEstimate

__all__ = ["ENGINES", "IncidentFacts", "ShardWorker", "ShardedMonitor", "balance_signals", "signal_shard"]

#: Where the workers run: ``local`` (in this process, one after the other) or ``ray`` (one actor each).
ENGINES = ("local", "ray")

#: Records (and feedback events, change-log updates) per batch sent to the workers, at most; capped at a quarter
#: of ``MonitorConfig.worsening_window`` (see the module docstring).
DEFAULT_BATCH = 250

#: Provisional watch numbers are negative (a worker's own count minus this), so one used by mistake is caught.
_PROVISIONAL = 10**12

_Op = tuple[str, Any]  # ("r", Record) | ("f", FeedbackEvent) | ("c", tuple[Change, ...])


def signal_shard(signal: str, n: int) -> int:
    """The worker (``0 <= worker < n``) that owns every stream of ``signal``: CRC-32 of its name, stable across
    processes and runs.

    >>> signal_shard("unexpected_script", 4) == signal_shard("unexpected_script", 4) < 4
    True
    """
    return zlib.crc32(signal.encode()) % n


def balance_signals(ops: Sequence[_Op], config: MonitorConfig, workers: int) -> dict[str, int]:
    """Assign the signals seen in ``ops`` to workers, balancing their estimated cost: per signal, its non-zero
    observations times the segments each updates (a score signal only updates segments with at most
    ``score_max_order`` fixed dimensions); largest first onto the least loaded worker (ties by name).

    >>> from datetime import datetime, timezone
    >>> from parity.monitor import DetectorObservation
    >>> r = Record(record_id="r", time=datetime(2025, 8, 5, tzinfo=timezone.utc), model="S",
    ...            observations=(DetectorObservation("a", True, 0.5), DetectorObservation("b", False, 0.0)))
    >>> sorted(balance_signals([("r", r)], MonitorConfig(), 2).items())
    [('a', 0), ('a.score', 1), ('b', 1), ('b.score', 1), ('feedback', 1), ('routing.short_on_long_pool', 1)]
    """
    lattice = SegmentStatistics(config.stats).lattice
    n_keys = len(lattice.masks)
    n_score_keys = sum(1 for m in lattice.masks if sum(m) <= config.stats.score_max_order)
    cost: dict[str, float] = {FEEDBACK_SIGNAL: 0.0}
    for rule in SegmentMonitor(config=config).audit.rules if config.routing_audit else ():  # type: ignore[union-attr]
        if getattr(rule, "alerts", True):
            cost[audit_signal(rule.name)] = 0.0
    for kind, item in ops:
        if kind != "r":
            continue
        for sig in record_signals(item, scores=True):
            keys = n_score_keys if sig.kind == "mean" else n_keys
            cost[sig.signal] = cost.get(sig.signal, 0.0) + (keys if sig.value != 0.0 else 0.0)
    load = [0.0] * workers
    out: dict[str, int] = {}
    for signal, c in sorted(cost.items(), key=lambda kv: (-kv[1], kv[0])):
        w = min(range(workers), key=lambda i: (load[i], i))
        out[signal] = w
        load[w] += c
    return out


class _SignalStatistics(SegmentStatistics):
    """:class:`SegmentStatistics` that keeps the streams of its worker's signals only, and remembers where each
    alarm of the current record stands in the order one monitor would handle them (segment, then signal). With the
    compiled banks it takes records in batches (:meth:`feed`, the single process's batch path) with its own
    signals only."""

    def __init__(self, config: StatsConfig, *, worker: int, workers: int) -> None:
        super().__init__(config)
        self.worker = worker
        self.workers = workers
        self._owned_signals: dict[str, bool] = {}
        self.assignment: dict[str, int] = {}
        self.key_rank: dict[SegmentKey, int] = {}
        self.signal_rank: dict[str, int] = {}
        self._mine: dict[Members, tuple[Members, tuple[int, ...]]] = {}

    def owns_signal(self, signal: str) -> bool:
        owned = self._owned_signals.get(signal)
        if owned is None:
            owner = self.assignment.get(signal)
            owner = signal_shard(signal, self.workers) if owner is None else owner
            owned = self._owned_signals[signal] = owner == self.worker
        return owned

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._mine = {}

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_mine", None)
        return state

    def feed(self, items: Sequence[tuple[SegmentKey, Members, tuple[float, ...], float]]) -> tuple[int, list[Firing]]:
        """:meth:`SegmentStatistics.feed` on this worker's signals (each record's members filtered once per
        signature); the ranks of the alarming record's alarms as :meth:`observe` keeps them."""
        mine_of = self._mine
        own: list[tuple[SegmentKey, Members, tuple[float, ...], float]] = []
        for values, members, vals, t in items:
            mine = mine_of.get(members)
            if mine is None:
                pos = tuple(p for p, (signal, _) in enumerate(members) if self.owns_signal(signal))
                mine = mine_of[members] = (tuple(members[p] for p in pos), pos)
            own.append((values, mine[0], tuple(vals[p] for p in mine[1]), t))
        n, fired = super().feed(own)
        if fired:
            values, members = items[n - 1][0], items[n - 1][1]
            self.key_rank = {k: i for i, k in enumerate(self.lattice.keys(values))}
            self.signal_rank = {signal: i for i, (signal, _) in enumerate(members)}
        return n, fired

    def observe(self, values: SegmentKey, signals: Sequence[SignalValue], t: float) -> list[Firing]:
        if self.compiled:  # through :meth:`feed`, which keeps the ranks
            return super().observe(values, signals, t)
        mine = [s for s in signals if self.owns_signal(s.signal)]
        fired = super().observe(values, mine, t)
        if fired:
            self.key_rank = {k: i for i, k in enumerate(self.lattice.keys(values))}
            self.signal_rank = {s.signal: i for i, s in enumerate(signals)}
        return fired

    def update(self, signal: SignalValue, keys: Sequence[SegmentKey], t: float) -> list[Firing]:
        if not self.owns_signal(signal.signal):
            return []
        fired = super().update(signal, keys, t)
        if fired:
            self.key_rank = {k: i for i, k in enumerate(keys)}
            self.signal_rank = {signal.signal: 0}
        return fired


class _WorkerMonitor(SegmentMonitor):
    """One worker's monitor: the signals it owns, provisional watch numbers, and the origin of each new alert."""

    stats: _SignalStatistics
    # a run of record ops in flight (:meth:`observe_ops`); class defaults for states pickled before it existed
    _run_ops: Sequence[int] = ()
    _counted = 0

    def __init__(self, config: MonitorConfig, *, worker: int, workers: int) -> None:
        super().__init__(config=config)
        self.stats = _SignalStatistics(self.config.stats, worker=worker, workers=workers)
        self._watches_started = -_PROVISIONAL
        self.op = 0
        self._firing: Firing | None = None
        self.numbers: dict[str, int] = {}
        #: new alerts of the current batch: (op, phase, rank...) -> alert id, phase 0 = alarm, 1 = worsening
        self.created: list[tuple[tuple[int, ...], str]] = []
        #: what the coordinator needs to put each new alert of the current batch in its incident (by alert id)
        self.incident_facts: dict[str, IncidentFacts] = {}
        #: the origin of each alert object returned during the current op (by ``id()``): its group's new alert's
        self.origin_of: dict[int, tuple[int, ...]] = {}
        #: a run of record ops fed as one batch (:meth:`observe_ops`): each record's op, the records counted so
        #: far, and the origin of every alert returned, in order
        self._run_ops: Sequence[int] = ()
        self._counted = 0
        self._origins: list[tuple[int, tuple[int, ...]]] = []

    def observe_ops(self, first: int, records: Sequence[Record]) -> list[tuple[tuple[int, ...], Alert]]:
        """Records that are ops ``first``, ``first + 1``, ... of the batch, on the single process's batch path
        (``SegmentMonitor.observe_batch``, the compiled banks); the alerts with their origins, as
        :meth:`ShardWorker.run` gives them op by op: each record's :meth:`_count` (called once per record, in order,
        before its alarms and watches) sets the op its alerts come from."""
        self._run_ops = range(first, first + len(records))
        self.origin_of = {}
        self._counted = 0
        self._origins = []
        try:
            alerts = self._observe_runs(list(records), None)
            origins = self._origins
        finally:
            self._run_ops = ()
            self._origins = []
        if len(origins) != len(alerts) or any(i != id(a) for (i, _), a in zip(origins, alerts, strict=False)):
            raise RuntimeError("internal: the batch path returned alerts its new alerts did not")
        return [(origin, a) for (_, origin), a in zip(origins, alerts, strict=True)]

    def _count(self, record: Record, values: SegmentKey) -> None:
        if self._run_ops:
            self.op = self._run_ops[self._counted]
            self._counted += 1
        super()._count(record, values)

    def _handle(self, firing: Firing, event_time: datetime) -> list[Alert]:
        self._firing = firing
        try:
            return super()._handle(firing, event_time)
        finally:
            self._firing = None

    def _new_alert(
        self, signal: str, target: SegmentKey, est: ChangeEstimate, event_time: datetime, worsens: Alert | None = None
    ) -> list[Alert]:
        out = super()._new_alert(signal, target, est, event_time, worsens)
        new = out[-1]
        if worsens is None and self._firing is not None:
            f = self._firing
            origin = (self.op, 0, self.stats.key_rank.get(f.key, -1), self.stats.signal_rank.get(f.signal, -1))
        else:
            old = self.numbers.get(worsens.alert_id, -1) if worsens is not None else -1
            origin = (self.op, 1, old, 0)
        self.created.append((origin, new.alert_id))
        for alert in out:
            self.origin_of[id(alert)] = origin
        if self._run_ops:
            self._origins.extend((id(alert), origin) for alert in out)
        return out

    def _incident_of(self, alert: Alert, key: SegmentKey, worsens: Alert | None, apart: Sequence[Alert] = ()) -> str:
        """This worker's incident for ``alert`` (its own alerts only), and the facts the coordinator puts it in its
        global incident with (:meth:`ShardedMonitor._place`): which of this worker's earlier alerts another fault
        explains (``_second_fault``, on this worker's streams at this very record), the alerts it is kept apart from,
        and what its segment's traffic implies (for the change-log test of other workers' alerts)."""
        if worsens is None:
            self.incident_facts[alert.alert_id] = IncidentFacts(
                apart=tuple(a.alert_id for a in apart),
                explained=frozenset(
                    o.alert_id for o in self.alerts if related(alert, o) and self._second_fault(o, key)
                ),
                implied=segment_dict(self._implied(key), self.dimensions),
                key=key,
            )
        return super()._incident_of(alert, key, worsens, apart)

    def _watch_threshold(self, number: int) -> float:
        if number < 0:
            raise RuntimeError(
                "internal: a worsening watch calibrated before the coordinator numbered it; "
                "lower the batch size below MonitorConfig.worsening_window / 4"
            )
        return super()._watch_threshold(number)

    def set_numbers(self, numbers: dict[str, int]) -> None:
        for alert_id, number in numbers.items():
            self.numbers[alert_id] = number
            watch = self._watches.get(alert_id)
            if watch is not None:
                watch.number = number


@dataclass(frozen=True, slots=True)
class IncidentFacts:
    """What a worker knows, when it raises a new alert (not a worsening), that puts the alert in its incident:
    ``explained``, the ids of its own earlier alerts related to it that another fault explains
    (``SegmentMonitor._second_fault``: they are not joined); ``apart``, the ids of the open alerts it is kept apart
    from (their incidents are not joined); ``implied``, the values its segment's traffic implies (every free
    dimension with one value), with which the coordinator asks the change log about other workers' alerts; and its
    segment ``key``."""

    apart: tuple[str, ...]
    explained: frozenset[str]
    implied: dict[str, str]
    key: SegmentKey


@dataclass
class BatchResult:
    """What one worker returns for a batch: alerts emitted (their group's origin, alert), new alerts' origins and
    incident facts, counts."""

    emitted: list[tuple[tuple[int, ...], Alert]] = field(default_factory=list)
    created: list[tuple[tuple[int, ...], str]] = field(default_factory=list)
    incident_facts: dict[str, IncidentFacts] = field(default_factory=dict)
    n_absorbed: int = 0
    streams: int = 0
    untracked: int = 0


class ShardWorker:
    """One worker: a :class:`SegmentMonitor` over the signals ``signal_shard(signal, workers) == worker``.

    Runs in this process (``engine="local"``) or as a Ray actor (``engine="ray"``); :meth:`run` is its only call
    per batch, :meth:`state` / :meth:`load` move its learned state in and out (a checkpoint).
    """

    def __init__(self, config: MonitorConfig, worker: int, workers: int) -> None:
        self.monitor = _WorkerMonitor(config, worker=worker, workers=workers)

    def state(self) -> bytes:
        """The worker's learned state, pickled (streams, baselines, its open alerts and watches, remembered
        responses: ``SegmentMonitor.__getstate__``)."""
        return pickle.dumps(self.monitor, protocol=pickle.HIGHEST_PROTOCOL)

    def load(self, state: bytes) -> None:
        """Take over a learned state from :meth:`state` (of a worker with the same number, config and count)."""
        monitor = loads(state)  # tolerant of modules moved into sub-packages since the snapshot
        if not isinstance(monitor, _WorkerMonitor) or monitor.config != self.monitor.config:
            raise InvalidInputError("state", "is not a worker state of this monitor configuration")
        if (monitor.stats.worker, monitor.stats.workers) != (self.monitor.stats.worker, self.monitor.stats.workers):
            raise InvalidInputError("state", "belongs to another worker", (monitor.stats.worker, monitor.stats.workers))
        self.monitor = monitor

    def second_fault(self, alert_id: str, key: SegmentKey) -> bool:
        """Whether an alarm on ``key`` is a fault of its own next to this worker's alert ``alert_id``
        (``SegmentMonitor._second_fault``), on this worker's streams as they stand now."""
        mon = self.monitor
        return mon._second_fault(mon._alerts[alert_id], key)

    def run(self, ops: Sequence[_Op], numbers: dict[str, int], assignment: dict[str, int] | None = None) -> BatchResult:
        """Apply the signal assignment (first batch only) and the global watch numbers, then the batch's ops."""
        mon = self.monitor
        if assignment is not None:
            if mon.n_records or mon.stats.assignment:
                raise RuntimeError("internal: the signal assignment is fixed by the first batch")
            mon.stats.assignment = dict(assignment)
        mon.set_numbers(numbers)
        mon.created = []
        mon.incident_facts = {}
        out = BatchResult()
        compiled = mon.stats.compiled
        run_end = 0
        for i, (kind, item) in enumerate(ops):
            if i < run_end:
                continue
            if kind == "r" and compiled:  # a run of records: the batch path
                run_end = i
                while run_end < len(ops) and ops[run_end][0] == "r":
                    run_end += 1
                out.emitted.extend(mon.observe_ops(i, [r for _, r in ops[i:run_end]]))
                continue
            mon.op = i
            mon.origin_of = {}
            if kind == "r":
                alerts = mon.observe(item)
            elif kind == "f":
                alerts = mon.observe_feedback(item)
            else:
                alerts = mon.add_changes(item)
            # an alert a new one supersedes goes with it; a re-ranked one (a change-log update) on its own
            out.emitted.extend((mon.origin_of.get(id(a), (i, 2, j)), a) for j, a in enumerate(alerts))
        mon.origin_of = {}
        out.created = mon.created
        out.incident_facts = mon.incident_facts
        out.n_absorbed = mon.n_absorbed
        out.streams = len(mon.stats)
        out.untracked = mon.stats.untracked
        return out


class ShardedMonitor:
    """The segment monitor on ``workers`` workers (see the module docstring): the same alerts as one
    :class:`SegmentMonitor` with ``config``.

    Feed it with :meth:`observe` / :meth:`observe_feedback` / :meth:`add_changes` (the monitor hook of
    ``parity ingest`` and the proxy: alerts come back batch by batch, so an alert is returned up to two batches
    after the record that raised it) or :meth:`observe_all`; :meth:`drain` processes what is buffered and returns
    its alerts. ``engine="ray"`` starts one actor per worker on the Ray cluster at ``address`` (``None``: the one
    this process already joined, else a new local one).
    """

    def __init__(
        self,
        *,
        config: MonitorConfig | None = None,
        workers: int = 2,
        engine: str = "local",
        address: str | None = None,
        notifiers: Sequence[Notifier] = (),
        batch: int = DEFAULT_BATCH,
    ) -> None:
        if workers < 1:
            raise InvalidInputError("workers", "must be >= 1", workers)
        if engine not in ENGINES:
            raise InvalidInputError("engine", f"must be one of {list(ENGINES)}", engine)
        if batch < 1:
            raise InvalidInputError("batch", "must be >= 1", batch)
        self.config = config or MonitorConfig()
        if self.config.n_shards != 1:
            raise InvalidInputError("config.n_shards", "must be 1: ShardedMonitor shards by signal itself")
        self.workers = workers
        self.engine = engine
        self.notifiers = tuple(notifiers)
        self.batch = max(1, min(batch, self.config.worsening_window // 4))
        self._ray: Any = None
        self._started_ray = False
        self._actors: list[Any] = []
        self._local: list[ShardWorker] = []
        if engine == "ray":
            ray = self._ray = import_optional("ray", extra="dist")
            if not ray.is_initialized():
                self._started_ray = True
                if address is not None:
                    ray.init(address=address, log_to_driver=False)
                else:  # a local cluster for this run, on loopback only, stopped by close()
                    ray.init(include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
            cpus = float(ray.cluster_resources().get("CPU", 1.0))
            actor = ray.remote(num_cpus=min(1.0, cpus / workers))(ShardWorker)
            self._actors = [actor.remote(self.config, i, workers) for i in range(workers)]
        else:
            self._local = [ShardWorker(self.config, i, workers) for i in range(workers)]
        self._pending: list[_Op] = []
        self._in_flight: Any = None
        #: signal -> worker, fixed by the first batch (:func:`balance_signals`)
        self.assignment: dict[str, int] | None = None
        self._numbers: dict[int, dict[str, int]] = {i: {} for i in range(workers)}
        #: the change log as of the batches collected (the coordinator's test of other workers' alerts reads it)
        self._logged_changes: dict[str, Change] = {}
        #: new alerts whose incident needed another worker's streams, read after their record (see the module
        #: docstring)
        self.incidents_lagged = 0
        self._watches_started = 0
        self._alerts: dict[str, Alert] = {}
        self._absorbed = [0] * workers
        self._streams = [0] * workers
        self._untracked = [0] * workers
        #: records observed
        self.n_records = 0
        #: the latest record time observed (a checkpoint's replay starts from it)
        self.newest_record_time: datetime | None = None
        #: decides each record's signals once, here, where the merged alerts live (see the module docstring)
        self.signal_stage = SignalStage(
            long_pools=self.config.long_pools,
            sticky_min_run=self.config.sticky_min_run,
            routing=self.config.routing_audit,
        )
        self._lattice = SegmentLattice(self.config.stats.dimensions, self.config.stats.max_order)
        self._audit_ctx = AuditContext(is_alerting=self.is_alerting, segment_of=self._segment_of)
        self._changes: dict[str, Change] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()  # the last max_tracked_responses record ids
        self._undelivered: list[Alert] = []  # alerts a snapshot drained: returned by the next call

    # -- reading ---------------------------------------------------------------------------------------------
    @property
    def alerts(self) -> list[Alert]:
        """Every alert raised so far (open and superseded), oldest first (the batches collected so far; alerts of one
        time in the order one monitor raised them)."""
        return sorted(self._alerts.values(), key=lambda a: a.detected_at)

    @property
    def open_alerts(self) -> list[Alert]:
        return [a for a in self.alerts if a.status == "open"]

    @property
    def n_absorbed(self) -> int:
        """Alarms absorbed by an existing alert, summed over the workers."""
        return sum(self._absorbed)

    @property
    def n_streams(self) -> int:
        """Streams tracked, summed over the workers."""
        return sum(self._streams)

    @property
    def untracked(self) -> int:
        """Streams not created because a worker reached ``max_streams``."""
        return sum(self._untracked)

    @property
    def audit(self) -> RoutingAudit | None:
        """The routing audit (run here, once per record), ``None`` when ``config.routing_audit`` is off."""
        return self.signal_stage.audit

    @property
    def checkpoint_key(self) -> str:
        """The store ``meta`` key of this monitor's checkpoint (``parity.monitor.detection.checkpoint``): one per worker
        count, since the signal assignment and every worker's streams depend on it."""
        return f"monitor_checkpoint.by_signal.{self.workers}workers"

    def is_alerting(self, segment: dict[str, str]) -> bool:
        """Whether an open alert (of the batches collected so far) names ``segment`` or a marginal containing it."""
        dims = self.config.stats.dimensions
        key = tuple(segment.get(d, WILDCARD) for d in dims)
        return any(
            a.status == "open" and is_refinement(key, tuple(a.segment.get(d, WILDCARD) for d in dims))
            for a in self._alerts.values()
        )

    def remembers(self, record_id: str) -> bool:
        """Whether this monitor has observed ``record_id`` among its last ``max_tracked_responses`` records."""
        return record_id in self._seen

    def _segment_of(self, record: Record) -> dict[str, str]:
        return dict(zip(self.config.stats.dimensions, self._lattice.values_of(record), strict=True))

    # -- writing ---------------------------------------------------------------------------------------------
    def decide(self, record: Record) -> Record:
        """``record`` with its signals decided (``SignalStage.decide``), here in the coordinator: the workers read
        the decided values and never decide again; the store keeps them. A record that carries signals is returned
        as it is."""
        return self.signal_stage.decide(record, self._audit_ctx)

    def observe(self, record: Record) -> list[Alert]:
        """Decide one record's signals and buffer it; returns the alerts of batches completed meanwhile."""
        return self._take(self.decide(record))

    def observe_batch(self, records: Iterable[Record], decided: list[Record] | None = None) -> list[Alert]:
        """Decide and buffer records in order (the batch interface ``MonitorWorker`` drives, as
        ``SegmentMonitor.observe_batch``); each decided record is appended to ``decided`` when it is given (the
        worker stores those). Returns the alerts of batches completed meanwhile."""
        out: list[Alert] = []
        for record in records:
            record = self.decide(record)
            if decided is not None:
                decided.append(record)
            out.extend(self._take(record))
        return out

    def _take(self, record: Record) -> list[Alert]:
        self.n_records += 1
        if self.newest_record_time is None or record.time > self.newest_record_time:
            self.newest_record_time = record.time
        limit = self.config.max_tracked_responses
        if limit:
            self._seen[record.record_id] = None
            if len(self._seen) > limit:
                self._seen.popitem(last=False)
        return self._add(("r", record))

    def observe_feedback(self, event: FeedbackEvent) -> list[Alert]:
        return self._add(("f", event))

    def add_changes(self, changes: Iterable[Change]) -> list[Alert]:
        batch = tuple(changes)
        for change in batch:
            self._changes[change.change_id] = change
        return self._add(("c", batch))

    @property
    def changes(self) -> list[Change]:
        """The change log known to the monitor, by time."""
        return sorted(self._changes.values(), key=lambda c: c.time)

    def observe_all(self, records: Iterable[Record | FeedbackEvent]) -> None:
        """Process records and feedback events in order, and drain."""
        for item in records:
            if isinstance(item, Record):
                self.observe(item)
            else:
                self.observe_feedback(item)
        self.drain()

    def drain(self) -> list[Alert]:
        """Process everything buffered; return its alerts."""
        out, self._undelivered = self._undelivered, []
        if self._pending:
            out.extend(self._send())
        out.extend(self._collect())
        return out

    # -- state (a checkpoint: parity.monitor.detection.checkpoint) -----------------------------------------------------

    #: Attributes that belong to this process (the workers' handles, the notifiers), never part of a checkpoint.
    _PROCESS_LOCAL = ("notifiers", "_ray", "_started_ray", "_actors", "_local", "_audit_ctx", "_pending", "_in_flight")

    def __getstate__(self) -> dict[str, Any]:
        """The coordinator's state and every worker's learned state (fetched from the actors). What is buffered is
        processed first; its alerts are returned by the next call that returns alerts (:meth:`drain`)."""
        if self._pending or self._in_flight is not None:
            pending, self._undelivered = self._undelivered, []
            pending.extend(self.drain())
            self._undelivered = pending
        state = {k: v for k, v in self.__dict__.items() if k not in self._PROCESS_LOCAL and k != "_undelivered"}
        if self._ray is not None:
            state["_worker_states"] = self._ray.get([a.state.remote() for a in self._actors])
        else:
            state["_worker_states"] = [w.state() for w in self._local]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A dormant monitor: the learned state without workers; a live one takes it over with :meth:`adopt_state`."""
        self.__dict__.update(state)
        # a checkpoint taken before incidents were placed across workers: the change log as the coordinator knows it
        self.__dict__.setdefault("_logged_changes", dict(self._changes))
        self.__dict__.setdefault("incidents_lagged", 0)
        self.notifiers = ()
        self._ray = None
        self._started_ray = False
        self._actors = []
        self._local = []
        self._pending = []
        self._in_flight = None
        self._undelivered = []
        self._audit_ctx = AuditContext(is_alerting=self.is_alerting, segment_of=self._segment_of)

    def adopt_state(self, other: object) -> None:
        """Take over ``other``'s learned state (a checkpoint's): its workers' states go to this monitor's workers
        (actors or in-process), the coordinator's (alerts, watch numbers, signal assignment, routing audit, counts)
        to this one; this monitor's engine, notifiers and workers' handles stay. ``other`` must be a
        :class:`ShardedMonitor` with the same configuration and worker count."""
        if not isinstance(other, ShardedMonitor) or other.config != self.config or other.workers != self.workers:
            raise InvalidInputError(
                "state", "was learned by another monitor (configuration or worker count)", detail="start fresh"
            )
        states: list[bytes] = other.__dict__.get("_worker_states") or other.__getstate__()["_worker_states"]
        self._undelivered = self.drain()  # what this monitor held before: not lost
        if self._ray is not None:
            self._ray.get([a.load.remote(st) for a, st in zip(self._actors, states, strict=True)])
        else:
            for w, st in zip(self._local, states, strict=True):
                w.load(st)
        for k, v in other.__dict__.items():
            if k not in self._PROCESS_LOCAL and k not in ("_undelivered", "_worker_states", "workers", "batch"):
                self.__dict__[k] = v
        self._audit_ctx = AuditContext(is_alerting=self.is_alerting, segment_of=self._segment_of)

    def close(self) -> None:
        """Stop the workers: Ray actors are killed, and the cluster too when this monitor started it."""
        if self._ray is not None:
            for actor in self._actors:
                self._ray.kill(actor)
            if self._started_ray:
                self._ray.shutdown()
                self._started_ray = False
        self._actors = []
        self._local = []

    def __enter__(self) -> ShardedMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------------------
    def _add(self, op: _Op) -> list[Alert]:
        self._pending.append(op)
        out = self._send() if len(self._pending) >= self.batch else []
        if self._undelivered:
            out[:0], self._undelivered = self._undelivered, []
        return out

    def _send(self) -> list[Alert]:
        """Send the pending batch (with the watch numbers known so far); collect the one in flight before it."""
        ops, self._pending = self._pending, []
        numbers = self._numbers
        self._numbers = {i: {} for i in range(self.workers)}
        assignment = None
        if self.assignment is None:
            assignment = self.assignment = balance_signals(ops, self.config, self.workers)
        if self._ray is not None:
            ref = self._ray.put(ops)
            futures: Any = [a.run.remote(ref, numbers[i], assignment) for i, a in enumerate(self._actors)]
        else:
            futures = [w.run(ops, numbers[i], assignment) for i, w in enumerate(self._local)]
        out = self._collect()
        self._in_flight = (futures, ops)
        return out

    def _collect(self) -> list[Alert]:
        if self._in_flight is None:
            return []
        (futures, ops), self._in_flight = self._in_flight, None
        results: list[BatchResult] = self._ray.get(futures) if self._ray is not None else futures
        created: list[tuple[tuple[int, ...], str, int]] = []
        emitted: list[tuple[tuple[int, ...], int, int, Alert]] = []
        facts: dict[str, IncidentFacts] = {}
        for w, res in enumerate(results):
            created.extend((origin, alert_id, w) for origin, alert_id in res.created)
            emitted.extend((origin, w, j, alert) for j, (origin, alert) in enumerate(res.emitted))
            facts.update(res.incident_facts)
            self._absorbed[w] = res.n_absorbed
            self._streams[w] = res.streams
            self._untracked[w] = res.untracked
        for _, alert_id, w in sorted(created):
            self._watches_started += 1
            self._numbers[w][alert_id] = self._watches_started
        logged = [(i, item) for i, (kind, item) in enumerate(ops) if kind == "c"]
        out: list[Alert] = []
        # in the order one monitor raises them: each new alert with the alerts it supersedes (emitted before it)
        for (origin, w), group in itertools.groupby(sorted(emitted, key=lambda e: e[:3]), key=lambda e: e[:2]):
            while logged and logged[0][0] <= origin[0]:
                self._logged_changes.update((c.change_id, c) for c in logged.pop(0)[1])
            members = [alert for _, _, _, alert in group]
            incident = {
                a.alert_id: self._place(a, w, facts.get(a.alert_id)) for a in members if a.alert_id not in self._alerts
            }
            for alert in members:
                known = self._alerts.get(alert.alert_id)
                alert = replace(alert, incident=incident.get(alert.alert_id) or (known.incident if known else None))
                self._alerts[alert.alert_id] = alert
                for notifier in self.notifiers:
                    try:
                        notifier.send(alert)
                    except Exception:  # a notifier must not break the pipeline (as in SegmentMonitor)
                        continue
                out.append(alert)
        for _, batch in logged:
            self._logged_changes.update((c.change_id, c) for c in batch)
        return out

    def _owner_of(self, alert: Alert) -> int:
        owner = (self.assignment or {}).get(alert.signal)
        return signal_shard(alert.signal, self.workers) if owner is None else owner

    def _place(self, alert: Alert, worker: int, facts: IncidentFacts | None) -> str:
        """The incident of a new ``alert`` of ``worker``, as one monitor decides it
        (``SegmentMonitor._incident_of``), over every worker's alerts: a worsening opens its own; else the incident
        of the earliest alert related to it that another fault does not explain, except those it is kept apart from.
        Whether another fault explains an earlier alert is its worker's question: the new alert's own worker
        answered it at the record for its own alerts (``facts.explained``); for another worker's alert with attributed
        changes the change log answers it here (:func:`~parity.monitor.detection.pipeline.changes_contradict`); for
        one without, its worker answers it now, on its streams a batch or two after the record
        (:attr:`incidents_lagged` counts these)."""
        if alert.worsens is not None or facts is None:
            return alert.alert_id
        apart = {(self._alerts[a].incident or a) if a in self._alerts else a for a in facts.apart}
        for other in self.alerts:  # oldest first, as one monitor holds them
            incident = other.incident or other.alert_id
            if incident in apart or not related(alert, other):
                continue
            owner = self._owner_of(other)
            if owner == worker:
                explained = other.alert_id in facts.explained
            elif other.attributed_changes:
                explained = changes_contradict(other, self._logged_changes, facts.implied)
            else:
                self.incidents_lagged += 1
                if self._ray is not None:
                    explained = self._ray.get(self._actors[owner].second_fault.remote(other.alert_id, facts.key))
                else:
                    explained = self._local[owner].second_fault(other.alert_id, facts.key)
            if not explained:
                return incident
        return alert.alert_id
