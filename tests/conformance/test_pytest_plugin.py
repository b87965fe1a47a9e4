"""The pytest plugin: ``pytest --parity-sampler TARGET`` and the ``parity_conformance`` fixture.

The inner pytest runs are in-process (pytester), which unloads every module first imported during a run; the
kit and its numpy/scipy extension modules are imported here first so that they stay loaded.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

import parity.conformance.pytest_plugin  # noqa: F401  (see the module docstring)

pytest_plugins = ["pytester"]

# Once parity is installed, pytest loads the plugin from its ``pytest11`` entry point; before that (a source
# checkout on PYTHONPATH), the inner runs load it by module name. Loading it twice would be an error.
_INSTALLED = any(ep.name == "parity" for ep in entry_points(group="pytest11"))
_LOAD = () if _INSTALLED else ("-p", "parity.conformance.pytest_plugin")
_SMALL = ("--parity-scale", "0.05")


def test_approx_topk_fails_with_the_shrunk_repro(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(
        *_LOAD,
        "--parity-sampler",
        "builtin:approx-topk-10240",
        *_SMALL,
        "--parity-only",
        "one_hot_large_vocab",
        "--parity-only",
        "check_greedy",
        "--parity-only",
        "top_k_properties",
        "--parity-only",
        "edge_parameters",
        "-k",
        "not edge_parameters",  # the items are selectable like any other
    )
    result.assert_outcomes(passed=1, failed=2, deselected=1)
    result.stdout.fnmatch_lines(["collected 4 items / 1 deselected / 3 selected"])
    result.stdout.fnmatch_lines(["FAILED parity-conformance[[]builtin:approx-topk-10240[]]::check_greedy*"])
    out = result.stdout.str()
    assert "smallest failing input" in out
    assert "all 0 except [10240]=1" in out  # the postmortem's one-hot repro, shrunk
    assert "from parity.conformance import replay; replay(" in out
    assert "parity conform builtin:approx-topk-10240 --only check_one_hot_large_vocab" in out
    assert "Traceback" not in out
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_reference_passes_every_check(pytester: pytest.Pytester) -> None:
    from parity.conformance import filter_check_names

    result = pytester.runpytest(*_LOAD, "--parity-sampler", "builtin:reference", *_SMALL, "-v")
    result.assert_outcomes(passed=len(filter_check_names()))
    for name in filter_check_names():
        result.stdout.fnmatch_lines([f"*{name} PASSED*"])
    assert result.ret == pytest.ExitCode.OK


def test_sampler_kind_and_order_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(
        *_LOAD,
        "--parity-sampler",
        "builtin:reference",
        "--parity-kind",
        "sampler",
        "--parity-order",
        "default",
        *_SMALL,
        "--parity-only",
        "sampler_determinism",
        "-v",
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*check_sampler_determinism PASSED*"])


def test_fixture_in_a_project_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_parity_plugin_engine="""
        from parity.conformance.faulty import BUILTINS

        def test_reference(parity_conformance):
            report = parity_conformance(BUILTINS["reference"], only=["greedy"], scale=0.05)
            assert report.conformant

        def test_workaround(parity_conformance):
            parity_conformance("builtin:december-workaround", only=["edge_parameters"], scale=0.05)
        """
    )
    result = pytester.runpytest(*_LOAD)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*FAIL check_edge_parameters*", "*NOT CONFORMANT*"])


def test_inert_without_the_option(pytester: pytest.Pytester) -> None:
    """Loaded (as by the entry point) in a fresh process with warnings as errors, it adds no item and no warning."""
    pytester.makepyfile(test_plain="def test_one():\n    assert True\n")
    result = pytester.runpytest_subprocess(*_LOAD, "-W", "error")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*parity-conformance*")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--parity-sampler", "builtin:nothing"), "unknown builtin 'nothing'"),
        (("--parity-sampler", "no.such.module:fn"), "cannot import module 'no.such.module'"),
        (("--parity-sampler", "builtin:reference", "--parity-order", "top_k,top_p"), "`order` must be a permutation"),
        (("--parity-sampler", "builtin:reference", "--parity-only", "nope"), "'check_nope' is not a check"),
    ],
)
def test_usage_errors_name_the_problem(pytester: pytest.Pytester, args: tuple[str, ...], message: str) -> None:
    result = pytester.runpytest(*_LOAD, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    assert "Traceback" not in result.stderr.str()
