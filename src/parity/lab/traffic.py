"""A load generator for OpenAI-compatible servers: Poisson arrivals, sticky sessions, a realistic prompt mix.

Prompts are built from real text that ships with Python (the standard library's functions and docstrings; the
library lives in ``parity.lab._prompts``, this module is the load generator and the public path of both):

``code``       a ``/v1/completions`` request continuing a standard-library function (header + docstring);
``prose``      a chat question about a standard-library name ("What does `json.dumps` do?"), or a docstring to
               continue;
``non_latin``  a chat request where non-Latin output is *expected* ("Write this in Thai: ..."), so a detector
               must not flag script changes on those;
``long``       a chat request carrying a long standard-library excerpt (several hundred tokens, above the lab
               router's long-context threshold) followed by a question.

Sessions: a request continues one of ``sessions`` sessions (the same ``user``) with probability ``follow_up``,
carrying the previous turn, else starts a new one. Each session keeps one model and one sampling setting of
:data:`SAMPLING_MIX` (greedy, top-p 0.99 / 0.999, or none), as a client application would. Arrivals are a
Poisson process at ``rate`` per second for ``duration`` seconds, bounded by ``max_requests`` and
``max_concurrency``; targets must be loopback addresses. With ``seeded`` every request carries a ``seed`` drawn
from the generator's own, so a run's text is reproducible on a server that honours seeds (the lab does).
With ``feedback`` set, a simulated user sends ``thumbs_down`` / ``thumbs_up`` to ``POST {target}/v1/feedback``
(the monitoring proxy's feedback route), more often down when an English answer contains Thai/CJK text.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> kinds = [prompt_mix(rng).kind for _ in range(200)]
>>> sorted(set(kinds))
['code', 'long', 'non_latin', 'prose']
>>> check_loopback("http://127.0.0.1:8000")
'http://127.0.0.1:8000'
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from parity._exceptions import InvalidInputError
from parity._tls import tls_context
from parity.lab._prompts import PROMPT_KINDS, TrafficPrompt, make_prompt, prompt_mix

__all__ = [
    "PROMPT_KINDS",
    "SAMPLING_MIX",
    "RequestOutcome",
    "TrafficGenerator",
    "TrafficPrompt",
    "TrafficSummary",
    "check_loopback",
    "make_prompt",
    "prompt_mix",
]

#: sampling settings of client applications (share, parameters): greedy and top-p 0.99/0.999 as in the
#: postmortem's description, and clients that send no sampling parameters. Each session keeps one setting.
SAMPLING_MIX: tuple[tuple[float, dict[str, float]], ...] = (
    (0.2, {"temperature": 0.0, "top_p": 0.99}),
    (0.5, {"temperature": 0.7, "top_p": 0.99}),
    (0.15, {"temperature": 1.0, "top_p": 0.999}),
    (0.15, {}),
)


def check_loopback(target: str) -> str:
    """Return ``target`` (an http URL) if its host is a loopback address, else raise naming ``target``."""
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError("target", "must be an http(s) URL such as http://127.0.0.1:8000", target)
    host = parts.hostname
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise InvalidInputError("target", "must be a loopback address (127.0.0.0/8, ::1 or localhost)", target)
    return target.rstrip("/")


@dataclass(frozen=True)
class RequestOutcome:
    """One request's outcome (``status`` 0: a transport error); the x-parity-* headers when the server sent them."""

    time: float
    session: str
    kind: str
    model: str
    endpoint: str
    status: int
    latency_s: float
    response_id: str = ""
    text: str = ""
    completion_tokens: int = 0
    server: str = ""
    pool: str = ""
    platform: str = ""
    config_version: str = ""
    feedback: str = ""
    error: str = ""


