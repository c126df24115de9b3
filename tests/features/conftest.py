"""Fixtures of the feature-store tests: one simulated dataset and its features per session. The
Redis with AUTH and the PostgreSQL database are tests/support/services.py's (via tests/conftest)."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from riskml.data.simulator import SimulationConfig, simulate
from riskml.features.batch import build_features
from tests.support.services import AuthRedis, free_port, need  # noqa: F401  (re-exported)

#: ~39k transactions over 35 days; about 1,200 on each day.
PARITY_SIM = SimulationConfig(
    n_customers=600, n_terminals=300, days=35, start_date=dt.date(2024, 1, 1), seed=3
)
#: The replayed day: history state and snapshots are materialised up to its 00:00.
REPLAY_DAY = dt.datetime(2024, 2, 3, tzinfo=dt.UTC)
#: Redis for the tests: the local server, own db index, own Feast project per test (cleaned up).
#: (Not a RISKML_* variable: riskml refuses RISKML_* names that are no setting.)
TEST_REDIS = os.environ.get("TEST_REDIS_URL", "localhost:6379,db=7")


@pytest.fixture(scope="session")
def sim_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("features-sim") / "dataset"
    simulate(PARITY_SIM, root)
    return root


@pytest.fixture(scope="session")
def features_dir(sim_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("features-built") / "features"
    build_features(sim_dataset, out, as_of=REPLAY_DAY)
    return out


@pytest.fixture(scope="session")
def make_store(features_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    """Apply + materialise (up to REPLAY_DAY) into a fresh store; returns its StoreConfig."""
    from riskml.features.store import StoreConfig, apply, materialize

    def make(online_store: str = "sqlite", *, redis_url: str = TEST_REDIS) -> StoreConfig:
        home = tmp_path_factory.mktemp(f"store-{online_store}")
        cfg = StoreConfig(
            home=home,
            features_dir=features_dir,
            online_store=online_store,
            redis_url=redis_url,
            project=f"t_{uuid.uuid4().hex[:10]}",
        )
        apply(cfg)
        materialize(REPLAY_DAY, config=cfg)
        return cfg

    return make


def redis_available(url: str = TEST_REDIS) -> bool:
    import redis

    host, _, rest = url.partition(":")
    port = int(rest.split(",")[0] or 6379)
    try:
        return bool(redis.Redis(host=host, port=port, socket_connect_timeout=1).ping())
    except redis.exceptions.RedisError:
        return False


@pytest.fixture()
def fresh_redis(make_store: Callable[..., Any]) -> Iterator[Any]:
    """A Redis store of its own (module stores may have had the replay day written back)."""
    from riskml.features.store import get_store

    need(redis_available(), f"no Redis at {TEST_REDIS}")
    cfg = make_store("redis")
    yield cfg
    get_store(cfg).teardown()
