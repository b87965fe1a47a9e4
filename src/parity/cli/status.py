"""``parity status``: the open alerts and the changes they are attributed to.

Reads a DuckDB store file (``--store``, opened read-only) or a running proxy (``--proxy URL``: its
``GET /parity/alerts``, the way to read a store a proxy is writing, since DuckDB allows one writer process; a
proxy listening beyond loopback asks for its token: ``--proxy-token`` or ``PARITY_PROXY_TOKEN``).
``--json`` prints ``{"alerts": [alert.to_dict(), ...]}``; ``--all`` includes superseded and closed alerts.
"""

from __future__ import annotations

import json
from datetime import timedelta

import click
from rich.console import Console
from rich.table import Table

from parity.cli._read_source import DEFAULT_STORE, open_read_source
from parity.monitor._records import Alert

__all__ = ["alerts_table", "command", "load_alerts"]


def load_alerts(
    *, store: str | None = None, proxy: str | None = None, open_only: bool = True, proxy_token: str | None = None
) -> list[Alert]:
    """Alerts from a store file or a proxy URL (exactly one of them), newest first."""
    source = open_read_source(store=store, proxy=proxy, proxy_token=proxy_token)
    try:
        alerts = source.alerts(open_only=open_only)
    finally:
        source.close()
    return sorted(alerts, key=lambda a: a.detected_at, reverse=True)


def alerts_table(alerts: list[Alert]) -> Table:
    """A rich table: one row per alert with its most likely change."""
    table = Table(title=f"parity: {len(alerts)} alert(s)", show_lines=True)
    for name in ("alert", "signal", "segment", "started / detected", "effect", "requests", "likely change"):
        table.add_column(name, overflow="fold")
    for a in alerts:
        seg = "\n".join(f"{k}={v}" for k, v in a.segment.items()) or "all traffic"
        if a.attributed_changes:
            top = a.attributed_changes[0]
            cause = f"[bold]{top.change_id}[/bold] ({top.score:.2f})\n{top.evidence}"
            if len(a.attributed_changes) > 1:
                cause += "\nthen " + ", ".join(c.change_id for c in a.attributed_changes[1:])
        else:
            cause = "no candidate change in the log"
        status = "" if a.status == "open" else f" [{a.status}]"
        started = f"{a.started_at:%Y-%m-%d %H:%M:%S}"
        if a.latest_start is not None and a.latest_start - a.started_at >= timedelta(minutes=1):
            started += f"\n(or as late as {a.latest_start:%Y-%m-%d %H:%M})"
        table.add_row(
            a.alert_id + status,
            a.signal,
            seg,
            f"{started}\n{a.detected_at:%Y-%m-%d %H:%M:%S}",
            f"{a.baseline:.4g} -> {a.current:.4g}\n({a.effect:+.4g})",
            str(a.n_after),
            cause,
        )
    return table


@click.command(name="status")
@click.option("--store", "store_path", default=None, help=f"DuckDB store file (default {DEFAULT_STORE}).")
@click.option("--proxy", "proxy_url", default=None, help="URL of a running `parity proxy` to read alerts from.")
@click.option("--proxy-token", envvar="PARITY_PROXY_TOKEN", default=None,
              help="The proxy's token (needed when it listens beyond 127.0.0.1).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help='Print {"alerts": [...]} as JSON.')
@click.option("--all", "show_all", is_flag=True, help="Include superseded and closed alerts.")
def command(
    store_path: str | None, proxy_url: str | None, proxy_token: str | None, as_json: bool, show_all: bool
) -> None:
    """Show open alerts and the changes they are attributed to."""
    alerts = load_alerts(store=store_path, proxy=proxy_url, open_only=not show_all, proxy_token=proxy_token)
    if as_json:
        click.echo(json.dumps({"alerts": [a.to_dict() for a in alerts]}, indent=2))
        return
    console = Console()
    if not alerts:
        console.print("parity: no open alerts")
        return
    console.print(alerts_table(alerts))
