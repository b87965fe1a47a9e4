"""The incident timeline: per alerted segment and per fault-bearing change, when it went wrong, when parity saw
it, when it got worse and when it was fixed - the rows of the postmortem's illustration.

**Rows.** One *segment row* per segment with an alert that is not superseded, its alerts' signals merged. A row
covers each such alert's *lineage*: the alerts it superseded on the same signal - coarser segments containing it
that parity alerted on first, and the alerts it (transitively) ``worsens`` (an escalation of the same signal on the
same segment, e.g. the load-balancing change that multiplied the routing fault). The row starts when the signal
moved (the earliest ``started_at`` of the lineage), is detected at the earliest ``detected_at``, worsens from the
``started_at`` of its first escalation, and is fixed when the rollback or fix of the change its root alert (the
first detected) is attributed to landed. One *change row* per fault-bearing change: a change (not itself a
rollback or fix) that a row's root alert or escalation is attributed to, or that a later rollback/fix names. It
starts when the change landed, is detected when the first alert attributed to it was, and is fixed when the last
of its segment rows was (a change that only escalated a fault, like a load-balancing change that multiplied
misrouting, when that fault was; with no row at all, at its first rollback/fix).

**Phases.** Each row is drawn as consecutive bars: ``undetected`` (moved, parity had not alerted yet),
``detected`` (alerted, not yet fixed), ``worsening`` (escalated after detection, not yet fixed) and ``fixed``
(after the fix, to the end of the store's span).

**Which change fixes which.** The monitor's change log keeps ``change_id``, ``time``, ``kind``, ``scope`` and
``description`` only. A change of a kind in :data:`OFF_KINDS` landing after change ``c`` resolves it for a
segment when its scope overlaps the segment and either its description names ``c.change_id`` (preferred; e.g.
``"rollback of c-0825"``, or the ``"(reverts c-0825)"`` that ``change_from_dict`` adds for a lab change-log entry
whose ``params.change_id`` names it) or, when no later rollback names it, its scope overlaps ``c``'s. The earliest such
change counts.

>>> from datetime import datetime, timezone
>>> from parity.monitor import Alert, AttributedChange, Change
>>> t = lambda day: datetime(2025, 8, day, tzinfo=timezone.utc)
>>> changes = [Change("c-corrupt", t(25), "corruption", {"platform": "tpu", "model": "O,S"}),
...            Change("c-fix-O", t(28), "rollback", {"platform": "tpu", "model": "O"}, "rollback of c-corrupt"),
...            Change("c-fix-S", t(30), "rollback", {"platform": "tpu", "model": "S"}, "rollback of c-corrupt")]
>>> alert = Alert("a1", "unexpected_script", {"model": "S", "platform": "tpu"}, t(25), t(26), 0.05, 0.001,
...               0.051, 300, (AttributedChange("c-corrupt", 0.9, "scope matches"),))
>>> rows = timeline_rows([alert], changes)
>>> for r in rows:
...     print(r.kind, "|", r.label, "|", r.fixed_at.day)
change | c-corrupt (corruption) model=O,S,platform=tpu | 30
segment | model=S,platform=tpu: unexpected_script | 30
>>> [(p.state, p.start.day, p.end.day) for p in rows[1].phases(t(31))]
[('undetected', 25, 26), ('detected', 26, 30), ('fixed', 30, 31)]
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from parity._change import OFF_KINDS
from parity.dashboard._segment import contains, scope_overlaps, segment_text
from parity.monitor import Alert, Change
from parity.monitor.detection.attribution import scope_values

__all__ = ["OFF_KINDS", "PHASES", "Phase", "TimelineRow", "lineage", "resolving_change", "timeline_rows"]

#: The states a row passes through, in order.
PHASES: tuple[str, ...] = ("undetected", "detected", "worsening", "fixed")


@dataclass(frozen=True, slots=True)
class Phase:
    """One bar of a row: ``state`` (one of :data:`PHASES`) from ``start`` to ``end``."""

    state: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class TimelineRow:
    """One row of the timeline (see the module docstring). ``segment`` is the alert segment, or the change's scope;
    ``change_id`` is the row's change, or the change a segment row's root alert is attributed to; ``worsened_at``
    and ``escalated_at`` the start and detection of its first escalation, ``escalation_change_id`` the change that
    one is attributed to; ``fix_change_id`` the change that fixed it."""

    kind: Literal["change", "segment"]
    label: str
    segment: dict[str, str]
    moved_at: datetime
    detected_at: datetime | None = None
    fixed_at: datetime | None = None
    worsened_at: datetime | None = None
    escalated_at: datetime | None = None
    signals: tuple[str, ...] = ()
    alert_ids: tuple[str, ...] = ()
    change_id: str | None = None
    escalation_change_id: str | None = None
    fix_change_id: str | None = None
    escalated_by: tuple[tuple[str, datetime], ...] = ()

    def phases(self, end: datetime) -> list[Phase]:
        """The row's bars up to ``end`` (the end of the store's span), empty ones dropped. A detection or
        escalation after the fix is not drawn: it never was live."""
        fixed = self.fixed_at
        live = [
            (state, t)
            for state, t in (("detected", self.detected_at), ("worsening", self.worsened_at))
            if t is not None and (fixed is None or t < fixed)
        ]
        stops = [*live, *([("fixed", fixed)] if fixed is not None else []), ("", max(end, self.moved_at))]
        out: list[Phase] = []
        state, start = "undetected", self.moved_at
        for next_state, t in stops:
            t = max(t, start)
            if t > start:
                out.append(Phase(state, start, t))
            state, start = next_state, t
        return out

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (ISO-8601 times)."""

        def iso(t: datetime | None) -> str | None:
            return t.isoformat() if t is not None else None

        return {
            "kind": self.kind,
            "label": self.label,
            "segment": dict(self.segment),
            "moved_at": self.moved_at.isoformat(),
            "detected_at": iso(self.detected_at),
            "worsened_at": iso(self.worsened_at),
            "escalated_at": iso(self.escalated_at),
            "fixed_at": iso(self.fixed_at),
            "signals": list(self.signals),
            "alert_ids": list(self.alert_ids),
            "change_id": self.change_id,
            "escalation_change_id": self.escalation_change_id,
            "fix_change_id": self.fix_change_id,
            "escalated_by": [[c, t.isoformat()] for c, t in self.escalated_by],
        }


