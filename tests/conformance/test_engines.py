"""The serving engines' own samplers behind the kit: llama.cpp, vLLM, SGLang, FlashInfer.

Each test runs when its engine is installed (the `engines` extra; vLLM and SGLang with --no-deps) and skips with
the reason otherwise. Sized down: the full-strength verdicts are in docs/conformance.md.
"""

from __future__ import annotations

import importlib.metadata
import json

import numpy as np
import pytest
from click.testing import CliRunner

from parity import ConformanceError, InvalidInputError
from parity.cli import main
from parity.conformance import Params, check_sampler, replay, row_bounds
from parity.conformance._cases import Case
from parity.conformance._engines import ENGINES, engine_function
from parity.sampling import LLAMACPP_ORDER, VLLM_ORDER

torch = pytest.importorskip("torch")


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_vllm = pytest.mark.skipif(
    not _installed("vllm"), reason="vllm not installed (pip install --no-deps vllm==0.33.0)"
)
needs_sglang = pytest.mark.skipif(
    not _installed("sglang"), reason="sglang not installed (pip install --no-deps sglang==0.5.23)"
)

QUICK = ["check_argmax_survival", "check_top_k_properties", "check_top_p_properties", "check_min_p_properties"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_temperature_last_order_changes_top_p_mass() -> None:
    """llama.cpp's order: top-p on softmax(x), not softmax(x / T); at T = 0.5 the two keep different counts."""
    row = np.array([2.0, 1.0, 0.0, -1.0])
    first = row_bounds(row, temperature=0.5, top_k=0, top_p=0.9, min_p=0.0)
    last = row_bounds(row, temperature=0.5, top_k=0, top_p=0.9, min_p=0.0, order=LLAMACPP_ORDER)
    assert (first.lo, last.lo) == (2, 3)
    cut = row_bounds(row, temperature=0.5, top_k=0, top_p=1.0, min_p=0.3, order=LLAMACPP_ORDER)
    assert cut.lo == 2  # min-p on softmax(x): exp(-1) >= 0.3 > exp(-2)


def test_order_with_two_temperatures_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="optionally with 'temperature' once"):
        check_sampler("builtin:reference", order=("temperature", "top_k", "top_p", "min_p", "temperature"))


def test_llamacpp_chain_is_conformant_in_its_own_order() -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (pip install 'parity[engines]')")
    report = check_sampler("builtin:llamacpp", order=LLAMACPP_ORDER, scale=0.02, only=QUICK)
    assert report.conformant, report.render()
    sampler = check_sampler(
        "builtin:llamacpp", kind="sampler", order=LLAMACPP_ORDER, scale=0.02, only=["check_sampler_determinism"]
    )
    assert sampler.conformant, sampler.render()


def test_llamacpp_temperature_last_is_a_documented_difference() -> None:
    """Judged in the kit's default order (temperature first), llama.cpp's top-p keeps another count."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (pip install 'parity[engines]')")
    case = Case(np.array([[2.0, 1.0, 0.0, -1.0]], dtype=np.float32), Params(0.5, 0, 0.9, 0.0), "oracle").encode()
    assert replay("builtin:llamacpp", case, order=LLAMACPP_ORDER, echo=False)
    assert not replay("builtin:llamacpp", case, echo=False)


@needs_vllm
def test_vllm_torch_path_is_conformant_in_its_own_order() -> None:
    report = check_sampler("builtin:vllm", order=VLLM_ORDER, scale=0.02, only=QUICK)
    assert report.framework == "torch"
    assert report.conformant, report.render()


@needs_sglang
def test_finding_sglang_disabled_top_p_drops_the_tail() -> None:
    """SGLang's torch-native top-p at top_p = 1.0 (disabled) still drops the last token when the float32 cumsum
    of the sorted probabilities rounds above 1: `(probs_sum - probs_sort) > top_p` holds for it."""
    fn = engine_function("sglang", "sglang", "srt/layers/sampler.py", ("top_k_top_p_min_p_sampling_from_probs_torch",))
    probs = torch.softmax(torch.from_numpy(np.random.default_rng(3).normal(0, 3, (64, 400)).astype(np.float32)), -1)
    ones, ks = torch.ones(64), torch.full((64,), 1 << 30, dtype=torch.int32)
    out = fn["top_k_top_p_min_p_sampling_from_probs_torch"](
        probs, ks, ones, torch.zeros(64), False, None, torch.zeros(64, dtype=torch.int64), return_filtered_probs=True
    )
    dropped = (out[1] == 0).sum(dim=1)
    assert int(dropped.max()) >= 1  # some row lost tokens to a disabled top-p
    report = check_sampler("builtin:sglang", scale=0.02, only=["check_argmax_survival", "check_min_p_properties"])
    assert report.conformant, report.render()


def test_flashinfer_without_cuda_says_why() -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the device script runs FlashInfer")
    assert ENGINES["flashinfer"].filter is None
    with pytest.raises(ConformanceError, match="needs a CUDA GPU"):
        ENGINES["flashinfer"].sampler(np.zeros((1, 4), np.float32), seed=0)  # type: ignore[misc]
    code, _, err = _conform("builtin:flashinfer")
    assert code == 2
    assert "builtin:flashinfer needs a CUDA GPU" in err


def test_vllm_triton_without_cuda_says_why() -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    assert ENGINES["vllm-triton"].sampler is None
    with pytest.raises(ConformanceError, match="needs a CUDA GPU"):
        ENGINES["vllm-triton"].filter(torch.zeros((1, 4)), top_p=0.9)  # type: ignore[misc]
    code, _, err = _conform("builtin:vllm-triton")
    assert code == 2
    assert "builtin:vllm-triton needs a CUDA GPU" in err


def _conform(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["conform", *args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_runs_llamacpp_to_a_verdict() -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (pip install 'parity[engines]')")
    code, out, _ = _conform("builtin:llamacpp", "--order", "llamacpp", "--only", "top_k_properties", "--scale", "0.02")
    assert code == 0, out
    assert "PASS check_top_k_properties" in out
    code, out, _ = _conform(
        "builtin:llamacpp",
        "--kind",
        "sampler",
        "--order",
        "llamacpp",
        "--json",
        "--only",
        "sampler_support",
        "--scale",
        "0.02",
    )
    assert code == 0, out
    assert json.loads(out)["conformant"] is True


@needs_sglang
def test_finding_sglang_torch_path_runs_top_p_before_top_k() -> None:
    """Its cumulative sum is taken on the full distribution before the top-k mask: top-p, then top-k."""
    case = Case(np.array([[3.0, 2.0, 1.0, 0.0]], dtype=np.float32), Params(1.0, 3, 0.9, 0.0), "oracle").encode()
    assert not replay("builtin:sglang", case, echo=False)  # top-k then top-p keeps 2; SGLang keeps 3
    assert replay("builtin:sglang", case, order=("top_p", "top_k", "min_p"), echo=False)
