"""The checks: :func:`yield_checks` yields plain ``check_*`` callables, :func:`check_sampler` runs them.

Each check generates its cases from a seeded generator, runs the implementation, judges every answer with a
named verdict (:mod:`parity.conformance._verdicts`), and on the first failure shrinks the input and reports the
smallest failing case with a one-line reproduction.

>>> report = check_sampler("builtin:reference", only=["check_top_p_properties"], scale=0.05)
>>> report.conformant
True
"""

from __future__ import annotations

import functools
import json
import shlex
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from parity._exceptions import InvalidInputError
from parity.conformance._adapters import Framework, Implementation, Kind, load_target
from parity.conformance._cases import Case, decode_case
from parity.conformance._gof import GOF_ALPHA, GOF_POWER, chi_square_gof
from parity.conformance._oracle import row_bounds
from parity.conformance._report import CheckResult, ConformanceReport, Counterexample
from parity.conformance._shrink import shrink
from parity.conformance._verdicts import judge
from parity.conformance.faulty import round_to_bf16
from parity.sampling import DEFAULT_ORDER, SamplingParams, validate_order

__all__ = [
    "GOF_DRAWS",
    "ONE_HOT_VOCAB",
    "Check",
    "check_sampler",
    "filter_check_names",
    "replay",
    "run_builtin_verdicts",
    "sampler_check_names",
    "yield_checks",
]

#: The postmortem's repro: a zero vector of this length with a single 1.0 at index i, at every i.
ONE_HOT_VOCAB = 12000
#: The top-k of the postmortem's repro.
ONE_HOT_K = 256
#: Batch sizes the one-hot repro runs at (the bug depended on batch size): full strength, then reduced.
ONE_HOT_BATCHES = (1, 8, 64)
#: Large vocabularies of the generalised one-hot repro (Llama 3 and Gemma sizes).
LARGE_VOCABS = (128256, 262144)
#: Draws per distribution of the sampler goodness-of-fit check at full strength.
GOF_DRAWS = 200_000
#: Rows per sampler call when drawing for the goodness-of-fit test (the same row repeated).
GOF_BATCH = 1000

ProgressFn = Callable[[int, int], None]


class Check(Protocol):
    """A check: a named callable that runs and returns its :class:`CheckResult`."""

    __name__: str

    def __call__(self, progress: ProgressFn | None = None) -> CheckResult: ...


@dataclass(frozen=True)
class _Kit:
    impl: Implementation
    order: tuple[str, ...]
    scale: float
    seed: int

    def rng(self, name: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, *name.encode()])

    def count(self, full: int, least: int = 1) -> int:
        return max(least, round(full * self.scale))

    def cli_flags(self) -> str:
        flags = ""
        if self.impl.kind != "filter":
            flags += f" --kind {self.impl.kind}"
        if self.impl.framework != "numpy":
            flags += f" --framework {self.impl.framework}"
        if self.order != DEFAULT_ORDER:
            flags += f" --order {','.join(self.order)}"
        return flags

    def reproduce(self, case: Case) -> tuple[str, str]:
        kwargs = ""
        if self.impl.kind != "filter":
            kwargs += f", kind={json.dumps(self.impl.kind)}"
        if self.impl.framework != "numpy":
            kwargs += f", framework={json.dumps(self.impl.framework)}"
        if self.order != DEFAULT_ORDER:
            kwargs += f", order={json.dumps(list(self.order))}"
        args = f"{json.dumps(self.impl.target)}, {json.dumps(case.encode())}{kwargs}"
        code = f"from parity.conformance import replay; replay({args})"
        return f"python -c {shlex.quote(code)}", f"parity conform {self.impl.target}{self.cli_flags()}"


# ---------------------------------------------------------------------------------------------------- rows


