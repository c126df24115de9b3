"""Policy checks over every pod template (nested Ray templates included), RBAC, tokens and
NetworkPolicies. Each policy holds for both overlays and has negative cases proving it can fail."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from riskml.k8s.manifests import iter_containers, iter_pod_specs, iter_pod_templates
from riskml.k8s.policy import (
    address,
    check_images,
    check_network_policies,
    check_no_api_tokens,
    check_pod_security,
    check_ray_writable_dirs,
    check_rbac,
    network_allows,
    pod,
    run_policies,
    selector_matches,
    split_image,
)

from .helpers import Doc, find, worker_group

pytestmark = pytest.mark.k8s

Mutation = Callable[[list[Doc]], Any]


def test_both_overlays_pass_every_policy(rendered: dict[str, list[Doc]], ray_version: str) -> None:
    for overlay, docs in rendered.items():
        results = run_policies(docs, ray_version)
        assert set(results) == {
            "pod-security",
            "ray-writable-dirs",
            "images",
            "rbac",
            "api-tokens",
            "network",
        }
        assert results == {name: [] for name in results}, overlay


def test_pod_templates_nested_in_ray_kinds_are_walked(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["prod"]
    paths = {
        kind: [path for path, _ in iter_pod_specs(find(docs, kind, name))]
        for kind, name in (("RayService", "riskml-scoring"), ("RayJob", "riskml-train"))
    }
    assert paths["RayService"] == [
        "spec.rayClusterConfig.headGroupSpec.template.spec",
        "spec.rayClusterConfig.workerGroupSpecs[0].template.spec",
    ]
    assert sorted(paths["RayJob"]) == [
        "spec.rayClusterSpec.headGroupSpec.template.spec",
        "spec.rayClusterSpec.workerGroupSpecs[0].template.spec",
        "spec.rayClusterSpec.workerGroupSpecs[1].template.spec",
        "spec.submitterPodTemplate.spec",
    ]
    statefulset = find(rendered["staging"], "StatefulSet", "riskml-redis")
    assert [p for p, _ in iter_pod_specs(statefulset)] == ["spec.template.spec"]
    assert not list(iter_pod_specs(find(docs, "NodePool", "riskml-gpu")))


def test_walker_handles_plain_kinds_and_unknown_crds() -> None:
    container = {"name": "c", "image": "x:1"}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [container]},
    }
    cron = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "c"},
        "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [container]}}}}},
    }
    custom = {
        "apiVersion": "example.com/v1",
        "kind": "Trainer",
        "metadata": {"name": "t"},
        "spec": {
            "replicaSpecs": [
                {
                    "template": {
                        "metadata": {"labels": {"a": "b"}},
                        "spec": {"initContainers": [container], "containers": [container]},
                    }
                }
            ]
        },
    }
    assert [p for p, _ in iter_pod_specs(pod)] == ["spec"]
    assert [p for p, _ in iter_pod_specs(cron)] == ["spec.jobTemplate.spec.template.spec"]
    (template,) = iter_pod_templates(custom)
    assert template.path == "spec.replicaSpecs[0].template.spec" and template.labels == {"a": "b"}
    assert [p for p, _ in iter_containers(template.spec)] == ["initContainers[0]", "containers[0]"]


# --- negative cases: each mutation must produce a violation mentioning `expected` -----------------


def _rs_cluster(docs: list[Doc]) -> Doc:
    return find(docs, "RayService", "riskml-scoring")["spec"]["rayClusterConfig"]


def _job(docs: list[Doc]) -> Doc:
    return find(docs, "RayJob", "riskml-train")["spec"]


def _gpu_container(docs: list[Doc]) -> Doc:
    return worker_group(_job(docs)["rayClusterSpec"], "gpu")["template"]["spec"]["containers"][0]


def _head_container(docs: list[Doc]) -> Doc:
    return _rs_cluster(docs)["headGroupSpec"]["template"]["spec"]["containers"][0]


def _head_pod(docs: list[Doc]) -> Doc:
    return _rs_cluster(docs)["headGroupSpec"]["template"]["spec"]


def _serving_worker_pod(docs: list[Doc]) -> Doc:
    return worker_group(_rs_cluster(docs), "cpu")["template"]["spec"]


POD_SECURITY: list[tuple[str, Mutation, str]] = [
    (
        "privilege escalation in a nested GPU worker",
        lambda d: _gpu_container(d)["securityContext"].update(allowPrivilegeEscalation=True),
        r"workerGroupSpecs\[1\]\.template\.spec\.containers\[0\]: .*allowPrivilegeEscalation",
    ),
    (
        "capabilities not dropped",
        lambda d: _head_container(d)["securityContext"].pop("capabilities"),
        "capabilities.drop must include ALL",
    ),
    (
        "capability added",
        lambda d: _head_container(d)["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
        "capabilities.add",
    ),
    (
        "seccomp unconfined at pod level",
        lambda d: (
            _serving_worker_pod(d)["securityContext"].update(seccompProfile={"type": "Unconfined"}),
            _serving_worker_pod(d)["containers"][0]["securityContext"].pop("seccompProfile"),
        ),
        "seccompProfile must be RuntimeDefault, got 'Unconfined'",
    ),
    (
        "root allowed",
        lambda d: (
            _head_pod(d)["securityContext"].pop("runAsNonRoot"),
            _head_container(d)["securityContext"].pop("runAsNonRoot"),
        ),
        "runAsNonRoot must be true",
    ),
    (
        "uid 0",
        lambda d: _head_pod(d)["securityContext"].update(runAsUser=0),
        r"securityContext\.runAsUser: 0 \(root\)",
    ),
    (
        "writable root filesystem in the submitter",
        lambda d: _job(d)["submitterPodTemplate"]["spec"]["containers"][0][
            "securityContext"
        ].update(readOnlyRootFilesystem=False),
        r"submitterPodTemplate\.spec\.containers\[0\]: .*readOnlyRootFilesystem",
    ),
    (
        "missing limits",
        lambda d: _gpu_container(d)["resources"].pop("limits"),
        "resources.limits missing cpu, memory",
    ),
    (
        "hostPath volume",
        lambda d: _head_pod(d)["volumes"].append({"name": "host", "hostPath": {"path": "/"}}),
        "hostPath volumes are not allowed",
    ),
    (
        "host network",
        lambda d: _head_pod(d).update(hostNetwork=True),
        "host namespaces are not allowed",
    ),
    (
        "autoscaler sidecar without a security context",
        lambda d: _rs_cluster(d)["autoscalerOptions"].pop("securityContext"),
        r"rayClusterConfig\.autoscalerOptions: .*allowPrivilegeEscalation",
    ),
    (
        "autoscaler sidecar without limits",
        lambda d: _job(d)["rayClusterSpec"]["autoscalerOptions"]["resources"].pop("limits"),
        r"rayClusterSpec\.autoscalerOptions: resources\.limits missing",
    ),
    (
        "privileged redis (plain StatefulSet)",
        lambda d: find(d, "StatefulSet", "riskml-redis")["spec"]["template"]["spec"]["containers"][
            0
        ]["securityContext"].update(privileged=True),
        r"StatefulSet/.*containers\[0\]: securityContext\.privileged",
    ),
]


@pytest.mark.parametrize(
    ("label", "mutate", "expected"), POD_SECURITY, ids=[c[0] for c in POD_SECURITY]
)
def test_pod_security_violations_are_caught(
    mutable: Callable[[str], list[Doc]], label: str, mutate: Mutation, expected: str
) -> None:
    docs = mutable("staging")
    assert check_pod_security(docs) == []
    mutate(docs)
    violations = check_pod_security(docs)
    assert violations, label
    assert any(re.search(expected, v) for v in violations), violations


WRITABLE: list[tuple[str, Mutation, str]] = [
    (
        "no /tmp emptyDir on the head",
        lambda d: _head_container(d).update(
            volumeMounts=[
                m
                for m in _head_container(d)["volumeMounts"]
                if m["mountPath"] not in ("/tmp", "/tmp/ray")
            ]
        ),
        "writable emptyDir at /tmp",
    ),
    (
        "/dev/shm not memory-backed",
        lambda d: next(v for v in _serving_worker_pod(d)["volumes"] if v["name"] == "shared-mem")[
            "emptyDir"
        ].pop("medium"),
        "medium Memory",
    ),
    (
        "mount without a volume",
        lambda d: _gpu_container(d)["volumeMounts"].append({"name": "ghost", "mountPath": "/x"}),
        "volumeMount 'ghost' has no volume",
    ),
    (
        "autoscaler mounts a volume the head lacks",
        lambda d: _rs_cluster(d)["autoscalerOptions"]["volumeMounts"].append(
            {"name": "ghost", "mountPath": "/y"}
        ),
        "volumeMount 'ghost' has no head volume",
    ),
]


@pytest.mark.parametrize(("label", "mutate", "expected"), WRITABLE, ids=[c[0] for c in WRITABLE])
def test_ray_writable_dir_violations_are_caught(
    mutable: Callable[[str], list[Doc]], label: str, mutate: Mutation, expected: str
) -> None:
    docs = mutable("prod")
    mutate(docs)
    violations = check_ray_writable_dirs(docs)
    assert any(expected in v for v in violations), (label, violations)


def test_image_and_ray_version_violations_are_caught(
    mutable: Callable[[str], list[Doc]], ray_version: str
) -> None:
    docs = mutable("prod")
    assert check_images(docs, ray_version) == []
    _head_container(docs)["image"] = "riskml:latest"
    _gpu_container(docs)["image"] = "riskml-gpu"
    _job(docs)["submitterPodTemplate"]["spec"]["containers"][0]["image"] = "riskml:0.1.0-ray2.0.0"
    _rs_cluster(docs)["rayVersion"] = "2.0.0"
    violations = "\n".join(check_images(docs, ray_version))
    assert "'riskml:latest' uses :latest" in violations
    assert "'riskml-gpu' has no tag (implicit :latest)" in violations
    assert f"'riskml:0.1.0-ray2.0.0': tag lacks ray{ray_version}" in violations
    assert f"rayClusterConfig.rayVersion: '2.0.0' != '{ray_version}'" in violations
    assert split_image("reg.io:5000/team/riskml:1.0@sha256:ab") == (
        "reg.io:5000/team/riskml",
        "1.0",
        "sha256:ab",
    )
    assert split_image("reg.io:5000/riskml") == ("reg.io:5000/riskml", None, None)


def _runner_role(docs: list[Doc]) -> Doc:
    return find(docs, "Role", "riskml-rayjob-runner")


RBAC: list[tuple[str, Mutation, str]] = [
    (
        "wildcard verb",
        lambda d: _runner_role(d)["rules"][0].update(verbs=["*"]),
        r"verbs: wildcards",
    ),
    (
        "wildcard resource",
        lambda d: _runner_role(d)["rules"][0].update(resources=["*"]),
        r"resources: wildcards",
    ),
    (
        "escalation verb",
        lambda d: _runner_role(d)["rules"][0]["verbs"].append("bind"),
        "escalation",
    ),
    (
        "cluster-wide binding for an app account",
        lambda d: d.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "runner-view"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "view",
                },
                "subjects": [
                    {
                        "kind": "ServiceAccount",
                        "name": "riskml-pipeline-runner",
                        "namespace": "riskml-training",
                    }
                ],
            }
        ),
        "cluster-wide binding for riskml-training/riskml-pipeline-runner",
    ),
    (
        "cross-namespace grant",
        lambda d: find(d, "RoleBinding", "riskml-ray-autoscaler", "riskml-serving")["subjects"][
            0
        ].update(namespace="riskml-training"),
        "cross-namespace grant",
    ),
    (
        "deploy grant across namespaces widened to list",
        lambda d: find(d, "Role", "riskml-rayservice-deployer")["rules"][0]["verbs"].append("list"),
        r"cross-namespace grant to riskml-training/riskml-pipeline-runner: "
        r"Role 'riskml-rayservice-deployer' rules\[0\] allows \['list'\]",
    ),
    (
        "deploy grant across namespaces without resourceNames",
        lambda d: find(d, "Role", "riskml-rayservice-deployer")["rules"][1].pop("resourceNames"),
        r"rules\[1\] has no resourceNames",
    ),
    (
        "deploy grant across namespaces through a ClusterRole",
        lambda d: find(d, "RoleBinding", "riskml-rayservice-deployer")["roleRef"].update(
            kind="ClusterRole", name="edit"
        ),
        r"cross-namespace grant .*: binds ClusterRole 'edit'",
    ),
    (
        "namespaced binding of a ClusterRole",
        lambda d: find(d, "RoleBinding", "riskml-rayjob-runner")["roleRef"].update(
            kind="ClusterRole", name="edit"
        ),
        "binds ClusterRole 'edit'",
    ),
]


@pytest.mark.parametrize(("label", "mutate", "expected"), RBAC, ids=[c[0] for c in RBAC])
def test_rbac_violations_are_caught(
    mutable: Callable[[str], list[Doc]], label: str, mutate: Mutation, expected: str
) -> None:
    docs = mutable("prod")
    assert check_rbac(docs) == []
    mutate(docs)
    assert any(re.search(expected, v) for v in check_rbac(docs)), label


TOKENS: list[tuple[str, Mutation, str]] = [
    (
        "serving service account automounts",
        lambda d: find(d, "ServiceAccount", "riskml-serving", "riskml-serving").pop(
            "automountServiceAccountToken"
        ),
        "ServiceAccount/riskml-serving/riskml-serving: automountServiceAccountToken",
    ),
    (
        "serving worker pod automounts",
        lambda d: _serving_worker_pod(d).update(automountServiceAccountToken=True),
        r"workerGroupSpecs[0].template.spec.automountServiceAccountToken",
    ),
    (
        "Ray container mounts the autoscaler's token",
        lambda d: _head_container(d)["volumeMounts"].append(
            {
                "name": "kube-api-access",
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            }
        ),
        "mounts a service-account token",
    ),
]


@pytest.mark.parametrize(("label", "mutate", "expected"), TOKENS, ids=[c[0] for c in TOKENS])
def test_api_token_violations_are_caught(
    mutable: Callable[[str], list[Doc]], label: str, mutate: Mutation, expected: str
) -> None:
    docs = mutable("prod")
    assert check_no_api_tokens(docs, ["riskml-serving"]) == []
    mutate(docs)
    assert any(expected in v for v in check_no_api_tokens(docs, ["riskml-serving"])), label


def _np(docs: list[Doc], name: str, namespace: str = "riskml-serving") -> Doc:
    return find(docs, "NetworkPolicy", name, namespace)


NETWORK: list[tuple[str, Mutation, str]] = [
    (
        "default-deny removed",
        lambda d: d.remove(_np(d, "default-deny", "riskml-training")),
        "Namespace/riskml-training: <namespace>: no default-deny",
    ),
    (
        "default-deny weakened to ingress only",
        lambda d: _np(d, "default-deny")["spec"].update(policyTypes=["Ingress"]),
        "Namespace/riskml-serving: <namespace>: no default-deny",
    ),
    (
        "client port opened to scoring clients",
        lambda d: (
            _np(d, "ray-scoring-serve-http")["spec"].update(
                podSelector={"matchLabels": {"app.kubernetes.io/component": "scoring"}}
            )
            or _np(d, "ray-scoring-serve-http")["spec"]["ingress"][0]["ports"].append(
                {"protocol": "TCP", "port": 10001}
            )
        ),
        "exposes Ray client port 10001 outside riskml-serving",
    ),
    (
        "allow-all ingress rule (no from, no ports) on Ray pods",
        lambda d: _np(d, "ray-scoring-metrics")["spec"]["ingress"][0].clear(),
        "exposes Ray gcs-server port 6379",
    ),
    (
        "dashboard to monitoring",
        lambda d: _np(d, "ray-scoring-metrics")["spec"]["ingress"][0]["ports"].append(
            {"protocol": "TCP", "port": "dashboard"}
        ),
        "exposes Ray dashboard port 8265",
    ),
    (
        "operator exception needs the operator pod selector",
        lambda d: _np(d, "ray-training-operator-status", "riskml-training")["spec"]["ingress"][0][
            "from"
        ][0].pop("podSelector"),
        "exposes Ray dashboard port 8265 outside riskml-training",
    ),
    (
        "GCS port range from an ipBlock",
        lambda d: _np(d, "ray-scoring-intra-cluster")["spec"]["ingress"].append(
            {
                "from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
                "ports": [{"port": 6000, "endPort": 7000}],
            }
        ),
        "exposes Ray gcs-server port 6379",
    ),
    (
        "head service type LoadBalancer",
        lambda d: _rs_cluster(d)["headGroupSpec"].update(serviceType="LoadBalancer"),
        "headGroupSpec.serviceType: must be ClusterIP",
    ),
    (
        "LoadBalancer Service on the dashboard",
        lambda d: d.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "dash", "namespace": "riskml-serving"},
                "spec": {
                    "type": "LoadBalancer",
                    "ports": [{"port": 80, "targetPort": "dashboard"}],
                },
            }
        ),
        "Service/riskml-serving/dash: spec.ports: exposes Ray port",
    ),
]


@pytest.mark.parametrize(("label", "mutate", "expected"), NETWORK, ids=[c[0] for c in NETWORK])
def test_network_violations_are_caught(
    mutable: Callable[[str], list[Doc]], label: str, mutate: Mutation, expected: str
) -> None:
    docs = mutable("prod")
    assert check_network_policies(docs) == []
    mutate(docs)
    violations = check_network_policies(docs)
    assert any(expected in v for v in violations), (label, violations)


def test_same_namespace_and_operator_peers_are_not_outside(rendered: dict[str, list[Doc]]) -> None:
    """The intra-cluster policy opens all ports, but only to pods of its own namespace."""
    docs = rendered["prod"]
    intra = _np(docs, "ray-scoring-intra-cluster")["spec"]["ingress"][0]
    assert "ports" not in intra and all(set(peer) == {"podSelector"} for peer in intra["from"])
    assert check_network_policies(docs) == []


def test_selector_semantics() -> None:
    labels = {"app": "ray", "tier": "worker"}
    assert selector_matches({}, labels) and selector_matches(None, labels)
    assert selector_matches({"matchLabels": {"app": "ray"}}, labels)
    assert not selector_matches({"matchLabels": {"app": "redis"}}, labels)
    expr = [{"key": "tier", "operator": "In", "values": ["head"]}]
    assert not selector_matches({"matchExpressions": expr}, labels)
    assert selector_matches(
        {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["head"]}]}, labels
    )
    assert selector_matches(
        {"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}, labels
    )
    assert not selector_matches(
        {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}, labels
    )


def _policy(name: str, namespace: str, spec: dict[str, Any]) -> Doc:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def test_network_allows_follows_networkpolicy_semantics() -> None:
    """Reachability on small hand-written policies: isolation only where a policy selects the
    pod, both directions needed, ipBlock with except, ports, the default policyTypes."""
    web, db = pod("a", {"app": "web"}), pod("b", {"app": "db"})
    namespace_b = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "b", "labels": {"tier": "data"}},
    }
    assert network_allows([], web, db, 5432)  # no policies: nothing is isolated
    deny_b = _policy("deny", "b", {"podSelector": {}, "policyTypes": ["Ingress"]})
    docs: list[Doc] = [namespace_b, deny_b]
    assert not network_allows(docs, web, db, 5432)
    docs.append(
        _policy(
            "db-from-web",
            "b",
            {
                "podSelector": {"matchLabels": {"app": "db"}},
                "ingress": [  # no policyTypes: Ingress only (there is no egress section)
                    {
                        "from": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": "a"}
                                },
                                "podSelector": {"matchLabels": {"app": "web"}},
                            }
                        ],
                        "ports": [{"port": 5432}],
                    }
                ],
            },
        )
    )
    assert network_allows(docs, web, db, 5432)
    assert not network_allows(docs, web, db, 5433)
    assert not network_allows(docs, pod("a", {"app": "other"}), db, 5432)
    assert not network_allows(docs, pod("c", {"app": "web"}), db, 5432)
    # egress isolation of the client counts too
    docs.append(_policy("deny-out", "a", {"podSelector": {}, "policyTypes": ["Egress"]}))
    assert not network_allows(docs, web, db, 5432)
    docs.append(
        _policy(
            "web-to-data",
            "a",
            {
                "podSelector": {"matchLabels": {"app": "web"}},
                "policyTypes": ["Egress"],
                "egress": [
                    {"to": [{"namespaceSelector": {"matchLabels": {"tier": "data"}}}]},
                    {
                        "to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.9.0.0/16"]}}],
                        "ports": [{"protocol": "TCP", "port": 6000, "endPort": 6010}],
                    },
                ],
            },
        )
    )
    assert network_allows(docs, web, db, 5432)  # namespace matched by its own labels
    assert network_allows(docs, web, address("10.1.2.3"), 6005)
    assert not network_allows(docs, web, address("10.9.2.3"), 6005)  # except
    assert not network_allows(docs, web, address("10.1.2.3"), 6011)  # outside the range
    assert not network_allows(docs, web, address("10.1.2.3"), 6005, protocol="UDP")
    with pytest.raises(ValueError, match="pod"):
        network_allows(docs, address("10.1.2.3"), db, 5432)
    with pytest.raises(ValueError):
        address("not-an-ip")
