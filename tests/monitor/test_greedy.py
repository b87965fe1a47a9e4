"""Parameter adherence without logprobs: identical greedy requests paired by the record builder, their
disagreement as a per-segment signal, one incident on the model whose upstream ignores ``temperature``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from parity._exceptions import InvalidInputError
from parity.monitor.alerting.alerts import MemoryNotifier, explain_alert
from parity.monitor.detection.incidents import group_incidents
from parity.monitor.detection.pipeline import MonitorConfig, SegmentMonitor
from parity.monitor.detection.segments import StatsConfig
from parity.monitor.intake.scoring import GREEDY_DISAGREEMENT, Exchange, GreedyRepeats, ParsedExchange, RecordBuilder

T0 = datetime(2026, 12, 1, tzinfo=UTC)
PATH = "/v1/chat/completions"


def exchange(i: int, model: str, prompt: str, answer: str, **request: object) -> Exchange:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 16, **request}
    response = {
        "id": f"cmpl-{i}",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 4},
    }
    return Exchange(path=PATH, time=T0 + timedelta(seconds=i), request=body, status_code=200,
                    response_body=json.dumps(response))  # fmt: skip


def test_identical_greedy_requests_are_paired_across_sessions_and_seeds() -> None:
    builder = RecordBuilder(salt="s")
    first = builder.build(exchange(0, "O", "hi", "hello", temperature=0.0, user="a", seed=1))
    same = builder.build(exchange(1, "O", "hi", "hello", temperature=0, user="b", seed=2, logprobs=True))
    other = builder.build(exchange(2, "O", "hi", "hey", top_k=1, temperature=0.5))
    assert first.flagged(GREEDY_DISAGREEMENT) is None  # nothing to compare with yet
    assert same.flagged(GREEDY_DISAGREEMENT) is False
    assert other.flagged(GREEDY_DISAGREEMENT) is True  # top_k=1 is greedy too; the answer changed
    # not greedy, another model, another max_tokens: never paired
    assert builder.build(exchange(3, "O", "hi", "x", temperature=0.7)).flagged(GREEDY_DISAGREEMENT) is None
    assert builder.build(exchange(4, "S", "hi", "x", temperature=0.0)).flagged(GREEDY_DISAGREEMENT) is None
    assert (
        builder.build(exchange(5, "O", "hi", "x", temperature=0.0, max_tokens=8)).flagged(GREEDY_DISAGREEMENT) is None
    )
    assert builder.greedy is not None
    assert (builder.greedy.compared, builder.greedy.disagreed) == (2, 1)
    assert RecordBuilder(salt="s", greedy_memory=0).greedy is None


def test_greedy_memory_is_bounded_and_validated() -> None:
    g = GreedyRepeats(max_requests=2)
    for k in range(3):
        body = {"model": "O", "prompt": f"p{k}", "temperature": 0}
        g.observe("/v1/completions", body, ParsedExchange(text="a", temperature=0.0))
    assert len(g) == 2
    with pytest.raises(InvalidInputError, match="max_requests"):
        GreedyRepeats(0)
    with pytest.raises(InvalidInputError, match="greedy_memory"):
        RecordBuilder(salt="s", greedy_memory=-1)


def test_an_ignored_temperature_on_one_model_is_one_incident_on_it() -> None:
    """Greedy repeats agree 98% of the time everywhere (batch-variant numerics), until model O's upstream starts
    sampling: one incident, on model=O, explained in words."""
    rng = np.random.default_rng(7)
    memory = MemoryNotifier()
    config = MonitorConfig(stats=StatsConfig(dimensions=("model", "platform"), rate_warmup=300), routing_audit=False)
    mon = SegmentMonitor(config=config, notifiers=[memory])
    builder = RecordBuilder(salt="s")
    clean_alerts, first_alert = 0, None
    n_clean, n_faulty = 2400, 1500
    for i in range(n_clean + n_faulty):
        model = ("S", "H", "O")[i % 3]
        prompt = f"question {int(rng.integers(40))}"  # a small set: identical requests recur
        faulty = i >= n_clean and model == "O"
        answer = f"answer to {prompt}"
        if faulty or rng.random() < 0.02:
            answer += f" {int(rng.integers(10**6))}"  # sampled (or a rare batch-variant divergence)
        record = builder.build(exchange(i, model, prompt, answer, temperature=0.0))
        alerts = [a for a in mon.observe(record) if a.status == "open"]
        if i < n_clean:
            clean_alerts += len(alerts)
        elif alerts and first_alert is None:
            first_alert = (i - n_clean) // 3
    assert clean_alerts == 0
    assert first_alert is not None
    assert first_alert < 200
    incidents = group_incidents(mon.alerts)
    assert len(incidents) == 1
    lead = incidents[0].lead
    assert (lead.signal.removesuffix(".score"), lead.segment) == (GREEDY_DISAGREEMENT, {"model": "O"})
    assert "repeated greedy (temperature 0) requests for model=O" in explain_alert(lead)
