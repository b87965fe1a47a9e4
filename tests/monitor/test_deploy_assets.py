"""deploy/: the Grafana dashboard and the Prometheus rules query only metrics (and labels) parity exports.

The exported names come from a real :class:`ProxyMetrics` with every metric touched once, rendered in the text
exposition format and parsed back; the queries' metric names are parsed out of the PromQL expressions.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from parity.monitor.intake.otlp_receiver import ListSink, OTLPReceiver
from parity.monitor.intake.scoring import RecordBuilder
from parity.monitor.runtime.metrics import ProxyMetrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "parity-dashboard.json"
RULES = DEPLOY / "prometheus" / "parity-rules.yml"
#: Labels Prometheus adds to every scraped series, and the histogram bucket label.
TARGET_LABELS = frozenset({"job", "instance", "le"})
_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                       "offset", "inf", "nan"})  # fmt: skip
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def exported() -> dict[str, set[str]]:
    """Every series name a proxy renders (its OTLP receiver's included), with its label names."""
    metrics = ProxyMetrics()
    receiver = OTLPReceiver(RecordBuilder(salt="s"), ListSink(), registry=metrics.registry)
    for value in [*vars(metrics).values(), receiver.spans]:
        labelnames = getattr(value, "_labelnames", None)
        if labelnames is None:
            continue
        child = value.labels(**{name: "x" for name in labelnames}) if labelnames else value
        for method, arg in (("inc", 1), ("set", 1), ("observe", 0.001)):
            if hasattr(child, method):
                getattr(child, method)(arg)
                break
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def parse_promql(expr: str) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """(metric names, (metric, matcher label) pairs, grouping labels) named in a PromQL expression."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range selectors and subqueries
    matchers: list[tuple[str, str]] = []
    for m in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}", text):
        for label in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", m.group(2)):
            matchers.append((m.group(1) or "", label))
    text = re.sub(r"\{[^}]*\}", " ", text)
    grouping: list[str] = []
    for m in re.finditer(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text):
        grouping += [g.strip() for g in m.group(2).split(",") if g.strip()]
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\w+", " ", text)  # Grafana variables
    names = [
        m.group(0)
        for m in _IDENT.finditer(text)
        if m.group(0).lower() not in _KEYWORDS
        and not re.match(r"\s*\(", text[m.end() :])  # a function or aggregation
        and not (m.start() > 0 and (text[m.start() - 1].isdigit() or text[m.start() - 1] == "."))  # 1e3, 5m
    ]
    return names, matchers, grouping


def test_parse_promql_finds_metrics_matchers_and_groupings() -> None:
    names, matchers, grouping = parse_promql(
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{job=~"$job", x="{y}"}[5m]))) / on() group_left '
        "sum(rate(b_total[$__rate_interval] offset 1h)) > 1e3 unless absent(c)"
    )
    assert names == ["a_bucket", "b_total", "c"]
    assert matchers == [("a_bucket", "job"), ("a_bucket", "x")]
    assert grouping == ["le"]


def _dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    queries: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                queries.append((panel["title"], target["expr"]))
            walk(panel.get("panels", []))

    walk(board["panels"])
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            inner = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", var["query"]["query"])
            assert inner is not None, var
            queries.append((f"variable {var['name']}", f"{inner.group(1)}{{{inner.group(2)}!=''}}"))
    return queries


def _rule_queries() -> list[tuple[str, str]]:
    doc = yaml.safe_load(RULES.read_text())
    return [(rule["alert"], rule["expr"]) for group in doc["groups"] for rule in group["rules"]]


def _check(source: str, expr: str, names: dict[str, set[str]]) -> None:
    metrics, matchers, grouping = parse_promql(expr)
    assert metrics, f"{source}: no metric in {expr!r}"
    unknown = [m for m in metrics if m not in names]
    assert not unknown, f"{source}: {unknown} are not metrics parity exports ({sorted(names)})"
    for metric, label in matchers:
        assert metric, f"{source}: a selector without a metric name in {expr!r}"
        assert label in names[metric] | TARGET_LABELS, f"{source}: {metric} has no label {label!r}"
    available = set().union(*(names[m] for m in metrics)) | TARGET_LABELS
    missing = [g for g in grouping if g not in available]
    assert not missing, f"{source}: grouping by {missing}, labels no queried metric has"


def test_dashboard_queries_name_only_exported_metrics() -> None:
    names = exported()
    queries = _dashboard_queries()
    assert len(queries) >= 10
    for source, expr in queries:
        _check(source, expr, names)
    board = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"].lower() for p in board["panels"])
    for topic in ("open alerts", "detector", "spool", "worker", "latency", "otlp"):
        assert topic in titles


def test_alerting_rules_name_only_exported_metrics() -> None:
    names = exported()
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule
            assert rule["labels"]["severity"] in {"info", "warning", "critical"}
            assert rule["annotations"]["summary"]
            assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s"))
    queries = _rule_queries()
    assert len(queries) >= 6
    for source, expr in queries:
        _check(source, expr, names)


def test_the_checker_rejects_an_unknown_metric_and_label() -> None:
    names = exported()
    with pytest.raises(AssertionError, match="not metrics parity exports"):
        _check("probe", "rate(parity_proxy_requests[5m])", names)  # the counter's family name, not the series
    with pytest.raises(AssertionError, match="has no label 'segment'"):
        _check("probe", 'parity_monitor_open_alerts{segment="x"}', names)
    with pytest.raises(AssertionError, match="grouping by"):
        _check("probe", "sum by (pool) (parity_proxy_queue_depth)", names)
