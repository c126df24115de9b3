"""Every overlay renders offline, and renders to what staging and prod need."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from riskml.k8s.manifests import (
    K8S_DIR,
    OVERLAYS,
    iter_pod_templates,
    overlay_path,
    render_overlay,
)
from riskml.k8s.policy import selector_matches, split_image

from .helpers import Doc, find, of_kind, worker_group

pytestmark = pytest.mark.k8s

APP_NAMESPACES = {"riskml-serving", "riskml-training", "riskml-platform"}


def test_every_overlay_renders_with_the_expected_objects(rendered: dict[str, list[Doc]]) -> None:
    assert set(rendered) == set(OVERLAYS) == {"staging", "prod"}
    for docs in rendered.values():
        kinds = {d["kind"] for d in docs}
        assert {
            "Namespace",
            "RayService",
            "RayJob",
            "NodePool",
            "EC2NodeClass",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "ConfigMap",
            "Role",
            "RoleBinding",
            "ServiceAccount",
            "ResourceQuota",
            "LimitRange",
            "Deployment",
            "StatefulSet",
            "Service",
        } <= kinds
        assert {d["metadata"]["name"] for d in of_kind(docs, "Namespace")} == APP_NAMESPACES
        assert {d["metadata"]["name"] for d in of_kind(docs, "NodePool")} == {
            "riskml-cpu",
            "riskml-gpu",
        }
        # Namespaced objects live in the app namespaces only.
        cluster_scoped = {"Namespace", "NodePool", "EC2NodeClass"}
        for d in docs:
            if d["kind"] not in cluster_scoped:
                assert d["metadata"].get("namespace") in APP_NAMESPACES, d["metadata"]


def test_namespaces_enforce_restricted_pod_security(rendered: dict[str, list[Doc]]) -> None:
    for docs in rendered.values():
        for ns in of_kind(docs, "Namespace"):
            labels = ns["metadata"]["labels"]
            for mode in ("enforce", "audit", "warn"):
                assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"


@pytest.mark.parametrize("path", ["base", "nodepools/cpu", "nodepools/gpu"])
def test_base_and_nodepools_render_alone(kubectl: str, path: str) -> None:
    assert render_overlay(K8S_DIR / path)


def test_render_errors_are_clear(kubectl: str, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no kustomization"):
        render_overlay(tmp_path)
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    with pytest.raises(RuntimeError, match=r"kubectl kustomize .* failed: .*missing\.yaml"):
        render_overlay(tmp_path)
    with pytest.raises(ValueError, match=r"unknown overlay 'qa'.*known: prod, staging"):
        overlay_path("qa")


def test_one_image_tag_per_overlay_carrying_the_ray_version(
    rendered: dict[str, list[Doc]], ray_version: str
) -> None:
    for docs in rendered.values():
        tags = set()
        for obj in docs:
            for template in iter_pod_templates(obj):
                for container in template.spec["containers"]:
                    repo, tag, _ = split_image(container["image"])
                    if repo in ("riskml", "riskml-gpu"):
                        tags.add(tag)
        assert tags == {f"0.1.0-ray{ray_version}"}


def _scoring(docs: list[Doc]) -> Doc:
    return find(docs, "RayService", "riskml-scoring", "riskml-serving")


def _training(docs: list[Doc]) -> Doc:
    return find(docs, "RayJob", "riskml-train", "riskml-training")


def test_rayservice_scoring_cluster(rendered: dict[str, list[Doc]], ray_version: str) -> None:
    for docs in rendered.values():
        cluster = _scoring(docs)["spec"]["rayClusterConfig"]
        assert cluster["rayVersion"] == ray_version
        assert cluster["enableInTreeAutoscaling"] is True
        assert cluster["autoscalerOptions"]["version"] == "v2"
        assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
        cpu = worker_group(cluster, "cpu")
        assert 1 <= cpu["minReplicas"] <= cpu["replicas"] <= cpu["maxReplicas"]
        assert cpu["maxReplicas"] > cpu["minReplicas"]  # room for the autoscaler


def test_serve_pods_run_user_code_on_the_replica_loop(rendered: dict[str, list[Doc]]) -> None:
    """Every container of the scoring cluster carries riskml's Serve replica settings (the ones
    local clusters get from ``local_ray_env``) and the cluster's: HAProxy as Serve's proxy."""
    from riskml.training.runtime import CLUSTER_SERVE_ENV, SERVE_REPLICA_ENV

    for docs in rendered.values():
        pods = list(iter_pod_templates(_scoring(docs)))
        assert len(pods) >= 2  # head and CPU workers at least
        for pod in pods:
            for container in pod.spec["containers"]:
                env = {e["name"]: e.get("value") for e in container.get("env", [])}
                assert SERVE_REPLICA_ENV.items() <= env.items(), (pod.path, container["name"])
                assert CLUSTER_SERVE_ENV.items() <= env.items(), (pod.path, container["name"])


def test_prod_is_highly_available_and_staging_is_not(rendered: dict[str, list[Doc]]) -> None:
    prod, staging = rendered["prod"], rendered["staging"]
    ft = _scoring(prod)["spec"]["rayClusterConfig"]["gcsFaultToleranceOptions"]
    assert ft["redisAddress"].startswith("rediss://")
    assert ft["redisPassword"]["valueFrom"]["secretKeyRef"]["name"] == "riskml-gcs-redis"
    assert "gcsFaultToleranceOptions" not in _scoring(staging)["spec"]["rayClusterConfig"]

    # >= 2 Serve workers spread over zones, and a PDB that keeps at least one up.
    cluster = _scoring(prod)["spec"]["rayClusterConfig"]
    cpu = worker_group(cluster, "cpu")
    assert cpu["minReplicas"] >= 2 and cpu["replicas"] >= 2
    spread = cpu["template"]["spec"]["topologySpreadConstraints"]
    assert spread[0]["topologyKey"] == "topology.kubernetes.io/zone"
    pdb = find(prod, "PodDisruptionBudget", "riskml-scoring-workers", "riskml-serving")
    assert pdb["spec"]["minAvailable"] >= 1 and "maxUnavailable" not in pdb["spec"]
    worker_labels = cpu["template"]["metadata"]["labels"]
    head_labels = cluster["headGroupSpec"]["template"]["metadata"]["labels"]
    assert selector_matches(pdb["spec"]["selector"], worker_labels)
    assert not selector_matches(pdb["spec"]["selector"], head_labels)
    assert worker_group(_scoring(staging)["spec"]["rayClusterConfig"], "cpu")["minReplicas"] == 1


def _feature_store(docs: list[Doc], namespace: str) -> dict:
    maps = [
        d
        for d in of_kind(docs, "ConfigMap")
        if d["metadata"]["name"].startswith("riskml-feature-store-")
        and d["metadata"]["namespace"] == namespace
    ]
    assert len(maps) == 1
    return yaml.safe_load(maps[0]["data"]["feature_store.yaml"])


def test_online_store_in_cluster_for_staging_external_for_prod(
    rendered: dict[str, list[Doc]],
) -> None:
    staging, prod = rendered["staging"], rendered["prod"]
    redis = find(staging, "StatefulSet", "riskml-redis", "riskml-serving")
    service = find(staging, "Service", "riskml-redis", "riskml-serving")
    assert selector_matches(
        {"matchLabels": service["spec"]["selector"]},
        redis["spec"]["template"]["metadata"]["labels"],
    )
    for namespace in ("riskml-serving", "riskml-training", "riskml-platform"):
        conn = _feature_store(staging, namespace)["online_store"]["connection_string"]
        assert conn.startswith("riskml-redis.riskml-serving.svc.cluster.local:6379")
        prod_conn = _feature_store(prod, namespace)["online_store"]["connection_string"]
        assert "cache.amazonaws.com" in prod_conn and "ssl=true" in prod_conn
        assert "${RISKML_REDIS_PASSWORD}" in prod_conn
    # prod runs no Redis of its own (its one StatefulSet is NATS)
    assert {d["metadata"]["name"] for d in of_kind(prod, "StatefulSet")} == {"riskml-nats"}
    # every Ray node of both environments gets the password and registry URL the Feast config
    # expands, from Secrets; prod's Redis is TLS
    for overlay, docs in rendered.items():
        for obj in (_scoring(docs), _training(docs)):
            for template in iter_pod_templates(obj):
                if "GroupSpec" not in template.path and "workerGroupSpecs" not in template.path:
                    continue
                env = {e["name"]: e for e in template.spec["containers"][0]["env"]}
                ref = env["RISKML_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
                assert ref == {"name": "riskml-online-redis", "key": "password"}
                registry = env["FEAST_REGISTRY_PATH"]["valueFrom"]["secretKeyRef"]
                assert registry == {"name": "riskml-feast-registry", "key": "url"}
                assert env["RISKML_FEAST_CONFIG"]["value"] == "/etc/riskml/feast/feature_store.yaml"
                assert ("ssl=true" in env["RISKML_REDIS_URL"]["value"]) is (overlay == "prod")


def test_feature_store_configmap_mounted_by_hashed_name(rendered: dict[str, list[Doc]]) -> None:
    for docs in rendered.values():
        names = {d["metadata"]["name"] for d in of_kind(docs, "ConfigMap")}
        for obj in (_scoring(docs), _training(docs)):
            for template in iter_pod_templates(obj):
                for volume in template.spec.get("volumes", []):
                    if volume["name"] == "feast-config":
                        assert volume["configMap"]["name"] in names


def test_training_rayjob_template(rendered: dict[str, list[Doc]], ray_version: str) -> None:
    for overlay, docs in rendered.items():
        job = _training(docs)["spec"]
        assert job["entrypoint"] == "python -m riskml.training.entrypoint"
        assert job["suspend"] is True  # applying an overlay starts no training run
        assert job["shutdownAfterJobFinishes"] is True
        assert job["ttlSecondsAfterFinished"] > 0
        # the job's processes get their checkpoint/Tune storage and the tracking server
        env_vars = yaml.safe_load(job["runtimeEnvYAML"])["env_vars"]
        assert set(env_vars) == {"RISKML_HOME", "RISKML_STORAGE_URI", "RISKML_MLFLOW_TRACKING_URI"}
        assert env_vars["RISKML_HOME"] == "/tmp/riskml"
        assert env_vars["RISKML_STORAGE_URI"].startswith(f"s3://riskml-ray-{overlay}/")
        cluster = job["rayClusterSpec"]
        assert cluster["rayVersion"] == ray_version
        cpu, gpu = worker_group(cluster, "cpu"), worker_group(cluster, "gpu")
        assert cpu["template"]["spec"]["containers"][0]["image"].startswith("riskml:")
        spec = gpu["template"]["spec"]
        container = spec["containers"][0]
        assert container["image"].startswith("riskml-gpu:")
        resources = container["resources"]
        assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"]
        assert int(resources["limits"]["nvidia.com/gpu"]) >= 1
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
            "tolerations"
        ]
        assert gpu["minReplicas"] == 0 and gpu["replicas"] == 0
        assert gpu["maxReplicas"] >= 1, f"{overlay}: components/gpu did not enable the group"
        # The node selector names a GPU NodePool whose taint the group tolerates.
        pool = find(docs, "NodePool", spec["nodeSelector"]["karpenter.sh/nodepool"])
        taints = pool["spec"]["template"]["spec"]["taints"]
        assert {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"} in taints


def test_karpenter_pools(rendered: dict[str, list[Doc]]) -> None:
    for docs in rendered.values():
        classes = {d["metadata"]["name"] for d in of_kind(docs, "EC2NodeClass")}
        for pool in of_kind(docs, "NodePool"):
            ref = pool["spec"]["template"]["spec"]["nodeClassRef"]
            assert ref["name"] in classes and ref["kind"] == "EC2NodeClass"
            assert pool["spec"]["disruption"]["consolidationPolicy"]
            assert pool["spec"]["limits"]["cpu"]
        gpu = find(docs, "NodePool", "riskml-gpu")["spec"]
        requirements = {r["key"]: r for r in gpu["template"]["spec"]["requirements"]}
        families = requirements["karpenter.k8s.aws/instance-family"]["values"]
        assert families and all(f.startswith(("g", "p")) for f in families)
        assert int(gpu["limits"]["nvidia.com/gpu"]) >= 1
        assert gpu["disruption"]["consolidationPolicy"] == "WhenEmpty"
        cpu = find(docs, "NodePool", "riskml-cpu")["spec"]
        assert not cpu["template"]["spec"].get("taints")


def test_pipeline_runner_drives_rayjobs_and_may_only_patch_the_one_rayservice(
    rendered: dict[str, list[Doc]],
) -> None:
    for docs in rendered.values():
        role = find(docs, "Role", "riskml-rayjob-runner", "riskml-training")
        assert role["rules"] == [
            {
                "apiGroups": ["ray.io"],
                "resources": ["rayjobs"],
                "verbs": ["create", "get", "list", "watch", "delete"],
            },
            # read-only access to the submitter pod's log (the job's result line)
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        ]
        bindings = [
            b
            for b in of_kind(docs, "RoleBinding") + of_kind(docs, "ClusterRoleBinding")
            if any(s.get("name") == "riskml-pipeline-runner" for s in b.get("subjects", []))
        ]
        assert sorted(
            (b["kind"], b["metadata"]["namespace"], b["roleRef"]["name"]) for b in bindings
        ) == [
            ("RoleBinding", "riskml-serving", "riskml-rayservice-deployer"),
            ("RoleBinding", "riskml-training", "riskml-rayjob-runner"),
        ]
        for binding in bindings:
            assert binding["roleRef"]["kind"] == "Role"
            assert binding["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"
        # in riskml-serving: get/patch the scoring RayService by name, read its status; nothing else
        deployer = find(docs, "Role", "riskml-rayservice-deployer", "riskml-serving")
        scoring = _scoring(docs)["metadata"]["name"]
        assert deployer["rules"] == [
            {
                "apiGroups": ["ray.io"],
                "resources": ["rayservices"],
                "resourceNames": [scoring],
                "verbs": ["get", "patch"],
            },
            {
                "apiGroups": ["ray.io"],
                "resources": ["rayservices/status"],
                "resourceNames": [scoring],
                "verbs": ["get"],
            },
        ]
        serving_sa = find(docs, "ServiceAccount", "riskml-serving", "riskml-serving")
        assert serving_sa["automountServiceAccountToken"] is False


def test_list_patches_fail_loudly_when_the_base_is_reordered(kubectl: str, tmp_path: Path) -> None:
    """JSON6902 patches address CRD list items by index; their `test` op guards the index."""
    copy = tmp_path / "k8s"
    shutil.copytree(K8S_DIR, copy)
    rayjob = copy / "base" / "training" / "rayjob.yaml"
    text = rayjob.read_text()
    assert "      - groupName: gpu" in text
    rayjob.write_text(text.replace("- groupName: gpu", "- groupName: gpu-renamed"))
    assert render_overlay(copy / "base")  # the base alone still renders
    with pytest.raises(RuntimeError, match="groupName"):
        render_overlay(copy / "overlays" / "staging")
