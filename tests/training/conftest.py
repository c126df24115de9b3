"""Fixtures for the modelling tests: small synthetic training frames made in memory."""

from __future__ import annotations

from typing import Any

import pytest

from riskml.models.features import FeatureSpec
from riskml.training.synthetic import synthetic_frame, synthetic_spec


@pytest.fixture(scope="session")
def spec() -> FeatureSpec:
    return synthetic_spec(n_tabular=6, seq_len=8)


@pytest.fixture(scope="session")
def frame() -> Any:
    """6,000 rows over 20 days, 6 tabular features, 3 sequence features × 8 steps."""
    return synthetic_frame(6_000, days=20, n_tabular=6, seq_len=8, fraud_rate=0.05, seed=3)


@pytest.fixture(scope="session")
def later_frame() -> Any:
    """A later window (different seed) to test on."""
    return synthetic_frame(3_000, days=5, n_tabular=6, seq_len=8, fraud_rate=0.05, seed=11)
