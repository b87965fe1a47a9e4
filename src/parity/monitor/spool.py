"""A JSONL overflow spool: when the proxy's queue is full, exchanges go to disk instead of being dropped, and
the worker drains them back when it has caught up.

The file is created with mode 0600 (it holds exchanges not yet reduced to records, i.e. user text) and is
deleted once drained. A line that cannot be parsed (a torn write after a crash) is skipped and counted.

>>> import tempfile, os
>>> spool = Spool(os.path.join(tempfile.mkdtemp(), "spool.jsonl"))
>>> spool.append({"n": 1}); spool.append({"n": 2})
>>> spool.pending
2
>>> [item["n"] for item in spool.drain()]
[1, 2]
>>> spool.pending
0
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("parity.monitor")


class Spool:
    """Append-only JSONL file of pending items; :meth:`drain` hands them back in order and removes them."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._draining = self.path.with_name(self.path.name + ".draining")
        self._pending = 0
        self.skipped = 0
        for p in (self._draining, self.path):  # left over from a previous run
            if p.exists():
                with p.open("rb") as f:
                    self._pending += sum(1 for _ in f)

    @property
    def pending(self) -> int:
        """Items appended and not yet drained."""
        return self._pending

    def append(self, item: dict[str, Any]) -> None:
        """Write one item (one JSON line, flushed)."""
        line = json.dumps(item, separators=(",", ":")) + "\n"
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as f:
                f.write(line)
            self._pending += 1

    def drain(self) -> Iterator[dict[str, Any]]:
        """Yield every pending item, oldest first; appends made meanwhile wait for the next drain."""
        with self._lock:
            if not self._draining.exists():
                if not self.path.exists():
                    return
                os.replace(self.path, self._draining)
        with self._draining.open(encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                with self._lock:
                    self._pending -= 1
                try:
                    item = json.loads(line)
                except ValueError:
                    self.skipped += 1
                    log.warning("spool %s line %d is not JSON; skipped", self._draining, n)
                    continue
                if isinstance(item, dict):
                    yield item
        self._draining.unlink(missing_ok=True)
