"""The engine's prefix cache: keys and values of token sequences already computed, reused by requests that start
the same way (automatic prefix caching, as vLLM and SGLang serve it).

Traffic repeats itself at the front: every chat request starts with the chat format's system turn, a second turn
of a conversation starts with the first turn and its answer, and code prompts over one function share its header
and docstring. Prefilling a token costs a full pass through the model's weights (on 2 CPU cores about 8 ms for
SmolLM2-135M), while copying its cached keys and values costs microseconds, so the engine looks every joining
prompt up here first and prefills only the part after the longest cached prefix.

How it works: sequences are stored whole (keys and values ``[layers, kv_heads, T, head_dim]``), indexed by a hash
chain over blocks of :data:`BLOCK` tokens (block i's key hashes block i's tokens with block i-1's key, so equal keys
mean equal prefixes). A lookup walks the prompt's blocks through the index, checks the tokens of the entry it
lands on, and extends the match token by token into that entry. A stored sequence that another one extends is
dropped (the longer one serves both); the least recently used entries go when the cache is over its byte budget.
Pinned entries (the system turn) are never evicted and do not count against the budget.

Reusing keys and values computed in another batch is not bit-identical to recomputing them (the matrix products
accumulate in another order: about 1e-5 in SmolLM2's logits, the same order as batching itself), so a request's
logits depend on the cache's state in the last bits, as in every serving engine with prefix caching.

>>> import torch
>>> cache = PrefixCache(budget_bytes=1 << 20)
>>> keys = torch.arange(40.0).reshape(1, 1, 40, 1)
>>> cache.insert(list(range(40)), keys, -keys)
>>> n, k, v = cache.match(list(range(36)) + [99, 100])
>>> n, k.shape[2], float(k[0, 0, 35, 0]), float(v[0, 0, 35, 0])
(36, 36, 35.0, -35.0)
>>> cache.match([7, 8, 9]) is None
True
>>> cache.stats.tokens_reused, cache.stats.hits, cache.stats.misses
(36, 1, 1)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from parity._exceptions import InvalidInputError

__all__ = ["BLOCK", "PrefixCache", "PrefixCacheStats"]

#: tokens per indexed block: a prefix is found in whole blocks, then extended token by token into the entry.
BLOCK = 16


@dataclass
class PrefixCacheStats:
    """Counters of a :class:`PrefixCache`: lookups that found a prefix (``hits``) or none (``misses``), prompt tokens
    looked up and reused, entries stored and evicted, and the bytes held (pinned entries included)."""

    hits: int = 0
    misses: int = 0
    tokens_looked_up: int = 0
    tokens_reused: int = 0
    stored: int = 0
    evicted: int = 0
    entries: int = 0
    bytes: int = 0

    def to_json(self) -> dict[str, int]:
        """The counters as a JSON object."""
        return dict(self.__dict__)


@dataclass(eq=False)
class _Entry:
    eid: int
    ids: tuple[int, ...]
    keys: torch.Tensor  # [layers, kv_heads, T, head_dim]
    values: torch.Tensor
    pinned: bool
    chain: list[int] = field(default_factory=list)  # the index keys of its full blocks

    @property
    def nbytes(self) -> int:
        return int(self.keys.numel() * self.keys.element_size() * 2)


def _chain(ids: Sequence[int], blocks: int) -> list[int]:
    """The index keys of the first ``blocks`` full blocks of ``ids``."""
    keys: list[int] = []
    h = 0
    for b in range(blocks):
        h = hash((h, tuple(ids[b * BLOCK : (b + 1) * BLOCK])))
        keys.append(h)
    return keys


class PrefixCache:
    """Cached keys and values by token prefix, within ``budget_bytes`` (0: only pinned entries are kept)."""

    def __init__(self, budget_bytes: int) -> None:
        if not isinstance(budget_bytes, int) or budget_bytes < 0:
            raise InvalidInputError("budget_bytes", "must be an integer >= 0", budget_bytes)
        self.budget_bytes = budget_bytes
        self.stats = PrefixCacheStats()
        self._entries: OrderedDict[int, _Entry] = OrderedDict()  # least recently used first
        self._index: dict[int, list[int]] = {}  # block key -> entries holding that prefix, newest last
        self._next = 0
        self._unpinned_bytes = 0
        self._short_pinned: list[_Entry] = []  # pinned entries shorter than a block: under no index key

    def __len__(self) -> int:
        return len(self._entries)

    def _walk(self, ids: Sequence[int]) -> tuple[int, _Entry | None, list[_Entry]]:
        """The longest cached prefix of ``ids``: (tokens, the entry holding them, every entry met on the way)."""
        met: list[_Entry] = []
        entry: _Entry | None = None
        matched = 0
        h = 0
        for b in range(len(ids) // BLOCK):
            block = tuple(ids[b * BLOCK : (b + 1) * BLOCK])
            h = hash((h, block))
            holders = self._index.get(h)
            if not holders:
                break
            found = self._entries[holders[-1]]
            if found.ids[b * BLOCK : (b + 1) * BLOCK] != block:  # a hash collision: stop at the last sure block
                break
            if found is not entry:
                met.append(found)
            entry, matched = found, (b + 1) * BLOCK
        if entry is None:
            # a prompt shorter than a block, or one whose first block is stored under no key: pinned entries
            # shorter than a block (a short system turn) are still found
            for candidate in self._short_pinned:
                size = len(candidate.ids)
                if size > matched and tuple(ids[:size]) == candidate.ids:
                    entry, matched = candidate, size
            if entry is None:
                return 0, None, met
        elif tuple(ids[:matched]) != entry.ids[:matched]:  # keys chained across entries: check the whole prefix
            return 0, None, met
        limit = min(len(ids), len(entry.ids))
        while matched < limit and entry.ids[matched] == ids[matched]:
            matched += 1
        return matched, entry, met

    def match(self, ids: Sequence[int]) -> tuple[int, torch.Tensor, torch.Tensor] | None:
        """The longest cached prefix of ``ids``, leaving at least one token to compute: ``(n, keys, values)``
        with keys and values ``[layers, kv_heads, n, head_dim]`` (views: copy them), or None."""
        self.stats.tokens_looked_up += len(ids)
        matched, entry, _ = self._walk(ids)
        matched = min(matched, len(ids) - 1)
        if entry is None or matched <= 0:
            self.stats.misses += 1
            return None
        self._touch(entry)
        self.stats.hits += 1
        self.stats.tokens_reused += matched
        return matched, entry.keys[:, :, :matched], entry.values[:, :, :matched]

    def insert(self, ids: Sequence[int], keys: torch.Tensor, values: torch.Tensor, *, pinned: bool = False) -> None:
        """Store the keys and values ``[layers, kv_heads, len(ids), head_dim]`` of ``ids`` (copied).

        Nothing is stored when a cached sequence already holds ``ids`` as its prefix; cached sequences that are
        prefixes of ``ids`` are dropped (pinned ones stay). An unpinned sequence larger than the whole budget is
        not stored."""
        if keys.shape != values.shape or keys.ndim != 4 or keys.shape[2] != len(ids):
            raise InvalidInputError("keys", f"must be [layers, kv_heads, {len(ids)}, head_dim] like values", keys.shape)
        if not ids:
            return
        matched, entry, met = self._walk(ids)
        if entry is not None and matched == len(ids):
            if pinned and not entry.pinned and len(entry.ids) == len(ids):
                self._remove(entry)  # pinned from now on: stored again below as such
            else:
                self._touch(entry)
                return
        new = _Entry(self._next, tuple(ids), keys.contiguous().clone(), values.contiguous().clone(), pinned)
        if not pinned and new.nbytes > self.budget_bytes:
            return
        for old in met:
            if not old.pinned and len(old.ids) <= len(ids) and old.ids == new.ids[: len(old.ids)]:
                self._remove(old)
        eid = new.eid
        self._next += 1
        new.chain = _chain(new.ids, len(new.ids) // BLOCK)
        for h in new.chain:
            self._index.setdefault(h, []).append(eid)
        self._entries[eid] = new
        if pinned and len(new.ids) < BLOCK:
            self._short_pinned.append(new)
        self.stats.stored += 1
        self.stats.entries = len(self._entries)
        self.stats.bytes += new.nbytes
        if not pinned:
            self._unpinned_bytes += new.nbytes
        while self._unpinned_bytes > self.budget_bytes:
            oldest = next(e for e in self._entries.values() if not e.pinned)
            self._remove(oldest)
            self.stats.evicted += 1

    def _touch(self, entry: _Entry) -> None:
        self._entries.move_to_end(entry.eid)

    def _remove(self, entry: _Entry) -> None:
        eid = entry.eid
        del self._entries[eid]
        if entry in self._short_pinned:
            self._short_pinned.remove(entry)
        for h in entry.chain:
            holders = self._index.get(h)
            if holders is not None:
                holders.remove(eid)
                if not holders:
                    del self._index[h]
        self.stats.entries = len(self._entries)
        self.stats.bytes -= entry.nbytes
        if not entry.pinned:
            self._unpinned_bytes -= entry.nbytes
