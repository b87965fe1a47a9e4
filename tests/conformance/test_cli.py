"""`parity conform`: exit codes, JSON shape, --only, usage errors as one line."""

from __future__ import annotations

import json

from click.testing import CliRunner

from parity.cli import main


def _conform(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["conform", *args])
    return result.exit_code, result.stdout, result.stderr


def test_reference_is_conformant_exit_0() -> None:
    code, out, _ = _conform("builtin:reference", "--only", "greedy", "--scale", "0.05")
    assert code == 0
    assert "PASS check_greedy" in out
    assert "CONFORMANT" in out


def test_faulty_exit_1_with_counterexample() -> None:
    code, out, _ = _conform("builtin:mixed-precision-topp", "--only", "check_argmax_survival", "--scale", "0.05")
    assert code == 1
    assert "smallest failing input" in out
    assert "parity conform builtin:mixed-precision-topp --only check_argmax_survival" in out


def test_json_shape() -> None:
    code, out, _ = _conform("builtin:december-workaround", "--json", "--only", "edge_parameters", "--scale", "0.05")
    assert code == 1
    payload = json.loads(out)
    assert payload["conformant"] is False
    assert set(payload["checks"][0]) >= {"name", "passed", "detail"}


def test_module_callable_target() -> None:
    code, _, _ = _conform("parity.conformance.faulty:reference_filter", "--only", "greedy", "--scale", "0.05")
    assert code == 0


def test_usage_errors_are_one_line_exit_2() -> None:
    for args in (
        ["no.such.module:fn"],
        ["builtin:nothing"],
        ["nocolon"],
        ["parity.conformance.faulty:not_there"],
        ["builtin:reference", "--order", "top_k,top_p"],
        ["builtin:reference", "--only", "no_such_check"],
    ):
        code, out, err = _conform(*args)
        assert code == 2, args
        assert err.count("\n") == 1, (args, err)
        assert err.startswith("parity: error:"), (args, err)
        assert "Traceback" not in out + err


def test_third_party_builtins_are_filters_only() -> None:
    code, _, err = _conform("builtin:hf-warpers", "--kind", "sampler")
    assert code == 2
    assert "is a filter" in err
