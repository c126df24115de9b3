"""Schema validation: core kinds (kubernetes-validate, strict), custom resources (CRD
openAPIV3Schema), skaffold.yaml (skaffold JSON schema) - each with cases that must fail."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from riskml.k8s.manifests import REPO_ROOT, overlay_path
from riskml.k8s.validate import (
    K8S_VERSION,
    crd_cel_rule_count,
    crd_schema_to_jsonschema,
    is_custom_resource,
    load_crd_schemas,
    validate_core,
    validate_custom_resource,
    validate_manifest,
    validate_manifests,
    validate_skaffold,
)

from .helpers import Doc, find, worker_group

pytestmark = pytest.mark.k8s

GVKs = dict[tuple[str, str, str], dict[str, Any]]


def test_crd_schemas_are_found_through_the_setting(crd_schemas: GVKs) -> None:
    assert {
        ("ray.io", "v1", "RayService"),
        ("ray.io", "v1", "RayJob"),
        ("ray.io", "v1", "RayCluster"),
        ("karpenter.sh", "v1", "NodePool"),
        ("karpenter.k8s.aws", "v1", "EC2NodeClass"),
    } <= set(crd_schemas)


def test_k8s_version_is_one_kubernetes_validate_ships() -> None:
    from kubernetes_validate.utils import all_versions

    assert K8S_VERSION in all_versions()


def test_every_rendered_object_validates(rendered: dict[str, list[Doc]], crd_schemas: GVKs) -> None:
    for docs in rendered.values():
        assert validate_manifests(docs, crd_schemas) == []
        custom = [d for d in docs if is_custom_resource(d, crd_schemas)]
        assert {d["kind"] for d in custom} == {
            "RayService",
            "RayJob",
            "NodePool",
            "EC2NodeClass",
            "PrometheusRule",
        }
        assert len(custom) < len(docs)  # the rest went through kubernetes-validate


def _rayservice(docs: list[Doc]) -> Doc:
    return find(docs, "RayService", "riskml-scoring")


def _cluster(docs: list[Doc]) -> Doc:
    return _rayservice(docs)["spec"]["rayClusterConfig"]


def _typo_in_nested_container(docs: list[Doc]) -> Doc:
    container = worker_group(_cluster(docs), "cpu")["template"]["spec"]["containers"][0]
    container["resorces"] = container.pop("resources")
    return _rayservice(docs)


def _string_replicas(docs: list[Doc]) -> Doc:
    worker_group(_cluster(docs), "cpu")["maxReplicas"] = "ten"
    return _rayservice(docs)


def _missing_group_name(docs: list[Doc]) -> Doc:
    del worker_group(_cluster(docs), "cpu")["groupName"]
    return _rayservice(docs)


def _bad_quantity(docs: list[Doc]) -> Doc:
    container = _cluster(docs)["headGroupSpec"]["template"]["spec"]["containers"][0]
    container["resources"]["limits"]["memory"] = "6 gigabytes"
    return _rayservice(docs)


def _bad_autoscaler_version(docs: list[Doc]) -> Doc:
    _cluster(docs)["autoscalerOptions"]["version"] = "v3"
    return _rayservice(docs)


def _rayjob_unknown_field(docs: list[Doc]) -> Doc:
    job = find(docs, "RayJob", "riskml-train")
    job["spec"]["shutdownAfterJobFinish"] = True  # missing "es"
    return job


def _nodepool_bad_enum(docs: list[Doc]) -> Doc:
    pool = find(docs, "NodePool", "riskml-gpu")
    pool["spec"]["disruption"]["consolidationPolicy"] = "Sometimes"
    return pool


def _nodeclass_missing_required(docs: list[Doc]) -> Doc:
    node_class = find(docs, "EC2NodeClass", "riskml-gpu")
    del node_class["spec"]["subnetSelectorTerms"]
    return node_class


def _bad_metadata_name(docs: list[Doc]) -> Doc:
    job = find(docs, "RayJob", "riskml-train")
    job["metadata"]["name"] = "Riskml_Train"
    return job


def _core_typo(docs: list[Doc]) -> Doc:
    policy = find(docs, "NetworkPolicy", "default-deny", "riskml-serving")
    policy["spec"]["policyType"] = policy["spec"].pop("policyTypes")
    return policy


def _core_wrong_type(docs: list[Doc]) -> Doc:
    role = find(docs, "Role", "riskml-rayjob-runner")
    role["rules"][0]["verbs"] = "get"
    return role


def _core_missing_required(docs: list[Doc]) -> Doc:
    binding = find(docs, "RoleBinding", "riskml-rayjob-runner")
    del binding["roleRef"]
    return binding


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            _typo_in_nested_container,
            r"RayService/riskml-serving/riskml-scoring: spec\.rayClusterConfig\.workerGroupSpecs"
            r"\[0\]\.template\.spec\.containers\[0\]: .*'resorces' was unexpected",
        ),
        (_string_replicas, r"workerGroupSpecs\[0\]\.maxReplicas: 'ten' is not of type 'integer'"),
        (_missing_group_name, r"workerGroupSpecs\[0\]: 'groupName' is a required property"),
        (
            _bad_quantity,
            r"headGroupSpec\.template\.spec\.containers\[0\]\.resources\.limits\.memory",
        ),
        (_bad_autoscaler_version, r"autoscalerOptions\.version: 'v3' is not one of"),
        (_rayjob_unknown_field, r"RayJob/.*: spec: .*'shutdownAfterJobFinish' was unexpected"),
        (_nodepool_bad_enum, r"NodePool/riskml-gpu: spec\.disruption\.consolidationPolicy"),
        (_nodeclass_missing_required, r"EC2NodeClass/riskml-gpu: spec: 'subnetSelectorTerms'"),
        (_bad_metadata_name, r"metadata\.name: 'Riskml_Train' does not match"),
        (_core_typo, r"NetworkPolicy/riskml-serving/default-deny: spec: .*'policyType' was"),
        (_core_wrong_type, r"rules\[0\]\.verbs: 'get' is not of type 'array'"),
        (_core_missing_required, r"RoleBinding/.*: <root>: 'roleRef' is a required property"),
    ],
)
def test_invalid_objects_fail_with_the_field_path(
    mutable: Callable[[str], list[Doc]],
    crd_schemas: GVKs,
    mutate: Callable[[list[Doc]], Doc],
    expected: str,
) -> None:
    docs = mutable("prod")
    obj = mutate(docs)
    with pytest.raises(ValueError, match=expected):
        validate_manifest(obj, crd_schemas)


def test_bulk_validation_reports_every_bad_object(
    mutable: Callable[[str], list[Doc]], crd_schemas: GVKs
) -> None:
    docs = mutable("staging")
    _typo_in_nested_container(docs)
    _core_wrong_type(docs)
    errors = validate_manifests(docs, crd_schemas)
    assert sorted(error.split("/")[0] for error in errors) == ["RayService", "Role"]


def test_unknown_kinds_and_versions_are_errors(crd_schemas: GVKs) -> None:
    with pytest.raises(ValueError, match=r"no CRD schema for .*'v9'"):
        validate_custom_resource(
            {"apiVersion": "ray.io/v9", "kind": "RayJob", "metadata": {"name": "x"}}, crd_schemas
        )
    with pytest.raises(ValueError, match="Couldn't find schema for kind Widget"):
        validate_core({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
    with pytest.raises(ValueError, match="missing kind"):
        validate_manifest({"apiVersion": "v1", "metadata": {"name": "x"}}, crd_schemas)


def test_crd_loading_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_crd_schemas(tmp_path / "absent")
    with pytest.raises(ValueError, match="no CustomResourceDefinitions"):
        load_crd_schemas(tmp_path)


def test_crd_loading_uses_the_setting(
    monkeypatch: pytest.MonkeyPatch, crd_dir: Path, tmp_path: Path
) -> None:
    from riskml.settings import get_settings

    monkeypatch.setenv("RISKML_CRD_DIR", str(tmp_path / "elsewhere"))
    get_settings.cache_clear()
    with pytest.raises(ValueError, match="elsewhere does not exist"):
        load_crd_schemas()
    monkeypatch.setenv("RISKML_CRD_DIR", str(crd_dir))
    get_settings.cache_clear()
    assert ("ray.io", "v1", "RayService") in load_crd_schemas()


def test_cel_rules_are_counted_not_silently_ignored(crd_dir: Path) -> None:
    counts = crd_cel_rule_count(crd_dir)
    assert counts[("karpenter.k8s.aws", "v1", "EC2NodeClass")] > 0


def test_structural_schema_conversion() -> None:
    import jsonschema

    schema = crd_schema_to_jsonschema(
        {
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "port": {
                            "x-kubernetes-int-or-string": True,
                            "anyOf": [{"type": "integer"}, {"type": "string"}],
                        },
                        "when": {"type": "string", "nullable": True},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        "closed": {"type": "object", "properties": {"a": {"type": "integer"}}},
                    },
                }
            },
        }
    )
    validator = jsonschema.Draft7Validator(schema)

    def ok(spec: dict[str, Any]) -> bool:
        obj = {"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"}, "spec": spec}
        return validator.is_valid(obj)

    assert ok({"port": 8080}) and ok({"port": "http"}) and not ok({"port": 1.5})
    assert ok({"when": None}) and not ok({"when": 3})
    assert ok({"free": {"anything": [1, 2]}})
    assert ok({"closed": {"a": 1}}) and not ok({"closed": {"a": 1, "b": 2}})
    assert not ok({"unknown": 1})
    assert not validator.is_valid({"apiVersion": "x/v1", "kind": "K", "spec": {}})  # no metadata


# --- skaffold ---------------------------------------------------------------------------------


def _skaffold() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "skaffold.yaml").read_text())


def test_skaffold_validates_against_its_schema(schema_dir: Path) -> None:
    validate_skaffold(REPO_ROOT / "skaffold.yaml", schema_dir)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda c: c.update(deploye={}), r"<root>: .*'deploye'"),
        (lambda c: c.update(apiVersion="skaffold/v2beta29"), "apiVersion"),
        (lambda c: c["resourceSelector"]["allow"][0].pop("groupKind"), "groupKind"),
        (lambda c: c["build"]["artifacts"][0]["docker"].update(buildArgz={}), "buildArgz"),
    ],
)
def test_invalid_skaffold_configs_fail(
    schema_dir: Path, edit: Callable[[dict[str, Any]], Any], expected: str
) -> None:
    config = _skaffold()
    edit(config)
    with pytest.raises(ValueError, match=expected):
        validate_skaffold(config, schema_dir)


def test_skaffold_builds_both_variants_and_rewrites_ray_kinds(ray_version: str) -> None:
    config = _skaffold()
    artifacts = {a["image"]: a["docker"] for a in config["build"]["artifacts"]}
    assert set(artifacts) == {"riskml", "riskml-gpu"}
    assert {a["buildArgs"]["VARIANT"] for a in artifacts.values()} == {"cpu", "gpu"}
    assert {a["buildArgs"]["RAY_VERSION"] for a in artifacts.values()} == {ray_version}
    assert f"ray{ray_version}" in config["build"]["tagPolicy"]["customTemplate"]["template"]
    allowed = {rule["groupKind"]: rule for rule in config["resourceSelector"]["allow"]}
    for kind in ("RayService.ray.io", "RayJob.ray.io", "RayCluster.ray.io"):
        assert allowed[kind]["image"] == [".*"]
    profiles = {p["name"]: p for p in config["profiles"]}
    assert set(profiles) == {"staging", "prod"}
    for name, profile in profiles.items():
        (path,) = profile["manifests"]["kustomize"]["paths"]
        assert REPO_ROOT / path == overlay_path(name)
