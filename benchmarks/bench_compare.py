"""Benchmark `parity compare` on the lab fleet: power against each incident fault, false positives, and MET.

Two lab servers run in this process (uvicorn threads on loopback): a clean reference and a candidate whose faults
are switched on and off through ``POST /admin/changes``. Everything is collected over HTTP with parity's own
client (the code path of ``parity compare``), once, into pools:

- reference: ``POOL_REF`` completions per prompt; every completion scored (echo) under the reference;
- each fault: ``POOL_CAND`` completions per prompt from the candidate, scored under the reference; ``CONTEXTS``
  reference completions teacher-forced through the faulty candidate;
- noise floor: the same contexts teacher-forced again through the reference one request at a time (another
  batch composition), and a third time concurrently (for the reference-vs-itself runs).

- llama.cpp (when ``llama_cpp`` is importable): the same weights exported to GGUF f16 / q8_0 / q4_0, each served
  by llama-cpp-python's OpenAI server (``python -m llama_cpp.server``, a subprocess on loopback) as the candidate:
  ``POOL_CAND`` completions per prompt, scored under the reference. Sampled with ``LLAMA_NEUTRAL`` (its own
  top-k / min-p / repetition-penalty defaults off) so the rows measure the engine and its quantisation; one more
  f16 row keeps the server's defaults, which is what ``parity compare`` without ``--candidate-extra-body`` sees.

Power and false-positive rates then come from resampling these pools without replacement (cheap; stated in the
output): for each budget, ``REPS`` draws of ``m`` completions per prompt per side, every test run on the draw,
and the Model Equality Testing package's ``mmd_hamming`` (its own permutation p-value) on the same draw.

Run: ``.venv/bin/python -m benchmarks compare`` (env: PARITY_BENCH_REPS, PARITY_BENCH_PROMPTS, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # MET's permutation loop prints a tqdm bar per test otherwise

import httpx
import numpy as np

from benchmarks._results import write_section
from parity._loopback import free_port
from parity.compare import DEFAULT_PROMPTS, EndpointClient, ScoredText
from parity.stats.twosample import (
    PositionDivergence,
    argmax_rate_test,
    combine,
    encode_completions,
    loglik_shift_test,
    mmd_hamming_test,
    next_token_divergence_test,
    position_divergence,
    token_frequency_test,
    two_proportion_test,
)

N_PROMPTS = int(os.environ.get("PARITY_BENCH_PROMPTS", "16"))
POOL_REF = int(os.environ.get("PARITY_BENCH_POOL_REF", "32"))
POOL_CAND = int(os.environ.get("PARITY_BENCH_POOL_CAND", "16"))
CONTEXTS = int(os.environ.get("PARITY_BENCH_CONTEXTS", "24"))
REPS = int(os.environ.get("PARITY_BENCH_REPS", "50"))  # per fault and budget (power)
REPS_NULL = int(os.environ.get("PARITY_BENCH_REPS_NULL", "100"))  # reference vs itself (false-positive rate)
MET_PERMUTATIONS = int(os.environ.get("PARITY_BENCH_MET_B", "100"))
PER_PROMPT = tuple(int(x) for x in os.environ.get("PARITY_BENCH_PER_PROMPT", "2,4,8").split(","))
RESAMPLES = 200
MAX_TOKENS = 24
TOP_P = 0.99  # the incident's top-p: the sampler faults only act inside a nucleus
ALPHA = 0.05
TOKEN = "bench-compare"

#: Sent to llama-cpp-python's server with every request: its sampler defaults (top-k 40, min-p 0.05, repetition
#: penalty 1.1) switched off, so that it samples what the lab samples (temperature and top-p only).
LLAMA_NEUTRAL: dict[str, Any] = {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}
#: llama.cpp candidates: row name -> (GGUF quantisation, extra request fields).
LLAMA_ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "llama.cpp f16": ("f16", LLAMA_NEUTRAL),
    "llama.cpp q8_0": ("q8_0", LLAMA_NEUTRAL),
    "llama.cpp q4_0": ("q4_0", LLAMA_NEUTRAL),
    "llama.cpp f16 (server's sampler defaults)": ("f16", {}),
}

FAULTS: dict[str, dict[str, Any]] = {
    "bf16": {"kind": "precision", "params": {"precision": "bf16"}},
    "approx top-k": {"kind": "sampler", "params": {"sampler": "approx-topk-10240", "affected_batch_sizes": "all"}},
    "threshold mismatch": {"kind": "sampler", "params": {"sampler": "mixed-precision-topp"}},
    "corruption 1%": {"kind": "corruption", "params": {"fraction": 0.01}},
    "RoPE x8 on short prompts": {"kind": "routing", "params": {"fraction": 1.0}},
}


@dataclass
class Pool:
    """Completions per prompt, their reference scores, detector flags and teacher-forced contexts."""

    texts: list[list[str]]
    scores: list[list[ScoredText]]
    flags: list[list[bool]] = field(default_factory=list)
    forced: list[ScoredText] = field(default_factory=list)  # contexts teacher-forced through this endpoint


async def _sample(client: EndpointClient, prompts: Sequence[str], per_prompt: int, seed: int) -> list[list[str]]:
    jobs = [
        client.sample(p, prompt, max_tokens=MAX_TOKENS, temperature=1.0, top_p=TOP_P, seed=seed + p * 1000 + j)
        for p, prompt in enumerate(prompts)
        for j in range(per_prompt)
    ]
    done = await asyncio.gather(*jobs)
    groups: list[list[str]] = [[] for _ in prompts]
    for c in done:
        groups[c.prompt_index].append(c.text)
    return groups


async def _score(client: EndpointClient, prompts: Sequence[str], groups: list[list[str]]) -> list[list[ScoredText]]:
    flat = [(p, t) for p, g in enumerate(groups) for t in g]
    scored = await asyncio.gather(*(client.score(prompts[p], t, top_logprobs=5) for p, t in flat))
    out: list[list[ScoredText]] = [[] for _ in groups]
    for (p, _), s in zip(flat, scored, strict=True):
        out[p].append(s)
    return out


async def _post(url: str, change: dict[str, Any]) -> str:
    async with httpx.AsyncClient(timeout=30) as http:
        resp = await http.post(f"{url}/admin/changes", json=change, headers={"authorization": f"Bearer {TOKEN}"})
        resp.raise_for_status()
        return str(resp.json()["id"])


def llama_cpp_available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def llama_server(gguf: Path) -> Iterator[str]:
    """llama-cpp-python's OpenAI server on ``gguf`` (a subprocess on 127.0.0.1, one thread); yields its URL."""
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--n_ctx", "512", "--n_threads", "1", "--n_threads_batch", "1"]
    command += ["--verbose", "False"]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"llama_cpp.server exited {proc.returncode}: {log.read()[-2000:].decode()}")
                try:
                    if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("llama_cpp.server did not answer within 120 s")
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def collect_llama(
    ref: EndpointClient, prompts: Sequence[str], url: str, extra: dict[str, Any], seed: int
) -> tuple[Pool, dict[str, Any]]:
    """One llama.cpp candidate pool: its samples scored under the reference (``ref``), plus what its probe found."""
    cand = EndpointClient(url, max_concurrency=4, timeout_s=300, extra_body=extra)
    async with cand:
        caps = await cand.probe()
        t0 = time.perf_counter()
        texts = await _sample(cand, prompts, POOL_CAND, seed=seed)
        pool = Pool(texts, await _score(ref, prompts, texts))
        info = {
            "notes": list(caps.notes),
            "echo": caps.echo,
            "echo_consistent": caps.echo_consistent,
            "requests": cand.requests_sent,
            "seconds": time.perf_counter() - t0,
        }
    return pool, info


