"""The engine's prefix cache: what it finds, keeps and evicts, and that answers do not change with it."""

from __future__ import annotations

import pytest
import torch

from parity._exceptions import InvalidInputError
from parity.lab.engine import Engine, GenerationRequest
from parity.lab.prefix_cache import BLOCK, PrefixCache


def _kv(n: int, base: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    keys = (torch.arange(n, dtype=torch.float32) + base).reshape(1, 1, n, 1)
    return keys, -keys


def test_the_longest_prefix_is_found_and_one_token_is_left_to_compute() -> None:
    cache = PrefixCache(1 << 20)
    cache.insert(list(range(50)), *_kv(50))
    n, keys, _ = cache.match(list(range(50)))  # type: ignore[misc]
    assert n == 49
    assert keys.shape[2] == 49
    n, _, _ = cache.match([*range(20), 999])  # type: ignore[misc]
    assert n == 20  # a block and four tokens into the next
    assert cache.match([1, 2, 3]) is None
    assert cache.match([999, *range(1, 40)]) is None


def test_a_sequence_that_extends_a_cached_one_replaces_it() -> None:
    cache = PrefixCache(1 << 20)
    cache.insert(list(range(40)), *_kv(40))
    cache.insert(list(range(70)), *_kv(70))
    assert len(cache) == 1
    cache.insert(list(range(30)), *_kv(30))  # already held by the longer one
    assert len(cache) == 1
    assert cache.stats.stored == 2


def test_least_recently_used_entries_go_first_and_pinned_ones_never() -> None:
    entry = 2 * BLOCK * 4 * 2  # bytes of a two-block entry: 2 * BLOCK float32 values of keys and of values
    cache = PrefixCache(2 * entry)
    cache.insert(list(range(1000, 1000 + BLOCK)), *_kv(BLOCK), pinned=True)
    a, b, c = ([k * 100 + i for i in range(2 * BLOCK)] for k in range(1, 4))
    cache.insert(a, *_kv(2 * BLOCK))
    cache.insert(b, *_kv(2 * BLOCK))
    assert cache.match([*a, 7]) is not None  # a is now the most recently used
    cache.insert(c, *_kv(2 * BLOCK))
    assert cache.match([*b, 7]) is None
    assert cache.match([*a, 7]) is not None
    assert cache.match([*c, 7]) is not None
    assert cache.match([*range(1000, 1000 + BLOCK), 7]) is not None
    assert cache.stats.evicted == 1
    assert cache.stats.bytes == 2 * entry + entry // 2


def test_bad_input_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="budget_bytes"):
        PrefixCache(-1)
    with pytest.raises(InvalidInputError, match="keys"):
        PrefixCache(1 << 20).insert([1, 2, 3], *_kv(2))


def test_greedy_answers_are_the_same_with_the_cache_as_without() -> None:
    torch.set_num_threads(1)
    cached, bare = Engine.load(), Engine.load(prefix_cache_bytes=0)
    tok = cached.tokenizer
    first = tok.encode(cached.chat_prompt([{"role": "user", "content": "What does `textwrap.dedent` do?"}]))
    [answer] = cached.generate([GenerationRequest(first, max_tokens=12, temperature=0.0)])
    follow = tok.encode(
        cached.chat_prompt(
            [
                {"role": "user", "content": "What does `textwrap.dedent` do?"},
                {"role": "assistant", "content": answer.text},
                {"role": "user", "content": "And `textwrap.indent`?"},
            ]
        )
    )
    code = tok.encode('def dedent(text):\n    """Remove any common leading whitespace from every line."""\n')
    requests = [
        GenerationRequest(ids, max_tokens=12, temperature=0.0) for ids in (follow, code, code + tok.encode("    lines"))
    ]
    with_cache = [r.token_ids for r in cached.generate(requests) + cached.generate(requests)]
    without = [r.token_ids for r in bare.generate(requests)] * 2
    assert with_cache == without
    assert cached.prefix_cache.stats.tokens_reused > len(code)  # the second round found its prompts
    assert bare.prefix_cache.stats.entries <= 1  # only a pinned system turn, if the format has one


def test_a_pinned_entry_shorter_than_a_block_is_found() -> None:
    cache = PrefixCache(0)
    cache.insert([5, 6, 7], *_kv(3), pinned=True)
    hit = cache.match([5, 6, 7, 8])
    assert hit is not None
    assert hit[0] == 3
    assert cache.match([5, 9, 7, 8]) is None
