"""``parity status``: the monitor's health, the open alerts and the changes they are attributed to.

Reads a DuckDB store file (``--store``, opened read-only), a PostgreSQL store (``--store postgresql://...``, read
while proxies and monitors write it) or a running proxy (``--proxy URL``: its
``GET /parity/alerts``, the way to read a store a proxy is writing, since DuckDB allows one writer process; a
proxy listening beyond loopback asks for its token: ``--proxy-token`` or ``PARITY_PROXY_TOKEN``).
``--json`` prints ``{"health": {...}, "incidents": [...], "alerts": [alert.to_dict(), ...]}``; ``--all`` includes
superseded and closed alerts.

Health: from a proxy, its ``/parity/health`` (``ok`` / ``degraded`` / ``failing``, reasons, and the records
pending, spooled and dropped); from a store file, what waits beside it: records in the spool
(``STORE.spool.jsonl``, a store that failed) and in the write-ahead log (``STORE.parity-wal.jsonl``, a run that
was killed), both stored on the next start. Dropped records are counted by the running process (``--proxy``,
``/metrics``, and the last line of ``parity ingest``).

Alarms sharing a cause (one fault) are grouped into incidents (``parity.monitor.detection.incidents``), and the
incident is the alert a person sees (the webhook sends one message per incident): the incidents table comes first,
one row per fault with a readable explanation of its strongest evidence, every segment and signal involved and how
many alarms back it, then the evidence: every alarm (one signal on one segment; a store's ``alerts``), each naming
the incident it belongs to. In ``--json``, ``incidents[]`` are the alerts (each with its ``evidence[]``) and
``alerts[]`` every alarm.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from parity.cli._read_source import DEFAULT_STORE, open_read_source
from parity.monitor._records import Alert
from parity.monitor.alerting.alerts import explain_alert
from parity.monitor.detection.incidents import Incident, group_incidents
from parity.monitor.runtime.wal import WriteAheadLog

__all__ = ["alerts_table", "command", "health_line", "incidents_table", "load_alerts", "load_health"]


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


def _count_unstored(wal_path: Path) -> int:
    """Entries a run left in its write-ahead log that the next start stores (done markers and torn lines aside)."""
    return len(WriteAheadLog(wal_path).replay()) if wal_path.is_file() else 0


def load_health(
    *, store: str | None = None, proxy: str | None = None, proxy_token: str | None = None
) -> dict[str, Any]:
    """The monitor's health (``{"status", "reasons", ...counts}``) from a running proxy or beside a store file."""
    if proxy is not None:
        import httpx

        url = proxy.rstrip("/") + "/parity/health"
        try:
            headers = {"Authorization": f"Bearer {proxy_token}"} if proxy_token else {}
            resp = httpx.get(url, timeout=5.0, headers=headers)
            data = resp.json()
        except (httpx.HTTPError, ValueError) as err:
            return {"status": "unknown", "reasons": [f"cannot read {url}: {type(err).__name__}"]}
        if not isinstance(data, dict) or "status" not in data:
            return {"status": "unknown", "reasons": [f"{url} answered {resp.status_code} without a health status"]}
        return data
    from parity.monitor.runtime.spool import Spool

    path = Path(store or DEFAULT_STORE)
    spool_file = path.with_name(path.name + ".spool.jsonl")
    spooled = Spool(spool_file).pending if spool_file.is_file() or spool_file.with_name(
        spool_file.name + ".draining").is_file() else 0  # fmt: skip
    wal = _count_unstored(path.with_name(path.name + ".parity-wal.jsonl"))
    reasons = []
    if spooled:
        reasons.append(f"{spooled} item(s) wait in {spool_file} (the store failed); stored on the next start")
    if wal:
        reasons.append(
            f"{wal} record(s) in {path}.parity-wal.jsonl (a run ended before storing them); stored on the next start"
        )
    return {"status": "degraded" if reasons else "ok", "reasons": reasons, "spool_pending": spooled, "wal": wal}


def health_line(health: dict[str, Any]) -> str:
    """One line (plus one per reason) for the terminal."""
    counts = ", ".join(f"{k.replace('_', ' ')} {health[k]}" for k in ("pending", "spool_pending", "dropped", "wal")
                       if k in health)  # fmt: skip
    lines = [f"monitor: {health['status']}" + (f" ({counts})" if counts else "")]
    lines += [f"  - {r}" for r in health.get("reasons", [])]
    return "\n".join(lines)


def alerts_table(alerts: list[Alert]) -> Table:
    """A rich table: one row per alarm (a stored alert: one signal on one segment) with its most likely change and,
    for an incident's later alarms, the incident it is evidence for."""
    table = Table(title=f"evidence: {len(alerts)} alarm(s), a signal on a segment each", show_lines=True)
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
        if not a.opens_incident:
            status += f"\nevidence for {a.incident}"
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


def incidents_table(incidents: list[Incident]) -> Table:
    """A rich table: one row per incident - the alert a person sees, one per fault - with its explanation, segments,
    signals and the number of alarms behind it."""
    table = Table(title=f"parity: {len(incidents)} incident(s), one alert per fault", show_lines=True)
    for name in ("incident", "what changed", "segments", "signals", "evidence", "detected", "likely change"):
        table.add_column(name, overflow="fold")
    for inc in incidents:
        top = inc.lead.attributed_changes[0].change_id if inc.lead.attributed_changes else "-"
        status = "" if inc.status == "open" else f" [{inc.status}]"
        table.add_row(
            inc.incident_id + status,
            explain_alert(inc.lead),
            "\n".join(inc.segments),
            "\n".join(inc.signals),
            f"{len(inc.alerts)} alarm(s)"
            + (f"\n({sum(a.status == 'open' for a in inc.alerts)} open)" if len(inc.alerts) > 1 else ""),
            f"{inc.detected_at:%Y-%m-%d %H:%M:%S}",
            top,
        )
    return table


@click.command(name="status")
@click.option(
    "--store", "store_path", default=None, help=f"DuckDB store file (default {DEFAULT_STORE}) or postgresql:// URL."
)
@click.option("--proxy", "proxy_url", default=None, help="URL of a running `parity proxy` to read alerts from.")
@click.option("--proxy-token", envvar="PARITY_PROXY_TOKEN", default=None,
              help="The proxy's token (needed when it listens beyond 127.0.0.1).")  # fmt: skip
@click.option(
    "--json", "as_json", is_flag=True, help='Print {"health": ..., "incidents": [...], "alerts": [...]} as JSON.'
)
@click.option("--all", "show_all", is_flag=True, help="Include superseded and closed alerts.")
def command(
    store_path: str | None, proxy_url: str | None, proxy_token: str | None, as_json: bool, show_all: bool
) -> None:
    """Show the monitor's health, open alerts and the changes they are attributed to."""
    alerts = load_alerts(store=store_path, proxy=proxy_url, open_only=not show_all, proxy_token=proxy_token)
    health = load_health(store=store_path, proxy=proxy_url, proxy_token=proxy_token)
    incidents = group_incidents(alerts)
    if as_json:
        payload = {
            "health": health,
            "incidents": [i.to_dict() for i in incidents],
            "alerts": [a.to_dict() for a in alerts],
        }
        click.echo(json.dumps(payload, indent=2))
        return
    console = Console()
    console.print(health_line(health), markup=False, highlight=False)
    if not alerts:
        console.print("parity: no open alerts")
        return
    console.print(incidents_table(incidents))
    console.print(alerts_table(alerts))
