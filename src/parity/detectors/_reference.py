"""Reference scoring: the served completion's log-likelihood under a reference deployment of the same model.

For a self-hosted model, the strongest per-response check is to ask a trusted implementation (a reference
server, or a local model) how likely it finds the completion that production served: teacher forcing, one
forward pass, no sampling. A corrupted sampler or a wrong routing pool produces completions the reference
finds unlikely. "Unlikely" is judged against the reference's own samples (a completion of the same model is
never certain): :meth:`ReferenceScoreDetector.fit` calibrates on them.

Order of operations:

1. A :class:`ReferenceScorer` (one method, ``score(prompt, completion) -> list[float]``) returns the reference's
   logprob of each completion token given the prompt. :class:`EndpointScorer` does it over any
   OpenAI-compatible ``/v1/completions`` that echoes prompt logprobs (``echo=true, logprobs=1,
   max_tokens=0``); :class:`MockScorer` is the test double.
2. A response's statistic is its mean token logprob (length-normalised, so long and short answers compare).
3. :meth:`~ReferenceScoreDetector.fit` scores the reference's own samples; a response's p-value is the share of
   them at or below its statistic, ``(k + 1) / (n + 1)`` (never 0). Flagged when the p-value is at most
   ``alpha``. Score: ``1 - p``.

>>> scorer = MockScorer(lambda prompt, completion: [-5.0 if c == "#" else -0.5 for c in completion])
>>> det = ReferenceScoreDetector(scorer, alpha=0.05).fit([("p", "abc" * k) for k in range(1, 40)])
>>> det.score(ResponseContext("abcabc", prompt="p")).flagged
False
>>> obs = det.score(ResponseContext("ab##c#", prompt="p"))
>>> obs.flagged, round(obs.score, 3)
(True, 0.975)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import httpx

from parity._exceptions import EndpointError, InvalidInputError
from parity.detectors._base import Observation, ResponseContext

__all__ = ["MIN_FIT_SAMPLES", "EndpointScorer", "MockScorer", "ReferenceScoreDetector", "ReferenceScorer"]

#: Fewest reference samples :meth:`ReferenceScoreDetector.fit` accepts (and at least ``1 / alpha - 1``: with n
#: samples the smallest p-value is 1 / (n + 1), so fewer could never flag).
MIN_FIT_SAMPLES = 20


@runtime_checkable
class ReferenceScorer(Protocol):
    """One-method plug point: the reference's logprob of each completion token, given the prompt."""

    def score(self, prompt: str, completion: str) -> list[float]: ...


class MockScorer:
    """A :class:`ReferenceScorer` that calls ``handler(prompt, completion)``: tests need no server.

    >>> MockScorer(lambda p, c: [-1.0] * len(c)).score("p", "ab")
    [-1.0, -1.0]
    """

    def __init__(self, handler: Callable[[str, str], list[float]]) -> None:
        if not callable(handler):
            raise InvalidInputError("handler", "must be callable (prompt, completion) -> list[float]", handler)
        self.handler = handler

    def score(self, prompt: str, completion: str) -> list[float]:
        return [float(x) for x in self.handler(prompt, completion)]