def _random_rows(rng: np.random.Generator, n: int, vocab: int) -> NDArray[np.float32]:
    """Rows of several shapes: gaussian, peaked, Zipf-like, bf16/fp16-quantised, integer (many ties), near-tied top."""
    rows = np.empty((n, vocab), dtype=np.float32)
    for i in range(n):
        style = int(rng.integers(7))
        if style == 0:
            row = rng.normal(0.0, rng.choice([0.5, 1.0, 3.0]), vocab)
        elif style == 1:
            row = rng.normal(0.0, 1.0, vocab)
            row[rng.integers(vocab)] += rng.uniform(2.0, 14.0)
        elif style == 2:
            row = -rng.uniform(0.8, 1.5) * np.log(rng.permutation(vocab) + 1.0) * 3.0
        elif style == 3:
            row = round_to_bf16(rng.normal(0.0, 2.0, vocab).astype(np.float32)).astype(np.float64)
        elif style == 4:
            row = rng.normal(0.0, 2.0, vocab).astype(np.float16).astype(np.float64)
        elif style == 5:
            row = np.round(rng.normal(0.0, 1.5, vocab))
        else:
            row = rng.normal(0.0, 1.0, vocab)
            top = rng.choice(vocab, size=min(2, vocab), replace=False)
            row[top] = rng.uniform(4.0, 9.0)
            if vocab > 1:  # one bf16 ulp apart
                hi = round_to_bf16(np.array([row[top[0]]], dtype=np.float32))[0]
                row[top[0]] = hi
                row[top[1]] = np.nextafter(hi, np.float32(-np.inf), dtype=np.float32) if rng.random() < 0.5 else hi
        rows[i] = row
    return rows


def _peaked_rows(rng: np.random.Generator, n: int, vocab: int, mass: float) -> NDArray[np.float32]:
    """Rows whose argmax holds about ``mass`` of the probability (the top-p boundary sits on the argmax)."""
    rows = rng.normal(0.0, 1.0, (n, vocab))
    top = rng.integers(vocab, size=n)
    weights = np.exp(rows)
    rest = weights.sum(axis=1) - weights[np.arange(n), top]
    target = np.clip(mass + rng.uniform(-0.01, 0.01, n), 0.05, 0.99995)
    rows[np.arange(n), top] = np.log(target * rest / (1.0 - target))
    if rng.random() < 0.5:
        return round_to_bf16(rows.astype(np.float32))
    return rows.astype(np.float32)


# ---------------------------------------------------------------------------------------------------- runner


def _run(
    kit: _Kit,
    name: str,
    cases: Sequence[Case],
    detail: str,
    progress: ProgressFn | None,
) -> CheckResult:
    rows = 0
    for i, case in enumerate(cases):
        failure = judge(kit.impl, case, kit.order)
        if failure is not None:
            small, small_failure, steps = shrink(kit.impl, case, failure, kit.order)
            python_line, cli_line = kit.reproduce(small)
            example = Counterexample(
                check=name,
                input=small.describe(),
                expected=small_failure.expected,
                got=small_failure.got,
                reproduce=python_line,
                reproduce_cli=f"{cli_line} --only {name}",
                shrink_steps=steps,
            )
            where = f"case {i + 1} of {len(cases)}, row {failure.row}"
            return CheckResult(name, False, f"{where}: {failure.got[:300]}", example)
        rows += case.batch
        if progress is not None:
            progress(i + 1, len(cases))
    return CheckResult(name, True, f"{rows} rows in {len(cases)} batches: {detail}")


def _batches(rows: NDArray[np.float32], params: SamplingParams, verdict: str, batch: int) -> list[Case]:
    return [Case(rows[i : i + batch], params, verdict) for i in range(0, rows.shape[0], batch)]


# ---------------------------------------------------------------------------------------------------- filter checks


