"""The one :class:`Change`: a deploy, configuration, fault or load-balancing change, with its time and scope.

The lab's change log writes changes, the monitor reads them (from a file, a lab's ``/admin/changes`` or the
store) and ranks them as causes of alerts, the dashboard draws them: all with this class. A change of a kind in
:data:`OFF_KINDS` turns an earlier change off; ``params["change_id"]`` names it.

>>> from datetime import UTC, datetime
>>> fix = Change("fix-1", datetime(2025, 9, 2, tzinfo=UTC), "rollback", params={"change_id": "corruption-S"})
>>> fix.turns_off
'corruption-S'
>>> Change("lb-7", datetime(2025, 9, 1, tzinfo=UTC), "load_balancing", {"model": "S"}).matches(model="S", pool="x")
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from parity._exceptions import InvalidInputError
from parity._time import format_time, parse_time

__all__ = ["OFF_KINDS", "Change"]

#: Kinds of change that turn an earlier change off (``params["change_id"]`` names it): the lab writes rollbacks
#: and fixes; deploy systems also write reverts.
OFF_KINDS: frozenset[str] = frozenset({"rollback", "fix", "revert"})


@dataclass(frozen=True, slots=True)
class Change:
    """One change: ``change_id``, an aware ``time`` (stored in UTC), ``kind``, ``scope`` and ``params``.

    ``scope`` restricts it to segment dimensions (e.g. ``{"platform": "tpu", "model": "H"}``); an empty scope
    means the whole fleet. ``params`` are the kind's parameters (a fault's fraction, the change a rollback turns
    off, a deployed ``config_version``).

    >>> Change("c1", datetime(2025, 9, 1), "deploy")
    Traceback (most recent call last):
    ...
    parity._exceptions.InvalidInputError: `time` must be timezone-aware (end in Z or +00:00), got '2025-09-01T00:00:00'
    """

    change_id: str
    time: datetime
    kind: str
    scope: dict[str, str] = field(default_factory=dict)
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "time", parse_time(self.time))
        if not isinstance(self.change_id, str) or not self.change_id:
            raise InvalidInputError("change_id", "must be a non-empty string", self.change_id)

    @property
    def turns_off(self) -> str | None:
        """The id of the change this one turns off (a kind in :data:`OFF_KINDS`), else None."""
        target = self.params.get("change_id") if self.kind in OFF_KINDS else None
        return target if isinstance(target, str) else None

    def matches(self, **where: str) -> bool:
        """Whether this change's scope covers the given segment values (a missing scope key matches all)."""
        return all(where.get(key) == value for key, value in self.scope.items())

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``time`` ISO-8601 UTC with a ``Z``.

        >>> from datetime import UTC
        >>> Change("c1", datetime(2025, 9, 1, tzinfo=UTC), "deploy").to_dict()["time"]
        '2025-09-01T00:00:00Z'
        """
        return {
            "change_id": self.change_id,
            "time": format_time(self.time),
            "kind": self.kind,
            "scope": dict(self.scope),
            "description": self.description,
            "params": dict(self.params),
        }
