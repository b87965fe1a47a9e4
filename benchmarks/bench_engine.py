"""Engine throughput (tokens/s at batch 1, 8, 32; fp32 and bf16) against Hugging Face transformers.

The competitor is ``transformers``' ``LlamaForCausalLM`` loaded with the same committed weights (q/k rows
permuted from the adjacent-pair RoPE layout to transformers' half-split layout, which leaves attention scores
unchanged), generating with its own KV cache in the same process. It doubles as an independent second
implementation: the section reports the max logit difference and greedy agreement between the two.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import numpy as np
import torch

from benchmarks._results import write_section
from parity.lab.engine import Engine, GenerationRequest

PROMPTS = [
    "def read_config(path):\n    ",
    "The json module",
    "class LRUCache:\n    def __init__(self, size):",
    "<|user|>Write this in Thai: Open file<|end|>\n<|assistant|>",
    "import os\nimport sys\n\n",
    "Return a list of",
    "<|user|>What does `os.path.join` do?<|end|>\n<|assistant|>",
    "for key, value in",
]
NEW_TOKENS = 32
REPEATS = 3
BATCHES = (1, 8, 32)


def _never_stop(logits: np.ndarray, step: int, rng: np.random.Generator) -> np.ndarray:
    """Keep every request running for exactly NEW_TOKENS tokens (the stop tokens can never be drawn)."""
    logits[[0, 4]] = -np.inf
    return logits


def lab_tokens_per_s(engine: Engine, batch: int) -> float:
    prompts = [engine.tokenizer.encode(PROMPTS[i % len(PROMPTS)]) for i in range(batch)]
    times = []
    for repeat in range(-1, REPEATS):  # repeat -1 warms up (oneDNN primitives, allocator); it is not timed
        requests = [
            GenerationRequest(
                prompt_ids=p,
                max_tokens=NEW_TOKENS,
                temperature=0.8,
                top_p=0.95,
                seed=repeat * 100 + i,
                logits_processor=_never_stop,
            )
            for i, p in enumerate(prompts)
        ]
        start = time.perf_counter()
        results = engine.generate(requests)
        if repeat >= 0:
            times.append(time.perf_counter() - start)
        assert sum(r.completion_tokens for r in results) == batch * NEW_TOKENS
    return batch * NEW_TOKENS / statistics.median(times)


def hf_model(engine: Engine, dtype: torch.dtype) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = engine.config
    hf_cfg = LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.d_ff,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_heads,
        max_position_embeddings=cfg.max_context,
        rms_norm_eps=cfg.norm_eps,
        rope_theta=cfg.rope_theta,
        tie_word_embeddings=True,
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=0,
    )
    model = LlamaForCausalLM(hf_cfg)
    hd, heads = cfg.head_dim, cfg.n_heads
    # adjacent pairs (2j, 2j+1) -> halves (j, j + hd/2) within each head
    perm = torch.cat([torch.arange(0, hd, 2), torch.arange(1, hd, 2)])
    perm = torch.cat([h * hd + perm for h in range(heads)])
    src = {k: v.float() for k, v in engine.model.state_dict().items()}
    state = {"model.embed_tokens.weight": src["tok_embeddings.weight"], "model.norm.weight": src["norm.weight"]}
    for i in range(cfg.n_layers):
        p, q = f"layers.{i}.", f"model.layers.{i}."
        state[q + "self_attn.q_proj.weight"] = src[p + "attention.wq.weight"][perm]
        state[q + "self_attn.k_proj.weight"] = src[p + "attention.wk.weight"][perm]
        state[q + "self_attn.v_proj.weight"] = src[p + "attention.wv.weight"]
        state[q + "self_attn.o_proj.weight"] = src[p + "attention.wo.weight"]
        state[q + "mlp.gate_proj.weight"] = src[p + "feed_forward.w1.weight"]
        state[q + "mlp.down_proj.weight"] = src[p + "feed_forward.w2.weight"]
        state[q + "mlp.up_proj.weight"] = src[p + "feed_forward.w3.weight"]
        state[q + "input_layernorm.weight"] = src[p + "attention_norm.weight"]
        state[q + "post_attention_layernorm.weight"] = src[p + "ffn_norm.weight"]
    state["lm_head.weight"] = state["model.embed_tokens.weight"]
    model.load_state_dict(state)
    return model.to(dtype).eval()


def hf_tokens_per_s(model: Any, engine: Engine, batch: int) -> float:
    prompts = [engine.tokenizer.encode(PROMPTS[i % len(PROMPTS)]) for i in range(batch)]
    longest = max(len(p) for p in prompts)
    ids = torch.zeros(batch, longest, dtype=torch.long)
    mask = torch.zeros(batch, longest, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, longest - len(p) :] = torch.tensor(p)
        mask[i, longest - len(p) :] = 1
    times = []
    for repeat in range(-1, REPEATS):  # repeat -1 warms up; it is not timed
        torch.manual_seed(repeat + 1)
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=NEW_TOKENS,
                min_new_tokens=NEW_TOKENS,
                do_sample=True,
                temperature=0.8,
                top_p=0.95,
                top_k=0,
                pad_token_id=0,
            )
        if repeat >= 0:
            times.append(time.perf_counter() - start)
        assert out.shape[1] == longest + NEW_TOKENS
    return batch * NEW_TOKENS / statistics.median(times)


def agreement(engine: Engine, model: Any) -> tuple[float, float, int, int]:
    """Max |logit difference| over the prompts' positions, and greedy agreement over NEW_TOKENS tokens each."""
    max_diff = 0.0
    agree = total = 0
    for text in PROMPTS:
        ids = engine.tokenizer.encode(text)
        [lab] = engine.generate([GenerationRequest(prompt_ids=ids, max_tokens=NEW_TOKENS, temperature=0.0)])
        full = torch.tensor([ids + lab.token_ids])
        with torch.no_grad():
            ours = engine.model(full).float()
            theirs = model(full).logits.float()
        max_diff = max(max_diff, float((ours - theirs).abs().max()))
        greedy = theirs[0, len(ids) - 1 : -1].argmax(-1).tolist()
        teacher = lab.token_ids
        agree += sum(a == b for a, b in zip(greedy, teacher, strict=False))
        total += len(teacher)
    return max_diff, agree / max(1, total), agree, total


