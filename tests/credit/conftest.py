"""Shared fixtures of the credit tests: one small simulated portfolio per session.

``credit_portfolio`` is :meth:`LoanSimConfig.small` (18 vintages x 150 loans, 17 x 60
impressions x 8 candidates; well under a second). Treat it as read-only: polars frames are
immutable, but the ``Portfolio`` object is shared by every test of the session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from riskml.data.credit.simulator import LoanSimConfig, Portfolio, simulate_portfolio

#: The seed of the shared portfolio (tests that need another world build their own).
CREDIT_SEED = 7


@pytest.fixture(scope="session")
def credit_config() -> LoanSimConfig:
    return LoanSimConfig.small(seed=CREDIT_SEED)


@pytest.fixture(scope="session")
def credit_portfolio(credit_config: LoanSimConfig) -> Portfolio:
    """A small simulated portfolio: ``.loans``, ``.performance``, ``.offers``, ``.config``."""
    return simulate_portfolio(credit_config)


@pytest.fixture(scope="session")
def credit_portfolio_dir(
    credit_portfolio: Portfolio, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The same portfolio written with ``Portfolio.write`` (manifest + three Parquet files)."""
    return credit_portfolio.write(tmp_path_factory.mktemp("credit") / "portfolio")
