"""Sampling consistency: is each chosen token one the requested sampler could have drawn?

Needs the served chosen-token logprobs and top alternatives (OpenAI ``logprobs``/``top_logprobs``). The
returned alternatives are only the top N, so every check flags only what the data *proves*; an alternative
list that is too short to decide proves nothing. Order of operations, per position (logprobs from the model's
distribution before sampling processing, the OpenAI and vLLM default: ``mode="raw"``):

1. A chosen token with logprob ``-inf`` or NaN could not have been drawn.
2. Temperature 0: the chosen token must be the argmax: no alternative may beat it by more than
   :data:`ARGMAX_TOLERANCE`.
3. Top-k (``top_k > 0``): fewer than ``top_k`` alternatives may beat the chosen token.
4. Top-p (``top_p < 1``, temperature <= 1): the chosen token is outside the nucleus when the alternatives that
   beat it already hold probability >= ``top_p`` + :data:`NUCLEUS_TOLERANCE`. Their summed probability is a
   lower bound on the mass above the token (the tail is unseen), and for temperature T <= 1 the mass of the
   tokens above a given one only grows as T shrinks (the tempered distributions are ordered by likelihood
   ratio), so the bound read from raw logprobs still holds after temperature. Above T = 1 nothing is proven.
   An alternative reported at ``-inf`` shows the server reports processed logprobs (renormalised over the kept
   tokens, which breaks the bound): that position skips this check.
5. Far below: the best alternative beats the chosen token by more than :data:`FAR_BELOW_NATS` times
   ``max(1, temperature)``. Honest sampling draws such a token with probability at most
   ``vocab * exp(-FAR_BELOW_NATS)`` per position (about 1.8e-6 for a 128k vocabulary); the incident's
   approximate top-k miscompile and corrupted sampling produce such tokens when the server reports the raw
   distribution.

Score: the share of checked positions that violate a check; flagged when any does. The evidence is the first
violating token, with its character span when the tokens spell the response.

>>> det = SamplingConsistencyDetector()
>>> ctx = ResponseContext("The cat", tokens=["The", " cat"], token_logprobs=[-0.1, -3.0],
...     top_logprobs=[{"The": -0.1, "A": -2.5}, {" dog": -0.2, " cat": -3.0}], temperature=0.0)
>>> obs = det.score(ctx)
>>> obs.flagged, obs.evidence, obs.span, obs.score
(True, ' cat', (3, 7), 0.5)
>>> det.score(ResponseContext("The cat", tokens=["The", " cat"], token_logprobs=[-0.1, -3.0],
...     top_logprobs=[{"The": -0.1}, {" dog": -0.2, " cat": -3.0}], temperature=0.8, top_p=0.95)).flagged
False
"""

from __future__ import annotations

import math
from typing import Literal

from parity._exceptions import InvalidInputError
from parity.detectors._base import Observation, ResponseContext

__all__ = ["ARGMAX_TOLERANCE", "FAR_BELOW_NATS", "NUCLEUS_TOLERANCE", "SamplingConsistencyDetector"]

#: Nats by which an alternative may beat the chosen token at temperature 0 without proving a wrong argmax:
#: bf16 keeps 8 significant bits, so logits of magnitude up to 12 round by up to 12 * 2**-8 = 0.047; two tokens
#: closer than that may legitimately swap when the server takes the argmax in bf16 but reports fp32 logprobs
#: (vLLM #5404 is this tie).
ARGMAX_TOLERANCE = 0.05
#: Probability mass by which the alternatives above the chosen token must exceed ``top_p`` to prove it outside
#: the nucleus: covers the reported logprobs' rounding and the fp32-vs-bf16 cumulative sums that move the top-p
#: boundary slightly (the incident's exact top-k fix did that on purpose).
NUCLEUS_TOLERANCE = 0.005
#: Logprob gap below the best alternative beyond which a chosen token is implausible (see step 5).
FAR_BELOW_NATS = 25.0


