"""Sampler protocol: support, greedy, determinism, and the goodness-of-fit test with its stated power."""

from __future__ import annotations

import numpy as np
import pytest
from tests.conformance import _impls

from parity.conformance import GOF_ALPHA, SAMPLERS, check_sampler, chi_square_gof, detectable_tv

SCALE = 0.02


def test_reference_sampler_is_conformant() -> None:
    report = check_sampler("builtin:reference", kind="sampler", scale=SCALE)
    assert report.conformant, report.render()
    gof = report.results[-1]
    assert gof.name == "check_sampler_goodness_of_fit"
    assert "detects any deviation of total variation >=" in gof.detail


def test_float32_gumbel_sampler_is_conformant() -> None:
    report = check_sampler(_impls.float32_sampler, kind="sampler", scale=SCALE, only=["check_sampler_support"])
    assert report.conformant, report.render()


def test_double_temperature_is_caught_by_goodness_of_fit() -> None:
    report = check_sampler(
        _impls.double_temperature_sampler, kind="sampler", scale=0.05, only=["check_sampler_goodness_of_fit"]
    )
    assert not report.conformant
    example = report.results[0].counterexample
    assert example is not None
    assert "p-value" in example.got


def test_approx_topk_sampler_is_caught_by_greedy() -> None:
    report = check_sampler("builtin:approx-topk-10240", kind="sampler", scale=SCALE, only=["check_sampler_greedy"])
    assert not report.conformant


def test_builtin_samplers_exist() -> None:
    assert set(SAMPLERS) == {"reference", "approx-topk-10240", "mixed-precision-topp", "december-workaround"}


def test_stated_power_shrinks_with_draws() -> None:
    assert detectable_tv(200_000, 30) < detectable_tv(50_000, 30) < detectable_tv(10_000, 30)
    assert detectable_tv(0, 30) == 1.0


def test_power_statement_holds_in_simulation(rng: np.random.Generator) -> None:
    n, k = 20_000, 10
    p = np.full(k, 1.0 / k)
    tv = detectable_tv(n, k - 1)
    q = p.copy()
    q[: k // 2] += 2 * tv / k
    q[k // 2 :] -= 2 * tv / k  # total variation exactly tv, the hardest direction
    rejected = sum(chi_square_gof(rng.multinomial(n, q), p).rejected for _ in range(200))
    assert rejected / 200 >= 0.8  # stated 0.9 (asymptotic); allow simulation noise
    false_alarms = sum(chi_square_gof(rng.multinomial(n, p), p).rejected for _ in range(200))
    assert false_alarms == 0  # alpha is 1e-6


def test_gof_pools_small_bins_and_flags_impossible_draws() -> None:
    p = np.array([0.5, 0.5, 0.0])
    assert chi_square_gof(np.array([50, 49, 1]), p).pvalue == 0.0
    result = chi_square_gof(np.array([5000, 5000, 0]), np.array([0.5, 0.4999, 0.0001]))
    assert result.pvalue > GOF_ALPHA


@pytest.mark.parametrize("seed", [0, 1])
def test_sampler_greedy_finds_argmax(seed: int) -> None:
    draw = SAMPLERS["reference"]
    x = np.array([[0.0, 3.0, 1.0], [5.0, 0.0, 0.0]], dtype=np.float32)
    assert draw(x, temperature=0.0, seed=seed).tolist() == [1, 0]
