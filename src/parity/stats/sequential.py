"""Sequential change detection for per-segment rates and means, with a false-alarm rate controlled across streams.

The method: a bank of one-sided CUSUMs (Page, 1954), one per post-change alternative, on a baseline the stream
estimates from its own history.

**Bernoulli rates and bounded means** (a detector's flag rate, feedback rate, routing violations; a score in [0,
1]). With baseline rate ``p0`` and an alternative ``q = min(r * p0, (1 + p0) / 2)`` (``r`` in ``ratios``), each
observation ``x`` adds the log-likelihood ratio ``l_r(x) = x log(q / p0) + (1 - x) log((1 - q) / (1 - p0))``; the
CUSUM is ``W_r = max(0, W_r + l_r(x))`` and the stream alarms when any ``W_r >= h``. Taking the largest ``W_r`` over
a grid of ``r`` is a discretised generalised likelihood ratio (GLR) over the unknown post-change rate. For ``x`` in
[0, 1] with mean at most ``p0`` the same increment is still a valid test: ``exp(l_r(x))`` is convex in ``x``, so it
lies below the chord between ``x = 0`` and ``x = 1`` and ``E[exp(l_r(x))] <= 1`` - the bound below holds for any
bounded score, not only for Bernoulli data. Rare events make this cheap: a run of zeros decays every ``W_r`` by a
known amount, so zeros are only counted and the bank is brought up to date when a one arrives (O(1) per zero,
O(len(ratios)) per one).

**Unbounded means** (:class:`GaussianCUSUM`, for scores not confined to [0, 1]): the same with Gaussian alternatives
``mu0 +/- c * sigma0`` (``c`` in ``shifts``), increment ``d (x - mu0) / sigma0**2 - d**2 / (2 sigma0**2)`` for ``d =
c * sigma0``, so both directions are watched.

**The threshold** (:func:`cusum_threshold`). For one alternative let ``R_n`` be the Shiryaev-Roberts statistic
``R_n = (1 + R_{n-1}) L_n``. Under no change ``E[L_n] = 1``, so ``R_n - n`` is a zero-mean martingale and
``R_n`` a non-negative submartingale with ``E[R_N] = N``; Doob's maximal inequality gives
``P(max_{n <= N} R_n >= A) <= N / A``. The CUSUM satisfies ``exp(W_n) = max_k prod_{i=k..n} L_i <= R_n``, so
``P(CUSUM alarms within N observations) <= N / e**h``. A union (Bonferroni) bound over ``G`` alternatives per
stream and ``S`` streams (every segment x signal) gives a family-wise probability of any false alarm within a
horizon of ``N`` observations per stream of at most ``G * S * N / e**h``; setting it to ``alpha``::

    h = log(G * S * N / alpha)

The bound holds for a known baseline; the baseline here is estimated (from every observation before the start of
the earliest excursion that reached a third of the threshold, so a change in progress does not leak into it;
alarms wait for ``warmup`` baseline observations),
which the bound does not cover, so the false-alarm rate on clean traffic is *measured*
(``tests/stats/test_sequential.py``, ``benchmarks/bench_detection.py``).

**Estimates.** When a CUSUM alarms, the change point is the first observation after it last left zero (the
CUSUM maximum-likelihood estimate of the change point for its alternative), ``current`` is the rate or mean since
then, and ``effect = current - baseline``. A rare signal pins its start down poorly: one pre-change event a few
dozen observations before the change starts the excursion there. So the estimate also carries the *latest*
plausible start: the last observation before which the CUSUM stood at most ``SUPPORT_LEVEL`` = log 32 above
zero. A change there has a likelihood at least 1/32 of the best one's (the CUSUM at ``tau`` is the log-likelihood
ratio of "the change began at the start" against "it began at ``tau``"), the end of Royall's 1/32 likelihood support
interval: later starts are ruled out only on strong evidence. Change attribution treats every start in
``[change_time, latest_change_time]`` as consistent with the data.

**Distribution.** A sequential test's state is owned by one process (the shard of its segment key); it is not merged.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> det = BernoulliCUSUM(threshold=12.0, warmup=2000)
>>> for i, x in enumerate(rng.random(20_000) < np.r_[np.full(10_000, 0.001), np.full(10_000, 0.02)]):
...     det.update(bool(x))
...     if det.drift_detected:
...         break
>>> det.drift_detected, 10_000 <= i < 10_600
(True, True)
>>> 9_700 <= det.change_point <= i, round(det.current, 2) > 0.01
(True, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from parity._exceptions import InvalidInputError

__all__ = [
    "DEFAULT_RATIOS",
    "DEFAULT_SHIFTS",
    "BernoulliCUSUM",
    "ChangeEstimate",
    "GaussianCUSUM",
    "cusum_threshold",
]

#: Post-change rate alternatives as multiples of the baseline rate. 2x to 16x covers the rare-event shifts the
#: monitor is for (a 0.1% -> 2% shift, 20x, is within a factor of 1.25 of 16x) at a cost of log(4) in the
#: threshold. Larger ratios were dropped on measurement: a 256x alternative jumps by log(256) = 5.5 nats on each
#: event, so two events a few requests apart - common on clean traffic - cross a practical threshold (with
#: (1.5, ..., 256) the bank needed h = 12 for at most 1 alarm in 30 clean streams of 30,000 requests at 0.2%;
#: with (2, 4, 8, 16) h = 8-9 suffices, and the detection delay dropped by 35-55%).
DEFAULT_RATIOS: tuple[float, ...] = (2.0, 4.0, 8.0, 16.0)

#: Mean-shift alternatives in units of the baseline standard deviation (each in both directions).
DEFAULT_SHIFTS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)

#: Smallest baseline rate used in the likelihood ratio: a signal that has never fired (a routing rule) still gets
#: a finite alarm cost, about ``h / log(16)`` events.
MIN_RATE = 1e-6

#: During a run of zeros the baseline is brought up to date every this many observations, so a quiet stream's
#: baseline stays current at O(1) amortised cost.
QUIET_FOLD_EVERY = 256

#: The baseline rate is the upper confidence bound ``(s + 1 + z sqrt(s + 1)) / (n + 1)`` of the ``s`` events in
#: ``n`` baseline observations: a plug-in estimate from few rare events is too low about half of the time, and a
#: baseline 35% too low makes the low-ratio alternatives drift upward on clean traffic (measured: 9 false alarms in
#: 100 clean streams with the plain estimate, where the bound promised < 0.05; 0 with this bound, for z = 0.5 as
#: for z = 1). The bound errs high instead, which costs some detection delay while the baseline holds few events.
BASELINE_Z = 0.5

#: An excursion whose CUSUM reaches this fraction of the threshold is suspicious: its observations are kept out of
#: the baseline until it falls back. Lower keeps more post-change data out of the baseline but biases it down
#: (flags start excursions); 1/3 gave the measured false-alarm rates in the tests and the benchmark.
SUSPICION_FRACTION = 1 / 3

#: A change point is plausible when the CUSUM stood at most this far (in nats) above zero just before it: its
#: likelihood is then at least 1/32 of the maximum-likelihood start's (Royall's 1/32 support interval, "strong
#: evidence" against what lies outside). Measured on the replay: 1/8 left out a cause that landed 27 h after a chance
#: burst began the excursion of a stream with a 10% clean rate (the CUSUM stood at 3.0 nats there).
SUPPORT_LEVEL = math.log(32.0)

#: Largest baseline used; an alternative is at most halfway from the baseline to 1, so likelihood ratios stay
#: finite.
MAX_RATE = 0.99


def cusum_threshold(*, alpha: float, horizon: int, n_streams: int = 1, n_alternatives: int = 1) -> float:
    """The alarm threshold ``h = log(n_alternatives * n_streams * horizon / alpha)`` (derivation in the module
    docstring): the probability of any false alarm among ``n_streams`` streams within ``horizon`` observations each
    is at most ``alpha`` for a known baseline.

    >>> round(cusum_threshold(alpha=0.01, horizon=1_000_000, n_streams=1000, n_alternatives=8), 2)
    27.41
    """
    if not 0 < alpha < 1:
        raise InvalidInputError("alpha", "must be in (0, 1)", alpha)
    if horizon < 1:
        raise InvalidInputError("horizon", "must be >= 1", horizon)
    if n_streams < 1:
        raise InvalidInputError("n_streams", "must be >= 1", n_streams)
    if n_alternatives < 1:
        raise InvalidInputError("n_alternatives", "must be >= 1", n_alternatives)
    return math.log(n_alternatives * n_streams * horizon / alpha)


@dataclass(frozen=True, slots=True)
class ChangeEstimate:
    """What a sequential test knows about a change: where it began (observation index, and the time label given to
    :meth:`update` there), the latest start the data still support (see the module docstring; ``None``: the
    same as ``change_time``), how many observations since, and the baseline and current levels."""

    change_point: int
    change_time: float | None
    n_after: int
    baseline: float
    current: float
    statistic: float
    latest_change_point: int | None = None
    latest_change_time: float | None = None

    @property
    def effect(self) -> float:
        """``current - baseline``, in the signal's unit."""
        return self.current - self.baseline