async def collect(ref_url: str, cand_url: str, prompts: Sequence[str], weights_dir: Path) -> dict[str, Any]:
    """All HTTP traffic of the benchmark (and llama.cpp's in-process pass); returns the pools and request counts."""
    ref = EndpointClient(ref_url, max_concurrency=16, timeout_s=300)
    cand = EndpointClient(cand_url, max_concurrency=16, timeout_s=300)
    async with ref, cand:
        caps = await asyncio.gather(ref.probe(), cand.probe())
        t0 = time.perf_counter()
        ref_texts = await _sample(ref, prompts, POOL_REF, seed=1)
        ref_pool = Pool(ref_texts, await _score(ref, prompts, ref_texts))
        contexts = [(p, i) for i in range(POOL_REF) for p in range(len(prompts))][:CONTEXTS]
        noise = [await ref.score(prompts[p], ref_texts[p][i], top_logprobs=5) for p, i in contexts]
        noise2 = list(
            await asyncio.gather(*(ref.score(prompts[p], ref_texts[p][i], top_logprobs=5) for p, i in contexts))
        )
        pools: dict[str, Pool] = {}
        for k, (name, change) in enumerate(FAULTS.items()):
            change_id = await _post(cand_url, {**change, "description": f"bench compare: {name}"})
            texts = await _sample(cand, prompts, POOL_CAND, seed=100_000 * (k + 2))
            forced = list(
                await asyncio.gather(*(cand.score(prompts[p], ref_texts[p][i], top_logprobs=5) for p, i in contexts))
            )
            await _post(cand_url, {"kind": "rollback", "params": {"change_id": change_id}, "description": "undo"})
            pools[name] = Pool(texts, await _score(ref, prompts, texts), forced=forced)
            print(f"  collected {name}: {time.perf_counter() - t0:.0f} s", flush=True)
        lab_seconds = time.perf_counter() - t0
        lab_requests = ref.requests_sent + cand.requests_sent
        llama_pools: dict[str, Pool] = {}
        llama_info: dict[str, dict[str, Any]] = {}
        llama_forced: dict[str, list[ScoredText]] = {}
        if llama_cpp_available():
            from parity.lab.gguf_export import export_gguf

            with tempfile.TemporaryDirectory() as tmp:
                for k, (name, (quant, extra)) in enumerate(LLAMA_ROWS.items()):
                    gguf = Path(tmp) / f"lab-{quant}.gguf"
                    if not gguf.exists():
                        export_gguf(gguf, quantization=quant)  # type: ignore[arg-type]
                    with llama_server(gguf) as url:
                        pool, info = await collect_llama(ref, prompts, url, extra, seed=100_000 * (k + 20))
                    info["size_mb"] = gguf.stat().st_size / 1e6
                    llama_pools[name], llama_info[name] = pool, info
                    if extra == LLAMA_NEUTRAL:  # the same GGUF and tokenizer the servers ran
                        llama_forced[name] = inprocess_forced(prompts, ref_pool, contexts, gguf, weights_dir)
                    print(f"  collected {name}: {time.perf_counter() - t0:.0f} s", flush=True)
        return {
            "ref": ref_pool,
            "pools": pools,
            "contexts": contexts,
            "noise": noise,
            "noise2": noise2,
            "requests": ref.requests_sent + cand.requests_sent,
            "seconds": time.perf_counter() - t0,
            "lab_seconds": lab_seconds,
            "lab_requests": lab_requests,
            "tokenizers_match": caps[0].tokens == caps[1].tokens,
            "llama": llama_pools,
            "llama_info": llama_info,
            "llama_forced": llama_forced,
        }


