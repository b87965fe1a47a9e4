"""Segment keys and the segment lattice: which segments a record belongs to, and which shard owns each.

A record's finest segment is one value per dimension (``Record.segment()``). The monitor tracks that segment and
every *marginal* of it: every subset of the dimensions, the others replaced by ``"*"`` (:data:`WILDCARD`). With the
six dimensions that is ``2**6 = 64`` segments per record, all of which have traffic by construction;
``max_order`` bounds the lattice to subsets of at most that many fixed dimensions when the per-record cost matters
more than the finest combinations. A segment key is the tuple of values in dimension order, e.g.
``("S", "*", "tpu", "*", "*", "*")``.

**Sharding.** Each (signal, segment) stream is owned by exactly one shard, ``shard_of(key, n_shards)``, a stable
hash of the segment key, so a fleet of workers each running a statistics bank with its own ``shard`` sees every
record but updates only the streams it owns; no state is shared or merged.

>>> lattice = SegmentLattice(("model", "platform"))
>>> lattice.keys(("S", "tpu"))
[('*', '*'), ('S', '*'), ('*', 'tpu'), ('S', 'tpu')]
>>> segment_dict(("S", "*"), ("model", "platform"))
{'model': 'S'}
>>> shard_of(("S", "*"), 4) == shard_of(("S", "*"), 4) < 4
True
"""

from __future__ import annotations

import itertools
import operator
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from parity._exceptions import InvalidInputError
from parity.monitor._records import SEGMENT_DIMENSIONS, Record

__all__ = [
    "KEY_CACHE_SIZE",
    "WILDCARD",
    "SegmentKey",
    "SegmentLattice",
    "is_refinement",
    "key_of",
    "order_of",
    "segment_dict",
    "segment_label",
    "shard_of",
]

#: The value of a dimension a segment does not fix.
WILDCARD = "*"

#: Finest segments whose lattice keys are memoised (the cache is cleared when full).
KEY_CACHE_SIZE = 4096

SegmentKey = tuple[str, ...]


def segment_dict(key: SegmentKey, dimensions: Sequence[str] = SEGMENT_DIMENSIONS) -> dict[str, str]:
    """The dimensions a segment fixes, as a dict (the ``Alert.segment`` shape)."""
    return {d: v for d, v in zip(dimensions, key, strict=True) if v != WILDCARD}


def key_of(segment: Mapping[str, str], dimensions: Sequence[str] = SEGMENT_DIMENSIONS) -> SegmentKey:
    """Inverse of :func:`segment_dict`; unknown dimensions are rejected.

    >>> key_of({"platform": "tpu"}, ("model", "platform"))
    ('*', 'tpu')
    """
    unknown = sorted(set(segment) - set(dimensions))
    if unknown:
        raise InvalidInputError("segment", f"has dimensions {unknown} outside {list(dimensions)}")
    return tuple(segment.get(d, WILDCARD) for d in dimensions)


def segment_label(key: SegmentKey, dimensions: Sequence[str] = SEGMENT_DIMENSIONS) -> str:
    """A short human-readable label: ``model=S,platform=tpu``, or ``all`` for the global segment.

    >>> segment_label(("S", "*", "tpu"), ("model", "pool", "platform")), segment_label(("*",), ("model",))
    ('model=S,platform=tpu', 'all')
    """
    parts = [f"{d}={v}" for d, v in zip(dimensions, key, strict=True) if v != WILDCARD]
    return ",".join(parts) or "all"


def is_refinement(child: SegmentKey, parent: SegmentKey) -> bool:
    """Whether ``child`` fixes every dimension ``parent`` fixes, to the same value (a segment refines itself).

    >>> is_refinement(("S", "tpu"), ("S", "*")), is_refinement(("S", "*"), ("S", "tpu"))
    (True, False)
    """
    return all(p in (WILDCARD, c) for c, p in zip(child, parent, strict=True))


def order_of(key: SegmentKey) -> int:
    """How many dimensions a segment fixes."""
    return sum(1 for v in key if v != WILDCARD)


def shard_of(key: SegmentKey, n: int) -> int:
    """The shard (``0 <= shard < n``) that owns every stream of segment ``key``: CRC-32 of the key, stable across
    processes and machines (Python's ``hash`` is salted per process)."""
    if n < 1:
        raise InvalidInputError("n", "must be >= 1", n)
    return zlib.crc32("\x1f".join(key).encode()) % n


class SegmentLattice:
    """All marginals of a finest segment over ``dimensions``, with at most ``max_order`` fixed dimensions.

    A record's ``context_class`` is decided when it is built (:class:`~parity.monitor.intake.scoring.RecordBuilder`);
    the lattice reads it like any other dimension.

    >>> len(SegmentLattice(SEGMENT_DIMENSIONS).keys(("a",) * 6)), len(SegmentLattice(SEGMENT_DIMENSIONS, 2).masks)
    (64, 22)
    """

    def __init__(
        self,
        dimensions: Sequence[str] = SEGMENT_DIMENSIONS,
        max_order: int | None = None,
    ) -> None:
        self.dimensions = tuple(dimensions)
        if not self.dimensions or len(set(self.dimensions)) != len(self.dimensions):
            raise InvalidInputError("dimensions", "must be non-empty and distinct", self.dimensions)
        self.max_order = len(self.dimensions) if max_order is None else max_order
        if not 0 <= self.max_order <= len(self.dimensions):
            raise InvalidInputError("max_order", f"must be in [0, {len(self.dimensions)}]", max_order)
        k = len(self.dimensions)
        masks = [m for m in itertools.product((False, True), repeat=k) if sum(m) <= self.max_order]
        masks.sort(key=lambda m: (sum(m), [not b for b in m]))
        #: one tuple of booleans per segment: True = the dimension is fixed
        self.masks: tuple[tuple[bool, ...], ...] = tuple(masks)
        self._cache: dict[tuple[str, ...], list[SegmentKey]] = {}
        self._init_getter()

    def _init_getter(self) -> None:
        # the finest segment read straight from the record's fields (``Record.segment()``'s values), when it can be
        self._getter: Callable[[Record], Any] | None = None
        if len(self.dimensions) > 1 and set(self.dimensions) <= set(SEGMENT_DIMENSIONS):
            self._getter = operator.attrgetter(*self.dimensions)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "_getter" not in state:  # a checkpoint from before the getter
            self._init_getter()

    def keys(self, values: Sequence[str]) -> list[SegmentKey]:
        """The keys of every marginal of the finest segment ``values``, coarsest first (memoised: a fleet has
        few finest segments, and every record of one shares the list)."""
        values = tuple(values)
        keys = self._cache.get(values)
        if keys is None:
            if len(self._cache) >= KEY_CACHE_SIZE:
                self._cache.clear()
            keys = self._cache[values] = [
                tuple(v if m else WILDCARD for v, m in zip(values, mask, strict=True)) for mask in self.masks
            ]
        return keys

    def values_of(self, record: Record) -> SegmentKey:
        """The record's finest segment as a key over these dimensions (``context_class`` as the record carries it,
        decided when the record was built)."""
        if self._getter is not None:  # every dimension is a segment dimension: the record's own fields
            values: SegmentKey = self._getter(record)
            return values
        seg = record.segment()
        return tuple(seg[d] if d in seg else getattr(record, d, WILDCARD) for d in self.dimensions)
