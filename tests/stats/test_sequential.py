"""Tests of the sequential change tests (CUSUM): validation, detection, estimates, and the false-alarm rate on clean
traffic (measured, since the threshold's bound assumes a known baseline)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from parity._exceptions import InvalidInputError
from parity.stats.sequential import DEFAULT_RATIOS, BernoulliCUSUM, GaussianCUSUM, cusum_threshold


def run(det: BernoulliCUSUM | GaussianCUSUM, xs: np.ndarray) -> int | None:
    """Index of the first alarm, or None."""
    for i, x in enumerate(xs.tolist()):
        det.update(x, float(i))
        if det.drift_detected:
            return i
    return None


def test_threshold_is_the_bonferroni_bound() -> None:
    g = len(DEFAULT_RATIOS)
    h = cusum_threshold(alpha=0.01, horizon=10_000, n_streams=50, n_alternatives=g)
    assert h == pytest.approx(math.log(g * 50 * 10_000 / 0.01))
    assert BernoulliCUSUM(alpha=0.01, horizon=10_000, n_streams=50).threshold == pytest.approx(h)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 0.0}, "`alpha` must be in"),
        ({"alpha": 1.5}, "`alpha` must be in"),
        ({"horizon": 0}, "`horizon` must be >= 1"),
        ({"n_streams": 0}, "`n_streams` must be >= 1"),
        ({"warmup": 0}, "`warmup` must be >= 1"),
        ({"threshold": -1.0}, "`threshold` must be > 0"),
        ({"ratios": ()}, "`ratios` must all be > 1"),
        ({"ratios": (1.0, 2.0)}, "`ratios` must all be > 1"),
        ({"prior_rate": 1.0}, "`prior_rate` must be in"),
    ],
)
def test_bernoulli_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        BernoulliCUSUM(**kwargs)  # type: ignore[arg-type]


def test_bernoulli_rejects_out_of_range_observation() -> None:
    det = BernoulliCUSUM()
    with pytest.raises(InvalidInputError, match=r"`x` must be in \[0, 1\]"):
        det.update(1.5)


def test_gaussian_validation() -> None:
    with pytest.raises(InvalidInputError, match="`shifts` must all be > 0"):
        GaussianCUSUM(shifts=(0.0,))
    with pytest.raises(InvalidInputError, match="`min_std` must be > 0"):
        GaussianCUSUM(min_std=0.0)
    with pytest.raises(InvalidInputError, match="`x` must be finite"):
        GaussianCUSUM().update(float("nan"))


def test_rare_rate_shift_is_detected_quickly_with_estimates(rng: np.random.Generator) -> None:
    delays, starts = [], []
    for _ in range(10):
        det = BernoulliCUSUM(alpha=0.01, horizon=1_000_000, n_streams=1000)  # production-sized threshold
        xs = rng.random(30_000) < np.r_[np.full(15_000, 0.001), np.full(15_000, 0.02)]
        hit = run(det, xs)
        assert hit is not None
        assert hit >= 15_000, "alarm before the change"
        delays.append(hit - 15_000)
        est = det.estimate()
        assert est is not None
        starts.append(est.change_point)
        assert 0.008 < est.current < 0.06
        assert est.effect == pytest.approx(est.current - est.baseline)
        assert est.baseline < 0.003
    # 0.1% -> 2% at a threshold of ~27.4: the best alternative gains ~0.045 nats per request -> ~600 requests
    assert float(np.median(delays)) < 1200
    assert abs(float(np.median(starts)) - 15_000) < 300


def test_latest_change_time_covers_a_start_masked_by_a_burst_before_it() -> None:
    """A chance burst of events just before the change starts the excursion early; the support interval's end
    still reaches the true change, which a change-point estimate alone would rule out."""
    det = BernoulliCUSUM(threshold=10.0, warmup=200)
    xs = [i % 10 == 0 for i in range(2000)]  # 10% baseline
    xs += [True, True, False, True, True] + [False] * 5  # a burst (5 in 10), then the change at 2010
    xs += [i % 3 == 0 for i in range(600)]  # 33%
    t_alarm = None
    for i, x in enumerate(xs):
        det.update(x, t=float(i))
        if det.drift_detected:
            t_alarm = i
            break
    assert t_alarm is not None
    assert t_alarm > 2010
    est = det.estimate()
    assert est is not None
    assert est.change_time is not None
    assert est.latest_change_time is not None
    assert est.change_time < 2010 <= est.latest_change_time <= t_alarm
    assert est.latest_change_point is not None
    assert est.change_point <= est.latest_change_point


def test_latest_change_time_is_tight_for_a_clear_change(rng: np.random.Generator) -> None:
    det = GaussianCUSUM(threshold=12.0, warmup=500)
    xs = np.r_[rng.normal(0.0, 1.0, 2000), rng.normal(3.0, 1.0, 200)]
    for i, x in enumerate(xs):
        det.update(float(x), t=float(i))
        if det.drift_detected:
            break
    est = det.estimate()
    assert est is not None
    assert est.change_time is not None
    assert est.latest_change_time is not None
    assert 1990 <= est.change_time <= est.latest_change_time <= 2005


def test_false_alarm_rate_on_clean_traffic(rng: np.random.Generator) -> None:
    """100 clean streams of 20,000 requests at a 0.1% flag rate under a family-wise alpha of 0.05: the bound is for
    a known baseline, so measure. Expected false alarms ~0 (the bound is conservative)."""
    n_streams, horizon = 100, 20_000
    alarms = 0
    for _ in range(n_streams):
        det = BernoulliCUSUM(alpha=0.05, horizon=horizon, n_streams=n_streams, warmup=500)
        alarms += run(det, rng.random(horizon) < 0.001) is not None
    assert alarms <= 1


def test_zero_base_rate_alarms_after_a_few_events() -> None:
    det = BernoulliCUSUM(alpha=0.01, horizon=1_000_000, n_streams=1000, warmup=1000)
    xs = np.r_[np.zeros(5000), np.tile([1.0] + [0.0] * 99, 50)]
    hit = run(det, xs)
    assert hit is not None
    # a rule that never fired, now violated by 1 request in 100: about 16 events at a production threshold of ~27
    assert 5000 <= hit < 5000 + 100 * 20


def test_bounded_scores(rng: np.random.Generator) -> None:
    det = BernoulliCUSUM(threshold=15.0, warmup=500)
    xs = np.clip(np.r_[rng.beta(1, 30, 5000), rng.beta(2, 20, 3000)], 0, 1)  # mean 0.032 -> 0.091
    hit = run(det, xs)
    assert hit is not None
    assert hit >= 5000
    est = det.estimate()
    assert est is not None
    assert est.current == pytest.approx(2 / 22, abs=0.03)


def test_resets_after_an_alarm_and_learns_the_new_level(rng: np.random.Generator) -> None:
    det = BernoulliCUSUM(threshold=12.0, warmup=1000)
    xs = rng.random(40_000) < np.r_[np.full(10_000, 0.001), np.full(30_000, 0.02)]
    first = run(det, xs)
    assert first is not None
    again = run(det, xs[first + 1 :])
    assert again is None, "the post-change level became the new baseline"
    assert det.baseline == pytest.approx(0.02, rel=0.3)


def test_no_alarm_during_warmup() -> None:
    det = BernoulliCUSUM(threshold=1.0, warmup=1000)
    assert run(det, np.ones(500)) is None


def test_gaussian_detects_both_directions(rng: np.random.Generator) -> None:
    for sign in (1.0, -1.0):
        det = GaussianCUSUM(alpha=0.01, horizon=100_000, n_streams=100, warmup=300)
        xs = np.r_[rng.normal(0.0, 1.0, 3000), rng.normal(sign * 1.0, 1.0, 2000)]
        hit = run(det, xs)
        assert hit is not None
        assert 3000 <= hit < 3100
        est = det.estimate()
        assert est is not None
        assert np.sign(est.effect) == sign
        assert est.change_time is not None


def test_gaussian_clean_stream_is_quiet(rng: np.random.Generator) -> None:
    alarms = sum(
        run(GaussianCUSUM(alpha=0.05, horizon=5000, n_streams=20), rng.normal(0.5, 0.1, 5000)) is not None
        for _ in range(20)
    )
    assert alarms <= 1


def test_default_ratios_cover_rare_event_shifts() -> None:
    assert min(DEFAULT_RATIOS) <= 2
    assert max(DEFAULT_RATIOS) >= 16  # within 1.25x of a 0.1% -> 2% shift
