"""Command-line options several commands share, spelled and explained once."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from parity.monitor._records import LONG_CONTEXT_THRESHOLD_TOKENS

F = TypeVar("F", bound=Callable[..., object])

__all__ = ["long_context_option"]


def long_context_option(command: F) -> F:
    """``--long-context-tokens``: the fleet router's short/long split, given to the record builder, which decides
    each record's ``context_class`` with it when the record is built (every later stage reads the record's field).

    >>> @click.command()
    ... @long_context_option
    ... def show(long_context_tokens: int) -> None:
    ...     click.echo(long_context_tokens)
    >>> from click.testing import CliRunner
    >>> CliRunner().invoke(show, ["--long-context-tokens", "192"]).output, CliRunner().invoke(show, []).output
    ('192\\n', '8192\\n')
    """
    return click.option(
        "--long-context-tokens",
        type=click.IntRange(min=1),
        default=LONG_CONTEXT_THRESHOLD_TOKENS,
        show_default=True,
        help="Context length above which a request is 'long' (the fleet router's split; lab: 192); each record's "
        "context class is decided with it when the record is built.",
    )(command)
