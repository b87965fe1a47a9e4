"""OpenAI request parsing and response shaping for the lab server (the wire format only, no engine).

Parsing turns a JSON body into a :class:`ParsedRequest` or raises :class:`APIError` (a 400 naming the parameter
in OpenAI's ``{"error": {"message", "type", "param", "code"}}`` shape).

>>> p = parse_request({"model": "S", "prompt": "Hi", "max_tokens": 3, "stop": "\\n"}, chat=False)
>>> p.model, p.prompt, p.max_tokens, p.stop
('S', 'Hi', 3, ('\\n',))
>>> try:
...     parse_request({"model": "S", "prompt": "Hi", "top_p": 1.5}, chat=False)
... except APIError as err:
...     print(err.status, err.param, err.message)
400 top_p `top_p` must be in (0, 1], got 1.5
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["APIError", "ParsedRequest", "error_body", "parse_request"]

#: the most completions one request may ask for (``n``), and the most stop strings (as OpenAI).
MAX_N = 16
MAX_STOP = 4


class APIError(Exception):
    """An error answered in OpenAI's shape with HTTP ``status``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


def error_body(
    message: str, *, type: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error body.

    >>> error_body("no", param="model")["error"]["param"]
    'model'
    """
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _bad(param: str, requirement: str, value: Any = ...) -> APIError:
    message = f"`{param}` {requirement}"
    if value is not ...:
        message += f", got {value!r}"
    return APIError(400, message, param=param, code="invalid_value")


@dataclass
class ParsedRequest:
    """A validated completions or chat request."""

    model: str
    chat: bool
    prompt: str | None = None
    prompt_ids: list[int] | None = None
    messages: list[dict[str, str]] | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    logprobs: bool = False
    top_logprobs: int = 0
    echo: bool = False
    user: str | None = None


def _number(body: dict[str, Any], key: str, lo: float, hi: float, *, lo_open: bool = False) -> float | None:
    if body.get(key) is None:
        return None
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(key, "must be a number", value)
    if value < lo or value > hi or (lo_open and value == lo):
        left = "(" if lo_open else "["
        raise _bad(key, f"must be in {left}{lo:g}, {hi:g}]", value)
    return float(value)


def _integer(body: dict[str, Any], key: str, lo: int, hi: int) -> int | None:
    if body.get(key) is None:
        return None
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(key, "must be an integer", value)
    if not lo <= value <= hi:
        raise _bad(key, f"must be an integer in [{lo}, {hi}]", value)
    return int(value)


def _boolean(body: dict[str, Any], key: str) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _bad(key, "must be true or false", value)
    return value


def parse_request(body: Any, *, chat: bool) -> ParsedRequest:
    """Validate a ``/v1/chat/completions`` (``chat``) or ``/v1/completions`` body."""
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model", "must be a non-empty string naming a served model", model)
    p = ParsedRequest(model=model, chat=chat)
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _bad("messages", "must be a non-empty list of {role, content} objects")
        parsed = []
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "developer"):
                raise _bad(f"messages[{i}].role", "must be one of system, user, assistant, developer")
            content = m.get("content", "")
            if isinstance(content, list):  # the content-parts form: text parts only
                texts = [part.get("text") for part in content if isinstance(part, dict)]
                if any(not isinstance(t, str) for t in texts) or len(texts) != len(content):
                    raise _bad(f"messages[{i}].content", "must be a string or a list of text parts")
                content = "".join(t for t in texts if isinstance(t, str))
            if content is None:
                content = ""
            if not isinstance(content, str):
                raise _bad(f"messages[{i}].content", "must be a string")
            role = "system" if m["role"] == "developer" else str(m["role"])
            parsed.append({"role": role, "content": content})
        p.messages = parsed
        p.logprobs = _boolean(body, "logprobs")
        p.top_logprobs = _integer(body, "top_logprobs", 0, 20) or 0
        if p.top_logprobs and not p.logprobs:
            raise _bad("top_logprobs", "needs `logprobs` set to true")
        tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        p.max_tokens = _integer({"max_tokens": tokens}, "max_tokens", 1, 1 << 20)
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise _bad("stream_options", "must be an object", options)
        p.include_usage = bool((options or {}).get("include_usage", False))
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
            prompt = prompt[0]
        if isinstance(prompt, str):
            p.prompt = prompt
        elif (
            isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)
        ):
            p.prompt_ids = [int(t) for t in prompt]
        else:
            raise _bad("prompt", "must be a string, a list of one string, or a non-empty list of token ids")
        lp = _integer(body, "logprobs", 0, 20)
        p.logprobs = lp is not None
        p.top_logprobs = lp or 0
        p.echo = _boolean(body, "echo")
        tokens = _integer(body, "max_tokens", 0, 1 << 20)
        p.max_tokens = 16 if tokens is None else tokens
        if p.max_tokens == 0 and not p.echo:
            raise _bad("max_tokens", "may be 0 only with `echo` (to score the prompt)", 0)
        options = body.get("stream_options")
        p.include_usage = bool(options.get("include_usage", False)) if isinstance(options, dict) else False
    p.temperature = _number(body, "temperature", 0.0, 2.0)
    top_p = _number(body, "top_p", 0.0, 1.0, lo_open=True)
    p.top_p = 1.0 if top_p is None else top_p
    top_k = _integer(body, "top_k", -1, 1 << 20)
    p.top_k = 0 if top_k is None or top_k < 0 else top_k
    min_p = _number(body, "min_p", 0.0, 1.0)
    p.min_p = 0.0 if min_p is None else min_p
    p.seed = _integer(body, "seed", -(1 << 63), (1 << 63) - 1)
    if p.seed is not None and p.seed < 0:
        p.seed = p.seed & ((1 << 64) - 1)
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None:
        if not isinstance(stop, list) or len(stop) > MAX_STOP or any(not isinstance(s, str) or not s for s in stop):
            raise _bad("stop", f"must be a non-empty string or a list of at most {MAX_STOP} non-empty strings", stop)
        p.stop = tuple(stop)
    p.n = _integer(body, "n", 1, MAX_N) or 1
    p.stream = _boolean(body, "stream")
    if p.stream and p.n > 1:
        raise _bad("n", "must be 1 when `stream` is true", p.n)
    if p.stream and p.max_tokens == 0:
        raise _bad("max_tokens", "must be >= 1 when `stream` is true", 0)
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _bad("user", "must be a string", user)
    p.user = user or None
    for key in ("best_of", "logit_bias", "tools", "functions"):
        if body.get(key) not in (None, 1, {}, []):
            raise APIError(400, f"`{key}` is not supported by the lab server", param=key, code="unsupported_parameter")
    return p
