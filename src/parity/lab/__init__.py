"""The lab: the project's own small language model and its engine (the serving fleet lives beside them).

The public names are re-exported lazily, so ``import parity.lab`` never needs torch; ``parity.lab.Engine``
imports the engine (and torch) on first use.

>>> import parity.lab
>>> sorted(parity.lab.__all__)
['Engine', 'GenerationRequest', 'GenerationResult', 'ModelConfig', 'TokenEvent', 'Tokenizer']
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "Engine": "parity.lab.engine",
    "GenerationRequest": "parity.lab.engine",
    "GenerationResult": "parity.lab.engine",
    "TokenEvent": "parity.lab.engine",
    "ModelConfig": "parity.lab.model",
    "Tokenizer": "parity.lab.tokenizer",
}

__all__ = ["Engine", "GenerationRequest", "GenerationResult", "ModelConfig", "TokenEvent", "Tokenizer"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'parity.lab' has no attribute {name!r}")
