"""Shared fixtures. Every test gets its own RISKML_HOME so nothing leaks between tests; the
expensive ones (a private Ray head, synthetic training frames) are made once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from riskml.models.features import FeatureSpec
from riskml.orchestration.head import RayHead, start_head
from riskml.settings import get_settings
from riskml.training.synthetic import synthetic_frame, synthetic_spec


@pytest.fixture(autouse=True)
def riskml_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "riskml-home"
    monkeypatch.setenv("RISKML_HOME", str(home))
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def ray_head() -> Iterator[RayHead]:
    """A private Ray head (1 CPU, dashboard on, free ports, own temp dir), stopped afterwards
    by its own process group — never `ray stop`, which would hit other Ray instances."""
    head = start_head(num_cpus=1, include_dashboard=True, timeout_s=180)
    try:
        yield head
    finally:
        head.stop()


# -- synthetic training data (models, training) -------------------------------------------


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