class EndpointScorer:
    """Teacher-forced scoring through an OpenAI-compatible ``/v1/completions`` that echoes prompt logprobs.

    Sends ``prompt + completion`` with ``echo=true, logprobs=1, max_tokens=0`` and keeps the logprobs of the
    tokens that end after the end of the prompt (``text_offset``, else the tokens' cumulative lengths).
    Servers that refuse ``max_tokens=0`` are asked again with ``max_tokens=1`` and the extra token is dropped.
    ``transport`` lets tests use :class:`httpx.MockTransport`.

    >>> def handler(request: httpx.Request) -> httpx.Response:
    ...     return httpx.Response(200, json={"choices": [{"text": "Hi there", "logprobs": {
    ...         "tokens": ["Hi", " there"], "token_logprobs": [None, -0.7], "text_offset": [0, 2]}}]})
    >>> EndpointScorer("http://ref", "S", transport=httpx.MockTransport(handler)).score("Hi", " there")
    [-0.7]
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise InvalidInputError("base_url", "must be an http(s) URL", base_url)
        if not isinstance(model, str) or not model:
            raise InvalidInputError("model", "must be a non-empty model name", model)
        if not (timeout > 0):
            raise InvalidInputError("timeout", "must be > 0 seconds", timeout)
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout = timeout
        root = self.base_url if self.base_url.endswith("/v1") else self.base_url + "/v1"
        self.url = root + "/completions"
        self._client = httpx.Client(timeout=timeout, headers=dict(headers or {}), transport=transport)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> EndpointScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, text: str, max_tokens: int) -> httpx.Response:
        body = {"model": self.model, "prompt": text, "echo": True, "logprobs": 1, "max_tokens": max_tokens}
        if max_tokens:
            body["temperature"] = 0
        try:
            return self._client.post(self.url, json=body)
        except httpx.HTTPError as err:
            raise EndpointError(f"cannot reach the reference: {err}", url=self.url) from err

    def score(self, prompt: str, completion: str) -> list[float]:
        text = prompt + completion
        response = self._post(text, 0)
        if response.status_code == 400:
            response = self._post(text, 1)
        if response.status_code != 200:
            raise EndpointError(f"answered HTTP {response.status_code}", url=self.url, status_code=response.status_code)
        try:
            logprobs: dict[str, Any] = response.json()["choices"][0]["logprobs"]
            tokens: list[str] = logprobs["tokens"]
            values: list[float | None] = logprobs["token_logprobs"]
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise EndpointError(
                "no prompt logprobs in the answer (the reference must support echo=true with logprobs)", url=self.url
            ) from err
        offsets = logprobs.get("text_offset")
        if not isinstance(offsets, list) or len(offsets) != len(tokens):
            offsets, position = [], 0
            for tok in tokens:
                offsets.append(position)
                position += len(tok)
        # a token that straddles the prompt's end (re-tokenization merged "\n" + "\n") belongs to the completion
        ends = [*offsets[1:], len(text)]
        out = [
            float(v)
            for off, end, v in zip(offsets, ends, values, strict=False)
            if end > len(prompt) and off < len(text) and v is not None
        ]
        if completion and not out:
            raise EndpointError("the echoed tokens do not cover the completion", url=self.url)
        return out


class ReferenceScoreDetector:
    """Flags completions the reference finds unlikely compared with its own samples (module docstring).

    ``threshold`` (a mean token logprob) may be given instead of fitting; ``alpha`` is the false-alarm rate
    the fitted detector allows on the reference's own completions. The prompt sent to the scorer is
    ``render_prompt(ctx)`` when given (a chat template: the reference must see what the served model saw),
    else ``ctx.prompt``, else the conversation's text.

    >>> det = ReferenceScoreDetector(MockScorer(lambda p, c: [-1.0] * len(c)), threshold=-2.0,
    ...     render_prompt=lambda ctx: "".join(f"<|{m['role']}|>{m['content']}" for m in ctx.messages))
    >>> det.prompt_for(ResponseContext("ok", messages=[{"role": "user", "content": "hi"}]))
    '<|user|>hi'
    """

    name = "reference_score"

    def __init__(
        self,
        scorer: ReferenceScorer,
        *,
        alpha: float = 0.01,
        threshold: float | None = None,
        render_prompt: Callable[[ResponseContext], str] | None = None,
    ) -> None:
        if not isinstance(scorer, ReferenceScorer):
            raise InvalidInputError("scorer", "must have a score(prompt, completion) -> list[float] method", scorer)
        if not (0 < alpha < 1):
            raise InvalidInputError("alpha", "must be in (0, 1)", alpha)
        if threshold is not None and not math.isfinite(threshold):
            raise InvalidInputError("threshold", "must be a finite mean logprob", threshold)
        if render_prompt is not None and not callable(render_prompt):
            raise InvalidInputError("render_prompt", "must be callable (ResponseContext) -> str", render_prompt)
        self.scorer = scorer
        self.alpha = alpha
        self.threshold = threshold
        self.render_prompt = render_prompt
        self._reset()

    def prompt_for(self, ctx: ResponseContext) -> str:
        """The prompt the reference scores ``ctx.response`` after."""
        if self.render_prompt is not None:
            return self.render_prompt(ctx)
        return ctx.prompt or ctx.conversation_text()

    def _reset(self) -> None:
        self._reference: list[float] = []

    @property
    def reference_statistics(self) -> list[float]:
        """The fitted reference samples' mean token logprobs, ascending."""
        return list(self._reference)

    def statistic(self, prompt: str, completion: str) -> float:
        """Mean token logprob of ``completion`` under the reference (0.0 for an empty completion)."""
        values = self.scorer.score(prompt, completion)
        return math.fsum(values) / len(values) if values else 0.0

    def fit(self, samples: Iterable[tuple[str, str] | ResponseContext]) -> ReferenceScoreDetector:
        """Calibrate on the reference's own ``(prompt, completion)`` samples; sets ``threshold`` to their
        ``alpha`` quantile. Returns ``self``."""
        self._reset()
        stats = []
        for sample in samples:
            if isinstance(sample, ResponseContext):
                prompt, completion = self.prompt_for(sample), sample.response
            else:
                prompt, completion = sample
            stats.append(self.statistic(prompt, completion))
        needed = max(MIN_FIT_SAMPLES, math.ceil(1 / self.alpha) - 1)
        if len(stats) < needed:
            raise InvalidInputError(
                "samples",
                f"must hold at least {needed} reference samples (for p <= {self.alpha})",
                len(stats),
            )
        stats.sort()
        self._reference = stats
        # p = (k + 1) / (n + 1) <= alpha  <=>  k <= floor(alpha (n + 1)) - 1  <=>  value < stats[that index]
        self.threshold = stats[math.floor(self.alpha * (len(stats) + 1)) - 1]
        return self

    def score(self, ctx: ResponseContext) -> Observation:
        if self.threshold is None:
            raise InvalidInputError("threshold", "must be given, or fitted with fit(samples), before score()")
        value = self.statistic(self.prompt_for(ctx), ctx.response)
        if self._reference:
            k = sum(1 for s in self._reference if s <= value)
            p = (k + 1) / (len(self._reference) + 1)
            return Observation(self.name, p <= self.alpha, 1.0 - p)
        return Observation(self.name, value < self.threshold, max(0.0, self.threshold - value))
