"""``parity ingest``'s batched path (records built in batches, the common line without an intermediate exchange,
handed to the worker per batch) gives exactly the records and the rejections of the per-record path: each line
parsed on its own, built through the proxy's ``RecordBuilder.build`` of the logged exchange, accepted one by one."""

from __future__ import annotations

import io
import json
from dataclasses import fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from parity._exceptions import InvalidInputError
from parity._json_input import loads_bounded
from parity.monitor import DetectorObservation, Record
from parity.monitor._records import record_of
from parity.monitor.intake.ingest import _LINE_ERRORS, HAND_OVER_BATCH, _describe, exchange_from_log, ingest_lines
from parity.monitor.intake.scoring import ParsedExchange, RecordBuilder
from parity.monitor.runtime.wal import WriteAheadLog
from parity.monitor.runtime.worker import MonitorWorker
from parity.monitor.storage.store import MemoryStore

SALT = "batched"
LABELS = {"region": "eu", "server": "static-1"}


class ThaiScorer:
    def score(self, parsed: ParsedExchange) -> list[DetectorObservation]:
        flagged = any("\u0e00" <= ch <= "\u0e7f" for ch in parsed.text)
        return [DetectorObservation("unexpected_script", flagged, 1.0 if flagged else 0.0)]


def chat(i: int, **over: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "request": {"model": "S", "messages": [{"role": "system", "content": "be brief"},
                                               {"role": "user", "content": [{"type": "text", "text": f"q{i}"}]}],
                    "temperature": 0.7, "max_tokens": 64, "user": f"u{i % 5}"},
        "response": {"id": f"c-{i}", "created": 1754395200 + i, "model": "S",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": f"answer {i}"},
                                  "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 20 + i, "completion_tokens": 4}},
        "headers": {"X-Parity-Platform": ("gpu", "tpu")[i % 2], "x-parity-pool": "short"},
    }  # fmt: skip
    for key, value in over.items():
        if value is None:
            line.pop(key, None)
        else:
            line[key] = value
    return line


def mixed_lines() -> list[bytes]:
    """Every shape ``parity ingest`` reads, good and bad, in one file."""
    greedy = {"model": "S", "messages": [{"role": "user", "content": "2+2?"}], "temperature": 0}
    stream = [{"id": "c-stream", "created": 1754395300, "model": "S",
               "choices": [{"index": 0, "delta": {"content": "Hi สวัสดี"}, "finish_reason": None}]},
              {"id": "c-stream", "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
               "usage": {"prompt_tokens": 9000, "completion_tokens": 2}}]  # fmt: skip
    items: list[Any] = [
        chat(0),
        chat(1, time="2025-08-31T10:00:00Z", latency_ms=812.5, status_code=200, session_id="sess-9"),
        chat(2, headers={"x-parity-model": "S-override", "x-parity-region": "us", "x-parity-server": "gpu-3"}),
        chat(3, headers=None),
        chat(
            4,
            response={
                "id": "c-4",
                "created": 1754395204,
                "model": "S",
                "choices": [{"index": 0, "message": {"content": "ภาษาไทย"}, "finish_reason": "stop"}],
            },
        ),
        chat(5, request={"model": "S", "prompt": "complete this", "top_p": 0.9, "top_k": 40}),
        chat(6, request={"model": "S", "messages": [{"role": "user", "content": "x" * 40000}]}),  # a long request
        chat(
            7,
            response={
                "id": "c-7",
                "created": 1754395207,
                "choices": [
                    {
                        "index": 0,
                        "message": {"content": "t"},
                        "logprobs": {
                            "content": [
                                {"token": "t", "logprob": -0.25, "top_logprobs": [{"token": "t", "logprob": -0.25}]}
                            ]
                        },
                        "finish_reason": "stop",
                    }
                ],
            },
        ),
        chat(8, request={**greedy, "user": "a"}),
        chat(9, request={**greedy, "user": "b"}),  # the repeat: a greedy_disagreement observation
        chat(10, status_code=500, response=None, time="2025-08-31T12:00:00Z"),  # no time: now, on both paths
        chat(11, request=json.dumps({"model": "S", "messages": [{"role": "user", "content": "as text"}]})),
        chat(12, response=stream),
        chat(
            13,
            response="data: " + json.dumps({**stream[0], "id": "c-sse"}) + "\n\ndata: [DONE]\n\n",
            time="2025-08-31T12:00:01Z",
        ),
        chat(14, response=json.dumps(chat(14)["response"])),
        chat(15, time=1754395215.5),
        chat(16, time="2025-08-31T10:00:00"),  # naive: rejected with the reason
        chat(17, time=True),  # rejected
        chat(18, latency_ms="slow"),  # rejected
        chat(19, status_code="200"),
        chat(20, request={"model": "S", "messages": [], "temperature": "hot"}),  # rejected: names the field
        chat(21, response={"id": "c-21", "created": 1754395221, "choices": [], "usage": {"prompt_tokens": -3}}),
        chat(22, response={"id": "", "created": 1754395222, "choices": []}),  # no id: parity-<uuid>
        chat(23, headers=["not", "an", "object"]),  # rejected
        chat(24, request="nope"),  # rejected
        chat(25, response=7),  # rejected
        chat(26, request={"model": "S", "messages": [{"role": "user", "content": "q"}], "user": 7}, session_id=42),
        {"record_id": "stored-1", "time": "2025-08-05T00:00:00+00:00", "model": "S", "context_tokens": 9000},
        {"feedback": {"response_id": "c-0", "kind": "thumbs_down", "time": "2025-08-31T11:00:00Z"}},
        chat(27),
        "{not json",
        "[1, 2]",
        "",
        "   ",
        '{"request": {"model": "S", "n": 123456789012345678901234}, "response": {"id": "c-big", "created": 1}}',
        "[" * 200 + "]" * 200,
        '{"x": NaN}',
        chat(28, **{"x": ["" for _ in range(130)]}),  # many brackets, shallow: the slow parse path, still ingested
    ]
    lines = [(x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)).encode() + b"\n" for x in items]
    lines.insert(5, b'{"request": "\xff"}\n')  # not UTF-8
    return lines


