"""Silent faults injected with ``parity lab faultbox``: one alert per fault, and how soon, against river.

The chain is the one a user would drill on their own stack: chat clients -> ``parity proxy`` (a real
subprocess, DuckDB store) -> the faultbox -> the lab fleet (incident config, committed weights). One clean phase
is recorded first; then, for each fault in turn, the faultbox switches it on for one segment (share 1.0) for a
faulty phase. The traffic is chat users: :data:`CONVERSATIONS` concurrent conversations, each sending its next
turn only once its answer is back (as a person at a chat application does) and carrying its history (the last
three exchanges) for :data:`TURNS` turns, then starting over on a model drawn at random; prompts of the traffic
generator's kinds (``parity lab traffic``'s requests: ``top_logprobs=5``, its sampling mix) with non-Latin
requests ("Write this in Thai: ...") at 30% instead of 5%, so that a re-encoding fault has non-ASCII answers to
change. An open-loop Poisson stream at a fixed rate (the previous drill's) starved the conversations on a loaded
lab: answers took minutes, a session's next request left before its previous answer was back, so 2 of 188 model=H
requests carried history. Plus a greedy canary: six fixed prompts sent in turn to each model at temperature 0
without logprobs (identical greedy requests, for ``greedy_disagreement``). Each fault's stream is the clean phase
followed by its own faulty phase; it is fed to a fresh :class:`~parity.monitor.detection.pipeline.SegmentMonitor` (the
monitor fed the proxy's records, warm-ups shortened to fit the phases: ``rate_warmup=100``, ``mean_warmup=50``;
each record's signals decided afresh by that monitor, routing audit included, as the proxy's own would: the
signals the proxy stored followed *its* alerts across every phase, and its audit flags a session that stays on an
alerting segment)
and, on the fault's own signal, to river's ADWIN and PageHinkley (default settings) on the fault's segment and on
all traffic.

Per fault: in the faulty phase, the alerts a person is notified of (one per incident: the alarm that opened it,
``Alert.opens_incident``, what the webhook sends), the alarms raised (a signal on a segment each, an incident's
evidence) and the incidents, the segment and signal of the incident's lead alarm,
the in-segment requests from the switch to the first alert and, of those, how many the fault actually *changed*
(the faultbox's count: dropping context changes only a request with history, re-encoding only a non-ASCII
answer, ignoring sampling only a request that set a sampling parameter), each signal that alerted with the
in-segment requests until its first alarm, false alerts (notified / alarms) in the clean phase; for river,
detections in the clean
phase (false) and in-segment requests until the first detection in the faulty phase.

Run: ``python -m benchmarks faults`` (``BENCH_FAULTS_CLEAN_S``, ``BENCH_FAULTS_FAULT_S``,
``BENCH_FAULTS_CONVERSATIONS``, ``BENCH_FAULTS_CANARY_RATE`` change the phases: default 300 s clean, 200 s per
fault, 12 conversations, 1 canary request/s; ``BENCH_FAULTS_DUMP=x.jsonl`` keeps the records,
``BENCH_FAULTS_FROM=x.jsonl`` analyses kept ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import httpx

from benchmarks._results import write_section
from parity._background_server import BackgroundServer
from parity._loopback import free_port
from parity.lab.faultbox import FaultBox, FaultPlan
from parity.monitor import Record
from parity.monitor.detection.incidents import group_incidents, notified
from parity.monitor.detection.pipeline import MonitorConfig, SegmentMonitor
from parity.monitor.detection.segments import StatsConfig, record_signals, serving_signals
from parity.monitor.intake.scoring import GREEDY_DISAGREEMENT

CLEAN_S = float(os.environ.get("BENCH_FAULTS_CLEAN_S", "300"))
FAULT_S = float(os.environ.get("BENCH_FAULTS_FAULT_S", "200"))
#: concurrent chat conversations (closed loop: a conversation's next turn waits for its answer)
CONVERSATIONS = int(os.environ.get("BENCH_FAULTS_CONVERSATIONS", "12"))
#: turns per conversation before it starts over (on a model drawn at random)
TURNS = 8
#: the prompt kinds' shares: the traffic generator's, with non-Latin requests at 30% (non-ASCII answers)
PROMPT_SHARES = {"code": 0.35, "prose": 0.30, "non_latin": 0.30, "long": 0.05}
#: greedy canary requests per second (fixed prompts, temperature 0, no logprobs), on top of the traffic
CANARY_RATE = float(os.environ.get("BENCH_FAULTS_CANARY_RATE", "1.0"))
#: the canary's prompts, sent in turn to each model: identical greedy requests, whose answers must agree
CANARY_PROMPTS = (
    "What does `json.dumps` do?",
    "What does `os.path.join` do?",
    "Write this in Thai: The file was saved.",
    "What does `re.compile` do?",
    "Write this in Chinese: Memory exhausted",
    "What does `math.isclose` do?",
)
#: a JSONL file to write every stored record and the phases to (for offline analysis), or "" for none
DUMP = os.environ.get("BENCH_FAULTS_DUMP", "")
#: a JSONL file written by an earlier run's ``BENCH_FAULTS_DUMP``: analyse its records instead of running the drill
FROM = os.environ.get("BENCH_FAULTS_FROM", "")
#: a JSONL file of an earlier, interrupted run (``BENCH_FAULTS_DUMP``): its phases are kept, the others are run
RESUME = os.environ.get("BENCH_FAULTS_RESUME", "")
#: comma-separated fault names to run (default: all)
ONLY = [f for f in os.environ.get("BENCH_FAULTS_ONLY", "").split(",") if f]
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


def _canary(target: str, stop: threading.Event) -> None:
    """Identical greedy requests in turn (each prompt to each model), ``CANARY_RATE`` per second until ``stop``."""
    plan = [(m, p) for p in CANARY_PROMPTS for m in ("H", "O", "S")]
    with httpx.Client(base_url=target, timeout=120) as client:
        k = 0
        while not stop.wait(1.0 / CANARY_RATE):
            model, prompt = plan[k % len(plan)]
            k += 1
            body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 16,
                    "temperature": 0.0, "user": f"canary-{k % 7}"}  # fmt: skip
            with contextlib.suppress(httpx.HTTPError):
                client.post("/v1/chat/completions", json=body)


async def _conversations(target: str, duration: float, seed: int) -> int:
    """:data:`CONVERSATIONS` chat users for ``duration`` seconds (see the module docstring); the answers received."""
    import numpy as np

    from parity.lab._prompts import TrafficPrompt, prompt_mix
    from parity.lab.traffic import SAMPLING_MIX

    rng = np.random.default_rng(seed)
    mix = np.array([share for share, _ in SAMPLING_MIX])
    deadline = time.monotonic() + duration
    answered = 0

    async def user(client: httpx.AsyncClient, u: int) -> None:
        nonlocal answered
        n = 0
        while time.monotonic() < deadline:
            name, n = f"conv-{seed}-{u}-{n}", n + 1
            model = ("H", "O", "S")[int(rng.integers(3))]
            sampling = dict(SAMPLING_MIX[int(rng.choice(len(SAMPLING_MIX), p=mix / mix.sum()))][1])
            history: tuple[tuple[str, str], ...] = ()
            for _ in range(TURNS):
                if time.monotonic() >= deadline:
                    return
                prompt = prompt_mix(rng, shares=PROMPT_SHARES)
                if history and prompt.endpoint == "chat" and prompt.kind != "long":
                    messages = (*history[-6:], *prompt.messages)
                    prompt = TrafficPrompt(prompt.kind, "chat", messages, expects_non_latin=prompt.expects_non_latin)
                body = prompt.body(model=model, max_tokens=32, user=name, sampling=sampling, top_logprobs=5)
                path = "/v1/chat/completions" if prompt.endpoint == "chat" else "/v1/completions"
                try:
                    resp = await client.post(path, json=body)
                    choice = resp.json()["choices"][0]
                except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
                    continue
                answered += 1
                if prompt.endpoint == "chat":
                    history = (*prompt.messages, ("assistant", str(choice["message"]["content"])))

    async with httpx.AsyncClient(base_url=target, timeout=300) as client:
        await asyncio.gather(*(user(client, u) for u in range(CONVERSATIONS)))
    return answered


def _traffic(target: str, duration: float, seed: int) -> None:
    stop = threading.Event()
    canary = threading.Thread(target=_canary, args=(target, stop), daemon=True)
    if CANARY_RATE > 0:
        canary.start()
    try:
        asyncio.run(_conversations(target, duration, seed))
    finally:
        stop.set()
        if canary.is_alive():
            canary.join(timeout=130)


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


Phases = list[tuple[str, datetime, datetime]]


def _collect(done: frozenset[str] = frozenset()) -> tuple[list[Record], Phases, dict[str, set[str]]]:
    """Run the drill: the stored records, the phases (name, start, end) and each fault's changed response ids;
    the phases named in ``done`` (recorded by an earlier run) are skipped."""
    import torch

    from parity.lab.fleet import FleetConfig, default_config_path
    from parity.lab.server import LabServer, ServerThread
    from parity.monitor.storage.store import open_store

    torch.set_num_threads(1)
    server = LabServer(FleetConfig.load(default_config_path("incident")), admin_token="bench", max_wait_s=0.01)
    box = FaultBox("http://127.0.0.1:1", FaultPlan("latency", share=0.0))
    phases: Phases = []
    changed: dict[str, set[str]] = {}
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
                if "clean" not in done:
                    start = datetime.now().astimezone()
                    _traffic(proxy, CLEAN_S, seed=1)
                    phases.append(("clean", start, datetime.now().astimezone()))
                    print(f"clean phase done ({CLEAN_S:.0f} s)", flush=True)
                for k, (fault, segment, _) in enumerate(FAULTS):
                    if (ONLY and fault not in ONLY) or fault in done:
                        continue
                    box.plan = FaultPlan(fault, share=1.0, segment=segment, delay=2.0, seed=k)
                    start = datetime.now().astimezone()
                    _traffic(proxy, FAULT_S, seed=10 + k)
                    phases.append((fault, start, datetime.now().astimezone()))
                    time.sleep(1.0)  # the phase's last answers are back (and counted) before the switch
                    changed[fault] = set(box.changed_ids)
                    box.changed_ids.clear()
                    box.plan = FaultPlan("latency", share=0.0)
                    print(f"{fault} phase done", flush=True)
                time.sleep(2.0)
            finally:
                proc.terminate()
                proc.wait(timeout=60)
        store = open_store(store_path, read_only=True)
        records = store.records()
        store.close()
    return records, phases, changed


def _dump(path: str, records: list[Record], phases: Phases, changed: dict[str, set[str]]) -> None:
    with open(path, "w") as fh:
        fh.write(json.dumps({"phases": [(n, a.isoformat(), b.isoformat()) for n, a, b in phases]}) + "\n")
        fh.write(json.dumps({"changed": {k: sorted(v) for k, v in changed.items()}}) + "\n")
        for r in records:
            fh.write(json.dumps(r.to_dict()) + "\n")


def _load(path: str) -> tuple[list[Record], Phases, dict[str, set[str]]]:
    with open(path) as fh:
        lines = fh.read().splitlines()
    phases = [(n, datetime.fromisoformat(a), datetime.fromisoformat(b)) for n, a, b in json.loads(lines[0])["phases"]]
    changed = {k: set(v) for k, v in json.loads(lines[1])["changed"].items()}
    return [Record.from_dict(json.loads(line)) for line in lines[2:]], phases, changed


def _load_line(records: list[Record], phases: Phases) -> str:
    """The load the lab served: its answers per second over the phases."""
    seconds = sum((b - a).total_seconds() for _, a, b in phases)
    n = sum(1 for r in records if any(a <= r.time <= b for _, a, b in phases))
    return f"the lab answered {n / max(seconds, 1e-9):.2f} requests/s"


def _span(phase: tuple[str, datetime, datetime]) -> str:
    return f"{(phase[2] - phase[1]).total_seconds():.0f} s"


def main() -> None:
    from river.drift import ADWIN, PageHinkley

    if FROM:
        records, phases, changed = _load(FROM)
    else:
        records, phases, changed = _load(RESUME) if RESUME else ([], [], {})
        more = _collect(frozenset(name for name, _, _ in phases))
        records, phases, changed = records + more[0], phases + more[1], changed | more[2]
        if DUMP:
            _dump(DUMP, records, phases, changed)
    span = {name: (t0, t1) for name, t0, t1 in phases}
    phases = [("clean", *span["clean"])] + [(f[0], *span[f[0]]) for f in FAULTS if f[0] in span]
    faults = [f for f in FAULTS if f[0] in span]

    # decided afresh by each fault's monitor (see the module docstring)
    records = [replace(r, signals=None) for r in records]
    clean = [r for r in records if phases[0][1] <= r.time <= phases[0][2]]
    events: dict[str, list[float]] = {}
    for r in clean:
        for sig in serving_signals(r):
            events.setdefault(sig.signal, []).append(sig.value)
    for r in clean:
        if (disagreed := r.flagged(GREEDY_DISAGREEMENT)) is not None:
            events.setdefault(GREEDY_DISAGREEMENT, []).append(float(disagreed))
    clean_rates = "; ".join(f"`{k}` {int(sum(v))} of {len(v)} clean requests" for k, v in sorted(events.items()))
    clean_rates += f" (`{GREEDY_DISAGREEMENT}`: repeated greedy requests, the canary's and the traffic's)"
    rows = []
    for (fault, segment, signal), (_, t0, t1) in zip(faults, phases[1:], strict=True):
        faulty = [r for r in records if t0 <= r.time <= t1]
        config = MonitorConfig(stats=StatsConfig(rate_warmup=100, mean_warmup=50))
        mon = SegmentMonitor(config=config)
        for r in clean:
            mon.observe(r)
        clean_alarms = mon.alerts
        hit = affected = 0
        first: int | None = None
        first_affected: int | None = None
        by_signal: dict[str, int] = {}
        hit_ids = changed.get(fault, set())
        faulty_ids = {r.record_id for r in faulty}
        for r in faulty:
            hit += _in(r, segment)
            affected += r.record_id in hit_ids
            for a in mon.observe(r):
                if a.status == "open":
                    by_signal.setdefault(a.signal, hit)
                    if first is None:
                        first, first_affected = hit, affected
        raised = [a for a in mon.alerts if a.detected_at >= t0]
        incidents = group_incidents(raised)
        pages = notified(raised)
        lead = incidents[0].lead if incidents else None
        seg_label = ",".join(f"{k}={v}" for k, v in segment.items())
        named = ",".join(f"{k}={v}" for k, v in lead.segment.items()) or "all" if lead else "-"
        river_cells = []
        if signal is not None:
            for seg in (segment, {}):
                values = [
                    (r.record_id in faulty_ids, v)
                    for r in [*clean, *faulty]
                    if _in(r, seg) and (v := _value(r, signal)) is not None
                ]
                for make in (ADWIN, PageHinkley):
                    c, n = _river(make, values)
                    river_cells.append(f"{c} / {n if n is not None else 'missed'}")
        else:
            river_cells = ["-"] * 4
        n_seg = sum(_in(r, segment) for r in faulty)
        signals = ", ".join(f"{k} {v}" for k, v in by_signal.items()) or "-"
        to_first = f"{first} ({first_affected} changed)" if first is not None else "none"
        rows.append(
            f"| {fault} on {seg_label} | {len(clean)} / {len(faulty)} ({n_seg} in segment, {affected} changed) | "
            f"{len(notified(clean_alarms))} / {len(clean_alarms)} | {len(pages)} / {len(raised)} / {len(incidents)} | "
            f"{named} ({lead.signal if lead else '-'}) | "
            f"{to_first} | {signals} | " + " | ".join(river_cells) + " |"
        )
        print(rows[-1], flush=True)
    body = (
        (__doc__ or "").split("\n\n", 1)[1].strip()
        + "\n\n"
        + f"Phases as run: clean {_span(phases[0])}, faulty {', '.join(_span(p) for p in phases[1:])} ("
        f"{CONVERSATIONS} conversations of {TURNS} turns plus the canary, the last answers awaited; "
        f"{_load_line(records, phases)}). **Measured on a contended machine: 2 cores shared by about 6 sessions** "
        "(their tests and benchmarks running)."
        + (
            f" The records are those the run starting {min(r.time for r in records):%Y-%m-%d %H:%M} UTC kept "
            "(`BENCH_FAULTS_DUMP`), analysed again by this revision's monitor (`BENCH_FAULTS_FROM`)."
            if FROM
            else ""
        )
        + "\n\n"
        f"Per-request events of the serving signals in the clean phase (their false-alarm exposure): {clean_rates}."
        "\n\n"
        "| fault | requests clean / faulty | false alerts / alarms (clean) | alerts / alarms / incidents (faulty) "
        "| lead segment "
        "(signal) | in-segment requests to the first alert | signals alerted (in-segment requests to each) | ADWIN "
        "seg: clean false / to detect | PageHinkley seg | ADWIN all | PageHinkley all |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows)
    )
    print(f"wrote {write_section('faults', 'Silent faults through the faultbox', body)}")


if __name__ == "__main__":
    main()
