"""The sampler conformance kit: does a sampler implementation keep exactly the tokens it should?

An implementation is a *filter* (``f(logits[B, V] float32, *, temperature, top_k, top_p, min_p)`` returning
the sampling logits with removed tokens at ``-inf``) or a *sampler* (the same plus ``seed``, returning token ids
``[B]``), in numpy or torch. :func:`yield_checks` yields the kit's checks as plain ``check_*`` callables (river's
``checks`` style); :func:`check_sampler` runs them and returns a :class:`ConformanceReport`. Conformance is
defined by properties (order respected, mass reaches p, minimality and top-k count up to ties and float32
tolerances, min-p rule, argmax survival), so a correct implementation with another tie-break or float32
arithmetic passes; see :mod:`parity.conformance._oracle` for the tolerances and their derivation. Failures are
shrunk to the smallest failing input and come with a one-line reproduction.

>>> report = check_sampler("builtin:mixed-precision-topp", only=["check_argmax_survival"], scale=0.1)
>>> report.conformant
False
>>> report.results[0].counterexample.input.startswith("batch 1 x vocab")  # shrunk to a single short row
True
"""

from __future__ import annotations

from parity.conformance._adapters import REMOVED_GAP, Implementation, load_target
from parity.conformance._checks import (
    check_sampler,
    filter_check_names,
    replay,
    run_builtin_verdicts,
    sampler_check_names,
    yield_checks,
)
from parity.conformance._engines import ENGINES, Engine, engine_versions
from parity.conformance._gof import GOF_ALPHA, GOF_POWER, GoodnessOfFitResult, chi_square_gof, detectable_tv
from parity.conformance._junit import junit_cases, write_junit_report
from parity.conformance._oracle import (
    SUM_ULPS,
    TIE_ULPS,
    RowBounds,
    mass_tolerance,
    row_bounds,
    tie_tolerance,
)
from parity.conformance._report import CheckResult, ConformanceReport, Counterexample
from parity.conformance._runner import Check
from parity.conformance._thirdparty import THIRD_PARTY, hf_warpers_filter, jax_approx_max_k_filter, jax_top_k_filter
from parity.conformance.faulty import BUILTINS, SAMPLERS
from parity.sampling import DEFAULT_ORDER, LLAMACPP_ORDER, VLLM_ORDER, SamplingParams

#: The kit's parameter bundle is the one validated :class:`parity.sampling.SamplingParams` (this name is kept for
#: the repro lines and callers written before the bundles were merged).
Params = SamplingParams

__all__ = [
    "BUILTINS",
    "DEFAULT_ORDER",
    "ENGINES",
    "GOF_ALPHA",
    "GOF_POWER",
    "LLAMACPP_ORDER",
    "REMOVED_GAP",
    "SAMPLERS",
    "SUM_ULPS",
    "THIRD_PARTY",
    "TIE_ULPS",
    "VLLM_ORDER",
    "Check",
    "CheckResult",
    "ConformanceReport",
    "Counterexample",
    "Engine",
    "GoodnessOfFitResult",
    "Implementation",
    "Params",
    "RowBounds",
    "check_sampler",
    "chi_square_gof",
    "detectable_tv",
    "engine_versions",
    "filter_check_names",
    "hf_warpers_filter",
    "jax_approx_max_k_filter",
    "jax_top_k_filter",
    "junit_cases",
    "load_target",
    "mass_tolerance",
    "replay",
    "row_bounds",
    "run_builtin_verdicts",
    "sampler_check_names",
    "tie_tolerance",
    "write_junit_report",
    "yield_checks",
]