def _flags(prompts: Sequence[str], groups: list[list[str]]) -> list[list[bool]]:
    try:
        from parity.detectors import ResponseContext, score_response
    except ImportError:
        return [[False] * len(g) for g in groups]
    return [
        [any(o.flagged for o in score_response(ResponseContext(response=t, prompt=prompts[p]))) for t in g]
        for p, g in enumerate(groups)
    ]


def _met_pvalue(ref: list[list[str]], cand: list[list[str]], rng: np.random.Generator) -> float:
    import torch
    from model_equality_testing.algorithm import run_two_sample_test
    from model_equality_testing.distribution import CompletionSample

    torch.manual_seed(int(rng.integers(2**31)))

    def sample(groups: list[list[str]]) -> Any:
        prompts = np.array([p for p, g in enumerate(groups) for _ in g])
        codes = encode_completions([t for g in groups for t in g], length=50) + 1  # pad -1 -> 0
        return CompletionSample(prompts=prompts, completions=codes, m=len(groups))

    with np.errstate(invalid="ignore", divide="ignore"):  # MET divides by 0 pairs when a prompt has 1 sample
        pvalue, statistic = run_two_sample_test(
            sample(ref), sample(cand), pvalue_type="permutation_pvalue", stat_type="mmd_hamming", b=MET_PERMUTATIONS
        )
    # CompletionSample memoises its tensors with functools.cache on methods, a class-wide cache that keeps every
    # permuted sample alive: ~30 MB per draw here, enough to exhaust memory over this benchmark's draws.
    CompletionSample.sequences.fget.cache_clear()
    CompletionSample.sample.fget.cache_clear()
    CompletionSample._prompt_completion_to_sample.cache_clear()
    # an undefined statistic (no same-prompt pair on one side) would read as p = 0 there: count it as no rejection
    return 1.0 if not np.isfinite(float(statistic)) else float(pvalue)


