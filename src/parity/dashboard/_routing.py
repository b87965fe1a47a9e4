"""Routing-audit findings: which sessions were served by a pool their context class forbids, and where they
stuck.

Each stored record's verdict is the one the monitor decided (its ``routing.<rule>`` signal, kept with the record);
``rule`` (a :class:`~parity.monitor.detection.audit.PoolContextRule`) is run, read-only, only on records no monitor saw.
In time order, per session hash (already salted by the proxy; raw session ids never reach the store) a
:class:`SessionFinding` counts the violating requests, names the server (and its pool) that served most of
them, and the longest run of consecutive requests of the session that violated the rule on that same server:
the "sticky" routing of the incident, where a session that once landed on a wrong server stayed there.

>>> from datetime import datetime, timedelta, timezone
>>> from parity.monitor import Record
>>> from parity.monitor.detection.audit import PoolContextRule
>>> t = datetime(2025, 8, 5, tzinfo=timezone.utc)
>>> pools = ["short", "long", "long", "long", "short"]
>>> recs = [Record(record_id=f"r{i}", time=t + timedelta(minutes=i), model="S", pool=p, server=f"{p}-0",
...                context_tokens=100, session_hash="h1") for i, p in enumerate(pools)]
>>> found = routing_findings(recs, rule=PoolContextRule())
>>> s = found.sessions[0]
>>> s.session_hash, s.violations, s.requests, s.server, s.longest_run
('h1', 3, 5, 'long-0', 3)
>>> found.n_sessions, found.affected_sessions
(1, 1)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from parity.monitor import Record
from parity.monitor.detection.audit import AuditContext, PoolContextRule
from parity.monitor.detection.signals import audit_signal

__all__ = ["RoutingFindings", "SessionFinding", "routing_findings"]


@dataclass(frozen=True, slots=True)
class SessionFinding:
    """One session's violations of the rule: ``violations`` of its ``requests``; ``server``/``pool`` served most
    of the violating ones; ``longest_run`` consecutive requests of the session violated the rule on ``server``."""

    session_hash: str
    violations: int
    requests: int
    server: str
    pool: str
    longest_run: int
    first_at: datetime
    last_at: datetime
    servers: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "session_hash": self.session_hash,
            "violations": self.violations,
            "requests": self.requests,
            "server": self.server,
            "pool": self.pool,
            "longest_run": self.longest_run,
            "first_at": self.first_at.isoformat(),
            "last_at": self.last_at.isoformat(),
            "servers": dict(self.servers),
        }


@dataclass(frozen=True, slots=True)
class RoutingFindings:
    """The rule's findings over a store: ``sessions`` most violations first; ``n_sessions`` sessions with a hash
    (violating or not), ``n_violations`` violating requests of ``n_requests``, ``unhashed_violations`` of them
    without a session hash."""

    rule: str
    sessions: tuple[SessionFinding, ...]
    n_sessions: int
    n_requests: int
    n_violations: int
    unhashed_violations: int

    @property
    def affected_sessions(self) -> int:
        """Sessions with at least one violating request."""
        return len(self.sessions)

    def to_dict(self, *, limit: int | None = None) -> dict[str, Any]:
        """JSON-ready form, the first ``limit`` sessions (all when ``None``)."""
        shown = self.sessions if limit is None else self.sessions[:limit]
        return {
            "rule": self.rule,
            "n_sessions": self.n_sessions,
            "affected_sessions": self.affected_sessions,
            "n_requests": self.n_requests,
            "n_violations": self.n_violations,
            "unhashed_violations": self.unhashed_violations,
            "sessions": [s.to_dict() for s in shown],
        }


@dataclass
class _Session:
    requests: int = 0
    violations: int = 0
    servers: Counter[str] = field(default_factory=Counter)
    pools: dict[str, str] = field(default_factory=dict)
    runs: dict[str, int] = field(default_factory=dict)
    run_server: str | None = None
    run: int = 0
    first: datetime | None = None
    last: datetime | None = None


def routing_findings(records: Iterable[Record], *, rule: PoolContextRule) -> RoutingFindings:
    """Group the verdicts of ``rule`` on ``records`` by session hash: the monitor's stored verdict, or ``rule`` run
    here on a record no monitor saw (see the module docstring)."""
    signal = audit_signal(rule.name)
    context = AuditContext()
    sessions: dict[str, _Session] = {}
    n_requests = n_violations = unhashed = 0
    for record in sorted(records, key=lambda r: r.time):
        n_requests += 1
        stored = record.signals.get(signal) if record.signals is not None else None
        violated = stored != 0.0 if stored is not None else rule.check(record, context) is not None
        n_violations += violated
        if record.session_hash is None:
            unhashed += violated
            continue
        s = sessions.setdefault(record.session_hash, _Session())
        s.requests += 1
        if not violated:
            s.run_server, s.run = None, 0
            continue
        s.violations += 1
        s.servers[record.server] += 1
        s.pools.setdefault(record.server, record.pool)
        s.run = s.run + 1 if s.run_server == record.server else 1
        s.run_server = record.server
        s.runs[record.server] = max(s.runs.get(record.server, 0), s.run)
        s.first = s.first or record.time
        s.last = record.time
    found: list[SessionFinding] = []
    for session_hash, s in sessions.items():
        if not s.violations or s.first is None or s.last is None:
            continue
        server = max(sorted(s.servers), key=lambda name: s.servers[name])
        found.append(
            SessionFinding(
                session_hash=session_hash,
                violations=s.violations,
                requests=s.requests,
                server=server,
                pool=s.pools[server],
                longest_run=s.runs[server],
                first_at=s.first,
                last_at=s.last,
                servers=dict(s.servers.most_common()),
            )
        )
    found.sort(key=lambda f: (-f.violations, -f.longest_run, f.session_hash))
    return RoutingFindings(rule.name, tuple(found), len(sessions), n_requests, n_violations, unhashed)
