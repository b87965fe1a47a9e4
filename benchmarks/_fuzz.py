"""Seeded hostile inputs for the proxy and for ``parity ingest``, a misbehaving upstream, and the checks that judge
what came back. Shared by the suite's fuzz tests (a few hundred inputs) and ``benchmarks/bench_fuzz.py``
(100,000+).

Proxy: :func:`fuzz_requests` yields requests with hostile bodies (wrong types, huge numbers, NaN, lone
surrogates, invalid UTF-8, 1,500-deep nesting, non-objects, truncated JSON, bodies over the proxy's limit) and a
header telling :class:`MisbehavingUpstream` how to answer: valid JSON, OpenAI errors, SSE, broken SSE, invalid
UTF-8, a gzip header on garbage, chunked bodies, bodies cut short, a reset before any answer, a garbage status
line. The upstream's answer is a pure function of the request (:func:`upstream_response`), so
:func:`judge_exchange` knows what the client must see: exactly the upstream's status, headers of note and body
bytes; the first bytes and then a broken connection when the upstream broke off mid-body; a ``502`` OpenAI-style
error when the upstream failed before answering; a ``413`` when the body is over the limit.

Ingest: :func:`fuzz_records` yields JSONL/OTLP lines, each known by construction to be good or bad, so a run must
reject exactly the bad line numbers and keep each one byte for byte.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import hashlib
import json
import random
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

#: How the upstream answers (header ``x-fuzz-mode``).
MODES = (
    "json",
    "json",
    "json",
    "error",
    "sse",
    "sse",
    "broken_sse",
    "bad_utf8",
    "gzip_garbage",
    "chunked",
    "truncated",
    "truncated_chunked",
    "reset",
    "garbage_status",
)
#: The upstream fails before any answer: the proxy must answer 502.
FAILING = frozenset({"reset", "garbage_status"})
#: The upstream breaks off mid-body: the client must get the same first bytes, then a broken connection.
CUT_SHORT = frozenset({"truncated", "truncated_chunked"})
#: Response headers compared between what the upstream sent and what the client got.
COMPARED_HEADERS = ("content-type", "content-encoding", "x-fuzz-sha256", "x-parity-server", "x-parity-model")

_TEXTS = [
    "The quick brown fox.",
    "สวัสดีครับ",
    "Привет, мир",
    "こんにちは",
    "مرحبا بالعالم",
    "e\u0301\u0301\u0301",
    "🙂👍🏽‍",
    "\u0000\u0001\u001f",
    "line\nbreak\r\n",
    'tab\tand \\ backslash "quote"',
    "\ufffd\ufeff",
    "a" * 300,
    "def f(x):\n    return {x: [1, 2]}",
]
_PATHS = (
    ["/v1/chat/completions"] * 6
    + ["/v1/completions"] * 3
    + ["/v1/embeddings", "/v1/models", "/v1/x%20y", "/v1/chat/completions?stream=1&x=%ff", "/v1/../v1/models"]
)


@dataclass
class FuzzRequest:
    """One generated request: what the client sends, and how the upstream is told to answer."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    mode: str
    seed: int

    @property
    def oversize(self) -> bool:
        return bool(self.headers.get("x-fuzz-oversize"))


# -- hostile request bodies ------------------------------------------------------------------------------------
def _hostile_value(rng: random.Random, depth: int = 0) -> str:
    """A JSON-ish value as text: mostly valid JSON, sometimes not (the point)."""
    kind = rng.randrange(16)
    if kind == 0:
        return str(rng.choice([0, -1, 1, 2**31, 2**63, -(2**64), 10**30]))
    if kind == 1:
        return "9" * rng.choice([20, 400, 4301, 5000])  # 4301+ digits: over Python's int conversion limit
    if kind == 2:
        return rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "-0", "1e-400", "0.1e+2"])
    if kind == 3:
        return json.dumps(rng.choice(_TEXTS))
    if kind == 4:
        return '"a' + rng.choice(["\\ud800", "\\udfff", "\\ud83d", "\\ud83d\\ude00", "\\u0000"]) + 'b"'
    if kind == 5:
        return rng.choice(["true", "false", "null", '""', "[]", "{}"])
    if kind == 6:
        n = rng.choice([2, 50, 129, 1000, 1500])
        return "[" * n + "1" + "]" * n
    if kind == 7 and depth < 3:
        return "[" + ", ".join(_hostile_value(rng, depth + 1) for _ in range(rng.randrange(4))) + "]"
    if kind == 8 and depth < 3:
        items = (
            f"{json.dumps(rng.choice(['a', 'role', 'content', '']))}: {_hostile_value(rng, depth + 1)}"
            for _ in range(rng.randrange(4))
        )
        return "{" + ", ".join(items) + "}"
    if kind == 9:
        return '"' + "x" * rng.choice([1000, 20000, 60000]) + '"'
    return json.dumps(rng.choice(["S", "H", "user", "assistant", "stop", "\n", "gpt-4o"]))


