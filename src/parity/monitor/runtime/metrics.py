"""The proxy's Prometheus metrics, in their own registry (no global state; several proxies per process work).

Names follow ``parity_<subsystem>_<name>_<unit>``: base units, ``_total`` on counters, labels of bounded
cardinality only (endpoint kind, status class, error reason, detector name, alert signal).

>>> m = ProxyMetrics()
>>> m.requests.labels(endpoint="chat", code_class="2xx").inc()
>>> b"parity_proxy_requests_total" in m.render()
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from parity._optional import import_optional

#: Buckets of the added-latency histogram, seconds: fine below the 2 ms goal, coarse above.
ADDED_LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1,
)  # fmt: skip


def endpoint_kind(path: str) -> str:
    """A bounded label for a request path.

    >>> endpoint_kind("/v1/chat/completions"), endpoint_kind("/v1/whatever/123")
    ('chat', 'other')
    """
    return {
        "/v1/chat/completions": "chat",
        "/v1/completions": "completions",
        "/v1/models": "models",
        "/v1/embeddings": "embeddings",
        "/v1/feedback": "feedback",
    }.get(path, "other")


class ProxyMetrics:
    """All metrics of one proxy, registered in :attr:`registry`."""

    def __init__(self) -> None:
        prom = import_optional("prometheus_client", extra="monitor")
        self._prom = prom
        self.registry = prom.CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = prom.Counter(
            "parity_proxy_requests", "Requests forwarded upstream.", ["endpoint", "code_class"], registry=r
        )
        self.upstream_errors = prom.Counter(
            "parity_proxy_upstream_errors",
            "Upstream answers with status >= 400 (passed through) or failures to reach it (reason=connect|timeout).",
            ["reason"],
            registry=r,
        )
        self.queue_depth = prom.Gauge(
            "parity_proxy_queue_depth", "Exchanges waiting for the scoring worker.", registry=r
        )
        self.spooled = prom.Counter(
            "parity_proxy_spooled_records", "Exchanges spooled to disk because the queue was full.", registry=r
        )
        self.spool_pending = prom.Gauge("parity_proxy_spool_pending", "Spooled exchanges not yet drained.", registry=r)
        self.records_written = prom.Counter("parity_proxy_records_written", "Records written to the store.", registry=r)
        self.worker_errors = prom.Counter(
            "parity_proxy_worker_errors", "Exchanges the worker could not turn into records.", ["stage"], registry=r
        )
        self.store_errors = prom.Counter(
            "parity_store_errors", "Store writes that failed (the batch went to the spool).", registry=r
        )
        self.spool_records = prom.Gauge(
            "parity_spool_records", "Items waiting in the disk spool (queue overflow and store failures).", registry=r
        )
        self.dropped = prom.Counter(
            "parity_monitor_dropped_records",
            "Records (or exchanges) lost because neither the store nor the spool could take them.",
            registry=r,
        )
        self.rejected = prom.Counter(
            "parity_monitor_rejected_exchanges",
            "Exchanges the worker could not parse or score (counted and logged, never stored).",
            registry=r,
        )
        self.worker_restarts = prom.Counter(
            "parity_monitor_worker_restarts", "Times the supervisor restarted the monitor worker.", registry=r
        )
        self.worker_alive = prom.Gauge("parity_monitor_worker_alive", "1 while the monitor worker runs.", registry=r)
        self.health = prom.Gauge(
            "parity_monitor_health_status", "Health of the monitor: 0 ok, 1 degraded, 2 failing.", registry=r
        )
        self.health_condition = prom.Gauge(
            "parity_monitor_health_condition",
            "1 while a health condition holds (see /parity/health for its reason).",
            ["condition"],
            registry=r,
        )
        self.refused = prom.Counter(
            "parity_proxy_refused_requests",
            "Requests the proxy answered itself without forwarding (reason=body_too_large|unauthorized|bad_request).",
            ["reason"],
            registry=r,
        )
        self.feedback = prom.Counter("parity_proxy_feedback_events", "Feedback events received.", ["kind"], registry=r)
        self.detector_flags = prom.Counter(
            "parity_detector_flags", "Responses flagged, per detector.", ["detector"], registry=r
        )
        self.open_alerts = prom.Gauge(
            "parity_monitor_open_alerts", "Open alarms (a signal on a segment), per signal.", ["signal"], registry=r
        )
        self.open_incidents = prom.Gauge(
            "parity_monitor_open_incidents", "Open incidents (alerts sharing a cause count once).", registry=r
        )
        self.alerts = prom.Counter(
            "parity_monitor_alerts",
            "Alerts a person is notified of: one per incident (one per fault), the alarm that opened it; per signal"
            " of that alarm.",
            ["signal"],
            registry=r,
        )
        self.alarms = prom.Counter(
            "parity_monitor_alarms",
            "Alarms raised (a signal on a segment), an incident's later ones included: its evidence, not new alerts.",
            ["signal"],
            registry=r,
        )
        self.added_latency = prom.Histogram(
            "parity_proxy_added_latency_seconds",
            "Time the proxy adds before the first response byte: handling before the upstream call plus after its"
            " response headers.",
            buckets=ADDED_LATENCY_BUCKETS,
            registry=r,
        )

    def count_flags(self, detectors: Iterable[str]) -> None:
        for d in detectors:
            self.detector_flags.labels(detector=d).inc()

    def set_open_alerts(self, counts: Mapping[str, int]) -> None:
        """Set the per-signal gauge; signals no longer alerting go to 0."""
        for metric in self.open_alerts.collect():
            for sample in metric.samples:
                signal = sample.labels.get("signal")
                if signal is not None and signal not in counts:
                    self.open_alerts.labels(signal=signal).set(0)
        for signal, n in counts.items():
            self.open_alerts.labels(signal=signal).set(n)

    def count_alarm(self, signal: str, *, opens_incident: bool) -> None:
        """Count one new alarm, and one alert a person is notified of when it opens its incident."""
        self.alarms.labels(signal=signal).inc()
        if opens_incident:
            self.alerts.labels(signal=signal).inc()

    def set_open_incidents(self, n: int) -> None:
        """Set the open-incident gauge (``parity.monitor.detection.incidents``: one per fault)."""
        self.open_incidents.set(n)

    def render(self) -> bytes:
        """The text exposition format."""
        out: bytes = self._prom.generate_latest(self.registry)
        return out

    @property
    def content_type(self) -> str:
        return str(self._prom.CONTENT_TYPE_LATEST)
