"""``parity compare``: test whether two OpenAI-compatible deployments serve the same model.

Exit status, for use as a deploy gate: 0 when no test detects a difference at ``--alpha`` (Holm-corrected),
1 when the candidate differs, 2 on usage or connection errors (one line on stderr, never a traceback).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from parity._exceptions import InvalidInputError, ParityError
from parity._junit import write_junit_error
from parity.compare import (
    CompareConfig,
    compare_endpoints,
    load_prompts,
    plan_budget,
    render_table,
    write_html,
    write_junit_report,
)
from parity.stats.calibration import DEFAULT_TOLERANCE_RATE


def _json_object(argument: str, text: str | None) -> dict[str, Any] | None:
    """``text`` parsed as a JSON object (``None`` stays ``None``)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as err:
        raise InvalidInputError(argument, "must be a JSON object", text, detail=str(err)) from err
    if not isinstance(value, dict):
        raise InvalidInputError(argument, "must be a JSON object", text)
    return value


@click.command(name="compare")
@click.option("--reference", required=True, metavar="URL", help="Base URL of the reference deployment.")
@click.option("--candidate", required=True, metavar="URL", help="Base URL of the candidate deployment.")
@click.option("--model", default=None, help="Model name on both endpoints (default: the first each serves).")
@click.option("--candidate-model", default=None, help="Model name on the candidate, when it differs.")
@click.option(
    "--extra-body",
    default=None,
    metavar="JSON",
    help="Fields merged into every completions request to both endpoints, e.g. '{\"top_k\": 0}'.",
)
@click.option(
    "--candidate-extra-body",
    default=None,
    metavar="JSON",
    help="Fields for the candidate only, when they differ (llama-cpp-python: "
    '\'{"top_k": 0, "min_p": 0, "repeat_penalty": 1}\' switches off its sampler defaults).',
)
@click.option("--prompts", "prompts_file", type=click.Path(dir_okay=False), default=None, help="Prompt file.")
@click.option("--budget", type=int, default=300, show_default=True, help="Completions sampled per endpoint.")
@click.option("--alpha", type=float, default=0.05, show_default=True, help="Family-wise significance level.")
@click.option("--max-tokens", type=int, default=32, show_default=True, help="Tokens per sampled completion.")
@click.option("--temperature", type=float, default=1.0, show_default=True, help="Sampling temperature (> 0).")
@click.option("--top-p", type=float, default=0.9, show_default=True, help="Nucleus sampling threshold sent.")
@click.option("--top-k", type=int, default=20, show_default=True, help="Top-k sent (0: off; <= 20 keeps PITs exact).")
@click.option("--min-p", type=float, default=0.0, show_default=True, help="Min-p sent (0: off).")
@click.option("--greedy-probes", type=int, default=32, show_default=True, help="Greedy requests per endpoint.")
@click.option(
    "--violation-tolerance",
    type=float,
    default=DEFAULT_TOLERANCE_RATE,
    show_default=True,
    help="Per-token rate at which the reference may itself violate its kept sets (numerical noise).",
)
@click.option("--contexts", type=int, default=24, show_default=True, help="Shared contexts teacher-forced.")
@click.option("--concurrency", type=int, default=8, show_default=True, help="Concurrent requests per endpoint.")
@click.option("--api-key", envvar="OPENAI_API_KEY", default=None, help="Bearer token (or $OPENAI_API_KEY).")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON on stdout.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None, help="Write an HTML report.")
@click.option(
    "--junit-xml",
    "junit_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write JUnit XML: one test case per statistical test (failed when the candidate differs).",
)
@click.option("--plan-only", is_flag=True, help="Print what the budget can detect, send nothing, exit 0.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for sampling and permutations.")
def command(
    reference: str,
    candidate: str,
    model: str | None,
    candidate_model: str | None,
    extra_body: str | None,
    candidate_extra_body: str | None,
    prompts_file: str | None,
    budget: int,
    alpha: float,
    max_tokens: int,
    temperature: float,
    top_p: float,
    top_k: int,
    min_p: float,
    greedy_probes: int,
    violation_tolerance: float,
    contexts: int,
    concurrency: int,
    api_key: str | None,
    as_json: bool,
    report_path: str | None,
    junit_path: str | None,
    plan_only: bool,
    seed: int,
) -> None:
    """Test whether two deployments serve the same model (exit 0 same, 1 differs, 2 error)."""
    console = Console(stderr=True)
    try:
        config = CompareConfig(
            budget=budget,
            alpha=alpha,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            min_p=min_p,
            greedy_probes=greedy_probes,
            violation_tolerance=violation_tolerance,
            seed=seed,
            contexts=contexts,
            max_concurrency=concurrency,
        )
        prompts = load_prompts(prompts_file)
        reference_extra = _json_object("extra_body", extra_body)
        candidate_extra = _json_object("candidate_extra_body", candidate_extra_body) or reference_extra
        if plan_only:
            click.echo(plan_budget(budget, len(prompts), alpha=alpha, config=config).describe())
            sys.exit(0)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            tasks: dict[str, TaskID] = {}

            def progress(label: str, done: int, total: int) -> None:
                if label not in tasks:
                    tasks[label] = bar.add_task(label, total=total)
                bar.update(tasks[label], completed=done, total=total)

            report = compare_endpoints(
                reference,
                candidate,
                prompts=prompts,
                config=config,
                reference_model=model,
                candidate_model=candidate_model or model,
                reference_extra_body=reference_extra,
                candidate_extra_body=candidate_extra,
                api_key=api_key,
                progress=progress,
                on_plan=lambda plan: console.print(plan.describe()),
            )
        if report_path:
            write_html(report, Path(report_path))
        if junit_path:
            write_junit_report(report, Path(junit_path))
    except ParityError as err:
        click.echo(f"parity: error: {err}", err=True)
        if junit_path:  # the pipeline's test report shows the error instead of missing
            write_junit_error(junit_path, "parity compare", "parity.compare", str(err))
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("parity: interrupted", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        render_table(report, Console())
    if report_path:
        console.print(f"report written to {report_path}")
    sys.exit(0 if report.equivalent else 1)
