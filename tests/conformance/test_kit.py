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

#: Every filter check but the two one-hot repros (those test selection, not arithmetic; the reference runs them).
ARITHMETIC_CHECKS = [name for name in filter_check_names() if "one_hot" not in name]


def _ids(check: Check) -> str:
    return check.__name__


@pytest.mark.parametrize("check", list(yield_checks("builtin:reference", scale=SCALE)), ids=_ids)
def test_reference_passes_every_check(check: Check) -> None:
    result = check()
    assert result.passed, result.render()


#: The checks where tie-breaking matters.
TIE_CHECKS = ["check_greedy", "check_top_k_properties", "check_top_p_boundary_and_ties", "check_edge_parameters"]


def test_correct_float32_implementation_passes() -> None:
    report = check_sampler(_impls.float32_filter, scale=SCALE, only=ARITHMETIC_CHECKS)
    assert report.conformant, report.render()


def test_correct_implementation_with_another_tie_break_passes() -> None:
    report = check_sampler(_impls.float32_filter_reversed_ties, scale=SCALE, only=TIE_CHECKS)
    assert report.conformant, report.render()


def test_vllm_order_is_tested_against_its_own_order() -> None:
    def vllm_ordered(logits: np.ndarray, **kw: float) -> np.ndarray:
        from parity.sampling import VLLM_ORDER, filter_logits

        return np.asarray(filter_logits(logits, order=VLLM_ORDER, **kw))

    ok = check_sampler(vllm_ordered, order=("min_p", "top_k", "top_p"), only=["check_combined_parameters"], scale=0.3)
    assert ok.conformant, ok.render()
    wrong = check_sampler(vllm_ordered, only=["check_combined_parameters"], scale=0.3)
    assert not wrong.conformant


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


def test_approx_topk_only_fails_for_affected_batch_sizes() -> None:
    row = np.zeros((1, 12000), dtype=np.float32)
    row[0, 11000] = 1.0
    fn = BUILTINS["approx-topk-10240"]
    for batch, lost in ((1, False), (7, False), (8, True), (64, True), (65, False)):
        out = np.asarray(fn(np.repeat(row, batch, axis=0), temperature=1.0, top_k=256, top_p=1.0, min_p=0.0))
        assert bool(np.isneginf(out[:, 11000]).all()) is lost


def test_mixed_precision_topp_drops_the_argmax() -> None:
    report = check_sampler("builtin:mixed-precision-topp", only=["check_argmax_survival"], scale=SCALE)
    assert not report.conformant
    example = report.results[0].counterexample
    assert example is not None
    assert "kept 0 tokens" in example.got
    assert example.input.startswith("batch 1 x vocab")


def test_december_workaround_keeps_the_argmax_but_is_caught() -> None:
    report = check_sampler(
        "builtin:december-workaround", only=["check_argmax_survival", "check_combined_parameters"], scale=0.3
    )
    survival, combined = report.results
    assert survival.passed  # the workaround's purpose
    assert not combined.passed
    assert combined.counterexample is not None
    assert "-inf" in combined.counterexample.got  # removed tokens at logits - 50000
    assert "a correct implementation keeps" in combined.counterexample.got  # and the bf16 threshold drops tokens


def test_builtin_registry_names() -> None:
    assert set(BUILTINS) == {"reference", "approx-topk-10240", "mixed-precision-topp", "december-workaround"}
    x = np.random.default_rng(0).normal(size=(3, 50)).astype(np.float32)
    for fn in BUILTINS.values():
        out = np.asarray(fn(x, temperature=0.7, top_k=10, top_p=0.9, min_p=0.05))
        assert out.shape == x.shape


def test_check_names_are_stable() -> None:
    assert filter_check_names()[:3] == ["check_argmax_survival", "check_greedy", "check_one_hot_every_index"]


def test_run_builtin_verdicts_names_every_builtin() -> None:
    text = run_builtin_verdicts(scale=0.02, only=["check_top_p_boundary_and_ties"])
    assert "builtin:reference: CONFORMANT" in text
    assert "builtin:mixed-precision-topp: NOT CONFORMANT" in text
    assert "builtin:december-workaround: NOT CONFORMANT" in text
    assert "reproduce: python -c" in text


def test_reproduction_line_runs_in_a_fresh_interpreter() -> None:
    report = check_sampler("builtin:mixed-precision-topp", only=["check_top_p_boundary_and_ties"], scale=SCALE)
    example = report.results[0].counterexample
    assert example is not None
    code = example.reproduce.removeprefix("python -c ").strip("'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("FAIL:")


def test_bad_arguments_name_the_argument() -> None:
    with pytest.raises(ValueError, match="`order` must be a permutation"):
        check_sampler("builtin:reference", order=("top_k", "top_p"))
    with pytest.raises(ValueError, match="`scale` must be in"):
        check_sampler("builtin:reference", scale=0.0)
    with pytest.raises(ValueError, match="`only` must name checks"):
        check_sampler("builtin:reference", only=["check_nothing"])
