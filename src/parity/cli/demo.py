"""``parity demo``: replay the August-September 2025 incident on the lab fleet, then show what parity found.

Prints one line per simulated day while it runs, a summary table at the end (each fault: when parity alerted, the
requests since onset, the segment, the change it blamed, and the postmortem's own dates; then every false alert),
and keeps the dashboard up on 127.0.0.1 until Ctrl-C. ``--json FILE`` writes the summary and exits when the replay
ends (for scripts and CI). Exit status: 0 when every fault was caught and attributed with no false alert, 1
otherwise, 2 on a usage or start-up error.
"""

from __future__ import annotations

import json
import signal
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

from parity._exceptions import InvalidInputError

if TYPE_CHECKING:
    from parity.demo import DemoSummary

__all__ = ["command"]


def _parse_days(text: str | None) -> list[date] | None:
    """``08-01..08-10,08-25`` -> dates of 2025 (the incident's year)."""
    if not text:
        return None
    from datetime import timedelta

    out: list[date] = []
    try:
        for part in text.split(","):
            first, _, last = part.strip().partition("..")
            a = date.fromisoformat(f"2025-{first.strip()}")
            b = date.fromisoformat(f"2025-{last.strip()}") if last else a
            out.extend(a + timedelta(days=i) for i in range((b - a).days + 1))
    except ValueError as err:
        raise InvalidInputError("--days", "must look like 08-01..08-10,08-25", text) from err
    return out


@click.command(name="demo")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the summary as JSON to FILE and exit when the replay ends.")  # fmt: skip
@click.option("--store", "store_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("runs/demo/parity.duckdb"), show_default=True,
              help="Store of the replay (recreated).")  # fmt: skip
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port of the proxy and dashboard on 127.0.0.1 (0: any free one).")  # fmt: skip
@click.option("--requests-per-day", type=click.IntRange(min=10), default=100, show_default=True,
              help="Requests per simulated day from the first fault to the last rollback (08-05..09-04).")  # fmt: skip
@click.option("--quiet-requests-per-day", type=click.IntRange(min=0), default=5, show_default=True,
              help="Requests per simulated day before 08-05 and after 09-04 (0: as --requests-per-day).")  # fmt: skip
@click.option("--days", default=None,
              help="Replay only these days of 2025, e.g. 08-01..08-08,08-24..09-05. The changes of the days left out "
                   "are left out too, except one that a replayed rollback or fix undoes.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--lab-threads", type=click.IntRange(1, 64), default=2, show_default=True,
              help="torch threads of the lab fleet (2 on an idle 2-core machine: 691 s against about 960 s with 1; "
                   "1 may be faster on a loaded one).")  # fmt: skip
