"""A JSONL disk spool: what the monitor's worker could not hand on right away waits here instead of being dropped.

Two things land in it: exchanges, when the worker's queue is full, and records, alerts, feedback and changes,
when the store cannot be written (locked, read-only folder, disk full, schema error). The worker drains it back
(into the pipeline or straight into the store) once it has caught up or the store works again, on the same run
or on the next start.

The file is created with mode 0600 (an exchange not yet reduced to a record holds user text). A drain reads it
in batches; a batch counts as done only when the consumer asks for the next one, so a consumer that stops on an
error (the store failed again) leaves that batch and the rest pending, with the position kept in a side file
(``.draining.offset``). A replayed batch may therefore be handed out twice after a crash: items carry ids and
the worker skips records the store already holds. A line that cannot be parsed (a torn write after a crash) is
skipped and counted in ``skipped``.

>>> import tempfile, os
>>> spool = Spool(os.path.join(tempfile.mkdtemp(), "spool.jsonl"))
>>> spool.append({"n": 1}); spool.extend([{"n": 2}, {"n": 3}])
>>> spool.pending
3
>>> [[item["n"] for item in batch] for batch in spool.drain(batch_size=2)]
[[1, 2], [3]]
>>> spool.pending
0
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("parity.monitor")


class Spool:
    """Append-only JSONL file of pending items; :meth:`drain` hands them back in order, in batches."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._draining = self.path.with_name(self.path.name + ".draining")
        self._offset_file = self.path.with_name(self.path.name + ".draining.offset")
        self._pending = 0
        self.skipped = 0
        offset = self._read_offset()
        for p in (self._draining, self.path):  # left over from a previous run
            if p.is_file():
                with p.open("rb") as f:
                    if p == self._draining:
                        f.seek(offset)
                    self._pending += sum(1 for _ in f)

    @property
    def pending(self) -> int:
        """Items appended and not yet drained."""
        return self._pending

    def append(self, item: dict[str, Any]) -> None:
        """Write one item (one JSON line, flushed). Raises ``OSError`` when the spool cannot be written."""
        self.extend([item])

    def extend(self, items: Sequence[dict[str, Any]]) -> None:
        """Write items (one JSON line each) in one append. Raises ``OSError`` (nothing counted) when the spool
        cannot be written."""
        if not items:
            return
        data = "".join(json.dumps(item, separators=(",", ":")) + "\n" for item in items).encode("utf-8")
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            self._pending += len(items)

    def _read_offset(self) -> int:
        try:
            return int(self._offset_file.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def _commit(self, offset: int, n: int) -> None:
        with self._lock:
            self._pending -= n
        try:
            self._offset_file.write_text(str(offset))
        except OSError as err:  # only costs a re-read (ids de-duplicate) after a crash
            log.warning("spool %s: cannot record drain position: %s", self.path, err)

    def drain(self, batch_size: int = 512) -> Iterator[list[dict[str, Any]]]:
        """Yield pending items in batches, oldest first. A batch is done when the next one is requested (or the
        loop ends); stopping early leaves it pending. Appends made meanwhile wait for the next drain."""
        with self._lock:
            if not self._draining.exists():
                if not self.path.exists():
                    return
                os.replace(self.path, self._draining)
                self._offset_file.unlink(missing_ok=True)
        offset = self._read_offset()
        with self._draining.open("rb") as f:
            f.seek(offset)
            while True:
                batch: list[dict[str, Any]] = []
                lines = 0
                pos = offset
                while len(batch) < batch_size:
                    line = f.readline()
                    if not line:
                        break
                    lines += 1
                    pos += len(line)
                    try:
                        item = json.loads(line)
                    except ValueError:
                        self.skipped += 1
                        log.warning("spool %s: a line at byte %d is not JSON; skipped", self._draining, offset)
                        continue
                    if isinstance(item, dict):
                        batch.append(item)
                if not lines:
                    break
                if batch:
                    yield batch
                offset = pos
                self._commit(offset, lines)
        self._draining.unlink(missing_ok=True)
        self._offset_file.unlink(missing_ok=True)
