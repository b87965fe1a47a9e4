"""The kit's entry points: :func:`yield_checks` yields plain ``check_*`` callables, :func:`check_sampler` runs them.

The checks themselves live beside this module, along the kit's seams: the row generators
(:mod:`parity.conformance._rows`), running a check with shrinking and reproductions
(:mod:`parity.conformance._runner`), the filter checks (:mod:`parity.conformance._filter_checks`) and the sampler
checks (:mod:`parity.conformance._sampler_checks`). Each check generates its cases from a seeded generator, runs
the implementation, judges every answer with a named verdict (:mod:`parity.conformance._verdicts`), and on the
first failure shrinks the input and reports the smallest failing case with a one-line reproduction.

>>> report = check_sampler("builtin:reference", only=["check_top_p_properties"], scale=0.05)
>>> report.conformant
True
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from parity._exceptions import InvalidInputError
from parity.conformance._adapters import Framework, Implementation, Kind, load_target
from parity.conformance._cases import decode_case
from parity.conformance._filter_checks import FILTER_CHECKS
from parity.conformance._report import CheckResult, ConformanceReport
from parity.conformance._runner import Check, CheckBody, Kit, ProgressFn
from parity.conformance._sampler_checks import SAMPLER_CHECKS
from parity.conformance._verdicts import judge
from parity.sampling import DEFAULT_ORDER, validate_order

__all__ = [
    "HEAVY_CHECKS",
    "Check",
    "check_sampler",
    "filter_check_names",
    "replay",
    "run_builtin_verdicts",
    "sampler_check_names",
    "yield_checks",
]

#: Checks that draw many samples or rows (the CLI shows a progress bar on them).
HEAVY_CHECKS = frozenset({"check_one_hot_every_index", "check_sampler_goodness_of_fit", "check_sampler_greedy"})


def filter_check_names() -> list[str]:
    """Names of the checks run on a filter."""
    return list(FILTER_CHECKS)


def sampler_check_names() -> list[str]:
    """Names of the checks run on a sampler."""
    return list(SAMPLER_CHECKS)


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
    kit = Kit(implementation, checked_order, float(scale), int(seed))
    table = FILTER_CHECKS if implementation.kind == "filter" else SAMPLER_CHECKS
    for name, body in table.items():
        yield _bind(name, body, kit)


def _bind(name: str, body: CheckBody, kit: Kit) -> Check:
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
    >>> from parity.conformance._cases import Case
    >>> from parity.sampling import SamplingParams
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
