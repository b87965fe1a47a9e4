"""The worker's write-ahead log: every record built is appended here before it counts as stored, so a hard kill
(``kill -9``, OOM) between building a record and the store's next batch write loses at most ``flush_interval_s``
of records (default 100 ms), not the whole batch.

Appends are buffered in memory and written with one ``write`` + ``fsync`` per flush interval (batched fsync, as
Prometheus' WAL and Kafka's ``flush.ms`` do). Once every record in the log is stored (or spooled), the worker
empties it (:meth:`clear`); on the next start :meth:`replay` hands back what a crashed run left, and the worker
writes those records to the store, skipping any it already holds (records carry ids). A torn last line (the
crash hit mid-write) is skipped and counted in ``skipped``. The file is created with mode 0600.

>>> import tempfile, os
>>> from datetime import datetime, timezone
>>> from parity.monitor import Record
>>> path = os.path.join(tempfile.mkdtemp(), "parity-wal.jsonl")
>>> wal = WriteAheadLog(path)
>>> wal.append(Record(record_id="r1", time=datetime(2025, 8, 5, tzinfo=timezone.utc), model="S"))
>>> wal.sync()
>>> [r.record_id for r in WriteAheadLog(path).replay()]
['r1']
>>> wal.clear(); WriteAheadLog(path).replay()
[]
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from parity._exceptions import InvalidInputError
from parity.monitor._records import Record

__all__ = ["DEFAULT_WAL_FLUSH_S", "WriteAheadLog"]

log = logging.getLogger("parity.monitor")

#: Default interval between write-ahead log flushes (write + fsync), seconds: what a hard kill can lose.
DEFAULT_WAL_FLUSH_S = 0.1


class WriteAheadLog:
    """Append-only JSONL log of records not yet stored (see the module docstring)."""

    def __init__(self, path: str | Path, *, flush_interval_s: float = DEFAULT_WAL_FLUSH_S) -> None:
        if flush_interval_s <= 0:
            raise InvalidInputError("flush_interval_s", "must be > 0", flush_interval_s)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.flush_interval_s = flush_interval_s
        self._lock = threading.Lock()
        self._buffer: list[str] = []
        self._last_sync = time.monotonic()
        self._size = self.path.stat().st_size if self.path.exists() else 0
        self.skipped = 0

    def append(self, record: Record) -> None:
        """Buffer one record; it reaches the disk at the next :meth:`sync` (at most ``flush_interval_s`` away)."""
        line = json.dumps(record.to_dict(), separators=(",", ":")) + "\n"
        with self._lock:
            self._buffer.append(line)

    def maybe_sync(self) -> None:
        """:meth:`sync` when the flush interval has passed since the last one."""
        if self._buffer and time.monotonic() - self._last_sync >= self.flush_interval_s:
            self.sync()

    def sync(self) -> None:
        """Write the buffered records and fsync (raises ``OSError`` when the disk refuses; the buffer is kept)."""
        with self._lock:
            self._last_sync = time.monotonic()
            if not self._buffer:
                return
            data = "".join(self._buffer).encode("utf-8")
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            self._buffer.clear()
            self._size += len(data)

    def clear(self) -> None:
        """Forget every record logged so far (they are stored or spooled): empty the buffer and the file."""
        with self._lock:
            self._buffer.clear()
            if self._size:
                with self.path.open("r+b") as f:
                    f.truncate(0)
                self._size = 0

    def replay(self) -> list[Record]:
        """The records a previous run logged and did not clear, in order (torn lines skipped and counted)."""
        if not self.path.exists():
            return []
        out: list[Record] = []
        with self.path.open("rb") as f:
            for n, line in enumerate(f, start=1):
                try:
                    out.append(Record.from_dict(json.loads(line)))
                except (ValueError, KeyError, TypeError) as err:
                    self.skipped += 1
                    log.warning("write-ahead log %s line %d unreadable (%s); skipped", self.path, n, err)
        return out
