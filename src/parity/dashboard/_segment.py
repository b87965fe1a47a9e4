"""Segments as the dashboard addresses them: ``model=S,platform=tpu`` in a URL, a dict in an alert.

A segment fixes some of :data:`parity.monitor.SEGMENT_DIMENSIONS` (``all`` fixes none). Two segments *overlap*
when no dimension is fixed to different values by both; a change's scope overlaps a segment when, for every
dimension both name, the scope covers the segment's value (a scope value may list several, ``"O,S"``).

>>> parse_segment("model=S, platform=tpu")
{'model': 'S', 'platform': 'tpu'}
>>> segment_text({"platform": "tpu", "model": "S"}), segment_text({})
('model=S,platform=tpu', 'all')
>>> overlaps({"model": "S"}, {"platform": "tpu"}), overlaps({"model": "S"}, {"model": "O"})
(True, False)
>>> scope_overlaps({"model": "O,S", "server": "tpu-1"}, {"model": "S", "platform": "tpu"})
True
"""

from __future__ import annotations

from collections.abc import Mapping

from parity._exceptions import InvalidInputError
from parity.monitor import SEGMENT_DIMENSIONS
from parity.monitor.detection.attribution import scope_values

__all__ = ["contains", "nested", "overlaps", "parse_segment", "scope_overlaps", "segment_text"]

#: How the segment that fixes no dimension is written.
ALL = "all"


def parse_segment(text: str) -> dict[str, str]:
    """``"model=S,platform=tpu"`` (or ``"all"``/``""``) -> ``{"model": "S", "platform": "tpu"}``; dimensions must
    be among :data:`~parity.monitor.SEGMENT_DIMENSIONS`."""
    text = text.strip()
    if text in ("", ALL):
        return {}
    out: dict[str, str] = {}
    for part in text.split(","):
        dim, sep, value = part.partition("=")
        dim, value = dim.strip(), value.strip()
        if not sep or not dim or not value:
            raise InvalidInputError("segment", "must be DIMENSION=VALUE pairs joined by commas, or 'all'", text)
        if dim not in SEGMENT_DIMENSIONS:
            raise InvalidInputError("segment", f"dimensions must be among {list(SEGMENT_DIMENSIONS)}", dim)
        if dim in out:
            raise InvalidInputError("segment", "must fix each dimension once", text)
        out[dim] = value
    return {d: out[d] for d in SEGMENT_DIMENSIONS if d in out}


def segment_text(segment: Mapping[str, str]) -> str:
    """The URL form of a segment, dimensions in :data:`~parity.monitor.SEGMENT_DIMENSIONS` order (others after,
    sorted)."""
    order = [d for d in SEGMENT_DIMENSIONS if d in segment] + sorted(set(segment) - set(SEGMENT_DIMENSIONS))
    return ",".join(f"{d}={segment[d]}" for d in order) or ALL


def contains(segment: Mapping[str, str], finest: Mapping[str, str]) -> bool:
    """Whether a record whose finest segment is ``finest`` belongs to ``segment``."""
    return all(finest.get(d) == v for d, v in segment.items())


def nested(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    """Whether one segment contains the other (an alert on ``platform=tpu`` concerns ``model=S,platform=tpu``
    and ``all``, not ``pool=long``).

    >>> nested({"platform": "tpu"}, {"model": "S", "platform": "tpu"}), nested({"platform": "tpu"}, {"pool": "long"})
    (True, False)
    """
    return contains(a, b) or contains(b, a)


def overlaps(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    """Whether some traffic can belong to both segments."""
    return all(b[d] == v for d, v in a.items() if d in b)


def scope_overlaps(scope: Mapping[str, str], segment: Mapping[str, str]) -> bool:
    """Whether a change with ``scope`` can touch traffic of ``segment`` (dimensions the segment does not fix,
    such as ``server``, never exclude)."""
    return all(segment[d] in scope_values(v) for d, v in scope.items() if d in segment)
