"""The incident's faults as runtime configuration changes, and what each one does to a request.

A fault is a :class:`~parity.lab.changelog.Change` in the fleet's change log; :func:`validate_change` checks its
parameters when it is posted, and :class:`FaultState` answers, for one routed request, what the active changes do
to it. The kinds and their ``params``:

``routing``         ``fraction`` (0..1): that fraction of the scope's short-context *sessions* is sent to the long
                    pool, sticky per session (a session is misrouted iff a hash of (session, change id) falls below
                    the fraction, so raising the fraction keeps every already misrouted session misrouted).
``corruption``      ``fraction`` (0..1, default 0.02) of decoding steps start a burst that boosts rarely
                    appropriate tokens by ``boost`` nats (default 30): Thai or CJK text in the middle of an answer,
                    or tokens that break code syntax; ``sets`` picks among ``thai``, ``cjk``, ``code``.
``sampler``         ``sampler``: ``approx-topk-10240`` or ``mixed-precision-topp`` (the faulty filters of
                    :mod:`parity.conformance.faulty`); optional ``affected_batch_sizes`` (list of ints or ``"all"``)
                    and ``cutoff`` (column index, default 10240) for the approximate top-k; ``empty_rows``: what the
                    faulty server draws from when the filter removed every token of a row: ``"uniform"`` (default:
                    the postmortem's ``where(keep, logits, -50000)`` sets every logit to -50000, so every token is
                    equally likely) or ``"argmax"`` (a server that guards against empty rows).
``precision``       ``precision``: ``bf16`` or ``fp32``: the engine precision of the scoped servers.
``load_balancing``  ``shares`` ({platform: share}) replaces the platform shares; ``misroute_multiplier`` (>= 0)
                    scales the routing faults in scope (a rebalancing that sends more traffic to the misconfigured
                    servers, as on 08-29).
``deploy``          ``config_version``: a benign version bump.
``rollback``/``fix``  ``change_id``: turn that earlier change off.

Any change may also carry ``params.config_version``: the scoped servers then report it in
``x-parity-config-version`` while the change is active.

>>> from parity.lab.changelog import new_change
>>> c = validate_change(new_change("routing", {"model": "S"}, {"fraction": 0.16}), models={"S"}, platforms={"gpu"})
>>> state = FaultState([c])
>>> state.routing_fraction(model="S", platform="gpu"), state.routing_fraction(model="O", platform="gpu")
(0.16, 0.0)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from parity._exceptions import InvalidInputError
from parity.lab.changelog import OFF_KINDS, Change

__all__ = [
    "CORRUPTION_SETS",
    "CORRUPTION_SNIPPETS",
    "EMPTY_ROW_POLICIES",
    "SAMPLER_FAULTS",
    "CorruptionProcessor",
    "CorruptionSpec",
    "FaultState",
    "sampler_filter",
    "session_fraction",
    "validate_change",
]

#: the faulty samplers a ``sampler`` change may name.
SAMPLER_FAULTS = ("approx-topk-10240", "mixed-precision-topp")

#: what a faulty sampler draws from when its filter removed every token of a row (``params.empty_rows``).
EMPTY_ROW_POLICIES = ("uniform", "argmax")

#: text the corruption fault injects, by set: tokens that should almost never appear in an English answer or in
#: Python code (Thai and Chinese words as in the postmortem's examples, and fragments that break code syntax).
CORRUPTION_SNIPPETS: dict[str, tuple[str, ...]] = {
    "thai": ("สวัสดี", "ครับ", "ภาษาไทย", "ข้อมูล", "การ", "ที่", "และ"),
    "cjk": ("你好", "中文", "数据", "的", "是", "模型", "こんにちは"),
    "code": (")]", " }}", "))", ":]:", " = = ", "'''\"", "\\", " ;)", "@@"),
}

#: the default sets of the corruption fault.
CORRUPTION_SETS = tuple(CORRUPTION_SNIPPETS)

#: default boost (nats) added to the injected tokens' logits: large enough that fp32 sampling at any temperature
#: up to 2 picks them (lab logits span about 30 nats) - the fault model is "high probability", not "certain".
DEFAULT_BOOST = 30.0


def session_fraction(session: str, salt: str) -> float:
    """A stable uniform number in [0, 1) for ``(session, salt)``: the sticky part of routing decisions.

    >>> session_fraction("user-1", "c1") == session_fraction("user-1", "c1")
    True
    """
    digest = hashlib.blake2b(f"{salt}\x00{session}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def _fraction(params: dict[str, Any], key: str, *, default: float | None = None) -> float:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise InvalidInputError(f"params.{key}", "must be a number in [0, 1]", value)
    return float(value)


def validate_change(change: Change, *, models: Collection[str], platforms: Collection[str]) -> Change:
    """Check ``change``'s scope names and parameters for its kind; return it unchanged or raise.

    Errors are :class:`InvalidInputError` naming ``params.<key>`` or ``scope.<key>``.
    """
    if "model" in change.scope and change.scope["model"] not in models:
        raise InvalidInputError("scope.model", f"must be one of {sorted(models)}", change.scope["model"])
    if "platform" in change.scope and change.scope["platform"] not in platforms:
        raise InvalidInputError("scope.platform", f"must be one of {sorted(platforms)}", change.scope["platform"])
    p = change.params
    if "config_version" in p and (not isinstance(p["config_version"], str) or not p["config_version"]):
        raise InvalidInputError("params.config_version", "must be a non-empty string", p["config_version"])
    kind = change.kind
    if kind == "routing":
        _fraction(p, "fraction")
        extra = sorted(set(change.scope) - {"model", "platform"})
        if extra:
            raise InvalidInputError("scope", "of a routing change may name only `model` and `platform`", extra[0])
    elif kind == "corruption":
        _fraction(p, "fraction", default=0.02)
        boost = p.get("boost", DEFAULT_BOOST)
        if isinstance(boost, bool) or not isinstance(boost, int | float) or not 0 < boost < 1e6:
            raise InvalidInputError("params.boost", "must be a number in (0, 1e6)", boost)
        sets = p.get("sets", list(CORRUPTION_SETS))
        if not isinstance(sets, list) or not sets or any(s not in CORRUPTION_SNIPPETS for s in sets):
            raise InvalidInputError("params.sets", f"must be a non-empty list of {list(CORRUPTION_SETS)}", sets)
    elif kind == "sampler":
        if p.get("sampler") not in SAMPLER_FAULTS:
            raise InvalidInputError("params.sampler", f"must be one of {list(SAMPLER_FAULTS)}", p.get("sampler"))
        if p.get("empty_rows", "uniform") not in EMPTY_ROW_POLICIES:
            raise InvalidInputError("params.empty_rows", f"must be one of {list(EMPTY_ROW_POLICIES)}", p["empty_rows"])
        cutoff = p.get("cutoff", 10240)
        if isinstance(cutoff, bool) or not isinstance(cutoff, int) or cutoff < 1:
            raise InvalidInputError("params.cutoff", "must be an integer column index >= 1", cutoff)
        sizes = p.get("affected_batch_sizes")
        bad_list = not isinstance(sizes, list) or not sizes or any(not isinstance(b, int) or b < 1 for b in sizes)
        if sizes is not None and sizes != "all" and bad_list:
            raise InvalidInputError("params.affected_batch_sizes", 'must be "all" or a list of ints >= 1', sizes)
    elif kind == "precision":
        if p.get("precision") not in ("fp32", "bf16"):
            raise InvalidInputError("params.precision", "must be 'fp32' or 'bf16'", p.get("precision"))
    elif kind == "load_balancing":
        if "shares" not in p and "misroute_multiplier" not in p:
            raise InvalidInputError("params", "must set `shares` and/or `misroute_multiplier`", p)
        if "shares" in p:
            shares = p["shares"]
            if not isinstance(shares, dict) or not shares:
                raise InvalidInputError("params.shares", "must be an object {platform: share}", shares)
            for name, share in shares.items():
                if name not in platforms:
                    raise InvalidInputError("params.shares", f"keys must be among {sorted(platforms)}", name)
                if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share < math.inf:
                    raise InvalidInputError(f"params.shares.{name}", "must be a number >= 0", share)
            if sum(shares.values()) <= 0:
                raise InvalidInputError("params.shares", "must not all be 0", shares)
        if "misroute_multiplier" in p:
            m = p["misroute_multiplier"]
            if isinstance(m, bool) or not isinstance(m, int | float) or not 0 <= m <= 1e6:
                raise InvalidInputError("params.misroute_multiplier", "must be a number in [0, 1e6]", m)
    elif kind == "deploy":
        if "config_version" not in p:
            raise InvalidInputError("params.config_version", "is required for a deploy", None)
    elif kind in OFF_KINDS and not isinstance(p.get("change_id"), str):
        raise InvalidInputError("params.change_id", "must name the change to turn off", p.get("change_id"))
    return change


@dataclass(frozen=True)
class CorruptionSpec:
    """An active corruption fault: per-step trigger ``fraction``, ``boost`` in nats and snippet ``sets``."""

    change_id: str
    fraction: float
    boost: float
    sets: tuple[str, ...]


class FaultState:
    """What a list of active changes does to a request routed to ``(model, platform, pool, server)``.

    Later changes win where two set the same thing (precision, sampler, shares, config version).
    """

    def __init__(self, active: Sequence[Change], *, base_version: str = "1") -> None:
        self.active = list(active)
        self.base_version = base_version

    def _matching(self, kind: str | None = None, **where: str) -> Iterable[Change]:
        return (c for c in self.active if (kind is None or c.kind == kind) and c.matches(**where))

    def routing_faults(self, *, model: str, platform: str) -> list[tuple[str, float]]:
        """``(change id, effective fraction)`` of each routing fault covering ``(model, platform)``."""
        multiplier = 1.0
        for c in self._matching("load_balancing", model=model, platform=platform):
            if "misroute_multiplier" in c.params:
                multiplier = float(c.params["misroute_multiplier"])
        out = []
        for c in self._matching(None, model=model, platform=platform):
            if c.kind == "routing" and not set(c.scope) - {"model", "platform"}:
                out.append((c.change_id, min(1.0, float(c.params["fraction"]) * multiplier)))
        return out

    def routing_fraction(self, *, model: str, platform: str) -> float:
        """The share of short-context sessions of ``(model, platform)`` misrouted to the long pool."""
        misses = 1.0
        for _, fraction in self.routing_faults(model=model, platform=platform):
            misses *= 1.0 - fraction
        return round(1.0 - misses, 12)

    def platform_shares(self, defaults: dict[str, float], *, model: str) -> dict[str, float]:
        """Platform shares after load-balancing changes (the latest one covering ``model`` wins)."""
        shares = dict(defaults)
        for c in self._matching("load_balancing", model=model):
            if "shares" in c.params:
                shares = {name: float(c.params["shares"].get(name, 0.0)) for name in defaults}
        return shares

    def precision(self, default: str, **where: str) -> str:
        """The engine precision of the server at ``where`` (``model``, ``platform``, ``pool``, ``server``)."""
        out = default
        for c in self._matching("precision", **where):
            out = str(c.params["precision"])
        return out

    def config_version(self, **where: str) -> str:
        """The config version the server at ``where`` reports."""
        out = self.base_version
        for c in self._matching(None, **where):
            if "config_version" in c.params:
                out = str(c.params["config_version"])
        return out

    def sampler(self, **where: str) -> Change | None:
        """The active sampler fault at ``where``, if any."""
        out = None
        for c in self._matching("sampler", **where):
            out = c
        return out

    def corruption(self, **where: str) -> CorruptionSpec | None:
        """The active corruption fault at ``where``, if any."""
        out = None
        for c in self._matching("corruption", **where):
            p = c.params
            out = CorruptionSpec(
                c.change_id,
                float(p.get("fraction", 0.02)),
                float(p.get("boost", DEFAULT_BOOST)),
                tuple(p.get("sets", CORRUPTION_SETS)),
            )
        return out

    def changes_at(self, **where: str) -> list[str]:
        """Ids of the fault changes (not deploys) affecting requests at ``where``."""
        kinds = ("corruption", "sampler", "precision")
        return [c.change_id for c in self._matching(None, **where) if c.kind in kinds]


def sampler_filter(change: Change) -> Callable[..., NDArray[Any]]:
    """The numpy filter a ``sampler`` change names (with its ``cutoff``, ``affected_batch_sizes`` and
    ``empty_rows``).

    With ``empty_rows="uniform"`` (the default) a row the faulty filter emptied comes back with every logit equal,
    as the incident's ``where(keep, logits, -50000)`` leaves it: the engine then draws a token uniformly from the
    whole vocabulary, which is what users saw. ``"argmax"`` leaves the row empty for the engine's own guard (the
    raw argmax).

    >>> import numpy as np
    >>> from parity.lab.changelog import new_change
    >>> f = sampler_filter(new_change("sampler", {}, {"sampler": "mixed-precision-topp"}))
    >>> row = np.array([[4.0, 0.0, 0.0]], dtype=np.float32)  # p(argmax) 0.964 rounds up in bf16: row emptied
    >>> f(row, temperature=1.0, top_k=0, top_p=0.9, min_p=0.0).tolist()
    [[0.0, 0.0, 0.0]]
    """
    from parity.conformance import faulty

    params = change.params
    name = str(params["sampler"])
    sizes = params.get("affected_batch_sizes")
    base: Callable[..., NDArray[Any]] = faulty.BUILTINS[name]
    if name == "approx-topk-10240" and (sizes is not None or "cutoff" in params):
        affected = (
            faulty.DEFAULT_AFFECTED_BATCH_SIZES
            if sizes is None
            else (range(1, 4097) if sizes == "all" else [int(b) for b in sizes])
        )
        base = faulty.make_approx_topk(cutoff=int(params.get("cutoff", 10240)), affected_batch_sizes=affected)
    if params.get("empty_rows", "uniform") == "argmax":
        return base

    def filled(logits: Any, **kwargs: Any) -> NDArray[Any]:
        out = np.asarray(base(logits, **kwargs), dtype=np.float64)
        empty = ~np.isfinite(out).any(axis=1)
        if empty.any():
            out = out.copy()
            out[empty] = 0.0
        return out

    filled.__doc__ = f"{name} with emptied rows drawn uniformly (the -50000 fill)"
    return filled


class CorruptionProcessor:
    """A per-request logits processor that injects corruption bursts.

    At each decoding step, with probability ``spec.fraction`` (drawn from the engine's rng), a burst starts: one
    snippet of the chosen sets (token ids from ``snippets``) gets ``spec.boost`` added to its next token's logit,
    step after step until the snippet is written. ``injected`` counts the boosted steps.

    >>> proc = CorruptionProcessor(CorruptionSpec("c", 1.0, 30.0, ("code",)), {"code": [[7, 8]]})
    >>> rng = np.random.default_rng(0)
    >>> [int(np.argmax(proc(np.zeros(10, dtype=np.float32), step, rng))) for step in range(3)]
    [7, 8, 7]
    """

    def __init__(self, spec: CorruptionSpec, snippets: dict[str, list[list[int]]]) -> None:
        self.spec = spec
        self._pool = [ids for name in spec.sets for ids in snippets.get(name, []) if ids]
        self._pending: list[int] = []
        self.injected = 0

    def __call__(self, logits: NDArray[np.float32], step: int, rng: np.random.Generator) -> NDArray[np.float32]:
        if not self._pending and self._pool and rng.random() < self.spec.fraction:
            self._pending = list(self._pool[int(rng.integers(len(self._pool)))])
        if not self._pending:
            return logits
        token = self._pending.pop(0)
        out = np.array(logits, dtype=np.float32, copy=True)
        if 0 <= token < out.shape[-1]:
            out[..., token] += self.spec.boost
            self.injected += 1
        return out


def snippet_token_ids(encode: Callable[[str], list[int]]) -> dict[str, list[list[int]]]:
    """The corruption snippets of every set, tokenized (a leading space keeps words as they occur mid-text)."""
    return {name: [encode(text) for text in texts] for name, texts in CORRUPTION_SNIPPETS.items()}
