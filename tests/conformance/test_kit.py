"""The kit passes correct implementations (reference, float32, other tie-breaks) and catches the faulty ones."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from tests.conformance import _impls

from parity.conformance import (
    BUILTINS,
    Check,
    check_sampler,
    filter_check_names,
    replay,
    run_builtin_verdicts,
    yield_checks,
)

#: Tests run the kit sized down (rows, draws); the CLI default is 1.0, the full-strength kit.
SCALE = 0.05


def _ids(check: Check) -> str:
    return check.__name__


@pytest.mark.parametrize("check", list(yield_checks("builtin:reference", scale=SCALE)), ids=_ids)
def test_reference_passes_every_check(check: Check) -> None:
    result = check()
    assert result.passed, result.render()


@pytest.mark.parametrize(
    "impl", [_impls.float32_filter, _impls.float32_filter_reversed_ties], ids=["float32", "float32-reversed-ties"]
)
def test_correct_float32_implementations_with_other_tie_breaks_pass(impl: object) -> None:
    report = check_sampler(impl, scale=SCALE)
    assert report.conformant, report.render()


def test_approx_topk_is_caught_by_the_one_hot_repro() -> None:
    report = check_sampler("builtin:approx-topk-10240", only=["check_one_hot_every_index"], scale=SCALE)
    assert not report.conformant
    example = report.results[0].counterexample
    assert example is not None
    assert "except [10240]=1" in example.input  # shrunk to the postmortem's repro: the 1.0 at the first bad index
    assert example.input.startswith("batch 8 x")  # the smallest affected batch size
    code = example.reproduce.split('"')[3]
    assert replay("builtin:approx-topk-10240", code, echo=False) is False
    assert replay("builtin:reference", code, echo=False) is True


def test_mixed_precision_topp_drops_the_argmax() -> None:
    report = check_sampler("builtin:mixed-precision-topp", only=["check_argmax_survival"], scale=SCALE)
    assert not report.conformant
    example = report.results[0].counterexample
    assert example is not None
    assert "removed every token" in example.got or "kept 0 tokens" in example.got
    assert example.input.startswith("batch 1 x vocab")


def test_december_workaround_keeps_the_argmax_but_is_caught() -> None:
    report = check_sampler(
        "builtin:december-workaround", only=["check_argmax_survival", "check_top_p_properties"], scale=SCALE
    )
    survival, top_p = report.results
    assert survival.passed  # the workaround's purpose
    assert not top_p.passed
    assert "-inf" in top_p.detail


def test_builtin_registry_names() -> None:
    assert set(BUILTINS) == {"reference", "approx-topk-10240", "mixed-precision-topp", "december-workaround"}
    x = np.random.default_rng(0).normal(size=(3, 50)).astype(np.float32)
    for fn in BUILTINS.values():
        out = np.asarray(fn(x, temperature=0.7, top_k=10, top_p=0.9, min_p=0.05))
        assert out.shape == x.shape


def test_check_names_are_stable() -> None:
    assert filter_check_names()[:3] == ["check_argmax_survival", "check_greedy", "check_one_hot_every_index"]


def test_run_builtin_verdicts_names_every_builtin() -> None:
    text = run_builtin_verdicts(scale=0.02, names=["reference", "mixed-precision-topp"])
    assert "builtin:reference: CONFORMANT" in text
    assert "builtin:mixed-precision-topp: NOT CONFORMANT" in text


def test_reproduction_line_runs_in_a_fresh_interpreter() -> None:
    report = check_sampler("builtin:mixed-precision-topp", only=["check_top_p_boundary_and_ties"], scale=SCALE)
    example = report.results[0].counterexample
    assert example is not None
    code = example.reproduce.removeprefix("python -c ").strip("'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("FAIL:")
