"""Detection delay and false alarms: parity's CUSUM bank vs river's ADWIN and PageHinkley on the same per-segment
streams, at matched false-alarm rates.

Streams are simulated from stated rates (below), not measured on the lab fleet: the fleet landed too late in this
session to measure its rates. Each scenario is one segment's 0/1 stream: ``WARM`` clean requests, then the fault.

Matching: each method's most sensitive setting (from a grid) whose false-alarm rate on ``N_CLEAN`` clean streams of
``CLEAN_LEN`` requests is at most ``FA_TARGET`` (alarms per stream) is used; ``delay`` is the number of requests
in the segment after the fault began until the alarm (a miss counts as ``MAX_DELAY``). Medians over seeds.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks._results import write_section
from parity.stats.sequential import DEFAULT_RATIOS, BernoulliCUSUM, cusum_threshold

WARM = 10_000
MAX_DELAY = 20_000
N_CLEAN = 100
CLEAN_LEN = 30_000
N_SEEDS = 60
FA_TARGET = 0.03  # alarms per clean stream of CLEAN_LEN requests


@dataclass(frozen=True)
class Scenario:
    name: str
    base: float
    after: float
    note: str


SCENARIOS = (
    Scenario(
        "sticky routing fault (0.8% of model S traffic)",
        0.002,
        0.0093,
        "segment model=S,pool=long: long-context requests at a 0.2% flag rate; the fault adds misrouted short "
        "requests (0.8% of S traffic = 7.4% of this segment) flagged at 10% -> 0.93%",
    ),
    Scenario(
        "output corruption on one platform",
        0.001,
        0.02,
        "segment platform=tpu: unexpected-script flag rate 0.1% -> 2% (ANCHORS.md's rare-event shift)",
    ),
    Scenario(
        "sampler fault (approximate top-k)",
        0.0005,
        0.005,
        "segment platform=tpu,model=H: sampling-consistency violations 0.05% -> 0.5%",
    ),
)


def parity_factory(h: float) -> Callable[[], Any]:
    return lambda: BernoulliCUSUM(threshold=h, warmup=1000)


def oracle_factory(sc: Scenario) -> Callable[[float], Callable[[], Any]]:
    def factory(h: float) -> Callable[[], Any]:
        return lambda: BernoulliCUSUM(
            threshold=h, warmup=1000, prior_rate=sc.base, prior_weight=1e9, baseline_z=0.0, ratios=(sc.after / sc.base,)
        )

    return factory


def adwin_factory(delta: float) -> Callable[[], Any]:
    from river import drift

    return lambda: drift.ADWIN(delta=delta)


def ph_factory(threshold: float) -> Callable[[], Any]:
    from river import drift

    # one-sided (an increase), a small allowance: tuned for rare-event rates as in ANCHORS.md
    return lambda: drift.PageHinkley(min_instances=30, delta=0.0005, threshold=threshold, alpha=1.0, mode="up")


METHODS: dict[str, tuple[Callable[[float], Callable[[], Any]], Sequence[float]]] = {
    "parity CUSUM bank": (parity_factory, (6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 14.0, 17.0, 20.0)),
    "river ADWIN": (adwin_factory, (0.99, 0.9, 0.7, 0.5, 0.3, 0.2, 0.1, 0.05, 0.01, 0.002, 0.0005, 1e-4)),
    "river PageHinkley": (ph_factory, (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.5, 8.0, 10.0, 12.0, 15.0, 20.0)),
}


def first_alarm(det: Any, xs: list[int]) -> int | None:
    for i, x in enumerate(xs):
        det.update(x)
        if det.drift_detected:
            return i
    return None


def false_alarm_rate(make: Callable[[], Any], clean: list[list[int]]) -> float:
    return sum(first_alarm(make(), xs) is not None for xs in clean) / len(clean)


def calibrate(name: str, clean: list[list[int]]) -> tuple[float, float]:
    """The most sensitive grid value with false-alarm rate <= FA_TARGET (grid is ordered most to least sensitive)."""
    factory, grid = METHODS[name]
    for value in grid:
        fa = false_alarm_rate(factory(value), clean)
        if fa <= FA_TARGET:
            return value, fa
    return grid[-1], false_alarm_rate(factory(grid[-1]), clean)


def delays(make: Callable[[], Any], sc: Scenario, seeds: int) -> tuple[list[int], int]:
    out, early = [], 0
    for seed in range(seeds):
        rng = np.random.default_rng(1000 + seed)
        xs = (rng.random(WARM + MAX_DELAY) < np.r_[np.full(WARM, sc.base), np.full(MAX_DELAY, sc.after)]).astype(int)
        det = make()
        hit = first_alarm(det, xs[:WARM].tolist())
        if hit is not None:
            early += 1
            det = make()
            first_alarm(det, xs[:WARM].tolist())  # warm a fresh one; count the early alarm as a false alarm
        hit = first_alarm(det, xs[WARM:].tolist())
        out.append(MAX_DELAY if hit is None else hit + 1)
    return out, early


def cost_per_update(make: Callable[[], Any], p: float) -> float:
    xs = (np.random.default_rng(5).random(200_000) < p).astype(int).tolist()
    det = make()
    t0 = time.perf_counter()
    for x in xs:
        det.update(x)
    return (time.perf_counter() - t0) / len(xs) * 1e6


def pipeline_throughput(n: int = 5000) -> tuple[float, int]:
    """Records/s through ``SegmentMonitor`` at its defaults (6 dimensions -> 64 segments per record, 5 detectors,
    routing audit): median of 3 passes over the same records, each on a fresh monitor."""
    from datetime import UTC, datetime, timedelta

    from parity.monitor import DetectorObservation, Record
    from parity.monitor.detection.pipeline import SegmentMonitor

    rng = np.random.default_rng(0)
    t0 = datetime(2025, 8, 25, tzinfo=UTC)
    detectors = ("unexpected_script", "code_integrity", "degeneration", "sampling_consistency", "reference_score")
    records = [
        Record(
            record_id=f"r{i}",
            time=t0 + timedelta(seconds=i),
            model=("S", "O", "H")[i % 3],
            pool="long" if rng.random() < 0.1 else "short",
            platform=("gpu", "tpu", "trainium")[int(rng.integers(3))],
            region=("us", "eu")[i % 2],
            config_version="v1",
            server=f"srv-{i % 9}",
            session_hash=f"h{i % 300}",
            context_tokens=20_000 if rng.random() < 0.1 else 500,
            observations=tuple(
                DetectorObservation(
                    d, bool(rng.random() < 0.002), float(rng.random()) if d == "reference_score" else 0.0
                )
                for d in detectors
            ),
        )
        for i in range(n)
    ]
    rates, streams = [], 0
    for _ in range(3):
        mon = SegmentMonitor()
        start = time.perf_counter()
        for rec in records:
            mon.observe(rec)
        rates.append(n / (time.perf_counter() - start))
        streams = len(mon.stats)
    return statistics.median(rates), streams


def main() -> None:
    lines = [
        "Streams simulated from stated rates (the lab fleet's own rates were not measured in this run). Per "
        f"scenario: thresholds calibrated on {N_CLEAN} clean streams of {CLEAN_LEN:,} requests to at most "
        f"{FA_TARGET:.0%} of them alarming; then {N_SEEDS} seeds of {WARM:,} clean requests followed by "
        f"the fault. Delay = affected-segment requests from the fault to the alarm (median; a miss counts as "
        f"{MAX_DELAY:,}). 'early' = alarms during the clean warm-up of the delay runs (extra false alarms).",
        "",
        "| scenario | method | setting | clean FA rate | median delay | p90 delay | misses | early |",
        "|---|---|---|---|---|---|---|---|",
    ]
    summary: list[str] = []
    for sc in SCENARIOS:
        rng = np.random.default_rng(7)
        clean = [(rng.random(CLEAN_LEN) < sc.base).astype(int).tolist() for _ in range(N_CLEAN)]
        medians: dict[str, float] = {}
        for name in METHODS:
            value, fa = calibrate(name, clean)
            ds, early = delays(METHODS[name][0](value), sc, N_SEEDS)
            med = statistics.median(ds)
            medians[name] = med
            p90 = float(np.percentile(ds, 90))
            misses = sum(d >= MAX_DELAY for d in ds)
            row = f"| {sc.name} | {name} | {value:g} | {fa:.2f} | {med:,.0f} | {p90:,.0f} | {misses} | {early} |"
            lines.append(row)
            print(lines[-1], flush=True)
        # parity at its production threshold: alpha 0.01 over 20,000 streams and 1e6 requests each
        h = cusum_threshold(alpha=0.01, horizon=1_000_000, n_streams=20_000, n_alternatives=len(DEFAULT_RATIOS))
        ds, early = delays(parity_factory(h), sc, N_SEEDS)
        lines.append(
            f"| {sc.name} | parity, production threshold | h={h:.1f} | (bound) | {statistics.median(ds):,.0f} | "
            f"{float(np.percentile(ds, 90)):,.0f} | {sum(d >= MAX_DELAY for d in ds)} | {early} |"
        )
        print(lines[-1], flush=True)
        # the oracle: one CUSUM told the true baseline and post-change rate, calibrated like the others
        METHODS["oracle CUSUM (known rates)"] = (oracle_factory(sc), METHODS["parity CUSUM bank"][1])
        value, fa = calibrate("oracle CUSUM (known rates)", clean)
        ds, early = delays(oracle_factory(sc)(value), sc, N_SEEDS)
        del METHODS["oracle CUSUM (known rates)"]
        lines.append(
            f"| {sc.name} | oracle CUSUM (true rates; a bound, not a method) | {value:g} | {fa:.2f} | "
            f"{statistics.median(ds):,.0f} | {float(np.percentile(ds, 90)):,.0f} | {sum(d >= MAX_DELAY for d in ds)} "
            f"| {early} |"
        )
        print(lines[-1], flush=True)
        best_other = min(v for k, v in medians.items() if k != "parity CUSUM bank")
        summary.append(
            f"- {sc.name}: {sc.note}. parity {medians['parity CUSUM bank']:,.0f} vs best river "
            f"{best_other:,.0f} requests ({best_other / max(medians['parity CUSUM bank'], 1):.1f}x)."
        )
    lines += ["", "Scenarios and rates:", *summary, ""]
    lines.append(
        "Reading: on the 20x corruption shift and the 10x sampler shift parity alerts in fewer affected requests than "
        "either river detector at the same false-alarm rate, within a few percent of the oracle (a CUSUM told the "
        "true rates). On the 4.65x routing shift parity is slower than ADWIN: there ADWIN matches the oracle itself, "
        "so no CUSUM-type detector can do much better, and parity pays for not knowing the rates (an upper-"
        "confidence baseline and a union over 4 alternatives). In the monitor the routing fault is caught first by "
        "the routing audit's own signal (`routing.short_on_long_pool`, base rate 0): "
        "`tests/monitor/test_pipeline.py` alerts within 2,000 requests of model S at a 2% misroute share. The "
        "production threshold (alpha 0.01 over 20,000 streams x 10^6 requests each) costs 3-5x the delay of the "
        "calibrated one: the price of a guaranteed family-wise false-alarm rate; lower `horizon`/`max_streams` in "
        "`StatsConfig` where the fleet is smaller."
    )
    lines.append("")
    costs = {
        "parity CUSUM bank": cost_per_update(parity_factory(12.0), 0.001),
        "river ADWIN": cost_per_update(adwin_factory(0.002), 0.001),
        "river PageHinkley": cost_per_update(ph_factory(5.0), 0.001),
    }
    lines.append(
        "Cost per update at a 0.1% rate (one Python call each, one pass of 200,000 observations): "
        + ", ".join(f"{k} {v:.2f} us" for k, v in costs.items())
        + "."
    )
    rate, streams = pipeline_throughput()
    load = os.getloadavg()[0]
    lines.append(
        f"\nPipeline throughput: `SegmentMonitor()` at its defaults (64 segments per record, 5 detectors, the routing "
        f"audit; {streams:,} streams) took {rate:,.0f} records/s in one Python thread (median of 3 passes of 5,000 "
        f"records; load average {load:.1f} on this shared 2-core machine during the run, so this is pessimistic). "
        "Zeros are counted per segment and handed to a stream in bulk when it next sees an event, so the cost is one "
        "counter per segment per record plus one detector update per non-zero signal per segment. Scale out by "
        "running one monitor per shard (`MonitorConfig(shard=k, n_shards=n)`)."
    )
    lines.append(
        "\nFalse alarms of the production threshold are bounded by the derivation in `parity.stats.sequential` "
        "(known baseline) and measured in `tests/stats/test_sequential.py` (0 alarms in 100 clean streams of "
        "20,000 at alpha 0.05) and `tests/monitor/test_pipeline.py` (no alert on 30,000 clean fleet requests "
        "over every segment and signal)."
    )
    path = write_section("detection", "Detection delay at matched false-alarm rates", "\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
