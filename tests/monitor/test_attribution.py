"""Change attribution (the exact-scope change just before the start ranks first; time and scope rules) and loading
the change log it ranks."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from parity._exceptions import EndpointError, InvalidInputError
from parity.monitor import Change
from parity.monitor.detection.attribution import AttributionConfig, rank_changes
from parity.monitor.intake.changes import load_changes

T = datetime(2025, 8, 29, 12, tzinfo=UTC)
SEG = {"model": "S", "platform": "tpu"}


def ids(ranked: tuple[object, ...]) -> list[str]:
    return [c.change_id for c in ranked]  # type: ignore[attr-defined]


def test_exact_scope_just_before_the_start_ranks_first() -> None:
    changes = [
        Change("fleet", T - timedelta(minutes=1), "deploy", {}),
        Change("model", T - timedelta(minutes=2), "deploy", {"model": "S"}),
        Change("exact", T - timedelta(minutes=20), "config", {"model": "S", "platform": "tpu"}),
        Change("old-exact", T - timedelta(days=10), "config", {"model": "S", "platform": "tpu"}),
    ]
    ranked = rank_changes(SEG, T, T + timedelta(hours=1), changes)
    assert ids(ranked)[0] == "exact"
    assert ranked[0].score > 0.9
    assert ranked[0].score > ranked[1].score
    assert "matches the segment exactly" in ranked[0].evidence


def test_changes_after_detection_or_well_after_the_start_are_excluded() -> None:
    changes = [
        Change("after-detection", T + timedelta(hours=2), "config", SEG),
        Change("after-start", T + timedelta(hours=1, minutes=-1), "config", SEG),
        Change("within-tolerance", T + timedelta(minutes=10), "config", SEG),
    ]
    ranked = rank_changes(SEG, T, T + timedelta(hours=1), changes)
    assert ids(ranked) == ["within-tolerance"]
    assert "after the estimated start" in ranked[0].evidence
    assert ranked[0].score < 0.5


def test_a_change_inside_the_start_support_interval_is_a_candidate() -> None:
    late = Change("late", T + timedelta(hours=20), "config", SEG)
    before = Change("before", T - timedelta(hours=1), "deploy", {})
    assert ids(rank_changes(SEG, T, T + timedelta(days=2), [late, before])) == ["before"]
    ranked = rank_changes(SEG, T, T + timedelta(days=2), [late, before], latest_start=T + timedelta(hours=24))
    assert ids(ranked) == ["late", "before"]  # exact scope beats a fleet-wide change just before the start
    assert 0.5 < ranked[0].score < 1
    assert "before the latest start the data support" in ranked[0].evidence
    # past the interval's end only lead_tolerance applies; an interval ending before the start is no interval
    assert rank_changes(SEG, T, T + timedelta(days=2), [late], latest_start=T + timedelta(hours=10)) == ()
    assert rank_changes(SEG, T, T + timedelta(days=2), [late], latest_start=T - timedelta(hours=1)) == ()


def test_disjoint_scope_scores_zero() -> None:
    changes = [Change("gpu", T - timedelta(minutes=1), "config", {"platform": "gpu"})]
    assert rank_changes(SEG, T, T, changes) == ()


def test_list_scope_values_cover_the_segment() -> None:
    changes = [Change("both", T - timedelta(minutes=1), "config", {"model": "O,S", "platform": "tpu"})]
    assert ids(rank_changes(SEG, T, T, changes)) == ["both"]


def test_clean_siblings_penalise_a_broad_change() -> None:
    change = Change("model-wide", T - timedelta(minutes=1), "deploy", {"model": "S"})

    def clean_siblings(dim: str) -> list[tuple[dict[str, str], bool]]:
        return [({"model": "S", "platform": "gpu"}, False)] if dim == "platform" else []

    def alerting_siblings(dim: str) -> list[tuple[dict[str, str], bool]]:
        return [({"model": "S", "platform": "gpu"}, True)] if dim == "platform" else []

    penalised = rank_changes(SEG, T, T, [change], siblings=clean_siblings)[0]
    kept = rank_changes(SEG, T, T, [change], siblings=alerting_siblings)[0]
    assert penalised.score == pytest.approx(kept.score / 2, rel=1e-3)
    assert "not alerting" in penalised.evidence
    assert "alerting too" in kept.evidence


def test_max_candidates_and_validation() -> None:
    changes = [Change(f"c{i}", T - timedelta(minutes=i), "deploy", {}) for i in range(10)]
    assert len(rank_changes(SEG, T, T, changes, config=AttributionConfig(max_candidates=3))) == 3
    with pytest.raises(InvalidInputError, match="`sibling_penalty` must be in"):
        AttributionConfig(sibling_penalty=2.0)
    with pytest.raises(InvalidInputError, match="`recency_scale` must be > 0"):
        AttributionConfig(recency_scale=timedelta(0))


# -- loading the change log (parity.monitor.intake.changes) ------------------------------------------------------------

LAB_ENTRY = {
    "time": "2025-08-29T10:00:00+00:00",
    "id": "lb-7",
    "kind": "load_balancing",
    "scope": {"model": "S"},
    "description": "rebalance",
    "params": {"misroute_multiplier": 20},
}


def test_jsonl_and_json_list_files(tmp_path: Path) -> None:
    jsonl = tmp_path / "changes.jsonl"
    second = {**LAB_ENTRY, "id": "cfg-1", "time": "2025-08-25T00:00:00Z", "scope": {"model": ["O", "S"]}}
    jsonl.write_text(json.dumps(LAB_ENTRY) + "\n\n" + json.dumps(second) + "\n")
    changes = load_changes(jsonl)
    assert [c.change_id for c in changes] == ["cfg-1", "lb-7"]  # sorted by time
    assert changes[0].scope == {"model": "O,S"}
    listed = tmp_path / "changes.json"
    listed.write_text(json.dumps([LAB_ENTRY]))
    assert [c.change_id for c in load_changes(listed)] == ["lb-7"]


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(LAB_ENTRY) + "\n{not json\n")
    with pytest.raises(InvalidInputError, match=r"bad.jsonl:2` must be one JSON change object"):
        load_changes(path)
    with pytest.raises(InvalidInputError, match="`path` must be a readable change-log file"):
        load_changes(tmp_path / "missing.jsonl")


@pytest.fixture
def change_server() -> Iterator[tuple[str, list[str | None]]]:
    """A real loopback server answering ``GET /admin/changes`` like the lab, recording Authorization headers."""
    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            if self.path != "/admin/changes":
                self.send_error(404)
                return
            body = json.dumps([LAB_ENTRY]).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_load_from_the_lab_endpoint(change_server: tuple[str, list[str | None]]) -> None:
    url, seen = change_server
    assert [c.change_id for c in load_changes(url, token="s3cret")] == ["lb-7"]  # base URL: path appended
    assert [c.change_id for c in load_changes(url + "/admin/changes")] == ["lb-7"]
    assert seen == ["Bearer s3cret", None]


def test_unreachable_endpoint_is_an_endpoint_error() -> None:
    with pytest.raises(EndpointError, match="cannot fetch the change log"):
        load_changes("http://127.0.0.1:9", timeout=2.0)
