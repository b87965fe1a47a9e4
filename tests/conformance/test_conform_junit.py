"""``parity conform --junit-xml``: one test case per check, the shrunk repro in a failure."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from click.testing import CliRunner

from parity.cli import main


def test_conform_junit_xml_one_case_per_check(tmp_path: Path) -> None:
    out = tmp_path / "conform.xml"
    args = ["conform", "builtin:approx-topk-10240", "--scale", "0.05", "--junit-xml", str(out)]
    args += ["--only", "greedy", "--only", "top_k_properties", "--only", "inf_rows"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    suite = ET.parse(out).getroot().find("testsuite")
    assert suite is not None
    names = [c.get("name") for c in suite.iter("testcase")]
    assert names == ["check_greedy", "check_top_k_properties", "check_inf_rows"]
    counts = (suite.get("tests"), suite.get("failures"), suite.get("skipped"), suite.get("errors"))
    assert counts == ("3", "1", "0", "0")
    failure = suite.find("testcase[@name='check_greedy']/failure")
    assert failure is not None
    assert failure.get("message", "").startswith("case ")
    assert "smallest failing input" in (failure.text or "")
    assert "parity conform builtin:approx-topk-10240 --only check_greedy" in (failure.text or "")
    props = {p.get("name"): p.get("value") for p in suite.find("properties").iter("property")}  # type: ignore[union-attr]
    assert props["target"] == "builtin:approx-topk-10240"
    assert props["conformant"] == "false"
    assert props["order"] == "top_k,top_p,min_p"


def test_conform_junit_xml_for_a_pass(tmp_path: Path) -> None:
    out = tmp_path / "conform.xml"
    result = CliRunner().invoke(
        main, ["conform", "builtin:reference", "--only", "greedy", "--scale", "0.05", "--junit-xml", str(out)]
    )
    assert result.exit_code == 0
    suite = ET.parse(out).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("1", "0")
    assert "rows" in (suite.findtext("testcase/system-out") or "")


def test_conform_junit_xml_unwritable_is_a_usage_error(tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "dir.xml"
    result = CliRunner().invoke(
        main, ["conform", "builtin:reference", "--only", "greedy", "--scale", "0.05", "--junit-xml", str(out)]
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("parity: error: `junit_xml` must be a writable file path")


def test_conform_junit_xml_reports_a_usage_error_as_an_error_case(tmp_path: Path) -> None:
    out = tmp_path / "conform.xml"
    result = CliRunner().invoke(main, ["conform", "builtin:nothing", "--junit-xml", str(out)])
    assert result.exit_code == 2
    suite = ET.parse(out).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "0", "1")
    error = suite.find("testcase/error")
    assert error is not None
    assert "unknown builtin 'nothing'" in error.get("message", "")
