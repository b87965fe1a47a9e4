"""The monitor's one data path: exchange -> record -> score -> monitor -> alerts -> store, driven by the proxy
(a thread fed by a bounded queue) and by ``parity ingest`` (called synchronously, line by line).

Stages, each guarded (an exception in one never ends the worker):

1. **parse** (:meth:`RawExchange.to_exchange`): request JSON is checked for size and nesting depth
   (:data:`MAX_JSON_DEPTH`) before any object is built; the response body is decompressed up to
   :data:`MAX_SCORED_BODY_BYTES`. An exchange that cannot be parsed is a counted, logged rejection.
2. **build and score** (:class:`~parity.monitor.intake.scoring.RecordBuilder`): a failure is a counted rejection.
3. **signals and monitor** (:class:`MonitorHook`, ``SegmentMonitor`` by default): the hook decides the record's
   signals once (:class:`SignalDecider`, ``parity.monitor.detection.signals``) and the record is stored with them, then
   observes it; the alerts it returns leave through one exit, :meth:`MonitorWorker.publish`: written to the
   store, then sent to the notifiers.
4. **store**: records are written in batches. The durability rules (issue 10):

   - a record built is first appended to the write-ahead log (:class:`~parity.monitor.runtime.wal.WriteAheadLog`,
     written and fsynced every ``wal_flush_s``, default 100 ms) when one is configured; the log is emptied
     once every record in it is stored, and replayed into the store on the next start (records carry ids: a
     replay skips those the store already holds). A ``kill -9`` loses at most the records built in the last
     ``wal_flush_s`` (plus any exchange still queued, normally none);
   - a batch the store refuses goes to the disk spool and is retried with backoff (0.5 s doubling to 30 s);
     the spool drains into the store once a write succeeds again, on the same run or the next start. The error
     is logged at most once a minute while it lasts (``parity_store_errors_total``, ``parity_spool_records``);
   - when the spool itself cannot be written, the records are counted as dropped (``dropped``,
     ``parity_monitor_dropped_records_total``) and health reports ``failing``. Nothing is lost silently.

A supervisor runs the worker loop: an exception that escapes it anyway is counted
(``parity_monitor_worker_restarts_total``) and the loop restarts; :meth:`MonitorWorker.ensure_alive` restarts a thread
that died.

>>> from datetime import datetime, timezone
>>> from parity.monitor.storage.store import MemoryStore
>>> from parity.monitor.intake.scoring import Exchange, RecordBuilder
>>> store = MemoryStore()
>>> worker = MonitorWorker(store, RecordBuilder(salt="s", scorer=None))
>>> body = '{"id": "c1", "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]}'
>>> worker.process(Exchange(path="/v1/chat/completions", time=datetime(2025, 8, 5, tzinfo=timezone.utc),
...                         request={"model": "S", "messages": []}, status_code=200, response_body=body))
>>> worker.flush()
>>> [r.record_id for r in store.records()], worker.health().status
(['c1'], 'ok')
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import re
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from itertools import accumulate
from typing import Any, Protocol, cast, runtime_checkable

from parity._exceptions import InvalidInputError
from parity._time import parse_time
from parity.monitor._codec import alert_from_dict, change_from_dict, feedback_from_dict, feedback_to_dict
from parity.monitor._records import Alert, Change, FeedbackEvent, Record, RecordColumns, from_micros
from parity.monitor.alerting.alerts import Notifier
from parity.monitor.detection.checkpoint import Checkpointable, Checkpointer, CheckpointStore, RestoreResult
from parity.monitor.detection.pipeline import SegmentMonitor
from parity.monitor.intake.scoring import SCORED_PATHS, Exchange, RecordBuilder
from parity.monitor.runtime.metrics import ProxyMetrics
from parity.monitor.runtime.spool import Spool
from parity.monitor.runtime.wal import WriteAheadLog
from parity.monitor.storage._store_protocol import RecordColumnWriter, RecordIdReader, Store

__all__ = [
    "HEALTH_STATES",
    "MAX_JSON_DEPTH",
    "MAX_PARSED_REQUEST_BYTES",
    "MAX_SCORED_BODY_BYTES",
    "BufferingHook",
    "ChangeBatch",
    "Health",
    "MonitorHook",
    "MonitorWorker",
    "RawExchange",
    "SignalDecider",
    "default_monitor",
    "default_notifiers",
    "json_depth",
]

log = logging.getLogger("parity.monitor")

#: Response bodies kept for scoring are capped (bytes); the client still gets every byte.
MAX_SCORED_BODY_BYTES = 8 * 1024 * 1024

#: Request bodies larger than this are not parsed for scoring (the record keeps what the response tells).
MAX_PARSED_REQUEST_BYTES = 8 * 1024 * 1024

#: JSON nested deeper than this is not parsed (an OpenAI request nests 5-8 levels; CPython's parser recurses).
MAX_JSON_DEPTH = 64

#: Health states, best first.
HEALTH_STATES: tuple[str, ...] = ("ok", "degraded", "failing")

#: Store retry backoff: first and longest wait (seconds) after a failed write.
STORE_RETRY_S = (0.5, 30.0)

#: A store or spool error is logged at most this often (seconds) while it lasts.
ERROR_LOG_INTERVAL_S = 60.0

#: Health stays ``degraded`` this long (seconds) after a worker restart, ``failing`` this long after a drop.
RECENT_S = 300.0

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays/objects in JSON text, without parsing it (brackets inside strings ignored).

    >>> json_depth(b'{"a": [1, {"b": "[[["}]}'), json_depth(b"[" * 1000 + b"]" * 1000), json_depth(b"1")
    (3, 1000, 0)
    """
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    return max(accumulate(1 if c in (91, 123) else -1 for c in brackets), default=0)


