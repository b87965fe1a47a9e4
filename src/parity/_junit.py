"""JUnit XML, the report format CI systems (GitLab, Jenkins, GitHub Actions reporters, Buildkite) show natively.

One :class:`JUnitCase` per statistical test or conformance check; :func:`junit_xml` renders a ``<testsuites>``
document with one ``<testsuite>`` whose ``tests``/``failures``/``skipped`` counts are computed from the cases,
and :func:`write_junit` writes it (UTF-8, with an XML declaration). A failed case carries a ``<failure>`` element
with a one-line ``message`` and the full text, a case that could not run an ``<error>``; numbers such as p-values
go in ``<properties>``.

>>> ok = JUnitCase("check_greedy", "parity.conform", properties={"rows": 40})
>>> bad = JUnitCase("loglik-shift", "parity.compare", failure="differs", failure_text="p=0.001 < alpha")
>>> text = junit_xml("demo", [ok, bad], time_s=1.5)
>>> import xml.etree.ElementTree as ET
>>> suite = ET.fromstring(text).find("testsuite")
>>> suite.get("tests"), suite.get("failures"), suite.get("skipped")
('2', '1', '0')
>>> suite.find("testcase[@name='loglik-shift']/failure").get("message")
'differs'
"""

from __future__ import annotations

import contextlib
import math
import socket
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from parity._exceptions import InvalidInputError, ParityError

__all__ = ["JUnitCase", "junit_xml", "write_junit", "write_junit_error"]

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class JUnitCase:
    """One ``<testcase>``: a name, a class name (the suite's tool), an outcome and its properties."""

    name: str
    classname: str
    #: One-line failure message; ``None`` when the case passed (or was skipped).
    failure: str | None = None
    #: The failure's full text (the element's body).
    failure_text: str = ""
    #: Why the case was skipped; ``None`` when it ran.
    skipped: str | None = None
    #: Why the case could not run at all (an unreachable endpoint, a bad target): an ``<error>``, not a finding.
    error: str | None = None
    time_s: float = 0.0
    properties: Mapping[str, Scalar] = field(default_factory=dict)
    #: Text for the case's ``<system-out>`` (details of a pass).
    output: str = ""


def _text(value: Scalar) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else str(value))
    return str(value)


def _properties(parent: ET.Element, values: Mapping[str, Scalar]) -> None:
    if not values:
        return
    props = ET.SubElement(parent, "properties")
    for key, value in values.items():
        ET.SubElement(props, "property", name=key, value=_text(value))


def junit_xml(
    suite: str,
    cases: Sequence[JUnitCase],
    *,
    time_s: float = 0.0,
    properties: Mapping[str, Scalar] | None = None,
    timestamp: datetime | None = None,
) -> str:
    """The JUnit XML document of one suite, as text."""
    errors = sum(1 for c in cases if c.error is not None)
    failures = sum(1 for c in cases if c.failure is not None and c.error is None)
    skipped = sum(1 for c in cases if c.skipped is not None and c.failure is None and c.error is None)
    counts = {"tests": str(len(cases)), "failures": str(failures), "errors": str(errors), "skipped": str(skipped)}
    total = f"{max(time_s, 0.0):.3f}"
    root = ET.Element("testsuites", {"name": suite, "time": total, **counts})
    stamp = (timestamp or datetime.now(UTC)).isoformat(timespec="seconds")
    node = ET.SubElement(root, "testsuite", name=suite, time=total, timestamp=stamp, hostname=socket.gethostname())
    for key, value in counts.items():
        node.set(key, value)
    _properties(node, properties or {})
    for case in cases:
        element = ET.SubElement(
            node, "testcase", name=case.name, classname=case.classname, time=f"{max(case.time_s, 0.0):.3f}"
        )
        _properties(element, case.properties)
        if case.error is not None:
            ET.SubElement(element, "error", message=case.error, type="parity").text = case.error
        elif case.failure is not None:
            failure = ET.SubElement(element, "failure", message=case.failure, type="parity")
            failure.text = case.failure_text or case.failure
        elif case.skipped is not None:
            ET.SubElement(element, "skipped", message=case.skipped)
        if case.output:
            ET.SubElement(element, "system-out").text = case.output
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=False)


def write_junit(
    path: str | Path,
    suite: str,
    cases: Sequence[JUnitCase],
    *,
    time_s: float = 0.0,
    properties: Mapping[str, Scalar] | None = None,
) -> Path:
    """Write :func:`junit_xml` to ``path`` (parent folders must exist); returns the path.

    An unwritable path is an :class:`~parity.InvalidInputError` naming ``junit_xml``.
    """
    target = Path(path)
    text = '<?xml version="1.0" encoding="UTF-8"?>\n' + junit_xml(suite, cases, time_s=time_s, properties=properties)
    try:
        target.write_text(text + "\n", encoding="utf-8")
    except OSError as err:
        raise InvalidInputError("junit_xml", "must be a writable file path", str(target), detail=str(err)) from err
    return target


def write_junit_error(path: str | Path, suite: str, classname: str, message: str) -> None:
    """Write a one-case suite whose case is an ``<error>`` (the run could not happen); never raises.

    Used by the CLI on exit status 2 so that a pipeline's test report shows why, instead of a missing file.
    """
    # an unwritable path is ignored: the one-line error on stderr already says why the run stopped
    with contextlib.suppress(ParityError):
        write_junit(path, suite, [JUnitCase(suite, classname, error=message)])
