"""parity.sampling.torch: the same semantics on tensors, validation, and the same kept sets at large vocabularies."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from parity._exceptions import InvalidInputError
from parity.sampling import SamplingParams, filter_logits, kept_mask, probabilities
from parity.sampling.torch import filter_logits_torch, kept_mask_torch, probabilities_torch, sample_torch

torch.set_num_threads(1)


@pytest.mark.parametrize(
    ("logits", "match"),
    [
        (torch.tensor([[0.0, math.nan]]), r"`logits` row 0 contains NaN"),
        (torch.tensor([[0.0], [-math.inf]]), r"`logits` row 1 is entirely -inf"),
        (torch.tensor([[0.0, math.inf]]), r"`logits` row 0 contains \+inf"),
        (torch.tensor([1, 2]), r"`logits` must be a real floating-point tensor"),
        (torch.zeros(2, 2, 2), r"`logits` must be a 1-D \[V\] or 2-D \[B, V\] tensor"),
        (np.zeros(3), r"`logits` must be a torch.Tensor"),
    ],
)
def test_bad_tensors_are_named(logits: object, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        kept_mask_torch(logits)  # type: ignore[arg-type]


def test_bad_randomness_is_named() -> None:
    x = torch.zeros(2, 3)
    with pytest.raises(InvalidInputError, match=r"`seeds` must not be given together with `generator`"):
        sample_torch(x, generator=torch.Generator(), seeds=[1, 2])
    with pytest.raises(InvalidInputError, match=r"`seeds` must be 2 non-negative integers"):
        sample_torch(x, seeds=[1, 2, 3])
    with pytest.raises(InvalidInputError, match=r"`generator` must be a torch.Generator or None"):
        sample_torch(x, generator=3)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    "prm",
    [
        SamplingParams(top_p=0.9),
        SamplingParams(top_p=0.999, temperature=0.7),
        SamplingParams(top_k=50, top_p=0.95, min_p=0.02),
        SamplingParams(top_k=1000, top_p=0.99, min_p=0.01, order=("min_p", "top_k", "top_p")),
        SamplingParams(temperature=0.0),
    ],
)
def test_large_vocab_same_as_numpy(dtype: torch.dtype, prm: SamplingParams) -> None:
    gen = torch.Generator().manual_seed(11)
    x = (torch.randn(4, 128256, generator=gen) * 3).to(dtype)
    x[1, 70000] = 25.0
    x[2, :1000] = -math.inf
    keep_t = kept_mask_torch(x, prm)
    assert keep_t.dtype == torch.bool
    assert keep_t.shape == x.shape
    assert np.array_equal(keep_t.numpy(), kept_mask(x, prm))


def test_filter_and_probabilities_match_numpy() -> None:
    x = torch.randn(3, 500, generator=torch.Generator().manual_seed(2)) * 2
    prm = SamplingParams(temperature=0.8, top_k=40, top_p=0.9)
    out = filter_logits_torch(x, prm)
    assert out.dtype == torch.float64
    assert np.array_equal(out.numpy(), filter_logits(x.numpy(), prm))
    np.testing.assert_allclose(probabilities_torch(x, prm).numpy(), probabilities(x.numpy(), prm), rtol=1e-12)


def test_one_dim_input_and_generator_draws() -> None:
    x = torch.tensor([0.0, 1.0, 2.0, -math.inf])
    assert kept_mask_torch(x, top_k=2).tolist() == [False, True, True, False]
    tokens = sample_torch(x.repeat(2000, 1), top_k=2, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(tokens, minlength=4).tolist()
    assert counts[0] == 0
    assert counts[3] == 0
    assert 1200 < counts[2] < 1700  # expected 2000 * e / (1 + e) = 1462, sd about 20
    assert sample_torch(x, temperature=0.0, seeds=[5]).shape == ()


def test_inputs_are_never_modified() -> None:
    x = torch.randn(3, 50, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    before = x.clone()
    filter_logits_torch(x, top_p=0.5)
    probabilities_torch(x, top_k=3)
    sample_torch(x, top_p=0.5, seeds=[1, 2, 3])
    assert torch.equal(x, before)
    xn = x.numpy().copy()
    filter_logits(xn, top_p=0.5)
    probabilities(xn, top_k=3)
    assert np.array_equal(xn, before.numpy())


def _device_path_rows() -> torch.Tensor:
    """float64 rows (the device path on any device): dense, peaked, tied at the boundary, and one exactly on it."""
    g = torch.Generator().manual_seed(11)
    dense = torch.randn(2, 20000, generator=g, dtype=torch.float64) * 3.0
    peaked = torch.randn(2, 20000, generator=g, dtype=torch.float64) * 8.0
    tied = torch.full((1, 20000), -40.0, dtype=torch.float64)
    tied[0, :5] = torch.tensor([2.0, 1.0, 1.0, 1.0, 0.5], dtype=torch.float64)
    exact = torch.full((1, 20000), -math.inf, dtype=torch.float64)
    exact[0, :3] = torch.log(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64))  # a prefix within the guard
    return torch.cat([dense, peaked, tied, exact])


@pytest.mark.parametrize("top_p", [0.5, 0.8, 0.9, 0.999])
@pytest.mark.parametrize("head", [8192, 4])
def test_head_search_and_histogram_search_keep_the_reference_sets(
    top_p: float, head: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The top-k head search decides most rows; a head too short (4) sends every row to the histogram search;
    at top_p 0.999 the dense rows' boundary lies below an 8192 head too. Every kept set is the numpy reference's."""
    import parity.sampling.torch as backend

    monkeypatch.setattr(backend, "head_size", lambda v: min(v, head))
    hist_rows: list[int] = []
    hist = backend._topp_thresholds_hist

    def counted(z: torch.Tensor, *rest: object) -> object:
        hist_rows.append(z.shape[0])
        return hist(z, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(backend, "_topp_thresholds_hist", counted)
    x = _device_path_rows()
    ref = kept_mask(x.numpy(), top_p=top_p)
    assert np.array_equal(kept_mask_torch(x, top_p=top_p).numpy(), ref)
    # which search decided: with a 4-token head the histogram gets at least the four dense and peaked rows; with
    # 8192 only the rows the head cannot decide (the row within the guard; the dense rows at 0.999)
    if head == 4:
        assert sum(hist_rows) >= 4
    else:
        assert sum(hist_rows) == {0.5: 1, 0.8: 1, 0.9: 0, 0.999: 2}[top_p]
    assert np.array_equal(
        kept_mask_torch(x, top_k=30, top_p=top_p).numpy(), kept_mask(x.numpy(), top_k=30, top_p=top_p)
    )
    if top_p == 0.8:
        assert ref[4, :5].tolist() == [True, True, True, True, False]  # the boundary level (three 1.0s) kept whole
