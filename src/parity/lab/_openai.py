"""OpenAI request parsing and response shaping for the lab server (the wire format only, no engine).

Parsing turns a JSON body into a :class:`ParsedRequest` or raises :class:`~parity._exceptions.APIError` (a 400
naming the parameter in OpenAI's ``{"error": {"message", "type", "param", "code"}}`` shape). The sampling
parameters become one validated :class:`parity.sampling.SamplingParams` (its rules, top-p in ``(0, 1]`` among
them, are checked there and nowhere else), which the server hands to the engine as it is.

>>> p = parse_request({"model": "S", "prompt": "Hi", "max_tokens": 3, "stop": "\\n", "top_p": 0.9}, chat=False)
>>> p.model, p.prompt, p.max_tokens, p.stop, p.sampling.top_p
('S', 'Hi', 3, ('\\n',), 0.9)
>>> try:
...     parse_request({"model": "S", "prompt": "Hi", "top_p": 1.5}, chat=False)
... except APIError as err:
...     print(err.status, err.param, err.message)
400 top_p `top_p` must be a number in (0, 1] (1 disables), got 1.5
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from parity._exceptions import APIError, InvalidInputError
from parity.sampling import SamplingParams

__all__ = ["APIError", "ParsedRequest", "error_body", "parse_request"]

#: the most completions one request may ask for (``n``), and the most stop strings (as OpenAI).
MAX_N = 16
MAX_STOP = 4
#: OpenAI's range for ``temperature`` (the wire format's limit; the sampler itself takes any finite value >= 0).
MAX_TEMPERATURE = 2.0


def error_body(
    message: str, *, type: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error body (the shape :meth:`APIError.body` writes).

    >>> error_body("no", param="model")["error"]["param"]
    'model'
    """
    return APIError(400, message, type=type, param=param, code=code).body()


def _bad(param: str, requirement: str, value: Any = ...) -> APIError:
    message = f"`{param}` {requirement}"
    if value is not ...:
        message += f", got {value!r}"
    return APIError(400, message, param=param, code="invalid_value")


@dataclass
class ParsedRequest:
    """A validated completions or chat request.

    ``sampling`` holds the request's sampling parameters; when the body names no temperature
    (``temperature_given`` False) its temperature is OpenAI's default 1.0 and the server may apply the served
    model's own default instead (:meth:`sampling_for`).
    """

    model: str
    chat: bool
    prompt: str | None = None
    prompt_ids: list[int] | None = None
    messages: list[dict[str, str]] | None = None
    max_tokens: int | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    temperature_given: bool = False
    seed: int | None = None
    stop: tuple[str, ...] = ()
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    logprobs: bool = False
    top_logprobs: int = 0
    echo: bool = False
    user: str | None = None
    #: vLLM's ``return_tokens_as_token_ids`` (completions): logprobs name each token ``token_id:N``.
    token_ids: bool = False

    def sampling_for(self, default_temperature: float) -> SamplingParams:
        """The sampling parameters, with ``default_temperature`` when the body named none.

        >>> parse_request({"model": "S", "prompt": "Hi"}, chat=False).sampling_for(0.7).temperature
        0.7
        >>> parse_request({"model": "S", "prompt": "Hi", "temperature": 0}, chat=False).sampling_for(0.7).temperature
        0.0
        """
        if self.temperature_given:
            return self.sampling
        return replace(self.sampling, temperature=default_temperature)


def _number(body: dict[str, Any], key: str, lo: float, hi: float) -> float | None:
    if body.get(key) is None:
        return None
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(key, "must be a number", value)
    if not lo <= value <= hi:
        raise _bad(key, f"must be in [{lo:g}, {hi:g}]", value)
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


def _sampling(body: dict[str, Any]) -> tuple[SamplingParams, bool]:
    """The body's sampling parameters (absent or null ones at their defaults) and whether it named a temperature."""
    temperature = _number(body, "temperature", 0.0, MAX_TEMPERATURE)
    top_k = _integer(body, "top_k", -1, 1 << 20)  # -1 (vLLM's "disabled") and 0 both disable it
    given = {key: body[key] for key in ("top_p", "min_p") if body.get(key) is not None}
    try:
        params = SamplingParams(
            temperature=1.0 if temperature is None else temperature, top_k=max(top_k or 0, 0), **given
        )
    except InvalidInputError as err:
        raise _bad(err.argument, err.requirement, err.value) from None
    return params, temperature is not None


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
        p.token_ids = _boolean(body, "return_tokens_as_token_ids")
        tokens = _integer(body, "max_tokens", 0, 1 << 20)
        p.max_tokens = 16 if tokens is None else tokens
        if p.max_tokens == 0 and not p.echo:
            raise _bad("max_tokens", "may be 0 only with `echo` (to score the prompt)", 0)
        options = body.get("stream_options")
        p.include_usage = bool(options.get("include_usage", False)) if isinstance(options, dict) else False
    p.sampling, p.temperature_given = _sampling(body)
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
