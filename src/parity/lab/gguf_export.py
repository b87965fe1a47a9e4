"""Export the lab weights as a GGUF ``llama`` model (f16, q8_0 or q4_0) for llama.cpp.

The lab model already uses the GGUF llama layout: rotary embeddings on adjacent channel pairs (so q/k need no
permutation), RMSNorm, SwiGLU, tied embeddings (no ``output.weight``; llama.cpp reuses ``token_embd``). The
tokenizer is byte-level BPE with the GPT-2 split pattern, written as ``tokenizer.ggml.model = gpt2``. The lab's
chat format goes in as ``tokenizer.chat_template`` (:data:`CHAT_TEMPLATE`): without one, llama-cpp-python's chat
endpoint falls back to the llama-2 ``[INST]`` format and answers a different prompt than the lab does. Quantised
types are produced with the ``gguf`` package's own reference quantisers (2-D weights only; norms stay f32).
``parity lab export-gguf OUT --quantization q8_0`` runs it from the command line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

from parity._exceptions import ConfigError, InvalidInputError
from parity._optional import import_optional
from parity.lab._corpus import ASSISTANT, END, END_OF_TEXT, SPECIAL_TOKENS
from parity.lab.tokenizer import WEIGHTS_DIR

Quantization = Literal["f16", "q8_0", "q4_0"]
QUANTIZATIONS: tuple[str, ...] = ("f16", "q8_0", "q4_0")

#: ``Engine.chat_prompt`` as a Jinja chat template: ``<|role|>content<|end|>\n`` per message, then
#: ``<|assistant|>`` (always, as the lab does); ``developer`` is read as ``system``, as the lab server does.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% set role = 'system' if message['role'] == 'developer' else message['role'] %}"
    f"{{{{ '<|' + role + '|>' + message['content'] + '{END}' + '\\n' }}}}"
    "{% endfor %}"
    f"{{{{ '{ASSISTANT}' }}}}"
)

#: lab parameter name -> GGUF tensor name ({i} is the layer).
TENSOR_NAMES: dict[str, str] = {
    "tok_embeddings.weight": "token_embd.weight",
    "norm.weight": "output_norm.weight",
    "layers.{i}.attention_norm.weight": "blk.{i}.attn_norm.weight",
    "layers.{i}.attention.wq.weight": "blk.{i}.attn_q.weight",
    "layers.{i}.attention.wk.weight": "blk.{i}.attn_k.weight",
    "layers.{i}.attention.wv.weight": "blk.{i}.attn_v.weight",
    "layers.{i}.attention.wo.weight": "blk.{i}.attn_output.weight",
    "layers.{i}.ffn_norm.weight": "blk.{i}.ffn_norm.weight",
    "layers.{i}.feed_forward.w1.weight": "blk.{i}.ffn_gate.weight",
    "layers.{i}.feed_forward.w2.weight": "blk.{i}.ffn_down.weight",
    "layers.{i}.feed_forward.w3.weight": "blk.{i}.ffn_up.weight",
}


def gguf_name(name: str) -> str:
    """The GGUF tensor name of a lab parameter name.

    >>> gguf_name("layers.3.feed_forward.w1.weight")
    'blk.3.ffn_gate.weight'
    """
    parts = name.split(".")
    if parts[0] == "layers":
        key = ".".join(["layers", "{i}", *parts[2:]])
        if key in TENSOR_NAMES:
            return TENSOR_NAMES[key].format(i=parts[1])
    elif name in TENSOR_NAMES:
        return TENSOR_NAMES[name]
    raise InvalidInputError("name", "must be a parameter of the lab model", name)


def export_gguf(
    out_path: Path,
    *,
    weights_dir: Path | None = None,
    quantization: Quantization = "f16",
    rope_scaling: float = 1.0,
) -> Path:
    """Write the weights in ``weights_dir`` (default: the committed ones) to ``out_path`` as GGUF."""
    gguf = import_optional("gguf", extra="bench")
    safetensors_numpy = import_optional("safetensors.numpy", extra="lab")
    if quantization not in QUANTIZATIONS:
        raise InvalidInputError("quantization", f"must be one of {list(QUANTIZATIONS)}", quantization)
    if not rope_scaling >= 1.0:
        raise InvalidInputError("rope_scaling", "must be >= 1.0", rope_scaling)
    directory = WEIGHTS_DIR if weights_dir is None else Path(weights_dir)
    try:
        config: dict[str, Any] = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        tokenizer: dict[str, Any] = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
        state: dict[str, np.ndarray] = safetensors_numpy.load_file(str(directory / "model.safetensors"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read the lab weights: {err}", source=str(directory)) from err

    qtype = {
        "f16": gguf.GGMLQuantizationType.F16,
        "q8_0": gguf.GGMLQuantizationType.Q8_0,
        "q4_0": gguf.GGMLQuantizationType.Q4_0,
    }[quantization]
    file_type = {
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
        "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
    }[quantization]

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out_path), "llama")
    writer.add_name(str(config.get("model_id", "parity-lab")))
    writer.add_context_length(int(config["max_context"] * rope_scaling))
    writer.add_embedding_length(int(config["d_model"]))
    writer.add_block_count(int(config["n_layers"]))
    writer.add_feed_forward_length(int(config["d_ff"]))
    writer.add_head_count(int(config["n_heads"]))
    writer.add_head_count_kv(int(config["n_heads"]))
    writer.add_rope_dimension_count(int(config["d_model"]) // int(config["n_heads"]))
    writer.add_rope_freq_base(float(config["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(config["norm_eps"]))
    writer.add_vocab_size(int(config["vocab_size"]))
    writer.add_file_type(file_type)
    if rope_scaling != 1.0:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope_scaling))

    vocab: dict[str, int] = tokenizer["model"]["vocab"]
    for added in tokenizer.get("added_tokens", []):
        vocab[added["content"]] = int(added["id"])
    tokens = [""] * len(vocab)
    for text, index in vocab.items():
        tokens[index] = text
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer["model"]["merges"]]
    special = {vocab[t] for t in SPECIAL_TOKENS}
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if i in special else 1 for i in range(len(tokens))])  # 3: control, 1: normal
    writer.add_token_merges(merges)
    writer.add_bos_token_id(vocab[END_OF_TEXT])
    writer.add_eos_token_id(vocab[END_OF_TEXT])
    writer.add_eot_token_id(vocab[END])
    writer.add_pad_token_id(vocab[END_OF_TEXT])
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    for name, tensor in state.items():
        data = tensor.astype(np.float32)
        if data.ndim == 1:
            writer.add_tensor(gguf_name(name), data)
        elif qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(gguf_name(name), data.astype(np.float16))
        else:
            writer.add_tensor(gguf_name(name), gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_path


__all__ = ["CHAT_TEMPLATE", "QUANTIZATIONS", "export_gguf", "gguf_name"]
