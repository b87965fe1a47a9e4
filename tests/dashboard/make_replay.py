"""Generate ``tests/data/replay/replay.json.gz``: a small synthetic replay of the incident for the dashboard tests.

Until a recorded ``parity demo`` replay replaces it (same format, see ``conftest.py``), this stands in for one:
seeded synthetic fleet traffic from 2025-07-30 to 2025-09-18 (three models on three platforms, a short and a long
pool split at 192 context tokens, sticky sessions) with the incident's three faults injected at their dates - the
routing bug (model S short requests on the long pool from 08-05, more after the 08-29 load-balancing change,
fixed 09-04 .. 09-16), the output corruption on tpu (models O and S from 08-25, O fixed 08-28, S 09-02) and the
sampler bug of model H on tpu (08-26 .. 09-04) - run through the real :class:`SegmentMonitor`, whose alerts are
kept. Flagged responses carry redacted "captured" text, as with ``parity proxy --capture flagged``.

The records are stored as the monitor stores them (record schema 3): each one's ``context_class`` decided when it
was built (at the fleet's split, 192 tokens, as ``parity proxy --long-context-tokens 192`` would), and its signals
as the monitor decided them. A small schema-2 fixture beside it (``replay-schema2.json``: the first
:data:`SCHEMA2_RECORDS` records as a store before schema 3 held them, without ``context_class``, ``signals`` or
``parity_version``) keeps the dashboard's read path for records no monitor decided covered.

Regenerate (deterministic for a given parity version)::

    .venv/bin/python tests/dashboard/make_replay.py
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from parity.monitor import Alert, Change, DetectorObservation, FeedbackEvent, Record, context_class_of
from parity.monitor._codec import feedback_to_dict
from parity.monitor.detection.pipeline import MonitorConfig, SegmentMonitor
from parity.monitor.detection.segments import StatsConfig

OUT = Path(__file__).resolve().parents[1] / "data" / "replay" / "replay.json.gz"
OUT_SCHEMA2 = OUT.with_name("replay-schema2.json")
SCHEMA2_RECORDS = 40

START = datetime(2025, 7, 30, tzinfo=UTC)
END = datetime(2025, 9, 18, 23, 59, tzinfo=UTC)
N_RECORDS = 9000
N_SESSIONS = 700
LONG_CONTEXT_TOKENS = 192
SEED = 20250917

DETECTORS = ("unexpected_script", "code_integrity", "degeneration", "sampling_consistency")
BASE_RATE = {"unexpected_script": 0.002, "code_integrity": 0.004, "degeneration": 0.004, "sampling_consistency": 0.003}

TEXT = {
    "unexpected_script": "Sure - the quarterly summary is ready สวัสดีครับ and I have sent it to [EMAIL].",
    "code_integrity": "def total(xs):\n    return sum(xs))\n\nprint(total([1, 2, 3])",
    "degeneration": "The answer is the answer is the answer is the answer is the answer is",
    "sampling_consistency": "Paris is the capital of 法国 France, population [NUMBER].",
}


def day(month: int, d: int, hour: int = 0) -> datetime:
    return datetime(2025, month, d, hour, tzinfo=UTC)


CHANGES = (
    Change("c-0805-routing", day(8, 5, 9), "routing", {"model": "S", "platform": "gpu"},
           "router: short requests may reach the long-context pool"),
    Change("c-0812-routing", day(8, 12, 10), "routing", {"model": "S", "platform": "tpu"},
           "router update reaches partner A"),
    Change("c-0820-deploy", day(8, 20, 14), "deploy", {}, "weekly fleet deploy"),
    Change("c-0825-corruption", day(8, 25, 8), "corruption", {"platform": "tpu", "model": "O,S"},
           "runtime performance optimisation enabled on tpu"),
    Change("c-0826-sampler", day(8, 26, 12), "sampler", {"platform": "tpu", "model": "H"},
           "sampler rewrite: approximate top-k, workaround removed"),
    Change("c-0828-rollback", day(8, 28, 15), "rollback", {"platform": "tpu", "model": "O"},
           "rollback of c-0825-corruption for model O"),
    Change("c-0829-lb", day(8, 29, 11), "load_balancing", {"model": "S"}, "routine load-balancing change"),
    Change("c-0902-rollback", day(9, 2, 16), "rollback", {"platform": "tpu", "model": "S"},
           "rollback of c-0825-corruption"),
    Change("c-0904-fix", day(9, 4, 10), "fix", {"model": "S"}, "routing fix of c-0805-routing deployed"),
    Change("c-0904-rollback", day(9, 4, 18), "rollback", {"platform": "tpu", "model": "H"},
           "rollback of c-0826-sampler: exact top-k"),
    Change("c-0916-fix", day(9, 16, 12), "fix", {"model": "S"}, "routing fix rollout complete"),
)  # fmt: skip


def misroute_share(t: datetime, platform: str) -> float:
    """Share of model S short requests the router sends to the long pool."""
    if platform == "trainium" or t < day(8, 5, 9) or t >= day(9, 16, 12):
        return 0.0
    if platform == "tpu" and t < day(8, 12, 10):
        return 0.0
    if t >= day(9, 4, 10):
        return 0.03
    if t >= day(8, 29, 11):
        return 0.25
    return 0.04 if platform == "gpu" else 0.02


def rates(t: datetime, model: str, platform: str, misrouted: bool) -> dict[str, float]:
    out = dict(BASE_RATE)
    if misrouted:
        out["degeneration"] = 0.15
    corrupt_o = model == "O" and day(8, 25, 8) <= t < day(8, 28, 15)
    corrupt_s = model == "S" and day(8, 25, 8) <= t < day(9, 2, 16)
    if platform == "tpu" and (corrupt_o or corrupt_s):
        out["unexpected_script"] = 0.10
        out["code_integrity"] = 0.06
    if platform == "tpu" and model == "H" and day(8, 26, 12) <= t < day(9, 4, 18):
        out["sampling_consistency"] = 0.20
    return out


def generate() -> dict[str, Any]:
    rng = np.random.default_rng(SEED)
    span = (END - START).total_seconds()
    offsets = np.sort(rng.random(N_RECORDS) * span)
    session_model = rng.choice(["S", "O", "H"], size=N_SESSIONS, p=[0.55, 0.25, 0.2])
    session_platform = rng.choice(["gpu", "tpu", "trainium"], size=N_SESSIONS, p=[0.5, 0.3, 0.2])
    session_hash = [hashlib.sha256(f"salt:{i}".encode()).hexdigest()[:16] for i in range(N_SESSIONS)]
    stuck: dict[int, str] = {}  # session -> the long-pool server it stuck to
    records: list[Record] = []
    feedback: list[FeedbackEvent] = []
    for i, off in enumerate(offsets):
        t = START + timedelta(seconds=float(off))
        s = int(rng.integers(N_SESSIONS))
        model, platform = str(session_model[s]), str(session_platform[s])
        long_ctx = rng.random() < 0.15
        ctx = int(rng.integers(300, 2000)) if long_ctx else int(rng.integers(20, 180))
        pool = "long" if long_ctx else "short"
        server = f"{platform}-{pool}-{int(rng.integers(3 if platform == 'gpu' else 2))}"
        misrouted = False
        if model == "S" and not long_ctx:
            share = misroute_share(t, platform)
            sticky = s in stuck and share > 0 and rng.random() < 0.8
            if sticky or rng.random() < share:
                misrouted = True
                pool = "long"
                server = stuck.setdefault(s, f"{platform}-long-{int(rng.integers(2))}")
            elif share == 0:
                stuck.pop(s, None)
        p = rates(t, model, platform, misrouted)
        u = rng.random(len(DETECTORS))
        observations = tuple(
            DetectorObservation(d, bool(u[j] < p[d]), round(0.9 if u[j] < p[d] else float(rng.random()) * 0.3, 3))
            for j, d in enumerate(DETECTORS)
        )
        flagged = [o.detector for o in observations if o.flagged]
        rid = f"cmpl-{i:05d}"
        records.append(
            Record(
                record_id=rid,
                time=t,
                model=model,
                pool=pool,
                platform=platform,
                region="eu" if s % 3 == 0 else "us",
                config_version="2025-08-01.1",
                server=server,
                context_tokens=ctx,
                context_class=context_class_of(ctx, LONG_CONTEXT_TOKENS),  # as the fleet's record builder decides
                output_tokens=int(rng.integers(20, 400)),
                session_hash=session_hash[s],
                temperature=0.7,
                top_p=0.99,
                observations=observations,
                captured_text=TEXT[flagged[0]] if flagged else None,
            )
        )
        if (flagged and rng.random() < 0.3) or rng.random() < 0.004:
            kind = "bug_report" if flagged and rng.random() < 0.2 else "thumbs_down"
            feedback.append(FeedbackEvent(rid, t + timedelta(minutes=int(rng.integers(1, 30))), kind))
        elif rng.random() < 0.01:
            feedback.append(FeedbackEvent(rid, t + timedelta(minutes=5), "thumbs_up"))
    decided, alerts = run_monitor(records, feedback)
    return {
        "records": [r.to_dict() for r in decided],
        "alerts": [a.to_dict() for a in alerts],
        "changes": [c.to_dict() for c in CHANGES],
        "feedback": [feedback_to_dict(e) for e in sorted(feedback, key=lambda e: e.time)],
    }


def run_monitor(records: list[Record], feedback: list[FeedbackEvent]) -> tuple[list[Record], list[Alert]]:
    """The real pipeline over the records (feedback interleaved by time), with the change log known upfront: the
    records as the monitor decided them (what a store keeps), and its alerts."""
    stats = StatsConfig(
        dimensions=("model", "pool", "platform", "context_class"),
        alpha=0.01,
        horizon=100_000,
        max_streams=5000,
        rate_warmup=300,
        mean_warmup=100,
        score_max_order=0,
    )
    monitor = SegmentMonitor(config=MonitorConfig(stats=stats))
    monitor.add_changes(CHANGES)
    events = sorted(feedback, key=lambda e: e.time)
    j = 0
    decided: list[Record] = []
    for record in records:
        while j < len(events) and events[j].time <= record.time:
            monitor.observe_feedback(events[j])
            j += 1
        decided.append(monitor.decide(record))
        monitor.observe(decided[-1])
    return decided, monitor.alerts


def schema2(data: dict[str, Any]) -> dict[str, Any]:
    """The first :data:`SCHEMA2_RECORDS` records of ``data`` (and their feedback) as a store before record schema 3
    held them: no ``context_class``, ``signals`` or ``parity_version``; the split in the store's meta, where the
    proxy of that time wrote it."""
    records = []
    for r in data["records"][:SCHEMA2_RECORDS]:
        old = {k: v for k, v in r.items() if k not in ("context_class", "signals", "parity_version")}
        records.append(old | {"schema_version": 2})
    ids = {r["record_id"] for r in records}
    return {
        "meta": {"long_context_tokens": str(LONG_CONTEXT_TOKENS)},
        "records": records,
        "changes": data["changes"],
        "feedback": [f for f in data["feedback"] if f["response_id"] in ids],
    }


def main() -> None:
    data = generate()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    OUT.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
    OUT_SCHEMA2.write_text(
        json.dumps(schema2(data), ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8"
    )
    shown = [a for a in data["alerts"] if a["status"] != "superseded"]
    print(f"{OUT}: {len(data['records'])} records, {len(data['alerts'])} alerts ({len(shown)} not superseded), "
          f"{len(data['feedback'])} feedback, {OUT.stat().st_size / 1024:.0f} KiB", file=sys.stderr)  # fmt: skip
    for a in shown:
        cause = a["attributed_changes"][0]["change_id"] if a["attributed_changes"] else "-"
        print(f"  {a['detected_at'][:16]} {a['signal']:32s} {a['segment']} <- {cause}", file=sys.stderr)


if __name__ == "__main__":
    main()