def _divergences(base: Sequence[ScoredText], other: Sequence[ScoredText]) -> list[PositionDivergence]:
    return [
        position_divergence(b.logprobs, b.top_logprobs, o.logprobs, o.top_logprobs)
        for b, o in zip(base, other, strict=True)
    ]


def run_draw(
    ref: Pool,
    ref_idx: list[np.ndarray],
    cand: Pool,
    cand_idx: list[np.ndarray],
    cand_div: list[PositionDivergence] | None,
    noise_div: list[PositionDivergence],
    n_contexts: int,
    rng: np.random.Generator,
    *,
    met: bool,
) -> dict[str, float]:
    """p-values of every test (and the Holm verdict) on one draw from the pools.

    ``cand_div=None``: the candidate's prompt logprobs are unusable, so the per-position test does not run (as in
    ``parity compare``) and the Holm verdict is over the other five.
    """
    rt = [[ref.texts[p][i] for i in idx] for p, idx in enumerate(ref_idx)]
    ct = [[cand.texts[p][i] for i in idx] for p, idx in enumerate(cand_idx)]
    rl = [[ref.scores[p][i].mean_logprob for i in idx] for p, idx in enumerate(ref_idx)]
    cl = [[cand.scores[p][i].mean_logprob for i in idx] for p, idx in enumerate(cand_idx)]
    ra = [[ref.scores[p][i].argmax_rate for i in idx] for p, idx in enumerate(ref_idx)]
    ca = [[cand.scores[p][i].argmax_rate for i in idx] for p, idx in enumerate(cand_idx)]
    rf = sum(ref.flags[p][i] for p, idx in enumerate(ref_idx) for i in idx)
    cf = sum(cand.flags[p][i] for p, idx in enumerate(cand_idx) for i in idx)
    n = sum(len(idx) for idx in ref_idx)
    tests = {
        "mmd-hamming": mmd_hamming_test(rt, ct, n_resamples=RESAMPLES, rng=rng),
        "token-frequency": token_frequency_test(rt, ct, n_resamples=RESAMPLES, rng=rng),
        "detector-rate": two_proportion_test(int(rf), n, int(cf), n),
        "loglik-shift": loglik_shift_test(rl, cl, n_resamples=RESAMPLES, rng=rng),
        "argmax-rate": argmax_rate_test(ra, ca, n_resamples=RESAMPLES, rng=rng),
    }
    if cand_div is not None:
        pick = rng.choice(len(cand_div), size=n_contexts, replace=False)
        tests["next-token-divergence"] = next_token_divergence_test(
            [cand_div[i] for i in pick], [noise_div[i] for i in pick], n_resamples=RESAMPLES, rng=rng
        )
    combined = combine(tests, alpha=ALPHA)
    out = {name: r.pvalue for name, r in tests.items()}
    out["parity (Holm)"] = 0.0 if not combined.equivalent else 1.0
    out["parity black-box (Holm)"] = float(
        min(1.0, 2 * min(tests["mmd-hamming"].pvalue, tests["token-frequency"].pvalue))
    )
    if met:
        out["MET mmd_hamming"] = _met_pvalue(rt, ct, rng)
    return out


COLUMNS = (
    "parity (Holm)",
    "parity black-box (Holm)",
    "MET mmd_hamming",
    "mmd-hamming",
    "token-frequency",
    "loglik-shift",
    "argmax-rate",
    "next-token-divergence",
    "detector-rate",
)


