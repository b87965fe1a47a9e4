"""`parity demo` as a process: SIGTERM (a CI timeout, `kill`) stops the lab fleet it started, not only itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("duckdb")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out.extend(int(c) for c in text)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads child processes from /proc (Linux)")
@pytest.mark.timeout(300)
def test_sigterm_stops_the_lab_fleet_with_the_demo(tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    command = [sys.executable, "-c", "from parity.cli import main; main()", "demo", "--weights", "parity-lab-9m"]
    command += ["--days", "08-01..08-02", "--requests-per-day", "2000", "--port", "0"]
    command += ["--store", str(tmp_path / "demo.duckdb"), "--json", str(tmp_path / "summary.json")]
    with log.open("wb") as out:
        demo = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
        try:
            deadline = time.monotonic() + 240
            while "dashboard" not in log.read_text() and time.monotonic() < deadline:  # the lab is up, traffic runs
                assert demo.poll() is None, log.read_text()
                time.sleep(0.5)
            labs = _children(demo.pid)
            assert labs, log.read_text()
            demo.send_signal(signal.SIGTERM)
            assert demo.wait(timeout=60) == 128 + signal.SIGTERM, log.read_text()
            deadline = time.monotonic() + 30
            while any(_alive(p) for p in labs) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not any(_alive(p) for p in labs), f"the lab fleet outlived the demo: {labs}"
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait()


@pytest.mark.timeout(300)
def test_the_replay_reads_the_labs_change_log_over_one_connection() -> None:
    from parity._exceptions import EndpointError
    from parity.demo.lab_process import LabProcess
    from parity.demo.replay import LabChangeLog
    from parity.demo.timeline import incident_timeline
    from parity.lab.fleet import default_config_path

    with LabProcess(default_config_path("incident"), weights="parity-lab-9m") as lab:
        log = LabChangeLog(lab.url, token=lab.admin_token)
        try:
            before = {c.change_id for c in log()}
            lab.post_change(incident_timeline().change("routing-1p").to_json())
            changes = {c.change_id: c for c in log()}
            assert set(changes) - before == {"routing-1p"}
            assert changes["routing-1p"].scope == {"model": "S", "platform": "gpu"}
        finally:
            log.close()
    gone = LabChangeLog(lab.url)  # the lab has stopped: a clear error naming the change log, not a traceback
    try:
        with pytest.raises(EndpointError, match="cannot fetch the change log"):
            gone()
    finally:
        gone.close()


def test_a_second_signal_during_the_labs_shutdown_still_kills_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # the demo unwinds on SIGTERM and stops the lab; a second SIGTERM (or Ctrl-C) arriving while a busy lab finishes
    # its batch used to abort the wait and leave the fleet running without a parent
    from parity.demo.lab_process import LabProcess

    lab = LabProcess("unused.toml")
    stubborn = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"]
    )
    time.sleep(0.5)  # its SIGTERM handler is set
    lab._proc = stubborn
    real_wait = stubborn.wait

    def interrupted_wait(timeout: float | None = None) -> int:
        monkeypatch.setattr(stubborn, "wait", real_wait)
        raise KeyboardInterrupt  # what the demo's handler raises on the second signal

    monkeypatch.setattr(stubborn, "wait", interrupted_wait)
    try:
        with pytest.raises(KeyboardInterrupt):
            lab.stop()
        assert stubborn.poll() == -signal.SIGKILL
    finally:
        if stubborn.poll() is None:
            stubborn.kill()
            stubborn.wait()


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads child processes from /proc (Linux)")
@pytest.mark.timeout(300)
def test_the_lab_fleet_stops_itself_when_its_parent_is_killed_with_sigkill(tmp_path: Path) -> None:
    # SIGKILL runs no clean-up in the parent: the fleet watches for it (`parity lab serve --parent-pid`)
    parent_code = (
        "import sys, time\n"
        "from parity.demo.lab_process import LabProcess\n"
        "from parity.lab.fleet import default_config_path\n"
        "lab = LabProcess(default_config_path('incident'), weights='parity-lab-9m').start()\n"
        "print(lab._proc.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, env=os.environ.copy())
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line.strip(), "the parent did not start its lab"
        lab = int(line)
        assert _alive(lab)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 60
        while _alive(lab) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(lab), "the lab fleet outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


def test_parent_pid_must_be_the_parent() -> None:
    from click.testing import CliRunner

    from parity.cli import main

    result = CliRunner().invoke(main, ["lab", "serve", "--parent-pid", "1", "--port", "0"])
    assert result.exit_code == 2, result.output
    assert "`--parent-pid` must be the pid of this process's parent" in result.output
