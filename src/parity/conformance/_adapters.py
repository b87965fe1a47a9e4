"""Loading and calling the implementation under test: protocols, frameworks, and reading a filter's output.

Two protocols, numpy or torch (``framework="torch"``: tensors in and out, converted here):

* filter: ``f(logits[B, V] float32, *, temperature, top_k, top_p, min_p) -> logits[B, V]`` with removed tokens
  at ``-inf``; the output is what gets sampled, so kept values equal ``logits / temperature`` up to one additive
  constant per row (softmax does not see it);
* sampler: the same arguments plus ``seed: int``, returning token ids ``[B]``.

>>> import numpy as np
>>> impl = Implementation(lambda x, **kw: np.where(x >= x.max(axis=1, keepdims=True), x, -np.inf), target="demo")
>>> view = impl.run_filter(np.array([[1.0, 3.0, 2.0]], dtype=np.float32), SamplingParams())
>>> view.kept.tolist(), view.problems
([[False, True, False]], [[]])
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from parity._exceptions import ConformanceError, InvalidInputError
from parity._optional import import_optional
from parity.conformance._oracle import TIE_ULPS, UNIT_ROUNDOFF
from parity.sampling import SamplingParams

__all__ = ["REMOVED_GAP", "FilterView", "Implementation", "load_target"]

Kind = Literal["filter", "sampler"]
Framework = Literal["numpy", "torch"]

#: A finite output value more than this far below ``logits / temperature + c`` is a removed token that was not
#: set to -inf (the December 2024 workaround subtracts 50000). It is counted as removed and reported as a
#: protocol violation. No legal kept value is anywhere near it: the value tolerance is ulps.
REMOVED_GAP = 1000.0


@dataclass(frozen=True)
class FilterView:
    """A filter's output read back: the kept mask per row and the protocol problems per row."""

    kept: NDArray[np.bool_]
    problems: list[list[str]]
    raw: NDArray[np.float64]


def _call_error(target: str, err: BaseException) -> str:
    return f"{target} raised {type(err).__name__}: {err}"


