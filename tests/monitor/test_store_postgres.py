"""PostgreSQL as the shared store, on a real server the session starts (``postgres_server`` in conftest): migrations,
clear errors, several processes writing one store at once while ``parity status`` reads it, and ``parity ingest``
into it. The store contract itself runs on every backend in ``test_store.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from parity import StoreError
from parity._loopback import free_port
from parity.cli._main import main
from parity.monitor import Record
from parity.monitor.storage.store import PG_MIGRATIONS, PostgresStore, open_store, open_writable_store, session_salt

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_open_store_takes_a_url_and_migrates_once(postgres_url: str, make_record: Callable[..., Record]) -> None:
    with open_store(postgres_url) as s:
        assert isinstance(s, PostgresStore)
        s.write_records([make_record(1)])
        salt = session_salt(s)
    with open_writable_store(postgres_url) as s:
        assert s.schema_version == PG_MIGRATIONS[-1][0]
        assert [r.record_id for r in s.records()] == ["cmpl-1"]
        assert session_salt(s) == salt
        rows = s._run(lambda conn: conn.execute("SELECT version, applied_at FROM schema_migrations").fetchall())
        assert sorted(v for v, _ in rows) == [v for v, _, _ in PG_MIGRATIONS]
        assert rows[0][1].utcoffset().total_seconds() == 0  # stored and read back as UTC
    with open_store(postgres_url, read_only=True) as s:
        assert len(s.records()) == 1
        with pytest.raises(StoreError, match="read-only transaction"):
            s.set_meta("x", "y")


def test_refuses_a_newer_schema_and_an_unwritten_read_only_store(postgres_url: str) -> None:
    with pytest.raises(StoreError, match=r"needs migration .* open it writable once"):
        PostgresStore(postgres_url, read_only=True)
    with PostgresStore(postgres_url) as s:
        s._run(lambda conn: conn.execute("INSERT INTO schema_migrations VALUES (99, 'future', NULL)"))
    with pytest.raises(StoreError, match="schema version 99, newer than this parity supports"):
        PostgresStore(postgres_url)


def test_unreachable_server_is_a_store_error_without_the_password(unused_port: int) -> None:
    url = f"postgresql://parity:hunter2@127.0.0.1:{unused_port}/parity"
    with pytest.raises(StoreError, match=r"cannot connect to PostgreSQL store postgresql://parity:\*\*\*@") as info:
        PostgresStore(url)
    assert "hunter2" not in str(info.value)
    result = CliRunner().invoke(main, ["status", "--store", url])
    assert result.exit_code == 2
    assert "cannot connect" in result.output
    assert "Traceback" not in result.output


WRITER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime, timedelta
    from parity.monitor import Alert, DetectorObservation, Record
    from parity.monitor.storage.store import open_store

    url, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    t0 = datetime(2025, 8, 5, tzinfo=UTC)
    with open_store(url) as store:
        for start in range(0, n, 50):
            store.write_records([
                Record(record_id=f"{name}-{i}", time=t0 + timedelta(seconds=i), model="S", platform=name,
                       observations=(DetectorObservation("unexpected_script", i % 10 == 0, 0.5),))
                for i in range(start, start + 50)
            ])
            alert = Alert("a-shared", "unexpected_script", {"model": "S"}, t0, t0 + timedelta(seconds=start),
                          0.1, 0.01, 0.11, start)
            store.write_alerts([alert])
    """
)


