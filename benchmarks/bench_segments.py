"""One segment monitor's throughput: the per-record path against the batch path, in the same run, and where the
time goes.

Arms (the first ``N_RECORDS`` records of the incident replay, ``tests/data/replay``; median of ``REPEATS`` runs
each, every run on a fresh monitor; records/s wall-clock and per CPU-second of the process):

* the per-record and batch paths of the code this work started from (git ``BEFORE``), in a subprocess, interleaved
  with the arms below;
* the defaults of issue 12 (64 segments per record, every detector's flag and score, scores on the segments with at
  most one fixed dimension, the routing audit): ``SegmentMonitor.observe`` record by record, and
  ``SegmentMonitor.observe_batch`` on batches of ``BATCH`` (the worker's and ingest's path), both with the score
  streams in the compiled bank (``parity.monitor.detection._score_bank``, numba), and the batch path with one
  ``BernoulliCUSUM`` object per stream (the bank without numba); all must raise the same alerts (checked);
* the batch path without score streams beyond the global segment (``score_max_order=0``), and additionally without
  the routing audit: what the score streams and the audit's alarms cost;
* a profile (cProfile) of the batch path at the defaults, by stage;
* one ``BernoulliCUSUM.update`` on a score, alone, against one score update in the compiled bank (a run of
  records of ~29 updates each in one kernel call): the floor each bank pays per non-zero observation.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

import parity.monitor.detection.statistics as statistics_module
from benchmarks._results import write_section
from benchmarks.bench_scale import REPLAY, replay_records
from parity.monitor import Alert, Record
from parity.monitor.detection._score_bank import COMPILED, PlanTable, ScoreBank, feed
from parity.monitor.detection.pipeline import MonitorConfig, SegmentMonitor
from parity.monitor.detection.segments import SegmentStatistics
from parity.stats.sequential import BernoulliCUSUM

N_RECORDS = 3000
REPLAY_ALL = 1_000_000  # every record of the replay (9,000)
REPEATS = 5
BATCH = 512
GOAL = 50_000
#: The commit this work started from: its per-record and batch paths are measured in the same run, in a subprocess.
BEFORE = "61ef17f"
ROOT = Path(__file__).resolve().parents[1]
_BEFORE_RUN = """
import gzip, json, sys, time
from parity.monitor import Record
from parity.monitor.detection.pipeline import MonitorConfig, SegmentMonitor
# the replay read here, not through the benchmarks' modules: they import names the old code does not have
replay = json.loads(gzip.decompress(open(sys.argv[3], "rb").read()))["records"]
records = [Record.from_dict(r) for r in replay[: int(sys.argv[1])]]
out = []
for batch in (False, True):
    mon = SegmentMonitor(config=MonitorConfig())
    wall, cpu = time.perf_counter(), time.process_time()
    if batch:
        for s in range(0, len(records), int(sys.argv[2])):
            mon.observe_batch(records[s : s + int(sys.argv[2])])
    else:
        for r in records:
            mon.observe(r)
    out += [len(records) / (time.perf_counter() - wall), len(records) / (time.process_time() - cpu)]
