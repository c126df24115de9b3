"""Serving fixtures: reference models (trained once per session) and, for the Serve modules,
one local Ray + Serve for this package on free loopback ports, plus a private Redis (the world
with a bundle on the ``fraud_v1`` contract is the session's: tests/conftest.py).

Ray, Serve and the private Redis are *package*-scoped: they stop after the last serving test,
so later packages (training starts its own Ray) never meet them. The CLI lifecycle test
(test_cli) runs each command in a process of its own, so it passes in any module order.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from riskml.training.runtime import SERVE_REPLICA_ENV
from tests.serving.helpers import (
    KEY_PREFIX,
    RedisServer,
    local_serve,
    seed_store,
)


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Champion/challenger XGBoost + tiny GRU trained on synthetic history (a few seconds)."""
    from tests.support.standin_models import reference_models

    return reference_models(tmp_path_factory.mktemp("reference-models"))


@pytest.fixture(scope="package")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def serve_instance() -> Iterator[SimpleNamespace]:
    """A local Ray with Serve listening on a free loopback port; Ray metrics on another."""
    import ray

    if ray.is_initialized():  # pragma: no cover - an earlier package left a driver connected
        ray.shutdown()
    # SERVE_REPLICA_ENV: as every Serve cluster riskml runs
    with local_serve(SERVE_REPLICA_ENV, request_timeout_s=30) as instance:
        yield instance


def app_args(reference: dict[str, Any], redis: RedisServer, prefix: str, **extra: Any) -> dict:
    """Stand-in features on ``redis`` under key ``prefix``, champion ``v1``, challenger ``v2``
    and a ``slow`` version (sleeps 1 s) for the deadline tests."""
    from tests.support.standin_models import model_args

    spec = {
        "factory": "tests.support.serving_standins:RedisFeatureSource",
        "kwargs": {"url": redis.url, "prefix": prefix, "timeout_s": 0.05},
    }
    args = model_args(reference, spec, **extra)
    args["tabular_models"]["slow"] = {
        "factory": "tests.support.faulty_components:SlowScorer",
        "kwargs": {"path": reference["paths"]["xgb_v1"], "version": "slow", "delay_ms": 1000},
    }
    return args


@pytest.fixture(scope="package")
def decision_app(
    serve_instance: SimpleNamespace, reference: dict[str, Any], private_redis: RedisServer
) -> Iterator[SimpleNamespace]:
    """The app as it ships (topology ``colocated``) on Serve, 2 Ingress replicas."""
    from tests.serving.helpers import decision_app as deployed

    source = seed_store(private_redis, reference)
    with deployed(
        serve_instance.url,
        app_args(reference, private_redis, KEY_PREFIX),
        source=source,
        redis=private_redis,
        metrics_url=serve_instance.metrics_url,
    ) as app:
        yield app
