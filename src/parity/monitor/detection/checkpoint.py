"""Monitor checkpoints: what the statistics learned survives a restart.

A monitor that forgets on restart is dangerous in three ways: it re-alerts an incident that is already open (a
second page for the same fault), it forgets an open one (the page is never resolved or escalated), and it learns
its baselines afresh, possibly from the faulty traffic that is flowing right now, so the fault becomes "normal".
:class:`Checkpointer` prevents all three, the way Prometheus restores its head block: a *snapshot* plus a *replay*
of what came after it.

- **Snapshot.** The whole learned state of a :class:`~parity.monitor.detection.pipeline.SegmentMonitor` (every stream's
  sequential test and baseline, open alerts and their worsening watches, the change log, the ids of the last
  ``max_tracked_responses`` records it observed) is pickled, compressed and written to the store's ``meta`` table
  under ``monitor_checkpoint.<shard>of<n>``, every ``interval_s`` (default 60 s) and at shutdown. It lives beside
  the records it summarises, so it moves with the store (a DuckDB file, or a shared PostgreSQL). The snapshot is
  as trusted as the store itself: anyone who can write the store can already forge its alerts.
- **Replay.** On start the snapshot is restored (only when it was taken under the same monitor configuration:
  thresholds and lattice derive from it; otherwise the monitor starts fresh and says so) and every stored record
  it has not seen is fed through the monitor in time order: records no older than the snapshot's newest record
  minus ``lag_s`` (records are stamped when a request arrives and stored when it completes, so a long request can
  land after newer ones) whose id the monitor does not remember. Alerts this replay raises that the store
  already holds were sent before the restart and are not sent again; new ones are (the caller publishes them:
  the proxy's and ingest's :class:`~parity.monitor.runtime.worker.MonitorWorker` does, on start).

What a crash can still cost: records observed after the last snapshot are replayed from the store, so the only
loss is what the store itself lost (see the proxy's write-ahead buffer).

>>> from datetime import datetime, timedelta, timezone
>>> from parity.monitor import DetectorObservation, MemoryStore, Record
>>> from parity.monitor.detection.pipeline import MonitorConfig, SegmentMonitor
>>> from parity.monitor.detection.segments import StatsConfig
>>> config = MonitorConfig(stats=StatsConfig(dimensions=("model",), horizon=1000))
>>> store, t0 = MemoryStore(), datetime(2025, 8, 5, tzinfo=timezone.utc)
>>> records = [Record(record_id=f"r{i}", time=t0 + timedelta(seconds=i), model="S",
...                   observations=(DetectorObservation("degeneration", False, 0.0),)) for i in range(30)]
>>> first = SegmentMonitor(config=config)
>>> for r in records[:20]:
...     _ = first.observe(r)
>>> store.write_records(records)          # all 30 were stored; the process died after observing 20
>>> Checkpointer(store).save(first)
>>> second = SegmentMonitor(config=config)
>>> Checkpointer(store).restore(second).replayed
10
>>> second.n_records
30
"""

from __future__ import annotations

import base64
import io
import logging
import pickle
import pkgutil
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from parity._exceptions import ParityError, StoreError
from parity._version import __version__
from parity.monitor._records import Alert, Change, Record
from parity.monitor.alerting.alerts import Notifier
from parity.monitor.detection.pipeline import MonitorConfig
from parity.monitor.storage._store_protocol import MetaStore

__all__ = ["CHECKPOINT_FORMAT", "CheckpointStore", "Checkpointable", "Checkpointer", "RestoreResult", "loads"]

log = logging.getLogger("parity.monitor")

#: Version of the checkpoint payload; a checkpoint of another format is ignored (with a warning), never misread.
CHECKPOINT_FORMAT = 1

_PREFIX = f"parity-checkpoint-v{CHECKPOINT_FORMAT}:"


