"""Silent faults injected with ``parity lab faultbox``: one incident per fault, and how soon, against river.

The chain is the one a user would drill on their own stack: ``parity lab traffic`` -> ``parity proxy`` (a real
subprocess, DuckDB store) -> the faultbox -> the lab fleet (incident config, committed weights). One clean phase
is recorded first; then, for each fault in turn, the faultbox switches it on for one segment (share 1.0) for a
faulty phase. Each fault's stream is the clean phase followed by its own faulty phase; it is fed to a fresh
:class:`~parity.monitor.pipeline.SegmentMonitor` (the monitor fed the proxy's records, warm-ups shortened to fit
the short phases: ``rate_warmup=100``, ``mean_warmup=50``) and, on the fault's own signal, to river's ADWIN and
PageHinkley (default settings) on the fault's segment and on all traffic.

Per fault: alerts and incidents raised in the faulty phase, the segment of the incident's lead alert, the
in-segment requests from the switch to the first alert (every in-segment request is hit, except that dropped
context only changes requests that carry history), false alerts in the clean phase; for river, detections in
the clean phase (false) and in-segment requests until the first detection in the faulty phase.

Run: ``python -m benchmarks faults`` (``BENCH_FAULTS_CLEAN_S``, ``BENCH_FAULTS_FAULT_S``, ``BENCH_FAULTS_RATE``
to change the phases: default 50 s clean, 40 s per fault, 6 requests/s).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx

from benchmarks._results import write_section
from parity._background_server import BackgroundServer
from parity._loopback import free_port
from parity.lab.faultbox import FaultBox, FaultPlan
from parity.monitor import Record
from parity.monitor.incidents import group_incidents
from parity.monitor.pipeline import MonitorConfig, SegmentMonitor
from parity.monitor.segments import StatsConfig, record_signals, serving_signals

CLEAN_S = float(os.environ.get("BENCH_FAULTS_CLEAN_S", "50"))
FAULT_S = float(os.environ.get("BENCH_FAULTS_FAULT_S", "40"))
RATE = float(os.environ.get("BENCH_FAULTS_RATE", "6"))
#: (fault, segment, the signal it should show in; None: no quality signal should alarm)
FAULTS: list[tuple[str, dict[str, str], str | None]] = [
    ("ignore-sampling", {"model": "O"}, "sampling_consistency"),
    ("max-tokens-cap", {"model": "H"}, "output.cut"),
    ("drop-context", {"model": "H"}, "context.dropped"),
    ("reencode", {"platform": "tpu"}, "degeneration"),
    ("latency", {"model": "H"}, None),
]


def _wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"proxy exited with {proc.returncode}")
        try:
            httpx.get(url + "/parity/health", timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up")


def _traffic(target: str, duration: float, seed: int) -> None:
    from parity.lab.traffic import TrafficGenerator

    TrafficGenerator(target=target, rate=RATE, duration=duration, seed=seed, top_logprobs=5, temperature=None).run()


def _in(record: Record, segment: dict[str, str]) -> bool:
    return all(getattr(record, k) == v for k, v in segment.items())


def _value(record: Record, signal: str) -> float | None:
    for s in record_signals(record):
        if s.signal == signal:
            return s.value
    return None


def _river(make: Callable[[], object], values: list[tuple[bool, float]]) -> tuple[int, int | None]:
    """(detections in the clean phase, faulty-phase values until the first detection or None)."""
    det = make()
    clean_hits, n_faulty = 0, 0
    for faulty, x in values:
        det.update(x)  # type: ignore[attr-defined]
        n_faulty += faulty
        if det.drift_detected:  # type: ignore[attr-defined]
            if not faulty:
                clean_hits += 1
            else:
                return clean_hits, n_faulty
    return clean_hits, None


def main() -> None:
    import torch
    from river.drift import ADWIN, PageHinkley

    from parity.lab.fleet import FleetConfig, default_config_path
    from parity.lab.server import LabServer, ServerThread
    from parity.monitor.store import open_store

    torch.set_num_threads(1)
    server = LabServer(FleetConfig.load(default_config_path("incident")), admin_token="bench", max_wait_s=0.01)
    box = FaultBox("http://127.0.0.1:1", FaultPlan("latency", share=0.0))
    phases: list[tuple[str, datetime, datetime]] = []
    with tempfile.TemporaryDirectory() as d, ServerThread(server) as lab:
        box.upstream = lab.url
        store_path = os.path.join(d, "faults.duckdb")
        with BackgroundServer(box, name="faultbox") as fb:
            port = free_port()
            proxy = f"http://127.0.0.1:{port}"
            parity = str(Path(sys.executable).with_name("parity"))
            cmd = [parity, "proxy", "--upstream", fb.url, "--listen", f"127.0.0.1:{port}", "--store", store_path,
                   "--long-context-tokens", "192"]  # fmt: skip
            proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
            try:
                _wait_up(proxy, proc)
                start = datetime.now().astimezone()
                _traffic(proxy, CLEAN_S, seed=1)
                phases.append(("clean", start, datetime.now().astimezone()))
                print(f"clean phase done ({CLEAN_S:.0f} s)", flush=True)
                for k, (fault, segment, _) in enumerate(FAULTS):
                    box.plan = FaultPlan(fault, share=1.0, segment=segment, delay=2.0, seed=k)
                    start = datetime.now().astimezone()
                    _traffic(proxy, FAULT_S, seed=10 + k)
                    phases.append((fault, start, datetime.now().astimezone()))
                    box.plan = FaultPlan("latency", share=0.0)
                    print(f"{fault} phase done", flush=True)
                time.sleep(2.0)
            finally:
                proc.terminate()
                proc.wait(timeout=60)
        store = open_store(store_path, read_only=True)
        records = store.records()
        store.close()

    clean = [r for r in records if phases[0][1] <= r.time <= phases[0][2]]
    events: dict[str, list[float]] = {}
    for r in clean:
        for sig in serving_signals(r):
            events.setdefault(sig.signal, []).append(sig.value)
    clean_rates = "; ".join(f"`{k}` {int(sum(v))} of {len(v)} clean requests" for k, v in sorted(events.items()))
    rows = []
    for (fault, segment, signal), (_, t0, t1) in zip(FAULTS, phases[1:], strict=True):
        faulty = [r for r in records if t0 <= r.time <= t1]
        config = MonitorConfig(
            stats=StatsConfig(long_context_threshold=192, rate_warmup=100, mean_warmup=50), routing_audit=False
        )
        mon = SegmentMonitor(config=config)
        false_alerts = 0
        for r in clean:
            false_alerts += sum(1 for a in mon.observe(r) if a.status == "open")
        hit = 0
        first: int | None = None
        for r in faulty:
            hit += _in(r, segment)
            if mon.observe(r) and first is None:
                first = hit
        raised = [a for a in mon.alerts if a.detected_at >= t0]
        incidents = group_incidents(raised)
        lead = incidents[0].lead if incidents else None
        seg_label = ",".join(f"{k}={v}" for k, v in segment.items())
        named = ",".join(f"{k}={v}" for k, v in lead.segment.items()) or "all" if lead else "-"
        river_cells = []
        if signal is not None:
            for seg in (segment, {}):
                values = [
                    (r in faulty, v) for r in [*clean, *faulty] if _in(r, seg) and (v := _value(r, signal)) is not None
                ]
                for make in (ADWIN, PageHinkley):
                    c, n = _river(make, values)
                    river_cells.append(f"{c} / {n if n is not None else 'missed'}")
        else:
            river_cells = ["-"] * 4
        n_seg = sum(_in(r, segment) for r in faulty)
        rows.append(
            f"| {fault} on {seg_label} | {len(clean)} / {len(faulty)} ({n_seg} in segment) | {false_alerts} | "
            f"{len(raised)} / {len(incidents)} | {named} ({lead.signal if lead else '-'}) | "
            f"{first if first is not None else 'none'} | " + " | ".join(river_cells) + " |"
        )
        print(rows[-1], flush=True)
    body = (
        (__doc__ or "").split("\n\n", 1)[1].strip()
        + "\n\n"
        + f"Phases: {CLEAN_S:.0f} s clean, {FAULT_S:.0f} s per fault, {RATE:g} requests/s offered. **Measured on a "
        "contended 2-core machine** (other sessions' tests running): the lab served fewer requests than offered.\n\n"
        f"Per-request events of the serving signals in the clean phase (their false-alarm exposure): {clean_rates}."
        "\n\n"
        "| fault | requests clean / faulty | false alerts (clean) | alerts / incidents (faulty) | lead segment "
        "(signal) | in-segment requests to the first alert | ADWIN seg: clean false / to detect | PageHinkley seg "
        "| ADWIN all | PageHinkley all |\n|---|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows)
    )
    print(f"wrote {write_section('faults', 'Silent faults through the faultbox', body)}")


if __name__ == "__main__":
    main()
