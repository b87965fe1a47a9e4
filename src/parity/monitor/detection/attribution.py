"""Change attribution: rank the changes in a change log as the likely cause of an alert, with the evidence.

For an alert on segment ``A`` with estimated start ``t0``, latest plausible start ``t0' >= t0`` (the end of the
start estimate's support interval: a rare signal's start is uncertain) and detection time ``t1``, each change ``c``
scores ``time(c) * scope(c) * siblings(c)`` in [0, 1]:

- **time**: a change after ``t1``, or more than ``lead_tolerance`` after ``t0'``, cannot be the cause (score 0).
  Before ``t0``: ``exp(-(t0 - c.time) / recency_scale)``, so the most recent change before the start wins. Between
  ``t0`` and ``t0'`` (consistent with the data, if less likely than ``t0``): falls linearly from 1 to 1/2. Within
  ``lead_tolerance`` after ``t0'`` (the times are estimates): falls linearly from 1/2 to 0.
- **scope**: a scope fixing a dimension to a value other than the segment's cannot touch the segment (score 0).
  Otherwise ``(1 + matched) / (1 + matched + broader + narrower)``, where ``matched`` counts the dimensions both
  fix to the same value, ``broader`` those the segment fixes but the change does not, ``narrower`` those the change
  fixes but the segment does not. A scope equal to the segment scores 1; a fleet-wide change scores less the more
  specific the segment is.
- **siblings**: for each dimension the change is broader on, the change also reached the segment's siblings along
  it (the same segment with another value there). If a sibling with traffic is *not* alerting, the change would
  have degraded it too, so the score is multiplied by ``sibling_penalty`` for each such dimension.

A change whose scope matches the degraded segment exactly and that landed just before the estimated start scores
close to 1 and ranks first.

>>> from datetime import datetime, timedelta, timezone
>>> from parity.monitor import Change
>>> t0 = datetime(2025, 8, 29, 12, tzinfo=timezone.utc)
>>> changes = [Change("lb-7", t0 - timedelta(minutes=10), "load_balancing", {"model": "S", "pool": "long"}),
...            Change("fleet", t0 - timedelta(minutes=5), "deploy", {}),
...            Change("tpu", t0 - timedelta(minutes=1), "config", {"platform": "tpu"})]
>>> ranked = rank_changes({"model": "S", "pool": "long"}, t0, t0 + timedelta(hours=1), changes)
>>> [(c.change_id, round(c.score, 2)) for c in ranked]
[('lb-7', 0.99), ('fleet', 0.33), ('tpu', 0.25)]
>>> print(ranked[0].evidence)
landed 10 min before the estimated start; scope model=S,pool=long matches the segment exactly

A change a day after the estimated start is ruled out, unless the data support a start as late as that:

>>> late = [Change("tpu-config", t0 + timedelta(hours=24), "config", {"model": "S", "pool": "long"})]
>>> rank_changes({"model": "S", "pool": "long"}, t0, t0 + timedelta(days=3), late)
()
>>> ranked = rank_changes({"model": "S", "pool": "long"}, t0, t0 + timedelta(days=3), late,
...                       latest_start=t0 + timedelta(hours=30))
>>> [(c.change_id, round(c.score, 2)) for c in ranked]
[('tpu-config', 0.6)]
>>> for part in ranked[0].evidence.split("; "):
...     print(part)
landed 24.0 h after the estimated start, before the latest start the data support (30.0 h after it)
scope model=S,pool=long matches the segment exactly
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from parity._exceptions import InvalidInputError
from parity.monitor._records import AttributedChange, Change

__all__ = ["AttributionConfig", "rank_changes", "scope_values"]


@dataclass(frozen=True, slots=True)
class AttributionConfig:
    """How candidate changes are scored (see the module docstring)."""

    recency_scale: timedelta = timedelta(hours=24)
    lead_tolerance: timedelta = timedelta(minutes=30)
    sibling_penalty: float = 0.5
    max_candidates: int = 5

    def __post_init__(self) -> None:
        if self.recency_scale <= timedelta(0):
            raise InvalidInputError("recency_scale", "must be > 0", self.recency_scale)
        if self.lead_tolerance < timedelta(0):
            raise InvalidInputError("lead_tolerance", "must be >= 0", self.lead_tolerance)
        if not 0 <= self.sibling_penalty <= 1:
            raise InvalidInputError("sibling_penalty", "must be in [0, 1]", self.sibling_penalty)
        if self.max_candidates < 1:
            raise InvalidInputError("max_candidates", "must be >= 1", self.max_candidates)


def scope_values(value: str) -> frozenset[str]:
    """The values a scope entry covers: ``"O,S"`` covers both.

    >>> sorted(scope_values("O, S"))
    ['O', 'S']
    """
    return frozenset(v.strip() for v in value.split(",") if v.strip())


def _fmt_delta(delta: timedelta) -> str:
    seconds = abs(delta.total_seconds())
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _label(scope: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in scope.items()) or "(whole fleet)"


def rank_changes(
    segment: Mapping[str, str],
    started_at: datetime,
    detected_at: datetime,
    changes: Iterable[Change],
    *,
    siblings: Callable[[str], Sequence[tuple[dict[str, str], bool]]] | None = None,
    latest_start: datetime | None = None,
    config: AttributionConfig | None = None,
) -> tuple[AttributedChange, ...]:
    """Rank ``changes`` as causes of a change on ``segment`` that began about ``started_at`` (and no later than
    ``latest_start``, by default ``started_at``) and was detected at ``detected_at``; best first, zero scores
    dropped, at most ``config.max_candidates``.

    ``siblings(dimension)`` lists the segment's siblings along ``dimension`` that have traffic, each with whether
    it is alerting; without it the sibling factor is 1.
    """
    cfg = config or AttributionConfig()
    window = max(latest_start - started_at, timedelta(0)) if latest_start is not None else timedelta(0)
    scored: list[AttributedChange] = []
    for change in changes:
        if change.time > detected_at:
            continue
        lead = change.time - started_at  # > 0: landed after the estimated start
        if lead > window + cfg.lead_tolerance:
            continue
        if lead <= timedelta(0):
            time_score = math.exp(-(-lead / cfg.recency_scale))
            when = f"landed {_fmt_delta(lead)} before the estimated start"
        elif lead <= window:
            time_score = 1 - 0.5 * (lead / window)
            when = (
                f"landed {_fmt_delta(lead)} after the estimated start, before the latest start the data support "
                f"({_fmt_delta(window)} after it)"
            )
        else:
            tol = cfg.lead_tolerance.total_seconds()
            time_score = 0.5 * (1 - (lead - window).total_seconds() / tol) if tol > 0 else 0.0
            when = f"landed {_fmt_delta(lead)} after the estimated start (within its uncertainty)"
        matched: list[str] = []
        broader: list[str] = []
        narrower: list[str] = []
        disjoint = False
        for dim, value in change.scope.items():
            covered = scope_values(value)
            if dim in segment:
                if segment[dim] in covered:
                    matched.append(dim)
                else:
                    disjoint = True
            else:
                narrower.append(dim)
        if disjoint:
            continue
        broader = [d for d in segment if d not in change.scope]
        scope_score = (1 + len(matched)) / (1 + len(matched) + len(broader) + len(narrower))
        if not change.scope:
            what = "is fleet-wide"
        elif not broader and not narrower:
            what = f"scope {_label(change.scope)} matches the segment exactly"
        else:
            parts = [f"scope {_label(change.scope)}"]
            if matched:
                parts.append(f"matches on {','.join(matched)}")
            if broader:
                parts.append(f"is broader on {','.join(broader)}")
            if narrower:
                parts.append(f"is narrower on {','.join(narrower)}")
            what = " ".join(parts[:1]) + " " + "; ".join(parts[1:])
        factor = 1.0
        notes: list[str] = []
        if siblings is not None:
            for dim in broader:
                clean = [s for s, alerting in siblings(dim) if not alerting]
                if clean:
                    factor *= cfg.sibling_penalty
                    notes.append(
                        f"it also covers {_label(clean[0])}"
                        + (f" and {len(clean) - 1} more" if len(clean) > 1 else "")
                        + ", not alerting"
                    )
                elif siblings(dim):
                    notes.append(f"the segment's siblings along {dim} are alerting too")
        score = time_score * scope_score * factor
        if score <= 0:
            continue
        evidence = f"{when}; {what}" + ("; " + "; ".join(notes) if notes else "")
        scored.append(AttributedChange(change.change_id, round(score, 4), evidence))
    scored.sort(key=lambda c: -c.score)
    return tuple(scored[: cfg.max_candidates])
