"""Import of optional dependencies with an error that names the extra to install.

>>> np = import_optional("numpy", extra="core")
>>> np.__name__
'numpy'
"""

from __future__ import annotations

import importlib
from types import ModuleType

from parity._exceptions import MissingDependencyError


def import_optional(module: str, *, extra: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``pip install 'parity[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(module.split(".")[0], extra=extra) from err
