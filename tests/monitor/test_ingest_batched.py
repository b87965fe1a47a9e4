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


def per_record(lines: list[bytes], builder: RecordBuilder | None = None) -> tuple[list[Record], list[tuple[int, str]]]:
    """The reference: one line at a time, through the proxy's builder (the response dumped to text and parsed
    again, as the proxy sees it); by default one with a scorer, capture and labels."""
    if builder is None:
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


# -- the fast path (no scorer, no monitor): msgspec straight into record columns --------------------------------
def fast_shape(i: int) -> dict[str, Any]:
    """A line of the fast path's shape, with every variation of the fields it reads."""
    line = chat(i)
    request, response = line["request"], line["response"]
    kind = i % 12
    if kind == 0:
        request["messages"] = [{"role": "user", "content": f"plain {i}"}]
    elif kind == 1:
        line["request"] = {"model": "S", "prompt": f"complete {i}", "top_p": 1, "top_k": 40, "max_tokens": 8}
    elif kind == 2:
        line["headers"] = {"X-Parity-Platform": "gpu", "x-parity-platform": "tpu", "x-parity-model": "",
                           "X-Parity-Server": "s-1", "x-other": "v"}  # fmt: skip
    elif kind == 3:
        line["time"] = ("2025-08-31T10:00:00Z", 1754395215.5, 1754395216, "2025-08-31T12:00:00.123456+02:00")[i % 4]
    elif kind == 4:
        del response["usage"]  # the context estimated from the prompt
    elif kind == 5:
        response["id"] = ""  # a parity-<uuid> id
        response["usage"] = None
    elif kind == 6:
        request["max_completion_tokens"] = None if i % 2 else 32
        request.pop("user")
        line["session_id"] = f"sess-{i % 3}"
    elif kind == 7:
        line.update(status_code=503, latency_ms=12, headers=None)
    elif kind == 8:
        response["choices"] = [
            {"index": 1, "message": {"content": "other"}, "finish_reason": "length"},
            {"delta": {"content": "d"}, "finish_reason": "stop", "text": 5},
            {"index": 0, "message": None, "finish_reason": None},  # the finish reason before it stays
        ]
    elif kind == 9:
        response["choices"] = None
        response["model"] = "S-2"
        request.update(model="S-1", user="", extra={"nested": [1e300, 1234567890123456789, "\u0e2a"]}, messages=[])
    elif kind == 10:
        line["extra"] = {"x": [1, 2, {"y": None}], "n": 10**30}  # 20 digits or more: orjson can't, msgspec and json can
        line["headers"] = {}
    elif kind == 11:
        request["messages"].append({"role": "assistant", "content": None})
        request["temperature"] = 2
    return line


def per_line_only() -> list[Any]:
    """Lines the fast path leaves to the per-line path (each for its own reason)."""
    greedy = chat(1, request={"model": "S", "messages": [{"role": "user", "content": "2+2?"}], "temperature": 0})
    lp = chat(2)
    lp["response"]["choices"][0]["logprobs"] = {"content": [{"token": "a", "logprob": -0.5, "top_logprobs": []}]}
    deep = chat(3, extra=json.loads("[" * 130 + "]" * 130))
    items = [
        greedy,
        chat(22, request={**greedy["request"], "user": "other"}),  # the repeat: greedy_disagreement
        lp,  # a logprob summary
        chat(4004, response=json.dumps(chat(4004)["response"])),  # the response as text
        chat(4005, response=[chat(4005)["response"]]),  # stream chunks
        chat(6, request={"model": "S", "prompt": ["a", "b"]}),  # a prompt list
        chat(7, request={**chat(7)["request"], "max_tokens": 64.0}),  # an integral float
        chat(8, latency_ms="12.5"),  # a number as text: the per-line path reads it
        chat(9, status_code=True),
        chat(10, response={"id": "c-10", "created": 1754395210, "usage": {"prompt_tokens": -1}}),  # refused
        chat(11, time="yesterday"),  # refused
        chat(12, time="2025-08-31T10:00:00"),  # refused: naive
        chat(13, request={"model": "S", "messages": [{"role": None, "content": "x"}]}),
        chat(14, request={"model": "S", "messages": "hi"}),
        chat(15, headers={"x-parity-pool": 7}),
        chat(25, headers=["x-parity-pool"]),  # refused
        chat(26, headers=[]),  # read as no headers
        chat(17, response={"id": "c-17", "created": 1754395217.5, "choices": []}),
        chat(18, request={"model": "S", "messages": [], "temperature": True}),  # refused: names the field
        chat(19, request={"model": "S", "messages": [], "top_k": 1}),  # greedy
        chat(20, request={"model": "S", "messages": [], "temperature": 123456789012345678901234}),  # past 64 bits
        chat(21, record_id="x"),  # refused? no: a stored record's reader decides
        deep,  # refused: too deep
    ]
    for item in items:  # ids of their own (the fast-shape lines use c-<i>)
        if isinstance(item.get("response"), dict) and isinstance(item["response"].get("id"), str):
            item["response"]["id"] = "slow-" + item["response"]["id"]
    return items