#: llama.cpp threads, for decoding and for prompt evaluation. Its OpenMP threads spin-wait at a barrier after every
#: op, as do torch's idle ones in the same process: with 2 llama.cpp threads, or torch still holding 2, llama.cpp
#: decoded 2-40 tokens/s on these 2 shared cores, against 300-500 with one thread each. So both engines are timed on
#: one thread here.
LLAMA_CPP_THREADS = 1

LLAMA_CPP_NOTES = (
    "llama.cpp runs the `parity lab export-gguf` files through `llama-cpp-python` (its `Llama` class, in this "
    "process, `logits_all=True`); logits are compared position by position with the lab engine's fp32 forward "
    "pass on the same token ids. For q8_0 / q4_0 the row also gives the difference from the lab model run in "
    "torch on the dequantised GGUF weights: that part is llama.cpp's kernels, the rest is what the quantisation "
    "itself costs. Speed: batch 1, one thread each, llama.cpp's own sampler, the lab engine timed right after it. "
    "`parity compare` against llama.cpp's OpenAI server is in the compare section."
)


def _dequantized_model(engine: Engine, path: Any) -> Any:
    """The lab model with the weights read back from the GGUF file and dequantised (gguf's reference code)."""
    import copy

    import gguf

    from parity.lab.gguf_export import gguf_name

    tensors = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    model = copy.deepcopy(engine.model)
    state = {}
    for name, param in model.state_dict().items():
        t = tensors[gguf_name(name)]
        values = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        state[name] = torch.from_numpy(values.reshape(tuple(param.shape)).copy())
    model.load_state_dict(state)
    return model


