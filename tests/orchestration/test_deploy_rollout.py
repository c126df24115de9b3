"""``rollout_rayservice``: the real kubernetes client against the fake API server
(tests/orchestration/fake_k8s.py) playing KubeRay 1.x - optimistic concurrency on
``metadata.resourceVersion``, waiting for the patched generation to be healthy, rollback."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from riskml.k8s.manifests import K8S_DIR, RAYSERVICE_PATH, load_yaml_documents
from riskml.orchestration.deploy import (
    STATUS_FIELDS,
    DeployError,
    rayservice_health,
    rollout_rayservice,
)
from riskml.settings import get_settings
from tests.orchestration.fake_k8s import FakeKube, ServeOutcome
from tests.support.services import need

pytestmark = pytest.mark.k8s

NS, NAME = "riskml-serving", "riskml-scoring"
GOOD = {"model_uri": "models:/fraud/7", "model_digest": "a" * 64}
BAD = {"model_uri": "models:/fraud/8", "model_digest": "b" * 64}
FAST: dict[str, Any] = {"poll_s": 0.01, "timeout_s": 5.0}


def _uri(doc: dict[str, Any]) -> str:
    app = next(a for a in doc["applications"] if a["name"] == "riskml")
    return str((app.get("args") or {}).get("model_uri", ""))


def _fail(status: str, **kw: Any) -> Any:
    """Outcome: ``BAD`` ends in ``status``; anything else (the rollback) becomes RUNNING."""
    return lambda doc: (
        ServeOutcome(status, **kw) if _uri(doc) == BAD["model_uri"] else ServeOutcome()
    )


def _rollout(kube: FakeKube, args: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return rollout_rayservice(args, api_client=kube.api_client(), **{**FAST, **kw})


def _their_deploy(kube: FakeKube, hooks: list[Any]) -> str:
    """Another deploy (to ``models:/fraud/9``) lands at the point ``hooks`` runs; returns its
    serveConfigV2."""
    doc = yaml.safe_load(kube.rayservice(NS, NAME)["spec"]["serveConfigV2"])
    doc["applications"][0]["args"]["model_uri"] = "models:/fraud/9"
    theirs = yaml.safe_dump(doc, sort_keys=False)
    hooks.append(lambda: kube.patch_rayservice(NS, NAME, {"spec": {"serveConfigV2": theirs}}))
    return theirs


def _calls(kube: FakeKube) -> list[tuple[str, str]]:
    prefix = f"/apis/ray.io/v1/namespaces/{NS}/rayservices/{NAME}"
    return [(r["method"], r["path"].removeprefix(prefix) or "/") for r in kube.requests]


def test_healthy_rollout_sets_the_args_and_waits_for_the_new_generation(kube: FakeKube) -> None:
    kube.serve_outcome = lambda doc: ServeOutcome("RUNNING", polls=3, lag=2)
    before = kube.rayservice(NS, NAME)
    previous = kube.app_args(NS, NAME)
    assert previous["model_uri"] == "models:/fraud@champion"  # the shipped args

    out = _rollout(kube, GOOD)

    expected = previous | GOOD
    assert kube.app_args(NS, NAME) == expected
    assert out["rayservice"] == f"{NS}/{NAME}" and out["app"] == "riskml"
    assert out["previous_args"] == previous and out["args"] == expected
    assert out["status"] == "RUNNING" and out["generation"] == 2
    assert 0 <= out["waited_s"] < 5
    # the patch carried the GET's resourceVersion (a precondition) and only serveConfigV2
    patch = next(r for r in kube.requests if r["method"] == "PATCH")
    assert patch["content_type"] == "application/merge-patch+json"
    assert patch["body"]["metadata"] == {"resourceVersion": before["metadata"]["resourceVersion"]}
    assert set(patch["body"]["spec"]) == {"serveConfigV2"}
    assert out["resource_version"] != before["metadata"]["resourceVersion"]
    # it did not take the stale RUNNING (old generation) for success: 2 lagging + 3 deploying
    # status reads, then the RUNNING one
    calls = _calls(kube)
    assert calls[:2] == [("GET", "/"), ("PATCH", "/")]
    assert calls[2:] == [("GET", "/status")] * 6
    # everything but the app args is the same Serve config
    old_doc = yaml.safe_load(before["spec"]["serveConfigV2"])
    new_doc = yaml.safe_load(kube.rayservice(NS, NAME)["spec"]["serveConfigV2"])
    old_doc["applications"][0].pop("args"), new_doc["applications"][0].pop("args")
    assert new_doc == old_doc
    assert (
        kube.rayservice(NS, NAME)["spec"]["rayClusterConfig"] == before["spec"]["rayClusterConfig"]
    )


def test_a_concurrent_change_between_get_and_patch_is_refused(kube: FakeKube) -> None:
    theirs = _their_deploy(kube, kube.before_patch)

    with pytest.raises(DeployError, match="changed concurrently") as info:
        _rollout(kube, GOOD)

    assert "not patched" in str(info.value)
    assert kube.app_args(NS, NAME)["model_uri"] == "models:/fraud/9"  # theirs kept
    assert kube.rayservice(NS, NAME)["spec"]["serveConfigV2"] == theirs
    assert [c for c in _calls(kube) if c[0] == "PATCH"] == [("PATCH", "/")]  # no retry


def test_a_status_only_write_between_get_and_patch_is_retried(kube: FakeKube) -> None:
    def status_write() -> None:  # KubeRay refreshing the status: resourceVersion moves
        with kube.lock:
            svc = kube.services[(NS, NAME)]
            svc["status"]["numServeEndpoints"] = 3
            svc["metadata"]["resourceVersion"] = kube._next_rv()

    kube.before_patch.append(status_write)
    out = _rollout(kube, GOOD)
    assert out["status"] == "RUNNING" and kube.app_args(NS, NAME)["model_uri"] == GOOD["model_uri"]
    patches = [r for r in kube.requests if r["method"] == "PATCH"]
    assert len(patches) == 2
    assert patches[0]["body"]["metadata"] != patches[1]["body"]["metadata"]


@pytest.mark.parametrize("failure", ["DEPLOY_FAILED", "UNHEALTHY"])
def test_a_failed_app_is_rolled_back(kube: FakeKube, failure: str) -> None:
    kube.serve_outcome = _fail(failure, message="ImportError: no module named 'fraud'")
    original = kube.rayservice(NS, NAME)["spec"]["serveConfigV2"]
    previous = kube.app_args(NS, NAME)

    with pytest.raises(DeployError) as info:
        _rollout(kube, BAD)

    message = str(info.value)
    assert failure in message and "ImportError" in message
    assert "models:/fraud/8" in message and "rolled back to the previous args" in message
    assert "failed too" not in message
    # the previous config is back, verbatim, and KubeRay reports it healthy
    svc = kube.rayservice(NS, NAME)
    assert svc["spec"]["serveConfigV2"] == original and kube.app_args(NS, NAME) == previous
    assert rayservice_health(svc, "riskml", svc["metadata"]["generation"])[0] == "healthy"
    assert svc["metadata"]["generation"] == 3  # rollout + rollback
    # both patches were preconditioned on the then-current resourceVersion
    patches = [r for r in kube.requests if r["method"] == "PATCH"]
    assert len(patches) == 2 and all(p["body"]["metadata"]["resourceVersion"] for p in patches)
    result = info.value.result
    assert result is not None and result["rolled_back"] is True
    assert result["previous_args"] == previous and result["status"] == failure


def test_a_rollout_that_never_gets_healthy_times_out_and_rolls_back(kube: FakeKube) -> None:
    kube.serve_outcome = _fail("DEPLOYING")  # the new app never leaves DEPLOYING
    original = kube.rayservice(NS, NAME)["spec"]["serveConfigV2"]
    started = time.monotonic()

    with pytest.raises(DeployError, match=r"timed out: not healthy after 0\.3s") as info:
        _rollout(kube, BAD, timeout_s=0.3, poll_s=0.02)

    assert time.monotonic() - started < 3
    assert "DEPLOYING" in str(info.value) and "rolled back to the previous args" in str(info.value)
    assert kube.rayservice(NS, NAME)["spec"]["serveConfigV2"] == original


def test_a_rollback_that_fails_too_is_reported(kube: FakeKube) -> None:
    kube.serve_outcome = lambda doc: ServeOutcome("DEPLOY_FAILED")  # the old config too
    with pytest.raises(DeployError, match="failed too") as info:
        _rollout(kube, BAD)
    assert "restored the previous serveConfigV2 but it is not healthy" in str(info.value)
    assert info.value.result is not None and info.value.result["rolled_back"] is False


def test_a_change_by_someone_else_during_the_wait_is_not_rolled_back(kube: FakeKube) -> None:
    kube.serve_outcome = _fail("DEPLOY_FAILED")
    theirs = _their_deploy(kube, kube.after_patch)

    with pytest.raises(DeployError, match="changed concurrently while waiting") as info:
        _rollout(kube, BAD)

    assert "not rolled back" in str(info.value)
    assert kube.rayservice(NS, NAME)["spec"]["serveConfigV2"] == theirs
    assert [c for c in _calls(kube) if c[0] == "PATCH"] == [("PATCH", "/")]


def test_transient_status_errors_are_waited_out_others_roll_back(kube: FakeKube) -> None:
    kube.status_errors = [503, 429, 500]
    out = _rollout(kube, GOOD)
    assert out["status"] == "RUNNING" and not kube.status_errors

    kube.status_errors = [403]
    with pytest.raises(
        DeployError,
        match="cannot read the status: GET status of RayService riskml-serving/riskml-scoring: 403",
    ) as info:
        _rollout(kube, BAD)
    assert "rolled back to the previous args" in str(info.value)
    assert kube.app_args(NS, NAME) == out["args"]


def test_a_cluster_upgrade_waits_for_the_pending_cluster_to_be_promoted(kube: FakeKube) -> None:
    kube.serve_outcome = lambda doc: ServeOutcome("RUNNING", polls=2, new_cluster=True)
    out = _rollout(kube, GOOD)
    svc = kube.rayservice(NS, NAME)
    assert out["status"] == "RUNNING"
    assert svc["status"]["activeServiceStatus"]["rayClusterName"].endswith("-g2")
    assert not svc["status"]["pendingServiceStatus"]
    # it saw the upgrade in progress and did not stop there
    seen = [rayservice_health(s, "riskml", 2)[1] for s in kube.history]
    assert any(d.startswith("UpgradeInProgress") for d in seen)


def test_a_failed_pending_cluster_is_rolled_back(kube: FakeKube) -> None:
    kube.serve_outcome = _fail("DEPLOY_FAILED", new_cluster=True)
    with pytest.raises(DeployError, match="DEPLOY_FAILED on the pending cluster") as info:
        _rollout(kube, BAD)
    assert "rolled back" in str(info.value)
    assert kube.app_args(NS, NAME)["model_uri"] == "models:/fraud@champion"


def test_a_bundle_dir_config_is_switched_to_the_registry() -> None:
    """A RayService still serving a folder (``bundle_dir``) loses it when rolled to a URI:
    the app must not get both."""
    rayservice = yaml.safe_load(RAYSERVICE_PATH.read_text())
    doc = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    doc["applications"][0]["args"] = {"bundle_dir": "/models/current", "online_store": "redis"}
    rayservice["spec"]["serveConfigV2"] = yaml.safe_dump(doc, sort_keys=False)
    with FakeKube() as server:
        server.add_rayservice(rayservice)
        out = _rollout(server, GOOD)
        assert out["previous_args"]["bundle_dir"] == "/models/current"
        assert server.app_args(NS, NAME) == {"online_store": "redis"} | GOOD


def test_unchanged_args_only_confirm_health(kube: FakeKube) -> None:
    current = kube.app_args(NS, NAME)
    out = _rollout(kube, {"model_uri": current["model_uri"]})
    assert out["status"] == "RUNNING" and out["args"] == current
    assert all(r["method"] != "PATCH" for r in kube.requests)


def test_bad_targets_are_refused_before_any_patch(kube: FakeKube) -> None:
    with pytest.raises(DeployError, match="no Serve application 'nope'"):
        _rollout(kube, GOOD, app="nope")
    with pytest.raises(DeployError, match=r"GET RayService riskml-serving/missing: 404"):
        _rollout(kube, GOOD, name="missing")
    with pytest.raises(DeployError, match="401"):
        rollout_rayservice(GOOD, api_client=kube.api_client("wrong"), **FAST)
    with kube.lock:
        del kube.services[(NS, NAME)]["spec"]["serveConfigV2"]
    with pytest.raises(DeployError, match="has no serveConfigV2"):
        _rollout(kube, GOOD)
    assert all(r["method"] == "GET" for r in kube.requests)


def test_health_judgement() -> None:
    def svc(generation: int, **status: Any) -> dict[str, Any]:
        return {"metadata": {"generation": generation}, "status": status}

    running = {"applicationStatuses": {"riskml": {"status": "RUNNING"}}, "rayClusterName": "c1"}
    ready = [{"type": "Ready", "status": "True"}]
    ok = svc(2, observedGeneration=2, activeServiceStatus=running, conditions=ready)
    assert rayservice_health(ok, "riskml", 2)[0] == "healthy"
    # stale: KubeRay has not seen the patch yet - the RUNNING is the old config's
    assert rayservice_health(ok, "riskml", 3) == (
        "pending",
        "KubeRay has not observed generation 3 yet (at 2)",
    )

    def with_conditions(*conditions: dict[str, str]) -> dict[str, Any]:
        return {**ok, "status": {**ok["status"], "conditions": [*ready, *conditions]}}

    upgrading = with_conditions({"type": "UpgradeInProgress", "status": "True", "reason": "X"})
    assert rayservice_health(upgrading, "riskml", 2) == ("pending", "UpgradeInProgress (X)")
    not_ready = with_conditions({"type": "Ready", "status": "False", "reason": "NoEndpoints"})
    not_ready["status"]["conditions"].pop(0)
    assert rayservice_health(not_ready, "riskml", 2) == ("pending", "Ready is False (NoEndpoints)")
    other_app = svc(2, observedGeneration=2, activeServiceStatus=running)
    assert rayservice_health(other_app, "other", 2) == (
        "pending",
        "Serve app 'other' is absent on cluster c1",
    )
    failed = {"applicationStatuses": {"riskml": {"status": "DEPLOY_FAILED", "message": "boom"}}}
    bad = svc(2, observedGeneration=2, activeServiceStatus={**running, **failed})
    assert rayservice_health(bad, "riskml", 2) == (
        "failed",
        "Serve app 'riskml' is DEPLOY_FAILED on the active cluster c1: boom",
    )
    # during a cluster upgrade the active cluster runs the old config: judge the pending one
    upgrade = svc(
        2,
        observedGeneration=2,
        activeServiceStatus={**running, **failed},
        pendingServiceStatus={**running, "rayClusterName": "c2"},
    )
    detail = rayservice_health(upgrade, "riskml", 2)[1]
    assert detail == "pending cluster c2 not promoted yet (app RUNNING)"


def _crd_schema() -> dict[str, Any]:
    need(get_settings().crd_dir is not None, "no CRD directory (RISKML_CRD_DIR)")
    from riskml.k8s.validate import load_crd_schemas

    return load_crd_schemas()[("ray.io", "v1", "RayService")]


def test_the_status_fields_the_rollout_reads_exist_in_the_kuberay_crd() -> None:
    schema = _crd_schema()
    for field in STATUS_FIELDS:
        node = schema
        for part in field.split("."):
            if part == "*":
                node = node["additionalProperties"]
                continue
            name, is_list = part.removesuffix("[]"), part.endswith("[]")
            assert name in node.get("properties", {}), f"{field}: no {name!r} in the CRD"
            node = node["properties"][name]
            if is_list:
                assert node["type"] == "array", field
                node = node["items"]
        assert node.get("type") in ("string", "integer"), (field, node.get("type"))
    conditions = schema["properties"]["status"]["properties"]["conditions"]["items"]
    assert conditions["properties"]["status"]["enum"] == ["True", "False", "Unknown"]


def test_the_fake_kuberay_status_matches_the_crd(kube: FakeKube) -> None:
    schema = _crd_schema()
    from riskml.k8s.validate import validate_custom_resource

    kube.serve_outcome = _fail("DEPLOY_FAILED", new_cluster=True, message="boom")
    with pytest.raises(DeployError):
        _rollout(kube, BAD)
    kube.serve_outcome = lambda doc: ServeOutcome("RUNNING")
    _rollout(kube, GOOD)
    assert len(kube.history) > 8
    for state in kube.history:
        meta = state["metadata"]
        obj = {**state, "metadata": {"name": meta["name"], "namespace": meta["namespace"]}}
        obj["metadata"]["labels"] = meta.get("labels", {})
        validate_custom_resource(obj, {("ray.io", "v1", "RayService"): schema})


def test_the_deployer_role_grants_exactly_what_the_rollout_uses(kube: FakeKube) -> None:
    """k8s/base/serving/rbac.yaml: each request of a rollout is allowed, each rule is used."""
    kube.serve_outcome = _fail("DEPLOY_FAILED")
    with pytest.raises(DeployError, match="rolled back"):
        _rollout(kube, BAD)
    verbs = {"GET": "get", "PATCH": "patch"}
    used = {
        (verbs[method], "rayservices" + ("/status" if sub == "/status" else ""), NAME)
        for method, sub in _calls(kube)
    }
    docs = load_yaml_documents(K8S_DIR / "base" / "serving" / "rbac.yaml")
    role = next(
        d
        for d in docs
        if d["kind"] == "Role" and d["metadata"]["name"] == "riskml-rayservice-deployer"
    )
    granted = {
        (verb, resource, name)
        for rule in role["rules"]
        if rule["apiGroups"] == ["ray.io"]
        for verb in rule["verbs"]
        for resource in rule["resources"]
        for name in rule["resourceNames"]
    }
    assert used == granted
