"""The incident replay: the lab fleet, the proxy and the monitor on an embedded store, driven day by simulated day.

Order of one run (:meth:`IncidentReplay.run`):

1. a fresh DuckDB store; the lab fleet (``incident.toml``, every model on SmolLM2-135M-Instruct by default) as a
   child process on 127.0.0.1 (:class:`~parity.demo.lab_process.LabProcess`); the monitoring proxy in front of it,
   in this process, with a :class:`~parity.monitor.detection.pipeline.SegmentMonitor` sized for the replay's traffic,
   the lab's change log as its change source, the simulated clock, and the dashboard mounted at ``/dashboard``;
2. for each simulated day: the day is cut at the times of its scripted changes; each piece gets its share of the
   day's requests from the lab's traffic generator (sessions, follow-ups, the prompt mix, feedback, logprobs)
   *through the proxy*, with the clock moved along the piece as requests complete; at each cut the change is posted
   to the lab's ``POST /admin/changes`` (stamped with its simulated time) and reaches the monitor through the
   proxy's change-log poll;
3. when the last day is done and the proxy idle: the summary (:mod:`parity.demo.summary`) from the store.

Nothing here looks inside the lab: faults are configuration posted over HTTP, records come from the proxy's view of
the traffic, and the monitor learns about changes from the change log like any deploy system's.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from parity._background_server import BackgroundServer
from parity._exceptions import EndpointError, InvalidInputError, ParityError
from parity.demo.clock import SimulatedClock
from parity.demo.lab_process import LabProcess
from parity.demo.summary import DemoSummary, summarize
from parity.demo.timeline import ScriptedChange, Timeline, incident_timeline
from parity.monitor import Alert, Change
from parity.monitor.detection.pipeline import MonitorConfig, SegmentMonitor
from parity.monitor.detection.segments import StatsConfig
from parity.monitor.intake.changes import CHANGES_PATH, changes_from_json
from parity.monitor.intake.proxy import ParityProxy, ProxyConfig
from parity.monitor.intake.scoring import RecordBuilder, default_scorer
from parity.monitor.storage.store import DuckDBStore, session_salt

__all__ = [
    "DEMO_BUSY_DAYS",
    "DEMO_MAX_TOKENS",
    "DEMO_MODEL_SHARES",
    "DEMO_PROMPT_SHARES",
    "DEMO_QUIET_REQUESTS_PER_DAY",
    "DEMO_REQUESTS_PER_DAY",
    "DEMO_WARMUP",
    "DEMO_WEIGHTS",
    "DayReport",
    "IncidentReplay",
    "ReplayConfig",
    "replay_stats_config",
]

#: The lab router's short/long split (``incident.toml``: ``router.long_context_threshold``).
LAB_LONG_CONTEXT_TOKENS = 192

#: ``make demo``'s traffic on SmolLM2-135M-Instruct (see the README's demo section for the sizing): requests per
#: simulated day on the incident's busy days (:data:`DEMO_BUSY_DAYS`) and on the quiet days around them, answer
#: tokens (every one of them is checked by the script and consistency detectors; 8 tokens carry a corruption burst
#: in a third of the answers at the 5% per-step rate), and each stream's warm-up (a day's segment holds a few
#: requests, so a baseline of 40 is what a stream learns in about a simulated week).
#:
#: The postmortem's shares set the traffic a fault needs, not the replay's length: first-party misrouting at 0.8% of
#: model S's sessions shows three misrouted requests (what the routing invariant needs at the replay's false-alarm
#: bound) only after about 400-600 short requests of model S on gpu, and they must come before the 08-19 release for
#: the alert to be traced to the routing change; the sampler fault needs about 50 requests of model H on tpu after
#: 08-26. So the replay spends its requests from the first fault (08-05) to the last rollback (09-04), 100 a day,
#: and 5 a day on the days before and after, where nothing is scripted to happen (15 a day there gave the same
#: routing catches and blame over 10 seeds, ``python -m benchmarks demo_plan``, for 5% more engine time).
DEMO_REQUESTS_PER_DAY = 100
DEMO_QUIET_REQUESTS_PER_DAY = 5
#: the busy stretch of the replay: the first fault's onset to the last fault's rollback (inclusive)
DEMO_BUSY_DAYS = (date(2025, 8, 5), date(2025, 9, 4))
#: model shares of the demo traffic: the lab's usual mix (S most traffic) with model H, the sampler fault's only
#: model, at 30% instead of 25% and O at 10% (O's corruption lasts three days and S shows the same fault).
DEMO_MODEL_SHARES = {"S": 0.6, "O": 0.1, "H": 0.3}
#: the weights the demo serves for every model of ``incident.toml`` (whose own default is the 9M model, for tests).
DEMO_WEIGHTS = "smollm2-135m"
DEMO_MAX_TOKENS = 8
DEMO_WARMUP = 40
#: The prompt mix of the replay: the traffic generator's, with long-context prompts (several hundred tokens, each
#: as costly as ten short ones to prefill: at 3% they were a third of all prefilled tokens) at 2% instead of 8%;
#: no fault involves long prompts.
DEMO_PROMPT_SHARES = {"code": 0.48, "prose": 0.45, "non_latin": 0.05, "long": 0.02}

#: Segment dimensions of the replay: the lab fleet has no regions, so ``region`` (always "unknown") is left out.
REPLAY_DIMENSIONS = ("model", "pool", "platform", "context_class", "config_version")


def replay_stats_config(total_requests: int, *, alpha: float = 0.05, warmup: int = 100) -> StatsConfig:
    """Per-segment statistics sized for a replay of ``total_requests``.

    The production defaults bound false alarms over 20,000 streams of 10^6 requests each and learn each stream's
    baseline from 1,000 requests; a replay of a few thousand requests would never leave the warm-up on the smaller
    segments. Here the family-wise bound covers the replay itself: ``horizon`` = its requests, ``max_streams`` =
    what its lattice actually creates (about 4,000 with five dimensions and the signals of the default detectors),
    ``alpha`` over the whole replay; a stream's baseline needs ``warmup`` requests (scores: 60% of that).
    """
    if total_requests < 1:
        raise InvalidInputError("total_requests", "must be >= 1", total_requests)
    return StatsConfig(
        dimensions=REPLAY_DIMENSIONS,
        alpha=alpha,
        horizon=max(1000, total_requests),
        max_streams=4000,
        rate_warmup=warmup,
        mean_warmup=max(1, round(0.6 * warmup)),
        score_max_order=1,
    )


@dataclass(frozen=True)
class ReplayConfig:
    """Settings of one replay. ``days`` restricts it to some of the timeline's days (a shortened replay).

    Every day gets ``requests_per_day`` requests, unless ``quiet_requests_per_day`` is set: then only the days from
    ``busy_days[0]`` to ``busy_days[1]`` do, and the others get ``quiet_requests_per_day``.

    >>> config = ReplayConfig(requests_per_day=100, quiet_requests_per_day=15)
    >>> [config.requests_on(date(2025, 8, d)) for d in (4, 5)], config.requests_on(date(2025, 9, 5))
    ([15, 100], 15)
    >>> ReplayConfig(requests_per_day=60).requests_on(date(2025, 9, 5))
    60
    """

    store_path: Path = Path("runs/demo/parity.duckdb")
    requests_per_day: int = DEMO_REQUESTS_PER_DAY
    days: Sequence[date] | None = None
    model_shares: Mapping[str, float] = field(default_factory=lambda: dict(DEMO_MODEL_SHARES))
    max_tokens: int = DEMO_MAX_TOKENS
    top_logprobs: int = 5
    concurrency: int = 32
    max_batch: int = 32
    prompt_shares: Mapping[str, float] | None = field(default_factory=lambda: dict(DEMO_PROMPT_SHARES))
    sessions: int = 40
    seed: int = 0
    lab_threads: int = 1
    capture: str = "flagged"
    host: str = "127.0.0.1"
    port: int = 0
    alpha: float = 0.05
    warmup: int = DEMO_WARMUP
    worsening_window: int = 150
    weights: str | Path | None = DEMO_WEIGHTS
    quiet_requests_per_day: int | None = None
    busy_days: tuple[date, date] = DEMO_BUSY_DAYS

    def __post_init__(self) -> None:
        if self.requests_per_day < 10:
            raise InvalidInputError("requests_per_day", "must be >= 10", self.requests_per_day)
        if self.quiet_requests_per_day is not None and self.quiet_requests_per_day < 1:
            raise InvalidInputError(
                "quiet_requests_per_day", "must be >= 1 (or None: every day busy)", self.quiet_requests_per_day
            )
        if self.busy_days[1] < self.busy_days[0]:
            raise InvalidInputError("busy_days", "must be (first, last) with first <= last", self.busy_days)
        if not 1 <= self.max_tokens <= 256:
            raise InvalidInputError("max_tokens", "must be in [1, 256]", self.max_tokens)
        if not 1 <= self.concurrency <= 256:
            raise InvalidInputError("concurrency", "must be in [1, 256]", self.concurrency)
        if not 1 <= self.max_batch <= 256:
            raise InvalidInputError("max_batch", "must be in [1, 256]", self.max_batch)
        if not 1 <= self.lab_threads <= 64:
            raise InvalidInputError("lab_threads", "must be in [1, 64]", self.lab_threads)

    def requests_on(self, day: date) -> int:
        """The requests replayed on simulated ``day``."""
        if self.quiet_requests_per_day is None or self.busy_days[0] <= day <= self.busy_days[1]:
            return self.requests_per_day
        return self.quiet_requests_per_day


class LabChangeLog:
    """The lab's change log, read over one kept-alive connection: the proxy polls it four times a second during a
    replay, and a fresh client per poll (``load_changes``: TLS set-up included, though the lab speaks plain HTTP)
    cost the replay's process more CPU than its monitor did."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 10.0) -> None:
        import httpx

        self.url = url.rstrip("/") + CHANGES_PATH
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(headers=headers, timeout=timeout)
        self._error: type[Exception] = httpx.HTTPError

    def __call__(self) -> list[Change]:
        """The change log now (raises :class:`~parity.EndpointError` as ``load_changes`` does)."""
        try:
            resp = self._client.get(self.url)
        except self._error as err:
            raise EndpointError(f"cannot fetch the change log: {err}", url=self.url) from err
        if resp.status_code != 200:
            raise EndpointError(f"answered HTTP {resp.status_code}", url=self.url, status_code=resp.status_code)
        try:
            data = resp.json()
        except ValueError as err:
            raise EndpointError("answered with invalid JSON", url=self.url) from err
        return changes_from_json(data, source=self.url)

    def close(self) -> None:
        """Close the connection."""
        self._client.close()


