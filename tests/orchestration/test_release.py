"""``release``: verify, promote in the MLflow registry, and on a cluster roll the RayService
(the fake API server playing KubeRay) — with the alias put back when the rollout fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from riskml.models.bundle import save_bundle
from riskml.orchestration.deploy import DeployError
from riskml.orchestration.release import release
from riskml.registry import store
from riskml.registry.store import RegistryError
from tests.orchestration.fake_k8s import FakeKube, ServeOutcome

pytestmark = pytest.mark.k8s

NS, NAME = "riskml-serving", "riskml-scoring"
FAST: dict[str, Any] = {"poll_s": 0.01, "timeout_s": 5.0}


@pytest.fixture
def register(artifacts: Any, tmp_path: Path, riskml_home: Path) -> Any:
    """Register a new bundle version of ``fraud`` in this test's embedded registry."""

    def _register(version: str) -> store.ModelRef:
        bundle = save_bundle(artifacts, tmp_path / "out", name="fraud", version=version)
        return store.register(bundle, metrics={"ap": 0.5}, decision="deploy")

    return _register


def _release(kube: FakeKube, ref: store.ModelRef, expected: str | None) -> dict[str, Any]:
    return release(ref, expected=expected, target="cluster", api_client=kube.api_client(), **FAST)


def test_cluster_release_promotes_and_rolls_the_app_to_the_pinned_version(
    kube: FakeKube, register: Any
) -> None:
    v1 = register("v1")
    out = _release(kube, v1, None)
    assert store.champion("fraud") == v1 and out["previous_champion"] is None
    assert kube.app_args(NS, NAME) == {
        "model_uri": "models:/fraud/1",
        "model_digest": v1.digest,
        "online_store": "redis",
    }
    assert out["rayservice"]["status"] == "RUNNING" and out["version"] == "1"

    v2 = register("v2")
    out = _release(kube, v2, "1")
    assert store.champion("fraud") == v2 and out["previous_champion"] == "1"
    assert out["rayservice"]["previous_args"]["model_uri"] == "models:/fraud/1"
    assert kube.app_args(NS, NAME)["model_uri"] == "models:/fraud/2"


def test_a_failed_rollout_puts_the_champion_and_the_app_back(kube: FakeKube, register: Any) -> None:
    v1, v2 = register("v1"), register("v2")
    _release(kube, v1, None)

    def outcome(doc: dict[str, Any]) -> ServeOutcome:
        args = doc["applications"][0]["args"]
        bad = args["model_uri"] == "models:/fraud/2"
        return ServeOutcome("DEPLOY_FAILED", message="no space left") if bad else ServeOutcome()

    kube.serve_outcome = outcome
    with pytest.raises(DeployError, match=r"DEPLOY_FAILED.*no space left.*rolled back"):
        _release(kube, v2, "1")
    assert store.champion("fraud") == v1
    assert kube.app_args(NS, NAME)["model_uri"] == "models:/fraud/1"
    assert kube.app_args(NS, NAME)["model_digest"] == v1.digest


def test_a_stale_gate_decision_touches_neither_registry_nor_cluster(
    kube: FakeKube, register: Any
) -> None:
    v1, v2, v3 = register("v1"), register("v2"), register("v3")
    _release(kube, v1, None)
    _release(kube, v3, "1")  # another run deployed v3 after v2's gate compared against v1
    before = yaml.safe_load(kube.rayservice(NS, NAME)["spec"]["serveConfigV2"])
    requests = len(kube.requests)
    with pytest.raises(RegistryError, match=r"moved since the gate.*gate: 1, now: 3"):
        _release(kube, v2, "1")
    assert store.champion("fraud") == v3
    assert len(kube.requests) == requests  # the cluster was not even read
    assert yaml.safe_load(kube.rayservice(NS, NAME)["spec"]["serveConfigV2"]) == before


def test_an_unknown_target_is_refused_before_anything(register: Any) -> None:
    v1 = register("v1")
    with pytest.raises(DeployError, match="unknown deploy target 'prod'"):
        release(v1, expected=None, target="prod")
    assert store.champion("fraud") is None