def _names(change: Change, change_id: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(change_id)}(?![\w-])", change.description) is not None


def _scopes_related(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    """Both scopes can touch the same traffic and name a common dimension (or one is fleet-wide): a rollback on
    ``platform=tpu`` does not undo a router change on ``model=S``."""
    common = [d for d in a if d in b]
    return all(scope_values(a[d]) & scope_values(b[d]) for d in common) and bool(common or not a or not b)


def _worsens(alert: Alert) -> str | None:
    """The alert this one escalates (``Alert.worsens``; stores written before it existed have none)."""
    value = getattr(alert, "worsens", None)
    return str(value) if value else None


def resolving_change(
    change: Change,
    changes: Sequence[Change],
    segment: Mapping[str, str] | None = None,
    *,
    after: datetime | None = None,
) -> Change | None:
    """The rollback or fix that turned ``change`` off for ``segment`` (any segment when ``None``), landing after
    ``change`` and after ``after`` (a fix before the signal moved fixed something else), or ``None``."""
    since = change.time if after is None else max(change.time, after)
    later = sorted((c for c in changes if c.kind in OFF_KINDS and c.time > since), key=lambda c: c.time)
    if segment is not None:
        later = [c for c in later if scope_overlaps(c.scope, segment)]
    named = [c for c in later if _names(c, change.change_id)]
    if named:
        return named[0]
    others = {c.change_id for c in changes} - {change.change_id}
    return next(
        (c for c in later if _scopes_related(c.scope, change.scope) and not any(_names(c, other) for other in others)),
        None,
    )


def lineage(alert: Alert, alerts: Sequence[Alert]) -> list[Alert]:
    """``alert`` and the alerts it stands for, earliest detection first: those it (transitively) ``worsens``, and
    the superseded alerts on the same signal whose segment contains its own and that were detected no later."""
    by_id = {a.alert_id: a for a in alerts}
    seen: dict[str, Alert] = {alert.alert_id: alert}
    todo = [alert]
    while todo:
        current = todo.pop()
        found = [by_id[w]] if (w := _worsens(current)) in by_id else []
        found += [
            a
            for a in alerts
            if a.status == "superseded"
            and a.signal == current.signal
            and a.detected_at <= current.detected_at
            and contains(a.segment, current.segment)
        ]
        for a in found:
            if a.alert_id not in seen:
                seen[a.alert_id] = a
                todo.append(a)
    return sorted(seen.values(), key=lambda a: (a.detected_at, a.alert_id))


def _cause(alert: Alert, by_id: Mapping[str, Change]) -> Change | None:
    return by_id.get(alert.attributed_changes[0].change_id) if alert.attributed_changes else None


def _scope_label(scope: Mapping[str, str]) -> str:
    return segment_text(scope) if scope else "whole fleet"


def _segment_rows(alerts: Sequence[Alert], changes: Sequence[Change]) -> list[TimelineRow]:
    by_id = {c.change_id: c for c in changes}
    groups: dict[str, dict[str, Alert]] = {}
    shown: dict[str, list[Alert]] = {}
    for alert in sorted((a for a in alerts if a.status != "superseded"), key=lambda a: a.detected_at):
        key = segment_text(alert.segment)
        shown.setdefault(key, []).append(alert)
        for a in lineage(alert, alerts):
            groups.setdefault(key, {})[a.alert_id] = a
    rows: list[TimelineRow] = []
    for key, members in groups.items():
        group = sorted(members.values(), key=lambda a: (a.detected_at, a.alert_id))
        root = group[0]
        segment = dict(shown[key][0].segment)
        cause = _cause(root, by_id)
        moved_at = min(a.started_at for a in group)
        fix = resolving_change(cause, changes, segment, after=moved_at) if cause is not None else None
        escalations = sorted((a for a in group if _worsens(a) in members), key=lambda a: a.started_at)
        first_up = escalations[0] if escalations else None
        escalation_cause = _cause(first_up, by_id) if first_up is not None else None
        escalated_by = tuple((c.change_id, a.detected_at) for a in escalations if (c := _cause(a, by_id)) is not None)
        signals = tuple(dict.fromkeys(a.signal for a in shown[key]))
        rows.append(
            TimelineRow(
                kind="segment",
                label=f"{key}: {', '.join(signals)}",
                segment=segment,
                moved_at=moved_at,
                detected_at=root.detected_at,
                fixed_at=fix.time if fix is not None else None,
                worsened_at=first_up.started_at if first_up is not None else None,
                escalated_at=first_up.detected_at if first_up is not None else None,
                signals=signals,
                alert_ids=tuple(a.alert_id for a in group),
                change_id=cause.change_id if cause is not None else None,
                escalation_change_id=escalation_cause.change_id if escalation_cause is not None else None,
                fix_change_id=fix.change_id if fix is not None else None,
                escalated_by=escalated_by,
            )
        )
    return rows


def _change_row(change: Change, rows: Sequence[TimelineRow], changes: Sequence[Change]) -> TimelineRow:
    roots = [r for r in rows if r.change_id == change.change_id]
    escalated = [r for r in rows if r not in roots and any(c == change.change_id for c, _ in r.escalated_by)]
    detections = [r.detected_at for r in roots if r.detected_at is not None]
    detections += [t for r in escalated for c, t in r.escalated_by if c == change.change_id]
    fixed_at: datetime | None = None
    fix_id: str | None = None
    if roots:
        if all(r.fixed_at is not None for r in roots):
            last = max(roots, key=lambda r: r.fixed_at or change.time)
            fixed_at, fix_id = last.fixed_at, last.fix_change_id
    elif escalated:  # it made a fault worse: its effect ends when that fault is fixed
        if all(r.fixed_at is not None for r in escalated):
            last = max(escalated, key=lambda r: r.fixed_at or change.time)
            fixed_at, fix_id = last.fixed_at, last.fix_change_id
    else:
        fix = resolving_change(change, changes)
        if fix is not None:
            fixed_at, fix_id = fix.time, fix.change_id
    worsened = [r.worsened_at for r in roots if r.worsened_at is not None]
    return TimelineRow(
        kind="change",
        label=f"{change.change_id} ({change.kind}) {_scope_label(change.scope)}",
        segment=dict(change.scope),
        moved_at=change.time,
        detected_at=min(detections, default=None),
        fixed_at=fixed_at,
        worsened_at=min(worsened, default=None),
        signals=tuple(dict.fromkeys(s for r in [*roots, *escalated] for s in r.signals)),
        alert_ids=tuple(dict.fromkeys(a for r in [*roots, *escalated] for a in r.alert_ids)),
        change_id=change.change_id,
        fix_change_id=fix_id,
    )


def timeline_rows(alerts: Sequence[Alert], changes: Sequence[Change]) -> list[TimelineRow]:
    """The timeline's rows: each change row (by landing time) followed by the segment rows whose root alert is
    attributed to it (by detection), then the segment rows with no known cause (or one that is itself a rollback
    or fix)."""
    by_id = {c.change_id: c for c in changes}
    segment_rows = _segment_rows(alerts, changes)
    off = [c for c in changes if c.kind in OFF_KINDS]
    named = {c.change_id for c in changes if c.kind not in OFF_KINDS and any(_names(o, c.change_id) for o in off)}
    causes = {r.change_id for r in segment_rows} | {c for r in segment_rows for c, _ in r.escalated_by}
    # a rollback or fix blamed by attribution stays a dotted line: rows are for changes that bring faults
    fault_ids = {i for i in causes if i is not None and i in by_id and by_id[i].kind not in OFF_KINDS} | named
    segment_rows.sort(key=lambda r: (r.detected_at or r.moved_at, r.label))
    out: list[TimelineRow] = []
    for change in sorted((by_id[i] for i in fault_ids), key=lambda c: (c.time, c.change_id)):
        out.append(_change_row(change, segment_rows, changes))
        out.extend(r for r in segment_rows if r.change_id == change.change_id)
    out.extend(r for r in segment_rows if r.change_id not in fault_ids)
    return out