class ExchangeRejected(ValueError):
    """An exchange the worker cannot parse; counted and logged, never stored."""


@dataclass
class RawExchange:
    """An exchange as captured on the request path: bytes only, parsed on the worker thread."""

    path: str
    time: datetime
    request_body: bytes
    request_headers: dict[str, str]
    status_code: int
    response_headers: dict[str, str]
    chunks: list[bytes]
    latency_ms: float
    streamed: bool
    #: its number in the write-ahead log once the worker logged it (the worker marks it done when stored)
    wal_seq: int | None = None

    def to_wal(self) -> dict[str, Any]:
        """The exchange as the write-ahead log holds it (bodies in base64; the chunks joined)."""
        return {
            "path": self.path,
            "time": self.time.isoformat(),
            "request_body": base64.b64encode(self.request_body).decode("ascii"),
            "request_headers": self.request_headers,
            "status_code": self.status_code,
            "response_headers": self.response_headers,
            "body": base64.b64encode(b"".join(self.chunks)).decode("ascii"),
            "latency_ms": self.latency_ms,
            "streamed": self.streamed,
        }

    @classmethod
    def from_wal(cls, obj: dict[str, Any]) -> RawExchange:
        """The exchange :meth:`to_wal` wrote (raises ``ValueError``, ``KeyError`` or ``TypeError`` on another
        shape).

        >>> from datetime import UTC
        >>> at = datetime(2025, 8, 5, tzinfo=UTC)
        >>> raw = RawExchange("/v1/completions", at, b"{}", {}, 200, {}, [b"a", b"b"], 1.0, False)
        >>> RawExchange.from_wal(raw.to_wal()) == RawExchange(**{**raw.__dict__, "chunks": [b"ab"]})
        True
        """
        return cls(
            path=str(obj["path"]),
            time=parse_time(obj["time"], "exchange time", naive="utc"),
            request_body=base64.b64decode(obj["request_body"], validate=True),
            request_headers={str(k): str(v) for k, v in obj["request_headers"].items()},
            status_code=int(obj["status_code"]),
            response_headers={str(k): str(v) for k, v in obj["response_headers"].items()},
            chunks=[base64.b64decode(obj["body"], validate=True)],
            latency_ms=float(obj["latency_ms"]),
            streamed=bool(obj["streamed"]),
        )

    def to_exchange(self) -> Exchange:
        """Parse (bounded): raises :class:`ExchangeRejected` for a request nested deeper than
        :data:`MAX_JSON_DEPTH`; a request too large to parse, or not JSON, is kept as ``request=None``."""
        body = b"".join(self.chunks)
        encoding = self.response_headers.get("content-encoding", "").lower()
        if encoding in ("gzip", "deflate"):
            try:  # 47: auto-detect gzip or zlib header; bounded output (no decompression bomb)
                body = zlib.decompressobj(wbits=47).decompress(body, MAX_SCORED_BODY_BYTES)
            except zlib.error:
                body = b""
        request: Any = None
        raw = self.request_body
        if raw and len(raw) <= MAX_PARSED_REQUEST_BYTES:
            depth = json_depth(raw)
            if depth > MAX_JSON_DEPTH:
                raise ExchangeRejected(f"request JSON nested {depth} deep (limit {MAX_JSON_DEPTH})")
            try:
                request = json.loads(raw)
            except ValueError:
                request = None
        return Exchange(
            path=self.path,
            time=self.time,
            request=request if isinstance(request, dict) else None,
            status_code=self.status_code,
            response_headers={k: v for k, v in self.response_headers.items() if k.startswith("x-parity-")},
            response_body=body.decode("utf-8", errors="replace"),
            request_headers=self.request_headers,
            latency_ms=self.latency_ms,
            streamed=self.streamed,
        )


@dataclass(frozen=True)
class ChangeBatch:
    """A batch of change-log entries on its way to the worker."""

    changes: list[Change]


class MonitorHook(Protocol):
    """What the worker needs of the monitor pipeline (``SegmentMonitor`` implements it). Each method returns the
    alerts it raised or updated; the worker publishes them (store, then notifiers). A hook that also has
    ``observe_batch(records, decided=None) -> list[Alert]`` (``SegmentMonitor`` does) gets the accepted records as
    one batch per flush of the pending records instead of one ``observe`` call each, and appends each record as it
    decided its signals to ``decided``: those are the records stored."""

    def observe(self, record: Record) -> list[Alert]: ...

    def observe_feedback(self, event: FeedbackEvent) -> list[Alert]: ...

    def add_changes(self, changes: Sequence[Change]) -> list[Alert]: ...

    @property
    def open_alerts(self) -> list[Alert]: ...


@runtime_checkable
class SignalDecider(Protocol):
    """A monitor hook that decides each record's signals before observing it (``SegmentMonitor`` does): the worker
    stores the decided record, so the store holds the very values the monitor's statistics read."""

    def decide(self, record: Record) -> Record: ...


@dataclass(frozen=True)
class Health:
    """The worker's health: ``status`` in :data:`HEALTH_STATES`, ``reasons`` (human-readable, one per condition),
    ``conditions`` (condition name -> holds) and the counts behind them."""

    status: str
    reasons: tuple[str, ...]
    conditions: dict[str, bool]
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "reasons": list(self.reasons), **self.counts}


Item = RawExchange | Exchange | FeedbackEvent | ChangeBatch | Record