@dataclass
class TrafficSummary:
    """What a run did: counts, achieved rate, latency percentiles, and every outcome."""

    sent: int
    ok: int
    errors: dict[int, int]
    duration_s: float
    latency_p50_s: float
    latency_p99_s: float
    completion_tokens: int
    by_kind: dict[str, int]
    by_pool: dict[str, int]
    by_platform: dict[str, int]
    feedback: dict[str, int]
    outcomes: list[RequestOutcome] = field(repr=False, default_factory=list)

    @property
    def requests_per_s(self) -> float:
        """Successful requests per second of the run."""
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0

    def table_rows(self) -> list[tuple[str, str]]:
        """(label, value) rows for printing."""
        return [
            ("requests sent", str(self.sent)),
            ("succeeded", str(self.ok)),
            ("errors", ", ".join(f"{k}: {v}" for k, v in sorted(self.errors.items())) or "none"),
            ("duration", f"{self.duration_s:.1f} s"),
            ("throughput", f"{self.requests_per_s:.2f} req/s"),
            ("latency p50 / p99", f"{self.latency_p50_s * 1000:.0f} / {self.latency_p99_s * 1000:.0f} ms"),
            ("completion tokens", str(self.completion_tokens)),
            ("by kind", ", ".join(f"{k}: {v}" for k, v in sorted(self.by_kind.items()))),
            ("by pool", ", ".join(f"{k}: {v}" for k, v in sorted(self.by_pool.items())) or "-"),
            ("by platform", ", ".join(f"{k}: {v}" for k, v in sorted(self.by_platform.items())) or "-"),
            ("feedback", ", ".join(f"{k}: {v}" for k, v in sorted(self.feedback.items())) or "none"),
        ]


_NON_LATIN = None


def _unexpected_script(text: str) -> bool:
    global _NON_LATIN
    if _NON_LATIN is None:
        import regex

        _NON_LATIN = regex.compile(r"[\p{Thai}\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]")
    return bool(_NON_LATIN.search(text))


@dataclass
class _Session:
    name: str
    history: list[tuple[str, str]] = field(default_factory=list)
    model: str = ""
    sampling: dict[str, float] = field(default_factory=dict)
    turns: int = 0  # requests issued in this session (a follow-up may start before the last answer is back)


