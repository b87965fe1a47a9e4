"""OpenAI response bodies of the lab server: completions, chat completions and their streamed chunks.

Pure data shaping (no HTTP, no engine, no fleet): a :class:`parity.lab._openai.ParsedRequest`, the engine's
results or events and a few facts about the answer (its id, creation time, fingerprint, prompt) in, the JSON
body OpenAI's clients read out. Request parsing and error bodies live in :mod:`parity.lab._openai`.

>>> usage(5, 3)
{'prompt_tokens': 5, 'completion_tokens': 3, 'total_tokens': 8}
>>> chat_logprob("Hi", -0.5, [("Hi", -0.5)])["top_logprobs"][0]["bytes"]
[72, 105]
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from parity.lab._openai import ParsedRequest

if TYPE_CHECKING:
    from parity.lab.engine import GenerationResult, TokenEvent

__all__ = ["Answer", "chat_body", "chat_logprob", "completion_body", "stream_choice", "stream_chunk", "usage"]

#: teacher-forced prompt scores: per prompt token after the first, its logprob and top alternatives.
PromptScores = list[tuple[float, list[tuple[str, float]]]]


@dataclass(frozen=True)
class Answer:
    """What every body of one answer shares: its id, creation time, system fingerprint and prompt."""

    id: str
    created: int
    fingerprint: str
    prompt_ids: list[int]
    prompt_text: str


def usage(prompt: int, completion: int) -> dict[str, int]:
    """OpenAI's ``usage`` object."""
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def chat_logprob(token: str, logprob: float, top: list[tuple[str, float]]) -> dict[str, Any]:
    """One entry of a chat answer's ``logprobs.content``."""
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode("utf-8")),
        "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))} for t, lp in top],
    }


def chat_body(req: ParsedRequest, answer: Answer, results: Sequence[GenerationResult]) -> dict[str, Any]:
    """A ``chat.completion`` body with one choice per result."""
    choices = []
    completion_tokens = 0
    for i, res in enumerate(results):
        completion_tokens += res.completion_tokens
        logprobs = None
        if req.logprobs:
            logprobs = {
                "content": [
                    chat_logprob(t, lp, top)
                    for t, lp, top in zip(res.tokens, res.token_logprobs, res.top_logprobs, strict=True)
                ]
            }
        choices.append(
            {
                "index": i,
                "message": {"role": "assistant", "content": res.text},
                "logprobs": logprobs,
                "finish_reason": res.finish_reason,
            }
        )
    return {
        "id": answer.id,
        "object": "chat.completion",
        "created": answer.created,
        "model": req.model,
        "system_fingerprint": answer.fingerprint,
        "choices": choices,
        "usage": usage(len(answer.prompt_ids), completion_tokens),
    }


def completion_body(
    req: ParsedRequest,
    answer: Answer,
    results: Sequence[GenerationResult | None],
    *,
    token_text: Callable[[int], str],
    prompt_scores: PromptScores | None = None,
) -> dict[str, Any]:
    """A ``text_completion`` body; a None result is a prompt scored without generating (``max_tokens=0``).
    ``token_text(id)`` names the prompt's tokens when ``echo`` asks for their logprobs."""
    choices = []
    completion_tokens = 0
    for i, res in enumerate(results):
        text = res.text if res is not None else ""
        if res is not None:
            completion_tokens += res.completion_tokens
        if req.echo:
            text = answer.prompt_text + text
        logprobs = None
        if req.logprobs:
            tokens: list[str] = []
            token_lps: list[float | None] = []
            tops: list[dict[str, float] | None] = []
            if req.echo:
                tokens = [token_text(t) for t in answer.prompt_ids]
                token_lps = [None, *(lp for lp, _ in (prompt_scores or []))]
                tops = [None, *(dict(top) if req.top_logprobs else None for _, top in (prompt_scores or []))]
            if res is not None:
                tokens += res.tokens
                token_lps += res.token_logprobs
                tops += [dict(top) if req.top_logprobs else None for top in res.top_logprobs]
            offsets, pos = [], 0
            for tok in tokens:
                offsets.append(pos)
                pos += len(tok)
            if req.token_ids:  # vLLM's return_tokens_as_token_ids: the ids (alternatives stay text)
                ids = [*(answer.prompt_ids if req.echo else []), *(res.token_ids if res is not None else [])]
                tokens = [f"token_id:{t}" for t in ids]
            logprobs = {"tokens": tokens, "token_logprobs": token_lps, "top_logprobs": tops, "text_offset": offsets}
        finish = res.finish_reason if res is not None else "length"
        choices.append({"index": i, "text": text, "logprobs": logprobs, "finish_reason": finish})
    return {
        "id": answer.id,
        "object": "text_completion",
        "created": answer.created,
        "model": req.model,
        "system_fingerprint": answer.fingerprint,
        "choices": choices,
        "usage": usage(len(answer.prompt_ids), completion_tokens),
    }


def stream_chunk(
    req: ParsedRequest, answer: Answer, choice: dict[str, Any], usage: dict[str, int] | None = None
) -> str:
    """One server-sent event of a streamed answer (an empty ``choice`` sends no choices: the usage chunk)."""
    body: dict[str, Any] = {
        "id": answer.id,
        "object": "chat.completion.chunk" if req.chat else "text_completion",
        "created": answer.created,
        "model": req.model,
        "system_fingerprint": answer.fingerprint,
        "choices": [choice] if choice else [],
    }
    if usage is not None:
        body["usage"] = usage
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def stream_choice(req: ParsedRequest, event: TokenEvent, token_text: Callable[[int], str]) -> dict[str, Any]:
    """The choice of the chunk that streams one token ``event``."""
    if req.chat:
        logprobs = None
        if req.logprobs:
            logprobs = {"content": [chat_logprob(token_text(event.token_id), event.logprob, event.top_logprobs)]}
        return {"index": 0, "delta": {"content": event.text}, "logprobs": logprobs, "finish_reason": None}
    lp = None
    if req.logprobs:
        top = dict(event.top_logprobs) if req.top_logprobs else None
        lp = {
            "tokens": [token_text(event.token_id)],
            "token_logprobs": [event.logprob],
            "top_logprobs": [top],
            "text_offset": [0],
        }
    return {"index": 0, "text": event.text, "logprobs": lp, "finish_reason": None}
