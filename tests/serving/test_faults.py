"""Fault tests on a real local Ray Serve over HTTP, with a private redis-server as the online
store: a model sleeping past the deadline, the feature store stopped mid-run, and an Ingress
replica killed under load with client retries."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from serving.replay import replay
from tests.serving.helpers import (
    APP,
    INGRESS,
    reconfigured,
    seed_store,
    wait_for,
)
from tests.support.traffic import live_transactions

pytestmark = [
    pytest.mark.serve,
    pytest.mark.integration,
    pytest.mark.ray,
    pytest.mark.slow,
]

DEADLINE_MS = 150.0
TIGHT = {
    **INGRESS,
    "deadline_ms": DEADLINE_MS,
    "timeouts": {"features_ms": 80, "xgboost_ms": 60, "sequence_ms": 60, "decider_ms": 40},
}


@pytest.fixture(scope="module")
def app(decision_app: SimpleNamespace) -> SimpleNamespace:
    return decision_app


def test_a_model_sleeping_past_the_deadline_is_answered_by_the_next_rung(
    app: SimpleNamespace,
) -> None:
    txs = live_transactions(12, seed=91, prefix="sleepy")
    out, client_ms = [], []
    with reconfigured(
        app, ingress={**TIGHT, "experiment": {"enabled": True, "arms": {"slow": 1.0}}}
    ):
        for tx in txs:
            t = time.perf_counter()
            r = app.client.post("/v1/score", json=tx)
            client_ms.append((time.perf_counter() - t) * 1e3)
            assert r.status_code == 200
            out.append(r.json())
    for o in out:
        assert (o["decision_source"], o["fallback_reason"]) == ("rules", "xgboost_timeout")
        assert o["model_version"] == "slow"
        assert o["latency_ms"]["total"] <= DEADLINE_MS + 10, o["latency_ms"]
    # seen from the client: the 1 s model never holds the answer back
    assert sorted(client_ms)[len(client_ms) // 2] <= DEADLINE_MS + 60, client_ms
    assert max(client_ms) < 1000, client_ms


def test_feature_store_stopped_mid_run_still_answers_every_request(
    app: SimpleNamespace, reference: dict[str, Any]
) -> None:
    private_redis = app.redis
    txs = live_transactions(160, seed=93, prefix="redis-down")
    stop_at = 1.5
    stopped: dict[str, float] = {}

    def stopper() -> None:
        time.sleep(stop_at)
        private_redis.stop()
        stopped["t"] = time.perf_counter()

    thread = threading.Thread(target=stopper)
    try:
        with reconfigured(app, ingress=TIGHT):
            t0 = time.perf_counter()
            thread.start()
            report = replay(app.url, txs, rps=40, retries=0, timeout_s=5, keep_responses=True)
    finally:
        if thread.ident is not None:
            thread.join()
        private_redis.start()
        seed_store(private_redis, reference)
    assert report.errors == 0 and report.ok == len(txs), report.status
    after = [
        r
        for r in report.responses
        if r["t"] >= stopped["t"] - t0 + 0.25  # sent once it was down
    ]
    assert len(after) > 60
    bad = [
        (
            round(r["t"], 3),
            r["body"]["decision_source"],
            r["body"]["fallback_reason"],
            r["body"]["latency_ms"],
        )
        for r in after
        if (r["body"]["decision_source"], r["body"]["fallback_reason"])
        != ("rules", "feature_store_unavailable")
        or r["body"]["latency_ms"]["total"] > DEADLINE_MS
    ]
    assert not bad, (len(bad), bad[:5])
    before = [r["body"] for r in report.responses if r["t"] < stop_at - 0.2]
    assert before and {b["decision_source"] for b in before} & {"ensemble", "xgboost_only"}
    # the service recovers once the store is back
    recovered = wait_for(
        lambda: app.client.post("/v1/score", json=txs[0]).json()["decision_source"] != "rules",
        timeout_s=30,
    )
    assert recovered


def test_killing_a_replica_under_load_loses_no_request_with_client_retries(
    app: SimpleNamespace,
) -> None:
    import ray

    def ingress_replicas() -> list[str]:
        return sorted(
            a["name"]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if f"{APP}#Ingress#" in a["name"]
        )

    replicas = ingress_replicas()
    assert len(replicas) == 2, replicas
    txs = live_transactions(240, seed=97, prefix="kill")
    killed: list[str] = []

    def killer() -> None:
        time.sleep(2.0)
        ray.kill(ray.get_actor(replicas[0], namespace="serve"), no_restart=True)
        killed.append(replicas[0])

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        report = replay(app.url, txs, rps=40, retries=3, timeout_s=10)
    finally:
        thread.join()
    assert killed
    assert report.errors == 0 and report.ok == len(txs), (report.status, report.retries)
    # Serve replaced the dead replica
    assert wait_for(
        lambda: len(ingress_replicas()) == 2 and killed[0] not in ingress_replicas(), 120
    )