def inprocess_forced(
    prompts: Sequence[str],
    ref: Pool,
    contexts: Sequence[tuple[int, int]],
    gguf: Path,
    weights_dir: Path,
) -> list[ScoredText]:
    """The shared contexts teacher-forced through llama.cpp in this process (``llama_cpp.Llama`` on the GGUF the
    server ran, its logits read directly), in the shape a correct echo would have: each continuation token's
    logprob and the top 5, keyed by token text as the lab server keys them (tokenizer from ``weights_dir``)."""
    import llama_cpp

    from parity.lab.tokenizer import Tokenizer

    tokenizer = Tokenizer.load(weights_dir)
    base = [ref.scores[p][i] for p, i in contexts]
    llm = llama_cpp.Llama(
        model_path=str(gguf), n_ctx=512, n_threads=1, n_threads_batch=1, logits_all=True, verbose=False
    )
    out = []
    for (p, i), scored in zip(contexts, base, strict=True):
        ids = tokenizer.encode(prompts[p] + ref.texts[p][i])
        n = len(scored.tokens)
        continuation = ids[len(ids) - n :]
        if [tokenizer.token_text(t) for t in continuation] != list(scored.tokens):
            raise RuntimeError(f"context {p}/{i}: the lab's echo tokens are not the last {n} tokens of the text")
        llm.reset()
        llm.eval(ids)
        logits = np.array(llm.scores[: len(ids)], dtype=np.float64)[len(ids) - n - 1 : len(ids) - 1]
        logprobs = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
        values = tuple(float(logprobs[k, t]) for k, t in enumerate(continuation))
        tops = tuple({tokenizer.token_text(int(j)): float(row[j]) for j in np.argsort(-row)[:5]} for row in logprobs)
        out.append(ScoredText(tokens=scored.tokens, logprobs=values, top_logprobs=tops))
    llm.close()
    return out


def _llama_text(pools: dict[str, Pool], info: dict[str, dict[str, Any]], data: dict[str, Any]) -> str:
    """The paragraph on the llama.cpp rows (or the line saying why there are none)."""
    if not pools:
        return (
            "**llama.cpp rows: not measured** - `llama_cpp` is not importable in this environment "
            "(`pip install 'parity[bench]'` builds llama-cpp-python from source, about 20 minutes on 2 cores)."
        )
    import llama_cpp

    first = next(iter(info.values()))
    sizes = ", ".join(f"{n.removeprefix('llama.cpp ')} {i['size_mb']:.1f} MB" for n, i in info.items() if "(" not in n)
    seconds = sum(i["seconds"] for i in info.values())
    requests = sum(i["requests"] for i in info.values())
    return f"""**llama.cpp rows:** the lab weights exported with `parity lab export-gguf` ({sizes}) and served by
llama-cpp-python {llama_cpp.__version__}'s OpenAI server (`python -m llama_cpp.server --model X.gguf --host 127.0.0.1
--n_ctx 512 --n_threads 1`, one subprocess per row, after the lab rows) as the candidate against the same clean lab
reference; {POOL_CAND} completions per prompt, each scored under the reference; {requests} requests to llama.cpp
and one scoring request to the reference per completion, {seconds:.0f} s in all. Every request carried
`{json.dumps(LLAMA_NEUTRAL)}` (parity's `--candidate-extra-body`) except on the last row: llama-cpp-python
otherwise applies its own top-k 40, min-p 0.05 and repetition penalty 1.1, so that row is what `parity compare`
sees with no extra body. What parity's probe
found on llama.cpp's server: {"; ".join(first["notes"]) or "nothing unusual"}. Hence "n/a": the per-position test
needs the candidate's prompt logprobs, llama-cpp-python reports each prompt token's logprob from the position after
it when the model has no BOS token (the lab's has none), `parity compare` skips the test, and so does this
benchmark; the Holm verdict on those rows is over the other five tests. The loglik-shift and argmax-rate tests
still run: they score the candidate's samples under the reference. The "(in-process prompt logprobs)" rows are
what the per-position test would add if the server's echo were right: the same samples, plus the {CONTEXTS} shared
contexts teacher-forced through `llama_cpp.Llama` on the same GGUF in this process (logits read directly, top 5
per position keyed by token text as the lab server keys them), against the same reference noise floor. They are
not something `parity compare` can measure through llama-cpp-python's server today. How far each export's logits
are from the lab engine's (and from its own dequantised weights) is in the engine section."""


