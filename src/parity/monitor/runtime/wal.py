"""The worker's write-ahead log: what the monitor was handed is logged here before it counts as stored, so a hard
kill (``kill -9``, OOM) loses at most the last ``flush_interval_s`` of it (default 100 ms), not the batch waiting
for the store, nor the queue of exchanges the worker has not reached yet.

Two kinds of entries, one JSON line each:

- **exchanges**, logged when the proxy hands one to the worker (:meth:`append_exchange`, on the request path: a
  list append, nothing encoded there). Under load the worker's queue holds seconds of answered exchanges waiting
  to be scored; logging them only once built into records would lose that whole queue to a crash. Each exchange
  is live until the worker reports the record built from it stored or spooled, or the exchange handled without a
  record (:meth:`done`);
- **records**, logged when the worker accepts a record that did not come from a logged exchange (``parity
  ingest``'s, the OTLP receiver's: :meth:`append`); live until the worker's pending batch is written
  (:meth:`records_done`).

Appends are buffered in memory and written with one ``write`` + ``fsync`` per flush interval (batched fsync, as
Prometheus' WAL and Kafka's ``flush.ms`` do), by a thread of its own once :meth:`start` ran (so a worker busy
scoring a batch does not delay it), else by whoever calls :meth:`maybe_sync`. Entries are encoded on that thread; an
entry done before its flush is never written. When nothing is live the file is emptied; when it grows past
``compact_bytes`` and twice the live entries' size (a steady stream never leaves it empty), the live entries are
rewritten to a fresh file that replaces it atomically. On the next start :meth:`replay` hands back what a crashed
run left (records, and exchanges as their JSON payloads; entries marked done at a later flush are not), and the
worker stores them, skipping records the store already holds (records carry ids). A torn last line (the crash hit
mid-write) is skipped and counted in ``skipped``. The file is created with mode 0600.

>>> import tempfile, os
>>> from datetime import datetime, timezone
>>> from parity.monitor import Record
>>> path = os.path.join(tempfile.mkdtemp(), "parity-wal.jsonl")
>>> wal = WriteAheadLog(path)
>>> wal.append(Record(record_id="r1", time=datetime(2025, 8, 5, tzinfo=timezone.utc), model="S"))
1
>>> seq = wal.append_exchange({"path": "/v1/chat/completions"})
>>> wal.sync()
>>> [getattr(e, "record_id", e) for e in WriteAheadLog(path).replay()]
['r1', {'path': '/v1/chat/completions'}]
>>> wal.records_done(); wal.done([seq]); os.path.getsize(path)
0
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from parity._exceptions import InvalidInputError
from parity.monitor._records import Record

__all__ = ["DEFAULT_WAL_FLUSH_S", "LoggedExchange", "WriteAheadLog"]

log = logging.getLogger("parity.monitor")

#: Default interval between write-ahead log flushes (write + fsync), seconds: what a hard kill can lose.
DEFAULT_WAL_FLUSH_S = 0.1

#: A log larger than this (bytes) and more than half entries already done is compacted to the live ones.
DEFAULT_COMPACT_BYTES = 32 * 1024 * 1024


class LoggedExchange(Protocol):
    """An exchange the log can hold: its JSON payload (the worker's ``RawExchange`` is one)."""

    def to_wal(self) -> dict[str, Any]: ...


Entry = Record | LoggedExchange | Mapping[str, Any]


class WriteAheadLog:
    """Append-only JSONL log of what the worker has not stored yet (see the module docstring)."""

    def __init__(
        self,
        path: str | Path,
        *,
        flush_interval_s: float = DEFAULT_WAL_FLUSH_S,
        compact_bytes: int = DEFAULT_COMPACT_BYTES,
    ) -> None:
        if flush_interval_s <= 0:
            raise InvalidInputError("flush_interval_s", "must be > 0", flush_interval_s)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.flush_interval_s = flush_interval_s
        self.compact_bytes = compact_bytes
        self._lock = threading.Lock()  # the buffer and the live entries (held for list and dict operations only)
        self._io = threading.Lock()  # the file: writes, emptying, compaction (taken before ``_lock``)
        self._seq = 0
        self._buffer: list[tuple[int, Entry]] = []
        self._live: dict[int, bytes | None] = {}  # seq -> its line once written (None: still in the buffer)
        self._records: set[int] = set()  # live entries that are records (done together by records_done)
        self._dead: list[int] = []  # entries in the file done since the last sync, to be marked done there
        self._last_sync = time.monotonic()
        self._size = self.path.stat().st_size if self.path.exists() else 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.skipped = 0
        self.compactions = 0
        self.error: OSError | None = None  # the syncing thread's last failure (None once a sync succeeds)

    # -- appending (any thread) ----------------------------------------------------------------------------------
    def append(self, record: Record, *, alone: bool = False) -> int:
        """Log one record, live until :meth:`records_done` (``alone``: until :meth:`done` names the number
        returned, for a record queued across the worker's flushes); it reaches the disk at the next sync."""
        with self._lock:
            self._seq += 1
            self._buffer.append((self._seq, record))
            self._live[self._seq] = None
            if not alone:
                self._records.add(self._seq)
            return self._seq

    def append_exchange(self, exchange: LoggedExchange | Mapping[str, Any]) -> int:
        """Log one exchange (live until :meth:`done` names the number returned); encoded at the next sync."""
        with self._lock:
            self._seq += 1
            self._buffer.append((self._seq, exchange))
            self._live[self._seq] = None
            return self._seq

    # -- marking done (the worker) -------------------------------------------------------------------------------
    def done(self, seqs: Iterable[int]) -> None:
        """The entries numbered ``seqs`` are stored, spooled or handled: forget them (and empty the file when
        nothing is live any more)."""
        with self._lock:
            for seq in seqs:
                if self._live.pop(seq, None) is not None:
                    self._dead.append(seq)
            empty = not self._live
        if empty:
            self._empty_if_nothing_live()

    def records_done(self) -> None:
        """Every record logged so far is stored or spooled (the worker's pending batch was written)."""
        with self._lock:
            for seq in self._records:
                if self._live.pop(seq, None) is not None:
                    self._dead.append(seq)
            self._records.clear()
            empty = not self._live
        if empty:
            self._empty_if_nothing_live()

    def clear(self) -> None:
        """Forget everything logged so far (a replay stored it all): empty the buffer and the file."""
        with self._io:
            with self._lock:
                self._buffer.clear()
                self._live.clear()
                self._records.clear()
                self._dead.clear()
            self._truncate()

    @property
    def live(self) -> int:
        """Entries logged and not yet done."""
        return len(self._live)

    # -- the disk ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Sync every ``flush_interval_s`` on a thread of the log's own (idempotent); :meth:`close` ends it."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._sync_loop, name="parity-wal-sync", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """End the syncing thread, then sync what is buffered (raises ``OSError`` when the disk refuses)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(10)
        self.sync()

    def _sync_loop(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            try:
                self.sync()
            except OSError as err:  # the worker's own syncs report it through its health; keep the entries
                if self.error is None:
                    log.error("write-ahead log %s cannot be written: %s", self.path, err)
                self.error = err
            else:
                self.error = None

    def maybe_sync(self) -> None:
        """:meth:`sync` when the flush interval has passed since the last one."""
        if self._buffer and time.monotonic() - self._last_sync >= self.flush_interval_s:
            self.sync()

    def sync(self) -> None:
        """Write the buffered entries still live and fsync (raises ``OSError`` when the disk refuses; the entries
        stay buffered)."""
        with self._io:
            with self._lock:
                self._last_sync = time.monotonic()
                batch, self._buffer = self._buffer, []
                batch = [(seq, entry) for seq, entry in batch if seq in self._live]
                dead, self._dead = self._dead, []
            if not batch and not dead:
                return
            lines = [(seq, _encode(seq, entry)) for seq, entry in batch]
            data = b"".join(line for _, line in lines)
            if dead:  # entries written earlier and done since: a replay skips them
                data += b'{"done":[' + ",".join(map(str, dead)).encode("ascii") + b"]}\n"
            try:
                self._write(data, append=True)
            except OSError:
                with self._lock:
                    self._buffer[:0] = batch
                    self._dead[:0] = dead
                raise
            with self._lock:
                for seq, line in lines:
                    if seq in self._live:
                        self._live[seq] = line
                kept = [line for line in self._live.values() if line is not None]
                live_bytes = sum(map(len, kept))
                # the file is mostly entries already done (at least half of it): rewrite it to the live ones
                compact = self._size > max(self.compact_bytes, 2 * live_bytes)
            if compact:
                with self._lock:
                    self._dead.clear()  # the rewritten file holds no entry done
                self._compact(kept)

    def _write(self, data: bytes, *, append: bool) -> None:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        target = self.path if append else self.path.with_name(self.path.name + ".compact")
        fd = os.open(target, flags, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if append:
            self._size += len(data)

    def _compact(self, lines: list[bytes]) -> None:
        """Replace the file by one holding ``lines`` only (the live entries written so far), atomically."""
        data = b"".join(lines)
        self._write(data, append=False)
        os.replace(self.path.with_name(self.path.name + ".compact"), self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself survives a crash
        finally:
            os.close(fd)
        self._size = len(data)
        self.compactions += 1

    def _empty_if_nothing_live(self) -> None:
        with self._io:
            with self._lock:
                if self._live:
                    return
                self._buffer.clear()
                self._dead.clear()
            self._truncate()

    def _truncate(self) -> None:
        if self._size:
            with self.path.open("r+b") as f:
                f.truncate(0)
            self._size = 0

    # -- the next start ------------------------------------------------------------------------------------------
    def replay(self) -> list[Record | dict[str, Any]]:
        """What a previous run logged and did not store, in order: records, and exchanges as the payloads their
        ``to_wal`` gave (torn or unreadable lines skipped and counted)."""
        if not self.path.exists():
            return []
        entries: list[tuple[int | None, Record | dict[str, Any]]] = []
        done: set[int] = set()
        newest = 0
        with self.path.open("rb") as f:
            for n, line in enumerate(f, start=1):
                try:
                    obj = json.loads(line)
                    if "done" in obj:
                        done.update(int(seq) for seq in obj["done"])
                    elif "exchange" in obj:
                        entries.append((obj.get("seq"), dict(obj["exchange"])))
                    else:  # a record; a log written before exchanges were logged holds the bare record
                        entries.append((obj.get("seq"), Record.from_dict(obj.get("record", obj))))
                    if isinstance(obj.get("seq"), int):
                        newest = max(newest, obj["seq"])
                except (ValueError, KeyError, TypeError) as err:
                    self.skipped += 1
                    log.warning("write-ahead log %s line %d unreadable (%s); skipped", self.path, n, err)
        with self._lock:
            # this run numbers its entries after the file's: should the replayed entries stay in the file (the log
            # could not be emptied after the replay), a done marker of this run never names one of them
            self._seq = max(self._seq, newest)
        return [entry for seq, entry in entries if seq is None or seq not in done]


def _encode(seq: int, entry: Entry) -> bytes:
    if isinstance(entry, Record):
        obj: dict[str, Any] = {"seq": seq, "record": entry.to_dict()}
    else:
        obj = {"seq": seq, "exchange": dict(entry) if isinstance(entry, Mapping) else entry.to_wal()}
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode("utf-8")