@click.option("--max-tokens", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Answer tokens per request (sized, with --requests-per-day, for SmolLM2 on 2 cores).")  # fmt: skip
@click.option("--weights", default="smollm2-135m", show_default=True,
              help="Weights of every lab model: smollm2-135m (the default), parity-lab-9m (the lab's "
                   "own small model, about ten times faster) or a weights directory.")  # fmt: skip
def command(
    json_path: Path | None,
    store_path: Path,
    port: int,
    requests_per_day: int,
    quiet_requests_per_day: int,
    days: str | None,
    seed: int,
    lab_threads: int,
    max_tokens: int,
    weights: str,
) -> None:
    """Replay the August-September 2025 incident on the lab fleet through the monitor, then summarise."""
    from parity.demo import DayReport, IncidentReplay, ReplayConfig

    console = Console(stderr=True)
    out = Console() if Console().is_terminal else Console(width=200)  # tables unwrapped in logs and CI
    config = ReplayConfig(
        store_path=store_path,
        requests_per_day=requests_per_day,
        quiet_requests_per_day=quiet_requests_per_day or None,
        days=_parse_days(days),
        seed=seed,
        port=port,
        lab_threads=lab_threads,
        weights=weights,
        max_tokens=max_tokens,
    )

    def ready(url: str) -> None:
        console.print(f"[bold]parity demo[/] proxy {url}/v1, dashboard {url}/dashboard/, store {store_path}")

    def day(report: DayReport) -> None:
        alerts = "; ".join(
            f"[bold red]ALERT[/] {a.signal} on {_segment(a.segment)} -> "
            f"{a.attributed_changes[0].change_id if a.attributed_changes else 'no change'}"
            + (" [worsening]" if a.worsens else "")
            for a in report.new_alerts
            if a.status == "open"
        )
        changes = f" [cyan]changes: {', '.join(report.changes)}[/]" if report.changes else ""
        console.print(
            f"{report.day:%m-%d} day {report.index + 1:>2}/{report.n_days}: {report.requests:>4} requests "
            f"({report.requests / max(report.wall_seconds, 1e-9):4.1f}/s, {report.total_requests:>5} total)"
            f"{changes}{' ' + alerts if alerts else ''}"
        )

    console.print(
        f"[bold]parity demo[/]: starting the lab fleet (incident.toml, weights {weights}) and the monitoring proxy ..."
    )
    replay = IncidentReplay(config, on_day=day, on_ready=ready)
    # SIGTERM (a CI job's timeout, `kill`) unwinds like Ctrl-C, so the lab fleet's process is stopped with the proxy
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        summary = replay.run()
        out.print(_table(summary))
        if summary.false_alerts:
            out.print(_false_table(summary))
        verdict = (
            "every fault caught and attributed, no false alert."
            if summary.all_caught_and_attributed
            else "[bold red]not every fault was caught and attributed, or there were false alerts.[/]"
        )
        console.print(f"{summary.requests} requests replayed in {summary.wall_seconds:.0f} s; {verdict}")
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
            console.print(f"summary written to {json_path}")
        else:
            console.print(f"dashboard: [bold]{replay.url}/dashboard/[/]  (Ctrl-C to stop)")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                console.print("stopping")
    finally:
        replay.close()
        signal.signal(signal.SIGTERM, previous)
    raise SystemExit(0 if summary.all_caught_and_attributed else 1)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _segment(segment: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in segment.items()) or "all traffic"


def _table(summary: DemoSummary) -> Table:
    table = Table(title="parity demo: the incident, replayed", show_lines=True)
    for name in ("fault", "onset", "parity alerted", "requests after onset", "segment", "blamed change", "postmortem"):
        table.add_column(name, overflow="fold")
    for f in summary.faults:
        if f.alerted_at is None:
            table.add_row(f.title, f"{f.onset:%m-%d %H:%M}", "[red]not caught[/]", "-", "-", "-", f.postmortem)
            continue
        verdict = "[green]right[/]" if f.attribution_correct else "[red]wrong[/]"
        table.add_row(
            f.title,
            f"{f.onset:%m-%d %H:%M}",
            f"{f.alerted_at:%m-%d %H:%M}\n({f.signal})\n{f.alerts} alert(s) notified, {f.incidents} incident(s), "
            f"{f.alarms} alarm(s)" + (f"\nalso: {', '.join(f.signals[1:])}" if len(f.signals) > 1 else ""),
            f"{f.requests_after_onset} ({f.segment_requests_after_onset} in the fault's segment)",
            _segment(f.segment or {}),
            f"{f.attributed_change} ({verdict})",
            f.postmortem,
        )
    return table


def _false_table(summary: DemoSummary) -> Table:
    table = Table(title="false alerts (about none of the scripted faults)")
    for name in ("alert", "signal", "segment", "detected", "blamed change"):
        table.add_column(name)
    for a in summary.false_alerts:
        table.add_row(
            f"{a.alert_id} [{a.status}]", a.signal, _segment(a.segment), f"{a.detected_at:%m-%d %H:%M}",
            a.attributed_change or "-",
        )  # fmt: skip
    return table