print(*out)
"""
DEFAULT = MonitorConfig()
SCORES_GLOBAL = replace(DEFAULT, stats=replace(DEFAULT.stats, score_max_order=0))
NO_AUDIT = replace(SCORES_GLOBAL, routing_audit=False)


def per_record(mon: SegmentMonitor, records: list[Record]) -> list[Alert]:
    return [a for r in records for a in mon.observe(r)]


def batched(mon: SegmentMonitor, records: list[Record]) -> list[Alert]:
    return [a for s in range(0, len(records), BATCH) for a in mon.observe_batch(records[s : s + BATCH])]


def batched_objects(mon: SegmentMonitor, records: list[Record]) -> list[Alert]:
    """The batch path with one ``BernoulliCUSUM`` object per stream (the bank without numba)."""
    mon.stats = SegmentStatistics(mon.config.stats, compiled=False)
    return batched(mon, records)


def rate(
    config: MonitorConfig,
    records: list[Record],
    paths: dict[str, Callable[[SegmentMonitor, list[Record]], list[Alert]]],
    *,
    repeats: int = REPEATS,
) -> dict[str, tuple[float, float, list[Alert], SegmentMonitor]]:
    """Median records/s of each path, wall-clock and per CPU-second of this process (the rate per core, which the
    other sessions' load on the machine depresses less), the paths interleaved run by run (so a change of the
    machine's load hits them alike), with the last run's alerts and monitor."""
    walls: dict[str, list[float]] = {name: [] for name in paths}
    cpus: dict[str, list[float]] = {name: [] for name in paths}
    last: dict[str, tuple[list[Alert], SegmentMonitor]] = {}
    for _ in range(repeats):
        for name, path in paths.items():
            mon = SegmentMonitor(config=config)
            wall, cpu = time.perf_counter(), time.process_time()
            alerts = path(mon, records)
            walls[name].append(len(records) / (time.perf_counter() - wall))
            cpus[name].append(len(records) / (time.process_time() - cpu))
            last[name] = (alerts, mon)
    return {name: (statistics.median(walls[name]), statistics.median(cpus[name]), *last[name]) for name in paths}


def before_rates(src: Path) -> list[float]:
    """Records/s at ``BEFORE`` (its ``src`` tree), one subprocess per run: per-record wall and CPU, batch wall and
    CPU."""
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{ROOT}"}
    out = subprocess.run(
        [sys.executable, "-c", _BEFORE_RUN, str(N_RECORDS), str(BATCH), str(REPLAY)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [float(x) for x in out.stdout.strip().splitlines()[-1].split()]


def export_before(tmp: Path) -> Path | None:
    """``src/`` at ``BEFORE``, or ``None`` outside a git checkout that has it."""
    archive = tmp / "before.tar"
    done = subprocess.run(
        ["git", "archive", "-o", str(archive), BEFORE, "src"], cwd=ROOT, capture_output=True, check=False
    )
    if done.returncode != 0:
        return None
    with tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
    return tmp / "src"


def profile(records: list[Record]) -> tuple[dict[str, float], float]:
    """Shares of the time by stage (cumulative, so nested stages are listed apart) of one profiled batch run."""
    mon = SegmentMonitor(config=DEFAULT)
    prof = cProfile.Profile()
    prof.enable()
    batched(mon, records)
    prof.disable()
    stats = pstats.Stats(prof)
    cum: dict[tuple[str, str], float] = {}
    own: dict[tuple[str, str], float] = {}
    for (path, _line, name), (_cc, _nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        key = (os.path.basename(path), name)
        cum[key] = cum.get(key, 0.0) + ct
        own[key] = own.get(key, 0.0) + tt
    total = cum[("pipeline.py", "observe_batch")]
    stages = {
        "each record's signals as the bank reads them (`SignalStage.inputs`) and finest segment (`values_of`)": cum[
            ("signals.py", "inputs")
        ]
        + cum[("lattice.py", "values_of")],
        "runs: plan look-up, the run's arrays, the kernel call (`SegmentStatistics.feed`, own time)": own[
            ("statistics.py", "feed")
        ],
        "the compiled kernel: every update of a run, scores, rates and invariants (`_score_bank.feed`)": cum[
            ("_score_bank.py", "feed")
        ],
        "new streams: a plan's first record joins its 64 segments (`_join_plan`)": cum[("statistics.py", "_join_plan")],
        "alarms: localisation, de-duplication, attribution (`_raise`)": cum[("pipeline.py", "_raise")],
        "- of which localisation (`_localise`)": cum[("pipeline.py", "_localise")],
        "- of which reading streams (`sequential_test`, and the test's `statistic`, `n`, `mean`)": cum[
            ("statistics.py", "sequential_test")
        ]
        + cum.get(("_score_bank.py", "statistic"), 0.0)
        + cum.get(("_score_bank.py", "n"), 0.0)
        + cum.get(("_score_bank.py", "mean"), 0.0),
        "worsening watches and the runs' bound on them (`_watch`, `_may_worsen`)": cum.get(
            ("pipeline.py", "_watch"), 0.0
        )
        + cum.get(("pipeline.py", "_may_worsen"), 0.0),
        "counting and deciding each record after the alarms before it (`_count`, `decide`)": cum[
            ("pipeline.py", "_count")
        ]
        + cum[("pipeline.py", "decide")],
    }
    return {k: v / total for k, v in stages.items()}, total


def timed_stages(records: list[Record]) -> dict[str, float]:
    """Shares of the time of one batch run at the defaults spent in its heaviest stages, timed without a profiler
    (cProfile charges its own overhead per call to the Python stages that make many small calls)."""
    mon = SegmentMonitor(config=DEFAULT)
    spent = {"alarms": 0.0, "plans": 0.0, "kernel": 0.0}

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args)
            finally:
                spent[name] += time.perf_counter() - t

        return call

    kernel = getattr(statistics_module, "feed_banks")  # noqa: B009 (not exported: the name the module calls)
    mon._raise = timed("alarms", mon._raise)  # type: ignore[method-assign]
    mon.stats._join_plan = timed("plans", mon.stats._join_plan)  # type: ignore[method-assign]
    setattr(statistics_module, "feed_banks", timed("kernel", kernel))  # noqa: B010
    try:
        t = time.perf_counter()
        batched(mon, records)
        total = time.perf_counter() - t
    finally:
        setattr(statistics_module, "feed_banks", kernel)  # noqa: B010
    return {name: v / total for name, v in spent.items()}


def kernel_cost() -> float:
    """Seconds per score update in the compiled bank: a run of records of 29 updates each (a record at the
    defaults) on warmed-up streams near their baseline, one kernel call per run."""
    banks = (
        ScoreBank(threshold=21.0, warmup=200, kind=0),
        ScoreBank(threshold=21.0, warmup=200, kind=1),
        ScoreBank(threshold=21.0, warmup=1, baseline=1e-5, kind=2),
    )
    table = PlanTable()  # one plan: 29 score streams, each its own signal (the kernel's per-update work)
    table.add([(j, 0, banks[0].new().row, j) for j in range(29)])
    calls = 2000
    rec_plan = np.zeros(calls, dtype=np.int64)
    xs = np.array([0.05 + 0.01 * ((c + j) % 7) for c in range(calls) for j in range(29)])
    offsets = np.arange(calls, dtype=np.int64) * 29
    best = float("inf")
    for rep in range(REPEATS + 1):
        ts = np.arange(calls, dtype=np.float64) + rep * calls
        t = time.perf_counter()
        at = 0
        while at < calls:  # (an alarm returns early: go on after it)
            at += feed(banks, table, rec_plan[at:], xs, offsets[at:], ts[at:], calls - at)[0] + 1
        if rep:  # the first run warms up (and compiles)
            best = min(best, (time.perf_counter() - t) / (calls * 29))
    return best


def update_cost() -> float:
    """Seconds per ``BernoulliCUSUM.update`` of a score (a warmed-up stream near its baseline)."""
    det = BernoulliCUSUM(threshold=21.0, warmup=200)
    xs = [0.05 + 0.01 * (i % 7) for i in range(20_000)]
    for x in xs:
        det.update(x)
    best = float("inf")
    for _ in range(REPEATS):
        t = time.perf_counter()
        for x in xs:
            det.update(x)
        best = min(best, (time.perf_counter() - t) / len(xs))
    return best


def main() -> None:
    load_before = os.getloadavg()
    records = replay_records(N_RECORDS)
    with tempfile.TemporaryDirectory() as tmp:
        src = export_before(Path(tmp))
        arms_runs, before = [], []
        for _ in range(REPEATS):  # the old code in a subprocess, interleaved with this run's arms
            if src is not None:
                before.append(before_rates(src))
            arms_runs.append(
                rate(DEFAULT, records, {"one": per_record, "batch": batched, "objects": batched_objects}, repeats=1)
            )
    arms = {
        name: (
            statistics.median(run[name][0] for run in arms_runs),
            statistics.median(run[name][1] for run in arms_runs),
            *arms_runs[-1][name][2:],
        )
        for name in ("one", "batch", "objects")
    }
    old = [statistics.median(b[i] for b in before) for i in range(4)] if before else None
    one, one_cpu, want, mon_one = arms["one"]
    many, many_cpu, got, mon_many = arms["batch"]
    objects, objects_cpu, got_objects, _ = arms["objects"]
    print(f"per-record: {one:,.0f} records/s; batch: {many:,.0f}; batch, object bank: {objects:,.0f}", flush=True)
    if got != want or got_objects != want:
        raise AssertionError("the batch paths raised other alerts than the per-record path")
    scores_global, scores_global_cpu, _, _ = rate(SCORES_GLOBAL, records, {"batch": batched})["batch"]
    no_audit, no_audit_cpu, _, mon_quiet = rate(NO_AUDIT, records, {"batch": batched})["batch"]
    print(f"scores on the global segment only: {scores_global:,.0f}; and no audit: {no_audit:,.0f}", flush=True)
    replay = replay_records(REPLAY_ALL)
    whole, whole_cpu, whole_alerts, mon_whole = rate(DEFAULT, replay, {"batch": batched}, repeats=3)["batch"]
    print(f"the whole replay ({len(replay):,} records): {whole:,.0f}", flush=True)
    profiles = [profile(records) for _ in range(3)]  # one profiled run is at the mercy of the machine's load
    shares = {stage: statistics.median(p[0][stage] for p in profiles) for stage in profiles[0][0]}
    profiled = statistics.median(p[1] for p in profiles)
    timed_runs = [timed_stages(records) for _ in range(REPEATS)]
    timed = {name: statistics.median(run[name] for run in timed_runs) for name in timed_runs[0]}
    per_update = update_cost()
    per_kernel_update = kernel_cost()
    score_keys = sum(1 for m in mon_many.stats.lattice.masks if sum(m) <= DEFAULT.stats.score_max_order)
    n_keys = len(mon_many.stats.lattice.masks)
    stage = mon_many.signal_stage
    nonzero = events = updates = 0
    for r in records:
        members, values = stage.inputs(r)
        for (_, kind), value in zip(members, values, strict=True):
            updates += score_keys if kind == "mean" else n_keys
            if value != 0.0:
                nonzero += score_keys if kind == "mean" else n_keys
        events += any(v != 0.0 and k != "mean" for (_, k), v in zip(members, values, strict=True))
    per_rec_updates = nonzero / len(records)
    per_rec_all = updates / len(records)
    load_after = os.getloadavg()
    before_rows = (
        f"| per-record, git {BEFORE} (before this work; same run, subprocess) | {old[0]:,.0f} | {old[1]:,.0f} | "
        f"{old[1] / GOAL:.1%} |\n| batch, git {BEFORE} | {old[2]:,.0f} | {old[3]:,.0f} | {old[3] / GOAL:.1%} |\n"
        if old
        else ""
    )
    gain = (
        f"Against the code this work started from, in the same run: the batch path **{many_cpu / old[3]:.1f}x** "
        f"(per CPU-second; {many / old[2]:.1f}x wall-clock), the per-record path {one_cpu / old[1]:.1f}x."
        if old
        else f"(git {BEFORE} is not in this checkout: the old code was not measured.)"
    )
    busy = max(load_before[0], load_after[0]) >= 1.5
    load_note = (
        "the wall-clock rates below are depressed by the contention; the rates per CPU-second of the benchmark's "
        'process (the "per core" of the goal) less so, and the ratios measured in the same run, arms interleaved, '
        "hold best."
        if busy
        else "the other sessions were nearly idle during this run (under one core busy in all), so the wall-clock "
        "rates and the rates per CPU-second agree; the ratios measured in the same run, arms interleaved, hold best."
    )
    rows = "\n".join(f"| {stage} | {share:.0%} |" for stage, share in shares.items())
    body = f"""
Load average {load_before[0]:.1f} / {load_before[1]:.1f} (1 / 5 min) before the run and {load_after[0]:.1f} /
{load_after[1]:.1f} after, on **2 cores shared with several other sessions** (the machine's load, stated): {load_note}

**Throughput.** The first {N_RECORDS:,} records of the incident replay, the defaults of issue 12 (64 segments per
record, every detector's flag and score signals with scores on the {score_keys} segments of at most one fixed
dimension, the routing audit), median of {REPEATS} runs on a fresh monitor each. Score streams compiled:
{"yes (numba)" if COMPILED else "no (numba not installed)"}.

| path | records/s (wall) | records per CPU-second | vs the goal of {GOAL:,}/s per core |
|---|---:|---:|---:|
{before_rows}| `SegmentMonitor.observe`, record by record | {one:,.0f} | {one_cpu:,.0f} | {one_cpu / GOAL:.1%} |
| `SegmentMonitor.observe_batch`, batches of {BATCH} (the worker and ingest) | {many:,.0f} | {many_cpu:,.0f} | \
{many_cpu / GOAL:.1%} |
| batch, one `BernoulliCUSUM` object per stream (the bank without numba) | {objects:,.0f} | {objects_cpu:,.0f} | \
{objects_cpu / GOAL:.1%} |
| batch, scores on the global segment only (`score_max_order=0`) | {scores_global:,.0f} | {scores_global_cpu:,.0f} | \
{scores_global_cpu / GOAL:.1%} |
| batch, scores on the global segment only, no routing audit | {no_audit:,.0f} | {no_audit_cpu:,.0f} | \
{no_audit_cpu / GOAL:.1%} |
| batch, the whole replay ({len(replay):,} records, all its faults; median of 3) | {whole:,.0f} | {whole_cpu:,.0f} | \
{whole_cpu / GOAL:.1%} |

The whole replay is the harder case: its later faults raise {len(whole_alerts)} alerts and make
{mon_whole.n_absorbed:,} alarms that open alerts absorb, each localised first (below), so alarms, not the kernel,
set its rate.

{gain} All three paths at the defaults raised the same {len(want)} alert(s), field by field
({mon_one.n_absorbed:,} alarms absorbed by localisation in each; {mon_quiet.n_absorbed:,} without the audit);
`tests/monitor/test_segments_batch.py` proves the batch path's alerts equal to the per-record path's (and, for
records without signals, its decided records and audit counts), the compiled banks bit-identical to the object bank
for every kind of stream (alerts, and every stream's counts, CUSUMs, baseline and change estimate), a checkpoint
in the format from before this work continuing to the bit as that code did, and the sharded monitor's workers (the
class a Ray actor runs) on the batch path with one process's alerts.

**How the batch path works now.** Every stream is a row of the compiled bank of its kind: scores (learned
baseline, warm-up {DEFAULT.stats.mean_warmup}), rates (learned baseline, warm-up {DEFAULT.stats.rate_warmup}) and
invariants (the routing rules: a fixed baseline of {DEFAULT.stats.invariant_rate:g}, a mode of the kernel). Each
(finest segment, signals) pair is a *plan*, interned once: its segments' streams and their bank rows, grouped by
signal. The records go to the banks in *runs* that end only before the first record of a new plan, at a record an
open worsening watch might alarm on, or at the first record that alarms: a rate event ({events} of the
{N_RECORDS:,} records carry one: a detector's flag or a routing violation) no longer ends a run nor goes through
the interpreter. One kernel call scans a run's records in order: a signal that is zero on a record adds one pending
zero to each of its rows (a tight loop: {per_rec_all:.0f} updates per record, {per_rec_updates:.1f} of them
non-zero, nearly all scores), a non-zero applies the row's pending zeros as one chunk (the chunks of the object
bank's clocks, so the arithmetic is the same to the bit) and updates it, and the call returns at the first record
that alarms, with its alarms in the object path's order (segment, then signal). The records are then counted and
decided in order, and only then are the run's alarms handled: {per_kernel_update * 1e9:,.0f} ns per score update in
the kernel, against {per_update * 1e6:.2f} µs for one `BernoulliCUSUM.update` in the interpreter. A sharded
monitor's workers (`--workers N`, local or Ray actors) feed each batch's runs of records to the same path, their
own signals only.

**The goal of {GOAL:,} records/s per core is missed** by a factor of {GOAL / many_cpu:.1f} at the defaults. Where
the time of the batch path goes now, timed without a profiler (median of {REPEATS} runs; the stages are disjoint):

| stage | share of the time |
|---|---:|
| alarms: localisation, de-duplication, attribution (`SegmentMonitor._raise`) | {timed["alarms"]:.0%} |
| new plans: a plan's first record joins its 64 segments, creating streams (`_join_plan`) | {timed["plans"]:.0%} |
| the compiled kernel: every update of every run (`_score_bank.feed`) | {timed["kernel"]:.0%} |

and by cProfile (median of 3 profiled runs, {profiled:.1f} s for the {N_RECORDS:,} records, profiler overhead
included - it inflates the Python stages that make many small calls against the kernel; stages nest, so the shares do
not add up to 100%):

| stage | share of the time |
|---|---:|
{rows}

**What is left** is, first, Python per *alarm*: the replay's routing fault makes every violation alarm on dozens of
the 64 segments at once ({mon_one.n_absorbed:,} alarms in {N_RECORDS:,} records, all but one absorbed by the open
alert), and each alarm is still localised before it is absorbed (`_localise`, `_degraded`, `_siblings`,
`_second_fault` in `parity.monitor.detection.pipeline`). Since git {BEFORE} the alarms of one record (the kernel
returns them together: 44 records carry the 728 alarms here) share their reads: each stream's answer to "degraded?",
each (open alert, segment)'s second-fault check, and where each segment's localisation walks on to (unless a stream
in its first warm-up, whose answer depends on the alarm's level, decided the walk) are read once and remembered
until one of the alarms raises or supersedes an alert (the open alerts are part of the answers). Nothing updates a
stream between them, and a stream's second read applies no pending zeros, so every statistic stays the same to the
bit: the exactness tests above hold unchanged, and
`test_the_alarms_of_one_record_sharing_their_reads_change_no_localisation` proves every localisation's trail, every
alert and every stream's state equal to localising each alarm on its own. What remains there is the localisation's
own Python walking the lattice from each alarm's segment.

**Not done, and why.** Absorbing an alarm before localising it: localisation may climb *out* of an open alert's
segment (every sibling degraded) or stop on a refinement of it that is a second fault (`_own_segment`,
`_second_fault`), so no cheap test on the alarm's stream alone proves where it lands; an exact shortcut needs the
localisation itself, hence the memo instead. Localisation on a signal's rows of the banks as arrays, and cheaper
new plans and per-record signal extraction, were not reached this round. Even with no alarm cost at all the batch
path would run at about {1 / (1 - timed["alarms"]):.1f}x today's rate, so the goal also needs the rest in the
interpreter cut: new plans ({len(mon_many.stats._plans)} in these {N_RECORDS:,} records, each joining 64 segments and
creating their streams; amortised over a longer run), and each record's signals and segment (`SignalStage.inputs`,
`values_of`).
"""
    write_section("segments", "Segment monitor: per-record and batch paths", body)


if __name__ == "__main__":
    main()
