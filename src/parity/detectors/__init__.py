"""Cheap per-response detectors: the incident's symptoms, scored on every served response.

A detector scores one :class:`ResponseContext` (the response, its prompt and conversation, the sampling
parameters, the served logprobs when there are any) and returns an :class:`Observation` (flagged, score,
evidence span). The text detectors together score well over 10,000 responses of 500 characters per second
per core (``python -m benchmarks detectors``):

- :class:`UnexpectedScriptDetector`: Thai or Han characters in an English answer (and any script the
  conversation gives no reason to expect);
- :class:`CodeIntegrityDetector`: a syntax error in a Python, JSON, TOML or XML block that one local repair
  explains;
- :class:`DegenerationDetector`: loops, n-gram repetition, replacement characters, mojibake, cut characters;
- :class:`SamplingConsistencyDetector`: a chosen token the requested sampler could not have drawn (argmax at
  temperature 0, inside top-k, inside the top-p nucleus), judged on the returned alternatives;
- :class:`ReferenceScoreDetector`: the completion's log-likelihood under a reference deployment of the same
  model, against the reference's own samples (needs a :class:`ReferenceScorer`).

>>> from parity.detectors import ResponseContext, score_response
>>> for obs in score_response(ResponseContext("The answer is 4, สวัสดี of course.", prompt="What is 2 + 2?")):
...     print(obs.detector, obs.flagged, obs.evidence)
unexpected_script True สวัสดี
code_integrity False None
degeneration False None
sampling_consistency False None
"""

from parity.detectors._base import Detector, Observation, ResponseContext
from parity.detectors._code import CodeIntegrityDetector
from parity.detectors._degeneration import DegenerationDetector
from parity.detectors._reference import EndpointScorer, MockScorer, ReferenceScoreDetector, ReferenceScorer
from parity.detectors._registry import default_detectors, score_response
from parity.detectors._sampling import SamplingConsistencyDetector
from parity.detectors._script import UnexpectedScriptDetector, expected_scripts, script_histogram

__all__ = [
    "CodeIntegrityDetector",
    "DegenerationDetector",
    "Detector",
    "EndpointScorer",
    "MockScorer",
    "Observation",
    "ReferenceScoreDetector",
    "ReferenceScorer",
    "ResponseContext",
    "SamplingConsistencyDetector",
    "UnexpectedScriptDetector",
    "default_detectors",
    "expected_scripts",
    "score_response",
    "script_histogram",
]
