"""The fleet's change log: every runtime configuration change, in order, optionally mirrored to a JSONL file.

Each entry is one :class:`Change`, serialised as ``{"time", "id", "kind", "scope", "description", "params"}``
(``time`` ISO-8601 UTC), the shape the monitor's ``load_changes`` parses. Entries are never edited: a change is
turned off by a later ``rollback`` or ``fix`` entry naming it, and :meth:`ChangeLog.active` applies those.

>>> log = ChangeLog()
>>> c = log.append(Change.new("deploy", {"platform": "gpu"}, {"config_version": "2"}, "bump", change_id="c1"))
>>> _ = log.append(Change.new("rollback", {}, {"change_id": "c1"}, "undo", change_id="c2"))
>>> [e.id for e in log.entries], [e.id for e in log.active()]
(['c1', 'c2'], [])
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from parity._exceptions import InvalidInputError

__all__ = ["KINDS", "OFF_KINDS", "SCOPE_KEYS", "Change", "ChangeLog"]

#: the kinds of change the fleet understands (see :mod:`parity.lab.faults` for their parameters).
KINDS = ("routing", "corruption", "sampler", "precision", "load_balancing", "deploy", "rollback", "fix")

#: kinds that turn an earlier change off (``params.change_id`` names it).
OFF_KINDS = ("rollback", "fix")

#: keys a change's scope may use; a missing key matches everything.
SCOPE_KEYS = ("model", "platform", "pool", "server")


@dataclass(frozen=True)
class Change:
    """One entry of the change log."""

    time: datetime
    id: str
    kind: str
    scope: dict[str, str] = field(default_factory=dict)
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(
        cls,
        kind: str,
        scope: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        description: str = "",
        *,
        change_id: str | None = None,
        time: datetime | None = None,
    ) -> Change:
        """A change stamped now (or at ``time``), with a fresh id unless ``change_id`` is given."""
        if kind not in KINDS:
            raise InvalidInputError("kind", f"must be one of {list(KINDS)}", kind)
        scope = dict(scope or {})
        for key, value in scope.items():
            if key not in SCOPE_KEYS:
                raise InvalidInputError("scope", f"keys must be among {list(SCOPE_KEYS)}", key)
            if not isinstance(value, str) or not value:
                raise InvalidInputError(f"scope.{key}", "must be a non-empty string", value)
        stamp = time or datetime.now(UTC)
        if stamp.tzinfo is None:
            raise InvalidInputError("time", "must be timezone-aware", stamp.isoformat())
        return cls(
            time=stamp.astimezone(UTC),
            id=change_id or f"chg-{uuid.uuid4().hex[:10]}",
            kind=kind,
            scope=scope,
            description=description or kind,
            params=dict(params or {}),
        )

    @classmethod
    def from_json(cls, data: Any) -> Change:
        """A change from a JSON object (``time`` and ``id`` optional: now and a fresh id)."""
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
        time = None
        if data.get("time") is not None:
            try:
                time = datetime.fromisoformat(str(data["time"]).replace("Z", "+00:00"))
            except ValueError as err:
                raise InvalidInputError("time", "must be an ISO-8601 timestamp", data["time"]) from err
            if time.tzinfo is None:
                time = time.replace(tzinfo=UTC)
        return cls.new(kind, scope, params, description, change_id=change_id, time=time)

    def to_json(self) -> dict[str, Any]:
        """The JSON form: ``time`` as ISO-8601 UTC with a ``Z``."""
        return {
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "id": self.id,
            "kind": self.kind,
            "scope": dict(self.scope),
            "description": self.description,
            "params": dict(self.params),
        }

    def matches(self, **where: str) -> bool:
        """Whether this change's scope covers the given ``model``/``platform``/``pool``/``server``.

        >>> Change.new("deploy", {"platform": "tpu"}).matches(model="S", platform="tpu", pool="short")
        True
        """
        return all(where.get(key) == value for key, value in self.scope.items())


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
            return next((c for c in self._entries if c.id == change_id), None)

    def append(self, change: Change) -> Change:
        """Add ``change`` (its id must be new; a rollback/fix must name an earlier change)."""
        with self._lock:
            if any(c.id == change.id for c in self._entries):
                raise InvalidInputError("id", "must be unique in the change log", change.id)
            if change.kind in OFF_KINDS:
                target = change.params.get("change_id")
                if not any(c.id == target for c in self._entries):
                    raise InvalidInputError("params.change_id", "must name an earlier change", target)
            self._entries.append(change)
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(change.to_json(), ensure_ascii=False) + "\n")
        return change

    def active(self) -> list[Change]:
        """Changes in effect: every change not turned off by a later rollback/fix (those are not listed)."""
        entries = self.entries
        off = {c.params.get("change_id") for c in entries if c.kind in OFF_KINDS}
        return [c for c in entries if c.kind not in OFF_KINDS and c.id not in off]
