"""``parity lab``: serve the lab fleet, load it with traffic, train the lab model.

``parity lab serve --config FLEET.toml [--host 127.0.0.1 --port N] [--admin-token T] [--changelog FILE]``
``parity lab traffic --target URL --rate R --duration D [--sessions N --seed S]``
``parity lab train ...`` and ``parity lab export-gguf ...`` come from :mod:`parity.cli.lab_train`, imported only
when they run.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import click

from parity._body_limit import DEFAULT_MAX_BODY_BYTES
from parity._exceptions import InvalidInputError, ParityError

#: subcommands defined in parity.cli.lab_train: name -> module attribute.
_TRAIN_COMMANDS = {"train": "command", "export-gguf": "export_gguf"}


class _LabGroup(click.Group):
    """``serve`` and ``traffic`` live here; ``train``/``export-gguf`` are imported from lab_train on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_TRAIN_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in _TRAIN_COMMANDS:
            return command
        try:
            from parity.cli import lab_train as module
        except ImportError as err:
            return _unavailable(cmd_name, f"needs parity.cli.lab_train ({err})")
        found = getattr(module, _TRAIN_COMMANDS[cmd_name], None)
        return found if isinstance(found, click.Command) else _unavailable(cmd_name, "not in this build")

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ParityError as err:
            click.echo(f"parity: error: {err}", err=True)
            sys.exit(2)


def _unavailable(name: str, why: str) -> click.Command:
    @click.command(name=name, help=f"(unavailable: {why})", context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def placeholder(args: tuple[str, ...]) -> None:
        click.echo(f"parity: error: `parity lab {name}` is unavailable: {why}", err=True)
        sys.exit(2)

    return placeholder


@click.group(name="lab", cls=_LabGroup)
def command() -> None:
    """The lab: train, serve and load the project's own small model fleet."""


@command.command(name="serve")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Fleet TOML (default: the shipped fleet.toml; see also src/parity/lab/configs/incident.toml).",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option(
    "--admin-token", default=None, help="Bearer token for POST /admin/changes (default: a random one, printed)."
)
@click.option(
    "--changelog",
    "changelog_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Append changes to this JSONL file.",
)
@click.option(
    "--weights",
    "weights_dir",
    default=None,
    help="Weights for every model: smollm2-135m, parity-lab-9m or a directory (default: each model's in the TOML).",
)
@click.option("--threads", type=int, default=None, help="torch threads (default: torch's choice).")
@click.option(
    "--max-batch",
    type=int,
    default=16,
    show_default=True,
    help="Most requests running at once per engine (continuous batching).",
)
@click.option("--max-queue", type=int, default=256, show_default=True, help="Queued requests before 503.")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=DEFAULT_MAX_BODY_BYTES, show_default=True,
              help="Larger request bodies are refused with 413 before they are read or tokenized.")  # fmt: skip
@click.option("--prefix-cache-mb", type=click.IntRange(min=0), default=1024, show_default=True,
              help="Keys and values kept per engine for prompts that start like earlier ones (0: the chat format's "
                   "system turn only).")  # fmt: skip
@click.option("--parent-pid", type=int, default=None,
              help="Shut down when this process (the one that started the fleet) is gone, even if it was killed "
                   "with SIGKILL.")  # fmt: skip
def serve_command(
    config_path: Path | None,
    host: str,
    port: int,
    admin_token: str | None,
    changelog_path: Path | None,
    weights_dir: str | None,
    threads: int | None,
    max_batch: int,
    max_queue: int,
    max_body_bytes: int,
    prefix_cache_mb: int,
    parent_pid: int | None,
) -> None:
    """Serve the fleet as an OpenAI-compatible API (one process)."""
    import asyncio

    from parity.lab.fleet import FleetConfig, default_config_path
    from parity.lab.server import LabServer, serve

    if not 0 <= port <= 65535:
        raise InvalidInputError("--port", "must be in [0, 65535]", port)
    if parent_pid is not None and parent_pid != os.getppid():
        parent = os.getppid()
        raise InvalidInputError("--parent-pid", f"must be the pid of this process's parent ({parent})", parent_pid)
    if threads is not None:
        if threads < 1:
            raise InvalidInputError("--threads", "must be >= 1", threads)
        import torch

        torch.set_num_threads(threads)
    fleet = FleetConfig.load(config_path or default_config_path("fleet"))
    token = admin_token or secrets.token_urlsafe(16)
    server = LabServer(
        fleet,
        weights_dir=weights_dir,
        admin_token=token,
        changelog_path=changelog_path,
        max_batch=max_batch,
        max_queue=max_queue,
        max_body_bytes=max_body_bytes,
        prefix_cache_bytes=prefix_cache_mb << 20,
    )
    asyncio.run(server.warm_up())
    click.echo(
        f"parity lab: serving {', '.join(fleet.models)} on {len(fleet.servers)} servers "
        f"({', '.join(fleet.platforms)} x {', '.join(fleet.pools)}) at http://{host}:{port}/v1",
        err=True,
    )
    if admin_token is None:
        click.echo(f"parity lab: admin token {token}", err=True)
    serve(server, host=host, port=port, parent_pid=parent_pid)


