"""Sampling parameters: one validated dataclass, the filter orders, and the one place arguments are checked.

Every bundle of sampling parameters in parity is a :class:`SamplingParams`: the reference sampler's, the lab
engine's requests (parsed from the OpenAI body), the conformance kit's cases and ``parity compare``'s. The
rules (``top_p`` in ``(0, 1]`` and the rest) are checked here only, and the filter orders are named here only:
:data:`DEFAULT_ORDER`, :data:`VLLM_ORDER` and :data:`LLAMACPP_ORDER` (the only one with a ``"temperature"``
stage, which the conformance oracle understands and the reference sampler does not: it divides by the
temperature first).

>>> parse_order("vllm")
('min_p', 'top_k', 'top_p')
>>> parse_order("top_p, top_k, min_p")
('top_p', 'top_k', 'min_p')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

from parity._exceptions import InvalidInputError

__all__ = [
    "DEFAULT_ORDER",
    "FILTERS",
    "LLAMACPP_ORDER",
    "NAMED_ORDERS",
    "VLLM_ORDER",
    "SamplingParams",
    "parse_order",
    "resolve_params",
    "validate_order",
    "validate_params",
]

#: The names of the three filters that run after temperature.
FILTERS: tuple[str, ...] = ("top_k", "top_p", "min_p")
#: The canonical order (temperature is always applied first): top-k, then top-p on the survivors, then min-p.
DEFAULT_ORDER: tuple[str, ...] = ("top_k", "top_p", "min_p")
#: vLLM's documented order: min-p first, then top-k, then top-p.
VLLM_ORDER: tuple[str, ...] = ("min_p", "top_k", "top_p")
#: llama.cpp's default sampler chain (``common/sampling``, llama-cpp-python's ``Llama._init_sampler``): the filters
#: on the unscaled logits, temperature last. Only the conformance oracle runs it (a ``"temperature"`` stage).
LLAMACPP_ORDER: tuple[str, ...] = ("top_k", "top_p", "min_p", "temperature")
#: The orders by the names ``parity conform --order`` accepts.
NAMED_ORDERS: dict[str, tuple[str, ...]] = {"default": DEFAULT_ORDER, "vllm": VLLM_ORDER, "llamacpp": LLAMACPP_ORDER}


def validate_order(order: Any, *, temperature_stage: bool = False) -> tuple[str, ...]:
    """``order`` as a tuple, or raise naming it: a permutation of :data:`FILTERS`, plus at most one
    ``"temperature"`` stage when ``temperature_stage`` (absent means temperature first).

    >>> validate_order(["min_p", "top_k", "top_p"])
    ('min_p', 'top_k', 'top_p')
    >>> validate_order(LLAMACPP_ORDER, temperature_stage=True)
    ('top_k', 'top_p', 'min_p', 'temperature')
    >>> validate_order(("top_k", "top_p"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    parity._exceptions.InvalidInputError: `order` must be a permutation of ('top_k', ...), got ('top_k', 'top_p')
    """
    if isinstance(order, str) or not isinstance(order, Sequence):
        raise InvalidInputError("order", _order_rule(temperature_stage), order)
    names = tuple(str(name) for name in order)
    filters = tuple(name for name in names if not (temperature_stage and name == "temperature"))
    if len(names) - len(filters) > 1 or len(filters) != len(FILTERS) or sorted(filters) != sorted(FILTERS):
        raise InvalidInputError("order", _order_rule(temperature_stage), order)
    return names


def _order_rule(temperature_stage: bool) -> str:
    rule = f"must be a permutation of {FILTERS}"
    return rule + ", optionally with 'temperature' once" if temperature_stage else rule


def parse_order(text: str) -> tuple[str, ...]:
    """An order from its name in :data:`NAMED_ORDERS` or comma-separated stages (``"temperature"`` allowed).

    >>> parse_order("llamacpp")
    ('top_k', 'top_p', 'min_p', 'temperature')
    >>> parse_order("top_k,top_p")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    parity._exceptions.InvalidInputError: `order` must be a permutation of ... 'temperature' once, got 'top_k,top_p'
    """
    if text in NAMED_ORDERS:
        return NAMED_ORDERS[text]
    try:
        return validate_order([part.strip() for part in text.split(",") if part.strip()], temperature_stage=True)
    except InvalidInputError as err:
        raise InvalidInputError("order", _order_rule(True), text) from err


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
    validate_order(order)


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

    def kwargs(self) -> dict[str, Any]:
        """The four keyword arguments of the filter protocol (``temperature``, ``top_k``, ``top_p``, ``min_p``).

        The order is not one of them: an implementation has its own, given beside it.

        >>> SamplingParams(top_k=5, order=VLLM_ORDER).kwargs()
        {'temperature': 1.0, 'top_k': 5, 'top_p': 1.0, 'min_p': 0.0}
        """
        return {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p, "min_p": self.min_p}

    def describe(self) -> str:
        """The four parameters in words, for messages and reproductions.

        >>> SamplingParams(0.7, top_p=0.9).describe()
        'temperature=0.7, top_k=0, top_p=0.9, min_p=0.0'
        """
        return ", ".join(f"{key}={value!r}" for key, value in self.kwargs().items())

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
