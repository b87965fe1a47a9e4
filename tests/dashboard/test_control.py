"""Control bands: the exact binomial 3-sigma band, the Jeffreys baseline and where the baseline period ends."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from parity._exceptions import InvalidInputError
from parity.dashboard._control import SIGMAS, baseline_end, baseline_rate, control_band
from parity.monitor import Alert, Change

T = datetime(2025, 8, 25, tzinfo=UTC)


def test_band_is_p0_plus_minus_three_binomial_sigmas_clipped() -> None:
    band = control_band(0.02, [0, 50, 10_000])
    assert band.center == 0.02
    assert band.lower[0] is None
    assert band.upper[0] is None
    half = SIGMAS * math.sqrt(0.02 * 0.98 / 10_000)  # 0.0042
    assert band.upper[2] == pytest.approx(0.02 + half, abs=1e-15)
    assert band.lower[2] == pytest.approx(0.02 - half, abs=1e-15)
    assert band.lower[1] == 0.0  # 0.02 - 3 * sqrt(0.02 * 0.98 / 50) < 0
    assert band.upper[1] == pytest.approx(0.02 + 3 * math.sqrt(0.0196 / 50), abs=1e-15)
    assert control_band(0.9, [1]).upper == (1.0,)
    assert band.outside(0.2, 1)
    assert not band.outside(0.02, 2)
    assert not band.outside(0.5, 0)


def test_baseline_rate_is_the_jeffreys_posterior_mean() -> None:
    assert baseline_rate(0, 0) == 0.5
    assert baseline_rate(0, 199) == 0.0025
    assert baseline_rate(3, 99) == 0.035
    with pytest.raises(InvalidInputError, match="`k` must be in"):
        baseline_rate(5, 4)


def test_invalid_band_arguments() -> None:
    with pytest.raises(InvalidInputError, match=r"`p0` must be in \[0, 1\], got 1.5"):
        control_band(1.5, [1])
    with pytest.raises(InvalidInputError, match="`sigmas` must be > 0"):
        control_band(0.1, [1], sigmas=0)


def test_baseline_ends_at_the_first_alert_or_fault_change_touching_the_segment() -> None:
    def alert(segment: dict[str, str], start: datetime) -> Alert:
        return Alert("a", "unexpected_script", segment, start, start + timedelta(hours=1), 0.1, 0.0, 0.1, 5)

    changes = [
        Change("other-model", T, "corruption", {"model": "O"}),
        Change("undo", T + timedelta(days=1), "rollback", {"model": "S"}),  # rollbacks end faults, not baselines
        Change("tpu", T + timedelta(days=3), "sampler", {"platform": "tpu"}),
    ]
    alerts = [alert({"model": "S", "platform": "gpu"}, T + timedelta(days=2))]
    assert baseline_end({"model": "S", "platform": "tpu"}, alerts, changes) == T + timedelta(days=3)
    assert baseline_end({"model": "S"}, alerts, changes) == T + timedelta(days=2)
    assert baseline_end({"model": "O"}, alerts, changes) == T
    assert baseline_end({"model": "H", "platform": "gpu"}, alerts, changes) is None