class TrafficGenerator:
    """Sends a bounded Poisson stream of requests to ``target`` (a loopback base URL, without ``/v1``).

    ``models`` maps model name to share (default: every model of ``GET /v1/models``, equal shares).
    ``on_result(outcome)`` is called after each request. :meth:`run` blocks; :meth:`run_async` is the coroutine.
    """

    def __init__(
        self,
        target: str,
        *,
        rate: float,
        duration: float,
        sessions: int = 20,
        seed: int = 0,
        models: dict[str, float] | None = None,
        max_tokens: int = 32,
        follow_up: float = 0.5,
        shares: dict[str, float] | None = None,
        feedback: bool = False,
        max_requests: int | None = None,
        max_concurrency: int = 64,
        timeout: float = 120.0,
        temperature: float | None = None,
        top_logprobs: int = 0,
        seeded: bool = False,
        on_result: Callable[[RequestOutcome], None] | None = None,
    ) -> None:
        self.target = check_loopback(target)
        if not (isinstance(rate, int | float) and 0 < rate <= 10_000 and math.isfinite(rate)):
            raise InvalidInputError("rate", "must be a number in (0, 10000] requests per second", rate)
        if not (isinstance(duration, int | float) and 0 < duration <= 24 * 3600):
            raise InvalidInputError("duration", "must be in (0, 86400] seconds", duration)
        if sessions < 1:
            raise InvalidInputError("sessions", "must be >= 1", sessions)
        if not 0 <= follow_up <= 1:
            raise InvalidInputError("follow_up", "must be in [0, 1]", follow_up)
        if max_tokens < 1:
            raise InvalidInputError("max_tokens", "must be >= 1", max_tokens)
        if max_concurrency < 1:
            raise InvalidInputError("max_concurrency", "must be >= 1", max_concurrency)
        if isinstance(top_logprobs, bool) or not isinstance(top_logprobs, int) or not 0 <= top_logprobs <= 20:
            raise InvalidInputError("top_logprobs", "must be an integer in [0, 20] (0: no logprobs)", top_logprobs)
        if models is not None and (not models or any(v < 0 for v in models.values()) or sum(models.values()) <= 0):
            raise InvalidInputError("models", "must map model names to shares >= 0, not all 0", models)
        self.rate = float(rate)
        self.duration = float(duration)
        self.sessions = sessions
        self.seed = seed
        self.models = models
        self.max_tokens = max_tokens
        self.follow_up = follow_up
        self.shares = shares
        self.feedback = feedback
        self.max_requests = max_requests if max_requests is not None else int(self.rate * self.duration * 2) + 10
        if self.max_requests < 1:
            raise InvalidInputError("max_requests", "must be >= 1", max_requests)
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.temperature = temperature
        self.top_logprobs = top_logprobs
        self.seeded = seeded
        self.on_result = on_result
        if shares is not None:
            prompt_mix(np.random.default_rng(0), shares=shares)  # validates

    def run(self, *, progress: Callable[[int, int], None] | None = None) -> TrafficSummary:
        """Run to the end (``progress(done, planned)`` after each request)."""
        return asyncio.run(self.run_async(progress=progress))

    async def run_async(self, *, progress: Callable[[int, int], None] | None = None) -> TrafficSummary:
        """The run as a coroutine."""
        import httpx

        rng = np.random.default_rng(self.seed)
        # the arrival schedule first: a Poisson process, bounded in count and time
        arrivals: list[float] = []
        t = 0.0
        while len(arrivals) < self.max_requests:
            t += float(rng.exponential(1.0 / self.rate))
            if t > self.duration:
                break
            arrivals.append(t)
        outcomes: list[RequestOutcome] = []
        semaphore = asyncio.Semaphore(self.max_concurrency)
        limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
        async with httpx.AsyncClient(
            base_url=self.target, timeout=self.timeout, limits=limits, verify=tls_context()
        ) as client:
            models = self.models or await self._served_models(client)
            names = list(models)
            weights = np.array([models[n] for n in names], dtype=np.float64)
            weights /= weights.sum()
            mix_p = np.array([share for share, _ in SAMPLING_MIX])
            mix_p /= mix_p.sum()
            sessions = [_Session(f"sess-{self.seed}-{i}") for i in range(self.sessions)]
            fresh = self.sessions  # sessions started so far get new names when restarted
            start = time.monotonic()
            tasks = []
            for when in arrivals:
                delay = start + when - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                index = int(rng.integers(len(sessions)))
                session = sessions[index]
                if not session.turns or rng.random() >= self.follow_up:
                    session = sessions[index] = _Session(f"sess-{self.seed}-{fresh}")
                    fresh += 1
                    session.model = names[int(rng.choice(len(names), p=weights))]
                    session.sampling = dict(SAMPLING_MIX[int(rng.choice(len(SAMPLING_MIX), p=mix_p))][1])
                prompt = prompt_mix(rng, shares=self.shares)
                if session.history and prompt.endpoint == "chat" and prompt.kind != "long":
                    prompt = TrafficPrompt(
                        prompt.kind,
                        "chat",
                        messages=(*session.history[-2:], *prompt.messages),
                        expects_non_latin=prompt.expects_non_latin,
                    )
                session.turns += 1
                fb_draw = float(rng.random())
                request_seed = int(rng.integers(2**31)) if self.seeded else None
                tasks.append(
                    asyncio.ensure_future(
                        self._one(
                            client, semaphore, session, prompt, fb_draw, request_seed, outcomes, progress, len(arrivals)
                        )
                    )
                )
            if tasks:
                await asyncio.gather(*tasks)
            elapsed = time.monotonic() - start
        return _summarise(outcomes, elapsed)

    async def _served_models(self, client: Any) -> dict[str, float]:
        from parity._exceptions import EndpointError

        try:
            resp = await client.get("/v1/models")
            data = resp.json()["data"]
            names = [str(m["id"]) for m in data]
        except Exception as err:  # any failure here means the target is not an OpenAI-compatible server
            raise EndpointError(f"cannot list models: {err}", url=f"{self.target}/v1/models") from err
        if not names:
            raise EndpointError("the server lists no models", url=f"{self.target}/v1/models")
        return dict.fromkeys(names, 1.0)

    async def _one(
        self,
        client: Any,
        semaphore: asyncio.Semaphore,
        session: _Session,
        prompt: TrafficPrompt,
        fb_draw: float,
        request_seed: int | None,
        outcomes: list[RequestOutcome],
        progress: Callable[[int, int], None] | None,
        planned: int,
    ) -> None:
        import httpx

        body = prompt.body(
            model=session.model,
            max_tokens=self.max_tokens,
            user=session.name,
            temperature=self.temperature,
            sampling=session.sampling,
            top_logprobs=self.top_logprobs,
        )
        if request_seed is not None:
            body["seed"] = request_seed
        path = "/v1/chat/completions" if prompt.endpoint == "chat" else "/v1/completions"
        t0 = time.monotonic()  # latency includes waiting for a connection slot (open-loop arrivals)
        async with semaphore:
            status, text, tokens, rid, error, headers = 0, "", 0, "", "", httpx.Headers()
            try:
                resp = await client.post(path, json=body)
                status, headers = resp.status_code, resp.headers
                data = resp.json()
                if status == 200:
                    choice = data["choices"][0]
                    text = choice["message"]["content"] if prompt.endpoint == "chat" else choice["text"]
                    tokens = int(data.get("usage", {}).get("completion_tokens", 0))
                    rid = str(data.get("id", ""))
                else:
                    error = str(data.get("error", {}).get("message", ""))[:200]
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as err:
                error = f"{type(err).__name__}: {err}"[:200]
            latency = time.monotonic() - t0
        feedback = ""
        if self.feedback and status == 200 and rid:
            bad = not prompt.expects_non_latin and _unexpected_script(text)
            if fb_draw < (0.4 if bad else 0.01):
                feedback = "thumbs_down"
            elif fb_draw > 0.97:
                feedback = "thumbs_up"
            if feedback:
                try:
                    answer = await client.post("/v1/feedback", json={"response_id": rid, "kind": feedback})
                    if answer.status_code >= 300:
                        feedback = ""  # the target has no feedback route (a bare lab server): not counted
                except httpx.HTTPError:
                    feedback = ""
        if status == 200 and prompt.endpoint == "chat":
            session.history = [*prompt.messages[-1:], ("assistant", text)]
        outcome = RequestOutcome(
            time=time.time(),
            session=session.name,
            kind=prompt.kind,
            model=session.model,
            endpoint=prompt.endpoint,
            status=status,
            latency_s=latency,
            response_id=rid,
            text=text,
            completion_tokens=tokens,
            server=headers.get("x-parity-server", ""),
            pool=headers.get("x-parity-pool", ""),
            platform=headers.get("x-parity-platform", ""),
            config_version=headers.get("x-parity-config-version", ""),
            feedback=feedback,
            error=error,
        )
        outcomes.append(outcome)
        if self.on_result is not None:
            self.on_result(outcome)
        if progress is not None:
            progress(len(outcomes), planned)


def _summarise(outcomes: list[RequestOutcome], elapsed: float) -> TrafficSummary:
    ok = [o for o in outcomes if o.status == 200]
    latencies = np.array([o.latency_s for o in ok]) if ok else np.array([0.0])
    return TrafficSummary(
        sent=len(outcomes),
        ok=len(ok),
        errors=dict(Counter(o.status for o in outcomes if o.status != 200)),
        duration_s=elapsed,
        latency_p50_s=float(np.percentile(latencies, 50)),
        latency_p99_s=float(np.percentile(latencies, 99)),
        completion_tokens=sum(o.completion_tokens for o in ok),
        by_kind=dict(Counter(o.kind for o in outcomes)),
        by_pool=dict(Counter(o.pool for o in ok if o.pool)),
        by_platform=dict(Counter(o.platform for o in ok if o.platform)),
        feedback=dict(Counter(o.feedback for o in outcomes if o.feedback)),
        outcomes=outcomes,
    )