def _check_common(threshold: float | None, alpha: float, horizon: int, n_streams: int, warmup: int) -> None:
    if threshold is not None and not threshold > 0:
        raise InvalidInputError("threshold", "must be > 0", threshold)
    if not 0 < alpha < 1:
        raise InvalidInputError("alpha", "must be in (0, 1)", alpha)
    if horizon < 1:
        raise InvalidInputError("horizon", "must be >= 1", horizon)
    if n_streams < 1:
        raise InvalidInputError("n_streams", "must be >= 1", n_streams)
    if warmup < 1:
        raise InvalidInputError("warmup", "must be >= 1", warmup)


class BernoulliCUSUM:
    """A bank of Bernoulli CUSUMs for an increase of a rate over the stream's own baseline.

    ``threshold`` defaults to :func:`cusum_threshold` of ``alpha``, ``horizon``, ``n_streams`` and the number of
    ``ratios``. No alarm is raised before ``warmup`` baseline observations. After an alarm the next
    :meth:`update` starts over (the post-change level becomes the new baseline to learn).

    ``baseline`` fixes the pre-change rate instead of learning it: for *invariants*, events that a correct system
    never produces (a short request served by the long-context pool), whose rate is known to be at most a stated
    tolerance. Then there is no warm-up, alarms may come from the first observation, the baseline never moves,
    and the false-alarm bound of :func:`cusum_threshold` holds as derived (it assumes a known baseline). Large
    ``ratios`` suit it: with ``baseline=1e-5`` and ratios up to 1000, four events within a few hundred requests
    cross a threshold of 20.

    >>> det = BernoulliCUSUM(threshold=20.0, baseline=1e-5, ratios=(10.0, 100.0, 1000.0))
    >>> for i in range(400):
    ...     det.update(i % 100 == 99)  # a 1% violation rate from the first request on
    ...     if det.drift_detected:
    ...         break
    >>> i, round(det.baseline, 6)
    (399, 1e-05)

    >>> det = BernoulliCUSUM(alpha=0.01, horizon=10**6, n_streams=100)
    >>> round(det.threshold, 2)
    24.41
    >>> BernoulliCUSUM(ratios=(0.5,))
    Traceback (most recent call last):
    ...
    parity._exceptions.InvalidInputError: `ratios` must all be > 1, got (0.5,)
    """

    def __init__(
        self,
        *,
        threshold: float | None = None,
        alpha: float = 0.01,
        horizon: int = 1_000_000,
        n_streams: int = 1,
        ratios: Sequence[float] = DEFAULT_RATIOS,
        warmup: int = 1000,
        prior_rate: float = 0.0,
        prior_weight: float = 1.0,
        baseline_z: float = BASELINE_Z,
        baseline: float | None = None,
    ) -> None:
        _check_common(threshold, alpha, horizon, n_streams, warmup)
        if baseline is not None and not MIN_RATE <= baseline <= MAX_RATE:
            raise InvalidInputError("baseline", f"must be in [{MIN_RATE}, {MAX_RATE}] (or None to learn it)", baseline)
        self.fixed_baseline = baseline
        if baseline is not None:
            warmup = 1  # nothing to learn
        ratios = tuple(float(r) for r in ratios)
        if not ratios or any(not r > 1 for r in ratios):
            raise InvalidInputError("ratios", "must all be > 1", ratios)
        if not 0 <= prior_rate < 1:
            raise InvalidInputError("prior_rate", "must be in [0, 1)", prior_rate)
        if prior_weight < 0:
            raise InvalidInputError("prior_weight", "must be >= 0", prior_weight)
        self.alpha = alpha
        self.horizon = horizon
        self.n_streams = n_streams
        self.ratios = ratios
        self.warmup = warmup
        self.prior_rate = prior_rate
        self.prior_weight = prior_weight
        if baseline_z < 0:
            raise InvalidInputError("baseline_z", "must be >= 0", baseline_z)
        self.baseline_z = baseline_z
        self.threshold = (
            threshold
            if threshold is not None
            else cusum_threshold(alpha=alpha, horizon=horizon, n_streams=n_streams, n_alternatives=len(ratios))
        )
        self._reset()

    def _reset(self) -> None:
        self._n = 0  # observations seen since the last reset
        self._s = 0.0  # their sum
        self._base_n = 0  # observations in the baseline: those before any suspicious excursion
        self._base_s = 0.0
        # (n, sum) checkpoints: the baseline always keeps the observations up to ``_ck`` (n/4 <= _ck[0] <= n/2)
        self._ck: tuple[int, float] = (0, 0.0)
        self._ck_next: tuple[int, float] = (1, 0.0)
        self._zeros = 0  # zeros not yet applied to the CUSUMs
        self._stats = [0.0] * len(self.ratios)
        self._starts = [0] * len(self.ratios)  # index of the first observation of each excursion
        self._start_times: list[float | None] = [None] * len(self.ratios)
        self._start_s = [0.0] * len(self.ratios)  # sum of x before each excursion started
        self._late = [0] * len(self.ratios)  # latest observation before which the CUSUM was <= SUPPORT_LEVEL
        self._late_times: list[float | None] = [None] * len(self.ratios)
        self._p0 = 0.0
        self._jumps: list[float] = []
        self._decays: list[float] = []
        self._set_baseline()
        self._drift = False
        self._fired: int | None = None

    def _set_baseline(self) -> None:
        if self.fixed_baseline is not None:
            self._set_rates(self.fixed_baseline)
            return
        n = self._base_n + self.prior_weight
        s = self._base_s + self.prior_rate * self.prior_weight
        rate = (s + 1.0 + self.baseline_z * math.sqrt(s + 1.0)) / (n + 1.0)  # an upper confidence bound
        self._set_rates(min(max(rate, MIN_RATE), MAX_RATE))

    def _set_rates(self, p0: float) -> None:
        self._p0 = p0
        qs = [min(r * p0, (1.0 + p0) / 2) for r in self.ratios]
        self._jumps = [math.log(q / p0) for q in qs]
        self._decays = [-math.log((1 - q) / (1 - p0)) for q in qs]

    def _refresh_baseline(self) -> None:
        """Baseline = every observation before the earliest start of a *suspicious* excursion (a CUSUM at or above
        ``SUSPICION_FRACTION * threshold``), or every observation when none is, but never less than the first
        quarter to half of the history (a checkpoint). Cumulative sums make this O(G)."""
        if self.fixed_baseline is not None:
            return
        n = self._n
        if n >= 2 * self._ck_next[0]:
            self._ck, self._ck_next = self._ck_next, (n, self._s)
        cut_n, cut_s = n, self._s
        level = SUSPICION_FRACTION * self.threshold
        if max(self._stats) >= level:  # (the hot path of a busy stream skips the scan)
            for w, start, start_s in zip(self._stats, self._starts, self._start_s, strict=True):
                if w >= level and start < cut_n:
                    cut_n, cut_s = start, start_s
        if cut_n < self._ck[0]:
            # an excursion older than half the history is not a change in progress but a baseline gone stale (a
            # young baseline that saw no event by chance sets off the 2x alternative, which would then freeze the
            # baseline at its start for ever): keep at least the older half of the history
            cut_n, cut_s = self._ck
        # re-derive the likelihood ratios when the baseline shrank, or grew by 1/64 or 32 observations: recomputing
        # them on every event would dominate the cost of a busy stream
        if cut_n < self._base_n or cut_n - self._base_n >= max(self._base_n >> 6, 32):
            self._base_n, self._base_s = cut_n, cut_s
            self._set_baseline()

    @property
    def n(self) -> int:
        """Observations since the last reset."""
        return self._n

    @property
    def baseline(self) -> float:
        """The baseline rate used in the likelihood ratios."""
        return self._p0

    @property
    def mean(self) -> float:
        """The mean of every observation since the last reset (0 before any)."""
        return self._s / self._n if self._n else 0.0

    @property
    def statistic(self) -> float:
        """The largest CUSUM in the bank (brought up to date)."""
        self._apply_zeros()
        return max(self._stats)

    @property
    def drift_detected(self) -> bool:
        """Whether the last :meth:`update` raised an alarm."""
        return self._drift

    def _apply_zeros(self) -> None:
        if self._zeros:
            k = self._zeros
            self._stats = [max(0.0, w - k * d) for w, d in zip(self._stats, self._decays, strict=True)]
            self._zeros = 0

    def add_zeros(self, k: int) -> None:
        """The same as ``k`` calls of ``update(0)``, in O(1): a zero never raises an alarm, it only decays the
        CUSUMs, so a caller that sees many streams may count their zeros and hand them over in bulk."""
        if k <= 0:
            return
        if self._drift:
            self._reset()
        before = self._n
        self._n += k
        self._zeros += k
        if self._n // QUIET_FOLD_EVERY != before // QUIET_FOLD_EVERY:
            self._apply_zeros()
            self._refresh_baseline()

    def update(self, x: bool | int | float, t: float | None = None) -> None:
        """Add one observation (truthy = the event happened; a float in [0, 1] for a bounded score); ``t`` is an
        optional time label kept for the change point estimate."""
        if self._drift:
            self._reset()
        if not x:
            self._n += 1
            self._zeros += 1
            if self._n % QUIET_FOLD_EVERY == 0:
                self._apply_zeros()
                self._refresh_baseline()
            return
        x = float(x)
        if not 0.0 <= x <= 1.0:
            raise InvalidInputError("x", "must be in [0, 1]", x)
        if self._zeros:
            self._apply_zeros()
        if self.fixed_baseline is None:
            self._refresh_baseline()
        idx = self._n
        self._n = idx + 1
        self._s += x
        # the hot loop of the monitor (every score of every record): locals only, the same arithmetic as ever
        stats, jumps, decays = self._stats, self._jumps, self._decays
        s = self._s
        for i in range(len(stats)):
            w = stats[i]
            if w == 0.0:
                self._starts[i] = idx
                self._start_times[i] = t
                self._start_s[i] = s - x
            if w <= SUPPORT_LEVEL:  # zeros only lower the CUSUM, so before this event is where it was lowest
                self._late[i] = idx
                self._late_times[i] = t
            w += x * jumps[i] - (1.0 - x) * decays[i]
            stats[i] = w if w > 0.0 else 0.0
        if self._base_n >= self.warmup or self.fixed_baseline is not None:
            top = max(stats)
            if top >= self.threshold:
                self._drift = True
                self._fired = stats.index(top)  # the first of the largest, as before

    def estimate(self) -> ChangeEstimate | None:
        """The change estimate of the alarming CUSUM (or of the largest one while none has alarmed); ``None`` when
        no CUSUM is above zero."""
        self._apply_zeros()
        i = self._fired if self._fired is not None else max(range(len(self._stats)), key=self._stats.__getitem__)
        if self._stats[i] <= 0.0:
            return None
        n_after = self._n - self._starts[i]
        ones = self._s - self._start_s[i]
        return ChangeEstimate(
            change_point=self._starts[i],
            change_time=self._start_times[i],
            n_after=n_after,
            baseline=self._p0,
            current=ones / n_after,
            statistic=self._stats[i],
            latest_change_point=self._late[i],
            latest_change_time=self._late_times[i],
        )

    @property
    def change_point(self) -> int | None:
        """Index (since the last reset) of the first observation of the change, or ``None``."""
        est = self.estimate()
        return None if est is None else est.change_point

    @property
    def current(self) -> float:
        """The rate since the estimated change point (the baseline when there is none)."""
        est = self.estimate()
        return self._p0 if est is None else est.current


