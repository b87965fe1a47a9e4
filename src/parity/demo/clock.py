"""The replay's simulated clock: the proxy stamps records and feedback with it, the monitor dates alerts by it.

The replay sets it before each request from the request's place in its simulated day, so simulated time follows
the traffic, not the machine's speed: the same seed gives the same dates on a fast or a slow machine.

>>> from datetime import datetime, timezone
>>> clock = SimulatedClock(datetime(2025, 8, 5, tzinfo=timezone.utc))
>>> clock.set(datetime(2025, 8, 5, 12, tzinfo=timezone.utc))
>>> clock().isoformat()
'2025-08-05T12:00:00+00:00'
>>> clock.set(datetime(2025, 8, 5, 6, tzinfo=timezone.utc))  # never runs backwards
>>> clock().hour
12
"""

from __future__ import annotations

import threading
from datetime import datetime

from parity._exceptions import InvalidInputError

__all__ = ["SimulatedClock"]


class SimulatedClock:
    """A settable, monotonic, thread-safe clock; calling it returns the current simulated time."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise InvalidInputError("start", "must be timezone-aware", start.isoformat())
        self._now = start
        self._lock = threading.Lock()

    def set(self, when: datetime) -> None:
        """Move the clock to ``when`` (ignored if that is earlier than now: the clock never runs backwards)."""
        if when.tzinfo is None:
            raise InvalidInputError("when", "must be timezone-aware", when.isoformat())
        with self._lock:
            if when > self._now:
                self._now = when

    def __call__(self) -> datetime:
        with self._lock:
            return self._now
