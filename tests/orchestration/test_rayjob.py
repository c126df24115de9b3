"""``rayjob`` mode: the built RayJob validates against the KubeRay CRD, and the real kubernetes
client drives a fake API server (tests/orchestration/fake_k8s.py) that runs the entrypoint."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from riskml.orchestration.protocol import RESULT_MARKER
from riskml.orchestration.ray_task import RayJobOptions, RayTaskError, RayTaskOptions
from riskml.orchestration.rayjob import (
    LAST_APPLIED,
    build_rayjob,
    load_template,
    run_rayjob,
    validate_rayjob,
)
from riskml.settings import get_settings
from tests.orchestration.fake_k8s import TOKEN, FakeKube
from tests.support.services import need

pytestmark = pytest.mark.k8s

ENTRY = "riskml.orchestration.protocol:normalize_result"  # returns its spec: no Ray needed


@pytest.fixture
def template() -> dict[str, Any]:
    return load_template(RayJobOptions())


def _build(template: dict[str, Any], **opts: Any) -> dict[str, Any]:
    return build_rayjob(
        template,
        "riskml.training.entrypoint",
        {"run": "r1", "rows": 10},
        name="riskml-train-0a1b2c3d",
        options=RayTaskOptions(**opts),
    )


def test_built_rayjob_validates_against_the_kuberay_crd(template: dict[str, Any]) -> None:
    need(get_settings().crd_dir is not None, "no CRD directory (RISKML_CRD_DIR)")
    obj = _build(template, env_vars={"RISKML_SEED": "3"})
    assert validate_rayjob(obj) is True
    spec = obj["spec"]
    assert spec["suspend"] is False
    assert spec["entrypoint"].startswith("python -m riskml.orchestration.launch ")
    assert '\'{"run":"r1","rows":10}\'' in spec["entrypoint"]
    assert "RISKML_SEED: '3'" in spec["runtimeEnvYAML"]
    assert "RISKML_HOME: /tmp/riskml" in spec["runtimeEnvYAML"]  # template env kept
    assert obj["metadata"]["labels"]["riskml.io/run"] == "riskml-train-0a1b2c3d"
    images = {
        c["image"]
        for t in [spec["submitterPodTemplate"], spec["rayClusterSpec"]["headGroupSpec"]["template"]]
        + [g["template"] for g in spec["rayClusterSpec"]["workerGroupSpecs"]]
        for c in t["spec"]["containers"]
    }
    assert images == {"riskml:0.1.0-ray2.60.0", "riskml-gpu:0.1.0-ray2.60.0"}
    assert template["spec"]["suspend"] is True  # the template is not modified


def test_a_broken_rayjob_is_rejected_by_the_crd_schema(template: dict[str, Any]) -> None:
    need(get_settings().crd_dir is not None, "no CRD directory (RISKML_CRD_DIR)")
    obj = _build(template)
    obj["spec"]["entrypointt"] = "typo"  # unknown field
    with pytest.raises(ValueError, match="riskml-train-0a1b2c3d"):
        validate_rayjob(obj)
    obj = _build(template)
    obj["spec"]["shutdownAfterJobFinishes"] = "yes"
    with pytest.raises(ValueError, match="shutdownAfterJobFinishes"):
        validate_rayjob(obj)


def test_cluster_template_server_fields_are_stripped(template: dict[str, Any]) -> None:
    applied = copy.deepcopy(template)
    applied["metadata"].update(
        uid="u-1",
        resourceVersion="77",
        generation=3,
        creationTimestamp="2024-01-01T00:00:00Z",
        managedFields=[{"manager": "kubectl"}],
        annotations={LAST_APPLIED: "{}", "team": "risk"},
    )
    applied["status"] = {"jobDeploymentStatus": "Suspended"}
    obj = _build(applied, rayjob=RayJobOptions(gpu_workers=2, image="reg/riskml:9"))
    meta = obj["metadata"]
    assert {"uid", "resourceVersion", "generation", "managedFields"}.isdisjoint(meta)
    assert meta["annotations"] == {"team": "risk"} and "status" not in obj
    gpu = obj["spec"]["rayClusterSpec"]["workerGroupSpecs"][1]
    assert (gpu["replicas"], gpu["maxReplicas"]) == (2, 2)
    head = obj["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["image"] == "reg/riskml:9"
    if get_settings().crd_dir is not None:
        validate_rayjob(obj)


def test_bad_templates_and_names_are_rejected(template: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"not ray\.io/RayJob"):
        build_rayjob(
            {"apiVersion": "v1", "kind": "Pod"}, ENTRY, {}, name="x", options=RayTaskOptions()
        )
    with pytest.raises(ValueError, match="longer than 63"):
        build_rayjob(template, ENTRY, {}, name="x" * 64, options=RayTaskOptions())
    no_gpu = copy.deepcopy(template)
    no_gpu["spec"]["rayClusterSpec"]["workerGroupSpecs"].pop()
    with pytest.raises(ValueError, match="no worker group 'gpu'"):
        _build(no_gpu, rayjob=RayJobOptions(gpu_workers=1))
    with pytest.raises(ValueError):
        RayJobOptions(name_prefix="Bad_Prefix")


def _opts(**rayjob: Any) -> RayTaskOptions:
    return RayTaskOptions(
        poll_interval_s=0.1,
        timeout_s=60,
        env_vars={"PROBE_X": "1"},
        rayjob=RayJobOptions(**rayjob),
    )


def test_rayjob_mode_against_a_fake_api_server(fake_kube: FakeKube) -> None:
    logs: list[str] = []
    spec = {"rows": 3, "name": "it's"}
    out = run_rayjob(ENTRY, spec, _opts(), logs.append, api_client=fake_kube.api_client())
    assert out["mode"] == "rayjob" and out["status"] == "SUCCEEDED"
    assert out["result"] == spec
    assert out["rayjob"].startswith("riskml-training/riskml-train-")
    assert out["dashboard_url"].endswith(".svc.cluster.local:8265")
    name = out["rayjob"].split("/", 1)[1]

    reqs = fake_kube.requests
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in reqs)
    create = reqs[0]
    assert (create["method"], create["path"]) == (
        "POST",
        "/apis/ray.io/v1/namespaces/riskml-training/rayjobs",
    )
    assert create["content_type"].startswith("application/json")
    assert create["body"]["kind"] == "RayJob" and create["body"]["spec"]["suspend"] is False
    assert any(
        r["path"] == "/api/v1/namespaces/riskml-training/pods"
        and r["query"]["labelSelector"] == [f"job-name={name}"]
        for r in reqs
    )
    log_reqs = [r for r in reqs if r["path"].endswith("/log")]
    assert log_reqs and log_reqs[-1]["query"]["container"] == ["ray-job-submitter"]
    delete = reqs[-1]
    assert delete["method"] == "DELETE" and delete["path"].endswith(f"/rayjobs/{name}")
    assert delete["body"]["propagationPolicy"] == "Background"
    assert not fake_kube.objects  # deleted
    assert any("deployment=Complete job=SUCCEEDED" in line for line in logs)
    assert any(RESULT_MARKER in line for line in logs)


def test_rayjob_failure_raises_with_the_log_and_still_deletes(fake_kube: FakeKube) -> None:
    with pytest.raises(RayTaskError, match="job=FAILED") as info:
        run_rayjob(
            "riskml.orchestration.protocol:load_spec",  # raises on a dict argument
            {"a": 1},
            _opts(),
            lambda _: None,
            api_client=fake_kube.api_client(),
        )
    assert info.value.status == "FAILED"
    assert "Traceback" in info.value.log_tail
    assert not fake_kube.objects


def test_rayjob_keep_leaves_the_object(fake_kube: FakeKube) -> None:
    out = run_rayjob(ENTRY, {}, _opts(keep=True), lambda _: None, api_client=fake_kube.api_client())
    assert out["result"] == {}
    assert len(fake_kube.objects) == 1
    assert all(r["method"] != "DELETE" for r in fake_kube.requests)


def test_rayjob_wrong_token_is_an_api_error(fake_kube: FakeKube) -> None:
    from kubernetes.client.exceptions import ApiException

    with pytest.raises(ApiException) as info:
        run_rayjob(ENTRY, {}, _opts(), lambda _: None, api_client=fake_kube.api_client("x"))
    assert info.value.status == 401
    assert not fake_kube.objects
