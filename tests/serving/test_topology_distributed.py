"""The ``distributed`` topology (one deployment per component) on a real local Ray Serve, over
HTTP: the same decisions as in process, thresholds changed live through the Decider
deployment's user_config, write-back through the FeatureFetcher, and a model sleeping past the
deadline answered by the next rung. The shipped ``colocated`` topology runs the full HTTP and
fault suites (test_http_app, test_faults)."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from tests.serving.conftest import app_args
from tests.serving.helpers import (
    DECIDER,
    INGRESS,
    RedisServer,
    assert_matches_in_process,
    decision_app,
    reconfigured,
    seed_store,
    wait_for,
)
from tests.support.serving_standins import FEATURE_NAMES
from tests.support.traffic import live_transactions

pytestmark = [pytest.mark.serve, pytest.mark.integration, pytest.mark.ray]

KEY_PREFIX = "riskml-dist"


@pytest.fixture(scope="module")
def app(
    serve_instance: SimpleNamespace, reference: dict[str, Any], private_redis: RedisServer
) -> Iterator[SimpleNamespace]:
    source = seed_store(private_redis, reference, KEY_PREFIX)
    args = app_args(reference, private_redis, KEY_PREFIX, topology="distributed")
    with decision_app(
        serve_instance.url, args, name="riskml-dist", prefix="/dist", source=source
    ) as deployed:
        yield deployed


def test_every_component_is_its_own_deployment(app: SimpleNamespace) -> None:
    from ray import serve

    status = serve.status().applications[app.name]
    assert set(status.deployments) == {
        "Ingress",
        "FeatureFetcher",
        "XGBoostScorer",
        "SequenceScorer",
        "Decider",
    }


def test_decisions_match_in_process_scoring(app: SimpleNamespace) -> None:
    assert_matches_in_process(app, seed=23)


def test_thresholds_change_live_through_the_decider_deployment(app: SimpleNamespace) -> None:
    txs = live_transactions(5, seed=33, prefix="dthr")
    with reconfigured(app, decider={**DECIDER, "thresholds": {"review": 0.0, "decline": 0.0}}):
        out = [app.client.post("/v1/score", json=tx).json() for tx in txs]
        assert {o["decision"] for o in out} == {"decline"}
    info = app.client.get("/v1/model").json()
    assert info["decider_config"]["thresholds"] == DECIDER["thresholds"]


def test_write_back_goes_through_the_feature_fetcher(app: SimpleNamespace) -> None:
    from ray import serve

    tx = dict(
        live_transactions(1, seed=63, prefix="dwb")[0], customer_id=f"dwb-{uuid.uuid4().hex[:6]}"
    )
    assert app.client.post("/v1/score", json=tx).json()["flags"]["unknown_customer"] == 1
    key = f"{KEY_PREFIX}:c:{tx['customer_id']}"
    assert wait_for(lambda: app.source._redis.llen(key) == 1, timeout_s=10)
    handle = serve.get_deployment_handle("FeatureFetcher", app_name=app.name)
    ts = dt.datetime.fromisoformat(tx["ts"]) + dt.timedelta(seconds=60)
    nxt = dict(tx, tx_id=tx["tx_id"] + "-next", ts=ts.isoformat())
    (row,) = handle.get_many.remote([nxt]).result()
    assert row.flags["unknown_customer"] == 0
    assert row.tabular[FEATURE_NAMES.index("cust_cnt_1h")] == 1.0


def test_a_model_sleeping_past_the_deadline_is_answered_by_the_next_rung(
    app: SimpleNamespace,
) -> None:
    deadline = 150.0
    tight = {
        **INGRESS,
        "deadline_ms": deadline,
        "timeouts": {"features_ms": 80, "xgboost_ms": 60, "sequence_ms": 60, "decider_ms": 40},
        "experiment": {"enabled": True, "arms": {"slow": 1.0}},
    }
    with reconfigured(app, ingress=tight):
        for tx in live_transactions(6, seed=95, prefix="dsleepy"):
            t = time.perf_counter()
            o = app.client.post("/v1/score", json=tx).json()
            assert (time.perf_counter() - t) * 1e3 < 1000
            assert (o["decision_source"], o["fallback_reason"]) == ("rules", "xgboost_timeout")
            assert o["latency_ms"]["total"] <= deadline + 10, o["latency_ms"]
