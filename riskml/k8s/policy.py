"""Offline policy checks over rendered manifests.

Each ``check_*`` function takes the rendered objects and returns a list of violations
(``"Kind/ns/name: path: what is wrong"``); an empty list means the policy holds. They walk every
pod template - including the ones nested in RayService/RayCluster/RayJob, which generic
scanners skip - and the container KubeRay injects from ``autoscalerOptions``.

Policies:
- pod security: Pod Security "restricted" (non-root, no privilege escalation, drop ALL,
  seccomp RuntimeDefault, no host namespaces/paths) plus a read-only root filesystem and
  resource requests and limits on every container;
- Ray writable dirs: with a read-only root, Ray containers get emptyDirs at /tmp (or /tmp/ray)
  and a memory-backed /dev/shm; every volumeMount names a volume that exists;
- images: explicit tags, never ``latest``; the riskml images carry the Ray version in their
  tag and every ``rayVersion`` equals it; for a release (prod) every image is also pinned by
  digest (:func:`check_image_digests`, outside :func:`run_policies`);
- RBAC: no wildcards or escalation verbs, no cluster-wide grants to app service accounts; a
  cross-namespace grant only to a Role whose every rule names its objects (``resourceNames``)
  and allows no more than get/patch (the pipeline's deploy of the one RayService);
- API tokens: in token-free namespaces neither service accounts nor pods automount a token and
  no container mounts a projected service-account token (the autoscaler sidecar excepted);
- network: each app namespace has a default-deny NetworkPolicy; the Ray GCS, client and
  dashboard ports are never reachable from outside their namespace (the KubeRay operator may
  reach the dashboard), and no Service/Ray head is exposed as NodePort/LoadBalancer.

:func:`network_allows` answers "may this pod open this port on that pod (or outside address)?"
from the NetworkPolicies alone (egress of the source and ingress of the destination), the way
the API server's semantics define it - the render tests use it for the paths the platform needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network
from typing import Any

from riskml.k8s.digests import DIGEST_RE
from riskml.k8s.manifests import (
    PodTemplate,
    api_group_version,
    iter_containers,
    iter_pod_templates,
    iter_ray_cluster_specs,
    resource_id,
)

Docs = Sequence[Mapping[str, Any]]

#: Ray ports that must stay inside their namespace: number -> conventional port name.
RAY_INTERNAL_PORTS: dict[int, str] = {6379: "gcs-server", 10001: "client", 8265: "dashboard"}
#: The one outside peer allowed to the dashboard port (status polling by the operator).
OPERATOR_NAMESPACE_LABEL = ("kubernetes.io/metadata.name", "kuberay-system")
OPERATOR_POD_LABEL = ("app.kubernetes.io/name", "kuberay-operator")
#: Images built from this repository (their tags must carry the Ray version).
PROJECT_IMAGES = ("riskml", "riskml-gpu")
ESCALATION_VERBS = {"escalate", "bind", "impersonate"}
#: The most a Role bound across namespaces may allow (and only on named objects).
CROSS_NAMESPACE_VERBS = {"get", "patch"}


def _v(obj: Mapping[str, Any], path: str, message: str) -> str:
    return f"{resource_id(obj)}: {path}: {message}"


def _namespace(obj: Mapping[str, Any]) -> str | None:
    return (obj.get("metadata") or {}).get("namespace")


def _is_ray(obj: Mapping[str, Any]) -> bool:
    return api_group_version(obj)[0] == "ray.io"


def _autoscaler_options(obj: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path, spec in iter_ray_cluster_specs(obj):
        if spec.get("enableInTreeAutoscaling"):
            found.append((f"{path}.autoscalerOptions", dict(spec.get("autoscalerOptions") or {})))
    return found


# --- pod security ---------------------------------------------------------------------------


def _container_security(
    obj: Mapping[str, Any], where: str, container: Mapping[str, Any]
) -> list[str]:
    out: list[str] = []
    sc = container.get("securityContext") or {}
    if sc.get("allowPrivilegeEscalation") is not False:
        out.append(_v(obj, where, "securityContext.allowPrivilegeEscalation must be false"))
    if sc.get("privileged"):
        out.append(_v(obj, where, "securityContext.privileged must not be true"))
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        out.append(_v(obj, where, "securityContext.capabilities.drop must include ALL"))
    if caps.get("add"):
        out.append(_v(obj, where, f"securityContext.capabilities.add {caps['add']} not allowed"))
    if sc.get("readOnlyRootFilesystem") is not True:
        out.append(_v(obj, where, "securityContext.readOnlyRootFilesystem must be true"))
    if sc.get("runAsUser") == 0:
        out.append(_v(obj, where, "securityContext.runAsUser 0 (root) not allowed"))
    resources = container.get("resources") or {}
    for kind in ("requests", "limits"):
        missing = [r for r in ("cpu", "memory") if r not in (resources.get(kind) or {})]
        if missing:
            out.append(_v(obj, where, f"resources.{kind} missing {', '.join(missing)}"))
    return out


def _pod_security(obj: Mapping[str, Any], template: PodTemplate) -> list[str]:
    spec, path = template.spec, template.path
    out: list[str] = []
    pod_sc = spec.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            out.append(_v(obj, f"{path}.{key}", "host namespaces are not allowed"))
    for index, volume in enumerate(spec.get("volumes") or []):
        if "hostPath" in volume:
            out.append(_v(obj, f"{path}.volumes[{index}]", "hostPath volumes are not allowed"))
    if pod_sc.get("runAsUser") == 0:
        out.append(_v(obj, f"{path}.securityContext.runAsUser", "0 (root) not allowed"))
    containers = list(iter_containers(spec))
    pod_non_root = pod_sc.get("runAsNonRoot") is True
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    for sub, container in containers:
        where = f"{path}.{sub}"
        sc = container.get("securityContext") or {}
        non_root = sc.get("runAsNonRoot", pod_non_root)
        if non_root is not True:
            out.append(_v(obj, where, "runAsNonRoot must be true (pod or container)"))
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp != "RuntimeDefault":
            out.append(_v(obj, where, f"seccompProfile must be RuntimeDefault, got {seccomp!r}"))
        out += _container_security(obj, where, container)
    return out


def check_pod_security(docs: Docs) -> list[str]:
    """Restricted pod security + read-only root + requests/limits, nested templates included."""
    out: list[str] = []
    for obj in docs:
        for template in iter_pod_templates(obj):
            out += _pod_security(obj, template)
        # KubeRay injects the autoscaler container from these options into the head pod.
        for where, options in _autoscaler_options(obj):
            sc = options.get("securityContext") or {}
            if sc.get("runAsNonRoot") is not True:
                out.append(_v(obj, where, "securityContext.runAsNonRoot must be true"))
            if (sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
                out.append(_v(obj, where, "securityContext.seccompProfile must be RuntimeDefault"))
            out += _container_security(obj, where, options)
    return out


# --- writable directories for Ray -----------------------------------------------------------


def _mounts_by_path(container: Mapping[str, Any]) -> dict[str, str]:
    return {m.get("mountPath", ""): m.get("name", "") for m in container.get("volumeMounts") or []}


def check_ray_writable_dirs(docs: Docs) -> list[str]:
    """Ray node containers (head and worker groups) get an emptyDir /tmp and a memory-backed
    /dev/shm; every volumeMount (autoscalerOptions' included) names an existing volume."""
    out: list[str] = []
    for obj in docs:
        claim_templates = {
            (c.get("metadata") or {}).get("name")
            for c in (obj.get("spec") or {}).get("volumeClaimTemplates") or []
        }
        for template in iter_pod_templates(obj):
            volumes = {v.get("name"): v for v in template.spec.get("volumes") or []}
            volumes.update({name: {"persistentVolumeClaim": {}} for name in claim_templates})
            ray_node = _is_ray(obj) and (
                "headGroupSpec" in template.path or "workerGroupSpecs" in template.path
            )
            for sub, container in iter_containers(template.spec):
                where = f"{template.path}.{sub}"
                for mount in container.get("volumeMounts") or []:
                    if mount.get("name") not in volumes:
                        out.append(
                            _v(obj, where, f"volumeMount {mount.get('name')!r} has no volume")
                        )
                if not ray_node or sub != "containers[0]":
                    continue
                mounts = _mounts_by_path(container)
                tmp = mounts.get("/tmp") or mounts.get("/tmp/ray")
                if tmp is None or "emptyDir" not in (volumes.get(tmp) or {}):
                    out.append(_v(obj, where, "Ray needs a writable emptyDir at /tmp or /tmp/ray"))
                shm = volumes.get(mounts.get("/dev/shm")) or {}
                if (shm.get("emptyDir") or {}).get("medium") != "Memory":
                    out.append(
                        _v(obj, where, "Ray needs /dev/shm on an emptyDir with medium Memory")
                    )
        for where, options in _autoscaler_options(obj):
            head = _head_template(obj)
            names = {v.get("name") for v in (head or {}).get("volumes") or []}
            for mount in options.get("volumeMounts") or []:
                if mount.get("name") not in names:
                    out.append(
                        _v(obj, where, f"volumeMount {mount.get('name')!r} has no head volume")
                    )
    return out


def _head_template(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    for _, spec in iter_ray_cluster_specs(obj):
        return ((spec.get("headGroupSpec") or {}).get("template") or {}).get("spec")
    return None


# --- images and Ray versions ----------------------------------------------------------------


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """``registry/repo:tag@sha256:...`` -> (repository, tag, digest)."""
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = image.rsplit(":", 1)
        return repo, tag, digest
    return image, None, digest


def _images(obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(path, image)`` of every container of ``obj`` and of the autoscaler KubeRay injects."""
    images: list[tuple[str, str]] = []
    for template in iter_pod_templates(obj):
        for sub, container in iter_containers(template.spec):
            images.append((f"{template.path}.{sub}.image", str(container.get("image", ""))))
    for where, options in _autoscaler_options(obj):
        if options.get("image"):
            images.append((f"{where}.image", str(options["image"])))
    return images


def check_images(docs: Docs, ray_version: str | None = None) -> list[str]:
    """Every image pinned (tag or digest, never ``latest``); with ``ray_version``: project
    images carry ``ray<version>`` in their tag and every rayVersion equals it."""
    out: list[str] = []
    for obj in docs:
        for where, image in _images(obj):
            repo, tag, digest = split_image(image)
            if not image:
                out.append(_v(obj, where, "no image"))
            elif tag is None and digest is None:
                out.append(_v(obj, where, f"{image!r} has no tag (implicit :latest)"))
            elif tag == "latest":
                out.append(_v(obj, where, f"{image!r} uses :latest"))
            project_image = repo.rsplit("/", 1)[-1] in PROJECT_IMAGES
            if ray_version and project_image and f"ray{ray_version}" not in (tag or ""):
                out.append(_v(obj, where, f"{image!r}: tag lacks ray{ray_version}"))
        if ray_version:
            for path, spec in iter_ray_cluster_specs(obj):
                if str(spec.get("rayVersion")) != ray_version:
                    out.append(
                        _v(
                            obj,
                            f"{path}.rayVersion",
                            f"{spec.get('rayVersion')!r} != {ray_version!r}",
                        )
                    )
    return out


def check_image_digests(docs: Docs) -> list[str]:
    """One line per image reference not pinned by digest (``@sha256:<64 hex>``), naming it and
    where it runs. Not part of :func:`run_policies`: a release overlay must pass it
    (``riskml k8s validate --release``; the digests come from ``riskml k8s pin-digests``)."""
    where_used: dict[str, list[str]] = {}
    for obj in docs:
        for where, image in _images(obj):
            digest = split_image(image)[2]
            if digest is None or not DIGEST_RE.match(digest):
                where_used.setdefault(image, []).append(f"{resource_id(obj)}: {where}")
    out = []
    for image, places in sorted(where_used.items()):
        more = f" and {len(places) - 1} more" if len(places) > 1 else ""
        out.append(f"{image!r} is not pinned by digest ({places[0]}{more})")
    return out


# --- RBAC -------------------------------------------------------------------------------------


def _app_namespaces(docs: Docs) -> set[str]:
    namespaces = {obj["metadata"]["name"] for obj in docs if obj.get("kind") == "Namespace"}
    return namespaces | {ns for obj in docs if (ns := _namespace(obj))}


def check_rbac(docs: Docs) -> list[str]:
    """No wildcards/escalation verbs; app service accounts get namespaced grants only."""
    out: list[str] = []
    app_namespaces = _app_namespaces(docs)
    for obj in docs:
        kind = obj.get("kind")
        if kind in ("Role", "ClusterRole"):
            for index, rule in enumerate(obj.get("rules") or []):
                where = f"rules[{index}]"
                for field in (
                    "apiGroups",
                    "resources",
                    "verbs",
                    "resourceNames",
                    "nonResourceURLs",
                ):
                    if any("*" in str(item) for item in rule.get(field) or []):
                        out.append(_v(obj, f"{where}.{field}", "wildcards are not allowed"))
                bad = ESCALATION_VERBS & set(rule.get("verbs") or [])
                if bad:
                    out.append(_v(obj, f"{where}.verbs", f"escalation verbs {sorted(bad)}"))
            if kind == "ClusterRole" and obj.get("aggregationRule"):
                out.append(_v(obj, "aggregationRule", "aggregated ClusterRoles are not allowed"))
        if kind in ("RoleBinding", "ClusterRoleBinding"):
            binding_ns = _namespace(obj)
            for index, subject in enumerate(obj.get("subjects") or []):
                where = f"subjects[{index}]"
                if subject.get("kind") != "ServiceAccount":
                    continue
                sa_ns = subject.get("namespace") or binding_ns
                if sa_ns not in app_namespaces:
                    continue
                if kind == "ClusterRoleBinding":
                    out.append(
                        _v(obj, where, f"cluster-wide binding for {sa_ns}/{subject['name']}")
                    )
                elif sa_ns != binding_ns:
                    why = _cross_namespace_problem(docs, obj)
                    if why:
                        out.append(
                            _v(
                                obj,
                                where,
                                f"cross-namespace grant to {sa_ns}/{subject['name']}: {why}",
                            )
                        )
                elif (obj.get("roleRef") or {}).get("kind") == "ClusterRole":
                    out.append(
                        _v(obj, "roleRef", f"binds ClusterRole {obj['roleRef'].get('name')!r}")
                    )
    return out


def _cross_namespace_problem(docs: Docs, binding: Mapping[str, Any]) -> str | None:
    """Why a RoleBinding may not grant its Role to another namespace's account (None: it may)."""
    ref = binding.get("roleRef") or {}
    if ref.get("kind") != "Role":
        return f"binds {ref.get('kind')} {ref.get('name')!r}"
    roles = [
        d
        for d in docs
        if d.get("kind") == "Role"
        and (d.get("metadata") or {}).get("name") == ref.get("name")
        and _namespace(d) == _namespace(binding)
    ]
    if not roles:
        return f"Role {ref.get('name')!r} not found in {_namespace(binding)}"
    for index, rule in enumerate(roles[0].get("rules") or []):
        if not rule.get("resourceNames"):
            return f"Role {ref.get('name')!r} rules[{index}] has no resourceNames"
        extra = set(rule.get("verbs") or []) - CROSS_NAMESPACE_VERBS
        if extra:
            return f"Role {ref.get('name')!r} rules[{index}] allows {sorted(extra)}"
    return None


# --- API tokens -------------------------------------------------------------------------------


def _token_volumes(spec: Mapping[str, Any]) -> set[str]:
    names = set()
    for volume in spec.get("volumes") or []:
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "serviceAccountToken" in source:
                names.add(volume.get("name"))
    return names


def check_no_api_tokens(docs: Docs, namespaces: Iterable[str]) -> list[str]:
    """In ``namespaces``: service accounts and pods never automount a token, and no pod
    container mounts a projected token (only the KubeRay autoscaler sidecar may, through
    ``autoscalerOptions.volumeMounts``)."""
    wanted = set(namespaces)
    out: list[str] = []
    for obj in docs:
        if _namespace(obj) not in wanted:
            continue
        if (
            obj.get("kind") == "ServiceAccount"
            and obj.get("automountServiceAccountToken") is not False
        ):
            out.append(_v(obj, "automountServiceAccountToken", "must be false"))
        for template in iter_pod_templates(obj):
            if template.spec.get("automountServiceAccountToken") is not False:
                out.append(
                    _v(obj, f"{template.path}.automountServiceAccountToken", "must be false")
                )
            token_volumes = _token_volumes(template.spec)
            for sub, container in iter_containers(template.spec):
                for mount in container.get("volumeMounts") or []:
                    if mount.get("name") in token_volumes:
                        out.append(
                            _v(obj, f"{template.path}.{sub}", "mounts a service-account token")
                        )
    return out


# --- network ----------------------------------------------------------------------------------


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels + matchExpressions); {} matches all."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if op == "In" and (not present or labels[key] not in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def _is_empty_selector(selector: Mapping[str, Any] | None) -> bool:
    selector = selector or {}
    return not selector.get("matchLabels") and not selector.get("matchExpressions")


def _is_default_deny(policy: Mapping[str, Any]) -> bool:
    spec = policy.get("spec") or {}
    return (
        _is_empty_selector(spec.get("podSelector"))
        and {"Ingress", "Egress"} <= set(spec.get("policyTypes") or [])
        and not spec.get("ingress")
        and not spec.get("egress")
    )


def _peer_is_outside(peer: Mapping[str, Any], namespace: str) -> bool:
    if "ipBlock" in peer:
        return True
    if "namespaceSelector" not in peer:
        return False  # podSelector alone: same namespace
    ns_selector = peer["namespaceSelector"] or {}
    only_self = (ns_selector.get("matchLabels") or {}).get("kubernetes.io/metadata.name")
    return not (only_self == namespace and not ns_selector.get("matchExpressions"))


def _peer_is_operator(peer: Mapping[str, Any]) -> bool:
    ns_labels = (peer.get("namespaceSelector") or {}).get("matchLabels") or {}
    pod_labels = (peer.get("podSelector") or {}).get("matchLabels") or {}
    key, value = OPERATOR_NAMESPACE_LABEL
    pod_key, pod_value = OPERATOR_POD_LABEL
    return ns_labels.get(key) == value and pod_labels.get(pod_key) == pod_value


def _rule_ports(rule: Mapping[str, Any]) -> set[int] | None:
    """Ray-internal port numbers a rule opens; None means every port."""
    ports = rule.get("ports")
    if not ports:
        return None
    opened: set[int] = set()
    for port in ports:
        value = port.get("port")
        if value is None:
            return None
        if isinstance(value, str) and not value.isdigit():
            opened |= {n for n, name in RAY_INTERNAL_PORTS.items() if name == value}
            continue
        low = int(value)
        high = int(port.get("endPort", low))
        opened |= {n for n in RAY_INTERNAL_PORTS if low <= n <= high}
    return opened


def check_network_policies(docs: Docs) -> list[str]:
    """Default-deny per app namespace; Ray GCS/client/dashboard never exposed outside it."""
    out: list[str] = []
    policies = [o for o in docs if o.get("kind") == "NetworkPolicy"]
    for ns_obj in (o for o in docs if o.get("kind") == "Namespace"):
        name = ns_obj["metadata"]["name"]
        if not any(_namespace(p) == name and _is_default_deny(p) for p in policies):
            out.append(_v(ns_obj, "<namespace>", "no default-deny NetworkPolicy (Ingress+Egress)"))
    ray_pods: dict[str, list[dict[str, str]]] = {}
    for obj in docs:
        if _is_ray(obj):
            for template in iter_pod_templates(obj):
                ray_pods.setdefault(_namespace(obj) or "", []).append(template.labels)
    for policy in policies:
        namespace = _namespace(policy) or ""
        spec = policy.get("spec") or {}
        selected = [
            labels
            for labels in ray_pods.get(namespace, [])
            if selector_matches(spec.get("podSelector"), labels)
        ]
        if not selected:
            continue
        for index, rule in enumerate(spec.get("ingress") or []):
            peers = rule.get("from") or []
            outside = [p for p in peers if _peer_is_outside(p, namespace)] if peers else [{}]
            if not outside:
                continue
            opened = _rule_ports(rule)
            exposed = set(RAY_INTERNAL_PORTS) if opened is None else opened
            if 8265 in exposed and all(_peer_is_operator(p) for p in outside):
                exposed.discard(8265)
            for port in sorted(exposed):
                out.append(
                    _v(
                        policy,
                        f"spec.ingress[{index}]",
                        f"exposes Ray {RAY_INTERNAL_PORTS[port]} port {port} outside {namespace}",
                    )
                )
    for obj in docs:
        if obj.get("kind") == "Service" and (obj.get("spec") or {}).get("type") in (
            "NodePort",
            "LoadBalancer",
        ):
            for port in (obj.get("spec") or {}).get("ports") or []:
                if port.get("port") in RAY_INTERNAL_PORTS or port.get("targetPort") in (
                    *RAY_INTERNAL_PORTS,
                    *RAY_INTERNAL_PORTS.values(),
                ):
                    out.append(_v(obj, "spec.ports", f"exposes Ray port {port.get('port')}"))
        for path, cluster in iter_ray_cluster_specs(obj):
            head = cluster.get("headGroupSpec") or {}
            if head.get("serviceType", "ClusterIP") != "ClusterIP":
                out.append(_v(obj, f"{path}.headGroupSpec.serviceType", "must be ClusterIP"))
            if head.get("enableIngress"):
                out.append(_v(obj, f"{path}.headGroupSpec.enableIngress", "must not be true"))
    return out


# --- reachability ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One end of a connection: a pod (``namespace`` + ``labels``) or an address outside the
    cluster (``ip``, e.g. a managed database)."""

    namespace: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    ip: str | None = None

    def __post_init__(self) -> None:
        if (self.ip is None) == (self.namespace is None):
            raise ValueError("an Endpoint is a pod (namespace, labels) or an address (ip)")


def pod(namespace: str, labels: Mapping[str, str] | None = None) -> Endpoint:
    """A pod of ``namespace`` carrying ``labels``."""
    return Endpoint(namespace=namespace, labels=dict(labels or {}))


def address(ip: str) -> Endpoint:
    """An endpoint outside the cluster, matched only by ``ipBlock`` peers."""
    ip_address(ip)  # a clear ValueError for a malformed address
    return Endpoint(ip=ip)


def _namespace_labels(docs: Docs, namespace: str) -> dict[str, str]:
    labels = {"kubernetes.io/metadata.name": namespace}  # set by the API server on every namespace
    for obj in docs:
        if obj.get("kind") == "Namespace" and obj["metadata"]["name"] == namespace:
            labels.update(obj["metadata"].get("labels") or {})
    return labels


def _peer_matches(docs: Docs, peer: Mapping[str, Any], policy_ns: str, end: Endpoint) -> bool:
    if "ipBlock" in peer:
        # Pods' addresses are not known offline: an ipBlock matches only an outside address.
        if end.ip is None:
            return False
        block = peer["ipBlock"]
        ip = ip_address(end.ip)
        inside = ip in ip_network(block["cidr"], strict=False)
        return inside and not any(
            ip in ip_network(cidr, strict=False) for cidr in block.get("except") or []
        )
    if end.ip is not None:
        return False
    if "namespaceSelector" in peer:
        ns_labels = _namespace_labels(docs, end.namespace or "")
        if not selector_matches(peer["namespaceSelector"], ns_labels):
            return False
    elif end.namespace != policy_ns:
        return False  # a podSelector alone means the policy's own namespace
    return "podSelector" not in peer or selector_matches(peer["podSelector"], end.labels)


def _port_matches(rule: Mapping[str, Any], port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True
    for spec in ports:
        if spec.get("protocol", "TCP") != protocol:
            continue
        value = spec.get("port")
        if value is None:
            return True
        if isinstance(value, int) and value <= port <= int(spec.get("endPort", value)):
            return True
        # a named port resolves against the destination's containers: not known here
    return False


def _policy_types(policy: Mapping[str, Any]) -> list[str]:
    """policyTypes, or the API server's default: Ingress, plus Egress when egress rules exist."""
    spec = policy.get("spec") or {}
    if spec.get("policyTypes"):
        return list(spec["policyTypes"])
    return ["Ingress", "Egress"] if "egress" in spec else ["Ingress"]


def _direction_allows(
    docs: Docs,
    selected: Endpoint,
    other: Endpoint,
    port: int,
    protocol: str,
    direction: str,
) -> bool:
    """Whether the policies of ``selected``'s namespace let it talk to ``other`` in
    ``direction`` (``Egress``: selected is the client; ``Ingress``: selected is the server)."""
    key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    isolating = [
        p
        for p in docs
        if p.get("kind") == "NetworkPolicy"
        and _namespace(p) == selected.namespace
        and direction in _policy_types(p)
        and selector_matches((p.get("spec") or {}).get("podSelector"), selected.labels)
    ]
    if not isolating:
        return True  # no policy selects the pod in this direction: not isolated
    for policy in isolating:
        for rule in (policy.get("spec") or {}).get(key) or []:
            peers = rule.get(peers_key)
            peer_ok = not peers or any(
                _peer_matches(docs, peer, _namespace(policy) or "", other) for peer in peers
            )
            if peer_ok and _port_matches(rule, port, protocol):
                return True
    return False


def network_allows(
    docs: Docs, source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP"
) -> bool:
    """True when the NetworkPolicies in ``docs`` let ``source`` (a pod) open ``port`` on
    ``destination`` (a pod: its ingress policies count too; an outside address: egress only).

    Namespace labels come from the Namespace objects in ``docs`` plus the
    ``kubernetes.io/metadata.name`` label every namespace carries.
    """
    if source.namespace is None:
        raise ValueError("the source of a connection must be a pod")
    if not _direction_allows(docs, source, destination, port, protocol, "Egress"):
        return False
    if destination.ip is not None:
        return True
    return _direction_allows(docs, destination, source, port, protocol, "Ingress")


# --- all together -----------------------------------------------------------------------------


def run_policies(
    docs: Docs,
    ray_version: str | None = None,
    token_free_namespaces: Iterable[str] = ("riskml-serving", "riskml-platform"),
) -> dict[str, list[str]]:
    """Every policy over ``docs``: ``{policy name: violations}``."""
    return {
        "pod-security": check_pod_security(docs),
        "ray-writable-dirs": check_ray_writable_dirs(docs),
        "images": check_images(docs, ray_version),
        "rbac": check_rbac(docs),
        "api-tokens": check_no_api_tokens(docs, token_free_namespaces),
        "network": check_network_policies(docs),
    }