@command.command(name="faultbox")
@click.option("--upstream", required=True, help="Base URL of the OpenAI-compatible upstream (any server).")
@click.option("--listen", default="127.0.0.1:8100", show_default=True, help="HOST:PORT to serve clients on.")
@click.option("--fault", required=True, type=click.Choice(["ignore-sampling", "max-tokens-cap", "drop-context",
              "reencode", "latency"]), help="The fault to inject.")  # fmt: skip
@click.option("--share", type=float, default=1.0, show_default=True, help="Share of the segment's requests hit.")
@click.option("--segment", default="", help="Where to inject, e.g. model=H or platform=tpu (default: all traffic).")
@click.option("--cap", type=int, default=4, show_default=True, help="max-tokens-cap: the cap.")
@click.option("--delay", type=float, default=2.0, show_default=True, help="latency: seconds added.")
@click.option("--seed", type=int, default=0, show_default=True)
def faultbox_command(
    upstream: str, listen: str, fault: str, share: float, segment: str, cap: int, delay: float, seed: int
) -> None:
    """Forward OpenAI-compatible traffic to UPSTREAM, injecting one silent fault on a share of one segment."""
    import uvicorn

    from parity.lab.faultbox import FaultBox, FaultPlan, parse_segment

    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit():
        raise InvalidInputError("listen", "must look like 127.0.0.1:8100", listen)
    plan = FaultPlan(fault, share=share, segment=parse_segment(segment), cap=cap, delay=delay, seed=seed)
    app = FaultBox(upstream, plan)
    click.echo(f"faultbox: {fault} on {share:.0%} of {segment or 'all traffic'}, {listen} -> {upstream}", err=True)
    uvicorn.run(app, host=host, port=int(port_text), log_level="warning", lifespan="on")


@command.command(name="traffic")
@click.option("--target", required=True, help="Base URL of the server (loopback only), e.g. http://127.0.0.1:8000.")
@click.option("--rate", type=float, required=True, help="Mean arrivals per second (Poisson).")
@click.option("--duration", type=float, required=True, help="Seconds of arrivals.")
@click.option("--sessions", type=int, default=20, show_default=True, help="Concurrent user sessions.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-tokens", type=int, default=32, show_default=True)
@click.option("--max-requests", type=int, default=None, help="Hard cap on requests (default 2 x rate x duration).")
@click.option("--follow-up", type=float, default=0.5, show_default=True, help="Chance a request continues its session.")
@click.option("--models", default=None, help="Model shares, e.g. S=0.6,O=0.3,H=0.1 (default: all served, equal).")
@click.option("--feedback/--no-feedback", default=False, show_default=True, help="Send thumbs up/down to /v1/feedback.")
@click.option("--top-logprobs", type=click.IntRange(0, 20), default=0, show_default=True,
              help="Ask for token logprobs and this many alternatives (0: none).")  # fmt: skip
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write outcomes as JSONL.",
)
def traffic_command(
    target: str,
    rate: float,
    duration: float,
    sessions: int,
    seed: int,
    max_tokens: int,
    max_requests: int | None,
    follow_up: float,
    models: str | None,
    feedback: bool,
    top_logprobs: int,
    json_path: Path | None,
) -> None:
    """Send a bounded Poisson stream of realistic requests, then print a summary."""
    import dataclasses
    import json

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from parity.lab.traffic import TrafficGenerator

    shares = _parse_models(models) if models else None
    generator = TrafficGenerator(
        target,
        rate=rate,
        duration=duration,
        sessions=sessions,
        seed=seed,
        models=shares,
        max_tokens=max_tokens,
        max_requests=max_requests,
        follow_up=follow_up,
        feedback=feedback,
        top_logprobs=top_logprobs,
    )
    console = Console(stderr=True)
    with Progress(
        TextColumn("traffic"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task("requests", total=None)

        def progress(done: int, planned: int) -> None:
            bar.update(task, completed=done, total=planned)

        summary = generator.run(progress=progress)
    table = Table(title=f"parity lab traffic -> {generator.target}")
    table.add_column("")
    table.add_column("value")
    for label, value in summary.table_rows():
        table.add_row(label, value)
    Console().print(table)
    if json_path is not None:
        with json_path.open("w", encoding="utf-8") as fh:
            for outcome in summary.outcomes:
                fh.write(json.dumps(dataclasses.asdict(outcome), ensure_ascii=False) + "\n")
    if summary.ok == 0 and summary.sent > 0:
        raise ParityError(f"no request succeeded ({summary.sent} sent; errors {summary.errors})")


def _parse_models(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in text.split(","):
        name, _, share = part.partition("=")
        try:
            out[name.strip()] = float(share) if share else 1.0
        except ValueError:
            raise InvalidInputError("--models", "must look like S=0.6,O=0.3,H=0.1", text) from None
        if not name.strip() or out[name.strip()] < 0:
            raise InvalidInputError("--models", "must look like S=0.6,O=0.3,H=0.1", text)
    return out
