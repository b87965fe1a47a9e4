"""Running a check: the kit's settings, judging each case, shrinking the first failure and writing its repro.

A check generates :class:`~parity.conformance._cases.Case` objects and hands them to :func:`run_cases`, which
judges each answer with its named verdict (:mod:`parity.conformance._verdicts`); on the first failure it shrinks
the input (:mod:`parity.conformance._shrink`) and reports the smallest failing case with a one-line
reproduction (Python and CLI) built by :meth:`Kit.reproduce`.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from parity.conformance._adapters import Implementation
from parity.conformance._cases import Case
from parity.conformance._report import CheckResult, Counterexample
from parity.conformance._shrink import shrink
from parity.conformance._verdicts import judge
from parity.sampling import DEFAULT_ORDER, SamplingParams

__all__ = ["Check", "CheckBody", "Kit", "ProgressFn", "batches", "run_cases"]

ProgressFn = Callable[[int, int], None]


class Check(Protocol):
    """A check: a named callable that runs and returns its :class:`CheckResult`."""

    __name__: str

    def __call__(self, progress: ProgressFn | None = None) -> CheckResult: ...


@dataclass(frozen=True)
class Kit:
    """The implementation under test and the settings of one run of the kit."""

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


#: A check's body: runs on a kit, reports progress, returns its result.
CheckBody = Callable[[Kit, ProgressFn | None], CheckResult]


def run_cases(
    kit: Kit,
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


def batches(rows: NDArray[np.float32], params: SamplingParams, verdict: str, batch: int) -> list[Case]:
    return [Case(rows[i : i + batch], params, verdict) for i in range(0, rows.shape[0], batch)]