class _Unpickler(pickle.Unpickler):
    """Reads a snapshot taken before a monitor module moved into a sub-package of ``parity.monitor`` (the fold of
    issue 12): a class not found at ``parity.monitor.<module>`` is looked up at ``parity.monitor.<package>.<module>``,
    so an upgrade keeps what the monitor learned."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ModuleNotFoundError, AttributeError):
            parts = module.split(".")
            if parts[:2] != ["parity", "monitor"] or len(parts) != 3:
                raise
            import parity.monitor

            for sub in pkgutil.iter_modules(parity.monitor.__path__):
                if sub.ispkg:
                    try:
                        return super().find_class(f"parity.monitor.{sub.name}.{parts[2]}", name)
                    except (ModuleNotFoundError, AttributeError):
                        continue
            raise


def loads(data: bytes) -> Any:
    """``pickle.loads`` for monitor snapshots, tolerant of modules moved into sub-packages (see above)."""
    return _Unpickler(io.BytesIO(data)).load()


@runtime_checkable
class Checkpointable(Protocol):
    """What a checkpoint needs of a monitor: ``SegmentMonitor`` and the sharded one
    (``parity.monitor.detection.distributed.ShardedMonitor``, whose ``checkpoint_key`` names its own ``meta`` key). Its
    pickle is its learned state; :meth:`adopt_state` takes over an unpickled one (raising a ``ParityError`` when it was
    learned under another configuration)."""

    config: MonitorConfig
    newest_record_time: datetime | None
    notifiers: tuple[Notifier, ...]

    @property
    def changes(self) -> list[Change]: ...

    def adopt_state(self, other: Any) -> None: ...

    def remembers(self, record_id: str) -> bool: ...

    def add_changes(self, changes: Iterable[Change]) -> list[Alert]: ...

    def observe_batch(self, records: Iterable[Record], decided: list[Record] | None = None) -> list[Alert]: ...


@runtime_checkable
class CheckpointStore(MetaStore, Protocol):
    """What a checkpoint needs of a store: its ``meta`` table, its records and its alerts."""

    def records(self, *, since: datetime | None = None, until: datetime | None = None) -> list[Record]: ...

    def alerts(self, *, open_only: bool = False) -> list[Alert]: ...


@dataclass(frozen=True)
class RestoreResult:
    """What :meth:`Checkpointer.restore` did: whether a snapshot was restored (and when it was taken), how many
    stored records were replayed after it, the alerts that replay raised or updated (``alerts``: to be written
    to the store) and, of those, the ones the store did not hold yet (``new_alerts``: never sent, to be sent)."""

    restored: bool
    taken_at: datetime | None = None
    replayed: int = 0
    alerts: tuple[Alert, ...] = field(default=())
    new_alerts: tuple[Alert, ...] = field(default=())
    reason: str = ""


class Checkpointer:
    """Save and restore one :class:`SegmentMonitor`'s learned state in ``store`` (see the module docstring).

    ``interval_s`` is how often :meth:`maybe_save` writes a snapshot; ``lag_s`` how far before a snapshot's newest
    record the replay looks for records that completed late (default: 10 minutes, the proxy's upstream timeout).
    """

    def __init__(self, store: CheckpointStore, *, interval_s: float = 60.0, lag_s: float = 600.0) -> None:
        self.store = store
        self.interval_s = interval_s
        self.lag_s = lag_s
        self._last_save = time.monotonic()
        self.saves = 0
        self.failures = 0

    @staticmethod
    def key(monitor: Checkpointable) -> str:
        """The ``meta`` key of ``monitor``'s shard (its own ``checkpoint_key`` when it names one)."""
        own = getattr(monitor, "checkpoint_key", None)
        if isinstance(own, str):
            return own
        return f"monitor_checkpoint.{monitor.config.shard}of{monitor.config.n_shards}"

    # -- saving ------------------------------------------------------------------------------------------
    def save(self, monitor: Checkpointable) -> None:
        """Write a snapshot of ``monitor`` now (raises :class:`~parity.StoreError` when the store refuses)."""
        newest = monitor.newest_record_time
        payload: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "parity_version": __version__,
            "taken_at": datetime.now(UTC),
            "newest_record_time": newest,
            "monitor": monitor,
        }
        blob = base64.b64encode(zlib.compress(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL), 6))
        self.store.set_meta(self.key(monitor), _PREFIX + blob.decode("ascii"))
        self._last_save = time.monotonic()
        self.saves += 1

    def maybe_save(self, monitor: Checkpointable) -> bool:
        """Save when ``interval_s`` has passed since the last save; True when it saved. A failure is logged and
        counted (``failures``), never raised: the next interval tries again."""
        if time.monotonic() - self._last_save < self.interval_s:
            return False
        try:
            self.save(monitor)
        except (ParityError, OSError) as err:
            self.failures += 1
            self._last_save = time.monotonic()
            log.error("monitor checkpoint failed (will retry in %.0f s): %s", self.interval_s, err)
            return False
        return True

    # -- restoring ---------------------------------------------------------------------------------------
    def load(self, monitor: Checkpointable) -> tuple[Checkpointable, dict[str, Any]] | None:
        """The snapshot stored for ``monitor``'s shard and its payload, or ``None`` (none, or unreadable)."""
        text = self.store.get_meta(self.key(monitor))
        if not text:
            return None
        if not text.startswith(_PREFIX):
            log.warning("monitor checkpoint %s has an unknown format; starting fresh", self.key(monitor))
            return None
        try:
            payload = loads(zlib.decompress(base64.b64decode(text[len(_PREFIX) :])))
        except Exception as err:  # a corrupt or incompatible snapshot must never stop the monitor from starting
            log.warning("monitor checkpoint %s is unreadable (%s); starting fresh", self.key(monitor), err)
            return None
        state = payload.get("monitor") if isinstance(payload, dict) else None
        if not isinstance(state, type(monitor)):
            log.warning("monitor checkpoint %s holds no monitor; starting fresh", self.key(monitor))
            return None
        return state, payload

    def restore(self, monitor: Checkpointable) -> RestoreResult:
        """Restore ``monitor`` from its shard's snapshot, then replay the stored records it has not seen (see the
        module docstring). Without a usable snapshot, the monitor is left as it is."""
        loaded = self.load(monitor)
        if loaded is None:
            return RestoreResult(restored=False, reason="no checkpoint")
        state, payload = loaded
        known_changes = monitor.changes  # the change log given at start is newer than the snapshot's
        try:
            monitor.adopt_state(state)
        except ParityError:
            log.warning(
                "monitor checkpoint %s was taken under another monitor configuration; starting fresh",
                self.key(monitor),
            )
            return RestoreResult(restored=False, reason="configuration changed")
        taken_at = payload.get("taken_at")
        newest = payload.get("newest_record_time")
        since = newest - timedelta(seconds=self.lag_s) if isinstance(newest, datetime) else None
        try:
            stored = self.store.records(since=since)
            known = {a.alert_id for a in self.store.alerts()}
        except ParityError as err:
            raise StoreError(f"cannot replay records after the monitor checkpoint: {err}") from err
        notifiers, monitor.notifiers = monitor.notifiers, ()  # the caller decides what to send (new_alerts)
        try:
            raised: dict[str, Alert] = {a.alert_id: a for a in monitor.add_changes(known_changes)}
            todo: list[Record] = []
            ids: set[str] = set()
            for record in stored:
                if monitor.remembers(record.record_id) or (
                    monitor.config.max_tracked_responses and record.record_id in ids
                ):
                    continue
                if not monitor.config.max_tracked_responses and newest is not None and record.time <= newest:
                    continue  # nothing remembered to tell seen from unseen: trust the snapshot's newest time
                todo.append(record)
                ids.add(record.record_id)
            replay = monitor.observe_batch(todo)
            drain = getattr(monitor, "drain", None)
            if callable(drain):  # a batching monitor (the sharded one): the alerts of what it still holds
                replay.extend(drain())
            for alert in replay:
                raised[alert.alert_id] = alert
            replayed = len(todo)
        finally:
            monitor.notifiers = notifiers
        self._last_save = time.monotonic()
        return RestoreResult(
            restored=True,
            taken_at=taken_at if isinstance(taken_at, datetime) else None,
            replayed=replayed,
            alerts=tuple(raised.values()),
            new_alerts=tuple(a for a in raised.values() if a.alert_id not in known),
        )
