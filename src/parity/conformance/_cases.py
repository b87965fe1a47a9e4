"""A test input of the kit (:class:`Case`), its description in words, and its one-line encoding for replays.

>>> import numpy as np
>>> x = np.zeros((1, 10241), dtype=np.float32)
>>> x[0, 10240] = 1.0
>>> case = Case(x, SamplingParams(top_k=256), verdict="oracle")
>>> case.describe()
'batch 1 x vocab 10241; row 0: all 0 except [10240]=1; temperature=1.0, top_k=256, top_p=1.0, min_p=0.0'
>>> decode_case(case.encode()).describe() == case.describe()
True
"""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from parity._exceptions import InvalidInputError
from parity.sampling import SamplingParams

__all__ = ["Case", "decode_case"]


@dataclass(frozen=True)
class Case:
    """One input batch, the parameters, and the name of the verdict that judges the implementation's answer."""

    logits: NDArray[np.float32]
    params: SamplingParams
    verdict: str
    seed: int = 0
    row: int = 0

    @property
    def batch(self) -> int:
        return int(self.logits.shape[0])

    @property
    def vocab(self) -> int:
        return int(self.logits.shape[1])

    def encode(self) -> str:
        """A compact, exact, shell-safe text form of the case (zlib + urlsafe base64)."""
        header: dict[str, Any] = {"shape": list(self.logits.shape), "params": self.params.kwargs()}
        header |= {"verdict": self.verdict, "seed": self.seed, "row": self.row}
        payload = json.dumps(header).encode() + b"\n" + np.ascontiguousarray(self.logits, np.float32).tobytes()
        return base64.urlsafe_b64encode(zlib.compress(payload, 9)).decode().rstrip("=")

    def describe(self) -> str:
        """The case in words: sizes, the failing row's values (compactly), the parameters."""
        rows = self.logits
        same = bool(np.array_equal(rows, np.broadcast_to(rows[self.row], rows.shape), equal_nan=True))
        which = "every row" if same and self.batch > 1 else f"row {self.row}"
        return f"batch {self.batch} x vocab {self.vocab}; {which}: {describe_row(rows[self.row])}; " + (
            self.params.describe()
        )


def describe_row(row: NDArray[np.float32]) -> str:
    """A row in words: every value when short, else the common value and the exceptions, else a summary."""

    def fmt(v: float) -> str:
        return f"{v:.9g}"

    if row.size <= 12:
        return "[" + ", ".join(fmt(float(v)) for v in row) + "]"
    values, counts = np.unique(row.astype(np.float64), return_counts=True, equal_nan=True)
    common = float(values[np.argmax(counts)])
    others = np.flatnonzero(~((row == common) | (np.isnan(row) & np.isnan(common))))
    if others.size <= 6:
        listed = ", ".join(f"[{int(i)}]={fmt(float(row[i]))}" for i in others)
        return f"all {fmt(common)} except {listed}" if listed else f"all {fmt(common)}"
    finite = row[np.isfinite(row)]
    span = f"values in [{fmt(float(finite.min()))}, {fmt(float(finite.max()))}]" if finite.size else "no finite value"
    top = int(np.nanargmax(np.where(np.isfinite(row), row, -np.inf))) if finite.size else -1
    return f"{span}, max at index {top} (exact values in the reproduction)"


def decode_case(code: str) -> Case:
    """Inverse of :meth:`Case.encode`."""
    try:
        raw = zlib.decompress(base64.urlsafe_b64decode(code + "=" * (-len(code) % 4)))
        head, _, body = raw.partition(b"\n")
        header = json.loads(head)
        logits = np.frombuffer(body, dtype=np.float32).reshape(header["shape"]).copy()
        return Case(logits, SamplingParams(**header["params"]), header["verdict"], header["seed"], header["row"])
    except (ValueError, KeyError, TypeError, zlib.error) as err:
        raise InvalidInputError("case", "must be a case code printed by the conformance kit", code[:40]) from err
