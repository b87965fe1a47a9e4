"""JSON codecs for the contracts that lack a ``from_dict``: alerts, changes and feedback events.

Used by the DuckDB store, the proxy's read-only endpoints and the HTTP store reader, so one shape travels
everywhere (``Alert.to_dict()`` is the ``parity status --json`` shape).

>>> from datetime import datetime, timezone
>>> t = datetime(2025, 8, 29, tzinfo=timezone.utc)
>>> a = Alert("a1", "unexpected_script", {"platform": "tpu"}, t, t, 0.02, 0.001, 0.021, 40,
...           (AttributedChange("c7", 0.9, "scope matches"),))
>>> alert_from_dict(a.to_dict()) == a
True
>>> feedback_from_dict(feedback_to_dict(FeedbackEvent("r1", t, "thumbs_down"))).kind
'thumbs_down'
"""

from __future__ import annotations

import re
from typing import Any

from parity._exceptions import InvalidInputError
from parity._time import parse_time
from parity.monitor._records import SCHEMA_VERSION, Alert, AttributedChange, Change, FeedbackEvent


def _require(data: Any, keys: tuple[str, ...], what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidInputError(what, "must be a JSON object", type(data).__name__)
    missing = [k for k in keys if k not in data]
    if missing:
        raise InvalidInputError(what, f"is missing fields {missing}")
    return data


def alert_from_dict(data: Any) -> Alert:
    """Inverse of :meth:`Alert.to_dict`."""
    d = _require(data, ("id", "signal", "segment", "started_at", "detected_at", "effect"), "alert")
    return Alert(
        alert_id=str(d["id"]),
        signal=str(d["signal"]),
        segment={str(k): str(v) for k, v in d["segment"].items()},
        started_at=d["started_at"],
        detected_at=d["detected_at"],
        effect=float(d["effect"]),
        baseline=float(d.get("baseline", 0.0)),
        current=float(d.get("current", 0.0)),
        n_after=int(d.get("n_after", 0)),
        attributed_changes=tuple(
            AttributedChange(str(c["change_id"]), float(c["score"]), str(c.get("evidence", "")))
            for c in d.get("attributed_changes", ())
        ),
        status=str(d.get("status", "open")),
        worsens=str(d["worsens"]) if d.get("worsens") else None,
        latest_start=d.get("latest_start") or None,
        schema_version=int(d.get("schema_version", SCHEMA_VERSION)),
        incident=str(d["incident"]) if d.get("incident") else None,
    )


def change_from_dict(data: Any) -> Change:
    """A :class:`Change` from ``Change.to_dict()`` or from a lab change-log entry (``id`` instead of
    ``change_id``; extra keys such as ``params`` ignored). The one parameter kept is the change a rollback or fix
    turns off (a lab entry's ``params.change_id``): the description gains ``(reverts ID)`` unless it already names
    it, so the link survives the store (whose changes have no params) and the dashboard can tell which rollback
    fixed which fault. A change that deploys a configuration version (``params.config_version``, or a top-level
    ``config_version``) has it added to its scope: the records served under that version are its footprint, so an
    alert on ``config_version=X`` points at the change that introduced X, and a change cannot explain traffic served
    under another version.

    >>> change_from_dict({"time": "2025-09-02T00:00:00Z", "id": "rb-1", "kind": "rollback",
    ...                   "description": "rolled back for S", "params": {"change_id": "corruption-S"}}).description
    'rolled back for S (reverts corruption-S)'
    >>> change_from_dict({"time": "2025-08-26T09:00:00Z", "id": "s-1", "kind": "sampler", "scope": {"model": "H"},
    ...                   "params": {"config_version": "2025-08-26.sampler"}}).scope
    {'model': 'H', 'config_version': '2025-08-26.sampler'}
    """
    d = _require(data, ("time", "kind"), "change")
    change_id = d.get("change_id", d.get("id"))
    if change_id is None:
        raise InvalidInputError("change", "is missing field 'change_id' (or 'id')")
    scope = d.get("scope") or {}
    if not isinstance(scope, dict):
        raise InvalidInputError("change.scope", "must be a JSON object", scope)
    raw_params = d.get("params")
    params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
    version = d.get("config_version") or params.get("config_version")
    if isinstance(version, str) and version and "config_version" not in scope:
        scope = {**scope, "config_version": version}
    return Change(
        change_id=str(change_id),
        time=d["time"],
        kind=str(d["kind"]),
        scope={str(k): str(v) for k, v in scope.items() if v is not None},
        description=_with_reverts(str(d.get("description", "")), d.get("params")),
    )


def _with_reverts(description: str, params: Any) -> str:
    reverts = params.get("change_id") if isinstance(params, dict) else None
    if not isinstance(reverts, str) or not reverts:
        return description
    if re.search(rf"(?<![\w-]){re.escape(reverts)}(?![\w-])", description):  # already named (as a whole id)
        return description
    return f"{description} (reverts {reverts})" if description else f"reverts {reverts}"


def feedback_to_dict(event: FeedbackEvent) -> dict[str, Any]:
    """JSON-ready form of a feedback event (:meth:`FeedbackEvent.to_dict`)."""
    return event.to_dict()


def feedback_from_dict(data: Any) -> FeedbackEvent:
    """Inverse of :func:`feedback_to_dict`; ``time`` may be omitted by callers that stamp it themselves."""
    d = _require(data, ("response_id", "time", "kind"), "feedback")
    time = parse_time(d["time"], "feedback.time")
    return FeedbackEvent(
        response_id=str(d["response_id"]),
        time=time,
        kind=str(d["kind"]),
        schema_version=int(d.get("schema_version", SCHEMA_VERSION)),
    )
