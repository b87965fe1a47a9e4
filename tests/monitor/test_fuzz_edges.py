"""A seeded sample of the fuzz campaign (``benchmarks/bench_fuzz.py`` runs 100,000+ of each): hostile requests
through a real proxy in front of a misbehaving upstream, and hostile records through ingest."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from benchmarks._fuzz import MisbehavingUpstream, decode_reject, fuzz_records, fuzz_requests, send

from parity.monitor.intake.ingest import ingest_file
from parity.monitor.intake.proxy import ParityProxy, ProxyConfig
from parity.monitor.intake.scoring import RecordBuilder
from parity.monitor.storage.store import MemoryStore

LIMIT = 64 * 1024


def test_fuzzed_requests_are_answered_exactly_as_the_upstream_answered(
    serve_app: Callable[[Any], Any], tmp_path: Path
) -> None:
    with MisbehavingUpstream() as upstream:
        proxy = ParityProxy(  # a small queue, so that hand-offs also go the spool's way
            ProxyConfig(
                upstream=upstream.url,
                max_body_bytes=LIMIT,
                upstream_timeout_s=10,
                queue_size=20,
                spool_path=tmp_path / "spool.jsonl",
            ),
            MemoryStore(),
            RecordBuilder(salt="s", scorer=None),
        )
        handle = serve_app(proxy.app)
        requests = list(fuzz_requests(20260917, 300, max_body_bytes=LIMIT))
        assert {r.mode for r in requests} >= {"reset", "truncated", "broken_sse", "bad_utf8", "garbage_status"}
        assert any(r.oversize for r in requests)
        with httpx.Client(timeout=30) as client:
            verdicts = [send(client, handle.url, r) for r in requests]
            health = client.get(handle.url + "/parity/health")
        pairs = zip(requests, verdicts, strict=True)
        altered = [(r.mode, r.method, r.path, r.body[:80], v.status, v.why) for r, v in pairs if not v.ok]
        assert not altered, f"{len(altered)} of {len(requests)} answered otherwise than the upstream: {altered[:5]}"
        assert not any(v.proxy_500 for v in verdicts)
        assert health.status_code == 200  # the proxy is still up and answering
        assert upstream.requests == sum(not r.oversize for r in requests)  # oversize bodies were never forwarded


@pytest.mark.parametrize("fmt", ["jsonl", "otlp"])
def test_fuzzed_records_are_rejected_by_line_number_and_kept_verbatim(tmp_path: Path, fmt: str) -> None:
    lines, bad = fuzz_records(20260917, 400, fmt=fmt)
    src = tmp_path / f"fuzz.{fmt}"
    src.write_bytes(b"\n".join(lines) + b"\n")
    store = MemoryStore()
    result = ingest_file(src, store, fmt=fmt, salt="s", scorer=None)
    assert result.rejected_lines == bad
    good = [json.loads(line) for i, line in enumerate(lines, start=1) if i not in set(bad)]
    expected = len(good) if fmt == "jsonl" else sum(len(d["resourceSpans"][0]["scopeSpans"][0]["spans"]) for d in good)
    assert result.records == len(store.records()) == expected
    entries = [json.loads(x) for x in Path(f"{src}.rejects").read_text(encoding="ascii").splitlines()]
    assert [e["line"] for e in entries] == bad
    assert [decode_reject(e) for e in entries] == [lines[n - 1] for n in bad]
