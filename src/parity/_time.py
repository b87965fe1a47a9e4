"""The one ISO-8601 time parser: every timestamp parity reads from JSON, a query string or a log goes through it.

Times inside parity are timezone-aware UTC ``datetime`` objects. Input is an ISO-8601 string (a trailing ``Z``
accepted, as JavaScript and most logs write it) or a ``datetime``; a time without a timezone is refused (the
default: a log line's "10:00" is ambiguous) or read as UTC where the format says so (``naive="utc"``).

>>> parse_time("2025-08-29T10:00:00Z")
datetime.datetime(2025, 8, 29, 10, 0, tzinfo=datetime.timezone.utc)
>>> parse_time("2025-08-29T12:00:00+02:00") == parse_time("2025-08-29T10:00:00Z")
True
>>> format_time(parse_time("2025-08-29T10:00:00+00:00"))
'2025-08-29T10:00:00Z'
>>> parse_time("2025-08-29 10:00", "since")
Traceback (most recent call last):
...
parity._exceptions.InvalidInputError: `since` must be timezone-aware (end in Z or +00:00), got '2025-08-29 10:00'
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from parity._exceptions import InvalidInputError

__all__ = ["format_time", "parse_time"]


def parse_time(value: Any, argument: str = "time", *, naive: Literal["error", "utc"] = "error") -> datetime:
    """``value`` (an ISO-8601 string or a ``datetime``) as an aware UTC datetime; raise naming ``argument``.

    >>> parse_time("2025-08-29T10:00:00", naive="utc").isoformat()
    '2025-08-29T10:00:00+00:00'
    >>> parse_time("yesterday")
    Traceback (most recent call last):
    ...
    parity._exceptions.InvalidInputError: `time` must be an ISO-8601 time, got 'yesterday'
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
        except ValueError:
            raise InvalidInputError(argument, "must be an ISO-8601 time", value) from None
    else:
        raise InvalidInputError(argument, "must be an ISO-8601 time", value)
    if parsed.tzinfo is None:
        if naive != "utc":
            shown = value if isinstance(value, str) else value.isoformat()
            raise InvalidInputError(argument, "must be timezone-aware (end in Z or +00:00)", shown)
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_time(value: datetime) -> str:
    """An aware datetime as ISO-8601 UTC with a ``Z`` (the form parity writes in change logs and reports)."""
    return parse_time(value).isoformat().replace("+00:00", "Z")
