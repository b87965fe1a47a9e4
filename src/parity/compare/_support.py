"""Could the reference have drawn this token here? Per-token support and PIT checks from prompt logprobs.

A sampled completion is scored under the reference (echo): for each of its tokens the reference returns the
token's log-probability and the ``N`` most likely alternatives (``top_logprobs``; the lab and vLLM allow up to 20,
OpenAI's legacy API 5). :func:`check_token` decides, for the request's temperature / top-k / top-p / min-p (in
the reference's filter ``order``), whether the token lies in the set :mod:`parity.sampling` keeps at that
position, and gives its randomised PIT under the reference's filtered distribution when that distribution is
known.

**What the top-N alternatives decide, and what they cannot.** The raw log-probabilities of the listed tokens are
exact; the unlisted tokens are each no more likely than the N-th listed one, and together carry the rest of the
mass (``1 - sum of the listed``).

- *Exactly decided* (membership and PIT), with :func:`parity.sampling.kept_mask` and
  :func:`parity.sampling.probabilities` on the listed tokens: greedy (the argmax is always listed); top-k with
  ``1 <= k <= N`` applied before top-p (the kept set then lies inside the listed tokens, and top-p and min-p
  renormalise over those survivors only); any settings when fewer than ``N`` alternatives come back (the whole
  vocabulary is listed).
- *Decided by bounds* otherwise (membership only, no PIT): min-p always (``z_t - z_max >= log(min_p)``, both
  known); top-k with ``k > N`` keeps every listed token and cannot judge an unlisted one; top-p compares the mass
  strictly above the token with ``top_p`` times the survivors' mass, where the unlisted tail's mass is known at
  temperature 1, bounded above by ``p_N^(1/T - 1) * tail`` below temperature 1, and unbounded above temperature
  1 (without the vocabulary). A token is a *violation* only when it is outside the kept set for every tail
  consistent with the listed numbers, *kept* when inside for every one, and *undecided* in between: an unlisted
  token under top-p 0.99 at temperature 1 is typically undecided, so the support test then has little to work on
  and :class:`~parity.compare.CompareConfig`'s defaults (top-k 20 with top-p 0.9) keep every decision exact.
- *Not decidable at all* over this API: any ordering of tokens other than by probability (token ids are not
  returned, so a fault that loses an id range is seen through the tokens it makes the candidate draw instead), and
  a PIT for a token whose kept set reaches past the listed alternatives.

**Noise.** The reference's log-probabilities move between runs by its numerical noise (batch composition, decode
vs prefill kernels). ``tolerance`` (nats) is applied in the token's favour: the token's log-probability is raised
and every other lowered by ``tolerance`` before deciding, so ties within the noise never count as violations
(greedy: a token within ``2 * tolerance`` of the argmax is accepted).

>>> from parity.sampling import SamplingParams
>>> top = {" a": -0.2, " b": -2.0, " c": -3.0}
>>> check_token(" b", -2.0, top, SamplingParams(top_k=2), alternatives=3, u=0.5)
TokenCheck(status='kept', pit=0.9...)
>>> check_token(" c", -3.0, top, SamplingParams(top_k=2), alternatives=3, u=0.5).status
'violation'
>>> check_token(" b", -2.0, top, SamplingParams(temperature=0.0), alternatives=3).status  # not the argmax
'violation'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from parity.compare._client import ScoredText
from parity.sampling import SamplingParams, kept_mask, probabilities

__all__ = ["TokenCheck", "check_completion", "check_completions", "check_token", "exactly_decidable"]

KEPT, VIOLATION, UNDECIDED = "kept", "violation", "undecided"


@dataclass(frozen=True)
class TokenCheck:
    """One token's verdict: ``status`` is ``kept``, ``violation`` or ``undecided``; ``pit`` its randomised PIT
    under the reference's filtered distribution (probability order, most likely first), when known."""

    status: str
    pit: float | None = None


def exactly_decidable(params: SamplingParams, alternatives: int) -> bool:
    """Whether every membership and PIT is exact with ``alternatives`` listed tokens (see the module docstring).

    >>> exactly_decidable(SamplingParams(top_k=20, top_p=0.9), 20), exactly_decidable(SamplingParams(top_p=0.9), 20)
    (True, False)
    """
    if params.greedy:
        return True
    if not (params.top_k_enabled and params.top_k <= alternatives):
        return False
    return not params.top_p_enabled or params.order.index("top_k") < params.order.index("top_p")


def check_token(
    token: str,
    logprob: float,
    top: Mapping[str, float],
    params: SamplingParams,
    *,
    alternatives: int,
    tolerance: float = 0.0,
    u: float | None = None,
) -> TokenCheck:
    """Whether ``token`` (reference log-probability ``logprob``) lies in the reference's kept set at a position
    whose listed alternatives are ``top`` (``alternatives`` were asked for); ``u`` randomises the PIT."""
    others = [float(v) for k, v in top.items() if k != token and math.isfinite(float(v))]
    if not top or not math.isfinite(logprob):
        return TokenCheck(VIOLATION if top and not math.isfinite(logprob) else UNDECIDED)
    listed = token in top
    raw = np.array([logprob, *others])
    nudged = np.array([logprob + tolerance, *(v - tolerance for v in others)])
    if params.greedy:
        kept = bool(nudged[0] + tolerance >= nudged.max())
        return TokenCheck(KEPT if kept else VIOLATION, None)
    full = len(top) < alternatives  # the whole vocabulary is listed
    if full or exactly_decidable(params, alternatives):
        if not bool(kept_mask(nudged, params)[0]):
            return TokenCheck(VIOLATION)
        q = probabilities(raw, params)
        if q[0] <= 0.0 or u is None:
            return TokenCheck(KEPT)
        pit = float(q[raw > raw[0]].sum() + u * q[raw == raw[0]].sum())
        return TokenCheck(KEPT, min(max(pit, 0.0), 1.0))
    return TokenCheck(_bounded(nudged, raw, listed, params))