@dataclass(frozen=True)
class DayReport:
    """What one simulated day did (for progress output)."""

    day: date
    index: int
    n_days: int
    requests: int
    errors: int
    wall_seconds: float
    changes: list[str]
    new_alerts: list[Alert]
    total_requests: int


class IncidentReplay:
    """Replays ``timeline`` (default: :func:`~parity.demo.timeline.incident_timeline`) under ``config``.

    ``on_day(report)`` is called after each simulated day; ``on_ready(url)`` once the proxy (and the dashboard at
    ``url + "/dashboard"``) serves. After :meth:`run` the proxy keeps serving until :meth:`close`, so the
    dashboard can be looked at.
    """

    def __init__(
        self,
        config: ReplayConfig | None = None,
        timeline: Timeline | None = None,
        *,
        on_day: Callable[[DayReport], None] | None = None,
        on_ready: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config or ReplayConfig()
        self.timeline = timeline or incident_timeline()
        self.on_day = on_day
        self.on_ready = on_ready
        days = list(self.config.days) if self.config.days is not None else self.timeline.days
        unknown = [d.isoformat() for d in days if d not in self.timeline.days]
        if unknown or not days:
            raise InvalidInputError("days", "must be days of the timeline", unknown or days)
        self.days = sorted(days)
        self.clock = SimulatedClock(datetime.combine(self.days[0], datetime.min.time(), tzinfo=UTC))
        self._posted: set[str] = set()  # ids of the changes posted to the lab so far
        self.store: DuckDBStore | None = None
        self.lab: LabProcess | None = None
        self.proxy: ParityProxy | None = None
        self.server: BackgroundServer | None = None
        self.url: str | None = None
        self.change_log: LabChangeLog | None = None

    # -- set-up ------------------------------------------------------------------------------------------------

    def _start(self) -> None:
        from parity.lab.fleet import default_config_path

        cfg = self.config
        path = Path(cfg.store_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in (path, Path(f"{path}.parity-wal.jsonl"), Path(f"{path}.spool.jsonl")):
            if stale.is_dir():
                shutil.rmtree(stale)
            elif stale.exists():
                stale.unlink()
        self.store = DuckDBStore(path)
        self.lab = LabProcess(
            default_config_path("incident"), threads=cfg.lab_threads, max_batch=cfg.max_batch, weights=cfg.weights
        ).start()
        total = sum(cfg.requests_on(d) for d in self.days)
        monitor = SegmentMonitor(
            config=MonitorConfig(
                stats=replay_stats_config(total, alpha=cfg.alpha, warmup=cfg.warmup),
                worsening_window=cfg.worsening_window,
            )
        )
        self.change_log = LabChangeLog(self.lab.url, token=self.lab.admin_token)
        builder = RecordBuilder(salt=session_salt(self.store), scorer=default_scorer(), capture=cfg.capture,
                                long_context_tokens=LAB_LONG_CONTEXT_TOKENS)  # fmt: skip
        proxy_config = ProxyConfig(
            upstream=self.lab.url,
            capture=cfg.capture,
            spool_path=f"{path}.spool.jsonl",
            changes_poll_s=0.25,
            flush_interval_s=0.25,
        )
        self.proxy = ParityProxy(
            proxy_config,
            self.store,
            builder,
            hook=monitor,
            changes_source=self.change_log,
            clock=self.clock,
            mounts=self._dashboard_mount(self.store),
        )
        self.server = BackgroundServer(self.proxy.app, host=cfg.host, port=cfg.port, name="proxy").start()
        self.url = self.server.url
        if self.on_ready is not None:
            self.on_ready(self.url)

    @staticmethod
    def _dashboard_mount(store: DuckDBStore) -> dict[str, Any]:
        try:
            from parity.dashboard import create_app
        except ImportError:  # the dashboard extra is not installed: the replay runs without it
            return {}
        return {"/dashboard": create_app(store, title="parity demo")}

    # -- the replay ----------------------------------------------------------------------------------------

    def _pieces(self, day: date) -> list[tuple[datetime, datetime, list[ScriptedChange]]]:
        """The day cut at its scripted changes: (start, end, changes posted at start)."""
        start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
        end = start + timedelta(days=1)
        cuts: list[tuple[datetime, list[ScriptedChange]]] = [(start, [])]
        for change in self.timeline.changes_on(day):
            if change.at == cuts[-1][0]:
                cuts[-1][1].append(change)
            else:
                cuts.append((change.at, [change]))
        return [(t, cuts[i + 1][0] if i + 1 < len(cuts) else end, c) for i, (t, c) in enumerate(cuts)]

    def _traffic(self, start: datetime, end: datetime, n: int, seed: int) -> tuple[int, int]:
        from parity.lab.traffic import TrafficGenerator

        assert self.url is not None
        if n <= 0:
            return 0, 0
        cfg = self.config
        span = end - start
        self.clock.set(start)

        def progress(done: int, planned: int) -> None:
            self.clock.set(start + span * (done / max(planned, 1)))

        generator = TrafficGenerator(
            self.url,
            rate=10_000.0,
            duration=max(1.0, n / 1000.0),
            sessions=cfg.sessions,
            seed=seed,
            models=dict(cfg.model_shares),
            max_tokens=cfg.max_tokens,
            shares=dict(cfg.prompt_shares) if cfg.prompt_shares is not None else None,
            follow_up=0.5,
            feedback=True,
            max_requests=n,
            max_concurrency=cfg.concurrency,
            top_logprobs=cfg.top_logprobs,
            seeded=True,
            timeout=300.0,
        )
        summary = generator.run(progress=progress)
        return summary.ok, summary.sent - summary.ok

    def _known_alerts(self) -> dict[str, Alert]:
        assert self.store is not None
        return {a.alert_id: a for a in self.store.alerts()}

    def run(self) -> DemoSummary:
        """Run the whole replay and return its summary (the proxy keeps serving until :meth:`close`)."""
        t0 = time.monotonic()
        self._start()
        assert self.lab is not None
        assert self.proxy is not None
        assert self.store is not None
        total = 0
        seen = self._known_alerts()
        replayed = set(self.days)
        for index, day in enumerate(self.days):
            per_day = self.config.requests_on(day)
            t_day = time.monotonic()
            done = errors = 0
            posted: list[str] = []
            # a shortened replay skips the changes of the days it leaves out, except one that a change it replays
            # rolls back or fixes: that one is posted first, at its own time, so the rollback has something to undo
            undone = {str(c.params.get("change_id")) for c in self.timeline.changes_on(day)}
            skipped = [
                c
                for c in sorted(self.timeline.changes, key=lambda c: c.at)
                if c.change_id in undone and c.change_id not in self._posted and c.at.date() not in replayed
            ]
            for change in skipped:
                self.lab.post_change(change.to_json())
                self._posted.add(change.change_id)
                posted.append(change.change_id)
            if skipped:
                time.sleep(0.6)
            pieces = self._pieces(day)
            for p, (start, end, changes) in enumerate(pieces):
                for change in changes:
                    self.lab.post_change(change.to_json())
                    self._posted.add(change.change_id)
                    posted.append(change.change_id)
                if changes:
                    time.sleep(0.6)  # two polls of the proxy's change-log reader: the monitor knows before traffic
                share = (end - start) / timedelta(days=1)
                n = round(per_day * share) if p < len(pieces) - 1 else per_day - done - errors
                ok, bad = self._traffic(start, end, n, seed=self.config.seed * 100_003 + index * 101 + p)
                done += ok
                errors += bad
            self.clock.set(datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(days=1))
            if not self.proxy.wait_idle(timeout=120):
                w = self.proxy.worker
                raise ParityError(
                    "the monitor did not keep up with the replay (still busy after 120 s: "
                    f"{self.proxy.in_flight} requests in flight, {w.outstanding} exchanges queued, "
                    f"{w.spool.pending if w.spool else 0} spooled)"
                )
            total += done
            now = self._known_alerts()
            new = [a for i, a in now.items() if i not in seen]
            seen = now
            if errors > max(5, 0.05 * per_day):
                raise ParityError(f"{errors} of {per_day} requests failed on {day.isoformat()}: {self.lab.output()}")
            if self.on_day is not None:
                self.on_day(
                    DayReport(day, index, len(self.days), done, errors, time.monotonic() - t_day, posted, new, total)
                )
        time.sleep(0.6)  # the last changes (fixes) reach the store through the change-log poll
        self.proxy.wait_idle(timeout=60)
        records = self.store.records()
        summary = summarize(
            self.timeline,
            self.store.alerts(),
            records,
            wall_seconds=time.monotonic() - t0,
        )
        summary.extra.update(
            {
                "days": [self.days[0].isoformat(), self.days[-1].isoformat()],
                "requests_per_day": self.config.requests_per_day,
                "quiet_requests_per_day": self.config.quiet_requests_per_day,
                "busy_days": [d.isoformat() for d in self.config.busy_days],
                "model_shares": dict(self.config.model_shares),
                "max_tokens": self.config.max_tokens,
                "lab_url": self.lab.url,
                "store": str(self.config.store_path),
            }
        )
        return summary

    def close(self) -> None:
        """Stop the proxy and the lab; close the store."""
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.change_log is not None:
            self.change_log.close()
            self.change_log = None
        if self.lab is not None:
            self.lab.stop()
            self.lab = None
        if self.store is not None:
            self.store.close()
            self.store = None

    def __enter__(self) -> IncidentReplay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
