"""Real implementations nobody here wrote: Hugging Face's logits warpers, jax.lax.top_k and approx_max_k.

What the kit finds is documented in docs/conformance.md; these tests pin it (sized down, few shapes).
"""

from __future__ import annotations

import numpy as np
import pytest

from parity.conformance import Params, check_sampler, replay
from parity.conformance._cases import Case

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
jax = pytest.importorskip("jax")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


HF_CHECKS = [
    "check_argmax_survival",
    "check_greedy",
    "check_top_k_properties",
    "check_top_p_properties",
    "check_top_p_boundary_and_ties",
    "check_min_p_properties",
    "check_combined_parameters",
    "check_inf_rows",
    "check_nan_rows",
    "check_batch_invariance",
    "check_edge_parameters",
    "check_monotonicity",
]


def test_hf_warpers_are_conformant() -> None:
    report = check_sampler("builtin:hf-warpers", scale=0.05, only=HF_CHECKS)
    assert report.framework == "torch"
    assert report.conformant, report.render()


def test_reference_torch_backend_through_the_torch_protocol() -> None:
    report = check_sampler(
        "parity.sampling.torch:filter_logits_torch",
        framework="torch",
        scale=0.05,
        only=["check_top_p_properties", "check_argmax_survival", "check_inf_rows"],
    )
    assert report.conformant, report.render()


def _one_hot_case(top_k: int, temperature: float) -> str:
    rows = np.zeros((8, 12000), dtype=np.float32)
    rows[np.arange(8), [0, 1, 255, 10239, 10240, 10241, 11000, 11999]] = 1.0
    return Case(rows, Params(temperature, top_k, 1.0, 0.0), "argmax").encode()


def test_jax_top_k_and_approx_max_k_pass_the_incident_repro_on_cpu() -> None:
    """On CPU approx_max_k lowers to an exact top-k, so the postmortem's repro passes (one shape, few compiles)."""
    for name in ("builtin:jax-top-k", "builtin:jax-approx-max-k"):
        assert replay(name, _one_hot_case(256, 1.0), echo=False)
        rows = np.random.default_rng(1).normal(size=(4, 64)).astype(np.float32)
        assert replay(name, Case(rows, Params(0.7, 0, 0.9, 0.05), "oracle").encode(), echo=False)


def test_finding_approx_max_k_orders_nan_unlike_top_k() -> None:
    """Documented deviation: on CPU, approx_max_k with k = V ranks NaN among the finite values; top_k ranks it
    first. A sampler on approx_max_k then samples a NaN row as if the NaN token were absent."""
    x = jax.numpy.array([[0.0, float("nan"), 1.0, -1.0]], dtype=jax.numpy.float32)
    assert np.asarray(jax.lax.top_k(x, 4)[1]).tolist() == [[1, 2, 0, 3]]
    assert np.asarray(jax.lax.approx_max_k(x, 4)[1]).tolist() == [[2, 0, 1, 3]]
    bad = Case(np.array([[0.0, np.nan]], dtype=np.float32), Params(1.0, 0, 0.9, 0.0), "isolation").encode()
    assert replay("builtin:jax-approx-max-k", bad, echo=False) is False
    assert replay("builtin:jax-top-k", bad, echo=False) is True
