"""Timeline rows: lineage of alerts, escalations, which change fixed which, and the phases drawn."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from parity.dashboard._timeline import lineage, resolving_change, timeline_rows
from parity.monitor import Alert, AttributedChange, Change


def t(day: float) -> datetime:
    return datetime(2025, 8, 1, tzinfo=UTC).replace(day=int(day), hour=int((day % 1) * 24))


def alert(
    alert_id: str,
    signal: str,
    segment: dict[str, str],
    start: float,
    detect: float,
    cause: str | None = None,
    **kw: Any,
) -> Alert:
    causes = (AttributedChange(cause, 0.9, "scope matches"),) if cause else ()
    return replace(Alert(alert_id, signal, segment, t(start), t(detect), 0.1, 0.0, 0.1, 10, causes), **kw)


def fix_of(change: Change, segment: dict[str, str], **kw: Any) -> str | None:
    fix = resolving_change(change, CHANGES, segment, **kw)
    return fix.change_id if fix is not None else None


CORRUPT = Change("c-corrupt", t(25), "corruption", {"platform": "tpu", "model": "O,S"})
SAMPLER = Change("c-sampler", t(26), "sampler", {"platform": "tpu", "model": "H"})
ROUTING = Change("c-route", t(5), "routing", {"model": "S"})
LB = Change("c-lb", t(29), "load_balancing", {"model": "S"})
FIXES = [
    Change("r-scope", t(27), "rollback", {"platform": "tpu"}, "rollback of the tpu flag"),
    Change("r-O", t(28), "rollback", {"platform": "tpu", "model": "O"}, "rollback of c-corrupt for O"),
    Change("r-S", t(30), "rollback", {"platform": "tpu", "model": "S"}, "rollback of c-corrupt"),
    Change("fix-route", t(31), "fix", {"model": "S"}, "router fix"),
]
CHANGES = [ROUTING, CORRUPT, SAMPLER, LB, *FIXES]


def test_a_rollback_naming_the_change_wins_over_an_earlier_one_by_scope() -> None:
    assert fix_of(CORRUPT, {"model": "S", "platform": "tpu"}) == "r-S"
    assert fix_of(CORRUPT, {"model": "O", "platform": "tpu"}) == "r-O"
    # no rollback names the sampler change: the first later one naming no other change whose scope overlaps it
    assert fix_of(SAMPLER, {"model": "H", "platform": "tpu"}) == "r-scope"
    assert fix_of(SAMPLER, {"model": "H"}, after=t(27)) is None
    # r-scope (platform=tpu) shares no dimension with the router change; r-S names another change
    assert fix_of(ROUTING, {"model": "S"}) == "fix-route"
    assert fix_of(ROUTING, {"model": "O"}) is None


def test_lineage_takes_superseded_marginals_and_the_worsens_chain() -> None:
    coarse = alert("a0", "unexpected_script", {"platform": "tpu"}, 25, 26, "c-corrupt", status="superseded")
    other_signal = alert("a9", "code_integrity", {"platform": "tpu"}, 25, 26, status="superseded")
    first = alert(
        "a1", "unexpected_script", {"model": "S", "platform": "tpu"}, 25, 27, "c-corrupt", status="superseded"
    )
    worse = alert("a2", "unexpected_script", {"model": "S", "platform": "tpu"}, 29, 29.5, "c-lb", worsens="a1")
    found = lineage(worse, [coarse, other_signal, first, worse])
    assert [a.alert_id for a in found] == ["a0", "a1", "a2"]


def test_rows_phases_and_order() -> None:
    alerts = [
        alert("a0", "unexpected_script", {"platform": "tpu"}, 25, 26, "c-corrupt", status="superseded"),
        alert("a1", "unexpected_script", {"model": "S", "platform": "tpu"}, 25.5, 27, "c-corrupt"),
        alert("a2", "unexpected_script", {"model": "O", "platform": "tpu"}, 25.5, 26.5, "c-corrupt"),
        alert("r1", "routing.short_on_long_pool", {"model": "S", "pool": "long"}, 6, 8, "c-route", status="superseded"),
        alert("r2", "routing.short_on_long_pool", {"model": "S", "pool": "long"}, 29, 29.5, "c-lb", worsens="r1"),
        alert("x1", "feedback", {"region": "eu"}, 20, 21),
    ]
    rows = timeline_rows(alerts, CHANGES)
    assert [(r.kind, r.change_id if r.kind == "change" else ",".join(r.segment.values())) for r in rows] == [
        ("change", "c-route"),
        ("segment", "S,long"),
        ("change", "c-corrupt"),
        ("segment", "O,tpu"),  # both detected on day 26 (the tpu-wide alert), then by label
        ("segment", "S,tpu"),
        ("change", "c-lb"),
        ("segment", "eu"),
    ]
    route, o_tpu, s_tpu = rows[1], rows[3], rows[4]
    # the S row stands for the tpu-wide alert that came first: detected on day 26, not 27
    assert (s_tpu.moved_at, s_tpu.detected_at, s_tpu.fixed_at, s_tpu.fix_change_id) == (t(25), t(26), t(30), "r-S")
    assert [(p.state, p.start, p.end) for p in s_tpu.phases(t(31))] == [
        ("undetected", t(25), t(26)),
        ("detected", t(26), t(30)),
        ("fixed", t(30), t(31)),
    ]
    assert (o_tpu.fixed_at, o_tpu.fix_change_id) == (t(28), "r-O")
    # the routing fault escalated after the load-balancing change: worsening until the fix
    assert (route.worsened_at, route.escalated_at, route.escalation_change_id) == (t(29), t(29.5), "c-lb")
    assert (route.fixed_at, route.fix_change_id) == (t(31), "fix-route")
    assert [(p.state, p.start) for p in route.phases(datetime(2025, 9, 2, tzinfo=UTC))] == [
        ("undetected", t(6)),
        ("detected", t(8)),
        ("worsening", t(29)),
        ("fixed", t(31)),
    ]
    corrupt = rows[2]
    assert (corrupt.moved_at, corrupt.detected_at, corrupt.fixed_at) == (t(25), t(26), t(30))  # the last of its rows
    lb = rows[5]
    assert (lb.detected_at, lb.fixed_at) == (t(29.5), t(31))  # detected by the escalation, fixed by the router fix
    assert rows[-1].change_id is None
    assert rows[-1].fixed_at is None
    assert [p.state for p in rows[-1].phases(t(31))] == ["undetected", "detected"]


def test_a_fault_named_by_a_rollback_but_never_alerted_is_a_row_that_was_never_detected() -> None:
    rows = timeline_rows([], CHANGES)
    assert [r.change_id for r in rows] == ["c-corrupt"]  # r-O and r-S name it
    assert [p.state for p in rows[0].phases(t(31))] == ["undetected", "fixed"]
    assert rows[0].fixed_at == t(28)


def test_a_detection_after_the_fix_is_not_drawn_as_live() -> None:
    late = alert("a", "unexpected_script", {"model": "O", "platform": "tpu"}, 25, 28.5, "c-corrupt")
    (row,) = (r for r in timeline_rows([late], CHANGES) if r.kind == "segment")
    assert row.fixed_at == t(28)
    assert row.detected_at == t(28.5)
    assert [p.state for p in row.phases(t(31))] == ["undetected", "fixed"]


def test_a_lab_change_log_links_rollbacks_through_params_change_id() -> None:
    """The lab's rollbacks name what they undo in ``params.change_id`` only; ``change_from_dict`` keeps it in the
    description, so a corruption rollback on model S is not taken for the fix of a load-balancing change on S."""
    from parity.monitor._codec import change_from_dict

    def entry(day: int, change_id: str, kind: str, scope: dict[str, str], reverts: str | None = None) -> Change:
        params = {"change_id": reverts} if reverts else {}
        return change_from_dict(
            {
                "time": t(day).isoformat(),
                "id": change_id,
                "kind": kind,
                "scope": scope,
                "description": f"{kind} {change_id}",
                "params": params,
            }
        )

    log = [
        entry(5, "routing-1p", "routing", {"model": "S", "platform": "gpu"}),
        entry(25, "corruption-S", "corruption", {"model": "S", "platform": "tpu"}),
        entry(29, "lb-0829", "load_balancing", {"model": "S"}),
        entry(30, "rollback-corruption-S", "rollback", {"model": "S", "platform": "tpu"}, "corruption-S"),
        entry(31, "fix-routing-1p", "fix", {"model": "S", "platform": "gpu"}, "routing-1p"),
    ]
    assert log[3].description == "rollback rollback-corruption-S (reverts corruption-S)"
    segment = {"model": "S", "context_class": "short"}
    first = alert("r1", "routing.short_on_long_pool", segment, 6, 8, "routing-1p", status="superseded")
    worse = alert("r2", "routing.short_on_long_pool", segment, 29, 29.5, "lb-0829", worsens="r1")
    rows = {r.change_id if r.kind == "change" else "segment": r for r in timeline_rows([first, worse], log)}
    assert set(rows) == {"routing-1p", "lb-0829", "corruption-S", "segment"}
    assert (rows["segment"].fix_change_id, rows["segment"].fixed_at) == ("fix-routing-1p", t(31))
    assert (rows["lb-0829"].fix_change_id, rows["lb-0829"].detected_at) == ("fix-routing-1p", t(29.5))
    assert rows["corruption-S"].fix_change_id == "rollback-corruption-S"  # named by a rollback, never alerted
    assert rows["corruption-S"].detected_at is None


def test_a_rollback_blamed_by_attribution_is_not_a_fault_row() -> None:
    blamed = alert("a", "unexpected_script", {"model": "O", "platform": "tpu"}, 28.5, 29, "r-O")
    rows = timeline_rows([blamed], CHANGES)
    assert [(r.kind, r.change_id) for r in rows] == [("change", "c-corrupt"), ("segment", "r-O")]


def test_every_escalation_ties_its_change_to_the_row() -> None:
    segment = {"model": "S", "pool": "long"}
    a1 = alert("r1", "routing.short_on_long_pool", segment, 6, 8, "c-route", status="superseded")
    a2 = alert("r2", "routing.short_on_long_pool", segment, 20, 21, "c-route", status="superseded", worsens="r1")
    a3 = alert("r3", "routing.short_on_long_pool", segment, 29, 29.5, "c-lb", worsens="r2")
    rows = timeline_rows([a1, a2, a3], CHANGES)
    route = next(r for r in rows if r.kind == "segment")
    assert route.escalated_by == (("c-route", t(21)), ("c-lb", t(29.5)))
    assert route.worsened_at == t(20)
    lb = next(r for r in rows if r.change_id == "c-lb" and r.kind == "change")
    assert (lb.detected_at, lb.fixed_at) == (t(29.5), route.fixed_at)
