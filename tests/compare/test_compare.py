"""parity compare against the in-process OpenAI-compatible double: test choice, verdicts, errors, reports."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest
from _compare_fake import FakeModel, transport
from click.testing import CliRunner

import parity
from parity._exceptions import EndpointError, InvalidInputError
from parity._loopback import free_port
from parity.cli._main import main
from parity.compare import (
    REPORT_SCHEMA_VERSION,
    CompareConfig,
    EndpointClient,
    compare_endpoints,
    load_prompts,
    write_html,
)
from parity.compare._client import PROBE_PROMPT, PROBE_TEXT

REF, CAND = "http://reference.test", "http://candidate.test"
PROMPTS = ["the cat", "a dog ran", "we ate", "the sun was", "it was very", "then we"]
#: Small enough to keep each comparison well under a second; 6 prompts x 8 completions.
FAST = CompareConfig(budget=48, contexts=12, n_resamples=300, max_tokens=12, seed=3, greedy_probes=6)


def run(ref: FakeModel, cand: FakeModel, config: CompareConfig = FAST):
    return compare_endpoints(
        REF, CAND, prompts=PROMPTS, config=config, transports={REF: transport(ref), CAND: transport(cand)}
    )


def test_same_model_is_equivalent_and_runs_every_test() -> None:
    report = run(FakeModel(), FakeModel())
    names = [t.name for t in report.tests]
    assert names == [
        "mmd-hamming",
        "token-frequency",
        "detector-rate",
        "loglik-shift",
        "argmax-rate",
        "support",
        "calibration",
        "greedy",
        "next-token-divergence",
    ]
    assert report.equivalent
    assert report.budget_used == 48
    assert all(0 < t.result.pvalue <= 1 for t in report.tests)


def test_skewed_candidate_differs_in_the_logprob_tests() -> None:
    # twice the usual budget: among nine Holm-corrected tests the log-likelihood shift needs it at this skew
    report = run(FakeModel(), FakeModel(skew=1.0), replace(FAST, budget=96))
    assert not report.equivalent
    assert report.test("next-token-divergence").rejected
    assert report.test("loglik-shift").rejected
    assert report.test("loglik-shift").result.effect > 0  # candidate samples are less likely under the reference
    assert report.test("next-token-divergence").result.effect > 0


def test_small_skew_is_caught_per_position_before_the_sample_tests() -> None:
    report = run(FakeModel(), FakeModel(skew=0.5))
    assert report.test("next-token-divergence").rejected
    assert not report.test("mmd-hamming").rejected


def test_corrupted_candidate_is_caught_by_samples_and_detectors() -> None:
    report = run(FakeModel(), FakeModel(corrupt=0.2))
    assert not report.equivalent
    assert report.test("token-frequency").rejected
    assert report.test("detector-rate").result.effect > 0


def test_black_box_fallback_without_logprobs() -> None:
    report = run(FakeModel(logprobs=False, echo=False), FakeModel(logprobs=False, echo=False, corrupt=0.2))
    names = {t.name for t in report.tests}
    assert names == {"mmd-hamming", "token-frequency", "detector-rate"}
    skipped = dict(report.skipped)
    assert "echo" in skipped["loglik-shift"]
    assert "echo" in skipped["argmax-rate"]
    assert not report.equivalent
    assert any("logprobs" in note for note in report.reference.notes)


def test_candidate_without_echo_keeps_the_reference_scoring() -> None:
    report = run(FakeModel(), FakeModel(echo=False))
    assert "loglik-shift" in {t.name for t in report.tests}
    assert "candidate" in dict(report.skipped)["next-token-divergence"]


def test_mismatched_tokenizers_skip_the_per_position_test() -> None:
    report = run(FakeModel(), FakeModel(tokenizer="chars"))
    assert "tokenizers differ" in dict(report.skipped)["next-token-divergence"]


def test_rate_limits_are_retried() -> None:
    report = run(FakeModel(), FakeModel(rate_limit_first=3))
    assert report.retries == 3
    assert report.equivalent


def test_persistent_server_errors_become_an_endpoint_error() -> None:
    config = CompareConfig(budget=48, max_retries=1)
    with pytest.raises(EndpointError, match="answered 503"):
        run(FakeModel(), FakeModel(fail_status=503), config)


def test_unknown_model_is_named() -> None:
    with pytest.raises(InvalidInputError, match="`model` must be one of the models"):
        compare_endpoints(
            REF,
            CAND,
            prompts=PROMPTS,
            config=FAST,
            reference_model="nope",
            transports={REF: transport(FakeModel()), CAND: transport(FakeModel())},
        )


def test_json_contract_and_html_report(tmp_path) -> None:
    report = run(FakeModel(), FakeModel(skew=0.5))
    payload = json.loads(json.dumps(report.to_json()))
    assert set(payload) >= {"equivalent", "alpha", "budget_used", "tests"}
    assert payload["schema_version"] == REPORT_SCHEMA_VERSION == 1
    assert payload["parity_version"] == parity.__version__
    assert payload["equivalent"] is False
    for test in payload["tests"]:
        assert set(test) >= {"name", "statistic", "pvalue", "effect", "min_detectable_effect"}
    out = write_html(report, tmp_path / "report.html")
    text = out.read_text()
    assert "plotly" in text
    assert "Example completions side by side" in text
    assert "next-token" in text
    assert f"parity {parity.__version__}, report schema {REPORT_SCHEMA_VERSION}" in text


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"budget": 3}, "`budget` must be >= 8"),
        ({"alpha": 1.5}, r"`alpha` must be in \(0, 1\)"),
        ({"temperature": 0.0}, "`temperature` must be > 0"),
        ({"top_p": 1.5}, r"`top_p` must be a number in \(0, 1\] \(1 disables\), got 1.5"),
        ({"min_p": 1.0}, r"`min_p` must be in \[0, 1\)"),
        ({"sampler_order": ("top_k", "top_p")}, r"`order` must be a permutation"),
        ({"top_logprobs": 50}, r"`top_logprobs` must be in \[1, 20\]"),
    ],
)
def test_config_validation(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        CompareConfig(**kwargs)  # type: ignore[arg-type]


def test_client_rejects_bad_url() -> None:
    with pytest.raises(InvalidInputError, match="`base_url` must be an http"):
        EndpointClient("ftp://x")


def test_load_prompts_formats(tmp_path) -> None:
    (tmp_path / "p.txt").write_text("one\ntwo\\nlines\n\n")
    (tmp_path / "p.jsonl").write_text('{"prompt": "a"}\n"b"\n')
    (tmp_path / "p.json").write_text('["x", {"prompt": "y"}]')
    assert load_prompts(tmp_path / "p.txt") == ["one", "two\nlines"]
    assert load_prompts(tmp_path / "p.jsonl") == ["a", "b"]
    assert load_prompts(tmp_path / "p.json") == ["x", "y"]
    with pytest.raises(InvalidInputError, match="`prompts` must be a readable file"):
        load_prompts(tmp_path / "missing.txt")
    (tmp_path / "bad.jsonl").write_text('{"text": 1}\n')
    with pytest.raises(InvalidInputError, match="`prompts` must hold prompt strings"):
        load_prompts(tmp_path / "bad.jsonl")


def test_cli_unreachable_endpoint_exits_2_with_one_line() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    result = CliRunner().invoke(main, ["compare", "--reference", url, "--candidate", url, "--budget", "8"])
    assert result.exit_code == 2
    assert "parity: error:" in result.output
    assert "unreachable" in result.output
    assert "Traceback" not in result.output


def test_cli_plan_only_sends_nothing() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(
        main, ["compare", "--reference", url, "--candidate", url, "--budget", "100", "--plan-only"]
    )
    assert result.exit_code == 0
    assert "budget 100 completions per endpoint (25 prompts x 4)" in result.output
    assert "reference floor at most 0.0002 per token): support - " in result.output
    assert "of sampled tokens outside the reference's kept set (power 1.00 against 1%)" in result.output
    assert "greedy tokens off the reference's argmax over 32 probes (power" in result.output
    assert "top-k 20, top-p 0.9, min-p 0 (every token decided exactly)" in result.output


def test_cli_bad_option_exits_2() -> None:
    result = CliRunner().invoke(main, ["compare", "--reference", "http://a", "--candidate", "http://b", "--alpha", "2"])
    assert result.exit_code == 2
    assert "`alpha` must be in (0, 1)" in result.output


# --- servers that behave like llama-cpp-python's (found running parity compare against it) ---------------------


def test_zero_max_tokens_read_as_no_limit_is_detected_and_scores_cover_the_text_only() -> None:
    ref, cand = FakeModel(zero_means_unlimited=True), FakeModel(zero_means_unlimited=True)
    report = run(ref, cand)
    assert [t.name for t in report.tests][-1] == "next-token-divergence"  # fingerprints match once trimmed
    assert any("max_tokens=0 generated" in note for note in report.candidate.notes)
    scoring = [b for b in ref.bodies if b.get("echo") and b["prompt"] != PROBE_TEXT]
    assert scoring
    assert all(b["max_tokens"] == 1 for b in scoring)
    assert report.test("next-token-divergence").result.effect == pytest.approx(0.0, abs=1e-9)


def test_score_drops_generated_tokens() -> None:
    async def scored() -> tuple[int, int]:
        fake = FakeModel(zero_means_unlimited=True)
        async with EndpointClient("http://fake.test", transport=transport(fake)) as client:
            await client.probe()
            result = await client.score("the cat", " sat on a mat")
            return len(result.tokens), len(result.logprobs)

    assert asyncio.run(scored()) == (4, 4)


def test_shifted_prompt_logprobs_skip_the_tests_on_them() -> None:
    report = run(FakeModel(), FakeModel(echo_shift=True))
    assert not report.candidate.echo_consistent
    assert any("disagree with sampled logprobs" in note for note in report.candidate.notes)
    assert "disagree" in dict(report.skipped)["next-token-divergence"]
    assert {"loglik-shift", "argmax-rate"} <= {t.name for t in report.tests}  # scored under the reference
    assert report.equivalent  # the same sampler: nothing else differs

    report = run(FakeModel(echo_shift=True), FakeModel())
    assert {"loglik-shift", "argmax-rate", "next-token-divergence"} <= set(dict(report.skipped))
    assert "reference's prompt logprobs" in dict(report.skipped)["loglik-shift"]


def test_top_p_is_always_sent_so_a_server_default_cannot_apply() -> None:
    cand = FakeModel(default_top_p=0.3)
    run(FakeModel(), cand)
    sampling = [b for b in cand.bodies if not b.get("echo") and b["prompt"] != PROBE_PROMPT]
    assert sampling
    assert all(b["top_p"] == (1.0 if b["temperature"] == 0.0 else FAST.top_p) for b in sampling)


def test_extra_body_goes_to_one_side_and_may_not_replace_parity_fields() -> None:
    ref, cand = FakeModel(), FakeModel()
    compare_endpoints(
        REF,
        CAND,
        prompts=PROMPTS,
        config=FAST,
        transports={REF: transport(ref), CAND: transport(cand)},
        candidate_extra_body={"top_k": 0, "repeat_penalty": 1.0},
    )
    assert all(b["repeat_penalty"] == 1.0 for b in cand.bodies)
    # parity's own top-k goes with every sampled completion; the extra body's stays on the other requests
    assert all(b["top_k"] == (FAST.top_k if b["temperature"] > 0.0 else 0) for b in cand.bodies)
    assert all(("top_k" in b) == (b["temperature"] > 0.0) for b in ref.bodies)
    with pytest.raises(InvalidInputError, match=r"`extra_body` may not set fields parity sends itself, got \['seed'\]"):
        EndpointClient("http://x.test", extra_body={"seed": 1})


def test_cli_extra_body_must_be_a_json_object() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    args = ["compare", "--reference", url, "--candidate", url, "--budget", "8", "--candidate-extra-body", "[1]"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "`candidate_extra_body` must be a JSON object" in result.output
    assert "Traceback" not in result.output
