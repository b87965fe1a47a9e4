"""The default detector set and the one call that runs detectors on a response.

>>> from parity.detectors import ResponseContext
>>> [o.detector for o in score_response(ResponseContext("Fine answer.", prompt="q"))]
['unexpected_script', 'code_integrity', 'degeneration', 'sampling_consistency']
"""

from __future__ import annotations

from collections.abc import Sequence

from parity._exceptions import InvalidInputError
from parity.detectors._base import Detector, Observation, ResponseContext
from parity.detectors._code import CodeIntegrityDetector
from parity.detectors._degeneration import DegenerationDetector
from parity.detectors._sampling import SamplingConsistencyDetector
from parity.detectors._script import UnexpectedScriptDetector

__all__ = ["default_detectors", "score_response"]


def default_detectors() -> list[Detector]:
    """Fresh instances of the text detectors and the sampling-consistency check (no reference scorer: that one
    needs an endpoint, see :class:`~parity.detectors.ReferenceScoreDetector`)."""
    return [UnexpectedScriptDetector(), CodeIntegrityDetector(), DegenerationDetector(), SamplingConsistencyDetector()]


_DEFAULT: list[Detector] | None = None


def score_response(ctx: ResponseContext, detectors: Sequence[Detector] | None = None) -> list[Observation]:
    """Run ``detectors`` (default: :func:`default_detectors`, built once and reused) on one response, in order.

    >>> score_response("text")
    Traceback (most recent call last):
    ...
    parity._exceptions.InvalidInputError: `ctx` must be a ResponseContext, got 'str'
    """
    global _DEFAULT
    if not isinstance(ctx, ResponseContext):
        raise InvalidInputError("ctx", "must be a ResponseContext", type(ctx).__name__)
    if detectors is None:
        if _DEFAULT is None:
            _DEFAULT = default_detectors()
        detectors = _DEFAULT
    return [d.score(ctx) for d in detectors]
