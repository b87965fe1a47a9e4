"""The lab model, tokenizer and committed weights (loaded, never trained, here)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from parity._exceptions import InvalidInputError  # noqa: E402
from parity.lab._corpus import SOURCES, SPECIAL_TOKENS, is_validation  # noqa: E402
from parity.lab.model import KVCache, ModelConfig, Transformer, rope_angles  # noqa: E402
from parity.lab.tokenizer import VOCAB_SIZE, WEIGHTS_DIR, Tokenizer  # noqa: E402
from parity.lab.train import TrainConfig  # noqa: E402

#: fp32 reference vs the cached/padded path: the same sums in another order, ~1e-6 relative for these sizes.
CACHE_ATOL = 1e-4

TINY = ModelConfig(vocab_size=97, d_model=32, n_layers=2, n_heads=4, d_ff=48, max_context=32)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.load()


def test_tokenizer_round_trips_every_script(tokenizer: Tokenizer) -> None:
    for text in ["def f(x):\n    return x ** 2\n", "สวัสดีครับ", "你好，世界", "こんにちは", "emoji 🙂 and tabs\t"]:
        assert tokenizer.decode(tokenizer.encode(text)) == text


def test_tokenizer_has_large_vocabulary_and_special_tokens(tokenizer: Tokenizer) -> None:
    assert tokenizer.vocab_size == VOCAB_SIZE >= 16384
    assert [tokenizer.special_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert tokenizer.encode("<|user|>hi<|end|>")[0] == tokenizer.special_id("<|user|>")
    assert tokenizer.token_text(12000) == tokenizer.decode([12000])


def test_tokenizer_rejects_bad_ids(tokenizer: Tokenizer) -> None:
    with pytest.raises(InvalidInputError, match="`token_id` must be in"):
        tokenizer.token_text(VOCAB_SIZE)
    with pytest.raises(InvalidInputError, match="`token` must be one of"):
        tokenizer.special_id("<|nope|>")


def test_config_validation_names_the_argument() -> None:
    with pytest.raises(InvalidInputError, match="`d_model` must be a multiple"):
        ModelConfig(d_model=30, n_heads=4)
    with pytest.raises(InvalidInputError, match=r"`rope_scaling` must be >= 1\.0"):
        ModelConfig(rope_scaling=0.5)
    with pytest.raises(InvalidInputError, match="`seq_len` must be <="):
        TrainConfig(seq_len=4096)


def test_learning_rate_warms_up_holds_then_decays_to_min() -> None:
    cfg = TrainConfig(max_steps=100, warmup_steps=10, decay_steps=20, lr=1e-3, min_lr=1e-4)
    assert cfg.learning_rate(0) == pytest.approx(1e-4)
    assert cfg.learning_rate(9) == cfg.learning_rate(79) == pytest.approx(1e-3)
    assert cfg.learning_rate(90) == pytest.approx(5.5e-4)
    assert cfg.learning_rate(100) == pytest.approx(1e-4)
    early = TrainConfig(max_steps=100, warmup_steps=10, decay_steps=20, decay_start=30)
    assert early.total_steps == 50
    assert early.learning_rate(50) == pytest.approx(early.min_lr)
    with pytest.raises(InvalidInputError, match="`decay_start` must be in"):
        TrainConfig(max_steps=100, warmup_steps=10, decay_steps=20, decay_start=5)


def test_rope_scaling_interpolates_positions_linearly() -> None:
    positions = torch.arange(8)[None]
    cos2, sin2 = rope_angles(positions * 4, TINY.with_rope_scaling(4.0))
    cos1, sin1 = rope_angles(positions, TINY)
    torch.testing.assert_close(cos2, cos1)
    torch.testing.assert_close(sin2, sin1)


def test_kv_cache_and_left_padding_match_the_full_forward() -> None:
    model = Transformer(TINY).eval()
    ids = torch.randint(0, TINY.vocab_size, (1, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids)
        # prompt of 8 left-padded by 3 in a batch of one, then 4 cached steps
        cache = KVCache(TINY, 1, 3 + 12, dtype=torch.float32)
        padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids[:, :8]], dim=1)
        positions = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.arange(8)[None]], dim=1)
        valid = torch.cat([torch.zeros(1, 3, dtype=torch.bool), torch.ones(1, 12, dtype=torch.bool)], dim=1)
        step_logits = [model(padded, positions=positions, cache=cache, key_valid=valid[:, :11], last_only=True)]
        for t in range(8, 11):
            step_logits.append(
                model(
                    ids[:, t : t + 1],
                    positions=torch.tensor([[t]]),
                    cache=cache,
                    key_valid=valid[:, : cache.length + 1],
                    last_only=True,
                )
            )
    cached = torch.cat(step_logits, dim=1)
    torch.testing.assert_close(cached, full[:, 7:11], atol=CACHE_ATOL, rtol=0)


def test_committed_weights_fit_the_budget_and_describe_themselves() -> None:
    weights = WEIGHTS_DIR / "model.safetensors"
    assert weights.stat().st_size <= 25 * 1024 * 1024
    config = json.loads((WEIGHTS_DIR / "config.json").read_text(encoding="utf-8"))
    assert config["architecture"] == "llama"
    assert config["vocab_size"] == VOCAB_SIZE
    assert (WEIGHTS_DIR / "MODEL_CARD.md").is_file()
    safetensors = pytest.importorskip("safetensors.torch")
    state = safetensors.load_file(str(weights))
    assert {t.dtype for t in state.values()} == {torch.float16}
    model = Transformer(ModelConfig.from_dict(config))
    model.load_state_dict({k: v.float() for k, v in state.items()})
    assert model.num_parameters() == sum(t.numel() for t in state.values())


def test_corpus_split_is_stable_and_sources_are_named() -> None:
    assert is_validation("code:json/__init__.py") == is_validation("code:json/__init__.py")
    assert sum(is_validation(f"doc:{i}") for i in range(5000)) == pytest.approx(100, abs=40)
    assert all(source and licence for source, licence in SOURCES)
