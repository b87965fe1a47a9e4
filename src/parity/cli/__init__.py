"""The ``parity`` command line: a thin shell over the library, one module per subcommand.

Subcommands are imported lazily, so ``parity conform`` never pays for torch or DuckDB, and a missing optional
dependency only affects the subcommand that needs it. Every :class:`parity.ParityError` becomes a one-line
message on stderr and exit status 2; no traceback reaches the user.
"""

from parity.cli._main import main

__all__ = ["main"]
