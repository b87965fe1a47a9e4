"""The checks run on a filter: which tokens it keeps, judged by the property oracle, case by case.

Each check builds its cases from a seeded generator (:mod:`parity.conformance._rows`) and runs them with
:func:`parity.conformance._runner.run_cases`; :data:`FILTER_CHECKS` lists them in the order the kit runs them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from parity.conformance._cases import Case
from parity.conformance._report import CheckResult
from parity.conformance._rows import one_hot, peaked_rows, random_rows
from parity.conformance._runner import CheckBody, Kit, ProgressFn, batches, run_cases
from parity.sampling import SamplingParams

__all__ = ["FILTER_CHECKS", "LARGE_VOCABS", "ONE_HOT_BATCHES", "ONE_HOT_K", "ONE_HOT_VOCAB"]

#: The postmortem's repro: a zero vector of this length with a single 1.0 at index i, at every i.
ONE_HOT_VOCAB = 12000
#: The top-k of the postmortem's repro.
ONE_HOT_K = 256
#: Batch sizes the one-hot repro runs at (the bug depended on batch size): full strength, then reduced.
ONE_HOT_BATCHES = (1, 8, 64)
#: Large vocabularies of the generalised one-hot repro (Llama 3 and Gemma sizes).
LARGE_VOCABS = (128256, 262144)


def _check_argmax_survival(kit: Kit, progress: ProgressFn | None) -> CheckResult:
    rng = kit.rng("argmax")
    cases: list[Case] = []
    n = kit.count(32, 8)
    for top_p in (0.9, 0.99, 0.999):
        for temperature in (1.0, 0.7, 0.3, 0.1, 0.05):
            for vocab in (64, 1000, 32000):
                rows = peaked_rows(rng, n if vocab < 32000 else max(4, n // 4), vocab, top_p)
                rows = np.concatenate([rows, random_rows(rng, max(2, n // 4), vocab)])
                params = SamplingParams(temperature, 0, top_p, 0.0)
                cases += batches(rows, params, "argmax", 16)
            combo = SamplingParams(temperature, 50, top_p, 0.05)
            cases += batches(peaked_rows(rng, n, 1000, top_p), combo, "argmax", 8)
    for vocab in LARGE_VOCABS[:1]:
        for top_p in (0.9, 0.99, 0.999):
            cases += batches(
                peaked_rows(rng, kit.count(8, 2), vocab, top_p), SamplingParams(1.0, 0, top_p, 0.0), "argmax", 8
            )
    detail = (
        "the argmax survived every row: peaked rows whose argmax mass sits at the top-p boundary, bf16-quantised "
        "near-ties, top_p 0.9/0.99/0.999, temperature 1 to 0.05, vocab 64 to 128256"
    )
    return run_cases(kit, "check_argmax_survival", cases, detail, progress)


def _check_greedy(kit: Kit, progress: ProgressFn | None) -> CheckResult:
    rng = kit.rng("greedy")
    cases: list[Case] = []
    for vocab in (2, 10, 1000, 32000):
        rows = random_rows(rng, kit.count(48, 8), vocab)
        for params in (SamplingParams(0.0, 0, 1.0, 0.0), SamplingParams(0.0, 50, 0.9, 0.1)):
            cases += batches(rows, params, "oracle", 8)
    detail = "temperature 0 kept exactly the maximal logit (exact ties allowed), incl. bf16/fp16 near-ties"
    return run_cases(kit, "check_greedy", cases, detail, progress)


def _check_one_hot_every_index(kit: Kit, progress: ProgressFn | None) -> CheckResult:
    full = kit.scale >= 0.5
    every = np.arange(0, ONE_HOT_VOCAB, 1 if full else 5 if kit.scale >= 0.1 else 10)
    cases: list[Case] = []
    sizes = ONE_HOT_BATCHES if full else (8,)
    for batch in sizes:
        rows = one_hot(ONE_HOT_VOCAB, every)
        cases += batches(rows, SamplingParams(1.0, ONE_HOT_K, 1.0, 0.0), "argmax", batch)
    rows = one_hot(ONE_HOT_VOCAB, every[:: 1 if full else 4])
    cases += batches(rows, SamplingParams(0.0, 0, 1.0, 0.0), "argmax", 8)
    cases += batches(rows, SamplingParams(1.0, 0, 0.9, 0.0), "argmax", 8)
    which = "every index" if full else f"every {every[1]}th index (scale < 0.5)"
    detail = (
        f"a one-hot row at {which} of a {ONE_HOT_VOCAB}-token vocabulary kept its 1.0 and {ONE_HOT_K} tokens "
        f"(top_k={ONE_HOT_K}) at batch sizes {', '.join(map(str, sizes))}, and at temperature 0 and top_p 0.9"
    )
    return run_cases(kit, "check_one_hot_every_index", cases, detail, progress)


def _check_one_hot_large_vocab(kit: Kit, progress: ProgressFn | None) -> CheckResult:
    rng = kit.rng("one-hot-large")
    cases: list[Case] = []
    for vocab in LARGE_VOCABS:
        fixed = [0, 1, 255, 256, 10239, 10240, 10241, 32767, 32768, 65535, 65536, 131071, 131072, vocab - 1]
        spread = rng.integers(0, vocab, size=kit.count(40, 2))
        indices = np.unique(np.clip(np.r_[fixed, spread], 0, vocab - 1)).astype(np.int64)
        rows = one_hot(vocab, indices)
        grid = [SamplingParams(1.0, ONE_HOT_K, 1.0, 0.0), SamplingParams(0.0, 0, 1.0, 0.0)]
        for params in grid + ([SamplingParams(1.0, 1, 1.0, 0.0)] if kit.scale >= 0.1 else []):
            cases += batches(rows, params, "argmax", 8)
        cases += batches(rows[:8], SamplingParams(1.0, ONE_HOT_K, 1.0, 0.0), "argmax", 1)
    detail = "one-hot rows at vocab 128256 and 262144 (tile boundaries, the last index, random indices) kept their 1.0"
    return run_cases(kit, "check_one_hot_large_vocab", cases, detail, progress)


def _property_check(
    kit: Kit,
    name: str,
    grid: Sequence[SamplingParams],
    vocabs: Sequence[int],
    detail: str,
    progress: ProgressFn | None,
) -> CheckResult:
    rng = kit.rng(name)
    cases: list[Case] = []
    for vocab in vocabs:
        rows = random_rows(rng, kit.count(24 if vocab < 10000 else 4, 2), vocab)
        for params in grid:
            if params.top_k > vocab + 3:
                continue
            cases += batches(rows, params, "oracle", 8)
    return run_cases(kit, name, cases, detail, progress)


def _check_top_k_properties(kit: Kit, progress: ProgressFn | None) -> CheckResult:
    grid = [
        SamplingParams(t, k, 1.0, 0.0) for t in (1.0, 0.5) for k in (1, 2, 3, 5, 9, 10, 11, 50, 63, 64, 67, 999, 1000)
    ]
    detail = "top-k kept exactly k tokens (more only when tied with the k-th), in order, k from 1 to V+3"
    return _property_check(kit, "check_top_k_properties", grid, (2, 10, 64, 1000), detail, progress)


def _check_top_p_properties(kit: Kit, progress: ProgressFn | None) -> CheckResult:
    grid = [SamplingParams(t, 0, p, 0.0) for t in (1.0, 0.6) for p in (0.05, 0.3, 0.5, 0.8, 0.9, 0.95, 0.99, 0.999)]
    detail = (
        "top-p kept a probability-ordered set whose mass reaches p and that is minimal (float32 mass tolerance), "
        "p from 0.05 to 0.999"
    )
    return _property_check(kit, "check_top_p_properties", grid, (2, 10, 64, 1000, 32000), detail, progress)


def _check_min_p_properties(kit: Kit, progress: ProgressFn | None) -> CheckResult:
    grid = [SamplingParams(t, 0, 1.0, m) for t in (1.0, 0.5) for m in (0.001, 0.01, 0.05, 0.1, 0.3, 0.9, 1.0)]
    detail = "min-p kept exactly the tokens with p_i >= min_p * p_max (tie tolerance), min_p from 0.001 to 1"
    return _property_check(kit, "check_min_p_properties", grid, (2, 10, 64, 1000), detail, progress)


def _check_combined_parameters(kit: Kit, progress: ProgressFn | None) -> CheckResult:
    rng = kit.rng("combined")
    grid = [
        SamplingParams(
            float(rng.choice([0.3, 0.7, 1.0, 1.3])),
            int(rng.choice([0, 1, 5, 20, 50, 200])),
            float(rng.choice([0.5, 0.9, 0.95, 0.99, 1.0])),
            float(rng.choice([0.0, 0.01, 0.05, 0.2])),
        )
        for _ in range(kit.count(24, 6))
    ]
    detail = f"random temperature/top-k/top-p/min-p combinations behaved as the stages in order {kit.order}"
    return _property_check(kit, "check_combined_parameters", grid, (16, 300), detail, progress)


def _check_top_p_boundary_and_ties(kit: Kit, progress: ProgressFn | None) -> CheckResult:
    cases: list[Case] = []
    for n in (2, 3, 4, 5, 8, 10, 100):  # uniform rows: the boundary cuts a class of exact ties
        row = np.zeros((1, n), dtype=np.float32)
        for j in range(1, n):
            for p in (j / n, j / n + 1e-3, j / n - 1e-3):
                if 0.0 < p < 1.0:
                    cases.append(Case(row, SamplingParams(1.0, 0, float(p), 0.0), "oracle"))
    rng = kit.rng("boundary")
    for _ in range(kit.count(40, 10)):  # two levels: m tokens at L, the rest at 0; p = the top level's mass
        vocab = int(rng.integers(3, 200))
        m = int(rng.integers(1, vocab))
        level = float(np.float32(rng.uniform(0.5, 6.0)))
        row = np.zeros((1, vocab), dtype=np.float32)
        row[0, rng.choice(vocab, size=m, replace=False)] = level
        mass = m * np.exp(level) / (m * np.exp(level) + (vocab - m))
        for p in (mass, mass + 1e-4, mass - 1e-4, mass * 0.5):
            if 0.0 < p < 1.0:
                cases.append(Case(row, SamplingParams(1.0, 0, float(p), 0.0), "oracle"))
    top_k_ties = np.array([[3.0, 2.0, 2.0, 2.0, 1.0, 0.0]], dtype=np.float32)
    cases += [Case(top_k_ties, SamplingParams(1.0, k, 1.0, 0.0), "oracle") for k in range(1, 6)]
    detail = "top-p with its boundary exactly on a prefix mass and inside classes of exact ties; top-k ties"
    return run_cases(kit, "check_top_p_boundary_and_ties", cases, detail, progress)


def _check_inf_rows(kit: Kit, progress: ProgressFn | None) -> CheckResult:
    rng = kit.rng("inf")
    cases: list[Case] = []
    for vocab in (4, 64, 1000):
        rows = random_rows(rng, kit.count(16, 4), vocab)
        holes = rng.random(rows.shape) < rng.uniform(0.1, 0.9, (rows.shape[0], 1))
        holes[np.arange(rows.shape[0]), rng.integers(vocab, size=rows.shape[0])] = False
        rows[holes] = -np.inf
        single = np.full((4, vocab), -np.inf, dtype=np.float32)
        single[np.arange(4), rng.integers(vocab, size=4)] = rng.normal(size=4)
        for params in (
            SamplingParams(1.0, 0, 0.9, 0.0),
            SamplingParams(0.7, 5, 0.99, 0.05),
            SamplingParams(0.0, 0, 1.0, 0.0),
        ):
            cases += batches(rows, params, "oracle", 8)
            cases.append(Case(single, params, "oracle"))
        for position in (0, 2):
            batch = random_rows(rng, 4, vocab)
            batch[position] = -np.inf
            cases.append(Case(batch, SamplingParams(1.0, 0, 0.9, 0.0), "isolation", row=position))
    detail = "-inf logits were never kept, a row with one finite token kept it, a row of -inf was rejected or isolated"
    return run_cases(kit, "check_inf_rows", cases, detail, progress)


def _check_nan_rows(kit: Kit, progress: ProgressFn | None) -> CheckResult:
    rng = kit.rng("nan")
    cases: list[Case] = []
    for vocab in (4, 64, 1000):
        for position in (0, 1, 3):
            for whole in (False, True):
                batch = random_rows(rng, 4, vocab)
                if whole:
                    batch[position] = np.nan
                else:
                    batch[position, rng.integers(vocab)] = np.nan
                for params in (
                    SamplingParams(1.0, 0, 0.9, 0.0),
                    SamplingParams(1.0, 10, 1.0, 0.1),
                    SamplingParams(0.0, 0, 1.0, 0.0),
                ):
                    cases.append(Case(batch, params, "isolation", row=position))
    detail = "a NaN row was rejected (an error) or came back without a valid-looking distribution; other rows unchanged"
    return run_cases(kit, "check_nan_rows", cases, detail, progress)


def _check_batch_invariance(kit: Kit, progress: ProgressFn | None) -> CheckResult:
    rng = kit.rng("batch")
    cases: list[Case] = []
    for _ in range(kit.count(12, 4)):
        vocab = int(rng.choice([16, 300, 5000]))
        batch = int(rng.integers(2, 10))
        params = SamplingParams(
            float(rng.choice([0.5, 1.0])), int(rng.choice([0, 20])), float(rng.choice([0.9, 0.99])), 0.0
        )
        cases.append(Case(random_rows(rng, batch, vocab), params, "batch_invariance"))
    detail = "each row's kept set was the same alone, in a batch of 2-9 rows, and at another position"
    return run_cases(kit, "check_batch_invariance", cases, detail, progress)


def _check_edge_parameters(kit: Kit, progress: ProgressFn | None) -> CheckResult:
    rng = kit.rng("edge")
    cases: list[Case] = []
    for vocab in (1, 2, 5, 100):
        rows = random_rows(rng, 4, vocab)
        grid = [
            SamplingParams(1e-3, 0, 1.0, 0.0),
            SamplingParams(100.0, 0, 0.9, 0.0),
            SamplingParams(1.0, 1, 1.0, 0.0),
            SamplingParams(1.0, vocab, 1.0, 0.0),
            SamplingParams(1.0, vocab + 1, 1.0, 0.0),
            SamplingParams(1.0, -1, 1.0, 0.0),
            SamplingParams(1.0, 0, 1e-9, 0.0),
            SamplingParams(1.0, 0, 1.0, 1.0),
            SamplingParams(1.0, 0, 1.0, 1e-9),
            SamplingParams(0.0, 1, 1e-9, 1.0),
        ]
        cases += [Case(rows, params, "oracle") for params in grid]
    detail = "temperature 1e-3 and 100, top_k -1/1/V/V+1, top_p 1e-9, min_p 1e-9 and 1, vocab 1 to 100"
    return run_cases(kit, "check_edge_parameters", cases, detail, progress)


def _check_monotonicity(kit: Kit, progress: ProgressFn | None) -> CheckResult:
    rng = kit.rng("monotone")
    cases: list[Case] = []
    for vocab in (10, 200, 3000):
        rows = random_rows(rng, kit.count(8, 2), vocab)
        for verdict in ("monotone_top_p", "monotone_top_k", "monotone_min_p", "disabled"):
            cases.append(Case(rows, SamplingParams(float(rng.choice([0.7, 1.0])), 0, 1.0, 0.0), verdict))
    detail = "kept sets grew with top_p and top_k and shrank with min_p; top_k 0/-1/V, top_p 1, min_p 0 were no-ops"
    return run_cases(kit, "check_monotonicity", cases, detail, progress)


FILTER_CHECKS: dict[str, CheckBody] = {
    "check_argmax_survival": _check_argmax_survival,
    "check_greedy": _check_greedy,
    "check_one_hot_every_index": _check_one_hot_every_index,
    "check_one_hot_large_vocab": _check_one_hot_large_vocab,
    "check_top_k_properties": _check_top_k_properties,
    "check_top_p_properties": _check_top_p_properties,
    "check_top_p_boundary_and_ties": _check_top_p_boundary_and_ties,
    "check_min_p_properties": _check_min_p_properties,
    "check_combined_parameters": _check_combined_parameters,
    "check_inf_rows": _check_inf_rows,
    "check_nan_rows": _check_nan_rows,
    "check_batch_invariance": _check_batch_invariance,
    "check_edge_parameters": _check_edge_parameters,
    "check_monotonicity": _check_monotonicity,
}
