"""Shared fixtures of the disputes tests: small simulated dispute sets, made once per session.

``dispute_set``: :meth:`DisputeConfig.small` (60 disputes on development template variants,
about 20 % of the documents scanned; ~8 s). ``held_out_dispute_set``: 40 disputes rendered only
in the held-out variants with other seeds (the corpus extraction rules were not written on).
Both are read-only for the tests that use them.
"""

from __future__ import annotations

import pytest

from riskml.data.disputes.simulator import DisputeConfig, DisputeSet, simulate_disputes
from riskml.data.simulator import SimulationConfig


@pytest.fixture(scope="session")
def dispute_config() -> DisputeConfig:
    return DisputeConfig.small()


@pytest.fixture(scope="session")
def dispute_set(
    tmp_path_factory: pytest.TempPathFactory, dispute_config: DisputeConfig
) -> DisputeSet:
    return simulate_disputes(dispute_config, tmp_path_factory.mktemp("disputes") / "set")


@pytest.fixture(scope="session")
def held_out_dispute_set(tmp_path_factory: pytest.TempPathFactory) -> DisputeSet:
    config = DisputeConfig.held_out(
        n_disputes=40,
        transactions=SimulationConfig(n_customers=150, n_terminals=100, days=240, seed=97),
    )
    return simulate_disputes(config, tmp_path_factory.mktemp("disputes-held-out") / "set")
