"""Segment addressing: the URL form, containment and overlap."""

from __future__ import annotations

import pytest

from parity._exceptions import InvalidInputError
from parity.dashboard._segment import contains, overlaps, parse_segment, scope_overlaps, segment_text


def test_parse_and_print_round_trip_in_dimension_order() -> None:
    assert parse_segment("platform=tpu,model=S") == {"model": "S", "platform": "tpu"}
    assert list(parse_segment("platform=tpu,model=S")) == ["model", "platform"]
    assert segment_text(parse_segment(" context_class = short , pool=long ")) == "pool=long,context_class=short"
    assert parse_segment("all") == parse_segment("") == {}
    assert segment_text({}) == "all"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model", "must be DIMENSION=VALUE pairs"),
        ("model=", "must be DIMENSION=VALUE pairs"),
        ("server=gpu-0", "dimensions must be among"),
        ("model=S,model=O", "must fix each dimension once"),
    ],
)
def test_bad_segments_name_the_argument(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=f"`segment` {message}"):
        parse_segment(text)


def test_containment_overlap_and_scopes() -> None:
    finest = {"model": "S", "pool": "long", "platform": "tpu", "context_class": "short"}
    assert contains({"model": "S", "platform": "tpu"}, finest)
    assert not contains({"model": "O"}, finest)
    assert contains({}, finest)
    assert overlaps({"model": "S"}, {"platform": "gpu"})
    assert not overlaps({"model": "S", "platform": "tpu"}, {"platform": "gpu"})
    assert scope_overlaps({"model": "O,S"}, {"model": "S"})
    assert not scope_overlaps({"model": "O"}, {"model": "S"})
    assert scope_overlaps({"server": "tpu-long-0"}, {"model": "S"})  # a server scope never excludes a segment
    assert scope_overlaps({}, {"model": "S"})