class Implementation:
    """The implementation under test behind one calling convention, whatever its protocol and framework."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        kind: Kind = "filter",
        framework: Framework = "numpy",
        target: str | None = None,
    ) -> None:
        if kind not in ("filter", "sampler"):
            raise InvalidInputError("kind", "must be 'filter' or 'sampler'", kind)
        if framework not in ("numpy", "torch"):
            raise InvalidInputError("framework", "must be 'numpy' or 'torch'", framework)
        if not callable(fn):
            raise InvalidInputError("impl", "must be callable", fn)
        self.fn = fn
        self.kind: Kind = kind
        self.framework: Framework = framework
        self.target = target if target is not None else _target_of(fn)

    def _to_framework(self, logits: NDArray[np.float32]) -> Any:
        if self.framework == "torch":
            torch = import_optional("torch", extra="torch")
            return torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32).copy())
        return np.ascontiguousarray(logits, dtype=np.float32).copy()

    @staticmethod
    def _to_numpy(value: Any) -> NDArray[Any]:
        if hasattr(value, "detach"):
            value = value.detach().cpu()
            if str(getattr(value, "dtype", "")) == "torch.bfloat16":
                value = value.float()
            value = value.numpy()
        return np.asarray(value)

    def call_filter(self, logits: NDArray[np.float32], params: SamplingParams) -> NDArray[np.float64]:
        """Call the filter; its output as float64 ``[B, V]``. Raises whatever the implementation raises."""
        out = self._to_numpy(self.fn(self._to_framework(logits), **params.kwargs()))
        if out.shape != logits.shape:
            raise ConformanceError(f"{self.target} returned shape {out.shape} for input shape {logits.shape}")
        return out.astype(np.float64)

    def call_sampler(self, logits: NDArray[np.float32], params: SamplingParams, seed: int) -> NDArray[np.int64]:
        """Call the sampler; its token ids as int64 ``[B]``."""
        out = self._to_numpy(self.fn(self._to_framework(logits), seed=seed, **params.kwargs()))
        out = out.reshape(-1)
        if out.shape != (logits.shape[0],):
            raise ConformanceError(f"{self.target} returned shape {out.shape} for a batch of {logits.shape[0]}")
        if out.dtype.kind not in "iu":
            raise ConformanceError(f"{self.target} returned dtype {out.dtype}, token ids must be integers")
        return out.astype(np.int64)

    def run_filter(self, logits: NDArray[np.float32], params: SamplingParams) -> FilterView:
        """Call the filter and read its output: kept mask and protocol problems per row."""
        return read_filter_output(self.call_filter(logits, params), logits, params.temperature)


def read_filter_output(out: NDArray[np.float64], logits: NDArray[np.float32], temperature: float) -> FilterView:
    with np.errstate(invalid="ignore", over="ignore"):
        return _read_filter_output(out, logits, temperature)


def _read_filter_output(out: NDArray[np.float64], logits: NDArray[np.float32], temperature: float) -> FilterView:
    """Kept mask and protocol problems of a filter output ``out`` for the input ``logits``."""
    x = logits.astype(np.float64)
    z = x if temperature == 0.0 else x / temperature
    finite = np.isfinite(out)
    kept = finite.copy()
    problems: list[list[str]] = [[] for _ in range(out.shape[0])]
    for r in range(out.shape[0]):
        nan = np.flatnonzero(np.isnan(out[r]) & np.isfinite(x[r]))
        if nan.size:
            problems[r].append(f"NaN in the output at token {int(nan[0])} ({nan.size} tokens) for a finite logit")
        posinf = np.flatnonzero(np.isposinf(out[r]))
        if posinf.size:
            problems[r].append(f"+inf in the output at token {int(posinf[0])}")
        if temperature == 0.0 or not finite[r].any():
            continue
        idx = np.flatnonzero(finite[r] & np.isfinite(z[r]))
        if idx.size == 0:
            continue
        j = int(idx[np.argmax(out[r, idx])])
        offset = out[r, j] - z[r, j]
        dev = out[r] - z[r] - offset
        pushed = finite[r] & np.isfinite(z[r]) & (dev < -REMOVED_GAP)
        if pushed.any():
            kept[r] &= ~pushed
            first = int(np.flatnonzero(pushed)[0])
            problems[r].append(
                f"{int(pushed.sum())} removed tokens were not set to -inf but pushed down by about "
                f"{-float(dev[first]):.6g} (token {first}); the protocol asks for -inf"
            )
        z_max = float(np.max(z[r, idx]))
        slack = TIE_ULPS * UNIT_ROUNDOFF * (np.abs(z[r]) + 2.0 * abs(z_max) + abs(offset) + 1.0)
        altered = kept[r] & np.isfinite(z[r]) & (np.abs(dev) > slack)
        if altered.any():
            first = int(np.flatnonzero(altered)[0])
            problems[r].append(
                f"kept value of token {first} is {out[r, first]:.9g}, not logits/temperature + a row constant "
                f"({z[r, first] + offset:.9g}); {int(altered.sum())} tokens differ"
            )
        from_inf = finite[r] & ~np.isfinite(z[r])
        if from_inf.any():
            problems[r].append(f"token {int(np.flatnonzero(from_inf)[0])} has a finite output for a -inf logit")
    return FilterView(kept, problems, out)


def _target_of(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None)
    if module and name and "<" not in name:
        return f"{module}:{name}"
    return "MODULE:CALLABLE"


@dataclass(frozen=True)
class LoadedTarget:
    """A resolved ``MODULE:CALLABLE`` or ``builtin:NAME``: the callable and its natural protocol/framework."""

    fn: Callable[..., Any]
    name: str
    kind: Kind | None
    framework: Framework | None


def load_target(spec: str, *, kind: Kind = "filter") -> LoadedTarget:
    """Resolve ``MODULE:CALLABLE`` or ``builtin:NAME`` (raises :class:`ConformanceError` with one clear line).

    >>> load_target("builtin:reference").name
    'builtin:reference'
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise ConformanceError(f"`target` must be MODULE:CALLABLE or builtin:NAME, got {spec!r}")
    module_name, _, attr = spec.partition(":")
    if module_name == "builtin":
        from parity.conformance._engines import ENGINES
        from parity.conformance._thirdparty import THIRD_PARTY
        from parity.conformance.faulty import BUILTINS, SAMPLERS

        if attr in ENGINES:
            engine = ENGINES[attr]
            if engine.needs_cuda:
                from parity.conformance._engines import require_cuda

                require_cuda(attr)
            if engine.preflight is not None:
                engine.preflight()
            natural: Framework = "torch" if engine.framework == "torch" else "numpy"
            if kind == "sampler" or engine.filter is None:
                if engine.sampler is None:
                    raise ConformanceError(f"builtin {attr!r} has no sampler adapter; run it as a filter")
                return LoadedTarget(engine.sampler, spec, "sampler", natural)
            return LoadedTarget(engine.filter, spec, "filter", natural)
        if kind == "sampler" and attr in SAMPLERS:
            return LoadedTarget(SAMPLERS[attr], spec, "sampler", "numpy")
        if attr in BUILTINS:
            return LoadedTarget(BUILTINS[attr], spec, "filter", "numpy")
        if attr in THIRD_PARTY:
            if kind == "sampler":
                raise ConformanceError(f"builtin {attr!r} is a filter; samplers are: {', '.join(sorted(SAMPLERS))}")
            fn, framework = THIRD_PARTY[attr]
            return LoadedTarget(fn, spec, "filter", "torch" if framework == "torch" else "numpy")
        names = ", ".join(sorted({*BUILTINS, *THIRD_PARTY, *ENGINES}))
        raise ConformanceError(f"unknown builtin {attr!r}; builtins are: {names}")
    if not module_name or not attr:
        raise ConformanceError(f"`target` must be MODULE:CALLABLE or builtin:NAME, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConformanceError(f"cannot import module {module_name!r} of {spec!r}: {err}") from err
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConformanceError(f"module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConformanceError(f"{spec!r} is not callable")
    return LoadedTarget(obj, spec, None, None)
