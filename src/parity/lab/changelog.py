"""The fleet's change log: every runtime configuration change, in order, optionally mirrored to a JSONL file.

Each entry is one :class:`parity._change.Change` (the class the monitor reads too), serialised by
:func:`change_to_json` as ``{"time", "id", "kind", "scope", "description", "params"}`` (``time`` ISO-8601 UTC),
the shape the monitor's ``load_changes`` parses. Entries are never edited: a change is turned off by a later
``rollback`` or ``fix`` entry naming it (:data:`OFF_KINDS`), and :meth:`ChangeLog.active` applies those.

>>> log = ChangeLog()
>>> c = log.append(new_change("deploy", {"platform": "gpu"}, {"config_version": "2"}, "bump", change_id="c1"))
>>> _ = log.append(new_change("rollback", {}, {"change_id": "c1"}, "undo", change_id="c2"))
>>> [e.change_id for e in log.entries], [e.change_id for e in log.active()]
(['c1', 'c2'], [])
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from parity._change import OFF_KINDS, Change
from parity._exceptions import InvalidInputError
from parity._time import format_time, parse_time

__all__ = [
    "KINDS",
    "OFF_KINDS",
    "SCOPE_KEYS",
    "Change",
    "ChangeLog",
    "change_from_json",
    "change_to_json",
    "new_change",
]

#: the kinds of change the fleet understands (see :mod:`parity.lab.faults` for their parameters).
KINDS = ("routing", "corruption", "sampler", "precision", "load_balancing", "deploy", "rollback", "fix")


#: keys a change's scope may use; a missing key matches everything.
SCOPE_KEYS = ("model", "platform", "pool", "server")


def new_change(
    kind: str,
    scope: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    description: str = "",
    *,
    change_id: str | None = None,
    time: datetime | None = None,
) -> Change:
    """A lab change of a kind in :data:`KINDS`, stamped now (or at ``time``), with a fresh id unless ``change_id``.

    >>> new_change("teleport")
    Traceback (most recent call last):
    ...
    parity._exceptions.InvalidInputError: `kind` must be one of ['routing', 'corruption', 'sampler', 'precision', \
'load_balancing', 'deploy', 'rollback', 'fix'], got 'teleport'
    """
    if kind not in KINDS:
        raise InvalidInputError("kind", f"must be one of {list(KINDS)}", kind)
    scope = dict(scope or {})
    for key, value in scope.items():
        if key not in SCOPE_KEYS:
            raise InvalidInputError("scope", f"keys must be among {list(SCOPE_KEYS)}", key)
        if not isinstance(value, str) or not value:
            raise InvalidInputError(f"scope.{key}", "must be a non-empty string", value)
    return Change(
        change_id=change_id or f"chg-{uuid.uuid4().hex[:10]}",
        time=time or datetime.now(UTC),
        kind=kind,
        scope=scope,
        description=description or kind,
        params=dict(params or {}),
    )


def change_from_json(data: Any) -> Change:
    """A lab change from its JSON object (``time`` and ``id`` optional: now and a fresh id)."""
    if not isinstance(data, dict):
        raise InvalidInputError("change", "must be a JSON object", type(data).__name__)
    unknown = sorted(set(data) - {"time", "id", "kind", "scope", "description", "params"})
    if unknown:
        raise InvalidInputError("change", "has an unknown key", unknown[0])
    kind = data.get("kind")
    if not isinstance(kind, str):
        raise InvalidInputError("kind", f"must be one of {list(KINDS)}", kind)
    scope = data.get("scope") or {}
    if not isinstance(scope, dict):
        raise InvalidInputError("scope", "must be a JSON object", scope)
    params = data.get("params") or {}
    if not isinstance(params, dict):
        raise InvalidInputError("params", "must be a JSON object", params)
    description = data.get("description", "")
    if not isinstance(description, str):
        raise InvalidInputError("description", "must be a string", description)
    change_id = data.get("id")
    if change_id is not None and (not isinstance(change_id, str) or not change_id):
        raise InvalidInputError("id", "must be a non-empty string", change_id)
    time = None if data.get("time") is None else parse_time(data["time"], naive="utc")
    return new_change(kind, scope, params, description, change_id=change_id, time=time)


def change_to_json(change: Change) -> dict[str, Any]:
    """The lab's JSON form of a change (its change log's lines and ``/admin/changes``): the id under ``id``.

    >>> change_to_json(new_change("deploy", change_id="d1", time=datetime(2025, 9, 1, tzinfo=UTC)))["time"]
    '2025-09-01T00:00:00Z'
    """
    return {
        "time": format_time(change.time),
        "id": change.change_id,
        "kind": change.kind,
        "scope": dict(change.scope),
        "description": change.description,
        "params": dict(change.params),
    }


class ChangeLog:
    """An append-only, thread-safe list of changes; each append also goes to ``path`` (JSONL) when given."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._entries: list[Change] = []

    @property
    def entries(self) -> list[Change]:
        """All changes, oldest first."""
        with self._lock:
            return list(self._entries)

    def get(self, change_id: str) -> Change | None:
        """The change with this id, if any."""
        with self._lock:
            return next((c for c in self._entries if c.change_id == change_id), None)

    def append(self, change: Change) -> Change:
        """Add ``change`` (its id must be new; a rollback/fix must name an earlier change)."""
        with self._lock:
            if any(c.change_id == change.change_id for c in self._entries):
                raise InvalidInputError("id", "must be unique in the change log", change.change_id)
            if change.kind in OFF_KINDS:
                target = change.params.get("change_id")
                if not any(c.change_id == target for c in self._entries):
                    raise InvalidInputError("params.change_id", "must name an earlier change", target)
            self._entries.append(change)
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(change_to_json(change), ensure_ascii=False) + "\n")
        return change

    def active(self) -> list[Change]:
        """Changes in effect: every change not turned off by a later rollback/fix (those are not listed)."""
        entries = self.entries
        off = {c.turns_off for c in entries if c.kind in OFF_KINDS}
        return [c for c in entries if c.kind not in OFF_KINDS and c.change_id not in off]
