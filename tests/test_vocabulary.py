"""Each word of the house is defined once (issue 17): a second definition drifts, as two OFF_KINDS lists did.

These read the package's source (its syntax trees), so they fail the moment someone writes a second one.
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
from pathlib import Path

import pytest

import parity
from parity._change import OFF_KINDS, Change
from parity._exceptions import ParityError
from parity.sampling import FILTERS, SamplingParams

SRC = Path(parity.__file__).parent


@functools.cache
def _modules() -> tuple[tuple[str, ast.Module], ...]:
    return tuple(
        (str(path.relative_to(SRC)), ast.parse(path.read_text(encoding="utf-8"))) for path in sorted(SRC.rglob("*.py"))
    )


def _where(predicate: type[ast.AST], test: object) -> list[str]:
    return [
        f"{name}:{node.lineno}"
        for name, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, predicate) and test(node)  # type: ignore[operator]
    ]


def test_one_change_class_and_one_set_of_off_kinds() -> None:
    assert [where.split(":")[0] for where in _where(ast.ClassDef, lambda n: n.name == "Change")] == ["_change.py"]
    assigned = _where(
        ast.Assign, lambda n: any(isinstance(t, ast.Name) and t.id == "OFF_KINDS" for t in n.targets)
    ) + _where(ast.AnnAssign, lambda n: isinstance(n.target, ast.Name) and n.target.id == "OFF_KINDS")
    assert [where.split(":")[0] for where in assigned] == ["_change.py"]
    assert {"rollback", "fix", "revert"} <= OFF_KINDS
    from parity.lab.changelog import OFF_KINDS as lab_off
    from parity.lab.changelog import Change as LabChange
    from parity.monitor import Change as MonitorChange

    assert lab_off is OFF_KINDS
    assert LabChange is MonitorChange is Change


def test_filter_orders_are_spelled_only_in_sampling_params() -> None:
    def is_order(node: ast.Tuple) -> bool:
        names = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        return len(names) == len(node.elts) and sorted(n for n in names if n != "temperature") == sorted(FILTERS)

    spelled = {where.split(":")[0] for where in _where(ast.Tuple, is_order)}
    assert spelled == {"sampling/_params.py"}


def test_the_top_p_rule_is_checked_only_in_sampling_params() -> None:
    """Nothing but parity.sampling raises about `top_p` (every other bundle is a SamplingParams or builds one)."""

    def raises_about_top_p(node: ast.Call) -> bool:
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        first = node.args[0] if node.args else None
        return (
            name in {"InvalidInputError", "APIError", "_bad"}
            and isinstance(first, ast.Constant)
            and str(first.value).endswith("top_p")
        )

    assert {where.split(":")[0] for where in _where(ast.Call, raises_about_top_p)} == {"sampling/_params.py"}


def test_bundles_of_sampling_parameters_are_sampling_params() -> None:
    from parity.conformance import Params
    from parity.lab._openai import ParsedRequest, parse_request

    assert Params is SamplingParams
    parsed = parse_request({"model": "S", "prompt": "x", "top_p": 0.5, "top_k": 3}, chat=False)
    assert isinstance(parsed.sampling, SamplingParams)
    assert not {"top_p", "top_k", "min_p"} & set(inspect.get_annotations(ParsedRequest))
    # the engine's request (torch is not imported here): its fields are read from its class body
    [engine_request] = _where(ast.ClassDef, lambda n: n.name == "GenerationRequest")
    tree = ast.parse((SRC / "lab/engine.py").read_text(encoding="utf-8"))
    body = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "GenerationRequest")
    fields = {n.target.id for n in body.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    assert "sampling" in fields, engine_request
    assert not {"temperature", "top_p", "top_k", "min_p"} & fields


def test_times_are_parsed_only_by_parity_time() -> None:
    def parses_iso(node: ast.Call) -> bool:
        return isinstance(node.func, ast.Attribute) and node.func.attr in {"fromisoformat", "strptime"}

    found = {where.split(":")[0] for where in _where(ast.Call, parses_iso)}
    # date.fromisoformat of a calendar day (no time, no zone) in the demo's scripted calendar is not a timestamp
    assert found - {"cli/demo.py", "demo/timeline.py"} == {"_time.py"}


def test_public_exceptions_are_in_the_parity_error_tree() -> None:
    from parity.lab._batcher import QueueFullError
    from parity.lab._openai import APIError

    assert issubclass(APIError, ParityError)
    assert issubclass(QueueFullError, ParityError)
    assert APIError.__module__ == QueueFullError.__module__ == "parity._exceptions"


@pytest.mark.parametrize("path", ["compare/_runner.py", "monitor/intake/scoring.py", "lab/engine.py", "cli/lab.py"])
def test_imports_of_parity_modules_are_plain(path: str) -> None:
    """``importlib`` hides an import from mypy and the import contracts; parity's own modules are imported plainly."""
    source = (SRC / path).read_text(encoding="utf-8")
    assert 'import_module("parity.' not in source
    assert 'import_optional("parity.' not in source


