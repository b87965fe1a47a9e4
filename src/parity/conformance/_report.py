"""Named results of the conformance kit: one :class:`CheckResult` per check, one :class:`ConformanceReport` per run.

>>> ok = CheckResult("check_argmax_survival", True, "2400 rows: the argmax survived in every row")
>>> report = ConformanceReport("builtin:reference", "filter", "numpy", ("top_k", "top_p", "min_p"), [ok])
>>> report.conformant
True
>>> report.to_dict()["checks"][0]["name"]
'check_argmax_survival'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["CheckResult", "ConformanceReport", "Counterexample"]


@dataclass(frozen=True)
class Counterexample:
    """The smallest failing input found by shrinking, what was expected, what came back, and how to rerun it."""

    #: The check that failed.
    check: str
    #: The failing input in words: batch size, vocabulary size, the row's values, the parameters.
    input: str
    #: What a correct implementation does with that input.
    expected: str
    #: What the implementation did.
    got: str
    #: A one-line shell command that replays exactly this input against the implementation.
    reproduce: str
    #: The same failure through the CLI (``parity conform TARGET --only CHECK``).
    reproduce_cli: str
    #: How many shrinking steps made the input smaller.
    shrink_steps: int = 0

    def render(self) -> str:
        """The failure report as indented text lines."""
        return "\n".join(
            [
                f"  smallest failing input ({self.shrink_steps} shrinking steps): {self.input}",
                f"  expected: {self.expected}",
                f"  got:      {self.got}",
                f"  reproduce: {self.reproduce}",
                f"         or: {self.reproduce_cli}",
            ]
        )


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one named check: ``passed``, a one-paragraph ``detail``, and a counterexample on failure."""

    name: str
    passed: bool
    detail: str
    counterexample: Counterexample | None = None

    def render(self) -> str:
        """``PASS name: detail`` plus the counterexample, as text."""
        head = f"{'PASS' if self.passed else 'FAIL'} {self.name}: {self.detail}"
        return head if self.counterexample is None else head + "\n" + self.counterexample.render()


@dataclass(frozen=True)
class ConformanceReport:
    """Every check's result for one implementation; ``conformant`` when all passed."""

    target: str
    kind: str
    framework: str
    order: tuple[str, ...]
    results: list[CheckResult] = field(default_factory=list)

    @property
    def conformant(self) -> bool:
        """True when every check passed (and at least one ran)."""
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        """The failed checks, in run order."""
        return [r for r in self.results if not r.passed]

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` shape: ``{"conformant": bool, "checks": [{"name", "passed", "detail"}]}`` (+ extras)."""
        checks: list[dict[str, Any]] = []
        for r in self.results:
            entry: dict[str, Any] = {"name": r.name, "passed": r.passed, "detail": r.detail}
            if r.counterexample is not None:
                c = r.counterexample
                entry["counterexample"] = {
                    "input": c.input,
                    "expected": c.expected,
                    "got": c.got,
                    "reproduce": c.reproduce,
                    "reproduce_cli": c.reproduce_cli,
                }
            checks.append(entry)
        return {
            "conformant": self.conformant,
            "target": self.target,
            "kind": self.kind,
            "framework": self.framework,
            "order": list(self.order),
            "checks": checks,
        }

    def render(self) -> str:
        """The whole report as text: one line per check, counterexamples under the failures, a verdict line."""
        lines = [r.render() for r in self.results]
        n = len(self.failures)
        verdict = "CONFORMANT" if self.conformant else f"NOT CONFORMANT ({n} check{'' if n == 1 else 's'} failed)"
        lines.append(f"{self.target}: {verdict}")
        return "\n".join(lines)
