"""A store reopened on an existing file keeps storing: the restart bug of issue 10, at the store and the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from parity.cli._main import main
from parity.monitor import Record
from parity.monitor.storage.store import DuckDBStore, session_salt


def test_reopen_read_meta_then_write(tmp_path: Path, make_record: Callable[..., Record]) -> None:
    path = tmp_path / "p.duckdb"
    with DuckDBStore(path) as s:
        salt = session_salt(s)  # persisted in meta: the read-back below returns a row
        s.write_records([make_record(i) for i in range(5)])
    with DuckDBStore(path) as s:
        assert session_salt(s) == salt  # a meta read on the reopen path, then a batch write
        s.write_records([make_record(i) for i in range(5, 10)])
        assert s.get_meta("absent") is None
        s.write_records([make_record(10)])
        assert s.summary().records == 11
    with DuckDBStore(path, read_only=True) as s:
        assert sorted(int(r.record_id.split("-")[1]) for r in s.records()) == list(range(11))


def _line(i: int) -> str:
    return json.dumps(
        {
            "request": {"model": "S", "messages": [{"role": "user", "content": f"q{i}"}]},
            "response": {"id": f"chatcmpl-{i}", "created": 1754395200 + i, "model": "S",
                         "choices": [{"index": 0, "message": {"content": "fine"}, "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 3, "completion_tokens": 1}},
        }
    )  # fmt: skip


def test_ingest_twice_into_the_same_store(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    for run in range(2):
        src = tmp_path / f"log{run}.jsonl"
        src.write_text("".join(_line(run * 10 + i) + "\n" for i in range(10)))
        res = CliRunner().invoke(main, ["ingest", str(src), "--store", str(store), "--no-detectors"])
        assert res.exit_code == 0, res.output
        assert "ingested 10 records" in res.output
    with DuckDBStore(store, read_only=True) as s:
        assert len({r.record_id for r in s.records()}) == 20
