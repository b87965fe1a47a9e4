"""Scale-out: the segment monitor on 1, 2 and 4 Ray actors, what a record costs to ship and coordinate, what
100,000 records/s would take, and PostgreSQL ``COPY`` against DuckDB's columnar insert.

Arms:
* the monitor over the incident replay's records (``tests/data/replay``; default ``MonitorConfig``: 64 segments
  per record, every detector's signals, the routing audit): one ``SegmentMonitor``; ``ShardedMonitor`` with 1,
  2 and 4 Ray actors on a local 2-CPU Ray cluster; median of repeated runs;
* per-worker CPU time per record, in process (each worker's ``run`` timed on its own): what one worker costs when
  it owns 1/N of the signals, the floor every worker pays (the segment lattice, the audit), and the coordinator's
  share; from these, the calculation for 100,000 records/s;
* serialisation and coordination per record: ``ray.put`` of a batch, and a round trip to actors that only
  unpickle it (no monitoring);
* stores: ``PostgresStore.write_records`` (one ``COPY`` per batch, a throwaway local PostgreSQL with fsync on),
  row-by-row ``executemany`` INSERT into the same table, and ``DuckDBStore.write_records``.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._results import write_section
from benchmarks.bench_ingest import make_records
from parity.monitor import Alert, Record
from parity.monitor.detection.distributed import ShardedMonitor, ShardWorker
from parity.monitor.detection.pipeline import MonitorConfig, SegmentMonitor
from parity.monitor.storage.store import DuckDBStore, PostgresStore

ROOT = Path(__file__).resolve().parents[1]
REPLAY = ROOT / "tests" / "data" / "replay" / "replay.json.gz"
N_MONITOR = 3000  # replay records per monitor run (the first 3,000 hold the routing fault and its alert)
REPEATS = 3
N_STORE = 50_000
STORE_BATCH = 1000
CONFIG = MonitorConfig()
TARGET = 100_000


def replay_records(n: int) -> list[Record]:
    data = json.loads(gzip.decompress(REPLAY.read_bytes()))
    return [Record.from_dict(r) for r in data["records"][:n]]


def time_single(records: list[Record]) -> tuple[float, list[Alert]]:
    """One ``SegmentMonitor`` on the batch path (batches of 512, as the worker and ``parity ingest`` feed it)."""
    rates = []
    for _ in range(REPEATS):
        mon = SegmentMonitor(config=CONFIG)
        t = time.perf_counter()
        for s in range(0, len(records), 512):
            mon.observe_batch(records[s : s + 512])
        rates.append(len(records) / (time.perf_counter() - t))
    return statistics.median(rates), sorted(mon.alerts, key=lambda a: a.alert_id)


def time_ray(records: list[Record], workers: int, want: list[Alert]) -> float:
    rates = []
    for _ in range(REPEATS):
        with ShardedMonitor(config=CONFIG, workers=workers, engine="ray") as mon:
            mon.observe(records[0])
            mon.drain()  # actors started and warm before the clock starts
            t = time.perf_counter()
            for r in records[1:]:
                mon.observe(r)
            mon.drain()
            rates.append((len(records) - 1) / (time.perf_counter() - t))
            if sorted(mon.alerts, key=lambda a: a.alert_id) != want:
                raise AssertionError(f"{workers} Ray workers raised other alerts than one process")
    return statistics.median(rates)


def worker_costs(records: list[Record], workers: int) -> list[float]:
    """CPU seconds per record of each of ``workers`` in-process workers on the same batches."""
    ws = [ShardWorker(CONFIG, i, workers) for i in range(workers)]
    spent = [0.0] * workers
    ops = [("r", r) for r in records]
    for s in range(0, len(ops), 250):
        for i, w in enumerate(ws):
            c = time.process_time()
            w.run(ops[s : s + 250], {})
            spent[i] += time.process_time() - c
    return [x / len(records) for x in spent]


class Echo:
    """An actor that receives a batch (Ray unpickles it for the call) and does nothing with it."""

    def run(self, ops: Any, numbers: dict[str, int]) -> int:
        return len(ops)


def shipping_costs(records: list[Record], ray: Any, workers: int) -> tuple[float, float, float]:
    """Per record: pickle+unpickle of a 250-op batch in process; ray.put of it; put plus a round trip to
    ``workers`` actors that unpickle it."""
    ops = [("r", r) for r in records]
    batches = [ops[s : s + 250] for s in range(0, len(ops), 250)]
    t = time.perf_counter()
    for b in batches:
        pickle.loads(pickle.dumps(b, protocol=5))
    pickled = (time.perf_counter() - t) / len(ops)
    t = time.perf_counter()
    for b in batches:
        ray.put(b)
    put = (time.perf_counter() - t) / len(ops)
    actors = [ray.remote(num_cpus=0.5)(Echo).remote() for _ in range(workers)]
    ray.get([a.run.remote([], {}) for a in actors])
    t = time.perf_counter()
    for b in batches:
        ref = ray.put(b)
        ray.get([a.run.remote(ref, {}) for a in actors])
    trip = (time.perf_counter() - t) / len(ops)
    for a in actors:
        ray.kill(a)
    return pickled, put, trip


def store_rates(tmp: Path) -> dict[str, float]:
    sys.path.insert(0, str(ROOT / "tests" / "monitor"))
    from _pg_server import ensure_postgres, start_postgres  # the tests' throwaway server (see its docstring)

    records = make_records(N_STORE)
    out: dict[str, float] = {}
    rates = []
    for rep in range(REPEATS):
        with DuckDBStore(tmp / f"d{rep}.duckdb") as store:
            t = time.perf_counter()
            for s in range(0, len(records), STORE_BATCH):
                store.write_records(records[s : s + STORE_BATCH])
            rates.append(len(records) / (time.perf_counter() - t))
    out["duckdb"] = statistics.median(rates)
    bin_dir, why = ensure_postgres()
    if bin_dir is None:
        print(f"skipping PostgreSQL: {why}")
        return out
    server = start_postgres(bin_dir, fsync=True)
    try:
        rates, rows_rates = [], []
        for _ in range(REPEATS):
            with PostgresStore(server.new_url()) as store:
                t = time.perf_counter()
                for s in range(0, len(records), STORE_BATCH):
                    store.write_records(records[s : s + STORE_BATCH])
                rates.append(len(records) / (time.perf_counter() - t))
                assert store.summary().records == len(records)
            with PostgresStore(server.new_url()) as store:
                sample = records[:2000]
                t = time.perf_counter()
                for s in range(0, len(sample), STORE_BATCH):
                    rows = [
                        (r.record_id, r.time, r.model, r.pool, r.platform, [o.detector for o in r.observations],
                         [o.flagged for o in r.observations])
                        for r in sample[s : s + STORE_BATCH]
                    ]  # fmt: skip
                    store._run(
                        lambda conn, rows=rows: conn.cursor().executemany(
                            "INSERT INTO records (record_id, time, model, pool, platform, detectors, flagged)"
                            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                            rows,
                        )
                    )
                rows_rates.append(len(sample) / (time.perf_counter() - t))
        out["postgres_copy"] = statistics.median(rates)
        out["postgres_insert"] = statistics.median(rows_rates)
    finally:
        server.stop()
    return out


def main() -> None:
    import ray

    load_before = os.getloadavg()
    records = replay_records(N_MONITOR)
    single, want = time_single(records)
    print(f"single: {single:,.0f} records/s", flush=True)
    costs = {n: worker_costs(records, n) for n in (1, 2, 4)}
    print(f"worker CPU s/record: {costs}", flush=True)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        ray_rates = {}
        for n in (1, 2, 4):
            ray_rates[n] = time_ray(records, n, want)
            print(f"ray {n}: {ray_rates[n]:,.0f} records/s", flush=True)
        shipping = {n: shipping_costs(records, ray, n) for n in (1, 2, 4)}
    finally:
        ray.shutdown()
    with tempfile.TemporaryDirectory() as tmp:
        stores = store_rates(Path(tmp))
    print(f"stores: {stores}", flush=True)
    load_after = os.getloadavg()

    # The calculation. Per record: the coordinator's cost (parse + build records is ingest's; here only shipping)
    # is c_ship; each worker's cost with N workers is max_i cost_i(N); the floor every worker pays whatever N is
    # the cheapest worker's cost at N=4 (its share of signals is smallest).
    floor = min(costs[4])
    per_worker = {n: max(c) for n, c in costs.items()}
    one = costs[1][0]
    ship = shipping[4][2]
    groups = TARGET * one  # independent single-process monitors (cores) for 100k/s at today's per-record cost
    rows = "\n".join(
        f"| {n} | {ray_rates[n]:,.0f} | {ray_rates[n] / ray_rates[1]:.2f}x | {per_worker[n] * 1e3:.2f} ms "
        f"({', '.join(f'{c * 1e3:.2f}' for c in costs[n])}) | {sum(costs[n]) / one:.2f}x | "
        f"{shipping[n][2] * 1e6:,.0f} µs |"
        for n in (1, 2, 4)
    )
    header = (
        "| Ray actors | records/s | vs 1 actor | CPU per record, slowest worker (each worker) "
        "| CPU, all workers vs one | ship + round trip per record |\n|---:|---:|---:|---:|---:|---:|"
    )
    pg_rows = ""
    if "postgres_copy" in stores:
        pg_rows = (
            f"| `PostgresStore.write_records` (one `COPY` per batch of {STORE_BATCH:,}; fsync on) | "
            f"{stores['postgres_copy']:,.0f} |\n"
            f"| PostgreSQL `executemany` INSERT, 7 of the columns, batches of {STORE_BATCH:,} (2,000-row sample) | "
            f"{stores['postgres_insert']:,.0f} |\n"
        )
    loaded = max(load_before[0], load_after[0]) > 2.5
    load_note = (
        "on **2 cores shared with other sessions' jobs**: every figure below is depressed by the contention, and "
        "the Ray rows most (each actor is a process competing for the same 2 cores). Read the ratios and the "
        "per-record CPU costs rather than the absolute rates."
        if loaded
        else "on 2 cores with little else running (this session's helper sessions editing code beside it); the Ray "
        "rows still share the 2 cores between the driver and its actors."
    )
    machines = int(groups / 16 + 0.999)
    body = f"""
