"""Deployment equivalence: do two OpenAI-compatible endpoints serve the same model?

Talks to both endpoints over HTTP only, samples completions on a shared prompt set, runs the two-sample tests of
:mod:`parity.stats.twosample` that the endpoints' capabilities allow, and combines them with Holm's correction.

>>> plan = plan_budget(300, len(DEFAULT_PROMPTS))
>>> plan.prompts, plan.per_prompt
(32, 9)
"""

from parity.compare._client import Capabilities, Completion, EndpointClient, ScoredText
from parity.compare._junit import junit_cases, write_junit_report
from parity.compare._prompts import DEFAULT_PROMPTS, load_prompts
from parity.compare._report import render_table, write_html
from parity.compare._runner import (
    REPORT_SCHEMA_VERSION,
    BudgetPlan,
    CompareConfig,
    ComparisonReport,
    Outcome,
    compare_endpoints,
    plan_budget,
)

__all__ = [
    "DEFAULT_PROMPTS",
    "REPORT_SCHEMA_VERSION",
    "BudgetPlan",
    "Capabilities",
    "CompareConfig",
    "ComparisonReport",
    "Completion",
    "EndpointClient",
    "Outcome",
    "ScoredText",
    "compare_endpoints",
    "junit_cases",
    "load_prompts",
    "plan_budget",
    "render_table",
    "write_html",
    "write_junit_report",
]
