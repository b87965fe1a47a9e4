"""``parity receive``: a standalone OTLP/HTTP trace receiver that records GenAI spans and monitors them.

For deployments where traffic is not proxied but traced: point a serving engine's OTLP exporter (vLLM
``--otlp-traces-endpoint http://HOST:4318/v1/traces``) or a collector's ``otlphttp`` exporter at it. Spans with
``gen_ai.*`` attributes become records exactly as ``parity ingest --format otlp`` makes them, stored and run
through the monitor (alerts to the log, the store and ``--webhook``). ``parity proxy`` serves the same
``POST /v1/traces`` beside the proxied routes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import click

from parity._exceptions import InvalidInputError, ParityError
from parity._optional import import_optional
from parity.cli._options import long_context_option
from parity.cli.proxy import parse_labels, parse_listen


def receiver_app(store: Any, builder: Any, *, hook: Any = None, notifiers: Any = ()) -> tuple[Any, Any]:
    """(ASGI app, worker): ``POST /v1/traces``, ``GET /metrics`` and ``GET /parity/health`` over a monitor worker
    that stores ``builder``'s records in ``store`` and hands them to ``hook``; the app's lifespan runs the worker."""
    from parity.monitor.intake.otlp_receiver import OTLPReceiver
    from parity.monitor.runtime.metrics import ProxyMetrics
    from parity.monitor.runtime.worker import MonitorWorker

    starlette = import_optional("starlette.applications", extra="monitor")
    routing = import_optional("starlette.routing", extra="monitor")
    responses = import_optional("starlette.responses", extra="monitor")
    metrics = ProxyMetrics()
    worker = MonitorWorker(store, builder, metrics=metrics, hook=hook, notifiers=notifiers)
    receiver = OTLPReceiver(builder, worker, registry=metrics.registry)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        worker.start()
        try:
            yield
        finally:
            worker.stop()

    async def metrics_route(request: Any) -> Any:
        return responses.Response(metrics.render(), media_type=metrics.content_type)

    async def health(request: Any) -> Any:
        health = worker.health()
        return responses.JSONResponse(health.to_dict(), status_code=200 if health.status != "failing" else 503)

    routes = [
        routing.Route("/v1/traces", receiver.endpoint, methods=["POST"]),
        routing.Route("/metrics", metrics_route, methods=["GET"]),
        routing.Route("/parity/health", health, methods=["GET"]),
    ]
    return starlette.Starlette(routes=routes, lifespan=lifespan), worker


@click.command(name="receive")
@click.option("--listen", default="127.0.0.1:4318", show_default=True, help="HOST:PORT to listen on (OTLP/HTTP).")
@click.option("--store", "store_path", default="parity.duckdb", show_default=True, help="DuckDB store file.")
@click.option("--webhook", default=None,
              help="POST each new alert to this URL: one message per incident (per fault).")  # fmt: skip
@click.option("--webhook-format", type=click.Choice(["parity", "alertmanager"]), default="parity", show_default=True,
              help="Webhook body: parity's alert JSON, or Alertmanager's /api/v2/alerts array.")  # fmt: skip
@click.option("--webhook-every-alarm", is_flag=True,
              help="Send every alarm and update to --webhook, not only the one that opens each incident.")  # fmt: skip
@click.option("--label", "labels", multiple=True, help="Static provenance KEY=VALUE for spans without parity.*.")
@click.option("--salt", envvar="PARITY_SESSION_SALT", default=None,
              help="Salt for session hashes (default: random per store, persisted in it).")  # fmt: skip
@click.option("--no-detectors", is_flag=True, help="Store records without running detectors.")
@long_context_option
def command(
    listen: str,
    store_path: str,
    webhook: str | None,
    webhook_format: str,
    webhook_every_alarm: bool,
    labels: tuple[str, ...],
    salt: str | None,
    no_detectors: bool,
    long_context_tokens: int,
) -> None:
    """Receive OpenTelemetry traces at POST /v1/traces (protobuf or JSON, gzip or not) and monitor GenAI spans."""
    from rich.console import Console

    from parity.monitor.intake.scoring import RecordBuilder, default_scorer
    from parity.monitor.runtime.worker import default_monitor, default_notifiers
    from parity.monitor.storage.store import DuckDBStore, session_salt

    uvicorn = import_optional("uvicorn", extra="monitor")
    host, port = parse_listen(listen)
    label_map = parse_labels(labels)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    store = DuckDBStore(store_path)
    try:
        builder = RecordBuilder(
            salt=session_salt(store, salt),
            labels=label_map,
            scorer=None if no_detectors else default_scorer(),
            source="otlp",
            long_context_tokens=long_context_tokens,
        )
        hook = default_monitor()
        notifiers = default_notifiers(webhook=webhook, webhook_format=webhook_format, every_alarm=webhook_every_alarm)
        app, _ = receiver_app(store, builder, hook=hook, notifiers=notifiers)
        Console(stderr=True).print(
            f"[bold]parity receive[/] http://{host}:{port}/v1/traces  store={store_path}  (pid {os.getpid()})"
        )
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
        server.run()
    except ParityError:
        raise
    except OSError as err:
        raise InvalidInputError("--listen", "must be a free address to bind", listen, detail=str(err)) from err
    finally:
        store.close()