class MonitorWorker:
    """The monitor's one data path (see the module docstring).

    Driven two ways: :meth:`start` a thread and :meth:`submit` items (the proxy; ``submit`` never blocks: a full
    queue sends the exchange to the spool), or call :meth:`process` / :meth:`accept` / :meth:`flush` on the
    caller's thread (``parity ingest``). ``spool`` takes what the queue or the store cannot; ``wal`` bounds what a
    hard kill can lose. ``notifiers`` receive every alert the hook returns, after it is stored. ``dedupe``: every
    batch skips records the store already holds (by id; one range read per batch), so re-reading a source after a
    crash stores each record once (``parity ingest`` sets it; replays of the spool and log always do).
    """

    def __init__(
        self,
        store: Store,
        builder: RecordBuilder,
        *,
        metrics: ProxyMetrics | None = None,
        hook: MonitorHook | None = None,
        notifiers: Sequence[Notifier] = (),
        spool: Spool | None = None,
        wal: WriteAheadLog | None = None,
        queue_size: int = 10_000,
        batch_size: int = 512,
        flush_interval_s: float = 0.5,
        dedupe: bool = False,
        clock: Callable[[], float] = time.monotonic,
        checkpoint_interval_s: float | None = None,
    ) -> None:
        self.store = store
        self.builder = builder
        self.metrics = metrics or ProxyMetrics()
        self.hook = hook
        self.notifiers = tuple(notifiers)
        self.spool = spool
        self.wal = wal
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.dedupe = dedupe
        self._clock = clock
        self.checkpointer: Checkpointer | None = None
        if (
            checkpoint_interval_s is not None
            and isinstance(hook, Checkpointable)  # SegmentMonitor, or the sharded one on Ray actors
            and isinstance(store, CheckpointStore)
        ):
            self.checkpointer = Checkpointer(store, interval_s=checkpoint_interval_s)
        self.restored: RestoreResult | None = None
        self._queue: queue.Queue[Item] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._count_lock = threading.Lock()
        self._outstanding = 0  # submitted to the queue and not yet done
        self._queued_in_pending = 0  # of those, how many sit in the pending batch
        self._busy = False
        self._in_hand = False
        self._pending: list[Record] = []
        self._pending_seqs: list[int] = []  # write-ahead log numbers of the pending records built from exchanges
        self._wal_seq: int | None = None  # the logged exchange being handled, until its record is pending
        self._queued_record_seqs: dict[int, int] = {}  # id of a queued record (submit_record) -> its log number
        #: a hook that takes batches (``observe_batch``) sees the accepted records at each flush, in one call
        self._batched = callable(getattr(hook, "observe_batch", None))
        self._unmonitored: list[Record] = []
        self._last_flush = clock()
        # counts (read by health and `parity status`)
        self.records_written = 0
        self.spooled = 0  # exchanges spooled because the queue was full
        self.store_spooled = 0  # records spooled because the store failed
        self.dropped = 0
        self.rejected = 0
        self.restarts = 0
        self.alerts_published = 0
        self._alarms_counted: set[str] = set()  # alarm ids counted in /metrics (an update is not a new alarm)
        # store failure state
        self.store_error: str | None = None
        self._retry_at = 0.0
        self._retry_wait = STORE_RETRY_S[0]
        self._last_error_log: dict[str, float] = {}
        self._last_restart: float | None = None
        self._last_drop: float | None = None
        self.changes_error: str | None = None  # set by the proxy's change-log poller

    # -- request path ------------------------------------------------------------------------------------
    def submit(self, item: Item) -> None:
        """Queue an exchange, feedback event or change batch without blocking; spool exchanges when full."""
        self.ensure_alive()
        with self._count_lock:
            self._outstanding += 1
        if self.wal is not None and isinstance(item, RawExchange):
            # logged before it waits in the queue: under load the queue holds seconds of answered exchanges
            item.wal_seq = self.wal.append_exchange(item)
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            if self.spool is None or isinstance(item, FeedbackEvent | ChangeBatch | Record):
                self._queue.put(item)  # no spool configured: wait rather than drop (feedback is tiny)
            else:
                with self._count_lock:
                    self._outstanding -= 1
                self._overflow(item)
                if self.wal is not None and isinstance(item, RawExchange) and item.wal_seq is not None:
                    self.wal.done([item.wal_seq])  # spooled, or counted as rejected or dropped
        self.metrics.queue_depth.set(self._queue.qsize())

    def submit_record(self, record: Record) -> None:
        """Queue a ready-made record (the OTLP receiver's); it is stored and monitored like a proxied exchange's.

        A record cannot go to the exchange spool, so a full queue makes the caller wait (the receiver calls this
        off the event loop): nothing is dropped, and the sender sees the back-pressure as a slower answer.
        """
        self.ensure_alive()
        with self._count_lock:
            self._outstanding += 1
            if self.wal is not None:  # logged before it waits in the queue, done once stored
                self._queued_record_seqs[id(record)] = self.wal.append(record, alone=True)
        self._queue.put(record)
        self.metrics.queue_depth.set(self._queue.qsize())

    def _overflow(self, item: RawExchange | Exchange) -> None:
        assert self.spool is not None
        try:
            exchange = item.to_exchange() if isinstance(item, RawExchange) else item
            data = exchange.to_dict()
        except Exception as err:  # an exchange that cannot be parsed is a rejection, spooled or not
            self._reject("parse", err)
            return
        try:
            self.spool.append(data)
        except OSError as err:
            self._drop(1, f"spool {self.spool.path} cannot be written: {err}")
            return
        self.spooled += 1
        self.metrics.spooled.inc()
        self._spool_gauges()

    # -- thread and supervisor ---------------------------------------------------------------------------
    def start(self) -> None:
        """Replay what a previous run left (write-ahead log, spool), then start the worker thread (idempotent)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self.recover()
        if self.wal is not None:
            self.wal.start()
        self._spawn()

    def _spawn(self) -> None:
        self._thread = threading.Thread(target=self._supervise, name="parity-monitor-worker", daemon=True)
        self._thread.start()
        self.metrics.worker_alive.set(1)

    def stop(self, timeout: float = 30.0) -> None:
        """Process what is queued (and spooled), flush, and end the thread."""
        if self._thread is None:
            return
        self._stop.set()
        thread = self._thread
        thread.join(timeout)
        if thread.is_alive():  # still busy after `timeout`: it keeps the batch; the log keeps what it built
            log.error("monitor worker did not finish within %.0f s; %d items not stored", timeout, self.outstanding)
        else:
            self._thread = None
            self._flush()
            self.checkpoint()
            if isinstance(self.hook, BufferingHook):
                self._guard("monitor", self.hook.close)
        if self.wal is not None:
            self._guard("wal", self.wal.close)
        self.metrics.worker_alive.set(0)

    def ensure_alive(self) -> bool:
        """Restart the worker thread if it died (counted); True when it was alive (or never started)."""
        thread = self._thread
        if thread is None or thread.is_alive() or self._stop.is_set():
            return True
        self._restarted(RuntimeError("worker thread ended"))
        self._spawn()
        return False

    def _restarted(self, err: BaseException) -> None:
        self.restarts += 1
        self._last_restart = self._clock()
        self.metrics.worker_restarts.inc()
        log.error("monitor worker died (%s: %s); restarted (restart %d)", type(err).__name__, err, self.restarts)

    def _supervise(self) -> None:
        while True:
            try:
                self._run()
                return
            except Exception as err:  # the loop itself failed: count, restart, never end monitoring
                self._busy = False
                self._restarted(err)
                time.sleep(0.05)

    def _run(self) -> None:
        while True:
            try:
                item: Item | None = self._queue.get(timeout=min(0.05, self.flush_interval_s))
            except queue.Empty:
                item = None
            if item is not None:
                self._busy = True
                self._in_hand = True  # until the item is done or its record sits in the pending batch
                self._wal_seq = self._logged_as(item)
                try:
                    self._handle(item, queued=True)
                except BaseException as err:
                    if self._in_hand:  # it failed before it became a record: counted as a rejection, then done
                        self._in_hand = False
                        self._done(1)
                        self._reject("worker", err)
                    raise
                finally:
                    self._wal_done_unless_pending()
                if self._in_hand:  # handled without leaving a record (feedback, changes, rejected, unscored path)
                    self._in_hand = False
                    self._done(1)
                self.metrics.queue_depth.set(self._queue.qsize())
            if self.wal is not None:
                self._guard("wal", self.wal.maybe_sync)
            empty = self._queue.empty()
            due = self._clock() - self._last_flush >= self.flush_interval_s
            # batch by size or age, never per record: each store write holds the GIL for milliseconds, which the
            # event loop serving user traffic would wait for
            if self._pending and (len(self._pending) >= self.batch_size or due or self._stop.is_set()):
                self._flush()
            if empty and self.spool is not None and self.spool.pending and self._store_ready():
                self._busy = True
                self._drain_spool()
            self._busy = False
            if self._stop.is_set() and self.idle:
                return
            if self._stop.is_set() and empty and not self._pending and not self._store_ready():
                return  # stopping while the store fails: what is left stays in the spool for the next start

    # -- counts ------------------------------------------------------------------------------------------
    @property
    def outstanding(self) -> int:
        """Items submitted and not yet done (stored, spooled, or handled when they store nothing)."""
        return self._outstanding

    @property
    def idle(self) -> bool:
        """Nothing queued, spooled, pending or being written."""
        return (
            self._outstanding == 0
            and not self._busy
            and not self._pending
            and (self.spool is None or self.spool.pending == 0)
        )

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until everything submitted so far is stored (for tests and shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while not self.idle:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def _done(self, n: int) -> None:
        with self._count_lock:
            self._outstanding -= n

    def _logged_as(self, item: Item) -> int | None:
        """The write-ahead log's number for a queued item that :meth:`submit` or :meth:`submit_record` logged."""
        if isinstance(item, RawExchange):
            return item.wal_seq
        if isinstance(item, Record) and self._queued_record_seqs:
            with self._count_lock:
                return self._queued_record_seqs.pop(id(item), None)
        return None

    def _wal_done_unless_pending(self) -> None:
        """The logged exchange just handled left no record in the pending batch (rejected, not scored, or it
        failed): nothing of it is left to store, so the log forgets it."""
        seq, self._wal_seq = self._wal_seq, None
        if seq is not None and self.wal is not None:
            self._guard("wal", partial(self.wal.done, [seq]))

    # -- the pipeline ------------------------------------------------------------------------------------
    def process(self, item: Item) -> None:
        """Run one item through the pipeline on the caller's thread (never raises)."""
        self._handle(item, queued=False)

    def _handle(self, item: Item, *, queued: bool) -> bool:
        """Process one item; True when it left a record in the pending batch. ``queued``: it came from the queue,
        so it counts as outstanding until that batch is stored (counted before the monitor hook runs: an alert
        flushes the batch, this record included)."""
        if isinstance(item, ChangeBatch):
            self._guard("changes", lambda: self.add_changes(item.changes))
            return False
        if isinstance(item, FeedbackEvent):
            self.feedback(item)
            return False
        if isinstance(item, Record):
            self._accept(item, queued=queued)
            return True
        try:
            exchange = item.to_exchange() if isinstance(item, RawExchange) else item
        except Exception as err:  # RecursionError, MemoryError-free bounded parse, anything: a rejection
            self._reject("parse", err)
            return False
        if exchange.path not in SCORED_PATHS:
            return False
        try:
            record = self.builder.build(exchange)
        except Exception as err:
            self._reject("score", err)
            return False
        self._accept(record, queued=queued)
        return True

    def accept(self, record: Record) -> None:
        """Take a built record: write-ahead log, pending batch, monitor (never raises)."""
        self._accept(record, queued=False)

    def accept_batch(self, records: Sequence[Record]) -> None:
        """:meth:`accept` each of ``records`` in order, with the per-record work done once per batch where the
        result is the same (``parity ingest`` hands its records over this way): the flag counts in one call, the
        pending batch extended up to each store flush. A hook that observes record by record still does. Never
        raises."""
        if not self._batched and self.hook is not None:
            for record in records:
                self._accept(record, queued=False)
            return
        flagged = [o.detector for r in records for o in r.observations if o.flagged]
        if flagged:
            self._guard("flags", lambda: self.metrics.count_flags(flagged))
        start = 0
        while start < len(records):
            room = max(1, self.batch_size - len(self._pending))
            part = records[start : start + room]
            start += len(part)
            if self.wal is not None:  # each record is in the log before it is pending (a flush empties the log)
                wal = self.wal
                for record in part:
                    self._guard("wal", partial(wal.append, record))
            self._pending.extend(part)
            if self._batched:
                self._unmonitored.extend(part)
            if len(self._pending) >= self.batch_size:
                self._flush()

    def accept_columns(self, columns: RecordColumns) -> None:
        """:meth:`accept_batch` of ``columns.records()``, written to the store as the columns when nothing needs a
        record per row (no hook, no write-ahead log) and the store takes columns (``parity ingest`` without a
        monitor): the records pending before them are written first, so rows reach the store in input order; the
        de-duplication, the spool on a store failure and the counts are those of a flush. Never raises."""
        if self.hook is not None or self.wal is not None or not isinstance(self.store, RecordColumnWriter):
            self.accept_batch(columns.records())
            return
        flagged = [o.detector for observations in columns.columns["observations"] for o in observations if o.flagged]
        if flagged:
            self._guard("flags", lambda: self.metrics.count_flags(flagged))
        self._flush()
        store = self.store
        stored = False
        if self._store_ready():
            try:
                store.write_record_columns(self._unstored_columns(columns) if self.dedupe else columns)
            except Exception as err:
                self._store_failed(err)
            else:
                self._store_recovered()
                stored = True
        if stored:
            self.records_written += len(columns)
            self.metrics.records_written.inc(len(columns))
        else:
            self._spool_items("records", columns.records())
        self._last_flush = self._clock()

    def _unstored_columns(self, columns: RecordColumns) -> RecordColumns:
        """:meth:`_unstored` of a batch in columns: the rows whose record ids the store does not hold yet, each id
        once (its first row)."""
        c = columns.columns
        ids, times = c["record_id"], c["time"]
        if not ids:
            return columns
        since = from_micros(min(times))
        until = from_micros(max(times) + 1)
        if isinstance(self.store, RecordIdReader):
            held = self.store.stored_record_ids(since=since, until=until)
        else:
            held = {r.record_id for r in self.store.records(since=since, until=until)}
        if held.isdisjoint(ids) and len(set(ids)) == len(ids):  # the common case, in C: nothing to drop
            return columns
        seen: set[str] = set()
        keep = []
        for i, record_id in enumerate(ids):
            if record_id not in held and record_id not in seen:
                seen.add(record_id)
                keep.append(i)
        if len(keep) == len(ids):
            return columns
        return RecordColumns({name: [values[i] for i in keep] for name, values in c.items()})

    def _accept(self, record: Record, *, queued: bool) -> None:
        # decided once, stored, read by the monitor; the cheap tests first: an isinstance check against a runtime
        # Protocol walks the protocol's attributes on every call (a quarter of `parity ingest`'s time, hook or not)
        if not self._batched and self.hook is not None and isinstance(self.hook, SignalDecider):
            decider = self.hook
            decided = self._guard("signals", lambda: decider.decide(record))
            if isinstance(decided, Record):
                record = decided
        self._guard("flags", lambda: self.metrics.count_flags(o.detector for o in record.observations if o.flagged))
        seq, self._wal_seq = self._wal_seq, None
        if seq is not None:  # built from a logged exchange: the log holds it already, done once it is stored
            self._pending_seqs.append(seq)
        elif self.wal is not None:
            self._guard("wal", lambda: self.wal.append(record) if self.wal is not None else None)
        self._pending.append(record)
        if queued:
            self._queued_in_pending += 1
            self._in_hand = False
        if self._batched:
            self._unmonitored.append(record)  # monitored as a batch when the pending batch is flushed
        elif self.hook is not None:
            hook = self.hook
            self._guard("monitor", lambda: self.publish(hook.observe(record)))
        if len(self._pending) >= self.batch_size:
            self._flush()

    def _monitor_pending(self) -> None:
        """Run the records accepted since the last call through the monitor in one batch (a hook with
        ``observe_batch``, such as :class:`SegmentMonitor`: the same alerts as record by record, far fewer calls)
        and publish its alerts. Called before the pending records are written, before feedback and change-log
        updates reach the monitor, and before a checkpoint, so the monitor sees every item in arrival order."""
        if not self._unmonitored:
            return
        batch, self._unmonitored = self._unmonitored, []
        observe_batch = getattr(self.hook, "observe_batch", None)
        if not callable(observe_batch):
            return
        decided: list[Record] = []
        alerts = self._guard("monitor", lambda: observe_batch(batch, decided=decided))
        if len(decided) == len(batch):  # the records as the monitor decided them are the ones stored
            by_id = {id(before): after for before, after in zip(batch, decided, strict=True)}
            self._pending = [by_id.get(id(r), r) for r in self._pending]
        self._guard("monitor", lambda: self.publish(alerts if isinstance(alerts, list) else None))

    def feedback(self, event: FeedbackEvent) -> None:
        """Store a feedback event and pass it to the monitor (never raises)."""
        self._flush()
        self._write("feedback", [event], lambda: self.store.write_feedback([event]))
        if self.hook is not None:
            hook = self.hook
            self._guard("monitor", lambda: self.publish(hook.observe_feedback(event)))

    def add_changes(self, changes: Sequence[Change]) -> None:
        """Persist changes and pass them to the monitor hook (for attribution). Call it on the worker thread
        (``submit(ChangeBatch(...))``), before :meth:`start`, or when driving the worker synchronously."""
        if not changes:
            return
        batch = list(changes)
        self._write("changes", batch, lambda: self.store.write_changes(batch))
        if self.hook is not None:
            self._monitor_pending()
            self.publish(self.hook.add_changes(batch))  # open alerts re-attributed in the light of the changes

    def publish(self, alerts: Sequence[Alert] | None, *, notify: Collection[str] | None = None) -> None:
        """The one exit for alerts: the pending records first (an alert never refers to an unstored record), then
        the alerts (insert or replace by id; spooled if the store fails), then every notifier (only the alerts
        whose ids are in ``notify`` when given: a restart's replay re-raises alerts that were sent before it).
        Each new alarm is counted once in ``/metrics`` (``parity_monitor_alarms_total``; the one that opens an
        incident also in ``parity_monitor_alerts_total``, the alerts a person is notified of)."""
        if not alerts:
            return
        self._flush()
        batch = list(alerts)
        self.alerts_published += len(batch)
        self._write("alerts", batch, lambda: self.store.write_alerts(batch))
        for alert in batch:
            if notify is not None and alert.alert_id not in notify:
                continue
            if alert.alert_id not in self._alarms_counted:
                self._alarms_counted.add(alert.alert_id)
                self.metrics.count_alarm(alert.signal, opens_incident=alert.opens_incident)
            for notifier in self.notifiers:
                try:
                    notifier.send(alert)
                except Exception as err:  # a notifier must not break the pipeline; the shipped ones never raise
                    self._log_error("notifier", f"notifier {type(notifier).__name__} failed: {err}")
        if self.hook is not None:
            open_alerts = self.hook.open_alerts
            self.metrics.set_open_alerts(Counter(a.signal for a in open_alerts))
            self.metrics.set_open_incidents(len({a.incident or a.alert_id for a in open_alerts}))

    # -- store, spool, write-ahead log -------------------------------------------------------------------
    def flush(self) -> None:
        """Write the pending batch now (to the store, or the spool when the store fails)."""
        self._flush()

    def _flush(self, *, dedupe: bool = False) -> None:
        self._monitor_pending()  # its alerts' publish writes the pending records first
        if isinstance(self.hook, BufferingHook):
            hook = self.hook
            self.publish(self._guard("monitor", hook.drain))
        if not self._pending:
            return
        batch = self._pending
        self._pending = []
        seqs, self._pending_seqs = self._pending_seqs, []
        dedupe = dedupe or self.dedupe
        if self._write("records", batch, lambda: self._write_records(batch, dedupe=dedupe)):
            self.records_written += len(batch)
            self.metrics.records_written.inc(len(batch))
        queued, self._queued_in_pending = self._queued_in_pending, 0
        self._done(queued)
        self._last_flush = self._clock()
        if self.wal is not None:  # stored or spooled: what the log held of them is done
            wal = self.wal
            if seqs:
                self._guard("wal", partial(wal.done, seqs))
            if not self._pending:
                self._guard("wal", wal.records_done)
        if self.checkpointer is not None and self.restored is not None:
            self._checkpoint(force=False)  # after the restore only: never overwrite a snapshot not yet read

    def _write_records(self, batch: list[Record], *, dedupe: bool) -> None:
        if dedupe:
            batch = self._unstored(batch)
        self.store.write_records(batch)

    def _unstored(self, batch: list[Record]) -> list[Record]:
        """The records of ``batch`` the store does not hold yet (a replay after a crash may repeat some)."""
        if not batch:
            return batch
        since = min(r.time for r in batch)
        until = max(r.time for r in batch) + timedelta(microseconds=1)
        if isinstance(self.store, RecordIdReader):  # the ids alone, not the records (a re-read file holds them all)
            held = self.store.stored_record_ids(since=since, until=until)
        else:
            held = {r.record_id for r in self.store.records(since=since, until=until)}
        seen: set[str] = set()
        out = []
        for r in batch:
            if r.record_id not in held and r.record_id not in seen:
                seen.add(r.record_id)
                out.append(r)
        return out

    def _store_ready(self) -> bool:
        return self.store_error is None or self._clock() >= self._retry_at

    def _write(self, kind: str, items: Sequence[Any], write: Callable[[], None]) -> bool:
        """Write ``items`` to the store; on failure spool them (True only when the store took them)."""
        if self._store_ready():
            try:
                write()
            except Exception as err:
                self._store_failed(err)
            else:
                self._store_recovered()
                return True
        self._spool_items(kind, items)
        return False

    def _store_failed(self, err: Exception) -> None:
        self.metrics.store_errors.inc()
        if self.store_error is not None:
            self._retry_wait = min(self._retry_wait * 2, STORE_RETRY_S[1])
        self.store_error = f"{type(err).__name__}: {err}"
        self._retry_at = self._clock() + self._retry_wait
        self._log_error("store", f"store write failed, spooling to disk and retrying: {self.store_error}")

    def _store_recovered(self) -> None:
        if self.store_error is not None:
            log.warning("store writable again; draining the spool (%d items)", self.spool.pending if self.spool else 0)
        self.store_error = None
        self._retry_wait = STORE_RETRY_S[0]

    def _spool_items(self, kind: str, items: Sequence[Any]) -> None:
        n = len(items) if kind == "records" else 0
        if self.spool is None:
            if n:
                self._drop(n, "the store failed and no spool is configured")
            return
        if kind == "records":
            data = [{"kind": "record", "record": r.to_dict()} for r in items]
        elif kind == "alerts":
            data = [{"kind": "alert", "alert": a.to_dict()} for a in items]
        elif kind == "feedback":
            data = [{"kind": "feedback", "feedback": feedback_to_dict(e)} for e in items]
        else:
            data = [{"kind": "change", "change": c.to_dict()} for c in items]
        try:
            self.spool.extend(data)
        except OSError as err:
            if n:
                self._drop(n, f"spool {self.spool.path} cannot be written either: {err}")
            return
        self.store_spooled += n
        self._spool_gauges()

    def _drain_spool(self) -> None:
        """Hand the spool back: exchanges through the pipeline, stored items straight to the store (records it does
        not hold yet). A batch the store refuses stays in the spool for the next retry."""
        if self.spool is None:
            return
        self._flush()
        for batch in self.spool.drain(self.batch_size):
            records: list[Record] = []
            alerts: list[Alert] = []
            feedback: list[FeedbackEvent] = []
            changes: list[Change] = []
            for data in batch:
                try:
                    kind = data.get("kind", "exchange")
                    if kind == "record":
                        records.append(Record.from_dict(data["record"]))
                    elif kind == "alert":
                        alerts.append(alert_from_dict(data["alert"]))
                    elif kind == "feedback":
                        feedback.append(feedback_from_dict(data["feedback"]))
                    elif kind == "change":
                        changes.append(change_from_dict(data["change"]))
                    else:
                        self._handle(Exchange.from_dict(data), queued=False)
                except (KeyError, ValueError, TypeError) as err:
                    self._reject("spool", err)
            try:
                self._write_records(records, dedupe=True)
                if changes:
                    self.store.write_changes(changes)
                if feedback:
                    self.store.write_feedback(feedback)  # at-least-once: a crash mid-drain may repeat an event
                if alerts:
                    self.store.write_alerts(alerts)  # insert or replace by id
            except Exception as err:
                self._store_failed(err)
                return  # this batch was not taken: it stays in the spool
            self._store_recovered()
            self.records_written += len(records)
            self.metrics.records_written.inc(len(records))
            self._flush(dedupe=True)  # records built from spooled exchanges
            self._spool_gauges()
            if self.store_error is not None:
                return
        self._spool_gauges()

    def checkpoint(self) -> None:
        """Snapshot the monitor now, if checkpoints are on (a synchronous driver's last step; ``stop`` does it for
        the thread). Never raises."""
        if self.restored is not None:
            self._monitor_pending()
            self._checkpoint(force=True)

    def drain(self) -> None:
        """Drain the spool into the store now, if the store takes writes (for a synchronous driver's last step)."""
        if self.spool is not None and self.spool.pending and self._store_ready():
            self._guard("spool", self._drain_spool)

    def recover(self) -> None:
        """Replay a previous run's write-ahead log into the store (skipping records it holds), then the spool."""
        if self.wal is not None:
            wal = self.wal
            replayed = self._guard("wal", wal.replay)
            if isinstance(replayed, list) and replayed:
                log.warning("replaying %d entries from the write-ahead log %s", len(replayed), wal.path)
                for entry in replayed:
                    if isinstance(entry, Record):
                        self._pending.append(entry)
                        continue
                    try:
                        raw = RawExchange.from_wal(entry)
                    except (ValueError, KeyError, TypeError, AttributeError) as err:
                        wal.skipped += 1
                        log.warning("write-ahead log %s: an exchange unreadable (%s); skipped", wal.path, err)
                        continue
                    self._handle(raw, queued=False)  # scored and built now, as the run that crashed would have
                self._flush(dedupe=True)
                self._guard("wal", wal.clear)  # stored, spooled or counted: the next run must not replay it
        if self.spool is not None and self.spool.pending:
            self._guard("spool", self._drain_spool)
        self._restore()

    def _restore(self) -> None:
        """Restore the monitor's checkpoint and replay the stored records it has not seen (the write-ahead log's
        included); publish the alerts that replay raised, sending only those the store did not hold."""
        if self.checkpointer is None or self.restored is not None:
            return
        monitor = cast(Checkpointable, self.hook)
        result = self._guard("checkpoint", lambda: self.checkpointer.restore(monitor) if self.checkpointer else None)
        if not isinstance(result, RestoreResult):
            self.restored = RestoreResult(restored=False, reason="restore failed")
            return
        self.restored = result
        if result.restored:
            log.info(
                "monitor state restored from the checkpoint of %s; %d stored records replayed, %d new alerts",
                result.taken_at.isoformat() if result.taken_at else "?",
                result.replayed,
                len(result.new_alerts),
            )
        self.publish(result.alerts, notify={a.alert_id for a in result.new_alerts})

    def _checkpoint(self, *, force: bool) -> None:
        """Snapshot the monitor (every ``checkpoint_interval_s``, or now when ``force``); never raises."""
        checkpointer = self.checkpointer
        if checkpointer is None:
            return
        monitor = cast(Checkpointable, self.hook)
        if force:
            self._guard("checkpoint", lambda: checkpointer.save(monitor))
        else:
            checkpointer.maybe_save(monitor)

    def _spool_gauges(self) -> None:
        pending = self.spool.pending if self.spool is not None else 0
        self.metrics.spool_pending.set(pending)
        self.metrics.spool_records.set(pending)

    def _drop(self, n: int, why: str) -> None:
        self.dropped += n
        self._last_drop = self._clock()
        self.metrics.dropped.inc(n)
        self._log_error("drop", f"{n} record(s) dropped: {why} ({self.dropped} dropped so far)")

    def _reject(self, stage: str, err: BaseException) -> None:
        self.rejected += 1
        self.metrics.rejected.inc()
        self.metrics.worker_errors.labels(stage=stage).inc()
        log.warning("monitor worker: exchange rejected at %s: %s: %s", stage, type(err).__name__, str(err)[:200])

    def _log_error(self, what: str, message: str) -> None:
        now = self._clock()
        last = self._last_error_log.get(what)
        if last is None or now - last >= ERROR_LOG_INTERVAL_S:
            self._last_error_log[what] = now
            log.error("monitor worker: %s", message)

    def _guard(self, stage: str, fn: Callable[[], Any]) -> Any:
        try:
            result = fn()
        except Exception as err:  # the worker must outlive any bad exchange, detector or store hiccup
            self.metrics.worker_errors.labels(stage=stage).inc()
            log.warning("monitor worker: %s failed: %s: %s", stage, type(err).__name__, str(err)[:200])
            return None
        return result if result is not None else True

    # -- health ------------------------------------------------------------------------------------------
    def health(self, *, behind_bound: int | None = None) -> Health:
        """``ok``, ``degraded`` or ``failing``, with a reason per condition (see :data:`HEALTH_STATES`).

        failing: the worker thread is dead, or records were dropped in the last :data:`RECENT_S` seconds.
        degraded: the store is failing (records spooled), items wait in the spool, the worker restarted in the
        last :data:`RECENT_S` seconds, more than ``behind_bound`` (default half the queue) items are outstanding,
        records were dropped earlier in this run, or the change log cannot be polled.
        """
        now = self._clock()
        bound = behind_bound if behind_bound is not None else max(1, self.queue_size // 2)
        thread = self._thread
        spool_pending = self.spool.pending if self.spool is not None else 0
        conditions = {
            "worker_dead": thread is not None and not thread.is_alive() and not self._stop.is_set(),
            "worker_restarted": self._last_restart is not None and now - self._last_restart < RECENT_S,
            "store_failing": self.store_error is not None,
            "spooled": spool_pending > 0,
            "dropping": self._last_drop is not None and now - self._last_drop < RECENT_S,
            "dropped": self.dropped > 0,
            "behind": self._outstanding > bound,
            "changes_unavailable": self.changes_error is not None,
        }
        reasons = {
            "worker_dead": "the monitor worker thread is dead: nothing is being stored",
            "worker_restarted": f"the monitor worker died and was restarted ({self.restarts} restart(s))",
            "store_failing": f"the store cannot be written ({self.store_error}); records go to the spool",
            "spooled": f"{spool_pending} item(s) wait in the spool",
            "dropping": f"{self.dropped} record(s) dropped: neither the store nor the spool could take them",
            "dropped": f"{self.dropped} record(s) were dropped earlier in this run",
            "behind": f"{self._outstanding} exchange(s) wait for the worker (bound {bound})",
            "changes_unavailable": f"the change log cannot be polled ({self.changes_error})",
        }
        failing = conditions["worker_dead"] or conditions["dropping"]
        degraded = any(conditions.values())
        status = "failing" if failing else "degraded" if degraded else "ok"
        for name, holds in conditions.items():
            self.metrics.health_condition.labels(condition=name).set(1 if holds else 0)
        self.metrics.health.set(HEALTH_STATES.index(status))
        counts = {
            "queue_depth": self._queue.qsize(),
            "pending": self._outstanding + len(self._pending) - self._queued_in_pending,  # not yet stored
            "spool_pending": spool_pending,
            "spooled": self.spooled + self.store_spooled,
            "records_written": self.records_written,
            "dropped": self.dropped,
            "rejected": self.rejected,
            "worker_restarts": self.restarts,
            "store_errors": int(self.metrics.store_errors._value.get()),
        }
        return Health(status, tuple(reasons[n] for n, holds in conditions.items() if holds), conditions, counts)


def default_monitor(*, engine: str = "local", workers: int = 1, address: str | None = None) -> MonitorHook:
    """The monitor pipeline (without notifiers: the worker publishes its alerts): one
    :class:`~parity.monitor.detection.pipeline.SegmentMonitor`, or with ``workers`` > 1 or ``engine="ray"`` a
    :class:`~parity.monitor.detection.distributed.ShardedMonitor` whose streams are split across in-process workers or
    Ray actors (``address``: a Ray cluster to join; default a local one). The fleet's short/long split is not the
    monitor's to set: each record's ``context_class`` is decided when it is built
    (:class:`~parity.monitor.intake.scoring.RecordBuilder`)."""
    from parity.monitor.detection.distributed import ShardedMonitor
    from parity.monitor.detection.pipeline import MonitorConfig

    if address is not None and engine != "ray":
        raise InvalidInputError("--address", "needs --engine ray", address)
    config = MonitorConfig()
    if engine == "local" and workers == 1:
        return SegmentMonitor(config=config)
    return ShardedMonitor(config=config, workers=workers, engine=engine, address=address)


@runtime_checkable
class BufferingHook(Protocol):
    """A monitor that holds records in batches (the sharded one): the worker drains it on every store flush, so an
    alert waits at most one flush interval however slow the traffic, and closes it when the worker stops."""

    def drain(self) -> list[Alert]: ...

    def close(self) -> None: ...


def default_notifiers(
    *,
    webhook: str | None = None,
    webhook_format: str = "parity",
    generator_url: str = "",
    every_alarm: bool = False,
) -> list[Notifier]:
    """A log notifier, plus a webhook one when ``webhook`` is given (``webhook_format``: ``parity`` JSON or
    ``alertmanager``, with ``generator_url`` as each alert's link): one message per incident, or every alarm and
    update with ``every_alarm``."""
    from parity.monitor.alerting.alerts import LogNotifier, WebhookNotifier

    notifiers: list[Notifier] = [LogNotifier()]
    if webhook:
        notifiers.append(
            WebhookNotifier(webhook, format=webhook_format, generator_url=generator_url, incidents_only=not every_alarm)
        )
    return notifiers
