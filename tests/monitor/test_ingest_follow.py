"""``parity ingest --follow``: a growing log read like ``tail -F`` (rotation, truncation, a file that does not
exist yet), records stored as they come, and a stop signal that keeps everything read."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from parity.monitor.intake.ingest import FollowControl, IngestResult, follow_lines, ingest_lines
from parity.monitor.storage.store import DuckDBStore, MemoryStore

pytest.importorskip("duckdb")


def log_line(i: int) -> str:
    return json.dumps(
        {
            "request": {"model": "S", "messages": [{"role": "user", "content": f"q{i}"}]},
            "response": {"id": f"chatcmpl-{i}", "created": 1754395200 + i, "model": "S",
                         "choices": [{"index": 0, "message": {"content": "fine"}, "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 3, "completion_tokens": 1}},
        }
    ) + "\n"  # fmt: skip


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(text)


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_follow_stores_as_lines_come_across_rotation_and_truncation(tmp_path: Path) -> None:
    log = tmp_path / "app.log"  # does not exist yet: the follower waits for it
    store = MemoryStore()
    control = FollowControl()
    out: list[IngestResult] = []
    thread = threading.Thread(
        target=lambda: out.append(ingest_lines(follow_lines(log, control, poll_s=0.02), store, salt="s", scorer=None))
    )
    thread.start()
    try:
        append(log, "".join(log_line(i) for i in range(5)))
        wait_for(lambda: len(store.records()) == 5)  # stored while the run goes on, not at its end

        append(log, log_line(5) + "{broken\n" + log_line(6)[:20])  # a line still being written
        wait_for(lambda: len(store.records()) == 6)
        append(log, log_line(6)[20:])
        wait_for(lambda: len(store.records()) == 7)

        # rotation (logrotate's create mode): renamed, the writer adds a last line to the old file, then a new file
        os.rename(log, tmp_path / "app.log.1")
        append(tmp_path / "app.log.1", log_line(7))
        append(log, "".join(log_line(i) for i in range(8, 11)))
        wait_for(lambda: len(store.records()) == 11)
        assert control.rotations == 1

        # copytruncate: the file is emptied in place and written again from its start
        with log.open("w", encoding="utf-8"):
            pass
        append(log, log_line(11))
        wait_for(lambda: len(store.records()) == 12)
        assert control.truncations == 1

        append(log, log_line(12) + log_line(13) + '{"request": ')  # the stop reads to the end; no newline there
    finally:
        control.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()
    result = out[0]
    ids = sorted(int(r.record_id.split("-")[1]) for r in store.records())
    assert ids == list(range(14))  # each record once
    assert result.records == 14
    assert result.rejected == 1
    assert result.rejected_lines == [7]  # line numbers count on across the rotation
    assert control.unfinished_bytes == len('{"request": ')
    assert not result.interrupted


def test_second_stop_ends_at_once_with_what_was_read_stored(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("".join(log_line(i) for i in range(50)))
    control = FollowControl()
    store = MemoryStore()
    lines = follow_lines(log, control, chunk_bytes=len(log_line(0)) * 10)  # 10 lines per read
    seen = 0

    def counted() -> Iterator[Any]:
        nonlocal seen
        for line in lines:
            seen += 1
            if seen == 3:
                control.stop()
                control.stop()
            yield line

    result = ingest_lines(counted(), store, salt="s", scorer=None)
    assert result.records == 10  # the chunk in hand, not the 40 lines after it
    assert len(store.records()) == 10


def has_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` holds ``path`` open (Linux /proc)."""
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(fd) == str(path) for fd in fds.iterdir())
    except FileNotFoundError:  # an fd closed while we looked
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_follow_stops_on_signal_with_everything_stored(tmp_path: Path, sig: int) -> None:
    """The CLI follows a file that appears after it starts and is rotated; the signal ends the run normally
    (exit 3 here: one line was rejected) after reading to the file's end."""
    log = tmp_path / "app.log"
    store = tmp_path / "s.duckdb"
    command = [sys.executable, "-m", "parity", "ingest", str(log), "--follow", "--store", str(store),
               "--no-detectors", "--no-monitor"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(store.exists, timeout=60)  # the store opens right before the file is followed
        append(log, "".join(log_line(i) for i in range(30)) + "not json\n")
        wait_for(lambda: has_open(proc.pid, log), timeout=60)  # following it (else the rename would come first)
        os.rename(log, tmp_path / "app.log.1")
        append(log, "".join(log_line(i) for i in range(30, 60)))
        time.sleep(0.5)
        proc.send_signal(sig)
        out = proc.communicate(timeout=60)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3, out
    assert "stopped following" in out, out
    assert "1 rotations" in out, out
    assert "line 31:" in out, out
    with DuckDBStore(store, read_only=True) as s:
        ids = sorted(int(r.record_id.split("-")[1]) for r in s.records())
    assert ids == list(range(60))
    rejects = [json.loads(x) for x in (tmp_path / "app.log.rejects").read_text().splitlines()]
    assert [(r["line"], r["raw"]) for r in rejects] == [(31, "not json")]


def test_cli_follow_refuses_stdin(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "parity", "ingest", "-", "--follow", "--store",
                          str(tmp_path / "s.duckdb")], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 2
    assert "--follow" in run.stderr
    assert "Traceback" not in run.stderr


#: Two lines exactly as deploy/nginx/parity-mirror.conf logs them (captured from nginx 1.22 + njs 0.7.9): the
#: bodies as JSON-escaped text, an SSE stream, empty strings for absent headers.
NGINX_LINES = (
    r'{"time":1796374348.933,"status_code":200,"latency_ms":4,"session_id":"","headers":{"x-parity-server":'
    r'"gpu-short-0","x-parity-pool":"short","x-parity-platform":"gpu","x-parity-region":"","x-parity-config-version"'
    r':"v1","x-parity-model":"S"},"request":"{\"model\":\"S\",\"messages\":[{\"role\":\"user\",\"content\":'
    r'\"héllo\"}],\"stream\":false,\"user\":\"u1\"}","response":"{\"id\": \"chatcmpl-1\", \"object\": '
    r"\"chat.completion\", \"created\": 1754395200, \"model\": \"S\", \"choices\": [{\"index\": 0, \"message\": "
    r"{\"role\": \"assistant\", \"content\": \"The quick fox.\"}, \"finish_reason\": \"stop\"}], \"usage\": "
    r'{\"prompt_tokens\": 12, \"completion_tokens\": 4, \"total_tokens\": 16}}"}'
    "\n"
    r'{"time":1796374349.185,"status_code":200,"latency_ms":222,"session_id":"s9","headers":{"x-parity-server":'
    r'"tpu-long-1","x-parity-pool":"long","x-parity-platform":"tpu","x-parity-region":"","x-parity-config-version"'
    r':"v1","x-parity-model":"S"},"request":"{\"model\":\"S\",\"messages\":[{\"role\":\"user\",\"content\":'
    r'\"hi\"}],\"stream\":true}","response":"data: {\"id\": \"chatcmpl-2\", \"created\": 1754395200, \"model\": '
    r"\"S\", \"choices\": [{\"index\": 0, \"delta\": {\"content\": \"The \"}, \"finish_reason\": null}]}\n\ndata: "
    r"{\"id\": \"chatcmpl-2\", \"choices\": [{\"index\": 0, \"delta\": {\"content\": \"end\"}, \"finish_reason\": "
    r'\"length\"}]}\n\ndata: [DONE]\n\n"}'
    "\n"
    r'{"time":1796374350.0,"status_code":200,"latency_ms":3,"session_id":"","headers":{},"request":"",'
    r'"response":"{}"}'
    "\n"
)


def test_the_nginx_mirror_log_format_is_ingested(tmp_path: Path) -> None:
    """Bodies logged as text (nginx's escape=json) become the same records as the proxy's; a request body nginx
    did not keep (logged as "") is rejected by its line number, not stored half-empty."""
    store = MemoryStore()
    result = ingest_lines(NGINX_LINES.encode().splitlines(keepends=True), store, salt="s", scorer=None)
    assert result.rejected_lines == [3]
    assert "request" in result.errors[0][1]
    by_id = {r.record_id: r for r in store.records()}
    assert sorted(by_id) == ["chatcmpl-1", "chatcmpl-2"]
    whole, streamed = by_id["chatcmpl-1"], by_id["chatcmpl-2"]
    assert (whole.platform, whole.server, whole.region, whole.context_tokens) == ("gpu", "gpu-short-0", "unknown", 12)
    assert whole.latency_ms == 4.0
    assert whole.session_hash is not None  # request.user
    assert whole.time.timestamp() == pytest.approx(1796374348.933)
    assert (streamed.platform, streamed.pool, streamed.finish_reason) == ("tpu", "long", "length")
    assert streamed.session_hash is not None  # the x-session-id header nginx logged
