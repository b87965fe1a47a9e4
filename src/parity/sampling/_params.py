"""Sampling parameters: one validated dataclass, the filter orders, and the one place arguments are checked."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

from parity._exceptions import InvalidInputError

__all__ = ["DEFAULT_ORDER", "FILTERS", "VLLM_ORDER", "SamplingParams", "resolve_params", "validate_params"]

#: The names of the three filters that run after temperature.
FILTERS: tuple[str, ...] = ("top_k", "top_p", "min_p")
#: The canonical order (temperature is always applied first): top-k, then top-p on the survivors, then min-p.
DEFAULT_ORDER: tuple[str, ...] = ("top_k", "top_p", "min_p")
#: vLLM's documented order: min-p first, then top-k, then top-p.
VLLM_ORDER: tuple[str, ...] = ("min_p", "top_k", "top_p")


def validate_params(
    temperature: Any = 1.0, top_k: Any = 0, top_p: Any = 1.0, min_p: Any = 0.0, order: Any = DEFAULT_ORDER
) -> None:
    """Raise :class:`~parity._exceptions.InvalidInputError` naming the first argument that is not allowed.

    ``temperature`` finite and ``>= 0`` (0 is greedy); ``top_k`` an integer (``<= 0`` disables); ``top_p`` in
    ``(0, 1]`` (1 disables); ``min_p`` in ``[0, 1]`` (0 disables); ``order`` a permutation of
    ``("top_k", "top_p", "min_p")``.

    >>> validate_params(0.7, 50, 0.9, 0.05, VLLM_ORDER)
    >>> validate_params(top_p=1.5)
    Traceback (most recent call last):
    ...
    parity._exceptions.InvalidInputError: `top_p` must be a number in (0, 1] (1 disables), got 1.5
    """
    if isinstance(temperature, bool) or not isinstance(temperature, Real) or not math.isfinite(float(temperature)):
        raise InvalidInputError("temperature", "must be a finite number >= 0 (0 is greedy)", temperature)
    if float(temperature) < 0:
        raise InvalidInputError("temperature", "must be a finite number >= 0 (0 is greedy)", temperature)
    if isinstance(top_k, bool) or not isinstance(top_k, Integral):
        raise InvalidInputError("top_k", "must be an integer (<= 0 disables)", top_k)
    if isinstance(top_p, bool) or not isinstance(top_p, Real) or not 0.0 < float(top_p) <= 1.0:
        raise InvalidInputError("top_p", "must be a number in (0, 1] (1 disables)", top_p)
    if isinstance(min_p, bool) or not isinstance(min_p, Real) or not 0.0 <= float(min_p) <= 1.0:
        raise InvalidInputError("min_p", "must be a number in [0, 1] (0 disables)", min_p)
    if (
        isinstance(order, str)
        or not isinstance(order, Sequence)
        or len(order) != len(FILTERS)
        or sorted(str(name) for name in order) != sorted(FILTERS)
    ):
        raise InvalidInputError("order", "must be a permutation of ('top_k', 'top_p', 'min_p')", order)


@dataclass(frozen=True)
class SamplingParams:
    """Validated sampling parameters; ``order`` is the order of the filters after temperature.

    >>> SamplingParams(temperature=0.7, top_p=0.9)
    SamplingParams(temperature=0.7, top_k=0, top_p=0.9, min_p=0.0, order=('top_k', 'top_p', 'min_p'))
    >>> SamplingParams(top_k=-1).top_k_enabled
    False
    >>> SamplingParams(min_p=-0.1)
    Traceback (most recent call last):
    ...
    parity._exceptions.InvalidInputError: `min_p` must be a number in [0, 1] (0 disables), got -0.1
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    order: tuple[str, ...] = DEFAULT_ORDER

    def __post_init__(self) -> None:
        validate_params(self.temperature, self.top_k, self.top_p, self.min_p, self.order)
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "top_k", int(self.top_k))
        object.__setattr__(self, "top_p", float(self.top_p))
        object.__setattr__(self, "min_p", float(self.min_p))
        object.__setattr__(self, "order", tuple(str(name) for name in self.order))

    @property
    def greedy(self) -> bool:
        """Temperature 0: only the argmax (lowest index among exact ties) is kept."""
        return self.temperature == 0.0

    @property
    def top_k_enabled(self) -> bool:
        return self.top_k > 0

    @property
    def top_p_enabled(self) -> bool:
        return self.top_p < 1.0

    @property
    def min_p_enabled(self) -> bool:
        return self.min_p > 0.0


def resolve_params(
    params: SamplingParams | None,
    temperature: Any,
    top_k: Any,
    top_p: Any,
    min_p: Any,
    order: Any,
) -> SamplingParams:
    """``params`` if given (then the keyword parameters must stay at their defaults), else a new one."""
    if params is None:
        return SamplingParams(temperature, top_k, top_p, min_p, tuple(order) if isinstance(order, Sequence) else order)
    if not isinstance(params, SamplingParams):
        raise InvalidInputError("params", "must be a SamplingParams or None", params)
    if (temperature, top_k, top_p, min_p) != (1.0, 0, 1.0, 0.0) or tuple(order) != DEFAULT_ORDER:
        raise InvalidInputError(
            "params", "must not be combined with keyword parameters (give one or the other)", params
        )
    return params
