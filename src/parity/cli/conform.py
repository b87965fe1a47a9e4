"""``parity conform TARGET``: run the sampler conformance kit on an implementation.

Exit status 0 when conformant, 1 when not, 2 on a usage error (one line, no traceback).
"""

from __future__ import annotations

import json
import os
import sys
import time

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from parity._exceptions import ParityError
from parity._junit import write_junit_error


@click.command(name="conform")
@click.argument("target")
@click.option("--kind", type=click.Choice(["filter", "sampler"]), default=None, help="Protocol (default: filter).")
@click.option(
    "--framework", type=click.Choice(["numpy", "torch"]), default=None, help="Arrays or tensors (default: numpy)."
)
@click.option(
    "--order",
    default="default",
    show_default=True,
    help="The implementation's filter order after temperature: 'default' (top_k,top_p,min_p), 'vllm' "
    "(min_p,top_k,top_p), 'llamacpp' (top_k,top_p,min_p,temperature: temperature last) or a comma-separated "
    "permutation (with 'temperature' to place it).",
)
@click.option("--json", "as_json", is_flag=True, help='Print {"conformant": bool, "checks": [...]} as JSON.')
@click.option("--only", multiple=True, metavar="CHECK", help="Run only this check (repeatable).")
@click.option(
    "--scale",
    type=float,
    default=1.0,
    show_default=True,
    help="Size of the statistical checks; 1.0 is the full-strength kit.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every generated case.")
@click.option(
    "--junit-xml",
    "junit_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write JUnit XML: one test case per check (a failure holds the shrunk counterexample).",
)
def command(
    target: str,
    kind: str | None,
    framework: str | None,
    order: str,
    as_json: bool,
    only: tuple[str, ...],
    scale: float,
    seed: int,
    junit_path: str | None,
) -> None:
    """Check a sampler implementation (MODULE:CALLABLE or builtin:NAME) against the exact reference."""
    from parity.conformance import check_sampler, write_junit_report
    from parity.sampling import parse_order

    if os.getcwd() not in sys.path:  # MODULE:CALLABLE may name a module in the working directory, as uvicorn's does
        sys.path.insert(0, os.getcwd())
    wanted = [name if name.startswith("check_") else f"check_{name}" for name in only] or None
    console = Console(stderr=True)
    started = time.monotonic()
    try:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=as_json or not console.is_terminal,
        ) as bar:
            tasks: dict[str, TaskID] = {}

            def progress(name: str, done: int, total: int) -> None:
                if name not in tasks:
                    tasks[name] = bar.add_task(name, total=total)
                bar.update(tasks[name], completed=done, total=total)

            report = check_sampler(
                target,
                kind=kind,  # type: ignore[arg-type]
                framework=framework,  # type: ignore[arg-type]
                order=parse_order(order),
                scale=scale,
                seed=seed,
                only=wanted,
                progress=progress,
            )
        if junit_path:
            write_junit_report(report, junit_path, time_s=time.monotonic() - started, scale=scale, seed=seed)
    except ParityError as err:
        click.echo(f"parity: error: {err}", err=True)
        if junit_path:  # the pipeline's test report shows the error instead of missing
            write_junit_error(junit_path, "parity conform", f"parity.conform.{target}", str(err))
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(report.render())
    sys.exit(0 if report.conformant else 1)
