"""End to end: ``parity compare`` over HTTP against two real lab servers (the committed lab weights).

The lab is imported here only to start the servers; parity.compare itself talks to them over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from click.testing import CliRunner

from parity.cli._main import main

lab_server = pytest.importorskip("parity.lab.server", reason="the lab fleet is not installed")
lab_fleet = pytest.importorskip("parity.lab.fleet")
torch = pytest.importorskip("torch")

TOKEN = "compare-test"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, str]]:
    torch.set_num_threads(1)
    config = lab_fleet.FleetConfig.load(lab_fleet.default_config_path("fleet"))
    ref = lab_server.ServerThread(lab_server.LabServer(config, weights_dir="parity-lab-9m", admin_token=TOKEN)).start()
    try:
        cand = lab_server.ServerThread(
            lab_server.LabServer(config, weights_dir="parity-lab-9m", admin_token=TOKEN)
        ).start()
        try:
            yield ref.url, cand.url
        finally:
            cand.stop()
    finally:
        ref.stop()


def _cli(ref: str, cand: str, tmp_path) -> tuple[int, dict[str, object]]:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("The history of the printing press begins\ndef fibonacci(n):\\n    \n")
    args = ["compare", "--reference", ref, "--candidate", cand, "--prompts", str(prompts), "--budget", "12"]
    args += ["--max-tokens", "8", "--contexts", "12", "--json", "--seed", "1", "--report", str(tmp_path / "r.html")]
    args += ["--greedy-probes", "4"]
    result = CliRunner().invoke(main, args)
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.stdout)


def test_lab_fault_is_detected_and_rollback_restores(servers: tuple[str, str], tmp_path) -> None:
    ref, cand = servers
    # the long-context RoPE configuration applied to every short prompt (the incident's routing bug at 100%)
    change = {"kind": "routing", "params": {"fraction": 1.0}, "description": "compare e2e: all short to long"}
    headers = {"authorization": f"Bearer {TOKEN}"}
    posted = httpx.post(f"{cand}/admin/changes", json=change, headers=headers, timeout=30)
    assert posted.status_code == 201, posted.text
    code, payload = _cli(ref, cand, tmp_path)
    assert code == 1
    assert payload["equivalent"] is False
    names = {t["name"] for t in payload["tests"]}  # type: ignore[attr-defined]
    assert {"mmd-hamming", "token-frequency", "loglik-shift", "next-token-divergence"} <= names
    assert {"support", "greedy"} <= names  # the sampler tests run on the lab's echo (20 alternatives per position)
    assert (tmp_path / "r.html").stat().st_size > 100_000  # plotly.js is embedded: the report works offline

    rollback = {"kind": "rollback", "params": {"change_id": posted.json()["id"]}, "description": "undo"}
    assert httpx.post(f"{cand}/admin/changes", json=rollback, headers=headers, timeout=30).status_code == 201
    code, payload = _cli(ref, cand, tmp_path)
    per_position = next(t for t in payload["tests"] if t["name"] == "next-token-divergence")  # type: ignore[attr-defined]
    assert per_position["effect"] == pytest.approx(0.0, abs=1e-6)  # same weights, same config: no divergence
    assert code in (0, 1)
    support = next(t for t in payload["tests"] if t["name"] == "support")  # type: ignore[attr-defined]
    assert not support["rejected"]  # same weights, same sampler: the kept sets hold as often as on the reference


def test_token_ids_are_scored_as_sampled_not_re_encoded(servers: tuple[str, str]) -> None:
    """A non-canonical token sequence (" t" + "he" for " the") keeps its two tokens when scored by id; the same
    text encoded again is one token, so a text-based score would judge a token that was never sampled."""
    import asyncio

    from parity.compare._client import EndpointClient

    ref, _ = servers

    async def run() -> tuple[bool, tuple[int, ...], int, int, tuple[float, ...], tuple[float, ...]]:
        async with EndpointClient(ref) as client:
            caps = await client.probe()
            prompt = await client.tokenize("Once upon a time")
            whole, split = (
                await client.tokenize(" the"),
                [*(await client.tokenize(" t")), *(await client.tokenize("he"))],
            )
            by_ids = await client.score_ids(prompt, split, top_logprobs=5)
            by_text = await client.score("Once upon a time", " the", top_logprobs=5)
            sampled = await client.sample(0, prompt, max_tokens=4, temperature=1.0, seed=3, token_ids=True)
            again = await client.score_ids(prompt, sampled.token_ids, top_logprobs=1)
            plain = await client.complete(
                {"prompt": list(prompt), "max_tokens": 4, "temperature": 1.0, "top_p": 1.0, "seed": 3, "logprobs": 0}
            )
        assert len(whole) == 1
        assert len(split) == 2
        assert len(by_ids.tokens) == 2
        assert len(by_text.tokens) == 1
        assert "".join(by_ids.tokens) == " the"
        assert sampled.text == plain["text"]  # asking for ids changes nothing that is sampled
        return (
            caps.token_ids,
            sampled.token_ids,
            len(again.tokens),
            len(sampled.token_ids),
            again.logprobs,
            tuple(plain["logprobs"]["token_logprobs"]),
        )

    names_ids, ids, scored_len, sampled_len, scored_lps, sampled_lps = asyncio.run(run())
    assert names_ids
    assert ids
    assert scored_len == sampled_len
    assert scored_lps == pytest.approx(sampled_lps, abs=1e-3)  # prefill of the same ids = the decode's logprobs