class SamplingConsistencyDetector:
    """Checks each chosen token against the returned alternatives and the request's sampling parameters.

    ``mode="raw"`` (default) reads the logprobs as the model's distribution before temperature, top-k and top-p;
    ``mode="processed"`` as the distribution after them (renormalised over the kept tokens), in which case the
    top-p mass check is skipped (renormalisation breaks its bound) and the other checks still apply.

    >>> SamplingConsistencyDetector(mode="cooked")
    Traceback (most recent call last):
    ...
    parity._exceptions.InvalidInputError: `mode` must be 'raw' or 'processed', got 'cooked'
    """

    name = "sampling_consistency"

    def __init__(
        self,
        *,
        mode: Literal["raw", "processed"] = "raw",
        argmax_tolerance: float = ARGMAX_TOLERANCE,
        nucleus_tolerance: float = NUCLEUS_TOLERANCE,
        far_below_nats: float = FAR_BELOW_NATS,
    ) -> None:
        if mode not in ("raw", "processed"):
            raise InvalidInputError("mode", "must be 'raw' or 'processed'", mode)
        for arg, value in (
            ("argmax_tolerance", argmax_tolerance),
            ("nucleus_tolerance", nucleus_tolerance),
            ("far_below_nats", far_below_nats),
        ):
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise InvalidInputError(arg, "must be a finite number >= 0", value)
        self.mode = mode
        self.argmax_tolerance = float(argmax_tolerance)
        self.nucleus_tolerance = float(nucleus_tolerance)
        self.far_below_nats = float(far_below_nats)

    def violation(self, ctx: ResponseContext, i: int) -> str | None:
        """Why position ``i`` of ``ctx`` could not come from the requested sampler, or ``None`` if it could
        (or the data cannot tell).

        >>> ctx = ResponseContext("x", tokens=["x"], token_logprobs=[-9.0], top_logprobs=[{"y": -0.1, "z": -0.5}],
        ...     top_k=2)
        >>> SamplingConsistencyDetector().violation(ctx, 0)
        'top_k=2: 2 returned alternatives beat the chosen token'
        """
        if ctx.tokens is None or ctx.token_logprobs is None:
            return None
        token = ctx.tokens[i]
        chosen = ctx.token_logprobs[i]
        alts = ctx.top_logprobs[i] if ctx.top_logprobs is not None else None
        if chosen is None:
            if not alts or token not in alts:
                return None
            chosen = alts[token]
        if math.isnan(chosen) or chosen == -math.inf:
            return "the chosen token has zero probability"
        if not alts:
            return None
        temperature = ctx.temperature
        above = [lp for tok, lp in alts.items() if tok != token and lp is not None and lp > chosen]
        if not above:
            return None
        best = max(above)
        if temperature == 0 and best - chosen > self.argmax_tolerance:
            return f"temperature 0 but an alternative beats the chosen token by {best - chosen:.3g} nats"
        beating = sum(lp - chosen > self.argmax_tolerance for lp in above)
        if ctx.top_k is not None and ctx.top_k > 0 and beating >= ctx.top_k:
            return f"top_k={ctx.top_k}: {beating} returned alternatives beat the chosen token"
        raw = self.mode == "raw" and all(lp is not None and lp > -math.inf for lp in alts.values())
        if raw and ctx.top_p is not None and ctx.top_p < 1 and (temperature is None or temperature <= 1):
            mass = math.fsum(math.exp(lp) for lp in above)
            if mass >= ctx.top_p + self.nucleus_tolerance:
                return f"top_p={ctx.top_p}: alternatives above the chosen token hold {mass:.4f}"
        if best - chosen > self.far_below_nats * max(1.0, temperature or 0.0):
            return f"the chosen token is {best - chosen:.1f} nats below the best alternative"
        return None

    def score(self, ctx: ResponseContext) -> Observation:
        if ctx.tokens is None or ctx.token_logprobs is None or not ctx.tokens:
            return Observation(self.name, False, 0.0)
        first: int | None = None
        violations = 0
        for i in range(len(ctx.tokens)):
            if self.violation(ctx, i) is not None:
                violations += 1
                if first is None:
                    first = i
        score = violations / len(ctx.tokens)
        if first is None:
            return Observation(self.name, False, score)
        start = sum(len(t) for t in ctx.tokens[:first])
        end = start + len(ctx.tokens[first])
        span = (start, end) if ctx.response[start:end] == ctx.tokens[first] else None
        return Observation(self.name, True, score, evidence=ctx.tokens[first], span=span)
