"""Adaptive time bins: the store's span cut into at most :data:`MAX_BINS` equal bins of a round width.

The width is the smallest of :data:`BIN_WIDTHS` that covers the span in at most ``max_bins`` bins, and bins are
aligned to multiples of the width since the Unix epoch (UTC), so the same record falls in the same bin whatever
the span. A replay of the incident (~50 days) gets 12-hour bins; an hour of live traffic gets 1-minute bins.

>>> from datetime import datetime, timezone
>>> bins = bins_for(datetime(2025, 7, 30, tzinfo=timezone.utc), datetime(2025, 9, 18, 23, tzinfo=timezone.utc))
>>> bins.width, bins.count, bins.left(0).isoformat()
(datetime.timedelta(seconds=43200), 102, '2025-07-30T00:00:00+00:00')
>>> bins.index(datetime(2025, 7, 30, 12, 30, tzinfo=timezone.utc))
1
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from parity._exceptions import InvalidInputError

__all__ = ["BIN_WIDTHS", "MAX_BINS", "TimeBins", "bins_for"]

#: Most bins a view is cut into: ~100-200 points per line keep a plot readable and cheap to draw.
MAX_BINS = 200

#: Round bin widths, smallest first.
BIN_WIDTHS: tuple[timedelta, ...] = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=2),
    timedelta(hours=3),
    timedelta(hours=6),
    timedelta(hours=12),
    timedelta(days=1),
    timedelta(days=2),
    timedelta(days=7),
    timedelta(days=30),
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class TimeBins:
    """``count`` bins of ``width`` from ``start`` (aligned); bin ``i`` is ``[left(i), left(i) + width)``."""

    start: datetime
    width: timedelta
    count: int

    def index(self, t: datetime) -> int:
        """The bin holding ``t``, clamped to ``[0, count)``."""
        i = int((t - self.start) // self.width)
        return min(max(i, 0), self.count - 1)

    def left(self, i: int) -> datetime:
        """Left edge of bin ``i``."""
        return self.start + i * self.width

    def lefts(self) -> list[datetime]:
        """Left edges of every bin."""
        return [self.left(i) for i in range(self.count)]

    def centers(self) -> list[datetime]:
        """Middle of every bin (where a bin's value is drawn)."""
        return [self.left(i) + self.width / 2 for i in range(self.count)]

    @property
    def end(self) -> datetime:
        """Right edge of the last bin."""
        return self.left(self.count)


def bins_for(start: datetime, end: datetime, *, max_bins: int = MAX_BINS) -> TimeBins:
    """Bins covering ``[start, end]``: the smallest round width giving at most ``max_bins`` bins (the largest width
    when even that gives more)."""
    if max_bins < 1:
        raise InvalidInputError("max_bins", "must be >= 1", max_bins)
    if end < start:
        raise InvalidInputError("end", f"must not be before start {start.isoformat()}", end.isoformat())
    for width in BIN_WIDTHS:
        first = _EPOCH + ((start - _EPOCH) // width) * width
        count = int((end - first) // width) + 1
        if count <= max_bins:
            break
    return TimeBins(first, width, count)
