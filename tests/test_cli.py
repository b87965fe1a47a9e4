"""The CLI shell: version, help, and the error contract (exit 2, one line, no traceback)."""

from __future__ import annotations

from click.testing import CliRunner

from parity import InvalidInputError
from parity.cli import main
from parity.cli._main import SUBCOMMANDS


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert "0.1.0" in result.output


def test_help_lists_every_subcommand() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in SUBCOMMANDS:
        assert name in result.output


def test_unknown_subcommand_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["no-such-command"])
    assert result.exit_code == 2


def test_invalid_input_error_message_names_argument() -> None:
    err = InvalidInputError("top_k", "must be an integer", "three")
    assert str(err) == "`top_k` must be an integer, got 'three'"
    assert isinstance(err, ValueError)
