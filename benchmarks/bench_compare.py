"""Benchmark `parity compare` on the lab fleet: power against each incident fault, false positives, and MET.

Two lab servers run in this process (uvicorn threads on loopback): a clean reference and a candidate whose faults
are switched on and off through ``POST /admin/changes``. Everything is collected over HTTP with parity's own
client (the code path of ``parity compare``), once, into pools:

- reference: ``POOL_REF`` completions per prompt; every completion scored (echo) under the reference;
- each fault: ``POOL_CAND`` completions per prompt from the candidate, scored under the reference; ``CONTEXTS``
  reference completions teacher-forced through the faulty candidate;
- noise floor: the same contexts teacher-forced again through the reference one request at a time (another
  batch composition), and a third time concurrently (for the reference-vs-itself runs).

Power and false-positive rates then come from resampling these pools without replacement (cheap; stated in the
output): for each budget, ``REPS`` draws of ``m`` completions per prompt per side, every test run on the draw,
and the Model Equality Testing package's ``mmd_hamming`` (its own permutation p-value) on the same draw.

Run: ``.venv/bin/python -m benchmarks compare`` (env: PARITY_BENCH_REPS, PARITY_BENCH_PROMPTS, ...).
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # MET's permutation loop prints a tqdm bar per test otherwise

import httpx
import numpy as np

from benchmarks._results import write_section
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


async def collect(ref_url: str, cand_url: str, prompts: Sequence[str]) -> dict[str, Any]:
    """All HTTP traffic of the benchmark; returns the pools and the request counts."""
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
        return {
            "ref": ref_pool,
            "pools": pools,
            "contexts": contexts,
            "noise": noise,
            "noise2": noise2,
            "requests": ref.requests_sent + cand.requests_sent,
            "seconds": time.perf_counter() - t0,
            "tokenizers_match": caps[0].tokens == caps[1].tokens,
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
    cand_div: list[PositionDivergence],
    noise_div: list[PositionDivergence],
    n_contexts: int,
    rng: np.random.Generator,
    *,
    met: bool,
) -> dict[str, float]:
    """p-values of every test (and the Holm verdict) on one draw from the pools."""
    rt = [[ref.texts[p][i] for i in idx] for p, idx in enumerate(ref_idx)]
    ct = [[cand.texts[p][i] for i in idx] for p, idx in enumerate(cand_idx)]
    rl = [[ref.scores[p][i].mean_logprob for i in idx] for p, idx in enumerate(ref_idx)]
    cl = [[cand.scores[p][i].mean_logprob for i in idx] for p, idx in enumerate(cand_idx)]
    ra = [[ref.scores[p][i].argmax_rate for i in idx] for p, idx in enumerate(ref_idx)]
    ca = [[cand.scores[p][i].argmax_rate for i in idx] for p, idx in enumerate(cand_idx)]
    rf = sum(ref.flags[p][i] for p, idx in enumerate(ref_idx) for i in idx)
    cf = sum(cand.flags[p][i] for p, idx in enumerate(cand_idx) for i in idx)
    n = sum(len(idx) for idx in ref_idx)
    pick = rng.choice(len(cand_div), size=n_contexts, replace=False)
    tests = {
        "mmd-hamming": mmd_hamming_test(rt, ct, n_resamples=RESAMPLES, rng=rng),
        "token-frequency": token_frequency_test(rt, ct, n_resamples=RESAMPLES, rng=rng),
        "detector-rate": two_proportion_test(int(rf), n, int(cf), n),
        "loglik-shift": loglik_shift_test(rl, cl, n_resamples=RESAMPLES, rng=rng),
        "argmax-rate": argmax_rate_test(ra, ca, n_resamples=RESAMPLES, rng=rng),
        "next-token-divergence": next_token_divergence_test(
            [cand_div[i] for i in pick], [noise_div[i] for i in pick], n_resamples=RESAMPLES, rng=rng
        ),
    }
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
        with (
            ServerThread(LabServer(config, admin_token=TOKEN)) as ref_thread,
            ServerThread(LabServer(config, admin_token=TOKEN)) as cand_thread,
        ):
            weights = ref_thread.server.weights_dir / "config.json"
            data = asyncio.run(collect(ref_thread.url, cand_thread.url, prompts))
            data["weights"] = json.loads(weights.read_text())
        cache.write_bytes(pickle.dumps(data))
    weights_info = data.get("weights", {})
    ref: Pool = data["ref"]
    ref.flags = _flags(prompts, ref.texts)
    for pool in data["pools"].values():
        pool.flags = _flags(prompts, pool.texts)
    base = [ref.scores[p][i] for p, i in data["contexts"]]
    noise_div = _divergences(base, data["noise"])
    null_div = _divergences(base, data["noise2"])

    def contexts_for(m: int) -> int:
        return min(CONTEXTS, max(10, N_PROMPTS * m // 2))

    rows: list[str] = []
    power: dict[tuple[str, int], dict[str, float]] = {}
    met_time: list[float] = []
    for name, pool in [("reference vs itself", None), *data["pools"].items()]:
        cand_div = null_div if pool is None else _divergences(base, pool.forced)
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
                    hits[column] += result[column] <= ALPHA
            power[(name, m)] = {c: hits[c] / reps for c in COLUMNS}
            cells = " | ".join(f"{hits[c] / reps:.2f}" for c in COLUMNS)
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
    ref_flag_rate = np.mean([f for g in ref.flags for f in g])

    def smallest(name: str, column: str) -> str:
        for m in PER_PROMPT:
            if power[(name, m)][column] >= 0.9:
                return str(m * N_PROMPTS)
        return f"> {max(PER_PROMPT) * N_PROMPTS}"

    budget_rows = [
        f"| {name} | {smallest(name, 'parity (Holm)')} | {smallest(name, 'parity black-box (Holm)')} | "
        f"{smallest(name, 'MET mmd_hamming')} |"
        for name in pools
    ]
    noise_tv = np.mean([d.mean_tv for d in noise_div])

    header = "| comparison | budget per endpoint | " + " | ".join(COLUMNS) + " |"
    sep = "|" + "---|" * (len(COLUMNS) + 2)
    body = f"""
