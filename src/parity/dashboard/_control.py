"""Control limits drawn around a rate signal: a visual aid, not the alerting rule.

The band of a (signal, segment) series is a binomial 3-sigma band around a fixed baseline rate ``p0``: in a bin
with ``n`` requests carrying the signal,

    ``lower = max(0, p0 - 3 * sqrt(p0 * (1 - p0) / n))``,  ``upper = min(1, p0 + 3 * sqrt(p0 * (1 - p0) / n))``

(no band in a bin without requests). A bin's rate outside it is an unlikely excursion *for that bin alone* (about
0.3% two-sided under the normal approximation, which is loose for small ``n * p0``); with ~100 bins per view a
point or two outside the band on a healthy signal is expected. parity's alerts come from the monitor's
per-stream CUSUM (``parity.stats.sequential``), which accumulates evidence across bins and controls false alarms
over all streams; the band only shows how far a bin sits from normal.

``p0`` is the signal's rate over a baseline period of ``n`` requests with ``k`` ones, estimated as
``(k + 1/2) / (n + 1)`` (the posterior mean under Jeffreys' prior: a baseline without a single flag still draws a
band of non-zero width), see :func:`baseline_rate`. The period is the segment's requests before
:func:`baseline_end` (the first alert or fault-bearing change that can touch the segment), when at least
:data:`MIN_BASELINE_REQUESTS` fall there; else the whole fleet's requests before it; else the whole store.

>>> band = control_band(0.01, [100, 0, 10_000])
>>> [round(u, 5) if u is not None else None for u in band.upper]
[0.03985, None, 0.01298]
>>> band.lower[0], band.outside(0.05, 0), band.outside(0.011, 2)
(0.0, True, False)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from parity._exceptions import InvalidInputError
from parity.dashboard._segment import overlaps, scope_overlaps
from parity.dashboard._timeline import OFF_KINDS
from parity.monitor import Alert, Change

__all__ = ["MIN_BASELINE_REQUESTS", "SIGMAS", "ControlBand", "baseline_end", "baseline_rate", "control_band"]

#: Width of the band in binomial standard deviations of a bin's rate.
SIGMAS = 3.0

#: Fewest requests a baseline period needs before its rate is used as ``p0`` (below it, a rate of 0 or 1 from a
#: handful of requests would draw a band of zero width).
MIN_BASELINE_REQUESTS = 100


@dataclass(frozen=True, slots=True)
class ControlBand:
    """``center`` (the baseline ``p0``) and per-bin ``lower``/``upper`` limits (``None`` in empty bins)."""

    center: float
    lower: tuple[float | None, ...]
    upper: tuple[float | None, ...]

    def outside(self, rate: float, i: int) -> bool:
        """Whether ``rate`` in bin ``i`` lies outside the band (never in an empty bin)."""
        lo, hi = self.lower[i], self.upper[i]
        return lo is not None and hi is not None and not lo <= rate <= hi


def control_band(p0: float, n: Sequence[int], *, sigmas: float = SIGMAS) -> ControlBand:
    """The binomial ``sigmas``-sigma band around ``p0`` for bins of ``n`` requests (see the module docstring)."""
    if not 0.0 <= p0 <= 1.0:
        raise InvalidInputError("p0", "must be in [0, 1]", p0)
    if sigmas <= 0:
        raise InvalidInputError("sigmas", "must be > 0", sigmas)
    lower: list[float | None] = []
    upper: list[float | None] = []
    for count in n:
        if count <= 0:
            lower.append(None)
            upper.append(None)
            continue
        half = sigmas * math.sqrt(p0 * (1.0 - p0) / count)
        lower.append(max(0.0, p0 - half))
        upper.append(min(1.0, p0 + half))
    return ControlBand(p0, tuple(lower), tuple(upper))


def baseline_rate(k: int, n: int) -> float:
    """The baseline ``p0`` from ``k`` ones in ``n`` requests: ``(k + 1/2) / (n + 1)``.

    >>> baseline_rate(0, 999), baseline_rate(10, 999)
    (0.0005, 0.0105)
    """
    if n < 0 or not 0 <= k <= n:
        raise InvalidInputError("k", f"must be in [0, n] with n >= 0 (n={n})", k)
    return (k + 0.5) / (n + 1)


def baseline_end(segment: Mapping[str, str], alerts: Iterable[Alert], changes: Iterable[Change]) -> datetime | None:
    """When the baseline period of ``segment`` ends: the earliest estimated start of an alert on an overlapping
    segment, or landing of a change (other than a rollback or fix) whose scope overlaps it; ``None`` when there
    is neither (the whole store is baseline).

    >>> from datetime import timezone
    >>> t = datetime(2025, 8, 25, tzinfo=timezone.utc)
    >>> baseline_end({"model": "S"}, [], [Change("c1", t, "corruption", {"model": "O"}),
    ...                                   Change("c2", t.replace(day=26), "sampler", {"platform": "tpu"})]).day
    26
    """
    times = [a.started_at for a in alerts if overlaps(a.segment, segment)]
    times += [c.time for c in changes if c.kind not in OFF_KINDS and scope_overlaps(c.scope, segment)]
    return min(times, default=None)
