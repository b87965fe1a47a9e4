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
