"""The lab model: a small Llama-style causal transformer.

RMSNorm before attention and MLP, rotary position embeddings on adjacent pairs of each head's channels (the
original LLaMA / GGUF ``llama`` layout, so the weights export to GGUF without permutation), a SwiGLU MLP, no
biases, input and output embeddings tied. ``rope_scaling`` linearly interpolates positions (position / factor)
as a long-context server configured for a larger window does; 1.0 is the trained configuration.

Parameter names follow Meta's LLaMA checkpoints (``tok_embeddings``, ``layers.N.attention.wq``, ...).

>>> import torch
>>> cfg = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_context=16)
>>> model = Transformer(cfg)
>>> logits = model(torch.zeros(1, 5, dtype=torch.long))
>>> tuple(logits.shape)
(1, 5, 64)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from parity._exceptions import InvalidInputError


@dataclass(frozen=True)
class ModelConfig:
    """Shape and position settings of the lab transformer (stored as ``config.json`` beside the weights)."""

    vocab_size: int = 16384
    d_model: int = 256
    n_layers: int = 6
    n_heads: int = 8
    d_ff: int = 704
    max_context: int = 512
    rope_theta: float = 10000.0
    rope_scaling: float = 1.0
    norm_eps: float = 1e-5
    #: key/value heads (grouped-query attention: each serves n_heads / n_kv_heads query heads); 0 = n_heads.
    n_kv_heads: int = 0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_context"):
            if getattr(self, name) < 1:
                raise InvalidInputError(name, "must be >= 1", getattr(self, name))
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise InvalidInputError("d_model", "must be a multiple of 2 * n_heads", self.d_model)
        if self.n_kv_heads < 0 or self.n_heads % self.kv_heads:
            raise InvalidInputError("n_kv_heads", "must be 0 (= n_heads) or divide n_heads", self.n_kv_heads)
        if self.rope_scaling < 1.0:
            raise InvalidInputError("rope_scaling", "must be >= 1.0 (a linear interpolation factor)", self.rope_scaling)

    @property
    def head_dim(self) -> int:
        """Channels per attention head."""
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        """Key/value heads (``n_heads`` without grouped-query attention)."""
        return self.n_kv_heads or self.n_heads

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """A config from :meth:`to_dict` output (unknown keys are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def with_rope_scaling(self, factor: float) -> ModelConfig:
        """The same model with another RoPE interpolation factor."""
        return replace(self, rope_scaling=float(factor))


class RMSNorm(nn.Module):
    """Root-mean-square layer norm with a learned gain (computed in fp32)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        return normed.to(x.dtype) * self.weight


def rope_angles(positions: torch.Tensor, config: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles for integer ``positions`` [B, T]: shapes [B, 1, T, head_dim/2], fp32."""
    half = config.head_dim // 2
    inv_freq = config.rope_theta ** (-torch.arange(half, dtype=torch.float32, device=positions.device) / half)
    angles = (positions.float() / config.rope_scaling)[:, None, :, None] * inv_freq
    return torch.cos(angles), torch.sin(angles)


def rope_rotation(positions: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """The rotary angles of :func:`rope_angles` as unit complex numbers cos + i sin: [B, 1, T, head_dim/2]."""
    cos, sin = rope_angles(positions, config)
    return torch.complex(cos, sin)


def apply_rope(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs (2i, 2i+1) of ``x`` [B, H, T, D] by :func:`rope_rotation` (one complex
    multiplication per pair, in fp32).

    >>> cfg = ModelConfig(vocab_size=8, d_model=8, n_layers=1, n_heads=2, d_ff=8)
    >>> x = torch.tensor([[[[1.0, 0.0, 1.0, 0.0]]]])
    >>> cos, sin = rope_angles(torch.tensor([[1]]), cfg)
    >>> torch.allclose(apply_rope(x, rope_rotation(torch.tensor([[1]]), cfg))[..., ::2], cos)
    True
    """
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * rotation).flatten(-2).to(x.dtype)


class KVCache:
    """Preallocated keys and values of every layer for a batch: [layers, B, H, max_len, head_dim].

    Two ways to fill it. Batch mode (``lengths`` None): every row advances together, ``length`` columns are
    filled (rows may be padded). Slot mode (``lengths`` a [B] tensor, see :meth:`slots`): each row is an
    independent sequence holding ``lengths[i]`` tokens at columns 0..lengths[i]-1, and a forward pass over the
    first ``b`` rows appends one token to each of them at its own column (continuous batching).
    """

    def __init__(self, config: ModelConfig, batch: int, max_len: int, *, dtype: torch.dtype) -> None:
        shape = (config.n_layers, batch, config.kv_heads, max_len, config.head_dim)
        self.keys = torch.zeros(shape, dtype=dtype)
        self.values = torch.zeros(shape, dtype=dtype)
        self.length = 0
        self.lengths: torch.Tensor | None = None

    @classmethod
    def slots(cls, config: ModelConfig, slots: int, max_len: int, *, dtype: torch.dtype) -> KVCache:
        """An empty cache in slot mode: ``slots`` independent sequences of up to ``max_len`` tokens.

        >>> cfg = ModelConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=4, d_ff=64, max_context=16)
        >>> cache = KVCache.slots(cfg, 2, 8, dtype=torch.float32)
        >>> cache.lengths.tolist(), tuple(cache.keys.shape)
        ([0, 0], (1, 2, 4, 8, 8))
        """
        cache = cls(config, slots, max_len, dtype=dtype)
        cache.lengths = torch.zeros(slots, dtype=torch.long)
        return cache


class Attention(nn.Module):
    """Multi-head causal self-attention with rotary embeddings (grouped-query when ``n_kv_heads < n_heads``)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d, kv = config.d_model, config.kv_heads * config.head_dim
        self.wq = nn.Linear(d, d, bias=False)
        self.wk = nn.Linear(d, kv, bias=False)
        self.wv = nn.Linear(d, kv, bias=False)
        self.wo = nn.Linear(d, d, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        rotation: torch.Tensor,
        layer: int,
        cache: KVCache | None,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        b, t, _ = x.shape
        h, kvh, hd = self.config.n_heads, self.config.kv_heads, self.config.head_dim
        gqa = kvh != h
        q = self.wq(x).view(b, t, h, hd).transpose(1, 2)
        k = self.wk(x).view(b, t, kvh, hd).transpose(1, 2)
        v = self.wv(x).view(b, t, kvh, hd).transpose(1, 2)
        q, k = apply_rope(q, rotation), apply_rope(k, rotation)
        if cache is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        else:
            start = cache.length
            cache.keys[layer, :, :, start : start + t] = k
            cache.values[layer, :, :, start : start + t] = v
            keys = cache.keys[layer, :, :, : start + t]
            values = cache.values[layer, :, :, : start + t]
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, enable_gqa=gqa)
        return self.wo(out.transpose(1, 2).reshape(b, t, h * hd))  # type: ignore[no-any-return]


class FeedForward(nn.Module):
    """SwiGLU MLP: w2(silu(w1 x) * w3 x)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.w1 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.w2 = nn.Linear(config.d_ff, config.d_model, bias=False)
        self.w3 = nn.Linear(config.d_model, config.d_ff, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))  # type: ignore[no-any-return]


class Block(nn.Module):
    """One pre-norm transformer layer."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(config.d_model, config.norm_eps)
        self.attention = Attention(config)
        self.ffn_norm = RMSNorm(config.d_model, config.norm_eps)
        self.feed_forward = FeedForward(config)

    def forward(
        self,
        x: torch.Tensor,
        rotation: torch.Tensor,
        layer: int,
        cache: KVCache | None,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), rotation, layer, cache, mask)
        out: torch.Tensor = x + self.feed_forward(self.ffn_norm(x))
        return out


class Transformer(nn.Module):
    """The lab's causal language model; ``forward`` returns logits in the model's dtype."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        # the weight is made here, not by nn.Embedding: its own random init (normal_) imports torch._dynamo, about 2 s
        # of CPU at every lab start, even on the meta device that from_state builds on
        weight = torch.empty(config.vocab_size, config.d_model)
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.d_model, _weight=weight)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        if self.tok_embeddings.weight.device.type != "meta":
            self._init_weights()

    @classmethod
    def from_state(cls, config: ModelConfig, state: dict[str, torch.Tensor]) -> Transformer:
        """A model that uses the tensors of ``state`` as its parameters (no copy, no random init).

        Models built from one state share its memory: several RoPE configurations of one checkpoint cost one copy.

        >>> cfg = ModelConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=4, n_kv_heads=2, d_ff=64)
        >>> state = Transformer(cfg).state_dict()
        >>> twin = Transformer.from_state(cfg.with_rope_scaling(4.0), state)
        >>> twin.tok_embeddings.weight.data_ptr() == state["tok_embeddings.weight"].data_ptr()
        True
        """
        with torch.device("meta"):
            model = cls(config)
        model.load_state_dict(state, assign=True)
        return model

    def _init_weights(self) -> None:
        gen = torch.Generator().manual_seed(0)
        std = 0.02
        for name, param in self.named_parameters():
            if param.ndim == 2:
                scale = std / math.sqrt(2 * self.config.n_layers) if name.endswith(("wo.weight", "w2.weight")) else std
                with torch.no_grad():
                    param.copy_(torch.randn(param.shape, generator=gen) * scale)

    def num_parameters(self) -> int:
        """Number of parameters (the tied embedding counted once)."""
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        ids: torch.Tensor,
        *,
        positions: torch.Tensor | None = None,
        cache: KVCache | None = None,
        key_valid: torch.Tensor | None = None,
        last_only: bool = False,
        select: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits [B, T, V] for token ids [B, T] (or [B, 1, V] of the last position with ``last_only``, or of
        column ``select[i]`` of row i with ``select`` [B]).

        Without ``cache`` this is plain causal attention over positions 0..T-1 (training). With a cache, ``ids``
        continue the cached sequence at ``cache.length``; ``positions`` [B, T] gives each token's position (rows
        may be padded, so positions differ by row) and ``key_valid`` [B, cache.length + T] marks real
        (non-padding) tokens. The cache length advances by T. With a cache in slot mode (:meth:`KVCache.slots`),
        ``ids`` [b, 1] holds the next token of each of the first b sequences, at position ``cache.lengths[i]``;
        each of those lengths advances by 1.
        """
        b, t = ids.shape
        if cache is not None and cache.lengths is not None:
            raise InvalidInputError("cache", "is in slot mode: use packed_step", "slots")
        if positions is None:
            start = 0 if cache is None else cache.length
            positions = torch.arange(start, start + t).expand(b, t)
        rotation = rope_rotation(positions, self.config)
        mask = None
        if cache is not None:
            total = cache.length + t
            if key_valid is None:
                key_valid = torch.ones(b, total, dtype=torch.bool)
            query_index = torch.arange(cache.length, total)[:, None]
            key_index = torch.arange(total)[None, :]
            causal = key_index <= query_index  # [T, S]
            # A padding query sees at least itself, so that no softmax row is empty (its output is unused).
            mask = (causal[None] & key_valid[:, None, :]) | (key_index == query_index)[None]
            mask = mask[:, None]  # [B, 1, T, S]
        x = self.tok_embeddings(ids)
        for index, layer in enumerate(self.layers):
            x = layer(x, rotation, index, cache, mask)
        if cache is not None:
            cache.length += t
        if select is not None:
            x = x[torch.arange(b), select][:, None]
        elif last_only:
            x = x[:, -1:]
        x = self.norm(x)
        return F.linear(x, self.tok_embeddings.weight)

    def packed_step(self, feed: torch.Tensor, cache: KVCache, joins: list[tuple[int, list[int], int]]) -> torch.Tensor:
        """One step of continuous batching over a slot-mode cache (:meth:`KVCache.slots`), in one pass.

        ``feed`` [n] holds the next token of each of the first n sequences (at position ``cache.lengths[i]``);
        each ``(slot, ids, start)`` of ``joins`` prefills a sequence joining in ``slot`` whose first ``start``
        positions are already cached (a shared prefix), with ``ids`` at positions start, start+1, ... Every token
        goes through the linear layers together (the weights are read once per step); attention runs per decoding
        batch and per joining sequence. Returns the next-token logits [n + len(joins), V]: the fed sequences',
        then each joining one's (of its last token). The lengths advance.

        >>> cfg = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64, max_context=16)
        >>> model = Transformer(cfg).eval()
        >>> cache = KVCache.slots(cfg, 2, 8, dtype=torch.float32)
        >>> with torch.no_grad():
        ...     first = model.packed_step(torch.zeros(0, dtype=torch.long), cache, [(0, [1, 2, 3], 0)])
        ...     both = model.packed_step(torch.tensor([5]), cache, [(1, [7], 0)])
        ...     full = model(torch.tensor([[1, 2, 3, 5]]))[0, -1]
        >>> cache.lengths.tolist(), bool(torch.allclose(both[0], full, atol=1e-5))
        ([4, 1], True)
        """
        lengths = cache.lengths
        assert lengths is not None
        cfg = self.config
        h, kvh, hd = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        gqa = kvh != h
        n = int(feed.shape[0])
        pieces = [feed] + [torch.tensor(ids, dtype=torch.long) for _, ids, _ in joins]
        tokens = torch.cat(pieces)
        positions = torch.cat([lengths[:n]] + [torch.arange(start, start + len(ids)) for _, ids, start in joins])
        total = int(tokens.shape[0])
        needed = max([int(lengths[:n].max()) + 1 if n else 0] + [start + len(ids) for _, ids, start in joins])
        if needed > cache.keys.shape[3]:
            raise InvalidInputError("cache", f"is full ({cache.keys.shape[3]} tokens per slot)", needed)
        if any(not n <= slot < cache.keys.shape[1] for slot, _, _ in joins):
            raise InvalidInputError("joins", f"must use free slots in [{n}, {cache.keys.shape[1]})", joins)
        rotation = rope_rotation(positions[None], cfg)  # [1, 1, total, hd/2]
        span = int(lengths[:n].max()) + 1 if n else 0
        decode_mask = (torch.arange(span)[None, :] <= lengths[:n, None])[:, None, None, :] if n else None
        rows = torch.arange(n)
        offsets = []
        offset = n
        for _, ids, _ in joins:
            offsets.append(offset)
            offset += len(ids)
        x = self.tok_embeddings(tokens)  # [total, d]
        for index, block in enumerate(self.layers):
            layer = cast(Block, block)
            attn = layer.attention
            normed = layer.attention_norm(x)
            q = apply_rope(attn.wq(normed).view(1, total, h, hd).transpose(1, 2), rotation)  # [1, h, total, hd]
            k = apply_rope(attn.wk(normed).view(1, total, kvh, hd).transpose(1, 2), rotation)
            v = attn.wv(normed).view(1, total, kvh, hd).transpose(1, 2)
            outs = []
            keys_all, values_all = cache.keys[index], cache.values[index]
            if n:
                keys_all[rows, :, lengths[:n]] = k[0, :, :n].transpose(0, 1)
                values_all[rows, :, lengths[:n]] = v[0, :, :n].transpose(0, 1)
                qd = q[0, :, :n].transpose(0, 1)[:, :, None]  # [n, h, 1, hd]
                out = F.scaled_dot_product_attention(
                    qd, keys_all[:n, :, :span], values_all[:n, :, :span], attn_mask=decode_mask, enable_gqa=gqa
                )
                outs.append(out[:, :, 0].reshape(n, h * hd))
            for (slot, ids, start), first in zip(joins, offsets, strict=True):
                t = len(ids)
                keys_all[slot, :, start : start + t] = k[0, :, first : first + t]
                values_all[slot, :, start : start + t] = v[0, :, first : first + t]
                causal = torch.arange(start + t)[None, :] <= torch.arange(start, start + t)[:, None]
                out = F.scaled_dot_product_attention(
                    q[:, :, first : first + t],
                    keys_all[slot : slot + 1, :, : start + t],
                    values_all[slot : slot + 1, :, : start + t],
                    attn_mask=causal,
                    enable_gqa=gqa,
                )
                outs.append(out[0].transpose(0, 1).reshape(t, h * hd))
            x = x + attn.wo(torch.cat(outs) if len(outs) > 1 else outs[0])
            x = x + layer.feed_forward(layer.ffn_norm(x))
        lengths[:n] += 1
        for slot, ids, start in joins:
            lengths[slot] = start + len(ids)
        last = torch.tensor(
            list(range(n)) + [first + len(ids) - 1 for (_, ids, _), first in zip(joins, offsets, strict=True)]
        )
        x = self.norm(x[last])
        return F.linear(x, self.tok_embeddings.weight)
