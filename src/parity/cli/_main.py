"""Entry point and lazy subcommand registry of the ``parity`` CLI."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from parity._exceptions import ParityError
from parity._version import __version__

#: subcommand name -> module under ``parity.cli`` that defines a click command named ``command``.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "conform": ("parity.cli.conform", "Check a sampler implementation against the exact reference."),
    "compare": ("parity.cli.compare", "Test whether two deployments serve the same model."),
    "lab": ("parity.cli.lab", "The lab: train, serve and load the project's own small model fleet."),
    "proxy": ("parity.cli.proxy", "Run the monitoring reverse proxy in front of an OpenAI-compatible server."),
    "ingest": ("parity.cli.ingest", "Ingest JSONL logs or OTLP JSON GenAI spans into the monitor's store."),
    "receive": ("parity.cli.receive", "Receive OpenTelemetry traces over OTLP/HTTP and monitor GenAI spans."),
    "monitor": ("parity.cli.monitor", "Run the segment monitor over logs, in-process or on a Ray cluster."),
    "status": ("parity.cli.status", "Show open alerts and the changes they are attributed to."),
    "dashboard": ("parity.cli.dashboard", "Serve the read-only dashboard over a store."),
    "demo": ("parity.cli.demo", "Replay the August-September 2025 incident on the lab fleet."),
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when that subcommand runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = SUBCOMMANDS.get(cmd_name)
        if entry is None:
            return None
        try:
            module = importlib.import_module(entry[0])
        except ModuleNotFoundError as err:
            if err.name is not None and err.name.startswith("parity"):
                return _unavailable(cmd_name, entry[1])
            raise
        command: click.Command = module.command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SUBCOMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ParityError as err:
            click.echo(f"parity: error: {err}", err=True)
            sys.exit(2)


def _unavailable(name: str, help_text: str) -> click.Command:
    @click.command(name=name, help=help_text, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def placeholder(args: tuple[str, ...]) -> None:
        click.echo(f"parity: error: `parity {name}` is not available in this build", err=True)
        sys.exit(2)

    return placeholder


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="parity")
def main() -> None:
    """parity catches silent quality regressions in LLM serving."""