def _reading(power: dict[tuple[str, int], dict[str, float]], names: Sequence[str]) -> str:
    """Plain statements read off the power table (computed, so they cannot drift from it)."""
    top = max(PER_PROMPT)
    missed = [n for n in names if all(power[(n, m)]["parity (Holm)"] < 0.9 for m in PER_PROMPT)]
    met_wins = [
        (n, m)
        for n in names
        for m in PER_PROMPT
        if power[(n, m)]["MET mmd_hamming"] > power[(n, m)]["parity black-box (Holm)"] + 0.05
    ]
    black_box_wins = [
        (n, m)
        for n in names
        for m in PER_PROMPT
        if power[(n, m)]["parity black-box (Holm)"] > power[(n, m)]["MET mmd_hamming"] + 0.05
    ]
    gate_wins = []
    for n in names:
        won = [m for m in PER_PROMPT if power[(n, m)]["parity (Holm)"] >= 0.9 > power[(n, m)]["MET mmd_hamming"]]
        if won:
            via = [c for c in COLUMNS[3:] if power[(n, won[0])][c] >= 0.9]
            gate_wins.append(f"{n} from {won[0] * N_PROMPTS} (via {', '.join(via) or 'no single test'})")
    cells = len(names) * len(PER_PROMPT)
    lines = [
        "Reading the table (computed from it):",
        f"- parity's deploy gate (Holm over its tests) stays below 0.9 power at every budget up to {top * N_PROMPTS} "
        "completions per endpoint against: "
        + (", ".join(missed) if missed else "none")
        + ". At these budgets parity lacks the power to tell those candidates from the reference.",
        "- The gate reaches 0.9 where MET's mmd_hamming does not (same budget) against: "
        + ("; ".join(gate_wins) if gate_wins else "none")
        + ".",
        f"- MET's mmd_hamming beats parity's black-box pair by more than 0.05 in {len(met_wins)} of {cells} "
        "candidate x budget cells"
        + (": " + ", ".join(f"{n} at {m * N_PROMPTS}" for n, m in met_wins) if met_wins else "")
        + f"; parity's black-box pair beats MET by more than 0.05 in {len(black_box_wins)}"
        + (": " + ", ".join(f"{n} at {m * N_PROMPTS}" for n, m in black_box_wins) if black_box_wins else "")
        + f". Differences of 0.05-0.1 are within the resampling noise of {REPS} draws (a standard error of up to "
        f"{0.5 / np.sqrt(REPS):.2f}).",
    ]
    return "\n".join(lines)


