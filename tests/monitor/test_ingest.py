"""``parity ingest``: JSONL logs and OTLP JSON GenAI spans, with bad lines reported and rejected."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from parity.cli._main import main
from parity.monitor import DetectorObservation
from parity.monitor.intake.ingest import ingest_file
from parity.monitor.intake.scoring import ParsedExchange, session_hash
from parity.monitor.storage.store import DuckDBStore, MemoryStore


class ThaiScorer:
    def score(self, parsed: ParsedExchange) -> list[DetectorObservation]:
        flagged = any("\u0e00" <= ch <= "\u0e7f" for ch in parsed.text)
        return [DetectorObservation("unexpected_script", flagged, 1.0 if flagged else 0.0)]


def chat_line(i: int, text: str = "Hello there, all fine.", **extra: Any) -> dict[str, Any]:
    return {
        "request": {"model": "S", "messages": [{"role": "user", "content": f"q{i}"}], "temperature": 0.5,
                    "user": f"user-{i % 3}"},
        "response": {"id": f"chatcmpl-{i}", "object": "chat.completion", "created": 1754395200 + i, "model": "S",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                  "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 30 + i, "completion_tokens": 5}},
        "headers": {"x-parity-platform": "tpu", "x-parity-pool": "short"},
        **extra,
    }  # fmt: skip


def write_jsonl(path: Path, items: list[Any]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in items))
    return path


def test_jsonl_with_bad_lines(tmp_path: Path) -> None:
    stream_chunks = [
        {"id": "chatcmpl-s", "created": 1754395300, "model": "S",
         "choices": [{"index": 0, "delta": {"content": "Hi สวัสดี"}, "finish_reason": None}]},
        {"id": "chatcmpl-s", "created": 1754395300, "model": "S",
         "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
         "usage": {"prompt_tokens": 9000, "completion_tokens": 2}},
    ]  # fmt: skip
    items: list[Any] = [
        chat_line(0),
        "{not json",
        chat_line(1, time="2025-08-31T10:00:00Z"),
        {"request": "nope", "response": {}},
        {"request": {"model": "S", "messages": []}, "response": stream_chunks},
        chat_line(2, time="2025-08-31T10:00:00"),  # naive time: rejected with the reason
        {"feedback": {"response_id": "chatcmpl-0", "kind": "thumbs_down", "time": "2025-08-31T11:00:00Z"}},
        "",
    ]
    src = write_jsonl(tmp_path / "log.jsonl", items)
    store = MemoryStore()
    result = ingest_file(src, store, salt="s", scorer=ThaiScorer())
    assert (result.lines, result.records, result.feedback, result.rejected) == (8, 3, 1, 3)
    assert [n for n, _ in result.errors] == [2, 4, 6]
    assert "not JSON" in result.errors[0][1]
    assert "`request` must be a JSON object" in result.errors[1][1]
    assert "`time` must be timezone-aware" in result.errors[2][1]
    assert result.reject_path == f"{src}.rejects"
    rejected = [json.loads(x) for x in Path(result.reject_path).read_text().splitlines()]
    assert [(r["line"], r["raw"]) for r in rejected] == [
        (2, "{not json"), (4, json.dumps(items[3])), (6, json.dumps(items[5]))
    ]  # fmt: skip
    assert rejected[0]["error"] == result.errors[0][1]
    assert result.rejected_lines == [2, 4, 6]
    recs = {r.record_id: r for r in store.records()}
    assert recs["chatcmpl-1"].time.isoformat() == "2025-08-31T10:00:00+00:00"
    assert recs["chatcmpl-0"].platform == "tpu"
    assert recs["chatcmpl-0"].session_hash == session_hash("user-0", "s")
    assert recs["chatcmpl-0"].source == "ingest-jsonl"
    streamed = recs["chatcmpl-s"]
    assert (streamed.context_class, streamed.finish_reason) == ("long", "length")
    assert streamed.flagged("unexpected_script") is True
    assert all(r.captured_text is None for r in recs.values())
    assert store.feedback()[0].response_id == "chatcmpl-0"


def test_clean_file_leaves_no_reject_file(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "ok.jsonl", [chat_line(i) for i in range(20)])
    result = ingest_file(src, MemoryStore(), salt="s", scorer=None)
    assert (result.records, result.rejected, result.reject_path) == (20, 0, None)
    assert not Path(f"{src}.rejects").exists()


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        v: dict[str, Any] = {"boolValue": value}
    elif isinstance(value, int):
        v = {"intValue": str(value)}
    elif isinstance(value, float):
        v = {"doubleValue": value}
    elif isinstance(value, list):
        v = {"arrayValue": {"values": [{"stringValue": x} for x in value]}}
    else:
        v = {"stringValue": value}
    return {"key": key, "value": v}


def otlp_doc(n: int, *, thai_at: int = -1) -> dict[str, Any]:
    spans = []
    for i in range(n):
        out = [{"role": "assistant", "parts": [{"type": "text", "content": "ok สวัสดี" if i == thai_at else "ok"}]}]
        attrs = [
            _attr("gen_ai.operation.name", "chat"),
            _attr("gen_ai.request.model", "S"),
            _attr("gen_ai.response.id", f"span-{i}"),
            _attr("gen_ai.usage.input_tokens", 40),
            _attr("gen_ai.usage.output_tokens", 7),
            _attr("gen_ai.request.temperature", 0.7),
            _attr("gen_ai.request.top_k", 40),
            _attr("gen_ai.response.finish_reasons", ["stop"]),
            _attr("gen_ai.output.messages", json.dumps(out)),
            _attr("parity.pool", "long"),
            _attr("session.id", "sess-9"),
        ]
        start = 1756634400_000_000_000 + i * 1_000_000_000
        spans.append({"traceId": "ab" * 16, "spanId": f"{i:016x}", "name": "chat S", "kind": 3,
                      "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 250_000_000),
                      "attributes": attrs})  # fmt: skip
    spans.append({"name": "db query", "startTimeUnixNano": "1", "attributes": [_attr("db.system", "pg")]})
    return {"resourceSpans": [{"resource": {"attributes": [_attr("parity.platform", "trainium")]},
                               "scopeSpans": [{"scope": {"name": "openai"}, "spans": spans}]}]}  # fmt: skip


def test_otlp_jsonl_and_single_document(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "spans.jsonl", [otlp_doc(3, thai_at=1), "{broken", {"resourceSpans": "x"}])
    store = MemoryStore()
    result = ingest_file(src, store, fmt="otlp", salt="s", scorer=ThaiScorer())
    assert (result.records, result.rejected, result.skipped_spans) == (3, 2, 1)
    assert [n for n, _ in result.errors] == [2, 3]
    r0, r1, _ = store.records()
    assert (r0.record_id, r0.model, r0.pool, r0.platform, r0.context_tokens, r0.output_tokens) == (
        "span-0", "S", "long", "trainium", 40, 7
    )  # fmt: skip
    assert (r0.temperature, r0.top_k, r0.finish_reason, r0.latency_ms) == (0.7, 40, "stop", 250.0)
    assert r0.time.isoformat() == "2025-08-31T10:00:00+00:00"
    assert r0.session_hash == session_hash("sess-9", "s")
    assert r0.flagged("unexpected_script") is False
    assert r1.flagged("unexpected_script") is True
    pretty = tmp_path / "export.json"
    pretty.write_text(json.dumps(otlp_doc(2), indent=2))
    again = ingest_file(pretty, MemoryStore(), fmt="otlp", salt="s", scorer=None)
    assert (again.records, again.rejected) == (2, 0)


def test_cli_ingest_reports_line_numbers_and_summary(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "log.jsonl", [chat_line(0), "oops", chat_line(1)])
    store = tmp_path / "s.duckdb"
    res = CliRunner().invoke(main, ["ingest", str(src), "--store", str(store), "--no-detectors", "--no-monitor"])
    assert res.exit_code == 3, res.output  # some lines rejected
    assert "line 2: not JSON" in res.output
    assert "ingested 2 records" in res.output
    assert "rejected 1" in res.output
    with DuckDBStore(store, read_only=True) as s:
        assert len(s.records()) == 2


def test_cli_ingest_errors_are_one_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["ingest", str(tmp_path / "missing.jsonl"), "--store", str(tmp_path / "s.db")])
    assert res.exit_code == 2
    assert "`FILE` must be an existing file or -" in res.output
    assert "Traceback" not in res.output
    bad = CliRunner().invoke(main, ["ingest", "-", "--label", "colour=red", "--store", str(tmp_path / "s.db")])
    assert bad.exit_code == 2
    assert "`--label` key must be one of" in bad.output


def _rejects(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="ascii").splitlines()]


def test_hostile_lines_are_rejected_by_number_and_kept_byte_for_byte(tmp_path: Path) -> None:
    """Deep nesting, invalid UTF-8, NaN, lone surrogates, non-objects, a huge line: each is a numbered reject."""
    good = json.dumps(chat_line(0)).encode()
    hostile = [
        b'{"request": {"model": "S", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}, " + good[1:],  # 1,000 deep
        good.replace(b"Hello there", b"Hello \xff\xfe there"),  # not UTF-8
        good.replace(b'"temperature": 0.5', b'"temperature": NaN'),
        good.replace(b"Hello there", b"Hello \\ud800 there"),  # a lone surrogate
        b"[1, 2, 3]",
        b"\xef\xbb\xbf" + good,  # a byte-order mark: not JSON
        b'{"request": {"model": "S"}, "response": {"choices": "x"}, "status_code": "abc"}',
        b"{" * 200_000,
        b'{"request": {"model": "S", "messages": []}, "response": [1, 2], "latency_ms": "fast"}',
    ]
    lines = [good, *hostile, json.dumps(chat_line(1)).encode(), b"\r"]
    src = tmp_path / "hostile.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    store = MemoryStore()
    result = ingest_file(src, store, salt="s", scorer=None)
    bad = list(range(2, 2 + len(hostile)))
    assert result.rejected_lines == bad
    assert (result.records, result.rejected) == (2, len(hostile))
    entries = _rejects(Path(f"{src}.rejects"))
    assert [e["line"] for e in entries] == bad
    for entry, raw in zip(entries, hostile, strict=True):
        kept = entry["raw"].encode() if "raw" in entry else base64.b64decode(entry["raw_b64"])
        assert kept == raw  # verbatim, not U+FFFD-substituted
        assert entry["error"]
    assert "raw_b64" in entries[1]
    assert "nest" in entries[0]["error"]
    assert "UTF-8" in entries[1]["error"]
    assert "NaN" in entries[2]["error"]
    assert "surrogate" in entries[3]["error"]


def test_cli_exit_status_says_what_happened(tmp_path: Path) -> None:
    runner = CliRunner()
    stores = iter(range(10))

    def args() -> list[str]:  # a fresh store per run: reopening a store is the durability issue's, not this test's
        return ["--store", str(tmp_path / f"s{next(stores)}.duckdb"), "--no-detectors", "--no-monitor"]

    clean = write_jsonl(tmp_path / "clean.jsonl", [chat_line(0), chat_line(1)])
    assert runner.invoke(main, ["ingest", str(clean), *args()]).exit_code == 0
    all_bad = write_jsonl(tmp_path / "bad.jsonl", ["x", "[" * 5000, "{}"])
    res = runner.invoke(main, ["ingest", str(all_bad), *args()])
    assert res.exit_code == 1, res.output
    assert "rejected lines (3): 1-3" in res.output
    assert "Traceback" not in res.output
    many = write_jsonl(tmp_path / "many.jsonl", [chat_line(i) if i % 4 == 0 else f"bad {i}" for i in range(300)])
    res = runner.invoke(main, ["ingest", str(many), *args()])
    assert res.exit_code == 3, res.output
    assert "rejected lines (225): 2-4, 6-8," in res.output
    assert len(_rejects(Path(f"{many}.rejects"))) == 225  # all of them, not the first 100
    stop = runner.invoke(main, ["ingest", str(many), *args(), "--max-rejects", "10", "--rejects",
                                str(tmp_path / "r.jsonl")])  # fmt: skip
    assert stop.exit_code == 4, stop.output
    assert "stopped after line 15: more than 10 lines rejected" in stop.output
    assert [e["line"] for e in _rejects(tmp_path / "r.jsonl")] == [2, 3, 4, 6, 7, 8, 10, 11, 12, 14, 15]
    help_text = runner.invoke(main, ["ingest", "--help"]).output
    assert "3 some lines rejected" in help_text
    assert "--max-rejects" in help_text
