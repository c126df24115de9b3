"""Decision-engine fixtures: the reference models the ladder tests decide with."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Champion/challenger XGBoost + tiny GRU trained on synthetic history (a few seconds)."""
    from tests.support.standin_models import reference_models

    return reference_models(tmp_path_factory.mktemp("reference-models"))
