"""A small in-process OpenAI-compatible test double on ``httpx.MockTransport``.

A bigram "model" over a 24-word vocabulary: the next-token logits depend on the previous token through a
seeded table, so sampling, echo scoring and top logprobs are all exact and cheap. Knobs make a candidate
differ (``skew``: logits moved along a fixed direction; ``corrupt``: a share of steps emit a Thai token) or
misbehave (no logprobs, no echo, another tokenizer, rate limits, server errors), or behave as llama-cpp-python's
server does (``zero_means_unlimited``: ``max_tokens=0`` generates to the context limit; ``echo_shift``: each prompt
token's logprob is read from the position after it; ``default_top_p``: the top-p applied when a request names
none), or sample with a faulty sampler (``approx_cutoff``: an approximate top-k that never sees the columns at
or past the cut-off; ``drop_boundary``: a top-p that drops the boundary token, emptying a row - then drawn
uniformly - when that token is the argmax). Sampling follows :mod:`parity.sampling` (temperature, top-k, top-p,
min-p), so the reference's kept sets are exact.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from parity.sampling import kept_mask

WORDS = [
    " the", " cat", " sat", " on", " mat", " and", " dog", " ran", " to", " a", " big", " red",
    " house", " in", " sun", " it", " was", " very", " warm", ".", " then", " we", " ate", " pie",
]  # fmt: skip
THAI = " สวัสดี"
VOCAB = [*WORDS, THAI]
_TOKEN = re.compile(r"\s*[^\s.]+|\s*\.")


@dataclass
class FakeModel:
    """Knobs of one fake endpoint."""

    name: str = "toy"
    skew: float = 0.0
    corrupt: float = 0.0
    logprobs: bool = True
    echo: bool = True
    tokenizer: str = "words"
    rate_limit_first: int = 0
    fail_status: int | None = None
    zero_means_unlimited: bool = False
    echo_shift: bool = False
    default_top_p: float = 1.0
    approx_cutoff: int | None = None
    drop_boundary: bool = False
    context_limit: int = 64
    calls: int = field(default=0)
    bodies: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        table = np.random.default_rng(7).normal(0.0, 1.5, size=(len(VOCAB) + 1, len(VOCAB)))
        table[:, -1] = -9.0  # the Thai token is (almost) never appropriate
        direction = np.random.default_rng(11).normal(size=len(VOCAB))
        self._logits = table + self.skew * direction[None, :]

    def tokenize(self, text: str) -> list[str]:
        if self.tokenizer == "chars":
            return list(text)
        return _TOKEN.findall(text)

    def logprobs_after(self, previous: str | None) -> np.ndarray:
        row = VOCAB.index(previous) if previous in VOCAB else len(VOCAB)
        logits = self._logits[row]
        return logits - np.logaddexp.reduce(logits)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.rate_limit_first and self.calls <= self.rate_limit_first:
            return httpx.Response(429, json={"error": {"message": "slow down"}}, headers={"retry-after": "0"})
        if self.fail_status is not None:
            return httpx.Response(self.fail_status, json={"error": {"message": "broken"}})
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": [{"id": self.name, "object": "model"}]})
        if request.url.path.endswith("/completions"):
            body = json.loads(request.content)
            self.bodies.append(body)
            if body.get("model") != self.name:
                return httpx.Response(404, json={"error": {"message": f"unknown model {body.get('model')}"}})
            if body.get("echo") and not self.echo:
                return httpx.Response(400, json={"error": {"message": "`echo` is not supported"}})
            return httpx.Response(200, json=self._complete(body))
        return httpx.Response(404, json={"error": {"message": "not found"}})

    def _draw(
        self, lp: np.ndarray, body: dict[str, Any], temperature: float, top_p: float, rng: np.random.Generator
    ) -> int:
        top_k, min_p = int(body.get("top_k", 0)), float(body.get("min_p", 0.0))
        seen = lp.copy()
        if self.approx_cutoff is not None and (top_k > 0 or top_p < 1.0 or min_p > 0.0):
            seen[self.approx_cutoff :] = -np.inf
        keep = kept_mask(seen, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
        if self.drop_boundary and top_p < 1.0:
            keep[np.flatnonzero(keep)[np.argmin(seen[keep])]] = False
        if not keep.any():
            return int(rng.integers(len(VOCAB)))  # the emptied row: every token equally likely
        p = np.where(keep, np.exp((seen - seen[keep].max()) / temperature), 0.0)
        return int(rng.choice(len(VOCAB), p=p / p.sum()))

    def _top(self, lp: np.ndarray, k: int) -> dict[str, float]:
        order = np.argsort(-lp)[:k]
        return {VOCAB[i]: float(lp[i]) for i in order}

    def _complete(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = str(body["prompt"])
        k = body.get("logprobs")
        want = self.logprobs and k is not None
        tokens: list[str] = []
        token_lps: list[float | None] = []
        tops: list[dict[str, float] | None] = []
        if body.get("echo"):
            words = self.tokenize(prompt)
            for i, tok in enumerate(words):
                # echo_shift: the distribution after this token, not before it (llama-cpp-python without BOS)
                lp = self.logprobs_after(tok if self.echo_shift else (words[i - 1] if i else None))
                tokens.append(tok)
                token_lps.append(None if i == 0 else (float(lp[VOCAB.index(tok)]) if tok in VOCAB else -12.0))
                tops.append(None if i == 0 else self._top(lp, int(k or 1)))
        rng = np.random.default_rng(body.get("seed"))
        text = ""
        prev = self.tokenize(prompt)[-1] if prompt else None
        temperature = float(body.get("temperature", 1.0))
        top_p = float(body.get("top_p", self.default_top_p))
        max_tokens = int(body.get("max_tokens", 16))
        if max_tokens == 0 and self.zero_means_unlimited:
            max_tokens = self.context_limit - len(self.tokenize(prompt))
        for _ in range(max_tokens):
            lp = self.logprobs_after(prev)
            if temperature == 0.0:
                idx = int(np.argmax(lp if self.approx_cutoff is None else lp[: self.approx_cutoff]))
            elif self.corrupt and rng.random() < self.corrupt:
                idx = len(VOCAB) - 1
            else:
                idx = self._draw(lp, body, temperature, top_p, rng)
            tokens.append(VOCAB[idx])
            token_lps.append(float(lp[idx]))
            tops.append(self._top(lp, int(k or 1)))
            text += VOCAB[idx]
            prev = VOCAB[idx]
            if any(stop in text for stop in body.get("stop") or []):
                break
        offsets, pos = [], 0
        for tok in tokens:
            offsets.append(pos)
            pos += len(tok)
        logprobs = (
            {"tokens": tokens, "token_logprobs": token_lps, "top_logprobs": tops, "text_offset": offsets}
            if want
            else None
        )
        full = (prompt if body.get("echo") else "") + text
        return {
            "object": "text_completion",
            "choices": [{"text": full, "logprobs": logprobs, "finish_reason": "length"}],
        }


def transport(model: FakeModel) -> httpx.MockTransport:
    """A transport answering as ``model``."""
    return httpx.MockTransport(model.handler)


def kl_skew(skew: float) -> float:
    """Mean per-step KL(reference || skewed) of the fake bigram model (for sanity checks)."""
    ref, cand = FakeModel(), FakeModel(skew=skew)
    total = 0.0
    for prev in [None, *VOCAB]:
        a, b = ref.logprobs_after(prev), cand.logprobs_after(prev)
        total += float(np.sum(np.exp(a) * (a - b)))
    return total / (len(VOCAB) + 1)