def main() -> None:
    import torch

    from parity.lab.fleet import FleetConfig, default_config_path
    from parity.lab.server import LabServer, ServerThread

    torch.set_num_threads(1)
    rng = np.random.default_rng(20250917)
    prompts = [DEFAULT_PROMPTS[i] for i in sorted(rng.choice(len(DEFAULT_PROMPTS), N_PROMPTS, replace=False))]
    config = FleetConfig.load(default_config_path("fleet"))
    cache = Path(os.environ.get("PARITY_BENCH_CACHE", "/tmp/parity_bench_compare_pools.pkl"))
    if os.environ.get("PARITY_BENCH_REUSE") and cache.exists():
        data = pickle.loads(cache.read_bytes())  # re-analysis of pools this benchmark collected earlier
    else:
        load_start = os.getloadavg()[0]
        with (
            ServerThread(LabServer(config, weights_dir="parity-lab-9m", admin_token=TOKEN)) as ref_thread,
            ServerThread(LabServer(config, weights_dir="parity-lab-9m", admin_token=TOKEN)) as cand_thread,
        ):
            weights = ref_thread.server.weights_dir / "config.json"
            data = asyncio.run(collect(ref_thread.url, cand_thread.url, prompts, ref_thread.server.weights_dir))
            data["weights"] = json.loads(weights.read_text())
        data["load"] = (load_start, os.getloadavg()[0])
        cache.write_bytes(pickle.dumps(data))
    weights_info = data.get("weights", {})
    ref: Pool = data["ref"]
    ref.flags = _flags(prompts, ref.texts)
    llama_pools: dict[str, Pool] = data.get("llama", {})
    llama_info: dict[str, dict[str, Any]] = data.get("llama_info", {})
    for pool in [*data["pools"].values(), *llama_pools.values()]:
        pool.flags = _flags(prompts, pool.texts)
    base = [ref.scores[p][i] for p, i in data["contexts"]]
    noise_div = _divergences(base, data["noise"])
    null_div = _divergences(base, data["noise2"])

    def contexts_for(m: int) -> int:
        return min(CONTEXTS, max(10, N_PROMPTS * m // 2))

    # llama.cpp: no teacher-forced pass over HTTP (its prompt logprobs fail parity's echo probe), so no
    # per-position test on those rows; the "in-process" rows add it from logits read out of llama.cpp directly.
    inprocess = {
        f"{name} (in-process prompt logprobs)": _divergences(base, forced)
        for name, forced in data.get("llama_forced", {}).items()
    }
    runs: list[tuple[str, Pool | None, list[PositionDivergence] | None]] = [("reference vs itself", None, null_div)]
    runs += [(name, pool, _divergences(base, pool.forced)) for name, pool in data["pools"].items()]
    runs += [(name, pool, None) for name, pool in llama_pools.items()]
    runs += [(name, llama_pools[name.split(" (")[0]], div) for name, div in inprocess.items()]

    rows: list[str] = []
    power: dict[tuple[str, int], dict[str, float]] = {}
    met_time: list[float] = []
    for name, pool, cand_div in runs:
        for m in PER_PROMPT:
            reps = REPS_NULL if pool is None else REPS
            hits = {c: 0 for c in COLUMNS}
            for _ in range(reps):
                if pool is None:  # split the reference pool: two disjoint draws, exchangeable under the null
                    perms = [rng.permutation(POOL_REF) for _ in range(N_PROMPTS)]
                    ref_idx, cand_idx = [q[:m] for q in perms], [q[m : 2 * m] for q in perms]
                    cand_pool = ref
                else:
                    ref_idx = [rng.choice(POOL_REF, m, replace=False) for _ in range(N_PROMPTS)]
                    cand_idx = [rng.choice(POOL_CAND, m, replace=False) for _ in range(N_PROMPTS)]
                    cand_pool = pool
                t0 = time.perf_counter()
                result = run_draw(
                    ref, ref_idx, cand_pool, cand_idx, cand_div, noise_div, contexts_for(m), rng, met=True
                )
                met_time.append(time.perf_counter() - t0)
                for column in COLUMNS:
                    hits[column] += result.get(column, 1.0) <= ALPHA
            power[(name, m)] = {c: hits[c] / reps for c in COLUMNS}
            skipped = {"next-token-divergence"} if cand_div is None else set()
            cells = " | ".join("n/a" if c in skipped else f"{hits[c] / reps:.2f}" for c in COLUMNS)
            rows.append(f"| {name} | {m * N_PROMPTS} ({m}/prompt) | {cells} |")
        print(f"  analysed {name}", flush=True)

    pools: dict[str, Pool] = data["pools"]
    effects = []
    for name, pool in pools.items():
        ll_ref = np.mean([s.mean_logprob for g in ref.scores for s in g])
        ll_cand = np.mean([s.mean_logprob for g in pool.scores for s in g])
        div = _divergences(base, pool.forced)
        tv = np.mean([d.mean_tv for d in div])
        top1 = np.mean(np.concatenate([d.top1 for d in div]))
        flag_rate = np.mean([f for g in pool.flags for f in g])
        effects.append(f"| {name} | {ll_ref - ll_cand:+.3f} | {tv:.4f} | {top1:.3f} | {flag_rate:.3f} |")
    for name, pool in llama_pools.items():
        ll_ref = np.mean([s.mean_logprob for g in ref.scores for s in g])
        ll_cand = np.mean([s.mean_logprob for g in pool.scores for s in g])
        flag_rate = np.mean([f for g in pool.flags for f in g])
        effects.append(f"| {name} | {ll_ref - ll_cand:+.3f} | n/a | n/a | {flag_rate:.3f} |")
    for name, div in inprocess.items():
        tv = np.mean([d.mean_tv for d in div])
        top1 = np.mean(np.concatenate([d.top1 for d in div]))
        effects.append(f"| {name} | (as above) | {tv:.2g} | {top1:.3f} | (as above) |")
    ref_flag_rate = np.mean([f for g in ref.flags for f in g])

    def smallest(name: str, column: str) -> str:
        for m in PER_PROMPT:
            if power[(name, m)][column] >= 0.9:
                return str(m * N_PROMPTS)
        return f"> {max(PER_PROMPT) * N_PROMPTS}"

    budget_rows = [
        f"| {name} | {smallest(name, 'parity (Holm)')} | {smallest(name, 'parity black-box (Holm)')} | "
        f"{smallest(name, 'MET mmd_hamming')} |"
        for name in [*pools, *llama_pools, *inprocess]
    ]
    noise_tv = np.mean([d.mean_tv for d in noise_div])
    load_collect = data.get("load", (float("nan"), float("nan")))
    load_analysis = os.getloadavg()[0]
    llama_text = _llama_text(llama_pools, llama_info, data)
    reading = _reading(power, [*pools, *llama_pools, *inprocess])
    if inprocess:
        tvs = {name.split(" (")[0]: float(np.mean([d.mean_tv for d in div])) for name, div in inprocess.items()}
        reading += (
            "\n- In-process, llama.cpp's next-token TV lower bound against the lab is "
            + ", ".join(f"{tv:.1g} ({name.removeprefix('llama.cpp ')})" for name, tv in tvs.items())
            + f", against a reference noise floor of {noise_tv:.1g}: the lab's fp32 engine returns bit-identical "
            "logprobs run to run, so the per-position test calls any nonzero divergence a difference, f16 rounding "
            "included. Against this reference its verdict means 'not bit-identical'; the effect it reports is what "
            "tells f16 from q4_0. A reference with batch-dependent kernels has a real noise floor, under which "
            "differences this small may fall (not measured here)."
        )

    header = "| comparison | budget per endpoint | " + " | ".join(COLUMNS) + " |"
    sep = "|" + "---|" * (len(COLUMNS) + 2)
    body = f"""
**Model: the 9M `parity-lab-9m` on both sides, not SmolLM2.** This benchmark pins the lab servers to the 9M
model, and its llama.cpp rows are *that* model's own GGUF export (`parity lab export-gguf`), so every row compares
like with like; none of it measures SmolLM2-135M-Instruct, which `parity lab serve` serves by default. The
SmolLM2 figures (lab faults, llama.cpp on SmolLM2's values at f16 and q4_0) are in the next section,
"parity compare as a deploy gate", and its addenda.

Command: `.venv/bin/python -m benchmarks compare` (two lab servers in-process on loopback; the candidate's faults
switched on and off through `POST /admin/changes`). Sampling: temperature 1.0, top_p {TOP_P}, {MAX_TOKENS} tokens,
{N_PROMPTS} prompts from the shipped default set. Lab weights: `{weights_info.get("model_id")}` at training step
{weights_info.get("step")} (validation loss {weights_info.get("val_loss")} nats), the checkpoint in the working tree
when the servers started.

**How it was measured (resampling, said plainly):** the HTTP traffic was collected once into pools -
{POOL_REF} reference completions per prompt and {POOL_CAND} per prompt per fault, every completion scored under the
reference (echo), {CONTEXTS} shared contexts teacher-forced through each faulty candidate and twice more through the
reference (once one request at a time, once concurrently) - {data.get("lab_requests", data["requests"])} requests in
{data.get("lab_seconds", data["seconds"]):.0f} s.
Each cell is then the rejection rate at alpha {ALPHA} over {REPS} draws without replacement from those pools
(reference vs itself: {REPS_NULL} pairs of disjoint draws from the reference pool, so those rows are the
false-positive rate).
Resampling a finite pool understates draw-to-draw variety at the largest budget ({max(PER_PROMPT)} of
{POOL_CAND} per prompt). Permutation tests use {RESAMPLES} permutations; MET's `mmd_hamming` uses its own
(unstratified) permutation p-value with b = {MET_PERMUTATIONS}, on the same draws, codepoints padded to L = 50.
"parity (Holm)" is the deploy-gate verdict: all six tests, Holm-corrected. "parity black-box" uses samples only
(MMD + token frequency, Bonferroni over the two) - the fair comparison with MET, which needs no logprobs.
The per-position test uses min({CONTEXTS}, max(10, budget/2)) of the shared contexts (extra requests: that many
teacher-forced on each side). Machine load (1-minute load average on the 2 shared cores, other engineers' jobs
included): {load_collect[0]:.1f} when collection started, {load_collect[1]:.1f} when it ended, {load_analysis:.1f}
after the analysis; everything was run under `nice`.

{llama_text}

{header}
{sep}
{chr(10).join(rows)}

Smallest budget (completions per endpoint) reaching 0.9 power at alpha {ALPHA}:

| candidate | parity (all tests) | parity black-box | MET mmd_hamming |
|---|---|---|---|
{chr(10).join(budget_rows)}

Effect sizes on the full pools (reference log-likelihood per token minus the candidate samples'; mean next-token
TV lower bound on the shared contexts, noise floor {noise_tv:.4f}; top-1 agreement; detector flag rate, reference
{ref_flag_rate:.3f}):

| candidate | loglik drop (nats/token) | next-token TV | top-1 agreement | flag rate |
|---|---|---|---|---|
{chr(10).join(effects)}

{reading}

Median analysis time per draw (all parity tests + MET): {np.median(met_time):.2f} s.
Tokenizers of the two servers match: {data["tokenizers_match"]}.
"""
    write_section("compare", "Deployment equivalence on the 9M model: parity compare vs Model Equality Testing", body)


if __name__ == "__main__":
    main()
