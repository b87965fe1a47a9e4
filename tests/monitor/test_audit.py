"""Routing audit rules."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from parity._exceptions import InvalidInputError
from parity.monitor import Record
from parity.monitor.detection.audit import AuditContext, PoolContextRule, RoutingAudit, StickySessionRule


def test_short_context_on_long_pool(make_record: Callable[..., Record]) -> None:
    audit = RoutingAudit([PoolContextRule(forbidden_pools=("long",))])
    assert audit.check(make_record(0, pool="short", context_tokens=100)) == []
    assert audit.check(make_record(1, pool="long", context_tokens=50_000)) == []
    findings = audit.check(make_record(2, pool="long", context_tokens=100))
    assert [f.rule for f in findings] == ["short_on_long_pool"]
    assert findings[0].record_id == "cmpl-2"
    assert audit.counts == {"short_on_long_pool": 1}


def test_sticky_session_needs_a_run_and_an_alerting_segment(make_record: Callable[..., Record]) -> None:
    rule = StickySessionRule(min_run=3)
    alerting = AuditContext(is_alerting=lambda seg: seg["platform"] == "tpu")
    verdicts = [
        rule.check(make_record(i, platform="tpu", server="tpu-1", session_hash="s"), alerting) is not None
        for i in range(4)
    ]
    assert verdicts == [False, False, True, True]
    # a different server breaks the run
    assert rule.check(make_record(9, platform="tpu", server="tpu-2", session_hash="s"), alerting) is None
    # no alert on the segment: no violation, however long the run
    calm = AuditContext()
    assert all(rule.check(make_record(i, server="gpu-1", session_hash="q"), calm) is None for i in range(5))
    # records without a session are not checked
    assert rule.check(make_record(0, server="tpu-1", session_hash=None), alerting) is None


def test_session_memory_is_bounded(make_record: Callable[..., Record]) -> None:
    rule = StickySessionRule(max_sessions=10)
    for i in range(100):
        rule.check(make_record(i, server="a", session_hash=f"s{i}"), AuditContext())
    assert len(rule._runs) == 10


def test_validation() -> None:
    with pytest.raises(InvalidInputError, match="`min_run` must be >= 2"):
        StickySessionRule(min_run=1)
    with pytest.raises(InvalidInputError, match="`forbidden_pools` must name at least one pool"):
        PoolContextRule(forbidden_pools=())
    with pytest.raises(InvalidInputError, match="`rules` must have distinct names"):
        RoutingAudit([PoolContextRule(), PoolContextRule()])


def test_the_rule_reads_the_context_class_the_record_was_built_with(make_record: Callable[..., Record]) -> None:
    """The lab's router sends prompts over 192 tokens to the long pool: a 500-token request built at that split is
    ``long`` and legitimate there; the same request built at the default split (8192) is ``short`` and violates."""
    rule = PoolContextRule()
    assert rule.check(make_record(0, pool="long", context_tokens=500, context_class="long"), AuditContext()) is None
    assert rule.check(make_record(0, pool="long", context_tokens=500), AuditContext()) is not None
    assert rule.check(make_record(1, pool="long", context_tokens=100), AuditContext()) is not None
    with pytest.raises(InvalidInputError, match="`context_class` must be one of"):
        PoolContextRule(context_class="medium")
