"""Records/s into the DuckDB store in batches (goal >= 50,000/s), and end-to-end JSONL ingestion.

Arms, all in this process on the same records:
* parity's ``DuckDBStore.write_records`` (one columnar insert per batch: a dict of numpy arrays DuckDB scans);
* DuckDB ``executemany`` of the same rows (the obvious path) - on a 2,000-row sample, it is that slow;
* SQLite ``executemany`` into an equivalent table (the embedded store Phoenix-style tools use);
* ``parity ingest`` end to end (JSON parse, record building, batched store writes) without detectors, and with
  the default detectors when ``parity.detectors`` is available; and the same file read a second time into the same
  store (every line a duplicate the de-duplication drops);
* the competitor arm: ``parity ingest`` of the same file by the code before the columnar fast path (git
  :data:`BASELINE_COMMIT`, taken with ``git archive``) and by this code, each in a fresh subprocess, interleaved.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks._results import write_section
from parity.monitor import DetectorObservation, Record
from parity.monitor._records import RecordColumns
from parity.monitor.intake.ingest import ingest_file
from parity.monitor.intake.scoring import default_scorer
from parity.monitor.runtime.worker import default_monitor
from parity.monitor.storage._record_rows import RECORD_FIELDS, record_row
from parity.monitor.storage.store import DuckDBStore, MemoryStore

N_RECORDS = 200_000
REPEATS = 3

#: The code before the columnar fast path (main when it began), measured against this code in the same run.
BASELINE_COMMIT = "61ef17f"
AB_REPEATS = 6
T0 = datetime(2025, 8, 5, tzinfo=UTC)


def make_records(n: int) -> list[Record]:
    plats = ("gpu", "tpu", "trainium")
    return [
        Record(
            record_id=f"chatcmpl-{i}",
            time=T0 + timedelta(milliseconds=10 * i),
            model="SOH"[i % 3],
            pool="long" if i % 50 == 0 else "short",
            platform=plats[i % 3],
            region="us",
            config_version="v7",
            server=f"{plats[i % 3]}-{i % 4}",
            context_tokens=200 + i % 5000,
            output_tokens=64,
            session_hash=f"{i % 9973:016x}",
            temperature=0.7,
            top_p=0.99,
            top_k=None,
            max_tokens=256,
            finish_reason="stop",
            latency_ms=420.0,
            observations=(
                DetectorObservation("unexpected_script", i % 400 == 0, 0.001),
                DetectorObservation("degeneration", False, 0.02),
                DetectorObservation("code_integrity", False, 0.0),
            ),
            logprob_summary={"mean_logprob": -0.8, "min_logprob": -6.1, "n_logprobs": 64.0},
        )
        for i in range(n)
    ]


def _row(r: Record) -> tuple[Any, ...]:
    return (r.record_id, r.time.isoformat(), r.model, r.pool, r.platform, r.region, r.config_version, r.server,
            r.context_tokens, r.output_tokens, r.session_hash, r.temperature, r.top_p, r.top_k, r.max_tokens,
            r.finish_reason, r.status_code, r.latency_ms,
            json.dumps([[o.detector, o.flagged, o.score] for o in r.observations]), json.dumps(r.logprob_summary),
            r.captured_text, r.source, r.schema_version, r.request_tokens)  # fmt: skip


def bench_parity(records: list[Record], batch: int, tmp: Path) -> tuple[float, float]:
    """(records per wall second, records per CPU second of this process, all threads)."""
    rates, cpu_rates = [], []
    for rep in range(REPEATS):
        path = tmp / f"parity-{batch}-{rep}.duckdb"
        with DuckDBStore(path) as store:
            t, c = time.perf_counter(), time.process_time()
            for s in range(0, len(records), batch):
                store.write_records(records[s : s + batch])
            rates.append(len(records) / (time.perf_counter() - t))
            cpu_rates.append(len(records) / (time.process_time() - c))
            assert store.summary().records == len(records)
        path.unlink()
    return statistics.median(rates), statistics.median(cpu_rates)


def bench_parity_columns(records: list[Record], batch: int, tmp: Path) -> tuple[float, float]:
    """``DuckDBStore.write_record_columns`` of the same records in columns (``parity ingest``'s fast path writes its
    batches so): (records per wall second, records per CPU-second)."""
    parts = [RecordColumns.of(records[s : s + batch]) for s in range(0, len(records), batch)]
    rates, cpu_rates = [], []
    for rep in range(REPEATS):
        path = tmp / f"columns-{batch}-{rep}.duckdb"
        with DuckDBStore(path) as store:
            t, c = time.perf_counter(), time.process_time()
            for part in parts:
                store.write_record_columns(part)
            rates.append(len(records) / (time.perf_counter() - t))
            cpu_rates.append(len(records) / (time.process_time() - c))
            assert store.summary().records == len(records)
        path.unlink()
    return statistics.median(rates), statistics.median(cpu_rates)


def bench_duckdb_executemany(records: list[Record], tmp: Path) -> float:
    sample = records[:2000]
    rows = [record_row(r) for r in sample]  # the store's own row: all 27 columns, the time in microseconds
    values = ", ".join(["?", "make_timestamptz(?::BIGINT)"] + ["?"] * (len(RECORD_FIELDS) - 2))
    rates = []
    for rep in range(REPEATS):
        path = tmp / f"em-{rep}.duckdb"
        with DuckDBStore(path) as store:
            con = store._con
            t = time.perf_counter()
            con.executemany(f"INSERT INTO records ({', '.join(RECORD_FIELDS)}) VALUES ({values})", rows)
            rates.append(len(rows) / (time.perf_counter() - t))
        path.unlink()
    return statistics.median(rates)


def bench_sqlite(records: list[Record], batch: int, tmp: Path) -> float:
    rates = []
    for rep in range(REPEATS):
        path = tmp / f"s-{rep}.sqlite"
        con = sqlite3.connect(path)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(f"CREATE TABLE records ({', '.join(f'c{i}' for i in range(24))})")
        t = time.perf_counter()
        for s in range(0, len(records), batch):
            con.executemany(
                f"INSERT INTO records VALUES ({', '.join(['?'] * 24)})", [_row(r) for r in records[s : s + batch]]
            )
            con.commit()
        rates.append(len(records) / (time.perf_counter() - t))
        con.close()
        path.unlink()
    return statistics.median(rates)


def log_lines(n: int) -> list[str]:
    lines = []
    for i in range(n):
        text = "Sure - here is a short answer about the topic you asked for, in plain English." + (
            " สวัสดี" if i % 400 == 0 else ""
        )
        lines.append(json.dumps({
            "request": {"model": "S", "messages": [{"role": "user", "content": f"question {i}"}], "temperature": 0.7,
                        "user": f"u{i % 500}"},
            "response": {"id": f"chatcmpl-{i}", "created": 1754395200 + i, "model": "S",
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                      "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 40, "completion_tokens": 20}},
            "headers": {"x-parity-platform": ("gpu", "tpu")[i % 2], "x-parity-pool": "short"},
        }) + "\n")  # fmt: skip
    return lines


def bench_ingest(
    lines: list[str], tmp: Path, *, scorer: Any, monitor: bool = False, again: bool = False, repeats: int = REPEATS
) -> tuple[float, float]:
    """``parity ingest`` of a JSONL file end to end (read, parse, build, batched store writes; the segment monitor
    when ``monitor``): (records per wall second, records per CPU-second of this process), medians. ``again``: time
    the second ingest of the file into the same store (all duplicates)."""
    src = tmp / "log.jsonl"
    src.write_text("".join(lines))
    rates, cpu_rates = [], []
    for rep in range(repeats):
        path = tmp / f"ing-{rep}.duckdb"
        with DuckDBStore(path) as store:
            if again:
                ingest_file(src, store, salt="bench", scorer=scorer)
            hook = default_monitor() if monitor else None
            t, c = time.perf_counter(), time.process_time()
            result = ingest_file(src, store, salt="bench", scorer=scorer, hook=hook)
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            assert result.records == len(lines), result.errors[:3]
            assert store.summary().records == len(lines)
            rates.append(result.records / wall)
            cpu_rates.append(result.records / cpu)
        path.unlink()
    return statistics.median(rates), statistics.median(cpu_rates)


#: One ``parity ingest`` of a file into a fresh DuckDB file, no detectors, no monitor, by whichever ``parity`` is on
#: the path: prints its records, the records stored, wall and CPU seconds of the ingest call.
_INGEST_ONCE = """
import json, sys, time
from parity.monitor.intake.ingest import ingest_file
from parity.monitor.storage.store import DuckDBStore
with DuckDBStore(sys.argv[2]) as store:
    t, c = time.perf_counter(), time.process_time()
    result = ingest_file(sys.argv[1], store, salt="bench", scorer=None)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    stored = store.summary().records
