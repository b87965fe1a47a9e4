"""The checks run on a sampler: its draws stay in the kept set, greedy draws the argmax, a seed repeats, and
the frequencies match the reference distribution (Pearson chi-square with its power stated).

:data:`SAMPLER_CHECKS` lists them in the order the kit runs them.
"""

from __future__ import annotations

import json
import shlex

import numpy as np
from numpy.typing import NDArray

from parity.conformance._cases import Case
from parity.conformance._filter_checks import ONE_HOT_K, ONE_HOT_VOCAB
from parity.conformance._gof import GOF_ALPHA, GOF_POWER, chi_square_gof
from parity.conformance._oracle import row_bounds
from parity.conformance._report import CheckResult, Counterexample
from parity.conformance._rows import one_hot, peaked_rows, random_rows
from parity.conformance._runner import CheckBody, Kit, ProgressFn, batches, run_cases
from parity.sampling import DEFAULT_ORDER, SamplingParams

__all__ = ["GOF_BATCH", "GOF_DRAWS", "SAMPLER_CHECKS"]

#: Draws per distribution of the sampler goodness-of-fit check at full strength.
GOF_DRAWS = 200_000
#: Rows per sampler call when drawing for the goodness-of-fit test (the same row repeated).
GOF_BATCH = 1000


def _check_sampler_support(kit: Kit, progress: ProgressFn | None) -> CheckResult:
    rng = kit.rng("support")
    cases: list[Case] = []
    grid = [SamplingParams(1.0, 0, p, 0.0) for p in (0.5, 0.9, 0.99, 0.999)]
    grid += [SamplingParams(0.7, 20, 1.0, 0.0), SamplingParams(1.0, 0, 1.0, 0.1), SamplingParams(0.8, 40, 0.95, 0.02)]
    for vocab in (10, 64, 1000):
        rows = np.concatenate([random_rows(rng, kit.count(24, 6), vocab), peaked_rows(rng, 8, vocab, 0.99)])
        cases += [c for params in grid for c in batches(rows, params, "support", 16)]
        holes = rows.copy()
        holes[rng.random(rows.shape) < 0.5] = -np.inf
        holes[np.arange(rows.shape[0]), np.argmax(rows, axis=1)] = rows.max(axis=1)
        cases += batches(holes, SamplingParams(1.0, 0, 0.9, 0.0), "support", 16)
    for position in (0, 3):
        batch = random_rows(rng, 5, 50)
        batch[position] = np.nan if position == 0 else -np.inf
        cases.append(Case(batch, SamplingParams(1.0, 0, 0.9, 0.0), "sampler_isolation", row=position))
    detail = "every draw (4 seeds per case) was a valid id in the kept set, -inf tokens never drawn, bad rows isolated"
    return run_cases(kit, "check_sampler_support", cases, detail, progress)


def _check_sampler_greedy(kit: Kit, progress: ProgressFn | None) -> CheckResult:
    rng = kit.rng("sampler-greedy")
    cases: list[Case] = []
    for vocab in (2, 100, 5000):
        rows = random_rows(rng, kit.count(32, 8), vocab)
        cases += batches(rows, SamplingParams(0.0, 0, 1.0, 0.0), "sampler_greedy", 8)
        cases += batches(rows, SamplingParams(0.0, 40, 0.9, 0.05), "sampler_greedy", 8)
    stride = 1 if kit.scale >= 0.5 else 7 if kit.scale >= 0.1 else 25
    rows = one_hot(ONE_HOT_VOCAB, np.arange(0, ONE_HOT_VOCAB, stride))
    cases += batches(rows, SamplingParams(0.0, ONE_HOT_K, 1.0, 0.0), "sampler_greedy", 8)
    which = "every index" if stride == 1 else f"every {stride}th index"
    detail = f"temperature 0 drew the argmax, incl. one-hot rows at {which} of {ONE_HOT_VOCAB} tokens"
    return run_cases(kit, "check_sampler_greedy", cases, detail, progress)


def _check_sampler_determinism(kit: Kit, progress: ProgressFn | None) -> CheckResult:
    rng = kit.rng("determinism")
    cases = [
        Case(random_rows(rng, 8, v), SamplingParams(1.0, 0, 0.95, 0.0), "determinism", seed=s)
        for v in (10, 500)
        for s in (0, 7)
    ]
    return run_cases(kit, "check_sampler_determinism", cases, "the same seed gave the same draws", progress)


def _gof_rows(rng: np.random.Generator, kit: Kit) -> list[tuple[NDArray[np.float32], SamplingParams]]:
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


def _gof_python_line(kit: Kit) -> str:
    args = f"{json.dumps(kit.impl.target)}, kind={json.dumps(kit.impl.kind)}, seed={kit.seed}, scale={kit.scale}"
    if kit.impl.framework != "numpy":
        args += f", framework={json.dumps(kit.impl.framework)}"
    if kit.order != DEFAULT_ORDER:
        args += f", order={json.dumps(list(kit.order))}"
    only = 'only=["check_sampler_goodness_of_fit"]'
    code = f"from parity.conformance import check_sampler; print(check_sampler({args}, {only}).render())"
    return f"python -c {shlex.quote(code)}"


def _check_sampler_goodness_of_fit(kit: Kit, progress: ProgressFn | None) -> CheckResult:
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


SAMPLER_CHECKS: dict[str, CheckBody] = {
    "check_sampler_support": _check_sampler_support,
    "check_sampler_greedy": _check_sampler_greedy,
    "check_sampler_determinism": _check_sampler_determinism,
    "check_sampler_goodness_of_fit": _check_sampler_goodness_of_fit,
}
