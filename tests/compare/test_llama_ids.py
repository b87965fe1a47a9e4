"""Token ids read back from llama-cpp-python's server (``Capabilities.token_ids_from == "text pieces"``): the ids
:class:`EndpointClient` recovers from the logprob pieces must be the ids llama.cpp sampled. The server runs on
the lab's 9M model exported to GGUF (byte-level BPE, as SmolLM2's); skipped without ``llama_cpp`` or ``gguf``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("gguf")
llama_cpp = pytest.importorskip("llama_cpp")
pytest.importorskip("llama_cpp.server.app")  # the server extra (fastapi, uvicorn, sse-starlette)

from benchmarks.bench_compare import LLAMA_NEUTRAL, llama_server  # noqa: E402

from parity.compare import EndpointClient  # noqa: E402
from parity.compare._client import IDS_FROM_PIECES, Capabilities, Completion, exact_pieces  # noqa: E402
from parity.lab.gguf_export import export_gguf  # noqa: E402

PROMPTS = ("The capital of France is", "def add(a, b):\n", "Once upon a time,")


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_gguf(tmp_path_factory.mktemp("gguf") / "lab-f16.gguf", quantization="f16")


@pytest.fixture(scope="module")
def server(gguf_file: Path) -> Iterator[str]:
    with llama_server(gguf_file) as url:
        yield url


def _logprobs(llm: Any, prompt: list[int], ids: list[int]) -> list[float]:
    """llama.cpp's own logprob of each of ``ids`` after ``prompt`` (teacher-forced in this process)."""
    llm.reset()
    llm.eval(prompt + ids)
    scores = np.asarray(llm.scores[: len(prompt) + len(ids)], dtype=np.float64)
    rows = scores[len(prompt) - 1 : len(prompt) - 1 + len(ids)]
    logz = np.log(np.exp(rows - rows.max(1, keepdims=True)).sum(1)) + rows.max(1)
    return [float(rows[k, t] - logz[k]) for k, t in enumerate(ids)]


@pytest.mark.slow  # a llama.cpp server and a GGUF export: ~10 s on an idle machine
def test_ids_read_from_text_pieces_are_the_ids_llama_cpp_sampled(server: str, gguf_file: Path) -> None:
    llm = llama_cpp.Llama(model_path=str(gguf_file), n_ctx=256, n_threads=1, logits_all=True, verbose=False)

    async def go() -> tuple[Capabilities, list[tuple[tuple[int, ...], Completion, Mapping[str, Any], Any]]]:
        async with EndpointClient(server, timeout_s=300, extra_body=LLAMA_NEUTRAL) as client:  # no repeat penalty
            caps = await client.probe()
            out = []
            for p, prompt in enumerate(PROMPTS):
                ids = await client.tokenize(prompt)
                greedy = await client.sample(p, ids, max_tokens=12, temperature=0.0, token_ids=True)
                # what sample() sends at temperature 1.5 (rarer tokens), kept whole for the sampled logprobs
                hot = await client.complete({"prompt": prompt, "max_tokens": 12, "temperature": 1.5, "top_p": 1.0,
                                             "seed": p, "logprobs": 0, **LLAMA_NEUTRAL})  # fmt: skip
                out.append((ids, greedy, hot, await client._ids_from_pieces(hot["logprobs"]["tokens"], hot["text"])))
            return caps, out

    caps, runs = asyncio.run(go())
    assert caps.token_ids
    assert caps.token_ids_from == IDS_FROM_PIECES
    decided = 0
    for prompt_text, (ids, greedy, hot, hot_ids) in zip(PROMPTS, runs, strict=True):
        prompt = list(ids)
        assert prompt == llm.tokenize(prompt_text.encode(), add_bos=False, special=True)
        # greedy: exactly llama.cpp's own argmax continuation, computed here on the same GGUF
        want = []
        for tok in llm.generate(prompt, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
            if tok == llm.token_eos() or len(want) == 12:
                break
            want.append(int(tok))
        if greedy.token_ids:  # the server also stops at end-of-generation tokens other than EOS (e.g. end of turn)
            assert list(greedy.token_ids) == want[: len(greedy.token_ids)]
            assert len(greedy.token_ids) == 12 or greedy.finish_reason == "stop"
            decided += 1
        # sampled: the ids spell the text, and llama.cpp's logprob of each id at its position (teacher-forced
        # here) is the logprob the server reported for the token it sampled there - a wrong id would not match
        if hot_ids:
            assert llm.detokenize(list(hot_ids)).decode() == hot["text"]
            reported = hot["logprobs"]["token_logprobs"]
            np.testing.assert_allclose(_logprobs(llm, prompt, list(hot_ids)), reported, atol=0.02, rtol=0)
            decided += 1
    llm.close()
    assert decided >= 4  # most completions of plain English decide (a split character is what leaves one out)


def test_a_completion_whose_pieces_lose_bytes_is_not_given_ids() -> None:
    assert exact_pieces(["Hello", ",", " world"], "Hello, world")
    assert not exact_pieces(["caf", ""], "café")  # a character split over two tokens: its bytes left the pieces
    assert not exact_pieces(["x", "y"], "x")  # pieces that do not spell the text
