"""What every detector shares: the response in its context, the observation a detector returns, the protocol.

A detector looks at one served response together with what led to it (prompt, conversation, sampling
parameters, and the chosen-token logprobs when the server returned them) and returns one
:class:`Observation`: flagged or not, a score, and the offending span of text as evidence. Evidence stays in
memory; the monitor stores only ``(detector, flagged, score)``.

>>> ctx = ResponseContext(response="Hello", prompt="Say hello")
>>> ctx.conversation_text()
'Say hello'
>>> Observation("unexpected_script", flagged=False, score=0.0)
Observation(detector='unexpected_script', flagged=False, score=0.0, evidence=None, span=None)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from parity._exceptions import InvalidInputError
from parity.sampling import validate_params

__all__ = ["Detector", "Observation", "ResponseContext"]


@dataclass(frozen=True, slots=True)
class ResponseContext:
    """One served response and what led to it.

    ``response`` is the completion text; ``prompt`` the prompt of a ``/v1/completions`` request (or the last user
    turn); ``messages`` the chat conversation (``{"role": ..., "content": ...}``). ``tokens``,
    ``token_logprobs`` and ``top_logprobs`` are the served logprobs in the OpenAI shape (per position: chosen
    token text, its logprob, and a mapping token text -> logprob of the returned alternatives). ``temperature``,
    ``top_p`` and ``top_k`` are the request's sampling parameters (``None`` when not given).
    ``finish_reason`` (``"stop"``, ``"length"``...) tells detectors whether the text was cut by ``max_tokens``.

    >>> ResponseContext(response="x", tokens=["x"], token_logprobs=[-0.1, -0.2])
    Traceback (most recent call last):
    ...
    parity._exceptions.InvalidInputError: `token_logprobs` must have one entry per token (1 tokens), got 2
    """

    response: str
    prompt: str = ""
    messages: Sequence[Mapping[str, str]] = ()
    tokens: Sequence[str] | None = None
    token_logprobs: Sequence[float] | None = None
    top_logprobs: Sequence[Mapping[str, float]] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    finish_reason: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.response, str):
            raise InvalidInputError("response", "must be a str", type(self.response).__name__)
        if not isinstance(self.prompt, str):
            raise InvalidInputError("prompt", "must be a str", type(self.prompt).__name__)
        n = None if self.tokens is None else len(self.tokens)
        if n is not None:
            for name, seq in (("token_logprobs", self.token_logprobs), ("top_logprobs", self.top_logprobs)):
                if seq is not None and len(seq) != n:
                    raise InvalidInputError(name, f"must have one entry per token ({n} tokens)", len(seq))
        given = {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k}
        validate_params(**{key: value for key, value in given.items() if value is not None})

    def conversation_text(self) -> str:
        """The prompt and every message's content, joined by newlines (what leads the reader to expect things).

        >>> ResponseContext("r", prompt="p", messages=[{"role": "user", "content": "u"}]).conversation_text()
        'p\\nu'
        """
        if not self.messages:
            return self.prompt
        parts = [self.prompt] if self.prompt else []
        parts.extend(str(m.get("content", "")) for m in self.messages)
        return "\n".join(parts)


@dataclass(frozen=True, slots=True)
class Observation:
    """One detector's verdict on one response.

    ``score`` grows with suspicion (each detector documents its scale); ``evidence`` is the offending span of
    text and ``span`` its ``(start, end)`` character offsets in the response, when there is one. Evidence is kept
    in memory only: the monitor stores ``(detector, flagged, score)``.
    """

    detector: str
    flagged: bool
    score: float
    evidence: str | None = None
    span: tuple[int, int] | None = None


@runtime_checkable
class Detector(Protocol):
    """A per-response detector: a name and one method, ``score(ctx) -> Observation``."""

    name: str

    def score(self, ctx: ResponseContext) -> Observation: ...