Load average {load_before[0]:.1f} / {load_before[1]:.1f} (1 / 5 min) before the run and {load_after[0]:.1f} /
{load_after[1]:.1f} after, {load_note}

**Monitor on Ray actors.** The first {N_MONITOR:,} records of the incident replay, default `MonitorConfig` (64
segments per record, every detector's flag and score signals, the routing audit), median of {REPEATS} runs; a
local Ray cluster with 2 CPUs on 127.0.0.1. One `SegmentMonitor` in this process (its batch path, batches of 512):
**{single:,.0f} records/s**.
Every Ray run raised exactly the single process's alerts ({len(want)}; checked field by field).

{header}
{rows}

Serialisation per record (batches of 250 records): pickle + unpickle in process {shipping[1][0] * 1e6:.0f} µs,
`ray.put` {shipping[1][1] * 1e6:.0f} µs; "ship + round trip" is `ray.put` plus a call to every actor that
unpickles the batch and returns (no monitoring) - the coordination cost that grows with the number of actors,
because every actor needs every record. Since stop 15 a `Record` pickles as the tuple of its field values, rebuilt
by one constructor call (before, the dataclass's default pickling walked its 23 fields one by one in Python:
about half the CPU of shipping a record); what is left is `ray.put`, one call per actor per batch, and every actor
unpickling every record.

**Where the time goes, and the bottleneck.** Workers are sharded by signal (see
`parity.monitor.detection.distributed`): that keeps localisation, de-duplication and attribution inside one worker
and the alerts exact, but every worker still walks the whole segment lattice of every record and runs the routing audit.
That floor is {floor * 1e3:.2f} ms of CPU per record (the cheapest of 4 workers), against {one * 1e3:.2f} ms for
all the work in one worker: with N workers the slowest one still pays {per_worker[2] * 1e3:.2f} ms (N=2) and
{per_worker[4] * 1e3:.2f} ms (N=4), and the total CPU grows to {sum(costs[4]) / one:.2f}x at N=4. So on this
machine the speed-up is capped twice: by 2 cores (4 actors only add contention), and by the lattice floor, which
no number of signal shards removes (at most {one / floor:.1f}x with unlimited cores), and by the signals'
uneven costs (the balance is by the first batch's estimate; one worker still gets most of the work). Shipping
costs {ship * 1e6:,.0f} µs of wall time per record at 4 actors, {ship / one:.0%} of the CPU that monitoring it
in one process takes:
**the bottleneck of the Ray mode today is getting every record to every actor**, not the statistics. A columnar
batch (Arrow) instead of pickled `Record` objects is the fix that would pay first.

**What 100,000 records/s takes.** At today's per-record cost ({one * 1e3:.2f} ms of CPU per record for the whole
monitor{", measured here under contention" if loaded else ""}), 100,000 records/s is {groups:,.0f} CPU-seconds
per second of monitoring. Signal sharding alone cannot get there: a group of N workers over one record stream
tops out near 1 / {floor * 1e3:.2f} ms = {1 / floor:,.0f} records/s. What reaches it is (a) the vectorised
per-segment update of issue 12 item 1 (goal: 50,000 records/s per core, which would make it 2 workers' worth of
monitoring plus the coordinator's parsing), and (b) splitting the *stream* between independent monitors where
segments do not span it (one monitor per model or per region, each its own `ShardedMonitor`), so M machines of C
cores each carry 100,000 / M records/s. With today's code: {groups:,.0f} cores' worth of single-process monitors
over disjoint streams, e.g. {machines} machine{"s" if machines > 1 else ""} of 16 cores; with the 50,000/s goal
met, 2 cores plus parsing: `parity ingest` decodes ~100,000 lines per CPU-second into stored records on its columnar
path (no monitor; "Store and ingestion throughput"), but the monitor reads records built line by line, ~34,000 per
CPU-second (that table's A/B row before the columnar path), so ~3 cores of parsing - the next bottleneck.

**Stores.** {N_STORE:,} records (3 detector observations and a logprob summary each), batches of
{STORE_BATCH:,}, median of {REPEATS}; PostgreSQL 15 on 127.0.0.1 (a throwaway cluster, fsync on, default
settings), one connection.

| path | records/s |
|---|---:|
| `DuckDBStore.write_records` (one columnar insert per batch) | {stores["duckdb"]:,.0f} |
{pg_rows}
`COPY` streams a batch as one data stream; `executemany` (pipelined by psycopg 3) still binds and executes one
`INSERT` per row, with fewer columns here.
PostgreSQL's value is not speed: several proxies and monitors append to it at once and `parity status` or the
dashboard read it meanwhile, which a DuckDB file (one writer process, no concurrent reader) cannot do.
"""
    write_section("scale", "Scale-out: Ray workers and the PostgreSQL store", body)


if __name__ == "__main__":
    main()