Command: `.venv/bin/python -m benchmarks compare` (two lab servers in-process on loopback; the candidate's faults
switched on and off through `POST /admin/changes`). Sampling: temperature 1.0, top_p {TOP_P}, {MAX_TOKENS} tokens,
{N_PROMPTS} prompts from the shipped default set. Lab weights: `{weights_info.get("model_id")}` at training step
{weights_info.get("step")} (validation loss {weights_info.get("val_loss")} nats), the checkpoint in the working tree
when the servers started.

**How it was measured (resampling, said plainly):** the HTTP traffic was collected once into pools -
{POOL_REF} reference completions per prompt and {POOL_CAND} per prompt per fault, every completion scored under the
reference (echo), {CONTEXTS} shared contexts teacher-forced through each faulty candidate and twice more through the
reference (once one request at a time, once concurrently) - {data["requests"]} requests in {data["seconds"]:.0f} s.
Each cell is then the rejection rate at alpha {ALPHA} over {REPS} draws without replacement from those pools
(reference vs itself: {REPS_NULL} pairs of disjoint draws from the reference pool, so those rows are the
false-positive rate).
Resampling a finite pool understates draw-to-draw variety at the largest budget ({max(PER_PROMPT)} of
{POOL_CAND} per prompt). Permutation tests use {RESAMPLES} permutations; MET's `mmd_hamming` uses its own
(unstratified) permutation p-value with b = {MET_PERMUTATIONS}, on the same draws, codepoints padded to L = 50.
"parity (Holm)" is the deploy-gate verdict: all six tests, Holm-corrected. "parity black-box" uses samples only
(MMD + token frequency, Bonferroni over the two) - the fair comparison with MET, which needs no logprobs.
The per-position test uses min({CONTEXTS}, max(10, budget/2)) of the shared contexts (extra requests: that many
teacher-forced on each side).

{header}
{sep}
{chr(10).join(rows)}

Smallest budget (completions per endpoint) reaching 0.9 power at alpha {ALPHA}:

| fault | parity (all tests) | parity black-box | MET mmd_hamming |
|---|---|---|---|
{chr(10).join(budget_rows)}

Effect sizes on the full pools (reference log-likelihood per token minus the candidate samples'; mean next-token
TV lower bound on the shared contexts, noise floor {noise_tv:.4f}; top-1 agreement; detector flag rate, reference
{ref_flag_rate:.3f}):

| fault | loglik drop (nats/token) | next-token TV | top-1 agreement | flag rate |
|---|---|---|---|---|
{chr(10).join(effects)}

Median analysis time per draw (all parity tests + MET): {np.median(met_time):.2f} s.
Tokenizers of the two servers match: {data["tokenizers_match"]}.
"""
    write_section("compare", "Deployment equivalence: parity compare vs Model Equality Testing", body)


if __name__ == "__main__":
    main()
