"""``StoreSummary``: what a store holds, in counts (served by the proxy at ``/parity/records/summary``).

>>> from datetime import datetime, timezone
>>> from parity.monitor import DetectorObservation, Record
>>> t = datetime(2025, 8, 5, tzinfo=timezone.utc)
>>> recs = [Record(record_id=str(i), time=t, model="S", platform="gpu",
...                observations=(DetectorObservation("unexpected_script", i == 0, 0.5),)) for i in range(3)]
>>> s = summarize(recs)
>>> s.records, s.flags
(3, {'unexpected_script': 1})
>>> s.segments[0]
{'model': 'S', 'pool': 'unknown', 'platform': 'gpu', 'records': 3}
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from parity._time import parse_time
from parity.monitor._records import Record


@dataclass(frozen=True, slots=True)
class StoreSummary:
    """Counts of records, feedback, changes and open alerts; per-detector flag counts; traffic per
    (model, pool, platform)."""

    records: int
    feedback: int = 0
    changes: int = 0
    open_alerts: int = 0
    first_time: datetime | None = None
    last_time: datetime | None = None
    flags: dict[str, int] = field(default_factory=dict)
    segments: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (ISO-8601 times)."""
        return {
            "records": self.records,
            "feedback": self.feedback,
            "changes": self.changes,
            "open_alerts": self.open_alerts,
            "first_time": self.first_time.isoformat() if self.first_time else None,
            "last_time": self.last_time.isoformat() if self.last_time else None,
            "flags": dict(self.flags),
            "segments": [dict(s) for s in self.segments],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StoreSummary:
        """Inverse of :meth:`to_dict`."""

        def when(v: Any) -> datetime | None:
            return parse_time(v) if v else None

        return cls(
            records=int(data["records"]),
            feedback=int(data.get("feedback", 0)),
            changes=int(data.get("changes", 0)),
            open_alerts=int(data.get("open_alerts", 0)),
            first_time=when(data.get("first_time")),
            last_time=when(data.get("last_time")),
            flags={str(k): int(v) for k, v in data.get("flags", {}).items()},
            segments=[dict(s) for s in data.get("segments", [])],
        )


def summarize(
    records: Iterable[Record], *, n_feedback: int = 0, n_changes: int = 0, n_open_alerts: int = 0
) -> StoreSummary:
    """Summarise records in one pass (the reference for the DuckDB store's SQL summary)."""
    n = 0
    first: datetime | None = None
    last: datetime | None = None
    flags: Counter[str] = Counter()
    segs: Counter[tuple[str, str, str]] = Counter()
    for r in records:
        n += 1
        first = r.time if first is None or r.time < first else first
        last = r.time if last is None or r.time > last else last
        for obs in r.observations:
            flags[obs.detector] += int(obs.flagged)
        segs[(r.model, r.pool, r.platform)] += 1
    segments = [
        {"model": m, "pool": p, "platform": pl, "records": c}
        for (m, p, pl), c in sorted(segs.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return StoreSummary(n, n_feedback, n_changes, n_open_alerts, first, last, dict(sorted(flags.items())), segments)
