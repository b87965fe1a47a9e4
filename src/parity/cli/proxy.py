"""``parity proxy``: the monitoring reverse proxy in front of an OpenAI-compatible server."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import click

from parity._body_limit import DEFAULT_MAX_BODY_BYTES
from parity._exceptions import InvalidInputError, ParityError
from parity._optional import import_optional
from parity._token import resolve_token
from parity.cli._options import long_context_option
from parity.monitor._records import Change

#: The GIL switch interval while the proxy serves (Python's default is 5 ms). The worker thread scores records
#: (detectors: milliseconds of CPU each) beside the event loop; when a response arrives the loop waits for the
#: worker to give up the GIL, up to the whole interval, and that wait lands on the request path. 0.5 ms bounds it
#: at a small cost to the worker's throughput.
SWITCH_INTERVAL_S = 0.0005


class _Stopped(Exception):
    """SIGTERM or SIGINT arrived, and uvicorn has shut down gracefully (the worker flushed) before passing it on."""


def _stopped(signum: int, frame: Any) -> None:
    raise _Stopped(signum)


def _run_until_signalled(server: Any) -> None:
    """Run uvicorn; a SIGTERM/SIGINT ends it gracefully and returns here, so the caller closes the store and the
    process exits 0. (uvicorn re-raises the signal it caught after its shutdown; with the default handlers that
    killed the process before the store was closed, or printed "Aborted!" for SIGINT.)"""
    previous = {s: signal.signal(s, _stopped) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    except _Stopped:
        pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``:PORT`` for 127.0.0.1) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInputError("--listen", "must be HOST:PORT with a port in 1..65535", value)
    return host or "127.0.0.1", int(port)


def parse_labels(values: Sequence[str]) -> dict[str, str]:
    """``k=v`` pairs -> dict; keys are record provenance fields (model, pool, platform, region, ...)."""
    from parity.monitor.intake.scoring import LABEL_FIELDS

    out: dict[str, str] = {}
    for item in values:
        key, sep, val = item.partition("=")
        if not sep or not key or not val:
            raise InvalidInputError("--label", "must be KEY=VALUE", item)
        if key not in LABEL_FIELDS:
            raise InvalidInputError("--label", f"key must be one of {sorted(LABEL_FIELDS)}", key)
        out[key] = val
    return out


def changes_loader(source: str, token: str | None) -> Callable[[], list[Change]]:
    """A function re-reading the change log at ``source`` (URL or JSONL file)."""
    from parity.monitor.intake.changes import load_changes

    return partial(load_changes, source, token=token)


@click.command(name="proxy")
@click.option(
    "--upstream", required=True, help="Base URL of the OpenAI-compatible server (e.g. http://127.0.0.1:8000)."
)
@click.option("--listen", default="127.0.0.1:8080", show_default=True, help="HOST:PORT to listen on.")
@click.option("--store", "store_path", default="parity.duckdb", show_default=True,
              help="DuckDB store file, or a postgresql:// URL (a store several processes share).")  # fmt: skip
@click.option("--changes", default=None, help="Change log: URL (the lab's /admin/changes) or JSONL file; re-polled.")
@click.option("--changes-token", envvar="PARITY_CHANGES_TOKEN", default=None, help="Bearer token for --changes URL.")
@click.option("--webhook", default=None,
              help="POST each new alert as JSON to this URL: one message per incident (per fault).")  # fmt: skip
@click.option("--webhook-format", type=click.Choice(["parity", "alertmanager"]), default="parity", show_default=True,
              help="Webhook body: parity's alert JSON, or Alertmanager's /api/v2/alerts array "
                   "(--webhook http://ALERTMANAGER:9093/api/v2/alerts).")  # fmt: skip
@click.option("--webhook-every-alarm", is_flag=True,
              help="Send every alarm and update to --webhook, not only the one that opens each incident.")  # fmt: skip
@click.option("--label", "labels", multiple=True, help="Static provenance KEY=VALUE when responses lack x-parity-*.")
@click.option("--capture", type=click.Choice(["none", "flagged"]), default="none", show_default=True,
              help="Keep redacted text of flagged responses (default: no text at all).")  # fmt: skip
@click.option("--salt", envvar="PARITY_SESSION_SALT", default=None,
              help="Salt for session hashes (default: random per store, persisted in it).")  # fmt: skip
@click.option(
    "--spool",
    "spool_path",
    default=None,
    help="Disk spool for a full queue or a failing store [default: STORE.spool.jsonl; parity.spool.jsonl for a URL].",
)
@click.option("--queue-size", default=10_000, show_default=True, help="Exchanges queued before spooling to disk.")
@click.option("--wal-flush-ms", type=click.IntRange(min=1), default=100, show_default=True,
              help="Write-ahead log flush (write + fsync) interval: the most a hard kill can lose.")  # fmt: skip
@click.option("--checkpoint-interval", "checkpoint_s", type=click.IntRange(min=0), default=60, show_default=True,
              help="Seconds between snapshots of the monitor's state in the store (0: none); a restart restores "
                   "open alerts and baselines from it.")  # fmt: skip
@click.option("--no-detectors", is_flag=True, help="Store records without running detectors.")
@long_context_option
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where the monitor's statistics run: local (this process) or ray (one Ray actor per worker; "
                   "its state is not checkpointed).")  # fmt: skip
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Workers the monitor's streams are split across (by signal).")  # fmt: skip
@click.option("--address", default=None, help="Ray cluster to join (e.g. 10.0.0.5:6379); default: start a local one.")
@click.option("--token", envvar="PARITY_PROXY_TOKEN", default=None,
              help="Token required on /parity/*, /metrics, POST /v1/feedback and /dashboard (as Authorization: "
                   "Bearer); generated and printed when listening beyond 127.0.0.1.")  # fmt: skip
@click.option("--feedback-token", envvar="PARITY_FEEDBACK_TOKEN", default=None,
              help="A second token accepted on POST /v1/feedback only (for clients that send feedback and read "
                   "nothing).")  # fmt: skip
@click.option("--dashboard-token", envvar="PARITY_DASHBOARD_TOKEN", default=None,
              help="Token for /dashboard [default: the --token].")  # fmt: skip
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=DEFAULT_MAX_BODY_BYTES, show_default=True,
              help="Larger request bodies are refused with 413 before they are forwarded.")  # fmt: skip
def command(
    upstream: str,
    listen: str,
    store_path: str,
    changes: str | None,
    changes_token: str | None,
    webhook: str | None,
    webhook_format: str,
    webhook_every_alarm: bool,
    labels: tuple[str, ...],
    capture: str,
    salt: str | None,
    spool_path: str | None,
    queue_size: int,
    wal_flush_ms: int,
    checkpoint_s: int,
    no_detectors: bool,
    long_context_tokens: int,
    engine: str,
    workers: int,
    address: str | None,
    token: str | None,
    feedback_token: str | None,
    dashboard_token: str | None,
    max_body_bytes: int,
) -> None:
    """Forward /v1/* to UPSTREAM unchanged; score, store and monitor every exchange off the request path.

    Read-only views for `parity status --proxy URL` and the dashboard: /parity/alerts, /parity/records,
    /parity/records/summary; Prometheus metrics at /metrics; feedback at POST /v1/feedback; OpenTelemetry
    GenAI spans (OTLP/HTTP) at POST /v1/traces; the dashboard at /dashboard/. Listening beyond 127.0.0.1, all
    of these need the token (--token, else one is generated and printed); /v1/* is forwarded as it came (the
    upstream checks its own keys). On 127.0.0.1 no token is asked unless --token is given.
    """
    from rich.console import Console

    from parity.monitor.intake.proxy import ParityProxy, ProxyConfig
    from parity.monitor.intake.scoring import RecordBuilder, default_scorer
    from parity.monitor.runtime.worker import BufferingHook, MonitorHook, default_monitor, default_notifiers
    from parity.monitor.storage.store import (
        default_spool_path,
        default_wal_path,
        open_writable_store,
        redact_url,
        session_salt,
    )

    uvicorn = import_optional("uvicorn", extra="monitor")
    host, port = parse_listen(listen)
    token, generated = resolve_token(host, token)
    for name, value in (("--feedback-token", feedback_token), ("--dashboard-token", dashboard_token)):
        if value is not None and not value.strip():
            raise InvalidInputError(name, "must be a non-empty string", value)
    label_map = parse_labels(labels)
    config = ProxyConfig(
        upstream=upstream,
        labels=label_map,
        capture=capture,
        queue_size=queue_size,
        spool_path=spool_path or default_spool_path(store_path),
        wal_path=default_wal_path(store_path, port),
        wal_flush_s=wal_flush_ms / 1000.0,
        checkpoint_interval_s=float(checkpoint_s) if checkpoint_s else None,
        max_body_bytes=max_body_bytes,
    )
    console = Console(stderr=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # never log request lines (URLs can carry keys)
    hook: MonitorHook = default_monitor(
        engine=engine, workers=workers, address=address
    )  # first: a bad --engine/--address combination is refused before the store is created
    try:
        store = open_writable_store(store_path)
    except BaseException:
        if isinstance(hook, BufferingHook):
            hook.close()
        raise
    try:
        mounts, dashboard_note = _dashboard(store, host, port, dashboard_token or token)
        builder = RecordBuilder(
            salt=session_salt(store, salt),
            labels=label_map,
            scorer=None if no_detectors else default_scorer(),
            capture=capture,
            long_context_tokens=long_context_tokens,
        )
        proxy = ParityProxy(
            config,
            store,
            builder,
            hook=hook,
            notifiers=default_notifiers(
                webhook=webhook,
                webhook_format=webhook_format,
                generator_url=f"http://{host}:{port}/dashboard/",
                every_alarm=webhook_every_alarm,
            ),
            changes_source=changes_loader(changes, changes_token) if changes else None,
            mounts=mounts,
            token=token,
            feedback_token=feedback_token,
        )
        console.print(
            f"[bold]parity proxy[/] http://{host}:{port}/v1 -> {upstream}  store={redact_url(store_path)}"
            f"  capture={capture}"
            + (f"  monitor={workers} worker(s) on {engine}" if engine != "local" or workers > 1 else "")
            + f"  (pid {os.getpid()})"
        )
        if token is not None:
            console.print(
                f"token: {token}  (needed as Authorization: Bearer on /parity/*, /metrics, POST /v1/feedback"
                + ("; generated: pass --token or set PARITY_PROXY_TOKEN to choose one)" if generated else ")"),
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        console.print(dashboard_note)
        server = uvicorn.Server(uvicorn.Config(proxy.app, host=host, port=port, log_level="warning", access_log=False))
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        _run_until_signalled(server)
    except ParityError:
        raise
    except OSError as err:
        raise InvalidInputError("--listen", "must be a free address to bind", listen, detail=str(err)) from err
    finally:
        if isinstance(hook, BufferingHook):
            hook.close()  # the worker closed it on a clean stop; closing again is harmless
        store.close()


def _dashboard(store: Any, host: str, port: int, token: str | None) -> tuple[dict[str, Any], str]:
    """The dashboard mounted at ``/dashboard`` (token-protected beyond loopback), and a line saying where."""
    try:
        from parity.dashboard import create_app
    except ImportError:
        return {}, "dashboard: not installed (pip install 'parity[dashboard]')"
    required, generated = resolve_token(host, token)
    app = create_app(store, token=required)
    url = f"http://{host}:{port}/dashboard/" + (f"?token={required}" if required else "")
    return {"/dashboard": app}, f"dashboard: {url}" + (" (token generated)" if generated else "")
