"""Checkpoints the lab can serve, by name: ``smollm2-135m`` (the real model) or ``parity-lab-9m`` (the lab's own).

A fleet model's ``weights`` is one of :data:`WEIGHTS_NAMES` or a directory written by ``parity lab train``
(``config.json``, ``model.safetensors``, ``tokenizer.json``). :func:`load_checkpoint` returns the model config,
fp32 tensors under the lab model's names and the tokenizer (with its chat format); a checkpoint is read once per
process and its tensors are shared by every engine built from it.

>>> ckpt = load_checkpoint("parity-lab-9m")
>>> ckpt.model_id, ckpt.config.n_layers, ckpt.tokenizer.chat.name
('parity-lab-9m', 6, 'parity-lab')
>>> load_checkpoint("gpt-5")
Traceback (most recent call last):
...
parity._exceptions.ConfigError: gpt-5: weights must be one of ['smollm2-135m', 'parity-lab-9m'] or a weights directory
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parity._exceptions import ConfigError
from parity._optional import import_optional
from parity.lab.tokenizer import WEIGHTS_DIR, Tokenizer

if TYPE_CHECKING:
    from parity.lab.model import ModelConfig

__all__ = ["LAB_9M_WEIGHTS", "WEIGHTS_NAMES", "Checkpoint", "load_checkpoint", "resolve_weights"]

#: the committed 9M model's name.
LAB_9M_WEIGHTS = "parity-lab-9m"
#: checkpoint names a fleet may select (the first is the real model the default fleet serves).
WEIGHTS_NAMES = ("smollm2-135m", LAB_9M_WEIGHTS)


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A loaded checkpoint: ``state`` holds fp32 tensors; :meth:`state_at` gives them at a precision."""

    name: str
    model_id: str
    config: ModelConfig
    state: dict[str, Any]
    tokenizer: Tokenizer
    source: Path
    metadata: dict[str, Any]

    def state_at(self, precision: str) -> dict[str, Any]:
        """The tensors at ``precision`` ("fp32" or "bf16"); each precision is converted once and shared."""
        return _state_at(self, precision)


@functools.lru_cache(maxsize=4)
def _state_at(checkpoint: Checkpoint, precision: str) -> dict[str, Any]:
    import torch

    if precision == "fp32":
        return checkpoint.state
    return {k: v.to(torch.bfloat16) for k, v in checkpoint.state.items()}


def resolve_weights(weights: str | Path | None) -> str:
    """The canonical key of a weights selection: a known name, or an absolute directory path.

    ``None`` and ``""`` mean the committed 9M model (a fleet TOML without ``weights``).

    >>> resolve_weights(None), resolve_weights("smollm2-135m")
    ('parity-lab-9m', 'smollm2-135m')
    """
    if weights is None or weights == "":
        return LAB_9M_WEIGHTS
    if isinstance(weights, str) and weights in WEIGHTS_NAMES:
        return weights
    path = Path(weights)
    if path.is_dir():
        resolved = path.resolve()
        return LAB_9M_WEIGHTS if resolved == WEIGHTS_DIR else str(resolved)
    raise ConfigError(f"weights must be one of {list(WEIGHTS_NAMES)} or a weights directory", source=str(weights))


def load_checkpoint(weights: str | Path | None = None) -> Checkpoint:
    """Load the checkpoint ``weights`` names (see :func:`resolve_weights`); named ones once per process.

    A directory is read again on every call: ``parity lab train`` may rewrite it.
    """
    key = resolve_weights(weights)
    return _load_named(key) if key in WEIGHTS_NAMES else _load(key)


@functools.lru_cache(maxsize=2)
def _load_named(key: str) -> Checkpoint:
    return _load(key)


def _load(key: str) -> Checkpoint:
    from parity.lab.model import ModelConfig

    if key == "smollm2-135m":
        from parity.lab.smollm2 import read_smollm2

        model = read_smollm2()
        return Checkpoint(key, key, model.config, model.state, model.tokenizer, model.path, model.metadata)
    directory = WEIGHTS_DIR if key == LAB_9M_WEIGHTS else Path(key)
    config_path, weights_path = directory / "config.json", directory / "model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise ConfigError("must hold config.json, model.safetensors and tokenizer.json", source=str(directory))
    safetensors_torch = import_optional("safetensors.torch", extra="lab")
    raw: dict[str, Any] = json.loads(config_path.read_text(encoding="utf-8"))
    state = {k: v.float() for k, v in safetensors_torch.load_file(str(weights_path)).items()}
    model_id = str(raw.get("model_id", directory.name))
    config = ModelConfig.from_dict(raw)
    return Checkpoint(key, model_id, config, state, Tokenizer.load(directory), directory, raw)