print(json.dumps({"records": result.records, "stored": stored, "wall": wall, "cpu": cpu}))
"""


def baseline_source(commit: str, into: Path) -> Path | None:
    """The ``src`` folder of ``commit`` (``git archive`` of this checkout), or ``None`` when git cannot give it."""
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "-C", str(root), "archive", commit, "src"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as archive:
        archive.extractall(into, filter="data")
    return into / "src"


def bench_ingest_ab(lines: list[str], tmp: Path, baseline: Path, repeats: int) -> dict[str, list[tuple[float, float]]]:
    """``parity ingest`` of the file by the baseline's code and by this code, each run in a fresh subprocess, the
    two alternating: {"baseline"|"this": [(records per wall second, records per CPU-second), ...]}."""
    src = tmp / "ab.jsonl"
    src.write_text("".join(lines))
    code = {"baseline": baseline, "this": Path(__file__).resolve().parents[1] / "src"}
    out: dict[str, list[tuple[float, float]]] = {"baseline": [], "this": []}
    for rep in range(repeats):
        for arm in ("baseline", "this") if rep % 2 == 0 else ("this", "baseline"):
            db = tmp / f"ab-{arm}-{rep}.duckdb"
            env = {**os.environ, "PYTHONPATH": str(code[arm])}
            run = subprocess.run([sys.executable, "-c", _INGEST_ONCE, str(src), str(db)], env=env, capture_output=True,
                                 text=True, check=True)  # fmt: skip
            got = json.loads(run.stdout.strip().splitlines()[-1])
            assert got["records"] == got["stored"] == len(lines), got
            out[arm].append((got["records"] / got["wall"], got["records"] / got["cpu"]))
            db.unlink()
    return out


#: Where the time of ``parity ingest`` went, and what changed (cProfile of 20,000 lines into DuckDB, no detectors
#: and no monitor, measured by hand on 2026-12-04 on this contended machine; shares of the profiled run, which
#: inflates many small Python calls).
PROFILE = (
    "Where the time went (cProfile, 20,000 lines into DuckDB, no detectors, no monitor). "
    "Round 1 (git 08850e4 -> 94492b0): orjson behind `parity._json_input.loads_bounded` (same bounds and messages), "
    "each line parsed once instead of dumping the response back to text for the record builder. "
    "Round 2 before (git aececc4): handing each record to the worker 33%, of which 22% was one `isinstance` check "
    "against a runtime-checkable Protocol per record (it walks the protocol's attributes every call, hook or no "
    "hook); `build_parsed` 23%; `parse_exchange` 19%; the log line to an `Exchange` 11%; parsing 7%; the DuckDB "
    "write 6%. Changes: the Protocol check only where a per-record hook exists; records built and handed to the "
    "worker in batches of 1,024 (`MonitorWorker.accept_batch`: the flag counts once per batch, the pending batch "
    "extended up to each store flush); the common line (request and response JSON objects) built without the "
    "intermediate `Exchange` (`RecordBuilder.build_fields`, shared with the proxy's `build_parsed`, so one "
    "definition of a record); `Record` and `ParsedExchange` built through their slot setters (`record_of`: the "
    "frozen dataclass `__init__` sets 27 fields by name; values its `__post_init__` would change or refuse still go "
    "through the constructor); one dict lookup per request field; session hashes remembered per builder; "
    "`loads_bounded`'s fast path inlined per line; DuckDB batch columns from one `attrgetter` pass per record "
    "transposed in C; de-duplication asks the store for the window's record ids (`stored_record_ids`) instead of "
    "reading the records back (the second-read row: a re-read file used to pay a full record read per record). "
    "Same records and rejections: `tests/monitor/test_ingest_batched.py` compares the batched path with the "
    "per-record one on a mixed file (every line shape, bad lines included), and the mixed file gave byte-identical "
    "records and messages before and after. Interleaved A/B on 20,000 lines at load ~6: aececc4 7,000-11,000 "
    "records per CPU-second, this round 22,000-26,000. After: reading the request and response "
    "(`parse_response_object`) 31%, the record's fields (`build_fields`) 15%, the `Record` 10%, the line's own "
    "fields (headers, time) 15%, parsing 8%, the worker and the DuckDB write 14% (DuckDB itself ~10%), the loop 7%. "
    "What is left: the two C libraries alone take about 10 us per record on this CPU - `orjson.loads` of a 500-byte "
    "line 4-5 us at best (min of repeated runs; over 12 us under load spikes) and DuckDB's insert ~5 us per record "
    "(~0.25 us per text value, 16 text columns; an Arrow table measured no faster, and passing a column that is the "
    "same in every row as one SQL parameter gave no measurable gain: the cost is the table append, not the scan) - "
    "plus ~4.5 us building the batch's columns in Python, and the builder walking each line's dict tree into a "
    "27-field `Record`. 100,000 records/s per core is 10 us per record all in, so it is out of reach on this design "
    "and this CPU: it needs the line decoded straight into typed fields (msgspec structs, skipping what is not "
    "read), records kept as columns from the parser to the store without a `Record` object per line (a change to the "
    "record and store contracts every stage reads), and a store append cheaper than DuckDB's per-row insert."
)


def main() -> None:
    load_start = os.getloadavg()
    records = make_records(N_RECORDS)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for batch in (1_000, 5_000, 20_000):
            rate, cpu_rate = bench_parity(records, batch, tmp)
            rows.append(
                f"| parity `DuckDBStore.write_records`, batches of {batch:,} | {rate:,.0f} "
                f"({cpu_rate:,.0f} per CPU-second) |"
            )
            print(rows[-1], flush=True)
        rate, cpu_rate = bench_parity_columns(records, 5_000, tmp)
        rows.append(
            f"| parity `DuckDBStore.write_record_columns` (the same records as columns), batches of 5,000 | "
            f"{rate:,.0f} ({cpu_rate:,.0f} per CPU-second) |"
        )
        print(rows[-1], flush=True)
        rate = bench_duckdb_executemany(records, tmp)
        rows.append(f"| DuckDB `executemany` (2,000-row sample) | {rate:,.0f} |")
        print(rows[-1], flush=True)
        rate = bench_sqlite(records, 5_000, tmp)
        rows.append(f"| SQLite `executemany`, batches of 5,000 (WAL) | {rate:,.0f} |")
        print(rows[-1], flush=True)
        lines = log_lines(50_000)
        rate, cpu_rate = bench_ingest(lines, tmp, scorer=None, repeats=5)
        rows.append(f"| `parity ingest` JSONL file end to end, no detectors, no monitor (50,000 lines, median of 5) | "
                    f"{rate:,.0f} ({cpu_rate:,.0f} per CPU-second) |")  # fmt: skip
        print(rows[-1], flush=True)
        baseline = baseline_source(BASELINE_COMMIT, tmp / "baseline")
        if baseline is not None:
            ab = bench_ingest_ab(lines, tmp, baseline, repeats=AB_REPEATS)
            for arm, label in (("baseline", f"git {BASELINE_COMMIT}, before the columnar fast path"),
                               ("this", "this code")):  # fmt: skip
                walls, cpus = zip(*ab[arm], strict=True)
                rows.append(
                    f"| `parity ingest` A/B, {label} (50,000 lines, a fresh subprocess per run, the arms alternating, "
                    f"median of {AB_REPEATS}) | {statistics.median(walls):,.0f} ({statistics.median(cpus):,.0f} per "
                    f"CPU-second; range {min(cpus):,.0f}-{max(cpus):,.0f}) |"
                )
                print(rows[-1], flush=True)
        else:
            rows.append(f"| `parity ingest` A/B against git {BASELINE_COMMIT} | not measured: git could not give it |")
        rate, cpu_rate = bench_ingest(lines[:20_000], tmp, scorer=None, again=True)
        rows.append(f"| `parity ingest` of the same file a second time into the same store, every line a duplicate "
                    f"(20,000 lines) | {rate:,.0f} ({cpu_rate:,.0f} per CPU-second) |")  # fmt: skip
        print(rows[-1], flush=True)
        rate, cpu_rate = bench_ingest(lines[:20_000], tmp, scorer=None, monitor=True)
        rows.append(f"| `parity ingest` JSONL file end to end, no detectors, segment monitor (20,000 lines) | "
                    f"{rate:,.0f} ({cpu_rate:,.0f} per CPU-second) |")  # fmt: skip
        print(rows[-1], flush=True)
        scorer = default_scorer()
        if scorer is not None:
            rate, cpu_rate = bench_ingest(lines[:5000], tmp, scorer=scorer, monitor=True)
            names = ", ".join(getattr(d, "name", type(d).__name__) for d in getattr(scorer, "detectors", []))
            rows.append(f"| `parity ingest` JSONL file end to end, default detectors ({names}) and monitor (5,000 "
                        f"lines) | {rate:,.0f} ({cpu_rate:,.0f} per CPU-second) |")  # fmt: skip
            print(rows[-1], flush=True)
        else:
            rows.append("| `parity ingest` with detectors | not measured: parity.detectors unavailable at run time |")
        t = time.perf_counter()
        MemoryStore().write_records(records)
        mem = N_RECORDS / (time.perf_counter() - t)
    load = os.getloadavg()
    body = (
        f"Load average {load_start[0]:.1f} at the start and {load[0]:.1f} / {load[1]:.1f} (1 / 5 min) at the end of "
        "the run, on 2 cores shared with other jobs; "
        "wall-clock rates are depressed accordingly; per-CPU-second rates (process CPU time, all threads) much less, "
        "though not wholly: the same code measured 2-3x apart in CPU time per record between quiet and loaded "
        "minutes here (shared caches and cores), so compare rows of one run.\n\n"
        f"{N_RECORDS:,} records (3 detector observations and a logprob summary each), median of {REPEATS} runs, each "
        "into a fresh file.\n\n| path | records/s |\n|---|---:|\n" + "\n".join(rows) + "\n\n"
        f"Goal: >= 50,000 records/s into DuckDB in batches. `MemoryStore` (list append) for scale: {mem:,.0f}/s. "
        "The columnar path converts each batch to numpy columns and inserts them with one `INSERT ... SELECT`; "
        "`executemany` pays a per-row round trip and is shown for contrast.\n\n"
        "`parity ingest` goal: >= 100,000 records/s per core without detectors (**missed**: see the per-CPU-second "
        "rate above, about a quarter of the goal; the run before this round, 2026-12-04 09:12 at a load average of 17, "
        "measured 18,733 per CPU-second, and the A/B below compares the two under the same load); with detectors it "
        "is bounded by the detectors and the segment monitor (the rows with them above). " + PROFILE
    )
    write_section("ingest", "Store and ingestion throughput", body)


if __name__ == "__main__":
    main()