def fast_file() -> tuple[list[bytes], list[bytes]]:
    """(a file: a run of 700 fast-shape lines, then fast-shape lines between every other shape, bad lines
    included; the lines the fast path must leave to the per-line path)."""
    items: list[Any] = [fast_shape(i) for i in range(700)]
    slow = per_line_only()
    for k, item in enumerate(slow):
        items.append(item)
        items.extend(fast_shape(1000 + 13 * k + j) for j in range(k % 4))
    items.append({"feedback": {"response_id": "c-0", "kind": "thumbs_down", "time": "2025-08-31T11:00:00Z"}})
    items.extend(fast_shape(2000 + i) for i in range(600))  # a second columns batch, after the feedback
    lines = [json.dumps(x, ensure_ascii=i % 2 == 0).encode() + b"\n" for i, x in enumerate(items)]
    odd = [
        b'{"request": {"model": "S", "messages": []}, "response": {"id": "u", "created": 1, "x": "\xff"}}\n',
        b'{"request": {"model": "S", "messages": []}, "response": {"id": "s", "created": 1, "x": "\\udc00"}}\n',
        b'\xef\xbb\xbf{"request": {"model": "S"}, "response": {"id": "b", "created": 1}}\n',
        # Python's JSON refuses an integer of over 4,300 digits
        b'{"request": {"model": "S"}, "response": {"id": "n", "created": 1}, "x": ' + b"9" * 4400 + b"}\n",
    ]
    slow_lines = [json.dumps(x).encode() + b"\n" for x in slow] + odd
    return lines[:750] + odd + lines[750:], slow_lines


def test_the_fast_path_takes_only_lines_it_builds_exactly() -> None:
    from parity.monitor.intake.ingest import _when
    from parity.monitor.intake.log_columns import LineColumns

    fast = LineColumns(RecordBuilder(salt=SALT, source="ingest-jsonl"), _when)
    assert all(fast.add(json.dumps(fast_shape(i)).encode()) for i in range(48))
    _, slow_lines = fast_file()
    assert [line for line in slow_lines if fast.add(line)] == []
    assert len(fast) == 48


@pytest.mark.parametrize("store_kind", ["memory", "duckdb"])
def test_fast_path_stores_the_records_and_rejections_of_the_per_line_path(store_kind: str, tmp_path: Path) -> None:
    """Without a scorer or monitor, common lines go to the store as columns (DuckDB) or as records made from the
    columns (a store without a columns write; a short run between other shapes): field for field the records of the
    per-line path, the same rejections and messages."""
    from parity.monitor.storage.store import DuckDBStore

    lines, _ = fast_file()
    builder = RecordBuilder(salt=SALT, labels=LABELS, scorer=None, source="ingest-jsonl")
    expected, expected_errors = per_record(lines, builder)
    store: Any = MemoryStore() if store_kind == "memory" else DuckDBStore(tmp_path / "fast.duckdb")
    reject = io.StringIO()
    result = ingest_lines(lines, store, salt=SALT, labels=LABELS, scorer=None, reject=reject)
    got = store.records()
    assert result.records == len(expected) == len(got) > 1300
    assert result.errors == expected_errors
    assert len(expected_errors) >= 8
    assert [json.loads(e)["error"] for e in reject.getvalue().splitlines()] == [m for _, m in expected_errors]
    assert result.feedback == 1
    assert sorted(map(_key, got)) == sorted(map(_key, expected))
    if store_kind == "memory":  # stored in input order (its reader sorts by time)
        assert [_key(r) for r in store._records] == [_key(r) for r in expected]
    assert sum(r.record_id.startswith("parity-") for r in got) > 50
    assert next(r for r in got if r.record_id == "slow-c-22").flagged("greedy_disagreement") is True
    store.close()


