"""A :class:`ComparisonReport` as JUnit XML: one test case per statistical test, so CI shows the deploy gate natively.

A rejected test is a ``<failure>`` (the candidate differs), a test the endpoints' capabilities did not allow is
``<skipped>``; every case carries its statistic, p-value, Holm-adjusted p-value, effect and minimum detectable
effect as ``<properties>``, and the suite carries both endpoints, the budget and the seed.
"""

from __future__ import annotations

import math
from pathlib import Path

from parity._junit import JUnitCase, Scalar, write_junit
from parity._version import __version__
from parity.compare._runner import REPORT_SCHEMA_VERSION, ComparisonReport, Outcome

__all__ = ["junit_cases", "write_junit_report"]

_CLASS = "parity.compare"


def _num(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _case(outcome: Outcome, alpha: float) -> JUnitCase:
    r = outcome.result
    properties: dict[str, Scalar] = {
        "statistic": _num(r.statistic),
        "pvalue": _num(r.pvalue),
        "adjusted_pvalue": _num(outcome.adjusted_pvalue),
        "alpha": alpha,
        "effect": _num(r.effect),
        "min_detectable_effect": _num(r.min_detectable_effect),
        "method": r.method,
        "n": r.n,
    }
    summary = (
        f"statistic {r.statistic:.4g}, p {r.pvalue:.3g}, Holm-adjusted p {outcome.adjusted_pvalue:.3g}, "
        f"effect {r.effect:.4g} (minimum detectable {r.min_detectable_effect:.4g}), n {r.n}, {r.method}"
    )
    if not outcome.rejected:
        return JUnitCase(outcome.name, _CLASS, properties=properties, output=f"same at alpha {alpha:g}: {summary}")
    message = f"the candidate differs: Holm-adjusted p {outcome.adjusted_pvalue:.3g} < alpha {alpha:g}"
    return JUnitCase(outcome.name, _CLASS, failure=message, failure_text=summary, properties=properties)


def junit_cases(report: ComparisonReport) -> list[JUnitCase]:
    """One case per test run (failed when rejected) and one skipped case per test the endpoints did not allow."""
    cases = [_case(t, report.alpha) for t in report.tests]
    cases += [JUnitCase(name, _CLASS, skipped=reason) for name, reason in report.skipped]
    return cases


def write_junit_report(report: ComparisonReport, path: str | Path) -> Path:
    """Write the report as JUnit XML to ``path``; returns the path."""
    properties: dict[str, Scalar] = {
        "equivalent": report.equivalent,
        "alpha": report.alpha,
        "correction": report.correction,
        "reference_url": report.reference.url,
        "reference_model": report.reference.model,
        "candidate_url": report.candidate.url,
        "candidate_model": report.candidate.model,
        "budget_used": report.budget_used,
        "requests": report.requests,
        "retries": report.retries,
        "seed": report.seed,
        "schema_version": REPORT_SCHEMA_VERSION,
        "parity_version": __version__,
    }
    return write_junit(path, "parity compare", junit_cases(report), time_s=report.elapsed_s, properties=properties)