PACKAGES = sorted(p.parent.name for p in SRC.glob("*/__init__.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_has_one_curated_public_surface(package: str) -> None:
    """Each package's ``__init__`` declares ``__all__``; it names no private module or name (names are read
    from the source, so the lab's lazily imported engine and torch stay unloaded)."""
    tree = dict(_modules())[f"{package}/__init__.py"]
    declared = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
    ]
    assert len(declared) == 1, f"parity.{package} must declare __all__ once"
    names = ast.literal_eval(declared[0])
    assert not [n for n in names if n.startswith("_") and n != "__version__"]
    imported_from = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("parity.")
    }
    # a package re-exports from its own modules (and the shared exceptions), never another package's internals
    foreign = {m for m in imported_from if not m.startswith(f"parity.{package}") and m != "parity._exceptions"}
    assert all(not part.startswith("_") for m in foreign for part in m.split(".")[1:]), foreign


def test_internals_stay_out_of_the_public_surfaces() -> None:
    import parity.conformance
    import parity.sampling

    for internal in ("HIST_BUCKETS", "HIST_SCALE", "mass_guard", "canonical_topp_level"):
        assert internal not in parity.sampling.__all__
    for internal in ("HEAVY_CHECKS", "ONE_HOT_VOCAB", "GOF_DRAWS"):
        assert internal not in parity.conformance.__all__


def test_the_context_class_is_decided_in_one_place() -> None:
    """``context_class_of`` (the short/long split) is called only by the record builder (at the configured split)
    and by ``Record`` itself (the default, for a record built without one); every other stage reads
    ``Record.context_class``. Nothing but ``context_class_of`` compares context tokens with a threshold, and nothing
    but the builder writes ``context_class`` (positionally, or by key for a stored record that lacks one)."""

    def calls_split(node: ast.Call) -> bool:
        f = node.func
        return (isinstance(f, ast.Name) and f.id == "context_class_of") or (
            isinstance(f, ast.Attribute) and f.attr == "context_class_of"
        )

    def sets_class(node: ast.keyword) -> bool:  # replace(record, context_class=...), Record(..., context_class=...)
        return node.arg == "context_class"

    def writes_class_key(node: ast.Assign) -> bool:  # values["context_class"] = ...
        return any(
            isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant) and t.slice.value == "context_class"
            for t in node.targets
        )

    def compares_tokens(node: ast.Compare) -> bool:  # e.g. record.context_tokens > threshold
        sides = [node.left, *node.comparators]
        names = {s.attr if isinstance(s, ast.Attribute) else getattr(s, "id", "") for s in sides}
        return "context_tokens" in names and any("threshold" in n or "long_context" in n for n in names)

    callers = {where.split(":")[0] for where in _where(ast.Call, calls_split)}
    assert callers == {"monitor/_records.py", "monitor/intake/scoring.py"}
    # the builder fills records positionally (``record_of``: its one ``context_class_of`` call above) and a stored
    # record's missing class by key (``adopt``); the SQL stores' row reader only turns a NULL stored class into ""
    # (the record default's cue); nothing anywhere sets it by keyword
    assert _where(ast.keyword, sets_class) == []
    keyed = {where.split(":")[0] for where in _where(ast.Assign, writes_class_key)}
    assert keyed == {"monitor/intake/scoring.py", "monitor/storage/_record_rows.py"}
    assert [where.split(":")[0] for where in _where(ast.Compare, compares_tokens)] == ["monitor/_records.py"]
    # the split itself is the builder's: nothing else reads it off a builder to hand it on (a second builder for
    # another source takes it with every other setting, ``RecordBuilder.for_source``)
    reads_split = _where(ast.Attribute, lambda n: n.attr == "long_context_tokens")
    assert {where.split(":")[0] for where in reads_split} == {"monitor/intake/scoring.py"}


#: Phrases that call a per-stream sequential test (the CUSUM of ``parity.stats.sequential``) a "detector".
CUSUM_AS_DETECTOR = re.compile(
    r"sequential (change )?detector|change detector|per-(segment|stream) detector|stream's detector"
    r"|detectors? (restarts?|alarm)|detector of every|^Detector = ",
    re.IGNORECASE | re.MULTILINE,
)


def test_detector_means_the_per_response_scorer() -> None:
    """A *detector* scores one response (``parity.detectors``, ``parity.monitor.intake.scoring``); what watches a
    (signal, segment) stream over time is a *sequential test* (``parity.stats.sequential``). The source and the
    docs never call the second a detector."""
    texts = {str(p.relative_to(SRC)): p.read_text(encoding="utf-8") for p in SRC.rglob("*.py")}
    root = SRC.parents[1]
    texts |= {
        str(p.relative_to(root)): p.read_text(encoding="utf-8")
        for p in [root / "README.md", *root.glob("docs/**/*.md")]
    }
    found = sorted(f"{name}: {m.group(0)!r}" for name, text in texts.items() for m in CUSUM_AS_DETECTOR.finditer(text))
    assert found == []
    # nor in code: nothing the sequential statistics define (a class, a function, a method) is named a detector
    named = _where(ast.ClassDef, lambda n: "detector" in n.name.lower()) + _where(
        ast.FunctionDef, lambda n: "detector" in n.name.lower()
    )
    assert [w for w in named if w.startswith(("stats/", "monitor/detection/"))] == []