def test_fast_path_stores_each_record_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """De-duplication on the columns: an id repeated within a batch, across batches, and a second read of the
    whole file store each record once; every line still counts as read."""
    from parity.monitor.intake import ingest
    from parity.monitor.storage.store import DuckDBStore

    monkeypatch.setattr(ingest, "COLUMN_BATCH", 600)  # batches of 600 rows: repeats within and across them

    items = [fast_shape(i) for i in range(900)]
    items += [fast_shape(i) for i in range(0, 900, 3)]  # repeats, the same lines again (later batches)
    items[20:20] = [fast_shape(3), fast_shape(6)]  # and repeats within the first batch
    lines = [json.dumps(x).encode() + b"\n" for x in items]
    with DuckDBStore(tmp_path / "dup.duckdb") as store:
        first = ingest_lines(lines, store, salt=SALT, scorer=None)
        ids = [r.record_id for r in store.records() if not r.record_id.startswith("parity-")]
        uuid_named = sum(1 for i in range(900) if i % 12 == 5) + sum(1 for i in range(0, 900, 3) if i % 12 == 5)
        assert first.records == len(lines)
        assert len(ids) == len(set(ids)) == 900 - 900 // 12
        assert store.summary().records == len(ids) + uuid_named
        again = ingest_lines(lines, store, salt=SALT, scorer=None)
        assert again.records == len(lines)
        assert store.summary().records == len(ids) + 2 * uuid_named  # only the records named afresh are new


def test_columns_the_store_refuses_go_to_the_spool_or_are_counted(tmp_path: Path) -> None:
    """A batch of columns the store cannot take is spooled as its records (stored on the next start), or counted as
    dropped when there is no spool: never lost silently."""
    from parity.monitor._records import RecordColumns
    from parity.monitor.runtime.spool import Spool
    from parity.monitor.storage.store import DuckDBStore

    records = [
        Record(record_id=f"r{i}", time=datetime(2025, 8, 5, 0, 0, i, tzinfo=UTC), model="S", request_tokens=i)
        for i in range(7)
    ]
    path = tmp_path / "s.duckdb"
    DuckDBStore(path).close()
    closed = DuckDBStore(path)
    closed.close()  # every write now fails
    spooled = MonitorWorker(closed, RecordBuilder(salt=SALT), spool=Spool(tmp_path / "spool.jsonl"), dedupe=True)
    spooled.accept_columns(RecordColumns.of(records))
    assert (spooled.store_spooled, spooled.records_written, spooled.dropped) == (7, 0, 0)
    assert spooled.store_error is not None
    assert "closed" in spooled.store_error
    lost = MonitorWorker(closed, RecordBuilder(salt=SALT))
    lost.accept_columns(RecordColumns.of(records))
    assert (lost.dropped, lost.records_written) == (7, 0)
    with DuckDBStore(path) as store:
        MonitorWorker(store, RecordBuilder(salt=SALT), spool=Spool(tmp_path / "spool.jsonl")).recover()
        assert store.records() == records


def test_fast_path_on_fuzzed_lines_matches_the_per_line_path() -> None:
    """The suite's seeded sample of the fuzz campaign's hostile records (``benchmarks/_fuzz.py``): without a scorer
    (the fast path on), the same records field by field and the same rejections as the per-line path."""
    from benchmarks._fuzz import fuzz_records

    raw, _ = fuzz_records(20260917, 600, fmt="jsonl")
    lines = [line + b"\n" for line in raw]
    expected, expected_errors = per_record(lines, RecordBuilder(salt=SALT, source="ingest-jsonl"))
    store = MemoryStore()
    result = ingest_lines(lines, store, salt=SALT, scorer=None)
    assert [_key(r) for r in store._records] == [_key(r) for r in expected]
    assert result.errors == expected_errors[:100]
    assert result.rejected_lines == [n for n, _ in expected_errors]
