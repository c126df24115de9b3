"""Misbehaving components for the serving and decision tests (importable by Serve replicas
through PYTHONPATH, see tests/serving/conftest.py)."""

from __future__ import annotations

import time
from typing import Any

from serving.bundle import BundleXGBoost
from serving.scorers import XGBoostFileScorer
from tests.support.serving_standins import InMemoryFeatureSource


class SlowScorer(XGBoostFileScorer):
    """A real XGBoost model that sleeps before answering (a model past its deadline)."""

    def __init__(self, path: str, version: str, delay_ms: float) -> None:
        super().__init__(path, version)
        self.delay_s = delay_ms / 1e3

    def predict(self, x: Any) -> Any:
        time.sleep(self.delay_s)
        return super().predict(x)

    def explain(self, x: Any, *, exact: bool = False) -> Any:  # serving's one-pass path
        time.sleep(self.delay_s)
        return super().explain(x, exact=exact)


class SlowBundleXGBoost(BundleXGBoost):
    """A model bundle's own booster that sleeps ``delay_ms`` before answering: the production
    scorer past its deadline (the fault tests on the bundle app, :mod:`tests.support.faults`)."""

    def __init__(self, bundle_dir: str, version: str, delay_ms: float) -> None:
        super().__init__(bundle_dir, version)
        self.delay_s = delay_ms / 1e3

    def predict(self, x: Any) -> Any:
        time.sleep(self.delay_s)
        return super().predict(x)

    def contributions(self, x: Any, *, exact: bool = False) -> Any:
        time.sleep(self.delay_s)
        return super().contributions(x, exact=exact)

    def explain(self, x: Any, *, exact: bool = False) -> Any:
        time.sleep(self.delay_s)
        return super().explain(x, exact=exact)


class ReorderedSource(InMemoryFeatureSource):
    """Serves the stand-in features with two columns swapped in its contract."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        names = list(self.feature_names)
        names[0], names[1] = names[1], names[0]
        self.feature_names = tuple(names)
