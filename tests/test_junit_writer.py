"""parity._junit: the JUnit XML writer's structure (counts match the cases), escaping and errors."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from parity._exceptions import InvalidInputError
from parity._junit import JUnitCase, write_junit, write_junit_error


def check_junit_structure(path: Path) -> ET.Element:
    """Parse ``path`` and check what JUnit consumers rely on; return the ``<testsuite>``."""
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    cases = suite.findall("testcase")
    failed = [c for c in cases if c.find("failure") is not None]
    errored = [c for c in cases if c.find("error") is not None]
    skipped = [c for c in cases if c.find("skipped") is not None]
    for node in (root, suite):
        assert int(node.get("tests", "-1")) == len(cases)
        assert int(node.get("failures", "-1")) == len(failed)
        assert int(node.get("skipped", "-1")) == len(skipped)
        assert int(node.get("errors", "-1")) == len(errored)
        assert float(node.get("time", "nan")) >= 0
    for case in cases:
        assert case.get("name")
        assert case.get("classname")
        assert float(case.get("time", "nan")) >= 0
        assert not (case.find("failure") is not None and case.find("skipped") is not None)
    for case in failed:
        assert case.find("failure").get("message")  # type: ignore[union-attr]
    return suite


def test_counts_properties_and_escaping(tmp_path: Path) -> None:
    cases = [
        JUnitCase("a <b> & 'c'", "parity.x", properties={"pvalue": 0.25, "n": 3, "ok": True, "none": None}),
        JUnitCase("failing", "parity.x", failure='differs: "p" < 0.05', failure_text="line 1\nline 2 <&>"),
        JUnitCase("skipped", "parity.x", skipped="no logprobs"),
        JUnitCase("nan", "parity.x", properties={"effect": math.nan}),
    ]
    path = write_junit(tmp_path / "out.xml", "suite", cases, time_s=2.5, properties={"seed": 7})
    assert path.read_text().startswith('<?xml version="1.0" encoding="UTF-8"?>')
    suite = check_junit_structure(path)
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "1")
    first = suite.find("testcase")
    assert first is not None
    assert first.get("name") == "a <b> & 'c'"
    props = {p.get("name"): p.get("value") for p in first.iter("property")}
    assert props == {"pvalue": "0.25", "n": "3", "ok": "true", "none": ""}
    failure = suite.find("testcase[@name='failing']/failure")
    assert failure is not None
    assert failure.get("message") == 'differs: "p" < 0.05'
    assert failure.text == "line 1\nline 2 <&>"
    assert suite.find("properties/property[@name='seed']").get("value") == "7"  # type: ignore[union-attr]


def test_unwritable_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="`junit_xml` must be a writable file path"):
        write_junit(tmp_path / "missing" / "out.xml", "suite", [])


def test_an_error_case_counts_as_an_error(tmp_path: Path) -> None:
    write_junit_error(tmp_path / "err.xml", "parity compare", "parity.compare", "endpoint unreachable")
    suite = check_junit_structure(tmp_path / "err.xml")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "0", "1")
    assert suite.find("testcase/error").get("message") == "endpoint unreachable"  # type: ignore[union-attr]
    write_junit_error(tmp_path / "missing" / "err.xml", "s", "c", "m")  # an unwritable path: nothing raised
