"""A record's context class is decided once, when the record is built, at the one configured split
(``RecordBuilder(long_context_tokens=...)``, ``--long-context-tokens`` on the commands that build records); every
later stage reads the record's field, and a stored record that carries one is never reclassified."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from parity._exceptions import InvalidInputError
from parity.cli._main import main
from parity.monitor import Record
from parity.monitor.detection.lattice import SegmentLattice
from parity.monitor.detection.pipeline import SegmentMonitor
from parity.monitor.detection.signals import SignalStage
from parity.monitor.intake.ingest import ingest_lines
from parity.monitor.intake.scoring import Exchange, RecordBuilder
from parity.monitor.storage.store import DuckDBStore, MemoryStore

T = datetime(2025, 8, 5, tzinfo=UTC)


def exchange_line(i: int, prompt_tokens: int, pool: str = "long") -> dict[str, Any]:
    return {
        "request": {"model": "S", "messages": [{"role": "user", "content": f"q{i}"}]},
        "response": {"id": f"chatcmpl-{i}", "object": "chat.completion", "created": 1754395200 + i, "model": "S",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                  "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 1}},
        "headers": {"x-parity-pool": pool},
    }  # fmt: skip


def stored_line(record_id: str, context_tokens: int, context_class: str | None) -> dict[str, Any]:
    rec = Record(record_id=record_id, time=T, model="S", pool="long", context_tokens=context_tokens).to_dict()
    del rec["context_class"]
    return rec if context_class is None else rec | {"context_class": context_class}


def test_the_builder_decides_the_class_at_its_split() -> None:
    choice = {"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    body = json.dumps({"id": "c1", "model": "S", "usage": {"prompt_tokens": 500, "completion_tokens": 1},
                       "choices": [choice]})  # fmt: skip
    ex = Exchange(path="/v1/chat/completions", time=T, request={"model": "S", "messages": []}, status_code=200,
                  response_body=body)  # fmt: skip
    assert RecordBuilder(salt="s", scorer=None, long_context_tokens=192).build(ex).context_class == "long"
    assert RecordBuilder(salt="s", scorer=None).build(ex).context_class == "short"  # the default split, 8192
    for bad in (0, -1, True, 1.5):
        with pytest.raises(InvalidInputError, match="`long_context_tokens` must be an int >= 1"):
            RecordBuilder(salt="s", long_context_tokens=bad)  # type: ignore[arg-type]


def test_later_stages_read_the_records_class(make_record: Any) -> None:
    built_long = make_record(0, pool="long", context_tokens=500, context_class="long")  # a builder at 192
    built_short = make_record(1, pool="long", context_tokens=500)  # a builder at the default split
    stage = SignalStage()
    for rec, violated in ((built_long, 0.0), (built_short, 1.0)):
        decided = stage.decide(rec)
        assert decided.context_class == rec.context_class
        assert decided.signals is not None
        assert decided.signals["routing.short_on_long_pool"] == violated
        assert SegmentLattice(("pool", "context_class")).values_of(decided) == ("long", rec.context_class)
    monitor = SegmentMonitor()
    assert monitor.decide(built_long).context_class == "long"


def test_ingest_decides_built_records_and_keeps_stored_classes() -> None:
    store = MemoryStore()
    lines = [
        json.dumps(exchange_line(0, 500)),  # built here at 192: long
        json.dumps(exchange_line(1, 100)),  # short
        json.dumps(stored_line("kept", 500, "short")),  # stored with a class: never reclassified
        json.dumps(stored_line("old", 500, None)),  # a schema-2 record (no class): decided at the split
    ]
    result = ingest_lines(lines, store, salt="s", scorer=None, hook=SegmentMonitor(), long_context_tokens=192)
    assert (result.records, result.rejected) == (4, 0)
    got = {r.record_id: r.context_class for r in store.records()}
    assert got == {"chatcmpl-0": "long", "chatcmpl-1": "short", "kept": "short", "old": "long"}


def test_the_commands_give_the_split_to_the_builder(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps(exchange_line(0, 500)) + "\n" + json.dumps(exchange_line(1, 100)) + "\n")
    for command, split, want in (("ingest", "192", ["long", "short"]), ("monitor", "192", ["long", "short"]),
                                 ("ingest", None, ["short", "short"])):  # fmt: skip
        db = tmp_path / f"{command}-{split}.duckdb"
        args = [command, str(log), "--store", str(db), "--no-detectors"]
        args += ["--long-context-tokens", split] if split else []
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        with DuckDBStore(db) as store:
            assert [r.context_class for r in sorted(store.records(), key=lambda r: r.record_id)] == want
            assert store.get_meta("long_context_tokens") is None  # the split lives in the records, not the meta
    bad = CliRunner().invoke(main, ["ingest", str(log), "--store", str(tmp_path / "x.duckdb"),
                                    "--long-context-tokens", "0"])  # fmt: skip
    assert bad.exit_code == 2
    assert "--long-context-tokens" in bad.output