def _bounded(nudged: np.ndarray, raw: np.ndarray, listed: bool, params: SamplingParams) -> str:
    """Membership by bounds over every tail consistent with the listed numbers (module docstring)."""
    lp_t, others = float(nudged[0]), nudged[1:]
    lp_max = float(nudged.max())
    a = 1.0 / params.temperature
    undecided = False
    if params.min_p_enabled and a * (lp_t - lp_max) < math.log(params.min_p):
        return VIOLATION
    if params.top_k_enabled:
        above = int(np.count_nonzero(others > lp_t))
        if above >= params.top_k:
            return VIOLATION
        if not listed:
            undecided = True
    if params.top_p_enabled:
        tail = max(0.0, 1.0 - float(np.exp(raw).sum()))  # raw holds the token and every listed alternative
        p_n = float(np.exp(raw.min() if listed or raw.size == 1 else raw[1:].min()))  # the least listed one
        scale = math.exp(-a * float(raw.max()))  # tail weights in the units of exp(a * (lp - lp_max))
        if a == 1.0:
            tail_hi = tail * scale
        elif a > 1.0:
            tail_hi = p_n ** (a - 1.0) * tail * scale
        else:
            tail_hi = math.inf
        before = params.order[: params.order.index("top_p")]
        filtered_before = (params.top_k_enabled and "top_k" in before) or (params.min_p_enabled and "min_p" in before)
        if filtered_before or a > 1.0:
            tail_lo = 0.0
        elif a == 1.0:
            tail_lo = tail * scale
        else:
            tail_lo = p_n ** (a - 1.0) * tail * scale
        w = np.exp(a * (nudged - lp_max))
        survives = np.ones(nudged.size, dtype=bool)
        if params.min_p_enabled and "min_p" in before:
            survives = a * (nudged - lp_max) >= math.log(params.min_p)
        above_known = float(w[1:][(others > lp_t) & survives[1:]].sum())
        z_lo = float(w[survives].sum()) + tail_lo
        z_hi = float(w.sum()) + tail_hi
        a_hi = above_known if listed else above_known + tail_hi
        if above_known >= params.top_p * z_hi:
            return VIOLATION
        if not a_hi < params.top_p * z_lo:
            undecided = True
    return UNDECIDED if undecided else KEPT


def check_completion(
    scored: ScoredText,
    params: SamplingParams,
    *,
    alternatives: int,
    tolerance: float = 0.0,
    rng: np.random.Generator | None = None,
) -> list[TokenCheck]:
    """:func:`check_token` for every token of one scored completion (``rng`` draws the PIT's uniforms)."""
    return check_completions([scored], params, alternatives=alternatives, tolerance=tolerance, rng=rng)[0]


def check_completions(
    scored: Sequence[ScoredText],
    params: SamplingParams,
    *,
    alternatives: int,
    tolerance: float = 0.0,
    rng: np.random.Generator | None = None,
) -> list[list[TokenCheck]]:
    """:func:`check_token` for every token of every completion, the exact decisions batched into one
    :func:`~parity.sampling.kept_mask` and one :func:`~parity.sampling.probabilities` call.

    >>> from parity.sampling import SamplingParams
    >>> s = ScoredText((" a", " c"), (-0.2, -3.0), ({" a": -0.2, " b": -2.0, " c": -3.0},) * 2)
    >>> [c.status for c in check_completions([s], SamplingParams(top_k=2), alternatives=3)[0]]
    ['kept', 'violation']
    """
    gen = rng or np.random.default_rng(0)
    out: list[list[TokenCheck | None]] = []
    rows: list[list[float]] = []
    where: list[tuple[int, int, float]] = []
    exact = exactly_decidable(params, alternatives)
    for c, s in enumerate(scored):
        tops: Sequence[Mapping[str, float]] = s.top_logprobs or [{}] * len(s.tokens)
        checks: list[TokenCheck | None] = []
        for i, (tok, lp, top) in enumerate(zip(s.tokens, s.logprobs, tops, strict=False)):
            u = float(gen.random())
            if params.greedy or not top or not math.isfinite(lp) or not (exact or len(top) < alternatives):
                checks.append(check_token(tok, lp, top, params, alternatives=alternatives, tolerance=tolerance, u=u))
                continue
            rows.append([lp, *(float(v) for k, v in top.items() if k != tok and math.isfinite(float(v)))])
            where.append((c, i, u))
            checks.append(None)
        out.append(checks)
    if rows:
        width = max(map(len, rows))
        raw = np.full((len(rows), width), -np.inf)
        for r, row in enumerate(rows):
            raw[r, : len(row)] = row
        nudged = np.where(np.isfinite(raw), raw - tolerance, -np.inf)
        nudged[:, 0] = raw[:, 0] + tolerance
        kept = kept_mask(nudged, params)[:, 0]
        q = probabilities(raw, params)
        above = (q * (raw > raw[:, :1])).sum(axis=1)
        level = (q * (raw == raw[:, :1])).sum(axis=1)
        for r, (c, i, u) in enumerate(where):
            if not kept[r]:
                out[c][i] = TokenCheck(VIOLATION)
            elif q[r, 0] <= 0.0:
                out[c][i] = TokenCheck(KEPT)
            else:
                out[c][i] = TokenCheck(KEPT, min(max(float(above[r] + u * level[r]), 0.0), 1.0))
    return [[t for t in checks if t is not None] for checks in out]
