"""Shared fixtures of the evaluation tests: one small simulated dataset per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400 customers, 200 terminals, 30 days from 2024-01-01 (~23k rows, ~150 frauds)."""
    from riskml.data.simulator import SimulationConfig, simulate

    out = tmp_path_factory.mktemp("bt") / "tiny"
    simulate(SimulationConfig(n_customers=400, n_terminals=200, days=30, seed=3), out)
    return out
