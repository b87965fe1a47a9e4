"""The faultbox: an HTTP middlebox that speaks OpenAI-compatible to clients and forwards to any upstream,
injecting one silent fault on a share of one segment's traffic - the drill a user runs on their own stack.

``parity lab faultbox --upstream URL --listen 127.0.0.1:PORT --fault KIND --share X --segment model=H``

Faults (:data:`FAULTS`), applied to a request of the segment with probability ``share``:

- ``ignore-sampling``: ``temperature``, ``top_p``, ``top_k`` and ``seed`` are removed from the forwarded request
  (the upstream's defaults apply: a server that ignores the client's sampling parameters);
- ``max-tokens-cap``: ``max_tokens`` (and ``max_completion_tokens``) capped at ``cap`` (default 4);
- ``drop-context``: only the last chat message is forwarded (history and system prompt lost);
- ``reencode``: the answer's text, UTF-8, is read as cp1252 (mojibake: ``é`` -> ``Ã©``);
- ``latency``: the response waits ``delay`` seconds more (a capacity problem, not a quality fault).

The segment is ``model=NAME`` (the request's ``model``) or any provenance dimension the upstream reports in an
``x-parity-<dimension>`` response header (``platform=tpu``); request-side faults (all but ``reencode`` and
``latency``) need the segment known before forwarding, so they take ``model=`` only. Every response carries
``x-faultbox-injected: KIND`` or ``none``; ``GET /faultbox/stats`` counts requests seen, in the segment,
injected, and *changed*: injected requests the fault actually altered (dropping context changes only a request
with history, re-encoding only a non-ASCII answer, ignoring sampling only a request that set a sampling
parameter); :attr:`FaultBox.changed_ids` keeps the response ids of the last changed ones, so a drill can count
the affected requests until its alert. Streaming (SSE) responses are forwarded as they come, re-encoded chunk by
chunk for ``reencode``.

>>> plan = FaultPlan("max-tokens-cap", share=1.0, segment={"model": "H"}, cap=4)
>>> plan.rewrite_request({"model": "H", "max_tokens": 64, "messages": []})
{'model': 'H', 'max_tokens': 4, 'messages': []}
>>> plan.rewrite_request({"model": "S", "max_tokens": 64}) is None
True
>>> reencode_text("café")
'cafÃ©'
>>> FaultPlan("ignore-sampling", share=1.0, segment={"platform": "tpu"})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
parity._exceptions.InvalidInputError: `segment` must be model=NAME for a request-side fault (ignore-sampling)...
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from parity._exceptions import InvalidInputError

__all__ = ["FAULTS", "FaultBox", "FaultPlan", "parse_segment", "reencode_text"]

#: The faults the faultbox injects.
FAULTS: tuple[str, ...] = ("ignore-sampling", "max-tokens-cap", "drop-context", "reencode", "latency")
_REQUEST_FAULTS = frozenset({"ignore-sampling", "max-tokens-cap", "drop-context"})
_SAMPLING_KEYS = ("temperature", "top_p", "top_k", "seed")
#: Hop-by-hop and length headers not copied between the two connections.
_RESPONSE_ID = re.compile(rb'"id"\s*:\s*"([^"]{1,200})"')
#: Response ids of changed requests kept by a faultbox (the oldest forgotten first).
CHANGED_IDS_KEPT = 100_000
_SKIP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "content-encoding"})


def reencode_text(text: str) -> str:
    """UTF-8 bytes read as cp1252 (undecodable bytes become U+FFFD): the mojibake of a wrong charset."""
    return text.encode("utf-8").decode("cp1252", errors="replace")


def parse_segment(text: str) -> dict[str, str]:
    """``"model=H"`` or ``"model=H,platform=tpu"`` -> a dict; ``""`` -> all traffic.

    >>> parse_segment("model=H,platform=tpu")
    {'model': 'H', 'platform': 'tpu'}
    """
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InvalidInputError("segment", "must look like model=H or platform=tpu", text)
        out[key.strip()] = value.strip()
    return out


@dataclass
class FaultPlan:
    """What to inject, where and how often; :meth:`rewrite_request` decides per request (seeded ``rng``)."""

    fault: str
    share: float = 1.0
    segment: dict[str, str] = field(default_factory=dict)
    cap: int = 4
    delay: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.fault not in FAULTS:
            raise InvalidInputError("fault", f"must be one of {list(FAULTS)}", self.fault)
        if not 0.0 <= self.share <= 1.0:
            raise InvalidInputError("share", "must be in [0, 1]", self.share)
        if self.cap < 1:
            raise InvalidInputError("cap", "must be >= 1", self.cap)
        if self.delay < 0:
            raise InvalidInputError("delay", "must be >= 0", self.delay)
        if self.fault in _REQUEST_FAULTS and set(self.segment) - {"model"}:
            raise InvalidInputError(
                "segment", f"must be model=NAME for a request-side fault ({self.fault})", self.segment
            )
        self.rng = random.Random(self.seed)

    def _model_matches(self, body: Mapping[str, Any]) -> bool:
        model = self.segment.get("model")
        return model is None or body.get("model") == model

    def matches_response(self, body: Mapping[str, Any], headers: Mapping[str, str]) -> bool:
        """Whether a request (``body``) answered with ``headers`` is in the segment."""
        if not self._model_matches(body):
            return False
        for dim, value in self.segment.items():
            if dim != "model" and headers.get(f"x-parity-{dim}") != value:
                return False
        return True

    def draw(self) -> bool:
        """One draw of the share."""
        return self.rng.random() < self.share

    def changes_request(self, body: Mapping[str, Any]) -> bool:
        """Whether the request-side fault alters this request (in the segment or not): ignoring sampling alters
        one that sets a sampling parameter, the cap one that asks for more than ``cap`` tokens (or sets no
        limit), dropping context one with more than one message.

        >>> plan = FaultPlan("drop-context", segment={"model": "H"})
        >>> plan.changes_request({"model": "H", "messages": [{"role": "user", "content": "hi"}]})
        False
        """
        if self.fault == "ignore-sampling":
            return any(key in body for key in _SAMPLING_KEYS)
        if self.fault == "max-tokens-cap":
            limits = [body[k] for k in ("max_tokens", "max_completion_tokens") if isinstance(body.get(k), int)]
            return not limits or any(limit > self.cap for limit in limits)
        if self.fault == "drop-context":
            return isinstance(body.get("messages"), list) and len(body["messages"]) > 1
        return False

    def rewrite_request(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The request to forward with the fault applied, or ``None`` when this request is not in the segment
        (request-side faults only; the share is drawn by the caller)."""
        if not self._model_matches(body):
            return None
        out = dict(body)
        if self.fault == "ignore-sampling":
            for key in _SAMPLING_KEYS:
                out.pop(key, None)
        elif self.fault == "max-tokens-cap":
            for key in ("max_tokens", "max_completion_tokens"):
                if isinstance(out.get(key), int):
                    out[key] = min(out[key], self.cap)
            if "max_tokens" not in out and "max_completion_tokens" not in out:
                out["max_tokens"] = self.cap
        elif self.fault == "drop-context" and isinstance(out.get("messages"), list) and out["messages"]:
            out["messages"] = out["messages"][-1:]
        return out


