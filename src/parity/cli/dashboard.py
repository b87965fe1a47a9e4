"""``parity dashboard``: serve the read-only dashboard over a store.

Reads a DuckDB store file (``--store``, opened read-only; default ``parity.duckdb``), a PostgreSQL store
(``--store postgresql://...``, read while others write it) or a running proxy
(``--proxy URL``, through its read-only ``/parity/*`` endpoints: DuckDB lets one process open a file while it is
written, so this is how to watch a store a proxy is writing; ``--proxy-token`` or ``PARITY_PROXY_TOKEN`` when
that proxy asks for its token). On ``127.0.0.1`` no token is needed unless one is
given; bound to any other address a token is required: ``--token`` (or ``PARITY_DASHBOARD_TOKEN``), else one is
generated and printed with the URL. Errors (no store, an unreadable one, a port in use) are one line, exit 2.
"""

from __future__ import annotations

import contextlib
import socket

import click

from parity._exceptions import InvalidInputError
from parity._optional import import_optional
from parity._token import resolve_token
from parity.cli._read_source import DEFAULT_STORE, open_read_source

__all__ = ["DEFAULT_PORT", "DEFAULT_STORE", "bind", "command", "resolve_token"]

DEFAULT_PORT = 8050


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or a one-line error naming ``--host``/``--port``."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as err:
        raise InvalidInputError("--host", "must be an address of this machine", host, detail=str(err)) from err
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise InvalidInputError(
            "--port", f"must be free to listen on at {host}", port, detail=err.strerror or str(err)
        ) from err
    sock.set_inheritable(True)
    return sock


@click.command(name="dashboard")
@click.option(
    "--store",
    "store_path",
    default=None,
    help=f"DuckDB store file, opened read-only (default {DEFAULT_STORE}), or postgresql:// URL.",
)
@click.option("--proxy", "proxy_url", default=None, help="URL of a running `parity proxy` to read the store through.")
@click.option("--proxy-token", envvar="PARITY_PROXY_TOKEN", default=None,
              help="The --proxy's token (needed when it listens beyond 127.0.0.1).")  # fmt: skip
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on (beyond loopback a token is required)."
)
@click.option(
    "--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True, help="Port to listen on."
)
@click.option(
    "--token",
    envvar="PARITY_DASHBOARD_TOKEN",
    default=None,
    help="Require this token (Bearer header or ?token=); generated when binding beyond 127.0.0.1.",
)
@click.option(
    "--long-context-tokens",
    type=click.IntRange(min=1),
    default=None,
    hidden=True,
    help="Accepted for older scripts and ignored: each record carries its context class, decided when it was built "
    "(parity proxy/ingest/monitor --long-context-tokens).",
)
@click.option("--title", default=None, help="Title of the page.")
def command(
    store_path: str | None,
    proxy_url: str | None,
    proxy_token: str | None,
    host: str,
    port: int,
    token: str | None,
    long_context_tokens: int | None,
    title: str | None,
) -> None:
    """Serve the read-only dashboard: incident timeline, alerts, segment views, routing audit, change log."""
    from rich.console import Console

    from parity.dashboard import DEFAULT_TITLE, create_app
    from parity.monitor.storage.store import redact_url

    uvicorn = import_optional("uvicorn", extra="dashboard")
    required, generated = resolve_token(host, token)
    source = open_read_source(store=store_path, proxy=proxy_url, proxy_token=proxy_token)
    try:
        app = create_app(source, token=required, title=title or DEFAULT_TITLE)
        sock = bind(host, port)
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{port}/" + (f"?token={required}" if required else "")
        console = Console(stderr=True, highlight=False)
        shown_store = redact_url(store_path or DEFAULT_STORE)
        what = f"--proxy {proxy_url}" if proxy_url else f"--store {shown_store} (read-only)"
        console.print(f"[bold]parity dashboard[/] {url}  {what}")
        if long_context_tokens is not None:
            console.print(
                "--long-context-tokens is ignored: each record carries its context class, decided when it was built "
                "(set it on parity proxy/ingest/monitor)"
            )
        if generated:
            console.print(f"token (generated; pass --token to choose one): {required}")
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it stopped on: a normal stop
            server.run(sockets=[sock])
        console.print("parity dashboard stopped")
    finally:
        source.close()
