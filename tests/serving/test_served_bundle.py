"""A real model bundle served over HTTP on Feast's online store (SQLite and the local Redis).

The ``world`` fixture (:func:`tests.support.world.build_world`): one simulated month, features
materialised as of the replay day, XGBoost + GRU trained in process on the point-in-time training
set before it, on the real ``fraud_v1`` feature contract. Each customer's first transaction of
the replay day has identical online and offline features, so the served score must equal
``riskml.models.bundle.score`` on its training-set row.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from riskml.features.definitions import FEATURE_SERVICE, feature_names
from tests.serving.helpers import INGRESS
from tests.support.world import World

pytestmark = [pytest.mark.serve, pytest.mark.integration, pytest.mark.slow]

TEST_REDIS = "localhost:6379,db=7"


@pytest.fixture(scope="module")
def first(world: World) -> SimpleNamespace:
    rows = world.first_per_customer()
    return SimpleNamespace(requests=world.requests(rows), expected=world.expected_scores(rows))


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def bundle_app(
    request: pytest.FixtureRequest, serve_instance: SimpleNamespace, world: World
) -> Iterator[SimpleNamespace]:
    import httpx
    from ray import serve

    from tests.features.conftest import redis_available
    from tests.serving.helpers import deploy

    online_store = request.param
    if online_store == "redis" and not redis_available(TEST_REDIS):
        pytest.fail("the local Redis on 6379 is not reachable (it is part of this machine)")
    store = world.store(online_store, TEST_REDIS if online_store == "redis" else None)
    name, prefix = f"bundle-{online_store}", f"/bundle-{online_store}"
    ingress = {**INGRESS, "write_back": False, "max_batch_size": 256}
    client = httpx.Client(base_url=serve_instance.url + prefix, timeout=60.0, trust_env=False)
    try:
        deploy(world.app_args(store), name, prefix, user_configs={"Ingress": ingress})
        yield SimpleNamespace(client=client, online_store=online_store)
    finally:
        client.close()
        serve.delete(name)
        world.drop_store(store)


def test_served_scores_equal_in_process_bundle_scores(
    bundle_app: SimpleNamespace, world: World, first: SimpleNamespace
) -> None:
    requests = first.requests
    assert len(requests) >= 200
    got: list[dict[str, Any]] = []
    for start in range(0, len(requests), 100):
        resp = bundle_app.client.post(
            "/v1/score/batch", json={"transactions": requests[start : start + 100]}
        )
        assert resp.status_code == 200, resp.text
        got += resp.json()["decisions"]
    assert [g["tx_id"] for g in got] == [r["tx_id"] for r in requests]
    sources = {g["decision_source"] for g in got}
    assert sources == {"ensemble"}, sources
    scores = np.array([g["score"] for g in got])
    np.testing.assert_allclose(scores, first.expected, rtol=0, atol=1e-6)
    # the answers carry the bundle's version, both models' scores and reason codes
    assert {g["model_version"] for g in got} == {world.bundle.name}
    assert all({"xgboost_calibrated", "sequence_calibrated"} <= set(g["scores"]) for g in got)
    contract = set(feature_names())  # reasons name features of the fraud_v1 contract
    assert any(g["reasons"] for g in got)
    assert all(r["feature"] in contract for g in got for r in g["reasons"])
    one = bundle_app.client.post("/v1/score", json=requests[0])
    assert one.status_code == 200
    assert one.json()["score"] == pytest.approx(first.expected[0], abs=1e-6)


def test_model_endpoint_describes_the_bundle(bundle_app: SimpleNamespace, world: World) -> None:
    info = bundle_app.client.get("/v1/model").json()
    assert info["champion"] == world.bundle.name
    assert info["sequence_model"] == f"{world.bundle.name}/sequence"
    assert info["decider_config"]["use_fitted_blend"] is True
    # the app serves the fraud_v1 FeatureService's features, in its order: the bundle's contract
    from riskml.models.bundle import load_bundle

    spec = load_bundle(world.bundle).spec
    assert spec.feature_service == FEATURE_SERVICE
    assert info["feature_names"] == list(spec.tabular) == feature_names()


def test_in_process_app_matches_the_bundle_and_writes_back(
    world: World, first: SimpleNamespace
) -> None:
    """The benchmark's in-process baseline runs the same components (no Ray, no HTTP); with
    write-back on, a customer's second transaction sees the first in its state."""
    import asyncio

    from serving.inprocess import InProcessApp

    store = world.store("sqlite")
    try:
        app = InProcessApp(world.app_args(store, ingress_config=INGRESS), write_back=True)
        decisions = asyncio.run(app.decide(first.requests[:50]))
        np.testing.assert_allclose(
            [d.score for d in decisions], first.expected[:50], rtol=0, atol=1e-6
        )
        customer = first.requests[0]["customer_id"]
        state, _version = app.source.online.history(customer)
        assert first.requests[0]["tx_id"] in list(state["hist_tx_id"])
        # idempotent by tx_id: the same transaction again changes nothing
        assert app.source.write_back(first.requests[0]) is False
    finally:
        world.drop_store(store)


