"""Routing-audit findings: per session hash, where it stuck and for how long."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from parity.dashboard._routing import routing_findings
from parity.monitor import Record, context_class_of
from parity.monitor.detection.audit import PoolContextRule

T0 = datetime(2025, 8, 5, tzinfo=UTC)
RULE = PoolContextRule()


def rec(i: int, session: str | None, pool: str, server: str, ctx: int = 100) -> Record:
    return Record(
        record_id=f"r{i}",
        time=T0 + timedelta(minutes=i),
        model="S",
        pool=pool,
        server=server,
        context_tokens=ctx,
        context_class=context_class_of(ctx, 192),  # built at the fleet's split
        session_hash=session,
    )


def test_sessions_are_grouped_by_hash_with_their_stuck_server_and_longest_run() -> None:
    records = [
        rec(0, "a", "long", "long-1"),
        rec(1, "a", "long", "long-1"),
        rec(2, "a", "short", "short-0"),  # back on the right pool: the run ends
        rec(3, "a", "long", "long-1"),
        rec(4, "a", "long", "long-0"),
        rec(5, "a", "long", "long-0"),
        rec(6, "a", "long", "long-0"),
        rec(7, "b", "long", "long-0"),
        rec(8, "b", "long", "long-0", ctx=5000),  # a long request on the long pool is fine
        rec(9, "c", "short", "short-1"),
        rec(10, None, "long", "long-0"),
    ]
    found = routing_findings(records, rule=RULE)
    assert (found.rule, found.n_requests, found.n_violations, found.unhashed_violations) == (
        "short_on_long_pool",
        11,
        8,
        1,
    )
    assert (found.n_sessions, found.affected_sessions) == (3, 2)
    a, b = found.sessions
    assert (a.session_hash, a.violations, a.requests) == ("a", 6, 7)
    assert (a.server, a.pool, a.longest_run) == ("long-0", "long", 3)
    assert a.servers == {"long-0": 3, "long-1": 3}
    assert (a.first_at, a.last_at) == (T0, T0 + timedelta(minutes=6))
    assert (b.session_hash, b.violations, b.requests, b.server, b.longest_run) == ("b", 1, 2, "long-0", 1)
    data = found.to_dict(limit=1)
    assert [s["session_hash"] for s in data["sessions"]] == ["a"]
    assert data["affected_sessions"] == 2


def test_ties_on_servers_go_to_the_first_name_and_clean_traffic_has_no_findings() -> None:
    assert routing_findings([rec(0, "a", "short", "short-0")], rule=RULE).sessions == ()
