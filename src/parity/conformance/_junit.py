"""A :class:`ConformanceReport` as JUnit XML: one test case per check, the shrunk repro in the failure's text.

>>> from parity.conformance._report import CheckResult, ConformanceReport
>>> report = ConformanceReport("builtin:reference", "filter", "numpy", ("top_k", "top_p", "min_p"),
...                            [CheckResult("check_greedy", True, "40 rows")])
>>> [(c.name, c.failure) for c in junit_cases(report)]
[('check_greedy', None)]
"""

from __future__ import annotations

from pathlib import Path

from parity._junit import JUnitCase, Scalar, write_junit
from parity.conformance._report import CheckResult, ConformanceReport

__all__ = ["junit_cases", "write_junit_report"]

_CLASS = "parity.conform"


def _case(result: CheckResult, classname: str) -> JUnitCase:
    if result.passed:
        return JUnitCase(result.name, classname, output=result.detail)
    properties: dict[str, Scalar] = {}
    example = result.counterexample
    if example is not None:
        properties = {"shrink_steps": example.shrink_steps, "reproduce_cli": example.reproduce_cli}
    return JUnitCase(
        result.name,
        classname,
        failure=result.detail.split("\n", 1)[0][:500],
        failure_text=result.render(),
        properties=properties,
    )


def junit_cases(report: ConformanceReport) -> list[JUnitCase]:
    """One case per check that ran, failed when the check failed (its text holds the counterexample)."""
    return [_case(r, f"{_CLASS}.{report.target}") for r in report.results]


def write_junit_report(
    report: ConformanceReport, path: str | Path, *, time_s: float = 0.0, scale: float = 1.0, seed: int = 0
) -> Path:
    """Write the report as JUnit XML to ``path``; returns the path."""
    properties: dict[str, Scalar] = {
        "target": report.target,
        "kind": report.kind,
        "framework": report.framework,
        "order": ",".join(report.order),
        "scale": scale,
        "seed": seed,
        "conformant": report.conformant,
    }
    return write_junit(path, "parity conform", junit_cases(report), time_s=time_s, properties=properties)