def test_a_tampered_or_mismatched_bundle_is_refused(world: World, tmp_path: Path) -> None:
    from riskml.decision.protocols import FeatureContractMismatch
    from riskml.models.bundle import ModelArtifacts, load_bundle, save_bundle
    from riskml.models.ensemble import Blend
    from serving.config import AppArgs
    from serving.inprocess import InProcessApp

    with pytest.raises(ValidationError, match=r"no manifest\.json"):
        AppArgs.model_validate({"bundle_dir": str(tmp_path / "missing")})
    tampered = tmp_path / "tampered"
    shutil.copytree(world.bundle, tampered)
    with (tampered / "calibration.json").open("a") as fh:
        fh.write(" ")
    with pytest.raises(ValidationError, match="sha256 mismatch"):
        AppArgs.model_validate({"bundle_dir": str(tampered)})
    # a bundle whose contract lists the same features in another order is refused by name
    b = load_bundle(world.bundle)
    other = save_bundle(
        ModelArtifacts(
            spec=b.spec.model_copy(update={"tabular": b.spec.tabular[::-1]}),
            calibrators={"xgb": b.calibrators["xgb"]},
            blend=Blend("weighted", ["xgb"], weights=[1.0]),
            xgb_ubj=(world.bundle / "models" / "xgb.ubj").read_bytes(),
        ),
        tmp_path / "models",
        name="fraud",
    )
    store = world.store("sqlite")
    try:
        with pytest.raises(FeatureContractMismatch, match="different order"):
            InProcessApp(world.app_args(store) | {"bundle_dir": str(other)})
    finally:
        world.drop_store(store)


def test_feature_fetcher_keeps_the_fetched_history_to_itself(
    world: World, first: SimpleNamespace
) -> None:
    """Distributed topology: the FeatureFetcher deployment's rows carry the terminal risk for
    the write-back but not the customer's history (not worth two Serve calls of pickling)."""
    from serving.deployments import FeatureFetcher

    store = world.store("sqlite")
    try:
        spec = {"factory": "serving.bundle:FeastFeatureSource", "kwargs": {"store": store}}
        fetcher = FeatureFetcher.func_or_class(spec)
        tx = first.requests[0]
        (row,) = fetcher.get_many([tx])
        assert set(row.write_back) == {"terminal_risk"}
        assert "history_base" in fetcher.source.get_many([tx])[0].write_back
        assert fetcher.write_back_many([{**tx, **row.write_back}])["applied"] == 1
    finally:
        world.drop_store(store)


def test_batched_write_back_is_idempotent_and_handles_a_customer_twice(
    world: World, first: SimpleNamespace
) -> None:
    """What FeatureFetcher.write_back_many sends the Feast source: one read, one write."""
    import datetime as dt

    from serving.bundle import FeastFeatureSource

    store = world.store("sqlite")
    try:
        source = FeastFeatureSource(store)
        a, b = first.requests[:2]
        later = dt.datetime.fromisoformat(a["ts"]) + dt.timedelta(minutes=1)
        a2 = {**a, "tx_id": a["tx_id"] + "-2", "ts": later.isoformat()}
        assert source.write_back_many([a, a2, b, a]) == [True, True, True, False]
        state, _ = source.online.history(a["customer_id"])
        assert {a["tx_id"], a2["tx_id"]} <= set(state["hist_tx_id"])
        assert source.write_back_many([a2, b]) == [False, False]
    finally:
        world.drop_store(store)


def test_reason_contributions_explain_the_score_they_come_with(
    world: World, first: SimpleNamespace
) -> None:
    """Contributions add up to the served prediction's log-odds: the same trees (up to the
    bundle's best iteration, not every boosted round) explain the score the decision used."""
    from riskml.models.bundle import load_bundle
    from serving.bundle import BundleXGBoost

    model = BundleXGBoost(str(world.bundle))
    best = int(model.booster.attr("best_iteration"))
    assert best + 1 < model.booster.num_boosted_rounds()  # early stopping cut trees off
    n_features = len(load_bundle(world.bundle).spec.tabular)
    assert n_features == len(feature_names())
    rng = np.random.default_rng(3)
    x = rng.random((20, n_features)).astype(np.float32) * 5
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values take the trees' default branches
    p = model.predict(x)
    for exact in (False, True):
        contribs = model.contributions(x, exact=exact)
        assert contribs.shape == (20, n_features + 1)
        np.testing.assert_allclose(contribs.sum(axis=1), np.log(p / (1 - p)), atol=1e-4)
        # serving's one-pass path: the same contributions, and the probabilities predict gives
        probs, same = model.explain(x, exact=exact)
        np.testing.assert_array_equal(same, contribs)
        np.testing.assert_allclose(probs, p, rtol=0, atol=1e-6)


