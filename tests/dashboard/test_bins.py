"""Adaptive time bins: round widths, epoch alignment, at most MAX_BINS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from parity._exceptions import InvalidInputError
from parity.dashboard._bins import BIN_WIDTHS, MAX_BINS, bins_for

T0 = datetime(2025, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("span", "width", "count"),
    [
        (timedelta(hours=1), timedelta(minutes=1), 61),
        (timedelta(hours=3), timedelta(minutes=1), 181),
        (timedelta(hours=4), timedelta(minutes=5), 49),
        (timedelta(days=1), timedelta(minutes=15), 97),
        (timedelta(days=49), timedelta(hours=6), 197),
        (timedelta(days=51), timedelta(hours=12), 103),
        (timedelta(0), timedelta(minutes=1), 1),
    ],
)
def test_smallest_round_width_within_max_bins(span: timedelta, width: timedelta, count: int) -> None:
    bins = bins_for(T0, T0 + span)
    assert (bins.width, bins.count) == (width, count)
    assert bins.count <= MAX_BINS
    assert bins.end > T0 + span


def test_bins_are_aligned_to_the_epoch_and_clamp() -> None:
    start = datetime(2025, 8, 5, 13, 47, tzinfo=UTC)
    bins = bins_for(start, start + timedelta(days=30))
    assert bins.width == timedelta(hours=6)
    assert bins.start == datetime(2025, 8, 5, 12, tzinfo=UTC)
    assert bins.index(start) == 0
    assert bins.index(start - timedelta(days=3)) == 0
    assert bins.index(start + timedelta(days=300)) == bins.count - 1
    assert bins.index(datetime(2025, 8, 5, 18, tzinfo=UTC)) == 1
    assert bins.centers()[0] == datetime(2025, 8, 5, 15, tzinfo=UTC)
    assert bins.lefts()[1] == datetime(2025, 8, 5, 18, tzinfo=UTC)


def test_a_span_longer_than_the_largest_width_allows_uses_the_largest() -> None:
    bins = bins_for(T0, T0 + timedelta(days=365 * 30), max_bins=10)
    assert bins.width == BIN_WIDTHS[-1]
    assert bins.count > 10


def test_invalid_arguments_name_the_argument() -> None:
    with pytest.raises(InvalidInputError, match="`max_bins` must be >= 1, got 0"):
        bins_for(T0, T0, max_bins=0)
    with pytest.raises(InvalidInputError, match="`end` must not be before start"):
        bins_for(T0, T0 - timedelta(seconds=1))