def _reencode_choice(obj: Any) -> bool:
    """Re-encode the answer text of every choice of ``obj`` in place; whether any text changed."""
    if not isinstance(obj, dict):
        return False
    altered = False
    for choice in obj.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        for holder, key in ((choice.get("message"), "content"), (choice.get("delta"), "content"), (choice, "text")):
            if isinstance(holder, dict) and isinstance(holder.get(key), str):
                new = reencode_text(holder[key])
                altered = altered or new != holder[key]
                holder[key] = new
    return altered


def _reencode_sse_line(line: str) -> tuple[str, bool]:
    """One SSE line with its answer text re-encoded, and whether that text changed."""
    if not line.startswith("data:") or line[5:].strip() in ("", "[DONE]"):
        return line, False
    try:
        obj = json.loads(line[5:])
    except ValueError:
        return line, False
    altered = _reencode_choice(obj)
    return "data: " + json.dumps(obj, ensure_ascii=False), altered


class FaultBox:
    """The ASGI app: forwards every request to ``upstream`` (same path and query), injecting ``plan``."""

    def __init__(self, upstream: str, plan: FaultPlan, *, timeout: float = 120.0) -> None:
        if not upstream.startswith(("http://", "https://")):
            raise InvalidInputError("upstream", "must be an http(s) URL", upstream)
        self.upstream = upstream.rstrip("/")
        self.plan = plan
        self.timeout = timeout
        self.seen = 0
        self.in_segment = 0
        self.injected = 0
        self.changed = 0
        #: response ids of the last :data:`CHANGED_IDS_KEPT` requests the fault changed (when the answer had one)
        self.changed_ids: deque[str] = deque(maxlen=CHANGED_IDS_KEPT)
        self._client: httpx.AsyncClient | None = None

    def stats(self) -> dict[str, Any]:
        """Requests seen, in the segment, and injected."""
        return {
            "fault": self.plan.fault,
            "share": self.plan.share,
            "segment": self.plan.segment,
            "seen": self.seen,
            "in_segment": self.in_segment,
            "injected": self.injected,
            "changed": self.changed,
        }

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self._client = httpx.AsyncClient(timeout=self.timeout)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self._client is not None:
                        await self._client.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"] == "/faultbox/stats":
            await _send_json(send, 200, self.stats())
            return
        await self._forward(scope, receive, send)

    async def _forward(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        self.seen += 1
        body: dict[str, Any] | None = None
        if raw and scope["method"] == "POST":
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            body = parsed if isinstance(parsed, dict) else None
        plan = self.plan
        inject = changed = False
        if body is not None and plan.fault in _REQUEST_FAULTS:
            rewritten = plan.rewrite_request(body)
            if rewritten is not None:
                self.in_segment += 1
                if plan.draw():
                    inject = True
                    changed = plan.changes_request(body)
                    raw = json.dumps(rewritten).encode()
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k.decode("latin-1").lower() not in _SKIP_HEADERS
        ]
        url = self.upstream + scope["path"] + (f"?{scope['query_string'].decode()}" if scope["query_string"] else "")
        client = self._client or httpx.AsyncClient(timeout=self.timeout)
        try:
            request = client.build_request(scope["method"], url, headers=headers, content=raw)
            upstream = await client.send(request, stream=True)
        except httpx.HTTPError as err:
            await _send_json(send, 502, {"error": {"message": f"faultbox: upstream {self.upstream} failed: {err}"}})
            return
        try:
            out_headers = {k.lower(): v for k, v in upstream.headers.items() if k.lower() not in _SKIP_HEADERS}
            if body is not None and plan.fault not in _REQUEST_FAULTS and plan.matches_response(body, out_headers):
                self.in_segment += 1
                inject = plan.draw()
            if inject:
                self.injected += 1
            out_headers["x-faultbox-injected"] = plan.fault if inject else "none"
            if inject and plan.fault == "latency":
                await asyncio.sleep(plan.delay)
                changed = True
            reencode = inject and plan.fault == "reencode"
            streamed = out_headers.get("content-type", "").startswith("text/event-stream")
            if reencode and not streamed:
                original = content = await upstream.aread()
                with contextlib.suppress(ValueError):  # not JSON: forwarded as it came
                    obj = json.loads(content)
                    if _reencode_choice(obj):
                        self._changed(original)
                    content = json.dumps(obj, ensure_ascii=False).encode()
                await _respond(send, upstream.status_code, out_headers, content)
                return
            await send(
                {
                    "type": "http.response.start",
                    "status": upstream.status_code,
                    "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in out_headers.items()],
                }
            )
            head = b""
            if reencode:
                altered = False
                async for line in upstream.aiter_lines():
                    new, changed_here = _reencode_sse_line(line)
                    altered = altered or changed_here
                    head = head or line.encode()
                    await send({"type": "http.response.body", "body": (new + "\n").encode(), "more_body": True})
                changed = altered
            else:
                async for piece in upstream.aiter_raw():
                    head = head if len(head) >= 512 else head + piece[:512]
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
            if changed:
                self._changed(head)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await upstream.aclose()
            if self._client is None:
                await client.aclose()

    def _changed(self, head: bytes) -> None:
        """Count a changed request; keep its response id when the start of the answer (``head``) names one."""
        self.changed += 1
        m = _RESPONSE_ID.search(head)
        if m is not None:
            self.changed_ids.append(m.group(1).decode("utf-8", errors="replace"))


async def _respond(send: Any, status: int, headers: Mapping[str, str], content: bytes) -> None:
    hdrs = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    hdrs.append((b"content-length", str(len(content)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": content})


async def _send_json(send: Any, status: int, payload: Any) -> None:
    await _respond(send, status, {"content-type": "application/json"}, json.dumps(payload).encode())
