"""Prometheus metrics: own registry, naming rules, bounded labels."""

from __future__ import annotations

import re

from parity.monitor.runtime.metrics import ProxyMetrics, endpoint_kind


def test_registries_are_independent() -> None:
    a, b = ProxyMetrics(), ProxyMetrics()
    a.spooled.inc(3)
    assert b.spooled._value.get() == 0


def test_names_follow_the_conventions() -> None:
    m = ProxyMetrics()
    m.requests.labels(endpoint="chat", code_class="2xx").inc()
    m.count_flags(["unexpected_script", "unexpected_script", "degeneration"])
    m.added_latency.observe(0.0004)
    text = m.render().decode()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    for name in names:
        assert re.fullmatch(r"parity_(proxy|detector|monitor|store|spool)_[a-z_]+", name), name
    for family in m.registry.collect():
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name
    assert 'parity_detector_flags_total{detector="unexpected_script"} 2.0' in text
    assert 'parity_proxy_added_latency_seconds_bucket{le="0.0005"} 1.0' in text
    assert m.content_type.startswith("text/plain")


def test_open_alerts_gauge_resets_signals_that_cleared() -> None:
    m = ProxyMetrics()
    m.set_open_alerts({"unexpected_script": 2, "feedback_rate": 1})
    m.set_open_alerts({"feedback_rate": 1})
    text = m.render().decode()
    assert 'parity_monitor_open_alerts{signal="unexpected_script"} 0.0' in text
    assert 'parity_monitor_open_alerts{signal="feedback_rate"} 1.0' in text


def test_open_incidents_gauge() -> None:
    m = ProxyMetrics()
    m.set_open_incidents(2)
    assert "parity_monitor_open_incidents 2.0" in m.render().decode()


def test_endpoint_label_is_bounded() -> None:
    kinds = {endpoint_kind(f"/v1/files/{i}") for i in range(100)}
    assert kinds == {"other"}
