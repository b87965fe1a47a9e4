"""The conformance kit as a pytest plugin: keep a sampler conformant in an engine's own CI.

``pip install parity`` registers this module under pytest's ``pytest11`` entry point (name ``parity``). It is
inert until asked: without ``--parity-sampler`` it only adds its options and the ``parity_conformance`` fixture.

From the command line, every check of :func:`parity.conformance.yield_checks` becomes its own test item, and a
failing item's message is the shrunk counterexample with its one-line reproduction::

    pytest --parity-sampler my_engine.sampling:top_p_filter --parity-framework torch --parity-order vllm
    pytest --parity-sampler builtin:approx-topk-10240 --parity-scale 0.1     # exits 1, with the repro

The targets are those of ``parity conform`` (``MODULE:CALLABLE``, ``builtin:NAME``); the options mirror its flags
(``--parity-kind``, ``--parity-framework``, ``--parity-order``, ``--parity-scale``, ``--parity-seed``,
``--parity-only``). Inside a project's tests, the fixture runs the kit on a callable and fails the test with the
report when it is not conformant::

    def test_my_sampler(parity_conformance):
        parity_conformance(my_filter, framework="torch")

The fixture's ``scale`` defaults to ``--parity-scale`` (1.0, the full-strength kit).

>>> sorted(ORDERS)
['default', 'llamacpp', 'vllm']
>>> parse_order("min_p, top_k, top_p")
('min_p', 'top_k', 'top_p')
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from parity._exceptions import ParityError
from parity.conformance._checks import Check, check_sampler, yield_checks
from parity.conformance._report import CheckResult, ConformanceReport
from parity.sampling import DEFAULT_ORDER, NAMED_ORDERS, parse_order

__all__ = ["ORDERS", "ConformanceCheckItem", "ConformanceFailed", "parity_conformance", "parse_order"]

#: Named filter orders accepted by ``--parity-order`` (those of ``parity conform --order``).
ORDERS = NAMED_ORDERS


class ConformanceFailed(Exception):
    """Raised by a conformance test item whose check failed; carries the :class:`CheckResult`."""

    def __init__(self, result: CheckResult) -> None:
        self.result = result
        super().__init__(result.render())


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("parity", "parity sampler conformance kit")
    group.addoption(
        "--parity-sampler",
        action="store",
        default=None,
        metavar="TARGET",
        help="Run the conformance kit on TARGET (MODULE:CALLABLE or builtin:NAME), one test item per check.",
    )
    group.addoption(
        "--parity-kind",
        choices=("filter", "sampler"),
        default=None,
        help="Protocol of the target (default: filter, or the builtin's own).",
    )
    group.addoption(
        "--parity-framework",
        choices=("numpy", "torch"),
        default=None,
        help="Arrays or tensors (default: numpy, or the builtin's own).",
    )
    group.addoption(
        "--parity-order",
        default="default",
        metavar="ORDER",
        help="The target's filter order after temperature: 'default' (top_k,top_p,min_p), 'vllm' "
        "(min_p,top_k,top_p), 'llamacpp' (top_k,top_p,min_p,temperature) or a comma-separated permutation.",
    )
    group.addoption(
        "--parity-scale",
        type=float,
        default=1.0,
        metavar="SCALE",
        help="Size of the statistical checks (1.0, the default, is the full-strength kit).",
    )
    group.addoption("--parity-seed", type=int, default=0, metavar="SEED", help="Seed of every generated case.")
    group.addoption(
        "--parity-only",
        action="append",
        default=[],
        metavar="CHECK",
        help="Run only this check (repeatable; the check_ prefix is optional).",
    )


class _ConformanceCollector(pytest.Collector):
    """The checks of one target, collected as items (built by :func:`pytest_collection_modifyitems`)."""

    def __init__(self, *, checks: Sequence[Check], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._checks = list(checks)

    def collect(self) -> list[pytest.Item]:
        return [ConformanceCheckItem.from_parent(self, name=check.__name__, check=check) for check in self._checks]


class ConformanceCheckItem(pytest.Item):
    """One conformance check as a pytest item; a failure reports the shrunk counterexample, not a traceback."""

    def __init__(self, *, check: Check, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check

    def runtest(self) -> None:
        result = self.check()
        if not result.passed:
            raise ConformanceFailed(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ConformanceFailed):
            return str(excinfo.value)
        if isinstance(excinfo.value, ParityError):
            return f"parity: error: {excinfo.value}"
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[str, int | None, str]:
        return self.parent.name if self.parent else "parity-conformance", None, self.name


def _checks_from_options(config: pytest.Config) -> list[Check]:
    target: str = config.getoption("parity_sampler")
    if os.getcwd() not in sys.path:  # MODULE:CALLABLE may name a module in the working directory
        sys.path.insert(0, os.getcwd())
    checks = list(
        yield_checks(
            target,
            kind=config.getoption("parity_kind"),
            framework=config.getoption("parity_framework"),
            order=parse_order(config.getoption("parity_order")),
            scale=config.getoption("parity_scale"),
            seed=config.getoption("parity_seed"),
        )
    )
    only = {n if n.startswith("check_") else f"check_{n}" for n in config.getoption("parity_only")}
    unknown = only - {c.__name__ for c in checks}
    if unknown:
        names = ", ".join(c.__name__ for c in checks)
        raise pytest.UsageError(f"--parity-only {sorted(unknown)[0]!r} is not a check of this kind ({names})")
    return [c for c in checks if not only or c.__name__ in only]


@pytest.hookimpl(tryfirst=True)  # before pytest's own -k/-m deselection, which then applies to these items too
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("parity_sampler", None) is None:
        return
    try:
        checks = _checks_from_options(config)
    except ParityError as err:
        raise pytest.UsageError(f"--parity-sampler: {err}") from None
    name = f"parity-conformance[{config.getoption('parity_sampler')}]"
    collector = _ConformanceCollector.from_parent(session, name=name, nodeid=name, checks=checks)
    # collected through the hooks, so that the terminal counts the items and -k/-m/--deselect see them
    report = collector.ihook.pytest_make_collect_report(collector=collector)
    collector.ihook.pytest_collectreport(report=report)
    items.extend(item for item in report.result if isinstance(item, pytest.Item))


@pytest.fixture
def parity_conformance(request: pytest.FixtureRequest) -> Callable[..., ConformanceReport]:
    """Run the conformance kit on an implementation; fail the test with the report when it is not conformant.

    Call it as ``parity_conformance(impl, *, kind=None, framework=None, order=DEFAULT_ORDER, scale=None,
    seed=0, only=None)``; ``impl`` is a callable or a target string, ``scale`` defaults to ``--parity-scale``.
    It returns the :class:`ConformanceReport` when every check passed.
    """
    default_scale = float(request.config.getoption("parity_scale", 1.0))

    def run(
        impl: Any,
        *,
        kind: str | None = None,
        framework: str | None = None,
        order: Sequence[str] | str = DEFAULT_ORDER,
        scale: float | None = None,
        seed: int = 0,
        only: Sequence[str] | None = None,
    ) -> ConformanceReport:
        wanted = None if only is None else [n if n.startswith("check_") else f"check_{n}" for n in only]
        report = check_sampler(
            impl,
            kind=kind,  # type: ignore[arg-type]
            framework=framework,  # type: ignore[arg-type]
            order=parse_order(order) if isinstance(order, str) else order,
            scale=default_scale if scale is None else scale,
            seed=seed,
            only=wanted,
        )
        if not report.conformant:
            pytest.fail(report.render(), pytrace=False)
        return report

    return run
