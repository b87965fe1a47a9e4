"""Shrinking a failing case to the smallest input that still fails the same verdict.

Steps, each kept only when the implementation still fails: fewer rows (the failing row alone, else the failing
row repeated as few times as still fails, for batch-size dependent bugs, else drop other rows one by one); simpler
parameters (each filter disabled, temperature 1); fewer vocabulary columns (the largest block cut from either
end, by binary search, then halving chunks down to 1/64 of the vocabulary); simpler values (chunks of columns set
to 0 the same way, then integers, then one decimal). A row that must stay invalid (NaN or all -inf) for its
verdict stays invalid.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import numpy as np

from parity.conformance._adapters import Implementation
from parity.conformance._cases import Case
from parity.conformance._verdicts import Failure, judge
from parity.sampling import SamplingParams

__all__ = ["SHRINK_CALLS", "SHRINK_SECONDS", "shrink"]

#: Most verdict runs spent on shrinking one failure.
SHRINK_CALLS = 600
#: Most seconds spent on shrinking one failure.
SHRINK_SECONDS = 20.0

_SWEPT = {"monotone_top_p": "top_p", "monotone_top_k": "top_k", "monotone_min_p": "min_p"}
_ROW_WISE = {"oracle", "argmax", "support", "sampler_greedy", "determinism"}


def shrink(impl: Implementation, case: Case, failure: Failure, order: Sequence[str]) -> tuple[Case, Failure, int]:
    """The smallest case found that still fails, its failure, and how many simplifications were accepted."""
    deadline = time.monotonic() + SHRINK_SECONDS
    calls = 0
    steps = 0
    case = replace(case, row=failure.row) if case.verdict in _ROW_WISE else case

    def attempt(candidate: Case) -> Failure | None:
        nonlocal calls
        if calls >= SHRINK_CALLS or time.monotonic() > deadline:
            return None
        calls += 1
        try:
            return judge(impl, candidate, order)
        except Exception:
            return None

    def first_success(candidates: Iterator[Case]) -> bool:
        nonlocal case, failure, steps
        for candidate in candidates:
            found = attempt(candidate)
            if found is not None:
                case, failure, steps = _focus(candidate, found), found, steps + 1
                return True
        return False

    first_success(_fewer_rows(case))
    first_success(_replicated(case))
    while case.batch > 1 and first_success(_drop_one_row(case)):
        pass
    for simpler in _simpler_params(case):
        first_success(iter([simpler(case)]))
    for side in ("tail", "head"):  # binary search for the largest block cut from either end that still fails
        keep_lo, keep_hi = 1, case.vocab
        while keep_lo < keep_hi:
            mid = (keep_lo + keep_hi) // 2
            cut = _cut(case, mid, side)
            if cut is not None and first_success(iter([cut])):
                keep_hi = case.vocab
            else:
                keep_lo = mid + 1
    chunk, smallest = max(1, case.vocab // 2), max(1, case.vocab // 64)
    while chunk >= smallest and calls < SHRINK_CALLS and time.monotonic() < deadline:
        if not first_success(_drop_columns(case, chunk)):
            chunk //= 2
    chunk, smallest = max(1, case.vocab // 2), max(1, case.vocab // 64)
    while chunk >= smallest and calls < SHRINK_CALLS and time.monotonic() < deadline:
        if not first_success(_zero_columns(case, chunk)):
            chunk //= 2
    for decimals in (0, 1):
        rounded = np.round(case.logits, decimals).astype(np.float32)
        if not np.array_equal(rounded, case.logits, equal_nan=True):
            first_success(iter([replace(case, logits=rounded)]))
    return case, failure, steps


def _focus(case: Case, failure: Failure) -> Case:
    return replace(case, row=failure.row) if case.verdict in _ROW_WISE else case


def _fewer_rows(case: Case) -> Iterator[Case]:
    if case.batch > 1 and case.verdict in _ROW_WISE:
        yield replace(case, logits=case.logits[case.row : case.row + 1].copy(), row=0)


def _replicated(case: Case) -> Iterator[Case]:
    if case.verdict not in _ROW_WISE:
        return
    for b in range(2, case.batch + 1):
        yield replace(case, logits=np.repeat(case.logits[case.row : case.row + 1], b, axis=0), row=0)


def _drop_one_row(case: Case) -> Iterator[Case]:
    for r in range(case.batch):
        if r == case.row:
            continue
        keep = [i for i in range(case.batch) if i != r]
        yield replace(case, logits=case.logits[keep].copy(), row=case.row - (r < case.row))


def _simpler_params(case: Case) -> list[Callable[[Case], Case]]:
    swept = _SWEPT.get(case.verdict)
    p = case.params
    out: list[Callable[[Case], Case]] = []
    if p.top_k != 0 and swept != "top_k":
        out.append(lambda c: replace(c, params=replace(c.params, top_k=0)))
    if p.top_p != 1.0 and swept != "top_p":
        out.append(lambda c: replace(c, params=replace(c.params, top_p=1.0)))
    if p.min_p != 0.0 and swept != "min_p":
        out.append(lambda c: replace(c, params=replace(c.params, min_p=0.0)))
    if p.temperature not in (0.0, 1.0):
        out.append(lambda c: replace(c, params=SamplingParams(1.0, c.params.top_k, c.params.top_p, c.params.min_p)))
    return out


def _invalid(row: np.ndarray) -> bool:
    return bool(np.isnan(row).any() or not np.isfinite(row).any())


def _cut(case: Case, keep: int, side: str) -> Case | None:
    logits = case.logits[:, :keep] if side == "tail" else case.logits[:, case.vocab - keep :]
    if _invalid(logits[case.row]) != _invalid(case.logits[case.row]):
        return None
    return replace(case, logits=np.ascontiguousarray(logits))


def _drop_columns(case: Case, chunk: int) -> Iterator[Case]:
    v = case.vocab
    invalid = _invalid(case.logits[case.row])
    starts = list(range(0, v, chunk))[::-1]
    for start in starts:
        keep = np.r_[0:start, min(v, start + chunk) : v]
        if keep.size == 0 or keep.size == v:
            continue
        logits = case.logits[:, keep]
        if _invalid(logits[case.row]) != invalid:
            continue
        yield replace(case, logits=np.ascontiguousarray(logits))


def _zero_columns(case: Case, chunk: int) -> Iterator[Case]:
    v = case.vocab
    for start in list(range(0, v, chunk))[::-1]:
        block = case.logits[:, start : start + chunk]
        if not np.isfinite(block).all() or not block.any():
            continue
        logits = case.logits.copy()
        logits[:, start : start + chunk] = 0.0
        yield replace(case, logits=logits)