def llama_cpp_rows(engine: Engine) -> tuple[list[str], list[float]]:
    """Logit difference, greedy agreement and batch-1 decode speed of llama.cpp on the GGUF exports, and the lab
    engine's one-thread batch-1 speeds timed beside them."""
    try:
        import llama_cpp
    except ImportError:
        return ["- llama.cpp: `llama_cpp` is not installed (`pip install 'parity[bench]'`); not measured."], []
    import tempfile
    from pathlib import Path

    from parity.lab.gguf_export import export_gguf

    rows = [f"- llama.cpp: `llama-cpp-python` {llama_cpp.__version__} (built from source on this machine)."]
    lab_speeds: list[float] = []
    threads = torch.get_num_threads()
    # torch's idle OpenMP threads would spin beside llama.cpp's in this process: one thread for both engines here
    torch.set_num_threads(LLAMA_CPP_THREADS)
    with tempfile.TemporaryDirectory() as tmp:
        for quant in ("f16", "q8_0", "q4_0"):
            path = export_gguf(Path(tmp) / f"lab-{quant}.gguf", quantization=quant)  # type: ignore[arg-type]
            llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=512,
                n_threads=LLAMA_CPP_THREADS,
                n_threads_batch=LLAMA_CPP_THREADS,  # prompt evaluation; llama-cpp-python's default is every core
                logits_all=True,
                verbose=False,
            )
            dequantized = _dequantized_model(engine, path) if quant != "f16" else None
            max_diff, max_kernel, agree, total = 0.0, 0.0, 0, 0
            for text in PROMPTS:
                ids = engine.tokenizer.encode(text)
                [lab] = engine.generate([GenerationRequest(prompt_ids=ids, max_tokens=NEW_TOKENS, temperature=0.0)])
                full = ids + lab.token_ids
                llm.reset()
                llm.eval(full)
                theirs = np.array(llm.scores[: len(full)], dtype=np.float32)  # a copy: the next eval overwrites
                with torch.no_grad():
                    ours = engine.model(torch.tensor([full]))[0].float().numpy()
                    if dequantized is not None:
                        same_weights = dequantized(torch.tensor([full]))[0].float().numpy()
                        max_kernel = max(max_kernel, float(np.abs(theirs - same_weights).max()))
                max_diff = max(max_diff, float(np.abs(theirs - ours).max()))
                greedy = theirs[len(ids) - 1 : -1].argmax(-1)
                agree += int((greedy == np.asarray(lab.token_ids)).sum())
                total += len(lab.token_ids)
            prompt = engine.tokenizer.encode(PROMPTS[0])
            times = []
            for repeat in range(-1, REPEATS):  # repeat -1 warms up; it is not timed
                llm.reset()
                start = time.perf_counter()
                # the lab's sampling settings (temperature 0.8, top-p 0.95, no top-k / min-p), llama.cpp's sampler
                tokens = llm.generate(prompt, temp=0.8, top_p=0.95, top_k=0, min_p=0.0, reset=True)
                for produced, _token in enumerate(tokens, start=1):
                    if produced == NEW_TOKENS:
                        break
                if repeat >= 0:
                    times.append(time.perf_counter() - start)
            speed = NEW_TOKENS / statistics.median(times)
            lab_speed = lab_tokens_per_s(engine, 1)  # right after, under the same machine load
            lab_speeds.append(lab_speed)
            size = path.stat().st_size / 1e6
            kernel = f" ({max_kernel:.4f} vs the lab model on the dequantised {quant} weights)" if dequantized else ""
            rows.append(
                f"- llama.cpp {quant} ({size:.1f} MB): max |logit difference| {max_diff:.4f} vs the lab engine "
                f"(fp32){kernel} over the {len(PROMPTS)} prompts + the lab's greedy completions; llama.cpp's "
                f"argmax agrees with the lab's greedy token on {agree}/{total} positions "
                f"({agree / max(1, total):.1%}); batch-1 decode {speed:,.0f} tokens/s vs the lab engine's "
                f"{lab_speed:,.0f} timed right after ({speed / lab_speed:.1f}x)."
            )
            print(rows[-1], flush=True)
            llm.close()
    torch.set_num_threads(threads)
    return rows, lab_speeds


def main() -> None:
    torch.set_num_threads(2)
    load_before = os.getloadavg()[0]
    rows = []
    lines = []
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        engine = Engine.load(precision=precision)  # type: ignore[arg-type]
        try:
            model = hf_model(engine, dtype)
        except ImportError:
            model = None
        lab_tokens_per_s(engine, 1)  # the first generation of a process runs ~5x slower (allocator, oneDNN caches)
        if model is not None:
            hf_tokens_per_s(model, engine, 1)
        for batch in BATCHES:
            ours = lab_tokens_per_s(engine, batch)
            theirs = hf_tokens_per_s(model, engine, batch) if model is not None else float("nan")
            rows.append(f"| {precision} | {batch} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.2f}x |")
            print(rows[-1], flush=True)
        if model is not None:
            diff, rate, agree, total = agreement(engine, model)
            lines.append(
                f"- {precision}: max |logit difference| {diff:.2e} over {len(PROMPTS)} prompts + their greedy "
                f"completions; transformers' greedy choice agrees with the lab engine's on {agree}/{total} "
                f"positions ({rate:.1%})."
            )
            print(lines[-1], flush=True)
    llama_lines, one_thread = llama_cpp_rows(Engine.load())
    lines += llama_lines
    threads_note = (
        f" On one thread, timed beside llama.cpp at the end of the run, the same engine decoded "
        f"{statistics.median(one_thread):,.0f} tokens/s at batch 1 (fp32): under load, the 2-thread figures in the "
        "table lose more to threads waiting on each other than they gain."
        if one_thread
        else ""
    )
    load = f"load average {load_before:.1f} at the start and {os.getloadavg()[0]:.1f} at the end"
    body = (
        f"Decode throughput of `parity.lab.engine` (the committed 9M-parameter model, sampling at temperature 0.8 / "
        f"top-p 0.95 through the exact numpy reference `parity.sampling`, {NEW_TOKENS} new tokens per request, "
        f"prompts of 4-20 tokens, prefill included) against Hugging Face `transformers` `LlamaForCausalLM` "
        f"`generate()` on the same weights, same process, same threads. Median of {REPEATS} runs after one untimed "
        f"warm-up run. The machine's 2 cores were shared with other jobs while this ran ({load}; run under "
        "`nice`), so absolute figures swing by an order of magnitude between runs: compare within a row rather "
        "than across runs. bf16 is no faster than fp32 here: this CPU has no native bf16 matrix unit, so bf16 "
        "matmuls convert on the fly." + threads_note + "\n\n"
        "| precision | batch | lab engine tokens/s | transformers tokens/s | ratio |\n|---|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n\nThe implementations as engine pairs (independent code, same weights):\n\n"
        + "\n".join(lines)
        + "\n\n"
        + LLAMA_CPP_NOTES
    )
    write_section("engine", "Lab engine throughput", body)


if __name__ == "__main__":
    main()
