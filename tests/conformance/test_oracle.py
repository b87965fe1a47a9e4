"""The property oracle: count intervals, ties, tolerances; and the exact reference always lies inside it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from parity.conformance import mass_tolerance, row_bounds, tie_tolerance
from parity.conformance._oracle import UNIT_ROUNDOFF
from parity.sampling import DEFAULT_ORDER, VLLM_ORDER, kept_mask


def test_top_p_exact_prefix() -> None:
    b = row_bounds(np.log([0.5, 0.3, 0.15, 0.05]), temperature=1.0, top_k=0, top_p=0.75, min_p=0.0)
    assert (b.lo, b.hi) == (2, 2)
    assert b.violations(np.array([True, True, False, False])) == []
    assert b.violations(np.array([True, False, True, False]))  # order broken
    assert b.violations(np.array([True, True, True, False]))  # not minimal


def test_boundary_tie_allows_one_or_all_tied_tokens() -> None:
    b = row_bounds(np.zeros(10), temperature=1.0, top_k=0, top_p=0.3, min_p=0.0)
    assert b.lo == 3
    assert b.hi == 10
    assert b.violations(np.arange(10) >= 7) == []  # any three of the tied tokens


def test_top_k_ties_and_greedy() -> None:
    row = np.array([3.0, 2.0, 2.0, 2.0, 1.0])
    b = row_bounds(row, temperature=1.0, top_k=2, top_p=1.0, min_p=0.0)
    assert (b.lo, b.hi) == (2, 4)
    g = row_bounds(np.array([1.0, 5.0, 5.0]), temperature=0.0, top_k=0, top_p=1.0, min_p=0.0)
    assert (g.lo, g.hi) == (1, 2)
    assert g.violations(np.array([True, False, False]))  # greedy has no tolerance


def test_min_p_threshold() -> None:
    row = np.log(np.array([0.5, 0.25, 0.049, 0.2]))
    b = row_bounds(row, temperature=1.0, top_k=0, top_p=1.0, min_p=0.1)
    assert (b.lo, b.hi) == (3, 3)
    assert b.violations(np.array([True, True, False, True])) == []


def test_tolerances_are_float32_derived() -> None:
    assert mass_tolerance(0) == 16 * UNIT_ROUNDOFF
    assert math.isclose(mass_tolerance(128256), (128256 + 16) * 2.0**-24)
    assert tie_tolerance(0.0, 0.0, 0.0) == 16 * 2.0**-24


def test_removed_every_token_is_reported() -> None:
    b = row_bounds(np.array([1.0, 0.0]), temperature=1.0, top_k=0, top_p=0.9, min_p=0.0)
    assert b.violations(np.array([False, False])) == ["removed every token, the argmax (index 0) included"]


rows = st.integers(2, 40).flatmap(
    lambda v: st.lists(
        st.one_of(st.floats(-8, 8, width=32), st.sampled_from([0.0, 1.0, -np.inf])), min_size=v, max_size=v
    )
)


@given(
    row=rows,
    temperature=st.sampled_from([0.0, 0.3, 1.0, 2.0]),
    top_k=st.sampled_from([0, 1, 2, 5, 50]),
    top_p=st.sampled_from([0.1, 0.5, 0.9, 0.99, 1.0]),
    min_p=st.sampled_from([0.0, 0.05, 0.5, 1.0]),
    vllm=st.booleans(),
)
def test_exact_reference_always_inside_the_oracle(
    row: list[float], temperature: float, top_k: int, top_p: float, min_p: float, vllm: bool
) -> None:
    x = np.array(row, dtype=np.float32)
    if not np.isfinite(x).any():
        x[0] = 0.0
    order = VLLM_ORDER if vllm else DEFAULT_ORDER
    kept = kept_mask(x, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, order=order)
    bounds = row_bounds(x, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, order=order)
    assert bounds.violations(np.asarray(kept)) == []


@pytest.mark.parametrize("order", [DEFAULT_ORDER, VLLM_ORDER])
def test_may_and_must_keep_bracket_the_reference(order: tuple[str, ...], rng: np.random.Generator) -> None:
    for _ in range(50):
        x = rng.normal(0.0, 2.0, 64).astype(np.float32)
        kw = {"temperature": 0.8, "top_k": 20, "top_p": 0.9, "min_p": 0.02}
        kept = np.asarray(kept_mask(x, order=order, **kw))
        b = row_bounds(x, order=order, **kw)
        assert not (b.must_keep() & ~kept).any()
        assert not (kept & ~b.may_keep()).any()
