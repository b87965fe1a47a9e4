"""The traffic generator: prompt mix, loopback-only targets, a real bounded run against the lab, and the CLI."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from parity._exceptions import InvalidInputError
from parity.cli._main import main
from parity.lab.traffic import PROMPT_KINDS, TrafficGenerator, check_loopback, make_prompt, prompt_mix


def test_prompt_mix_follows_the_shares(rng: np.random.Generator) -> None:
    kinds = Counter(prompt_mix(rng).kind for _ in range(2000))
    for kind, share in PROMPT_KINDS.items():
        assert abs(kinds[kind] / 2000 - share) < 0.04  # binomial sd <= 0.011 at n = 2000


def test_prompt_mix_is_seeded() -> None:
    a = [prompt_mix(np.random.default_rng(5)) for _ in range(3)]
    b = [prompt_mix(np.random.default_rng(5)) for _ in range(3)]
    assert a == b


def test_prompt_kinds_have_their_shape(rng: np.random.Generator) -> None:
    from parity.lab.tokenizer import Tokenizer

    tok = Tokenizer.load()
    code = make_prompt("code", rng)
    assert code.endpoint == "completions"
    assert code.prompt.lstrip().startswith("def ")
    foreign = make_prompt("non_latin", rng)
    assert foreign.expects_non_latin
    assert foreign.messages[0][1].startswith("Write this in ")
    long = make_prompt("long", rng)
    assert len(tok.encode(long.messages[0][1])) > 192  # above the lab router's long-context threshold
    from parity.lab._prompts import _library

    excerpts = _library()[1]
    assert len(excerpts) > 50
    assert min(len(tok.encode(e)) for e in excerpts) > 192  # every one of them, alone
    assert all(len(tok.encode(make_prompt("code", rng).prompt)) <= 192 for _ in range(50))


@pytest.mark.parametrize("target", ["http://10.0.0.1:8000", "http://example.com", "ftp://127.0.0.1", "127.0.0.1:80"])
def test_non_loopback_targets_are_refused(target: str) -> None:
    with pytest.raises(InvalidInputError, match="`target` must be"):
        check_loopback(target)


@pytest.mark.parametrize("target", ["http://127.0.0.1:8000/", "http://localhost:1", "http://[::1]:9"])
def test_loopback_targets_are_accepted(target: str) -> None:
    assert check_loopback(target) == target.rstrip("/")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rate": 0}, "`rate`"),
        ({"duration": -1}, "`duration`"),
        ({"sessions": 0}, "`sessions`"),
        ({"follow_up": 2}, "`follow_up`"),
        ({"models": {"S": -1}}, "`models`"),
        ({"shares": {"poetry": 1.0}}, "`shares`"),
    ],
)
def test_generator_validates_its_arguments(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"rate": 1.0, "duration": 1.0, **kwargs}
    with pytest.raises(InvalidInputError, match=match):
        TrafficGenerator("http://127.0.0.1:1", **args)


def test_a_bounded_run_against_the_lab(lab: Any) -> None:
    seen: list[Any] = []
    generator = TrafficGenerator(
        lab.url,
        rate=8.0,
        duration=2.5,
        sessions=3,
        seed=1,
        max_tokens=4,
        follow_up=0.8,
        max_requests=20,
        on_result=seen.append,
    )
    summary = generator.run()
    assert 1 <= summary.sent <= 20
    assert summary.ok == summary.sent
    assert len(seen) == summary.sent
    assert sum(summary.by_pool.values()) == summary.ok
    assert set(summary.by_platform) <= {"gpu", "tpu", "trainium"}
    assert summary.latency_p50_s <= summary.latency_p99_s
    assert summary.feedback == {}
    sessions = Counter(o.session for o in summary.outcomes)
    assert max(sessions.values()) >= 2  # follow-ups reuse a session
    for o in summary.outcomes:
        assert o.model in ("S", "O", "H")
        assert o.server.startswith(o.platform)


def test_cli_traffic_refuses_remote_targets() -> None:
    result = CliRunner().invoke(
        main, ["lab", "traffic", "--target", "http://192.0.2.1:80", "--rate", "1", "--duration", "1"]
    )
    assert result.exit_code == 2
    assert "loopback" in result.output
    assert "Traceback" not in result.output


def test_cli_traffic_runs_and_prints_a_summary(lab: Any, tmp_path: Path) -> None:
    out = tmp_path / "outcomes.jsonl"
    args = ["lab", "traffic", "--target", lab.url, "--rate", "5", "--duration", "1", "--max-tokens", "2"]
    result = CliRunner().invoke(main, [*args, "--models", "S=1", "--json", str(out), "--max-requests", "6"])
    assert result.exit_code == 0, result.output
    assert "requests sent" in result.output
    assert out.read_text().count("\n") >= 1


def test_cli_serve_reports_config_errors_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "fleet.toml"
    bad.write_text("[pools.short]\n[platforms.gpu]\nshare = -1\n[models.S]\n")
    result = CliRunner().invoke(main, ["lab", "serve", "--config", str(bad), "--port", "0"])
    assert result.exit_code == 2
    assert "`platforms.gpu.share` must be >= 0.0" in result.output
    assert "Traceback" not in result.output
