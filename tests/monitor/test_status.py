"""``parity status``: alerts from a DuckDB store file, a PostgreSQL store, or a running proxy's ``/parity/alerts``."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from parity.cli._main import main
from parity.monitor import Alert, AttributedChange
from parity.monitor.storage.store import open_store

T = datetime(2025, 8, 25, 12, tzinfo=UTC)
OPEN = Alert(
    "a-open",
    "unexpected_script",
    {"model": "O", "platform": "tpu"},
    T,
    T + timedelta(minutes=9),
    0.019,
    0.001,
    0.02,
    212,
    (AttributedChange("cfg-tpu-O", 0.97, "landed 5 min before the estimated start; scope matches exactly"),),
)
OLD = Alert(
    "a-old", "unexpected_script", {"model": "O"}, T, T + timedelta(minutes=5), 0.01, 0.001, 0.011, 90, (), "superseded"
)


@pytest.fixture
def store_file(tmp_path: Path) -> Path:
    path = tmp_path / "parity.duckdb"
    store = open_store(path)
    store.write_alerts([OPEN, OLD])
    store.close()
    return path


def test_json_from_a_store_file(store_file: Path) -> None:
    result = CliRunner().invoke(main, ["status", "--store", str(store_file), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["health"] == {"status": "ok", "reasons": [], "spool_pending": 0, "wal": 0}
    assert data["alerts"] == [OPEN.to_dict()]
    assert [(i["id"], i["lead"], i["segments"]) for i in data["incidents"]] == [
        ("a-open", "a-open", ["model=O,platform=tpu"])
    ]
    assert data["alerts"][0]["attributed_changes"][0]["change_id"] == "cfg-tpu-O"


def test_all_includes_superseded(store_file: Path) -> None:
    result = CliRunner().invoke(main, ["status", "--store", str(store_file), "--json", "--all"])
    assert [a["id"] for a in json.loads(result.output)["alerts"]] == ["a-open", "a-old"]


def test_table_shows_segment_and_change(store_file: Path) -> None:
    result = CliRunner().invoke(main, ["status", "--store", str(store_file)], env={"COLUMNS": "240"})
    assert result.exit_code == 0, result.output
    for text in ("a-open", "unexpected_script", "platform=tpu", "cfg-tpu-O", "0.97"):
        assert text in result.output


def test_table_shows_the_latest_start_the_data_support(tmp_path: Path) -> None:
    path = tmp_path / "parity.duckdb"
    store = open_store(path)
    store.write_alerts([replace(OPEN, latest_start=T + timedelta(hours=27))])
    store.close()
    result = CliRunner().invoke(main, ["status", "--store", str(path)], env={"COLUMNS": "240"})
    assert result.exit_code == 0, result.output
    assert "(or as late as 2025-08-26 15:00)" in result.output
    certain = tmp_path / "certain.duckdb"
    store = open_store(certain)
    store.write_alerts([OPEN])  # no support interval: the start alone
    store.close()
    plain = CliRunner().invoke(main, ["status", "--store", str(certain)], env={"COLUMNS": "240"})
    assert plain.exit_code == 0, plain.output
    assert "a-open" in plain.output
    assert "or as late as" not in plain.output


def test_empty_store_says_so(tmp_path: Path) -> None:
    path = tmp_path / "empty.duckdb"
    open_store(path).close()
    result = CliRunner().invoke(main, ["status", "--store", str(path)])
    assert result.exit_code == 0
    assert "no open alerts" in result.output


def test_missing_store_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["status", "--store", str(tmp_path / "nope.duckdb")])
    assert result.exit_code == 2
    assert "no store at" in result.output
    assert "Traceback" not in result.output


def test_store_and_proxy_are_exclusive(store_file: Path) -> None:
    result = CliRunner().invoke(main, ["status", "--store", str(store_file), "--proxy", "http://127.0.0.1:1"])
    assert result.exit_code == 2
    assert "`--store/--proxy` are exclusive" in result.output


@pytest.fixture
def proxy_url() -> Iterator[str]:
    """A real HTTP server on a free loopback port answering ``GET /parity/alerts`` like the proxy does."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if not self.path.startswith("/parity/alerts"):
                self.send_error(404)
                return
            alerts = [OPEN] if "open_only=true" in self.path else [OPEN, OLD]
            body = json.dumps({"alerts": [a.to_dict() for a in alerts]}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_json_from_a_running_proxy(proxy_url: str) -> None:
    result = CliRunner().invoke(main, ["status", "--proxy", proxy_url, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["alerts"] == [OPEN.to_dict()]
    assert data["health"]["status"] == "unknown"  # this stand-in proxy serves no /parity/health
    assert [i["id"] for i in data["incidents"]] == ["a-open"]


def test_unreachable_proxy_is_one_line_and_exit_2() -> None:
    result = CliRunner().invoke(main, ["status", "--proxy", "http://127.0.0.1:9", "--json"])
    assert result.exit_code == 2
    assert "cannot reach the proxy" in result.output


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_end_to_end_replay_shows_the_right_segment_and_change(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """Records of a fleet where one platform starts corrupting model O's output after a config change: the
    monitor writes its alert to the store (a DuckDB file, or PostgreSQL) through ``StoreNotifier`` and the records
    in batches; ``parity status`` reads it back."""
    import numpy as np

    from parity.monitor import Change, DetectorObservation, Record
    from parity.monitor.alerting.alerts import StoreNotifier
    from parity.monitor.detection.pipeline import MonitorConfig, SegmentMonitor
    from parity.monitor.detection.segments import StatsConfig

    path = str(tmp_path / "parity.duckdb") if backend == "duckdb" else request.getfixturevalue("postgres_url")
    store = open_store(path)
    stats = StatsConfig(dimensions=("model", "platform", "pool"), score_max_order=0)
    monitor = SegmentMonitor(config=MonitorConfig(stats=stats), notifiers=[StoreNotifier(store)])
    fault = 15_000
    monitor.add_changes(
        [
            Change("cfg-tpu", T + timedelta(seconds=fault - 600), "config", {"platform": "tpu", "model": "O"}),
            Change("deploy", T + timedelta(seconds=fault - 60), "deploy", {}),
        ]
    )
    rng = np.random.default_rng(11)
    batch: list[Record] = []
    for i in range(40_000):
        model, platform = ("S", "O")[i % 2], ("gpu", "tpu", "trainium")[(i // 2) % 3]
        bad = i >= fault and model == "O" and platform == "tpu"
        flagged = bool(rng.random() < (0.03 if bad else 0.001))
        rec = Record(
            record_id=f"r{i}",
            time=T + timedelta(seconds=i),
            model=model,
            platform=platform,
            pool="short",
            observations=(DetectorObservation("unexpected_script", flagged, 0.0),),
        )
        batch.append(rec)
        if len(batch) == 2000:
            store.write_records(batch)
            batch.clear()
        if monitor.observe(rec):
            break
    store.write_records(batch)
    assert store.summary().records == i + 1
    store.close()
    result = CliRunner().invoke(main, ["status", "--store", str(path), "--json"])
    assert result.exit_code == 0, result.output
    alerts = json.loads(result.output)["alerts"]
    assert len(alerts) == 1
    assert alerts[0]["segment"] == {"model": "O", "platform": "tpu"}
    assert alerts[0]["attributed_changes"][0]["change_id"] == "cfg-tpu"


def test_one_incident_per_fault_with_its_explanation(tmp_path: Path) -> None:
    path = tmp_path / "parity.duckdb"
    store = open_store(path)
    lead = replace(OPEN, signal="output.cut", segment={"model": "H"}, baseline=0.03, current=0.45, incident="a-open")
    pooled = replace(lead, alert_id="a-all", segment={}, baseline=0.03, current=0.12, incident="a-open")
    score = replace(OPEN, alert_id="a-score", signal="degeneration.score", segment={"platform": "tpu"})
    store.write_alerts([lead, pooled, score])
    store.close()
    data = json.loads(CliRunner().invoke(main, ["status", "--store", str(path), "--json"]).output)
    assert [(i["id"], i["lead"], i["segments"]) for i in data["incidents"]] == [
        ("a-open", "a-open", ["model=H", "all"]),
        ("a-score", "a-score", ["platform=tpu"]),
    ]
    assert [[e["id"] for e in i["evidence"]] for i in data["incidents"]] == [["a-open", "a-all"], ["a-score"]]
    assert [i["opened_by"] for i in data["incidents"]] == ["a-open", "a-score"]
    assert sorted(a["id"] for a in data["alerts"]) == ["a-all", "a-open", "a-score"]  # every alarm, the evidence
    text = CliRunner().invoke(main, ["status", "--store", str(path)], env={"COLUMNS": "240"}).output
    assert "2 incident(s), one alert per fault" in text
    assert "2 alarm(s)" in text
    assert "evidence: 3 alarm(s)" in text
    assert "evidence for a-open" in text
    assert "45% of answers for model=H end at a length limit below the requested max_tokens, against 3%" in text
