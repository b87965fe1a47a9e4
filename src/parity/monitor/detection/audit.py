"""The routing audit: rules checked on every record; violations become a per-segment rate signal, so they alert
through the same per-segment sequential tests (``routing.<rule>``) as the detectors' flags.

Two rules ship, both configurable:

- :class:`PoolContextRule` - "short-context requests are not served by the long-context pool": a record with
  ``context_class`` ``short`` and ``pool`` in ``long_pools`` violates it. The routing bug of the incident.
- :class:`StickySessionRule` - "sessions do not stay stuck on a degraded server": per session hash, a run of at
  least ``min_run`` consecutive requests on the same server while that record's segment (or a marginal of it) is
  alerting. State is one small entry per recent session (at most ``max_sessions``, least recent evicted); it is
  owned by the shard of the session hash when the audit is distributed.

A rule is any object with a ``name`` and ``check(record, context) -> str | None`` (the finding's detail, or
``None`` when the record complies). A rule whose ``invariant`` attribute is true states something a correct fleet
never does (``PoolContextRule``); the monitor then watches its violations against a fixed tolerance instead of a
learned baseline (``StatsConfig.invariant_rate``), so a few violations suffice to alert. A rule whose ``alerts``
attribute is false is checked and counted (``RoutingAudit.counts``, the dashboard's routing view) but is not a
signal the monitor alerts on: ``StickySessionRule`` by default, because it fires on every session that stays on
its server - which sticky routing makes all of them - as soon as a coarse segment alerts, so its alerts would only
echo that alert. A rule whose ``context_free`` attribute is true reads the record alone, never the monitor (the
:class:`AuditContext`) nor any state (``PoolContextRule``): the monitor's batch path may then read its verdicts
ahead of the alerts of earlier records (``SignalStage.statistics_signals``).

>>> from datetime import datetime, timezone
>>> from parity.monitor import Record
>>> audit = RoutingAudit()
>>> r = Record(record_id="r1", time=datetime(2025, 8, 5, tzinfo=timezone.utc), model="S", pool="long",
...            context_tokens=900)
>>> [(f.rule, f.detail) for f in audit.check(r)]
[('short_on_long_pool', 'short-context request (900 tokens) served by pool long')]
>>> audit.rule_names
('short_on_long_pool', 'sticky_degraded_session')
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from parity._exceptions import InvalidInputError
from parity.monitor._records import CONTEXT_CLASSES, Record

__all__ = [
    "AuditContext",
    "AuditFinding",
    "PoolContextRule",
    "RoutingAudit",
    "RoutingRule",
    "StickySessionRule",
]


def _never_alerting(segment: dict[str, str]) -> bool:
    return False


def _record_segment(record: Record) -> dict[str, str]:
    return record.segment()


@dataclass(frozen=True, slots=True)
class AuditContext:
    """What rules may ask the monitor: a record's segment as the monitor sees it (``segment_of``) and whether a
    segment is alerting (any open alert on it or on a marginal of it)."""

    is_alerting: Callable[[dict[str, str]], bool] = _never_alerting
    segment_of: Callable[[Record], dict[str, str]] = _record_segment


@dataclass(frozen=True, slots=True)
class AuditFinding:
    """One rule violated by one record."""

    rule: str
    record_id: str
    detail: str


class RoutingRule(Protocol):
    """A routing rule: ``check`` returns the violation's detail, or ``None``."""

    @property
    def name(self) -> str: ...

    def check(self, record: Record, context: AuditContext) -> str | None: ...


class PoolContextRule:
    """Records of ``context_class`` (the record's own ``Record.context_class``, decided when it was built at the
    router's split) must not be served by any pool in ``forbidden_pools``. An invariant: a correctly configured
    router never breaks it."""

    invariant = True
    alerts = True
    context_free = True

    def __init__(
        self,
        *,
        name: str = "short_on_long_pool",
        context_class: str = "short",
        forbidden_pools: Sequence[str] = ("long", "long-context", "long_context", "1m"),
    ) -> None:
        if not forbidden_pools:
            raise InvalidInputError("forbidden_pools", "must name at least one pool", forbidden_pools)
        if context_class not in CONTEXT_CLASSES:
            raise InvalidInputError("context_class", f"must be one of {list(CONTEXT_CLASSES)}", context_class)
        self._name = name
        self.context_class = context_class
        self.forbidden_pools = frozenset(forbidden_pools)

    @property
    def name(self) -> str:
        return self._name

    def check(self, record: Record, context: AuditContext) -> str | None:
        if record.context_class == self.context_class and record.pool in self.forbidden_pools:
            return f"{self.context_class}-context request ({record.context_tokens} tokens) served by pool {record.pool}"
        return None


class StickySessionRule:
    """A session's ``min_run``-th and later consecutive requests on one server, while that server's segment is
    alerting, violate the rule. Records without a session hash or server are not checked. Not an invariant, and by
    default not alerting (``alerts=True`` to alert on it): its violations follow the alerts."""

    invariant = False

    def __init__(
        self,
        *,
        name: str = "sticky_degraded_session",
        min_run: int = 3,
        max_sessions: int = 100_000,
        alerts: bool = False,
    ) -> None:
        if min_run < 2:
            raise InvalidInputError("min_run", "must be >= 2", min_run)
        if max_sessions < 1:
            raise InvalidInputError("max_sessions", "must be >= 1", max_sessions)
        self._name = name
        self.alerts = alerts
        self.min_run = min_run
        self.max_sessions = max_sessions
        self._runs: OrderedDict[str, tuple[str, int]] = OrderedDict()

    @property
    def name(self) -> str:
        return self._name

    def check(self, record: Record, context: AuditContext) -> str | None:
        session, server = record.session_hash, record.server
        if not session or not server or server == "unknown":
            return None
        prev = self._runs.pop(session, None)
        run = prev[1] + 1 if prev is not None and prev[0] == server else 1
        self._runs[session] = (server, run)
        if len(self._runs) > self.max_sessions:
            self._runs.popitem(last=False)
        if run >= self.min_run and context.is_alerting(context.segment_of(record)):
            return f"session stayed on server {server} for {run} requests while its segment is alerting"
        return None


class RoutingAudit:
    """Checks every record against ``rules`` (default: both shipped rules)."""

    def __init__(self, rules: Sequence[RoutingRule] | None = None) -> None:
        self.rules: tuple[RoutingRule, ...] = (
            tuple(rules) if rules is not None else (PoolContextRule(), StickySessionRule())
        )
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise InvalidInputError("rules", "must have distinct names", names)
        #: violations seen per rule
        self.counts: dict[str, int] = dict.fromkeys(names, 0)

    @property
    def rule_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.rules)

    def check(self, record: Record, context: AuditContext | None = None) -> list[AuditFinding]:
        """The findings of every rule on ``record``."""
        ctx = context or AuditContext()
        out: list[AuditFinding] = []
        for rule in self.rules:
            detail = rule.check(record, ctx)
            if detail is not None:
                self.counts[rule.name] += 1
                out.append(AuditFinding(rule.name, record.record_id, detail))
        return out