def test_write_back_takes_the_terminal_risk_and_history_its_fetch_read(
    world: World, first: SimpleNamespace
) -> None:
    """A fetched row hands its write-back the transaction's term_risk_30d and the customer's
    history as read: the written state is the one a write-back reading the terminal view and
    the history itself writes, without those reads (the history's version is checked)."""
    from serving.bundle import FeastFeatureSource

    tx = first.requests[3]
    stores = [world.store("sqlite"), world.store("sqlite")]
    try:
        hinted, plain = (FeastFeatureSource(s) for s in stores)
        (row,) = hinted.get_many([tx])
        risk = row.tabular[hinted.feature_names.index("term_risk_30d")]
        assert set(row.write_back) == {"terminal_risk", "history_base"}
        assert row.write_back["terminal_risk"] == risk
        state, version = row.write_back["history_base"]  # the customer's history as read
        assert (state.to_lists(), version) == (
            hinted.online.history(tx["customer_id"])[0].to_lists(),
            hinted.online.history(tx["customer_id"])[1],
        )
        online = hinted.online
        read = online._read_views
        views: list[tuple[str, list[str]]] = []

        def recording(reads: Any, conn: Any = None) -> Any:
            views.extend((fv.name, list(features)) for fv, _k, _i, features in reads)
            return read(reads, conn)

        online._read_views = recording  # type: ignore[method-assign]
        assert hinted.write_back_many([{**tx, **row.write_back}]) == [True]
        assert views == [("customer_history", ["hist_event_us"])]  # its version: no other read
        assert plain.write_back_many([tx]) == [True]
        a, _ = hinted.online.history(tx["customer_id"])
        b, _ = plain.online.history(tx["customer_id"])
        assert a.to_lists() == b.to_lists()
        at = list(a["hist_tx_id"]).index(tx["tx_id"])
        assert a["hist_terminal_risk"][at] == pytest.approx(risk)
    finally:
        for s in stores:
            world.drop_store(s)


def test_compiled_models_score_like_their_libraries_and_run_on_the_event_loop(
    world: World, first: SimpleNamespace
) -> None:
    """The bundle's scorers serve through the compiled trees and the fused GRU (the XGBoost
    and sequence stages of #26): the same probabilities as XGBoost and torch to 1e-6, and,
    declaring ``cpu_bounded``, the colocated Ingress runs them on its event loop with no
    thread pool of their own (the feature store keeps its bulkhead)."""
    from riskml.models.sequence import predict_proba
    from riskml.models.xgb import predict
    from serving.bundle import BundleSequence, BundleXGBoost
    from serving.inprocess import LocalComponents

    xgb_model, seq_model = BundleXGBoost(str(world.bundle)), BundleSequence(str(world.bundle))
    assert xgb_model.cpu_bounded and seq_model.cpu_bounded
    # a subclass may sleep or call out (the fault tests' slow model): it never inherits it
    from tests.support.faulty_components import SlowBundleXGBoost

    assert not SlowBundleXGBoost(str(world.bundle), "slow", 1.0).cpu_bounded
    assert seq_model.fused is not None
    rng = np.random.default_rng(5)
    n_tab = len(xgb_model.feature_names)
    x = (rng.normal(size=(64, n_tab)) * 3).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan
    seq = rng.normal(size=(64, 16, 7)).astype(np.float32)
    seq[:8] = np.nan  # customers with no history
    for rows in (slice(0, 1), slice(0, 64)):
        np.testing.assert_allclose(
            xgb_model.predict(x[rows]), predict(xgb_model.booster, x[rows]), atol=1e-6
        )
        np.testing.assert_allclose(
            seq_model.predict(x[rows], seq[rows]),
            predict_proba(seq_model.model, x[rows], seq[rows]),
            atol=1e-6,
        )
    store = world.store("sqlite")
    try:
        components = LocalComponents(world.app_args(store), offload=True)
        try:
            assert components.inline == {f"xgboost:{components.champion}", "sequence"}
            assert set(components._pools) == {"features", "write_back"}
        finally:
            components.close()
    finally:
        world.drop_store(store)