class GaussianCUSUM:
    """A bank of two-sided Gaussian CUSUMs for a shift of a mean (a score) from the stream's own baseline.

    The baseline mean and standard deviation are learned (Welford) from observations outside any excursion;
    ``min_std`` keeps a constant baseline from making every wiggle an alarm.

    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> det = GaussianCUSUM(threshold=12.0, warmup=500)
    >>> xs = np.r_[rng.normal(0.9, 0.05, 3000), rng.normal(0.8, 0.05, 1000)]
    >>> for i, x in enumerate(xs):
    ...     det.update(float(x))
    ...     if det.drift_detected:
    ...         break
    >>> det.drift_detected, 3000 <= i < 3020, round(det.estimate().effect, 1)
    (True, True, -0.1)
    """

    def __init__(
        self,
        *,
        threshold: float | None = None,
        alpha: float = 0.01,
        horizon: int = 1_000_000,
        n_streams: int = 1,
        shifts: Sequence[float] = DEFAULT_SHIFTS,
        warmup: int = 200,
        min_std: float = 1e-3,
    ) -> None:
        _check_common(threshold, alpha, horizon, n_streams, warmup)
        shifts = tuple(float(c) for c in shifts)
        if not shifts or any(not c > 0 for c in shifts):
            raise InvalidInputError("shifts", "must all be > 0", shifts)
        if not min_std > 0:
            raise InvalidInputError("min_std", "must be > 0", min_std)
        self.alpha = alpha
        self.horizon = horizon
        self.n_streams = n_streams
        self.shifts = shifts
        self.warmup = warmup
        self.min_std = min_std
        self._signed = tuple(s * c for c in shifts for s in (1.0, -1.0))
        self.threshold = (
            threshold
            if threshold is not None
            else cusum_threshold(alpha=alpha, horizon=horizon, n_streams=n_streams, n_alternatives=len(self._signed))
        )
        self._reset()

    def _reset(self) -> None:
        self._n = 0
        self._base_n = 0
        self._base_mean = 0.0
        self._base_m2 = 0.0
        self._pending: list[float] = []
        self._stats = [0.0] * len(self._signed)
        self._starts = [0] * len(self._signed)
        self._start_times: list[float | None] = [None] * len(self._signed)
        self._sums = [0.0] * len(self._signed)  # sum of observations since each excursion started
        self._late = [0] * len(self._signed)  # latest observation before which the CUSUM was <= SUPPORT_LEVEL
        self._late_times: list[float | None] = [None] * len(self._signed)
        self._drift = False
        self._fired: int | None = None

    @property
    def n(self) -> int:
        """Observations since the last reset."""
        return self._n

    @property
    def baseline(self) -> float:
        """The baseline mean."""
        return self._base_mean

    @property
    def std(self) -> float:
        """The baseline standard deviation (at least ``min_std``)."""
        var = self._base_m2 / (self._base_n - 1) if self._base_n > 1 else 0.0
        return max(math.sqrt(var), self.min_std)

    @property
    def statistic(self) -> float:
        """The largest CUSUM in the bank."""
        return max(self._stats)

    @property
    def drift_detected(self) -> bool:
        """Whether the last :meth:`update` raised an alarm."""
        return self._drift

    def update(self, x: float, t: float | None = None) -> None:
        """Add one observation; ``t`` is an optional time label kept for the change point estimate."""
        if self._drift:
            self._reset()
        x = float(x)
        if not math.isfinite(x):
            raise InvalidInputError("x", "must be finite", x)
        idx = self._n
        self._n += 1
        if self._base_n < self.warmup:  # learn the baseline first
            self._fold([x])
            return
        mu, sd = self._base_mean, self.std
        var = sd * sd
        self._pending.append(x)
        for i, c in enumerate(self._signed):
            d = c * sd
            w = self._stats[i]
            if w == 0.0:
                self._starts[i] = idx
                self._start_times[i] = t
                self._sums[i] = 0.0
            if w <= SUPPORT_LEVEL:
                self._late[i] = idx
                self._late_times[i] = t
            w = w + d * (x - mu) / var - d * d / (2 * var)
            if w <= 0.0:
                w = 0.0
            self._stats[i] = w
            self._sums[i] += x
        if not any(self._stats):
            self._fold(self._pending)
            self._pending = []
        elif len(self._pending) > 4 * self.warmup:
            # a long excursion below threshold: keep memory bounded by folding its oldest half
            half = len(self._pending) // 2
            self._fold(self._pending[:half])
            self._pending = self._pending[half:]
        top = max(range(len(self._stats)), key=self._stats.__getitem__)
        if self._stats[top] >= self.threshold:
            self._drift = True
            self._fired = top

    def _fold(self, xs: Sequence[float]) -> None:
        for x in xs:
            self._base_n += 1
            delta = x - self._base_mean
            self._base_mean += delta / self._base_n
            self._base_m2 += delta * (x - self._base_mean)

    def estimate(self) -> ChangeEstimate | None:
        """The change estimate of the alarming CUSUM (or of the largest one); ``None`` when all are at zero."""
        i = self._fired if self._fired is not None else max(range(len(self._stats)), key=self._stats.__getitem__)
        if self._stats[i] <= 0.0:
            return None
        n_after = self._n - self._starts[i]
        return ChangeEstimate(
            change_point=self._starts[i],
            change_time=self._start_times[i],
            n_after=n_after,
            baseline=self._base_mean,
            current=self._sums[i] / n_after,
            statistic=self._stats[i],
            latest_change_point=self._late[i],
            latest_change_time=self._late_times[i],
        )

    @property
    def change_point(self) -> int | None:
        """Index (since the last reset) of the first observation of the change, or ``None``."""
        est = self.estimate()
        return None if est is None else est.change_point