def hostile_body(rng: random.Random) -> bytes:
    """A request body: an OpenAI-shaped object with hostile values, or something that is not one at all."""
    shape = rng.randrange(20)
    if shape == 0:
        return b""
    if shape == 1:
        return _hostile_value(rng).encode()  # not an object
    if shape == 2:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))  # binary noise
    fields = {
        "model": '"S"',
        "messages": '[{"role": "user", "content": ' + json.dumps(rng.choice(_TEXTS)) + "}]",
        "max_tokens": str(rng.choice([1, 16])),
    }
    for key in rng.sample(
        [
            "model",
            "messages",
            "prompt",
            "temperature",
            "top_p",
            "top_k",
            "max_tokens",
            "n",
            "seed",
            "stop",
            "stream",
            "logprobs",
            "user",
            "x",
            "tools",
        ],
        k=rng.randrange(1, 5),
    ):
        fields[key] = _hostile_value(rng)
    text = "{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}"
    raw = text.encode("utf-8", "surrogatepass")
    if shape == 3:
        return raw[: rng.randrange(1, len(raw))]  # truncated
    if shape == 4:
        cut = rng.randrange(1, len(raw))
        return raw[:cut] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]) + raw[cut:]
    return raw


def fuzz_requests(seed: int, n: int, *, max_body_bytes: int) -> Iterator[FuzzRequest]:
    """``n`` requests drawn from ``seed``; about 1 in 100 is over ``max_body_bytes`` (the proxy must refuse it)."""
    rng = random.Random(seed)
    for i in range(n):
        path = rng.choice(_PATHS)
        method = "GET" if path.endswith("/models") else rng.choice(["POST"] * 12 + ["PUT", "DELETE", "PATCH"])
        body = hostile_body(rng) if method != "GET" else b""
        headers = {"x-fuzz-mode": rng.choice(MODES), "x-fuzz-seed": str(seed * 1_000_003 + i)}
        headers["content-type"] = rng.choice(["application/json", "text/plain", "application/json; charset=latin-1"])
        if rng.random() < 0.3:
            headers["authorization"] = "Bearer sk-fuzz-" + "k" * rng.randrange(40)
        if rng.random() < 0.2:
            headers["x-session-id"] = rng.choice(["s1", "é", "a" * 500, "x y"])
        if rng.random() < 0.01:
            body = b'{"model": "S", "prompt": "' + b"w" * max_body_bytes + b'"}'
        if len(body) > max_body_bytes:
            headers["x-fuzz-oversize"] = "1"
        yield FuzzRequest(method, path, headers, body, headers["x-fuzz-mode"], int(headers["x-fuzz-seed"]))


