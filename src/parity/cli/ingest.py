"""``parity ingest``: JSONL request/response logs or OTLP JSON GenAI spans into the monitor's store.

Exit status: 0 every line ingested; 3 some lines rejected (the rest is stored); 1 nothing ingested although
lines were rejected; 4 stopped early by ``--max-rejects`` (what came before is stored); 2 a usage or input error
(no such file, a bad option).

>>> line_ranges([3, 4, 5, 9, 11, 12])
'3-5, 9, 11-12'
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import click

from parity._exceptions import InvalidInputError
from parity.cli._options import long_context_option

#: Exit statuses (see the module docstring).
EXIT_OK, EXIT_NOTHING_INGESTED, EXIT_SOME_REJECTED, EXIT_STOPPED = 0, 1, 3, 4

#: Rejected lines printed with their message on the terminal (all of them are in the reject file).
SHOWN_ERRORS = 20

#: Ranges of rejected line numbers printed on the terminal before "...".
SHOWN_RANGES = 50


def line_ranges(numbers: list[int], limit: int | None = None) -> str:
    """Sorted line numbers as compact ranges (``limit``: at most that many ranges, then ``...``)."""
    ranges: list[str] = []
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        ranges.append(str(numbers[i]) if i == j else f"{numbers[i]}-{numbers[j]}")
        i = j + 1
    if limit is not None and len(ranges) > limit:
        return ", ".join(ranges[:limit]) + f", ... ({len(ranges) - limit} more ranges)"
    return ", ".join(ranges)


@click.command(name="ingest")
@click.argument("source", metavar="FILE|-")
@click.option("--store", "store_path", default="parity.duckdb", show_default=True,
              help="DuckDB store file, or a postgresql:// URL (a store several processes share).")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(["jsonl", "otlp"]), default="jsonl", show_default=True)
@click.option("--rejects", "reject_path", default=None,
              help="Where rejected lines go, one JSON object each: {line, error, raw | raw_b64}, the line's bytes "
                   "verbatim [default: FILE.rejects].")  # fmt: skip
@click.option("--max-rejects", type=click.IntRange(min=0), default=None,
              help="Stop (exit 4) once more than N lines are rejected; what came before stays stored.")  # fmt: skip
@click.option("--label", "labels", multiple=True, help="Static provenance KEY=VALUE for lines without it.")
@click.option("--capture", type=click.Choice(["none", "flagged"]), default="none", show_default=True)
@click.option("--salt", envvar="PARITY_SESSION_SALT", default=None, help="Salt for session hashes.")
@click.option("--no-detectors", is_flag=True, help="Store records without running detectors.")
@click.option("--no-monitor", is_flag=True, help="Store records without running the segment monitor.")
@click.option("--follow", is_flag=True,
              help="Keep reading FILE as it grows, like tail -F (across rotations and truncations; FILE may not "
                   "exist yet), storing records as they come, until SIGINT/SIGTERM: the first stops at the file's "
                   "current end, a second at once; what was read is stored either way.")  # fmt: skip
@long_context_option
def command(
    source: str,
    store_path: str,
    fmt: str,
    reject_path: str | None,
    max_rejects: int | None,
    labels: tuple[str, ...],
    capture: str,
    salt: str | None,
    no_detectors: bool,
    no_monitor: bool,
    follow: bool,
    long_context_tokens: int,
) -> None:
    """Ingest FILE (or - for stdin) into the store: one exchange (or OTLP export) per line.

    A malformed line (not JSON, not UTF-8, nested over 128 levels, over 64 MiB, or not an exchange) is reported
    with its line number and kept verbatim in the reject file; the rest is ingested.

    With --follow, FILE is read as it grows until SIGINT/SIGTERM, which ends the run normally (the exit status
    then says how the lines went, as for a whole file).

    Exit status: 0 every line ingested; 3 some lines rejected; 1 nothing ingested but lines rejected; 4 stopped
    by --max-rejects; 2 a usage or input error; 130 interrupted (without --follow).
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from parity.cli.proxy import parse_labels
    from parity.monitor.intake.ingest import FollowControl, IngestResult, ingest_file
    from parity.monitor.intake.scoring import default_scorer
    from parity.monitor.runtime.spool import Spool
    from parity.monitor.runtime.worker import default_monitor, default_notifiers
    from parity.monitor.storage.store import default_spool_path, open_writable_store, redact_url, session_salt

    console = Console(stderr=True)
    control = FollowControl() if follow else None
    if follow and source == "-":
        raise InvalidInputError("FILE", "must be a file with --follow, not - (stdin is read as it comes anyway)")
    if source != "-" and not follow and not os.path.isfile(source):
        raise InvalidInputError("FILE", "must be an existing file or -", source)
    label_map = parse_labels(labels)
    total = os.path.getsize(source) if source != "-" and not follow else None
    if control is not None:
        # following ends on a signal: the first reads up to the file's current end, a second stops at once
        def stop_following(signum: int, frame: object) -> None:
            control.stop()

        signal.signal(signal.SIGTERM, stop_following)
        signal.signal(signal.SIGINT, stop_following)
    else:
        # SIGTERM stops like Ctrl-C, and Ctrl-C stops even when SIGINT was ignored by whoever started us (a
        # background job of a non-interactive shell inherits SIGINT ignored): what was read is stored, exit 130
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    result: IngestResult | None = None
    try:
        with open_writable_store(store_path) as store:
            scorer = None if no_detectors else default_scorer()
            hook = None if no_monitor else default_monitor()
            with Progress(
                TextColumn("[bold]ingest[/] {task.fields[lines]:,} lines"),
                BarColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=True,
                disable=not console.is_terminal,
            ) as progress:
                task = progress.add_task("ingest", total=total, lines=0)

                seen = [0]

                def on_line(n: int, nbytes: int) -> None:
                    seen[0] += nbytes
                    if n % 1000 == 0:
                        progress.update(task, completed=seen[0], lines=n)

                result = ingest_file(
                    source,
                    store,
                    fmt=fmt,
                    salt=session_salt(store, salt),
                    scorer=scorer,
                    reject_path=reject_path,
                    labels=label_map,
                    capture=capture,
                    hook=hook,
                    notifiers=default_notifiers(),
                    spool=Spool(default_spool_path(store_path)),
                    on_line=on_line,
                    max_rejects=max_rejects,
                    follow=control,
                    long_context_tokens=long_context_tokens,
                )
                # a stop signal from now on only marks the run interrupted: what was read is stored, the report follows

                def late_stop(signum: int, frame: object) -> None:
                    result.interrupted = True

                signal.signal(signal.SIGTERM, late_stop)
                signal.signal(signal.SIGINT, late_stop)
    except KeyboardInterrupt:  # a stop signal outside the reading: before it (opening the store) or just after
        if result is None:
            console.print(f"interrupted before reading {source}: nothing was read", markup=False, highlight=False)
            sys.exit(130)
        result.interrupted = True
    for line_no, message in result.errors[:SHOWN_ERRORS]:
        console.print(f"line {line_no}: {message}", markup=False, highlight=False, soft_wrap=True)
    if result.rejected:
        console.print(
            f"rejected lines ({result.rejected}): {line_ranges(result.rejected_lines, SHOWN_RANGES)}; every one, "
            f"with its message and bytes, in {result.reject_path}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if result.stopped_at is not None:
        console.print(
            f"stopped after line {result.stopped_at}: more than {max_rejects} lines rejected (--max-rejects)",
            markup=False,
            highlight=False,
        )
    summary: dict[str, Any] = {
        "lines": result.lines,
        "records": result.records,
        "feedback": result.feedback,
        "alerts": result.alerts,
        "rejected": result.rejected,
        "seconds": round(result.seconds, 3),
    }
    click.echo(
        f"ingested {summary['records']:,} records ({summary['feedback']} feedback, {summary['alerts']} alerts) from "
        f"{summary['lines']:,} lines in {summary['seconds']} s into {redact_url(store_path)}; "
        f"rejected {summary['rejected']}" + (f" -> {result.reject_path}" if result.reject_path else "")
    )
    if control is not None:
        console.print(
            f"stopped following {source} after line {result.lines:,} ({control.rotations} rotations, "
            f"{control.truncations} truncations seen)"
            + (f"; an unfinished last line ({control.unfinished_bytes} bytes, no newline yet) is left for the next "
               "run" if control.unfinished_bytes else ""),
            markup=False,
            highlight=False,
        )  # fmt: skip
    if result.spooled or result.dropped or result.spool_pending:
        console.print(
            f"store: {result.store_error or 'ok'}; {result.spooled} records spooled this run, {result.spool_pending} "
            f"waiting in {default_spool_path(store_path)} (drained into the store on the next run), "
            f"{result.dropped} dropped",
            markup=False,
            highlight=False,
        )
    if result.interrupted:
        console.print(f"interrupted after line {result.lines:,}: what was read is stored; run again to go on "
                      "(records already stored are skipped)", markup=False, highlight=False)  # fmt: skip
        sys.exit(130)
    if result.dropped:
        sys.exit(EXIT_NOTHING_INGESTED)
    if result.stopped_at is not None:
        sys.exit(EXIT_STOPPED)
    if result.rejected and result.records == 0 and result.feedback == 0:
        sys.exit(EXIT_NOTHING_INGESTED)
    if result.rejected:
        sys.exit(EXIT_SOME_REJECTED)