def _check_argmax_survival(kit: _Kit, progress: ProgressFn | None) -> CheckResult:
    rng = kit.rng("argmax")
    cases: list[Case] = []
    n = kit.count(32, 8)
    for top_p in (0.9, 0.99, 0.999):
        for temperature in (1.0, 0.7, 0.3, 0.1, 0.05):
            for vocab in (64, 1000, 32000):
                rows = _peaked_rows(rng, n if vocab < 32000 else max(4, n // 4), vocab, top_p)
                rows = np.concatenate([rows, _random_rows(rng, max(2, n // 4), vocab)])
                params = SamplingParams(temperature, 0, top_p, 0.0)
                cases += _batches(rows, params, "argmax", 16)
            combo = SamplingParams(temperature, 50, top_p, 0.05)
            cases += _batches(_peaked_rows(rng, n, 1000, top_p), combo, "argmax", 8)
    for vocab in LARGE_VOCABS[:1]:
        for top_p in (0.9, 0.99, 0.999):
            cases += _batches(
                _peaked_rows(rng, kit.count(8, 2), vocab, top_p), SamplingParams(1.0, 0, top_p, 0.0), "argmax", 8
            )
    detail = (
        "the argmax survived every row: peaked rows whose argmax mass sits at the top-p boundary, bf16-quantised "
        "near-ties, top_p 0.9/0.99/0.999, temperature 1 to 0.05, vocab 64 to 128256"
    )
    return _run(kit, "check_argmax_survival", cases, detail, progress)


def _check_greedy(kit: _Kit, progress: ProgressFn | None) -> CheckResult:
    rng = kit.rng("greedy")
    cases: list[Case] = []
    for vocab in (2, 10, 1000, 32000):
        rows = _random_rows(rng, kit.count(48, 8), vocab)
        for params in (SamplingParams(0.0, 0, 1.0, 0.0), SamplingParams(0.0, 50, 0.9, 0.1)):
            cases += _batches(rows, params, "oracle", 8)
    detail = "temperature 0 kept exactly the maximal logit (exact ties allowed), incl. bf16/fp16 near-ties"
    return _run(kit, "check_greedy", cases, detail, progress)


def _one_hot(vocab: int, indices: NDArray[np.int64]) -> NDArray[np.float32]:
    rows = np.zeros((indices.size, vocab), dtype=np.float32)
    rows[np.arange(indices.size), indices] = 1.0
    return rows


def _check_one_hot_every_index(kit: _Kit, progress: ProgressFn | None) -> CheckResult:
    full = kit.scale >= 0.5
    every = np.arange(0, ONE_HOT_VOCAB, 1 if full else 5 if kit.scale >= 0.1 else 10)
    cases: list[Case] = []
    batches = ONE_HOT_BATCHES if full else (8,)
    for batch in batches:
        rows = _one_hot(ONE_HOT_VOCAB, every)
        cases += _batches(rows, SamplingParams(1.0, ONE_HOT_K, 1.0, 0.0), "argmax", batch)
    rows = _one_hot(ONE_HOT_VOCAB, every[:: 1 if full else 4])
    cases += _batches(rows, SamplingParams(0.0, 0, 1.0, 0.0), "argmax", 8)
    cases += _batches(rows, SamplingParams(1.0, 0, 0.9, 0.0), "argmax", 8)
    which = "every index" if full else f"every {every[1]}th index (scale < 0.5)"
    detail = (
        f"a one-hot row at {which} of a {ONE_HOT_VOCAB}-token vocabulary kept its 1.0 and {ONE_HOT_K} tokens "
        f"(top_k={ONE_HOT_K}) at batch sizes {', '.join(map(str, batches))}, and at temperature 0 and top_p 0.9"
    )
    return _run(kit, "check_one_hot_every_index", cases, detail, progress)


def _check_one_hot_large_vocab(kit: _Kit, progress: ProgressFn | None) -> CheckResult:
    rng = kit.rng("one-hot-large")
    cases: list[Case] = []
    for vocab in LARGE_VOCABS:
        fixed = [0, 1, 255, 256, 10239, 10240, 10241, 32767, 32768, 65535, 65536, 131071, 131072, vocab - 1]
        spread = rng.integers(0, vocab, size=kit.count(40, 2))
        indices = np.unique(np.clip(np.r_[fixed, spread], 0, vocab - 1)).astype(np.int64)
        rows = _one_hot(vocab, indices)
        grid = [SamplingParams(1.0, ONE_HOT_K, 1.0, 0.0), SamplingParams(0.0, 0, 1.0, 0.0)]
        for params in grid + ([SamplingParams(1.0, 1, 1.0, 0.0)] if kit.scale >= 0.1 else []):
            cases += _batches(rows, params, "argmax", 8)
        cases += _batches(rows[:8], SamplingParams(1.0, ONE_HOT_K, 1.0, 0.0), "argmax", 1)
    detail = "one-hot rows at vocab 128256 and 262144 (tile boundaries, the last index, random indices) kept their 1.0"
    return _run(kit, "check_one_hot_large_vocab", cases, detail, progress)


def _property_check(
    kit: _Kit,
    name: str,
    grid: Sequence[SamplingParams],
    vocabs: Sequence[int],
    detail: str,
    progress: ProgressFn | None,
) -> CheckResult:
    rng = kit.rng(name)
    cases: list[Case] = []
    for vocab in vocabs:
        rows = _random_rows(rng, kit.count(24 if vocab < 10000 else 4, 2), vocab)
        for params in grid:
            if params.top_k > vocab + 3:
                continue
            cases += _batches(rows, params, "oracle", 8)
    return _run(kit, name, cases, detail, progress)


def _check_top_k_properties(kit: _Kit, progress: ProgressFn | None) -> CheckResult:
    grid = [
        SamplingParams(t, k, 1.0, 0.0) for t in (1.0, 0.5) for k in (1, 2, 3, 5, 9, 10, 11, 50, 63, 64, 67, 999, 1000)
    ]
    detail = "top-k kept exactly k tokens (more only when tied with the k-th), in order, k from 1 to V+3"
    return _property_check(kit, "check_top_k_properties", grid, (2, 10, 64, 1000), detail, progress)


def _check_top_p_properties(kit: _Kit, progress: ProgressFn | None) -> CheckResult:
    grid = [SamplingParams(t, 0, p, 0.0) for t in (1.0, 0.6) for p in (0.05, 0.3, 0.5, 0.8, 0.9, 0.95, 0.99, 0.999)]
    detail = (
        "top-p kept a probability-ordered set whose mass reaches p and that is minimal (float32 mass tolerance), "
        "p from 0.05 to 0.999"
    )
    return _property_check(kit, "check_top_p_properties", grid, (2, 10, 64, 1000, 32000), detail, progress)


def _check_min_p_properties(kit: _Kit, progress: ProgressFn | None) -> CheckResult:
    grid = [SamplingParams(t, 0, 1.0, m) for t in (1.0, 0.5) for m in (0.001, 0.01, 0.05, 0.1, 0.3, 0.9, 1.0)]
    detail = "min-p kept exactly the tokens with p_i >= min_p * p_max (tie tolerance), min_p from 0.001 to 1"
    return _property_check(kit, "check_min_p_properties", grid, (2, 10, 64, 1000), detail, progress)


def _check_combined_parameters(kit: _Kit, progress: ProgressFn | None) -> CheckResult:
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


def _check_top_p_boundary_and_ties(kit: _Kit, progress: ProgressFn | None) -> CheckResult:
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
    return _run(kit, "check_top_p_boundary_and_ties", cases, detail, progress)


def _check_inf_rows(kit: _Kit, progress: ProgressFn | None) -> CheckResult:
    rng = kit.rng("inf")
    cases: list[Case] = []
    for vocab in (4, 64, 1000):
        rows = _random_rows(rng, kit.count(16, 4), vocab)
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
            cases += _batches(rows, params, "oracle", 8)
            cases.append(Case(single, params, "oracle"))
        for position in (0, 2):
            batch = _random_rows(rng, 4, vocab)
            batch[position] = -np.inf
            cases.append(Case(batch, SamplingParams(1.0, 0, 0.9, 0.0), "isolation", row=position))
    detail = "-inf logits were never kept, a row with one finite token kept it, a row of -inf was rejected or isolated"
    return _run(kit, "check_inf_rows", cases, detail, progress)


def _check_nan_rows(kit: _Kit, progress: ProgressFn | None) -> CheckResult:
    rng = kit.rng("nan")
    cases: list[Case] = []
    for vocab in (4, 64, 1000):
        for position in (0, 1, 3):
            for whole in (False, True):
                batch = _random_rows(rng, 4, vocab)
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
    return _run(kit, "check_nan_rows", cases, detail, progress)


def _check_batch_invariance(kit: _Kit, progress: ProgressFn | None) -> CheckResult:
    rng = kit.rng("batch")
    cases: list[Case] = []
    for _ in range(kit.count(12, 4)):
        vocab = int(rng.choice([16, 300, 5000]))
        batch = int(rng.integers(2, 10))
        params = SamplingParams(
            float(rng.choice([0.5, 1.0])), int(rng.choice([0, 20])), float(rng.choice([0.9, 0.99])), 0.0
        )
        cases.append(Case(_random_rows(rng, batch, vocab), params, "batch_invariance"))
    detail = "each row's kept set was the same alone, in a batch of 2-9 rows, and at another position"
    return _run(kit, "check_batch_invariance", cases, detail, progress)


def _check_edge_parameters(kit: _Kit, progress: ProgressFn | None) -> CheckResult:
    rng = kit.rng("edge")
    cases: list[Case] = []
    for vocab in (1, 2, 5, 100):
        rows = _random_rows(rng, 4, vocab)
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
    return _run(kit, "check_edge_parameters", cases, detail, progress)


def _check_monotonicity(kit: _Kit, progress: ProgressFn | None) -> CheckResult:
    rng = kit.rng("monotone")
    cases: list[Case] = []
    for vocab in (10, 200, 3000):
        rows = _random_rows(rng, kit.count(8, 2), vocab)
        for verdict in ("monotone_top_p", "monotone_top_k", "monotone_min_p", "disabled"):
            cases.append(Case(rows, SamplingParams(float(rng.choice([0.7, 1.0])), 0, 1.0, 0.0), verdict))
    detail = "kept sets grew with top_p and top_k and shrank with min_p; top_k 0/-1/V, top_p 1, min_p 0 were no-ops"
    return _run(kit, "check_monotonicity", cases, detail, progress)


# ---------------------------------------------------------------------------------------------------- sampler checks


def _check_sampler_support(kit: _Kit, progress: ProgressFn | None) -> CheckResult:
    rng = kit.rng("support")
    cases: list[Case] = []
    grid = [SamplingParams(1.0, 0, p, 0.0) for p in (0.5, 0.9, 0.99, 0.999)]
    grid += [SamplingParams(0.7, 20, 1.0, 0.0), SamplingParams(1.0, 0, 1.0, 0.1), SamplingParams(0.8, 40, 0.95, 0.02)]
    for vocab in (10, 64, 1000):
        rows = np.concatenate([_random_rows(rng, kit.count(24, 6), vocab), _peaked_rows(rng, 8, vocab, 0.99)])
        cases += [c for params in grid for c in _batches(rows, params, "support", 16)]
        holes = rows.copy()
        holes[rng.random(rows.shape) < 0.5] = -np.inf
        holes[np.arange(rows.shape[0]), np.argmax(rows, axis=1)] = rows.max(axis=1)
        cases += _batches(holes, SamplingParams(1.0, 0, 0.9, 0.0), "support", 16)
    for position in (0, 3):
        batch = _random_rows(rng, 5, 50)
        batch[position] = np.nan if position == 0 else -np.inf
        cases.append(Case(batch, SamplingParams(1.0, 0, 0.9, 0.0), "sampler_isolation", row=position))
    detail = "every draw (4 seeds per case) was a valid id in the kept set, -inf tokens never drawn, bad rows isolated"
    return _run(kit, "check_sampler_support", cases, detail, progress)


def _check_sampler_greedy(kit: _Kit, progress: ProgressFn | None) -> CheckResult:
    rng = kit.rng("sampler-greedy")
    cases: list[Case] = []
    for vocab in (2, 100, 5000):
        rows = _random_rows(rng, kit.count(32, 8), vocab)
        cases += _batches(rows, SamplingParams(0.0, 0, 1.0, 0.0), "sampler_greedy", 8)
        cases += _batches(rows, SamplingParams(0.0, 40, 0.9, 0.05), "sampler_greedy", 8)
    stride = 1 if kit.scale >= 0.5 else 7 if kit.scale >= 0.1 else 25
    rows = _one_hot(ONE_HOT_VOCAB, np.arange(0, ONE_HOT_VOCAB, stride))
    cases += _batches(rows, SamplingParams(0.0, ONE_HOT_K, 1.0, 0.0), "sampler_greedy", 8)
    which = "every index" if stride == 1 else f"every {stride}th index"
    detail = f"temperature 0 drew the argmax, incl. one-hot rows at {which} of {ONE_HOT_VOCAB} tokens"
    return _run(kit, "check_sampler_greedy", cases, detail, progress)


def _check_sampler_determinism(kit: _Kit, progress: ProgressFn | None) -> CheckResult:
    rng = kit.rng("determinism")
    cases = [
        Case(_random_rows(rng, 8, v), SamplingParams(1.0, 0, 0.95, 0.0), "determinism", seed=s)
        for v in (10, 500)
        for s in (0, 7)
    ]
    return _run(kit, "check_sampler_determinism", cases, "the same seed gave the same draws", progress)


def _gof_rows(rng: np.random.Generator, kit: _Kit) -> list[tuple[NDArray[np.float32], SamplingParams]]:
    specs = [
        (32, SamplingParams(0.8, 0, 0.9, 0.0)),
        (1000, SamplingParams(1.0, 50, 1.0, 0.02)),
        (64, SamplingParams(1.0, 0, 0.95, 0.0)),
    ]
    out: list[tuple[NDArray[np.float32], SamplingParams]] = []
    for vocab, params in specs:
        for _ in range(200):  # a row whose reference kept set is unambiguous (no boundary within tolerance)
            row = rng.normal(0.0, 1.5, (1, vocab)).astype(np.float32)
            b = row_bounds(
                row[0],
                temperature=params.temperature,
                top_k=params.top_k,
                top_p=params.top_p,
                min_p=params.min_p,
                order=kit.order,
            )
            if b.lo == b.hi and b.must_keep().sum() == b.lo:
                out.append((row, params))
                break
    return out


def _gof_python_line(kit: _Kit) -> str:
    args = f"{json.dumps(kit.impl.target)}, kind={json.dumps(kit.impl.kind)}, seed={kit.seed}, scale={kit.scale}"
    if kit.impl.framework != "numpy":
        args += f", framework={json.dumps(kit.impl.framework)}"
    if kit.order != DEFAULT_ORDER:
        args += f", order={json.dumps(list(kit.order))}"
    only = 'only=["check_sampler_goodness_of_fit"]'
    code = f"from parity.conformance import check_sampler; print(check_sampler({args}, {only}).render())"
    return f"python -c {shlex.quote(code)}"


def _check_sampler_goodness_of_fit(kit: _Kit, progress: ProgressFn | None) -> CheckResult:
    rng = kit.rng("gof")
    draws = kit.count(GOF_DRAWS, GOF_BATCH)
    calls = max(1, draws // GOF_BATCH)
    rows = _gof_rows(rng, kit)
    lines: list[str] = []
    worst_tv = 0.0
    done = 0
    for row, params in rows:
        b = row_bounds(
            row[0],
            temperature=params.temperature,
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=params.min_p,
            order=kit.order,
        )
        kept = b.ranked[: b.lo]
        probs = np.zeros(row.shape[1])
        w = np.exp(b.z[kept] - b.z_max)
        probs[kept] = w / w.sum()
        counts = np.zeros(row.shape[1])
        batch = np.repeat(row, GOF_BATCH, axis=0)
        for call in range(calls):
            ids = kit.impl.call_sampler(batch, params, kit.seed * 1_000_003 + call)
            ids = ids[(ids >= 0) & (ids < row.shape[1])]
            counts += np.bincount(ids, minlength=row.shape[1])[: row.shape[1]]
            done += 1
            if progress is not None:
                progress(done, calls * len(rows))
        result = chi_square_gof(counts, probs)
        worst_tv = max(worst_tv, result.detectable_tv)
        outside = int(counts[probs == 0].sum())
        line = (
            f"vocab {row.shape[1]} ({params.describe()}): chi2={result.statistic:.1f}, df={result.df}, "
            f"p={result.pvalue:.3g}, draws outside the kept set: {outside}"
        )
        lines.append(line)
        if result.rejected or outside:
            top = np.argsort(-probs)[:5]
            example = Counterexample(
                check="check_sampler_goodness_of_fit",
                input=Case(row, params, "support").describe(),
                expected="frequencies " + ", ".join(f"{int(t)}: {probs[t]:.4f}" for t in top),
                got="frequencies "
                + ", ".join(f"{int(t)}: {counts[t] / counts.sum():.4f}" for t in top)
                + f" ({outside} draws outside the kept set); p-value {result.pvalue:.3g} < alpha {GOF_ALPHA:g}",
                reproduce=_gof_python_line(kit),
                reproduce_cli=f"{kit.reproduce(Case(row, params, 'support'))[1]} --only check_sampler_goodness_of_fit",
            )
            return CheckResult("check_sampler_goodness_of_fit", False, line, example)
    detail = (
        f"{len(rows)} distributions x {calls * GOF_BATCH} draws, Pearson chi-square at alpha {GOF_ALPHA:g}: "
        + "; ".join(lines)
        + f". Power: detects any deviation of total variation >= {worst_tv:.4f} with probability {GOF_POWER}"
    )
    return CheckResult("check_sampler_goodness_of_fit", True, detail)


_FILTER_CHECKS: dict[str, Callable[[_Kit, ProgressFn | None], CheckResult]] = {
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

_SAMPLER_CHECKS: dict[str, Callable[[_Kit, ProgressFn | None], CheckResult]] = {
    "check_sampler_support": _check_sampler_support,
    "check_sampler_greedy": _check_sampler_greedy,
    "check_sampler_determinism": _check_sampler_determinism,
    "check_sampler_goodness_of_fit": _check_sampler_goodness_of_fit,
}

#: Checks that draw many samples or rows (the CLI shows a progress bar on them).
HEAVY_CHECKS = frozenset({"check_one_hot_every_index", "check_sampler_goodness_of_fit", "check_sampler_greedy"})


def filter_check_names() -> list[str]:
    """Names of the checks run on a filter."""
    return list(_FILTER_CHECKS)


def sampler_check_names() -> list[str]:
    """Names of the checks run on a sampler."""
    return list(_SAMPLER_CHECKS)


def _implementation(impl: Any, kind: Kind | None, framework: Framework | None, target: str | None) -> Implementation:
    if isinstance(impl, Implementation):
        return impl
    if isinstance(impl, str):
        loaded = load_target(impl, kind=kind or "filter")
        return Implementation(
            loaded.fn,
            kind=kind or loaded.kind or "filter",
            framework=framework or loaded.framework or "numpy",
            target=target or loaded.name,
        )
    return Implementation(impl, kind=kind or "filter", framework=framework or "numpy", target=target)


def _validate(order: Sequence[str], scale: float) -> tuple[str, ...]:
    checked = validate_order(order, temperature_stage=True)
    if checked[0] == "temperature":  # temperature first is the default
        checked = checked[1:]
    if not (0.0 < scale <= 10.0):
        raise InvalidInputError("scale", "must be in (0, 10]", scale)
    return checked


def yield_checks(
    impl: Any,
    *,
    kind: Kind | None = None,
    framework: Framework | None = None,
    order: Sequence[str] = DEFAULT_ORDER,
    scale: float = 1.0,
    seed: int = 0,
    target: str | None = None,
) -> Iterator[Check]:
    """Yield the kit's checks for ``impl`` (a callable, an :class:`Implementation` or ``"MODULE:CALLABLE"`` /
    ``"builtin:NAME"``), as plain callables named ``check_*`` that return a :class:`CheckResult`.

    ``kind`` picks the protocol (filter or sampler), ``framework`` numpy or torch, ``order`` the order of the
    implementation's filters after temperature (a ``"temperature"`` stage in it places the temperature elsewhere,
    as llama.cpp's chain does). ``scale`` sizes the statistical checks (rows and draws): 1.0 is
    the full-strength kit the CLI runs, tests use less; the goodness-of-fit power printed is always for the draws
    actually made. ``seed`` seeds every generated case.

    >>> [check.__name__ for check in yield_checks("builtin:reference")][:3]
    ['check_argmax_survival', 'check_greedy', 'check_one_hot_every_index']
    """
    checked_order = _validate(order, scale)
    implementation = _implementation(impl, kind, framework, target)
    kit = _Kit(implementation, checked_order, float(scale), int(seed))
    table = _FILTER_CHECKS if implementation.kind == "filter" else _SAMPLER_CHECKS
    for name, body in table.items():
        yield _bind(name, body, kit)


def _bind(name: str, body: Callable[[_Kit, ProgressFn | None], CheckResult], kit: _Kit) -> Check:
    @functools.wraps(body)
    def check(progress: ProgressFn | None = None) -> CheckResult:
        return body(kit, progress)

    check.__name__ = check.__qualname__ = name
    check.__doc__ = f"{name} on {kit.impl.target} ({kit.impl.kind}, {kit.impl.framework})."
    return check


def check_sampler(
    impl: Any,
    *,
    kind: Kind | None = None,
    framework: Framework | None = None,
    order: Sequence[str] = DEFAULT_ORDER,
    scale: float = 1.0,
    seed: int = 0,
    only: Iterable[str] | None = None,
    target: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> ConformanceReport:
    """Run every check of :func:`yield_checks` (or those named in ``only``) and return the report.

    ``progress(check_name, done, total)`` is called as checks advance.
    """
    wanted = None if only is None else set(only)
    implementation = _implementation(impl, kind, framework, target)
    checks = list(yield_checks(implementation, order=order, scale=scale, seed=seed))
    if wanted is not None:
        unknown = wanted - {c.__name__ for c in checks}
        if unknown:
            names = ", ".join(c.__name__ for c in checks)
            raise InvalidInputError("only", f"must name checks of this kind ({names})", sorted(unknown)[0])
        checks = [c for c in checks if c.__name__ in wanted]
    results: list[CheckResult] = []
    for check in checks:
        hook = None if progress is None else functools.partial(progress, check.__name__)
        results.append(check(hook))
    return ConformanceReport(
        implementation.target, implementation.kind, implementation.framework, tuple(order), results
    )


def replay(
    target: Any,
    code: str,
    *,
    kind: Kind | None = None,
    framework: Framework | None = None,
    order: Sequence[str] = DEFAULT_ORDER,
    echo: bool = True,
) -> bool:
    """Judge one encoded case (from a failure report's reproduction line) again; True when it now passes.

    >>> import numpy as np
    >>> code = Case(np.array([[1.0, 3.0, 2.0]], dtype=np.float32), SamplingParams(top_p=0.5), "oracle").encode()
    >>> replay("builtin:reference", code)
    PASS: batch 1 x vocab 3; row 0: [1, 3, 2]; temperature=1.0, top_k=0, top_p=0.5, min_p=0.0
    True
    """
    case = decode_case(code)
    implementation = _implementation(target, kind, framework, None)
    failure = judge(implementation, case, tuple(order))
    if echo:
        if failure is None:
            print(f"PASS: {case.describe()}")
        else:
            print(f"FAIL: {case.describe()}\n  row {failure.row}")
            print(f"  expected: {failure.expected}\n  got:      {failure.got}")
    return failure is None


def run_builtin_verdicts(
    *,
    scale: float = 0.25,
    seed: int = 0,
    names: Sequence[str] | None = None,
    only: Sequence[str] | None = None,
) -> str:
    """Run the kit on the reference and the built-in faulty filters; their verdicts as text (for ``make demo``).

    Each faulty filter must come out NOT CONFORMANT and the reference CONFORMANT; the text shows, per builtin,
    the verdict, the failing checks, and the first failure's shrunk counterexample with its reproduction.
    """
    from parity.conformance.faulty import BUILTINS

    lines: list[str] = []
    for name in names or list(BUILTINS):
        report = check_sampler(f"builtin:{name}", scale=scale, seed=seed, only=only)
        verdict = "CONFORMANT" if report.conformant else "NOT CONFORMANT"
        failed = ", ".join(r.name for r in report.failures) or "none"
        lines.append(f"builtin:{name}: {verdict} ({len(report.results)} checks; failed: {failed})")
        example = report.failures[0].counterexample if report.failures else None
        if example is not None:
            lines.append(f"  first failure: {example.check}")
            lines.append(example.render())
    return "\n".join(lines)
