"""``parity monitor``: run the segment monitor over request logs, in this process or on a Ray cluster.

SOURCE is one or more JSONL files (the lines ``parity ingest`` reads: exchanges, stored records, feedback), a
directory (its ``*.jsonl`` files in name order) or ``-`` for stdin. Records and alerts go to ``--store`` (a DuckDB
file, or a ``postgresql://`` URL, the store several monitors and proxies share). ``--engine ray --workers N``
splits the monitor's streams across N Ray actors by signal (``parity.monitor.detection.distributed``): the same alerts
as one process. ``--address`` joins an existing Ray cluster (``ray start --head`` on the head node); without it a
local one is started for the run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import click

from parity._exceptions import InvalidInputError
from parity.cli._options import long_context_option


def _sources(items: tuple[str, ...]) -> list[str]:
    """Files to read, in order: files as given, a directory's ``*.jsonl`` in name order, ``-`` for stdin."""
    out: list[str] = []
    for item in items:
        if item == "-":
            out.append(item)
        elif os.path.isdir(item):
            files = sorted(str(p) for p in Path(item).glob("*.jsonl"))
            if not files:
                raise InvalidInputError("SOURCE", "directory holds no *.jsonl file", item)
            out.extend(files)
        elif os.path.isfile(item):
            out.append(item)
        else:
            raise InvalidInputError("SOURCE", "must be a file, a directory of *.jsonl files, or -", item)
    if out.count("-") > 1:
        raise InvalidInputError("SOURCE", "may name stdin (-) once")
    return out


@click.command(name="monitor")
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@click.option("--store", "store_path", default="parity.duckdb", show_default=True,
              help="DuckDB store file, or a postgresql:// URL (a store several processes share).")  # fmt: skip
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: in this process; ray: one Ray actor per worker.")  # fmt: skip
@click.option("--address", default=None, help="Ray cluster to join (e.g. 10.0.0.5:6379); default: start a local one.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Workers the monitor's streams are split across (by signal).")  # fmt: skip
@click.option("--changes", default=None, help="Change log (JSONL file or URL of the lab's /admin/changes).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "otlp"]), default="jsonl", show_default=True)
@click.option("--label", "labels", multiple=True, help="Static provenance KEY=VALUE for lines without it.")
@click.option("--salt", envvar="PARITY_SESSION_SALT", default=None, help="Salt for session hashes.")
@click.option("--no-detectors", is_flag=True, help="Monitor only what the lines carry (stored records' flags).")
@long_context_option
def command(
    sources: tuple[str, ...],
    store_path: str,
    engine: str,
    address: str | None,
    workers: int,
    changes: str | None,
    fmt: str,
    labels: tuple[str, ...],
    salt: str | None,
    no_detectors: bool,
    long_context_tokens: int,
) -> None:
    """Run the segment monitor over SOURCE... (JSONL files, a directory, or - for stdin); store records and alerts.

    Malformed lines are reported with their line numbers and copied to FILE.rejects; the rest is monitored.
    """
    from rich.console import Console

    from parity.cli.proxy import parse_labels
    from parity.monitor.alerting.alerts import LogNotifier
    from parity.monitor.detection.distributed import ShardedMonitor
    from parity.monitor.detection.pipeline import MonitorConfig, SegmentMonitor
    from parity.monitor.intake.changes import load_changes
    from parity.monitor.intake.ingest import ingest_file
    from parity.monitor.intake.scoring import default_scorer
    from parity.monitor.storage.store import open_writable_store, redact_url, session_salt

    if address is not None and engine != "ray":
        raise InvalidInputError("--address", "needs --engine ray", address)
    files = _sources(sources)
    label_map = parse_labels(labels)
    console = Console(stderr=True)
    config = MonitorConfig()
    change_log = load_changes(changes) if changes else []
    started = time.perf_counter()
    hook: Any
    if engine == "local" and workers == 1:
        hook = SegmentMonitor(config=config, notifiers=[LogNotifier()])
    else:
        hook = ShardedMonitor(config=config, workers=workers, engine=engine, address=address, notifiers=[LogNotifier()])
    totals = {"lines": 0, "records": 0, "feedback": 0, "alerts": 0, "rejected": 0}
    try:
        with open_writable_store(store_path) as store:
            if change_log:
                store.write_changes(change_log)
                initial = hook.add_changes(change_log)
                if initial:
                    store.write_alerts(initial)
            scorer = None if no_detectors else default_scorer()
            run_salt = session_salt(store, salt)
            for source in files:
                result = ingest_file(source, store, fmt=fmt, salt=run_salt, scorer=scorer, labels=label_map, hook=hook,
                                     long_context_tokens=long_context_tokens)  # fmt: skip
                for line_no, message in result.errors:
                    console.print(f"{source}: line {line_no}: {message}", markup=False, highlight=False)
                for key in totals:
                    totals[key] += getattr(result, key)
            open_alerts = len([a for a in hook.alerts if a.status == "open"])
    finally:
        if isinstance(hook, ShardedMonitor):
            hook.close()
    seconds = time.perf_counter() - started
    rate = totals["records"] / seconds if seconds > 0 else 0.0
    where = f"{workers} worker(s) on {engine}" + (f" at {address}" if address else "")
    click.echo(
        f"monitored {totals['records']:,} records ({totals['feedback']} feedback) from {len(files)} source(s) with "
        f"{where} in {seconds:.1f} s ({rate:,.0f} records/s); {totals['alerts']} alert updates, {open_alerts} open; "
        f"rejected {totals['rejected']}; store {redact_url(store_path)}"
    )