def test_several_processes_write_one_store_while_status_reads_it(postgres_url: str, tmp_path: Path) -> None:
    """Three writer processes append records and upsert one alert id concurrently; ``parity status`` (another
    process) reads the store meanwhile; at the end every record is there once and the alert exists once."""
    with open_store(postgres_url):
        pass  # migrate once up front, as the first proxy would
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = dict(os.environ, PYTHONPATH=SRC)
    n = 300
    writers = [
        subprocess.Popen([sys.executable, str(script), postgres_url, name, str(n)], env=env, stderr=subprocess.PIPE)
        for name in ("gpu", "tpu", "trainium")
    ]
    reads = []
    try:
        while any(w.poll() is None for w in writers) or not reads:
            status = subprocess.run(
                [sys.executable, "-m", "parity", "status", "--store", postgres_url, "--json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert status.returncode == 0, status.stderr
            reads.append(json.loads(status.stdout)["alerts"])
        for w in writers:
            _, err = w.communicate(timeout=60)
            assert w.returncode == 0, err.decode()
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
                w.wait()
    assert all(len(alerts) <= 1 for alerts in reads)
    with open_store(postgres_url, read_only=True) as s:
        summary = s.summary()
        assert summary.records == 3 * n
        assert len({r.record_id for r in s.records()}) == 3 * n
        assert {seg["platform"]: seg["records"] for seg in summary.segments} == {"gpu": n, "tpu": n, "trainium": n}
        assert summary.flags == {"unexpected_script": 3 * n // 10}
        alerts = s.alerts()
        assert [a.alert_id for a in alerts] == ["a-shared"]
        assert alerts[0].n_after == n - 50  # the last upsert of some writer won; none was lost to a conflict


def test_cli_ingest_into_postgres_then_status(postgres_url: str, tmp_path: Path) -> None:
    """Records in -> detectors and monitor -> records and alerts in the PostgreSQL store -> `parity status`."""
    lines = []
    for i in range(400):
        text = "The answer is สวัสดีครับ here." if i >= 200 and i % 2 else "The answer is ok."
        lines.append(
            {
                "request": {"model": "S", "messages": [{"role": "user", "content": f"q{i}"}]},
                "response": {
                    "id": f"chatcmpl-{i}",
                    "object": "chat.completion",
                    "created": 1754395200 + 60 * i,
                    "model": "S",
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 30, "completion_tokens": 5},
                },
                "headers": {"x-parity-platform": ("gpu", "tpu")[i % 2], "x-parity-pool": "short"},
            }
        )
    src = tmp_path / "log.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in lines))
    res = CliRunner().invoke(main, ["ingest", str(src), "--store", postgres_url])
    assert res.exit_code == 0, res.output
    assert "ingested 400 records" in res.output
    with open_store(postgres_url, read_only=True) as s:
        assert s.summary().records == 400
        stored = s.alerts()
    status = CliRunner().invoke(main, ["status", "--store", postgres_url, "--json", "--all"])
    assert status.exit_code == 0, status.output
    alerts = json.loads(status.output)["alerts"]
    assert {a["id"] for a in alerts} == {a.alert_id for a in stored}
    assert alerts
    assert all(a["signal"].startswith("unexpected_script") for a in alerts), alerts


def _start_proxy(upstream_url: str, store: str, spool: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [sys.executable, "-m", "parity", "proxy", "--upstream", upstream_url, "--listen", f"127.0.0.1:{port}",
               "--store", store, "--spool", str(spool), "--no-detectors"]  # fmt: skip
    proc = subprocess.Popen(  # run in the spool's folder: a URL store's write-ahead log goes in the working folder
        command,
        env=dict(os.environ, PYTHONPATH=SRC),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=spool.parent,
    )
    return proc, f"http://127.0.0.1:{port}"


def _wait_healthy(proc: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/parity/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"parity proxy did not start: {out}")
        time.sleep(0.1)


def test_two_proxies_write_one_store_while_status_reads_it(postgres_url: str, upstream: Any, tmp_path: Path) -> None:
    """Two `parity proxy` processes in front of one upstream write one PostgreSQL store; while both run, `parity
    status --store postgresql://...` answers and the store holds every exchange of both."""
    procs = [_start_proxy(upstream.url, postgres_url, tmp_path / f"spool-{i}.jsonl") for i in range(2)]
    try:
        for proc, url in procs:
            _wait_healthy(proc, url)
        body = {"model": "S", "messages": [{"role": "user", "content": "hello"}]}
        for _ in range(10):
            for _, url in procs:
                assert httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30).status_code == 200
        deadline = time.monotonic() + 30
        for _, url in procs:
            while httpx.get(f"{url}/parity/health", timeout=5).json()["records_written"] < 10:
                assert time.monotonic() < deadline, "exchanges were never stored"
                time.sleep(0.1)
        status = subprocess.run(
            [sys.executable, "-m", "parity", "status", "--store", postgres_url, "--json"],
            env=dict(os.environ, PYTHONPATH=SRC),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["alerts"] == []
        with open_store(postgres_url, read_only=True) as s:
            assert s.summary().records == 20
            assert len({r.record_id for r in s.records()}) == 20
        assert all(proc.poll() is None for proc, _ in procs)  # both still running and writing
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()