# -- the misbehaving upstream -----------------------------------------------------------------------------------
@dataclass
class UpstreamAnswer:
    """What the upstream sends for one request: status, headers and body (before any HTTP framing), how it is
    framed, and where it breaks off."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    chunked: bool = False
    cut_at: int | None = None  # send only this many body bytes, then close
    fail: str | None = None  # "reset" | "garbage_status": no valid answer at all
    pieces: list[bytes] = field(default_factory=list)


def upstream_response(mode: str, seed: int, body: bytes) -> UpstreamAnswer:
    """The upstream's answer to a request, a pure function of (mode, seed, request body)."""
    rng = random.Random(seed)
    sha = hashlib.sha256(body).hexdigest()
    rid = f"chatcmpl-fz{seed}"
    common = [
        ("x-fuzz-sha256", sha),
        ("x-parity-server", rng.choice(["gpu-short-0", "tpu-long-1", "é-ü"])),
        ("x-parity-model", rng.choice(["S", "H", ""])),
    ]
    text = "".join(rng.choice(_TEXTS) for _ in range(rng.randrange(1, 4)))
    if mode in FAILING:
        return UpstreamAnswer(0, [], b"", fail=mode)
    if mode == "error":
        status = rng.choice([400, 401, 403, 404, 409, 422, 429, 500, 502, 503])
        payload = {"error": {"message": f"upstream says no ({status})", "type": "x", "param": None, "code": None}}
        return UpstreamAnswer(status, [("content-type", "application/json"), *common], json.dumps(payload).encode())
    if mode in ("sse", "broken_sse", "truncated_chunked"):
        events = []
        for j, word in enumerate(text.split(" ")):
            chunk = {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": 1754395200,
                "model": "S",
                "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}],
            }
            events.append(f"data: {json.dumps(chunk, ensure_ascii=rng.random() < 0.5)}\n\n".encode())
            if mode == "broken_sse" and rng.random() < 0.5:
                events.append(
                    rng.choice(
                        [
                            b'data: {"choices": [',
                            b"data: \xff\xfe\xfd\n\n",
                            b": comment\n",
                            b"event: weird\ndata: 1\n\n",
                            b"data: [DONE]\n\n",
                            b"\n\n\n",
                            b"data:" + b"x" * 5000 + b"\n\n",
                            b"\r\n",
                        ]
                    )
                )
            if j > 40:
                break
        if mode == "sse" or rng.random() < 0.5:
            events.append(b"data: [DONE]\n\n")
        whole = b"".join(events)
        answer = UpstreamAnswer(
            200, [("content-type", "text/event-stream"), *common], whole, chunked=True, pieces=events
        )
        if mode == "truncated_chunked":
            answer.cut_at = len(events[0]) if len(events) > 1 else 0
        return answer
    completion = {
        "id": rid,
        "object": "chat.completion",
        "created": 1754395200,
        "model": "S",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": rng.randrange(1, 9000), "completion_tokens": rng.randrange(1, 300)},
    }
    payload = json.dumps(completion, ensure_ascii=rng.random() < 0.5).encode()
    headers = [("content-type", "application/json"), *common]
    if mode == "bad_utf8":
        cut = payload.index(b'"content": "') + 12
        payload = payload[:cut] + b"\xff\xfe\xc3(" + payload[cut:]
    elif mode == "gzip_garbage":
        headers.append(("content-encoding", "gzip"))
        payload = gzip.compress(payload, mtime=0)[: rng.randrange(5, 30)] if rng.random() < 0.5 else b"not gzip at all"
    answer = UpstreamAnswer(200, headers, payload)
    if mode == "chunked":
        answer.chunked = True
        k = max(1, len(payload) // rng.randrange(1, 6))
        answer.pieces = [payload[i : i + k] for i in range(0, len(payload), k)]
    elif mode == "truncated":
        answer.cut_at = len(payload) // 2
    return answer


def _wire(answer: UpstreamAnswer) -> tuple[bytes, bool]:
    """The bytes to write and whether to close afterwards."""
    if answer.fail == "garbage_status":
        return b"HTTP/1.1 abc def\r\nx: y\r\n\r\n", True
    reason = b"OK" if answer.status == 200 else b"Status"
    head = b"HTTP/1.1 %d %s\r\n" % (answer.status, reason)
    head += b"".join(f"{k}: {v}\r\n".encode() for k, v in answer.headers)
    if not answer.chunked:
        head += b"content-length: %d\r\n\r\n" % len(answer.body)
        if answer.cut_at is not None:
            return head + answer.body[: answer.cut_at], True
        return head + answer.body, False
    head += b"transfer-encoding: chunked\r\n\r\n"
    out, sent = [head], 0
    for piece in answer.pieces or [answer.body]:
        if answer.cut_at is not None and sent + len(piece) > answer.cut_at:
            return b"".join(out), True
        out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
        sent += len(piece)
    out.append(b"0\r\n\r\n")
    return b"".join(out), False


class MisbehavingUpstream:
    """A raw HTTP/1.1 server (asyncio streams, its own thread) answering as :func:`upstream_response` says;
    ``url`` once started. A context manager."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fuzz-upstream", daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self.requests = 0
        self.url = ""
        self._writers: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> MisbehavingUpstream:
        self._thread.start()
        start = asyncio.start_server(self._handle, "127.0.0.1", 0, limit=1 << 24)
        self._server = asyncio.run_coroutine_threadsafe(start, self._loop).result(10)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for writer in list(self._writers):  # the handlers waiting on these connections end on their own
                writer.transport.abort()
            for _ in range(100):
                if len(asyncio.all_tasks()) <= 1:
                    break
                await asyncio.sleep(0.01)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                self.requests += 1
                answer = upstream_response(
                    headers.get("x-fuzz-mode", "json"), int(headers.get("x-fuzz-seed", "0")), body
                )
                if answer.fail == "reset":
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                data, close = _wire(answer)
                writer.write(data)
                await writer.drain()
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()


# -- judging what the client got --------------------------------------------------------------------------------
@dataclass
class Verdict:
    """How one request came back: ``ok`` (as the upstream answered, or the right 502/413), else ``why``."""

    ok: bool
    status: int | None
    why: str = ""
    proxy_500: bool = False


def judge_exchange(
    request: FuzzRequest, status: int | None, headers: dict[str, str], body: bytes, broken: bool
) -> Verdict:
    """Compare what the client got (``broken``: the connection broke before the body ended) with what it must."""
    if request.oversize:
        if status == 413 and _openai_error(body, "request_too_large"):
            return Verdict(True, status)
        return Verdict(False, status, f"over the limit but got {status}")
    answer = upstream_response(request.mode, request.seed, request.body)
    if answer.fail is not None:
        if status == 502 and _openai_error(body, "connect"):
            return Verdict(True, status)
        return Verdict(
            False, status, f"upstream {answer.fail}: expected a 502 error, got {status}", proxy_500=status == 500
        )
    if status != answer.status:
        return Verdict(False, status, f"status {status} != upstream's {answer.status}", proxy_500=status == 500)
    sent = dict(answer.headers)
    for name in COMPARED_HEADERS:
        if sent.get(name) != headers.get(name):
            return Verdict(False, status, f"header {name}: {headers.get(name)!r} != upstream's {sent.get(name)!r}")
    if sent.get("x-fuzz-sha256") != hashlib.sha256(request.body).hexdigest():
        return Verdict(False, status, "the upstream received a different body")
    if answer.cut_at is not None:
        if broken and body == answer.body[: answer.cut_at]:
            return Verdict(True, status)
        return Verdict(False, status, f"cut short upstream at {answer.cut_at}: got {len(body)} bytes, broken={broken}")
    if broken or body != answer.body:
        return Verdict(False, status, f"body differs ({len(body)} vs {len(answer.body)} bytes, broken={broken})")
    return Verdict(True, status)


def _openai_error(body: bytes, code: str) -> bool:
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(error, dict) and set(error) == {"message", "type", "param", "code"} and error["code"] == code


# -- ingest records -----------------------------------------------------------------------------------------------
def _good_exchange(rng: random.Random, i: int) -> dict[str, Any]:
    text = "".join(rng.choice(_TEXTS) for _ in range(rng.randrange(1, 3)))
    request: dict[str, Any] = {
        "model": rng.choice(["S", "H"]),
        "temperature": rng.choice([0.0, 0.7, 1.0]),
        "messages": [{"role": "user", "content": rng.choice(_TEXTS)}],
    }
    if rng.random() < 0.3:
        request["x_extra"] = json.loads("[" * 50 + "]" * 50)  # deep but within the bound
    if rng.random() < 0.3:
        request["big_number"] = 10**300
    response: Any = {
        "id": f"chatcmpl-i{i}",
        "created": 1754395200 + i,
        "model": request["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 3},
    }
    if rng.random() < 0.3:
        response = [
            {
                "id": f"chatcmpl-i{i}",
                "created": 1754395200 + i,
                "model": "S",
                "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}],
            }
            for w in text.split()
        ]
    line: dict[str, Any] = {
        "request": request,
        "response": response,
        "headers": {"x-parity-platform": rng.choice(["gpu", "tpu", "é"])},
    }
    if rng.random() < 0.3:
        line["time"] = "2025-08-31T10:00:00Z"
    return line


def _good_otlp(rng: random.Random, i: int) -> dict[str, Any]:
    def attr(k: str, v: Any) -> dict[str, Any]:
        value = {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}
        return {"key": k, "value": value}

    spans = [
        {
            "traceId": f"{i:032x}",
            "spanId": f"{j:016x}",
            "name": "chat",
            "startTimeUnixNano": str(1754395200 * 10**9 + i),
            "endTimeUnixNano": str(1754395201 * 10**9 + i),
            "attributes": [
                attr("gen_ai.request.model", "S"),
                attr("gen_ai.response.id", f"otlp-{i}-{j}"),
                attr("gen_ai.usage.input_tokens", rng.randrange(1, 900)),
                attr(
                    "gen_ai.output.messages",
                    json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": rng.choice(_TEXTS)}]}]),
                ),
            ],
        }
        for j in range(rng.randrange(1, 3))
    ]
    return {
        "resourceSpans": [
            {"resource": {"attributes": [attr("parity.platform", "tpu")]}, "scopeSpans": [{"spans": spans}]}
        ]
    }


def _bad_line(rng: random.Random, good: bytes, fmt: str) -> bytes:
    """A line known to be rejected (every kind here is invalid whatever the draw)."""
    kind = rng.randrange(12 if fmt == "jsonl" else 10)
    if kind == 0:
        return b"oops " + bytes(rng.choice(b"abc{}[]:,") for _ in range(rng.randrange(20)))
    if kind == 1:
        return good[: rng.randrange(1, len(good) - 1)]  # a truncated object: never valid JSON
    if kind == 2:
        cut = good.index(b'"', 2) + 1
        return good[:cut] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80"]) + good[cut:]
    if kind == 3:
        n = rng.choice([129, 1000, 5000])
        return good[:-1] + b', "deep": ' + b"[" * n + b"]" * n + b"}"
    if kind == 4:
        return good[:-1] + b', "n": ' + rng.choice([b"NaN", b"Infinity", b"-Infinity"]) + b"}"
    if kind == 5:
        return good[:-1] + b', "s": "a\\ud800b"}'
    if kind == 6:
        return rng.choice([b"[1, 2]", b"42", b'"a string"', b"null", b"true"])
    if kind == 7:
        return b"\xef\xbb\xbf" + good  # a byte-order mark
    if kind == 8:
        return good[:-1] + b', "x": ' + b"1" * 5000 + b"}"  # an integer over Python's digit limit
    if kind == 9:
        if fmt == "otlp":
            no_start = (
                b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [{"key": "gen_ai.request.model", '
                b'"value": {"stringValue": "S"}}]}]}]}]}'
            )
            return rng.choice([b'{"resourceSpans": 5}', b'{"spans": []}', no_start])
        return b'{"request": "not an object", "response": {}}'
    if kind == 10:
        return good[:-1] + b', "time": ' + rng.choice([b'"yesterday"', b'"2025-08-31T10:00:00"', b"[1]"]) + b"}"
    return b'{"request": {"model": "S"}, "response": 5}'


def fuzz_records(seed: int, n: int, *, fmt: str = "jsonl", bad_share: float = 0.4) -> tuple[list[bytes], list[int]]:
    """``n`` lines (without their newline) and the numbers (1-based) of those known to be bad."""
    rng = random.Random(seed)
    lines: list[bytes] = []
    bad: list[int] = []
    for i in range(n):
        obj = _good_exchange(rng, i) if fmt == "jsonl" else _good_otlp(rng, i)
        good = json.dumps(obj, ensure_ascii=rng.random() < 0.5).encode()
        if rng.random() < bad_share:
            lines.append(_bad_line(rng, good, fmt))
            bad.append(i + 1)
        else:
            lines.append(good)
    return lines, bad


def decode_reject(entry: dict[str, Any]) -> bytes:
    """The verbatim bytes of one reject-file entry."""
    if "raw" in entry:
        return str(entry["raw"]).encode("utf-8")
    return base64.b64decode(entry["raw_b64"])


# -- sending ------------------------------------------------------------------------------------------------------
def _wire_headers(request: FuzzRequest) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode("utf-8")) for k, v in request.headers.items()]


def _received_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("utf-8", "surrogateescape") for k, v in raw}


def send(client: Any, base: str, request: FuzzRequest) -> Verdict:
    """Send ``request`` with an ``httpx.Client`` and judge the answer."""
    import httpx

    body = bytearray()
    broken = False
    try:
        with client.stream(
            request.method, base + request.path, content=request.body, headers=_wire_headers(request)
        ) as resp:
            status, headers = resp.status_code, _received_headers(resp.headers.raw)
            try:
                for chunk in resp.iter_raw():
                    body += chunk
            except (httpx.RemoteProtocolError, httpx.ReadError):
                broken = True
    except httpx.HTTPError as err:
        return Verdict(False, None, f"client error {err!r}")
    return judge_exchange(request, status, headers, bytes(body), broken)


async def send_async(client: Any, base: str, request: FuzzRequest) -> Verdict:
    """:func:`send` with an ``httpx.AsyncClient``."""
    import httpx

    body = bytearray()
    broken = False
    try:
        async with client.stream(
            request.method, base + request.path, content=request.body, headers=_wire_headers(request)
        ) as resp:
            status, headers = resp.status_code, _received_headers(resp.headers.raw)
            try:
                async for chunk in resp.aiter_raw():
                    body += chunk
            except (httpx.RemoteProtocolError, httpx.ReadError):
                broken = True
    except httpx.HTTPError as err:
        return Verdict(False, None, f"client error {err!r}")
    return judge_exchange(request, status, headers, bytes(body), broken)
