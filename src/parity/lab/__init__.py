"""The lab: the project's own small language model, its engine and (elsewhere) the serving fleet.

Import the parts from their modules (``parity.lab.engine``, ``parity.lab.model``, ``parity.lab.train``); this
package imports nothing heavy itself, so ``import parity.lab`` never needs torch.
"""

from __future__ import annotations

__all__: list[str] = []
