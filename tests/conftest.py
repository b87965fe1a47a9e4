"""Shared test set-up: every test gets its own seeded generator; nothing seeds globally."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Property tests are derandomized so a failure reproduces on every machine; CI and local runs agree.
settings.register_profile(
    "parity", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100
)
settings.load_profile("parity")


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, seeded numpy generator per test."""
    return np.random.default_rng(20250917)
