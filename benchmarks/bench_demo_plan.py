"""The demo's traffic plan, checked without the lab: what the routing fault leaves in it and what the monitor does.

Routing in the lab is a pure function of the session name (``parity.lab.faults.session_fraction``), and the replay's
traffic generator draws every session, model, sampling setting and prompt kind from its seed before it sends
anything, so the requests that the routing faults misroute, and those of model H on tpu under the sampler fault, are
known from the plan alone. This benchmark replays the generator's planning (``TrafficGenerator.run_async``: the
same draws in the same order, per piece of each simulated day as ``IncidentReplay`` cuts them), routes each request
as the lab's router does, and feeds the routing part as records (model, platform, pool, context) through the real
:class:`~parity.monitor.detection.pipeline.SegmentMonitor` with the incident's change log, for several seeds of the
demo. The corruption and sampler faults need the model's text, so only their request counts are planned here.

Checked once against a real SmolLM2 run (60 requests a day, seed 0): the plan gives its 0 misrouted requests before
08-29 and its 27 requests of model H on tpu under the sampler (11 greedy), as the run's store does.

``python -m benchmarks demo_plan`` (about a minute per seed on a loaded machine; ``BENCH_DEMO_PLAN_SEEDS``).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import numpy as np

from benchmarks._results import write_section
from parity.demo import incident_timeline, summarize
from parity.demo.replay import (
    DEMO_BUSY_DAYS,
    DEMO_MODEL_SHARES,
    DEMO_PROMPT_SHARES,
    DEMO_QUIET_REQUESTS_PER_DAY,
    DEMO_REQUESTS_PER_DAY,
    ReplayConfig,
    replay_stats_config,
)
from parity.lab._prompts import prompt_mix
from parity.lab.faults import session_fraction
from parity.lab.fleet import FleetConfig, default_config_path
from parity.lab.traffic import SAMPLING_MIX
from parity.monitor import Change, Record
from parity.monitor.detection.pipeline import MonitorConfig, SegmentMonitor

SESSIONS, FOLLOW_UP = 40, 0.5  # IncidentReplay._traffic's settings


def _at(month: int, day: int, hour: int = 9) -> datetime:
    return datetime(2025, month, day, hour, tzinfo=UTC)


def plan(config: ReplayConfig) -> list[tuple[datetime, str, str, bool, str, float | None]]:
    """(time, model, platform, long prompt, session, temperature) of every planned request."""
    timeline = incident_timeline()
    fleet = FleetConfig.load(default_config_path("incident"))
    shares = {name: p.share for name, p in fleet.platforms.items()}

    def platform(key: str) -> str:
        u, acc = session_fraction(key, "platform") * sum(shares.values()), 0.0
        for name, share in shares.items():
            acc += share
            if u < acc:
                return name
        return name

    names = list(config.model_shares)
    weights = np.array([config.model_shares[n] for n in names], dtype=np.float64)
    weights /= weights.sum()
    mix_p = np.array([share for share, _ in SAMPLING_MIX])
    mix_p /= mix_p.sum()
    out = []
    for index, day in enumerate(timeline.days):
        start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
        cuts: list[datetime] = [start]
        for change in timeline.changes_on(day):
            if change.at != cuts[-1]:
                cuts.append(change.at)
        pieces = [(t, cuts[i + 1] if i + 1 < len(cuts) else start + timedelta(days=1)) for i, t in enumerate(cuts)]
        per_day, done = config.requests_on(day), 0
        for p, (a, b) in enumerate(pieces):
            n = round(per_day * ((b - a) / timedelta(days=1))) if p < len(pieces) - 1 else per_day - done
            done += n
            seed = config.seed * 100_003 + index * 101 + p
            rng = np.random.default_rng(seed)
            arrivals, t = 0, 0.0
            while arrivals < n:  # the generator's Poisson schedule (rate 10,000/s): every request fits its duration
                t += float(rng.exponential(1 / 10_000.0))
                if t > max(1.0, n / 1000.0):
                    break
                arrivals += 1
            slots: list[list[object]] = [[f"sess-{seed}-{i}", 0, "", None] for i in range(SESSIONS)]
            fresh = SESSIONS
            for i in range(arrivals):
                k = int(rng.integers(SESSIONS))
                session = slots[k]
                if not session[1] or rng.random() >= FOLLOW_UP:
                    session = slots[k] = [f"sess-{seed}-{fresh}", 0, "", None]
                    fresh += 1
                    session[2] = names[int(rng.choice(len(names), p=weights))]
                    session[3] = SAMPLING_MIX[int(rng.choice(len(SAMPLING_MIX), p=mix_p))][1].get("temperature")
                kind = prompt_mix(rng, shares=dict(config.prompt_shares or {})).kind
                session[1] = int(str(session[1])) + 1
                rng.random()  # feedback draw
                rng.integers(2**31)  # request seed
                name = str(session[0])
                temp = session[3]
                out.append(
                    (a + (b - a) * (i / max(arrivals, 1)), str(session[2]), platform(name), kind == "long", name,
                     float(temp) if isinstance(temp, float) else None)
                )  # fmt: skip
    return out


def routing_records(requests: list[tuple[datetime, str, str, bool, str, float | None]]) -> list[Record]:
    """The planned requests as the monitor would see their routing (no text): misrouted ones on the long pool."""
    windows = {  # change id: (model, platform, fraction, start, end) as the timeline scripts them
        "routing-1p": ("gpu", 0.008, _at(8, 5), _at(9, 4)),
        "routing-partner-a": ("tpu", 0.0018, _at(8, 12), _at(9, 16)),
        "routing-partner-b": ("trainium", 0.000004, _at(8, 27), _at(9, 16, 10)),
    }
    out = []
    for i, (when, model, plat, long_prompt, session, _) in enumerate(requests):
        growth = 20.0 if model == "S" and when >= _at(8, 29) else 1.0
        misrouted = not long_prompt and any(
            model == "S" and plat == p and a <= when < b and session_fraction(session, cid) < min(1.0, f * growth)
            for cid, (p, f, a, b) in windows.items()
        )
        out.append(
            Record(
                record_id=f"r{i}", time=when, model=model, platform=plat,
                pool="long" if long_prompt or misrouted else "short",
                config_version="2025-08-19.1" if when >= _at(8, 19, 3) else "2025-08-01.1",
                context_tokens=400 if long_prompt else 50, context_class="long" if long_prompt else "short",
                session_hash=session,
            )
        )  # fmt: skip
    return sorted(out, key=lambda r: r.time)


def changes() -> list[Change]:
    """The change log the lab reports for the timeline (its scope carries each change's config version)."""
    out = []
    for c in incident_timeline().changes:
        scope = dict(c.scope)
        if "config_version" in c.params:
            scope["config_version"] = str(c.params["config_version"])
        out.append(Change(c.change_id, c.at, c.kind, scope, c.description))
    return out


def run_seed(seed: int) -> dict[str, object]:
    config = ReplayConfig(
        requests_per_day=DEMO_REQUESTS_PER_DAY, quiet_requests_per_day=DEMO_QUIET_REQUESTS_PER_DAY, seed=seed
    )
    requests = plan(config)
    records = routing_records(requests)
    monitor = SegmentMonitor(
        config=MonitorConfig(
            stats=replay_stats_config(len(records), warmup=config.warmup), worsening_window=config.worsening_window
        )
    )
    events = sorted([(r.time, 1, r) for r in records] + [(c.time, 0, c) for c in changes()], key=lambda e: e[:2])
    for _, kind, item in events:
        if kind == 0:
            monitor.add_changes([item])  # type: ignore[list-item]
        else:
            monitor.observe(item)  # type: ignore[arg-type]
    rows = {f.name: f for f in summarize(incident_timeline(), monitor.alerts, records).faults}
    early = [r for r in records if r.pool == "long" and r.context_tokens < 192 and r.time < _at(8, 29)]
    sampler = [
        q for q in requests if q[1] == "H" and q[2] == "tpu" and _at(8, 26) <= q[0] < _at(9, 4, 11)
    ]  # the sampler's window
    corrupt = [q for q in requests if q[1] in ("O", "S") and q[2] == "tpu" and _at(8, 25) <= q[0] < _at(8, 28)]

    def cell(name: str) -> str:
        row = rows[name]
        if row.alerted_at is None:
            return "not caught"
        verdict = "right" if row.attribution_correct else "wrong"
        return f"{row.alerted_at:%m-%d %H:%M} -> {row.attributed_change} ({verdict})"

    return {
        "seed": seed,
        "requests": len(requests),
        "misrouted": len(early),
        "first": min(r.time for r in early).strftime("%m-%d") if early else "-",
        "routing": cell("routing"),
        "growth": cell("routing-growth"),
        "false": sum(1 for a in summarize(incident_timeline(), monitor.alerts, records).false_alerts),
        "sampler": len(sampler),
        "sampler_greedy": sum(1 for q in sampler if q[5] == 0.0),
        "corrupt": len(corrupt),
        "both_right": rows["routing"].attribution_correct and rows["routing-growth"].attribution_correct,
    }


def main() -> None:
    seeds = int(os.environ.get("BENCH_DEMO_PLAN_SEEDS", "10"))
    results = [run_seed(s) for s in range(seeds)]
    lines = [
        "| seed | requests | misrouted before 08-29 (first) | routing alert -> blamed | growth (worsening) -> blamed "
        "| false alerts (routing part) | model H on tpu under the sampler (greedy) | O and S on tpu 08-25..08-27 |",
        "|---:|---:|---|---|---|---:|---|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['seed']} | {r['requests']:,} | {r['misrouted']} ({r['first']}) | {r['routing']} | {r['growth']} "
            f"| {r['false']} | {r['sampler']} ({r['sampler_greedy']}) | {r['corrupt']} |"
        )
    right = sum(1 for r in results if r["both_right"])
    body = (
        f"`parity demo`'s default traffic ({DEMO_REQUESTS_PER_DAY} requests a day from "
        f"{DEMO_BUSY_DAYS[0]:%m-%d} to {DEMO_BUSY_DAYS[1]:%m-%d}, {DEMO_QUIET_REQUESTS_PER_DAY} on the other days, "
        f"models {DEMO_MODEL_SHARES}, prompts {DEMO_PROMPT_SHARES}) planned for {seeds} seeds without the lab "
        "(module docstring: the generator's draws and the lab's routing are functions of the seed). The routing part "
        "goes through the real monitor with the replay's settings (warm-up 40, family-wise bound over the replay); "
        "the corruption and sampler columns count the requests those faults reach (their detection needs the model's "
        "text: README, 'What the demo shows').\n\n"
        + "\n".join(lines)
        + f"\n\nBoth routing rows caught and blamed right in {right} of {seeds} seeds. No timing here: the plan and "
        "the monitor's decisions do not depend on the machine."
    )
    write_section("demo_plan", "The demo's traffic plan (routing checked through the monitor, no lab)", body)


if __name__ == "__main__":
    main()