def per_record(lines: list[bytes]) -> tuple[list[Record], list[tuple[int, str]]]:
    """The reference: one line at a time, through the proxy's builder (the response dumped to text and parsed
    again, as the proxy sees it)."""
    builder = RecordBuilder(salt=SALT, labels=LABELS, scorer=ThaiScorer(), capture="flagged", source="ingest-jsonl")
    records: list[Record] = []
    errors: list[tuple[int, str]] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = loads_bounded(line, what="line")
            if not isinstance(obj, dict):
                raise InvalidInputError("line", "must be a JSON object", type(obj).__name__)
            if "record_id" in obj:
                records.append(builder.adopt(obj))
            elif "feedback" not in obj:
                records.append(builder.build(exchange_from_log(obj)))
        except _LINE_ERRORS as err:
            errors.append((n, _describe(err)))
    return records, errors


def _key(r: Record) -> str:
    return repr(replace(r, record_id="parity-*") if r.record_id.startswith("parity-") else r)


def test_batched_ingest_builds_the_records_of_the_per_record_path() -> None:
    lines = mixed_lines()
    expected, expected_errors = per_record(lines)
    store = MemoryStore()
    reject = io.StringIO()
    result = ingest_lines(lines, store, salt=SALT, labels=LABELS, scorer=ThaiScorer(), capture="flagged",
                          reject=reject)  # fmt: skip
    got = store.records()
    assert sorted(map(_key, got)) == sorted(map(_key, expected))
    assert result.records == len(expected) == len(got)
    assert result.feedback == 1
    assert result.errors == expected_errors
    assert result.rejected_lines == [n for n, _ in expected_errors]
    assert [json.loads(e)["line"] for e in reject.getvalue().splitlines()] == result.rejected_lines
    # the cheaper construction gives records equal to the constructor's, field for field
    for r in got:
        assert r == Record(**{f.name: getattr(r, f.name) for f in fields(Record)})
    by_id = {r.record_id: r for r in got}
    assert by_id["c-9"].flagged("greedy_disagreement") is True  # the greedy pair stayed in order
    assert by_id["c-4"].captured_text is not None
    assert by_id["c-0"].captured_text is None
    assert (by_id["c-6"].context_class, by_id["c-6"].request_tokens) == ("short", 10_001)  # usage says short
    assert by_id["c-stream"].context_class == "long"


def test_batches_larger_than_the_hand_over_keep_input_order_around_feedback() -> None:
    """Records before a feedback line are stored before it is (the worker flushes them first), across the
    hand-over boundary; the ids come out in input order for equal times."""
    n = HAND_OVER_BATCH + 37
    items = [chat(i, time="2025-08-31T10:00:00Z") for i in range(n)]
    items.insert(600, {"feedback": {"response_id": "c-1", "kind": "thumbs_up", "time": "2025-08-31T11:00:00Z"}})
    lines = [json.dumps(x).encode() + b"\n" for x in items]
    store = MemoryStore()
    result = ingest_lines(lines, store, salt=SALT, scorer=None)
    assert (result.records, result.feedback, result.rejected) == (n, 1, 0)
    assert [r.record_id for r in store.records()] == [f"c-{i}" for i in range(n)]
    expected, _ = per_record(lines)
    assert [r.record_id for r in expected] == [f"c-{i}" for i in range(n)]


def test_record_of_falls_back_to_the_constructor() -> None:
    base = Record(record_id="r", time="2025-08-05T00:00:00Z", model="S")  # type: ignore[arg-type]
    values = [getattr(base, f.name) for f in fields(Record)]
    assert record_of(values) == base
    values[1] = "2025-08-05T02:00:00+02:00"  # a string time: the constructor parses it
    assert record_of(values) == base
    values[8] = -1
    with pytest.raises(InvalidInputError, match="context_tokens"):
        record_of(values)


@pytest.mark.parametrize("batched", [False, True])
def test_accept_batch_logs_stores_and_flushes_as_accept_does(batched: bool, tmp_path: Path) -> None:
    """With a write-ahead log and a store batch of 3: the same flushes, and what the log holds after them (the one
    record still pending: the log is emptied only when every record in it is stored)."""
    records = [
        Record(record_id=f"r{i}", time=datetime(2025, 8, 5, 0, 0, i, tzinfo=UTC), model="S",
               observations=(DetectorObservation("unexpected_script", i % 2 == 0, 0.5),))
        for i in range(10)
    ]  # fmt: skip
    store = MemoryStore()
    wal = WriteAheadLog(tmp_path / "wal.jsonl")
    worker = MonitorWorker(store, RecordBuilder(salt=SALT), wal=wal, batch_size=3)
    if batched:
        worker.accept_batch(records)
    else:
        for r in records:
            worker.accept(r)
    wal.sync()
    assert store.records() == records[:9]
    assert WriteAheadLog(tmp_path / "wal.jsonl").replay() == records[9:]
    flags = worker.metrics.detector_flags.labels(detector="unexpected_script")._value.get()
    assert flags == 5
    worker.flush()
    assert store.records() == records
    assert WriteAheadLog(tmp_path / "wal.jsonl").replay() == []
