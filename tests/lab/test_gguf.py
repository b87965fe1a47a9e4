"""GGUF export of the lab weights, and llama.cpp as a second engine for them (skipped without llama_cpp)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
gguf = pytest.importorskip("gguf")

from parity._exceptions import InvalidInputError  # noqa: E402
from parity.lab.engine import Engine  # noqa: E402
from parity.lab.gguf_export import CHAT_TEMPLATE, export_gguf, gguf_name  # noqa: E402

#: llama.cpp runs the f16 weights with its own kernels (f16 matmuls, its own softmax/RMSNorm order); on this
#: model logits agree to a few thousandths (0.0018 max on the prompt below, llama-cpp-python 0.3.36, where the
#: logits span -9..9; 0.0034 over the engine benchmark's prompts). 0.25 still catches a transposed or
#: mispermuted tensor (errors of ~1-10).
LLAMA_CPP_LOGIT_ATOL = 0.25


@pytest.fixture(scope="module")
def engine() -> Engine:
    torch.set_num_threads(1)
    return Engine.load()


@pytest.fixture(scope="module")
def f16_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_gguf(tmp_path_factory.mktemp("gguf") / "lab-f16.gguf", quantization="f16")


def test_export_writes_a_llama_model_with_every_tensor(engine: Engine, f16_path: Path) -> None:
    reader = gguf.GGUFReader(str(f16_path))
    arch = reader.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "llama"
    names = {t.name for t in reader.tensors}
    assert names == {gguf_name(n) for n in engine.model.state_dict()}
    tokens = reader.fields["tokenizer.ggml.tokens"]
    assert len(tokens.data) == engine.tokenizer.vocab_size
    embd = next(t for t in reader.tensors if t.name == "token_embd.weight")
    expected = engine.model.tok_embeddings.weight.detach().numpy().astype(np.float16)
    np.testing.assert_array_equal(np.asarray(embd.data).reshape(expected.shape), expected)


CONVERSATION = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Write this in Thai: Open file"},
    {"role": "assistant", "content": "เปิดไฟล์"},
    {"role": "user", "content": "And `os.path.join`?"},
]


def test_export_carries_the_lab_chat_format(engine: Engine, f16_path: Path) -> None:
    jinja2 = pytest.importorskip("jinja2")
    reader = gguf.GGUFReader(str(f16_path))
    field = reader.fields["tokenizer.chat_template"]
    assert bytes(field.parts[field.data[0]]).decode() == CHAT_TEMPLATE
    rendered = jinja2.Environment().from_string(CHAT_TEMPLATE).render(messages=CONVERSATION)
    assert rendered == engine.chat_prompt(CONVERSATION)


def test_quantized_export_is_smaller_and_carries_rope_scaling(tmp_path: Path, f16_path: Path) -> None:
    q4 = export_gguf(tmp_path / "q4.gguf", quantization="q4_0", rope_scaling=8.0)
    assert q4.stat().st_size < 0.4 * f16_path.stat().st_size
    reader = gguf.GGUFReader(str(q4))
    factor = reader.fields["llama.rope.scaling.factor"]
    assert float(factor.parts[factor.data[0]][0]) == 8.0
    assert {t.tensor_type for t in reader.tensors if len(t.shape) == 2} == {gguf.GGMLQuantizationType.Q4_0}


def test_the_index_of_a_gguf_is_cached_across_processes_and_rebuilt_when_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what SmolLM2's reader does with the wheel's file (gguf's own parse of its vocabulary takes seconds), on a
    # tiny GGUF with a tensor of each kind: quantised blocks, F32, F16
    from parity.lab import smollm2

    path = tmp_path / "tiny.gguf"
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_token_list(["<s>", "a", "b", "ab"])
    writer.add_token_merges(["a b"])
    q4 = gguf.GGMLQuantizationType.Q4_0
    writer.add_tensor("blk.0.attn_q.weight", gguf.quants.quantize(rng.normal(size=(8, 64)).astype(np.float32), q4),
                      raw_dtype=q4)  # fmt: skip
    writer.add_tensor("blk.0.attn_norm.weight", rng.normal(size=64).astype(np.float32))
    writer.add_tensor("token_embd.weight", rng.normal(size=(4, 64)).astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    monkeypatch.setenv("PARITY_CACHE_DIR", str(tmp_path / "cache"))
    first = smollm2._gguf_index(path)
    (cache,) = (tmp_path / "cache").glob("gguf-index-*.json")
    assert smollm2._gguf_index(path) == first
    cached = json.loads(cache.read_text(encoding="utf-8"))
    cache.write_text(json.dumps({**cached, "fields": {**cached["fields"], "marker": 1}}), encoding="utf-8")
    assert smollm2._gguf_index(path).fields["marker"] == 1  # read back from the JSON, not parsed again
    cache.write_text('{"fields": ', encoding="utf-8")  # a write cut short
    assert smollm2._gguf_index(path) == first
    assert json.loads(cache.read_text(encoding="utf-8"))["tensors"] == [list(t) for t in first.tensors]
    reader = gguf.GGUFReader(str(path))
    assert first.fields["tokenizer.ggml.tokens"] == reader.fields["tokenizer.ggml.tokens"].contents()
    types = set()
    for tensor, entry in zip(reader.tensors, first.tensors, strict=True):
        expected = np.asarray(gguf.quants.dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
        assert np.array_equal(smollm2._tensor_values(path, entry), expected), tensor.name
        types.add(tensor.tensor_type)
    assert types == {q4, gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16}
    path.touch()  # another file (a new mtime) is another key, never a stale index
    smollm2._gguf_index(path)
    assert len(list((tmp_path / "cache").glob("gguf-index-*.json"))) == 2


def test_bad_arguments_name_themselves(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="`quantization` must be one of"):
        export_gguf(tmp_path / "x.gguf", quantization="q2_k")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="`name` must be a parameter"):
        gguf_name("layers.0.nope.weight")


def test_llama_cpp_runs_the_export_like_the_lab_engine(engine: Engine, f16_path: Path) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(model_path=str(f16_path), n_ctx=128, n_threads=1, logits_all=True, verbose=False)
    ids = engine.tokenizer.encode("def add(a, b):\n    return a + b\n\nclass Point:")
    assert llm.tokenize(b"def add(a, b):", add_bos=False, special=True) == engine.tokenizer.encode("def add(a, b):")
    llm.eval(ids)
    theirs = np.asarray(llm.scores[: len(ids)], dtype=np.float32)
    with torch.no_grad():
        ours = engine.model(torch.tensor([ids]))[0].float().numpy()
    np.testing.assert_allclose(theirs, ours, atol=LLAMA_CPP_LOGIT_ATOL, rtol=0)
    assert (theirs.argmax(-1) == ours.argmax(-1)).mean() >= 0.9
    # the chat endpoint formats messages as the lab does (not llama-cpp-python's llama-2 fallback)
    llm.reset()
    chat = llm.create_chat_completion(messages=CONVERSATION, max_tokens=1, temperature=0.0)
    assert chat["usage"]["prompt_tokens"] == len(engine.tokenizer.encode(engine.chat_prompt(CONVERSATION)))
    llm.close()
