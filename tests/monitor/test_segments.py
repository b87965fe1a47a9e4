"""Segment lattice, keys, shards and signals."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from parity._exceptions import InvalidInputError
from parity.monitor import SEGMENT_DIMENSIONS, DetectorObservation, Record
from parity.monitor.detection.segments import (
    SegmentLattice,
    SegmentStatistics,
    StatsConfig,
    is_refinement,
    key_of,
    record_signals,
    segment_dict,
    shard_of,
)


def test_lattice_has_every_marginal_once() -> None:
    lattice = SegmentLattice(SEGMENT_DIMENSIONS)
    keys = lattice.keys(("S", "long", "tpu", "us", "short", "v1"))
    assert len(keys) == len(set(keys)) == 64
    assert keys[0] == ("*",) * 6
    assert keys[-1] == ("S", "long", "tpu", "us", "short", "v1")
    assert len(SegmentLattice(SEGMENT_DIMENSIONS, max_order=1).keys(("a",) * 6)) == 7


def test_keys_round_trip_and_refinement() -> None:
    key = key_of({"platform": "tpu", "model": "S"})
    assert segment_dict(key) == {"model": "S", "platform": "tpu"}
    assert is_refinement(key_of({"model": "S", "platform": "tpu", "pool": "long"}), key)
    assert not is_refinement(key_of({"model": "O", "platform": "tpu"}), key)
    with pytest.raises(InvalidInputError, match="`segment` has dimensions"):
        key_of({"server": "x"})


def test_shard_of_is_stable_and_spread() -> None:
    keys = [("S", str(i)) for i in range(400)]
    shards = [shard_of(k, 4) for k in keys]
    assert shards == [shard_of(k, 4) for k in keys]
    assert all(shards.count(s) > 50 for s in range(4))
    with pytest.raises(InvalidInputError, match="`n` must be >= 1"):
        shard_of(("S",), 0)


def test_record_signals_clip_scores(make_record: Callable[..., Record]) -> None:
    rec = make_record(0, observations=(DetectorObservation("degeneration", False, 3.0),))
    values = {s.signal: s.value for s in record_signals(rec)}
    assert values == {"degeneration": 0.0, "degeneration.score": 1.0, "feedback": 0.0}
    assert [s.signal for s in record_signals(rec, scores=False)] == ["degeneration", "feedback"]


def test_max_streams_caps_memory(make_record: Callable[..., Record]) -> None:
    stats = SegmentStatistics(StatsConfig(max_streams=10))
    rec = make_record(0)
    stats.observe(stats.lattice.values_of(rec), record_signals(rec), 0.0)
    assert len(stats) == 10
    assert stats.untracked > 0


def test_validation() -> None:
    with pytest.raises(InvalidInputError, match="`max_order` must be in"):
        SegmentLattice(("a", "b"), max_order=3)
    with pytest.raises(InvalidInputError, match="`dimensions` must be non-empty and distinct"):
        SegmentLattice(("a", "a"))
    with pytest.raises(InvalidInputError, match="`n_shards` must be >= 1"):
        SegmentStatistics(n_shards=0)


def test_the_lattice_reads_the_context_class_the_record_was_built_with(make_record: Callable[..., Record]) -> None:
    lattice = SegmentLattice(("context_class",))
    assert lattice.values_of(make_record(0, context_tokens=500)) == ("short",)  # built at the default split
    assert lattice.values_of(make_record(0, context_tokens=500, context_class="long")) == ("long",)  # at 192


def test_a_new_stream_is_a_freshly_constructed_test() -> None:
    """In the object bank, new rate and invariant streams are copies of a prototype: the state of a constructed
    ``BernoulliCUSUM``, lists their own (one stream's observations never reach another's); in the compiled banks, a
    new row reads as that test."""
    from parity.monitor.detection._score_bank import COMPILED, _reset
    from parity.monitor.detection.segments import SegmentStatistics, StatsConfig
    from parity.stats.sequential import BernoulliCUSUM

    config = StatsConfig()
    stats = SegmentStatistics(config, compiled=False)
    fresh = {
        "rate": BernoulliCUSUM(threshold=stats.rate_threshold, warmup=config.rate_warmup),
        "invariant": BernoulliCUSUM(
            threshold=stats.rate_threshold, baseline=config.invariant_rate, ratios=config.invariant_ratios
        ),
    }
    for kind, want in fresh.items():
        a, b = stats._new(kind), stats._new(kind)
        assert isinstance(a, BernoulliCUSUM)
        assert vars(a) == vars(want)
        for _ in range(3):
            a.update(1.0, 0.0)
        assert vars(b) == vars(want) != vars(a)
    if not COMPILED:
        return
    rows = SegmentStatistics(config)
    for kind, want in fresh.items():
        a, b = rows._new(kind), rows._new(kind)
        for det in (a, b, want):
            det.update(1.0, 0.0)
        a.update(1.0, 1.0)
        assert (b.n, b.baseline, b.statistic, b.fixed_baseline) == (
            want.n,
            want.baseline,
            want.statistic,
            want.fixed_baseline,
        )
        assert b.estimate() == want.estimate() != a.estimate()
    assert rows._banks is not None
    for bank in rows._banks:  # a new row is the kernel's reset state, to the bit (computed without loading it)
        fresh_f, fresh_i = bank._fresh_row()
        row = bank._grow()
        _reset(bank.f, bank.i, row, bank._c, bank._ratios)
        assert (fresh_f.tobytes(), fresh_i.tobytes()) == (bank.f[row].tobytes(), bank.i[row].tobytes())
