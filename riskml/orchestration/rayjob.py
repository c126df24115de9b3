"""The ``rayjob`` mode: run an entrypoint as a KubeRay RayJob with the kubernetes client.

1. **Template.** ``k8s/base/training/rayjob.yaml`` (or, with ``template="cluster"``, the applied,
   overlay-rendered template object ``riskml-train`` that sits suspended in the namespace).
2. **Build** (:func:`build_rayjob`): a copy under a fresh name, server fields stripped,
   ``suspend: false``, ``entrypoint`` = ``python -m riskml.orchestration.launch <entrypoint>
   --spec '<json>'``, extra env vars merged into ``runtimeEnvYAML``, images pinned, optional GPU
   worker replicas, run labels. The object is checked against the KubeRay CRD schema
   (:func:`riskml.k8s.validate.validate_custom_resource`) before anything is sent.
3. **Run** (:func:`run_rayjob`): ``CustomObjectsApi.create_namespaced_custom_object``, poll
   ``get_namespaced_custom_object`` until ``status.jobDeploymentStatus`` is terminal
   (``Complete`` / ``Failed`` / ``ValidationFailed``), read the submitter pod's log (the k8s Job
   KubeRay creates has the RayJob's name; its pods carry ``job-name=<name>``) and take the last
   ``RISKML_RESULT {json}`` line, then delete the RayJob (KubeRay tears its cluster down).

RBAC the caller needs in the namespace: ``rayjobs`` create/get/delete (``ray.io``), ``pods``
list and ``pods/log`` get.
"""

from __future__ import annotations

import copy
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from riskml.orchestration.images import PINNED_IMAGES, image_repository
from riskml.orchestration.options import (
    LogSink,
    RayJobOptions,
    RayTaskError,
    RayTaskOptions,
    launch_command,
)
from riskml.orchestration.protocol import parse_result
from riskml.settings import get_settings

if TYPE_CHECKING:  # pragma: no cover
    from kubernetes.client import ApiClient

GROUP, VERSION, PLURAL, KIND = "ray.io", "v1", "rayjobs", "RayJob"
TERMINAL_DEPLOYMENT_STATES = frozenset({"Complete", "Failed", "ValidationFailed"})
#: Metadata the API server owns; never copied from a template read back from a cluster.
SERVER_METADATA = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "ownerReferences",
    "finalizers",
    "generateName",
)
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def load_template(options: RayJobOptions, api_client: ApiClient | None = None) -> dict[str, Any]:
    """The RayJob template: from the file, or the applied object when ``template='cluster'``."""
    if options.template == "cluster":
        from kubernetes import client

        api = client.CustomObjectsApi(api_client or kube_api_client(options.in_cluster))
        obj = api.get_namespaced_custom_object(
            GROUP, VERSION, options.namespace, PLURAL, options.template_name
        )
        return dict(obj)
    path = Path(options.template)
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    jobs = [d for d in docs if d.get("kind") == KIND]
    if len(jobs) != 1:
        raise ValueError(f"{path}: expected exactly one RayJob, found {len(jobs)}")
    return dict(jobs[0])


def build_rayjob(
    template: Mapping[str, Any],
    entrypoint: str,
    spec: Mapping[str, Any],
    *,
    name: str,
    options: RayTaskOptions,
    images: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A runnable RayJob for ``entrypoint(spec)`` built from ``template`` (not modified)."""
    if template.get("kind") != KIND or not str(template.get("apiVersion", "")).startswith(GROUP):
        raise ValueError(
            f"template is {template.get('apiVersion')}/{template.get('kind')}, not {GROUP}/{KIND}"
        )
    if len(name) > 63:
        raise ValueError(f"RayJob name {name!r} is longer than 63 characters")
    rj = options.rayjob
    obj: dict[str, Any] = copy.deepcopy(dict(template))
    obj.pop("status", None)
    meta = obj.setdefault("metadata", {})
    for key in SERVER_METADATA:
        meta.pop(key, None)
    annotations = meta.get("annotations") or {}
    annotations.pop(LAST_APPLIED, None)
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    meta["name"] = name
    meta["namespace"] = rj.namespace
    meta["labels"] = {
        **(meta.get("labels") or {}),
        "riskml.io/run": name,
        "riskml.io/entrypoint": entrypoint.split(":", 1)[0].rsplit(".", 1)[-1][:63],
    }
    body = obj.setdefault("spec", {})
    body["suspend"] = False
    body["entrypoint"] = launch_command(entrypoint, spec, options.python)
    runtime_env = yaml.safe_load(body.get("runtimeEnvYAML") or "") or {}
    if not isinstance(runtime_env, dict):
        raise ValueError("template runtimeEnvYAML is not a mapping")
    from riskml.orchestration.options import forwarded_env

    env_vars = {**forwarded_env(), **options.env_vars}
    if env_vars:
        runtime_env["env_vars"] = {**(runtime_env.get("env_vars") or {}), **env_vars}
    if runtime_env:
        body["runtimeEnvYAML"] = yaml.safe_dump(runtime_env, sort_keys=True)
    _pin_images(obj, PINNED_IMAGES if images is None else images, rj.image)
    if rj.gpu_workers is not None:
        groups = (body.get("rayClusterSpec") or {}).get("workerGroupSpecs") or []
        gpu = [g for g in groups if g.get("groupName") == "gpu"]
        if not gpu:
            raise ValueError("gpu_workers set but the template has no worker group 'gpu'")
        for group in gpu:
            group["replicas"] = rj.gpu_workers
            group["minReplicas"] = min(int(group.get("minReplicas", 0)), rj.gpu_workers)
            group["maxReplicas"] = max(int(group.get("maxReplicas", 0)), rj.gpu_workers)
    return obj


def _pin_images(obj: dict[str, Any], images: Mapping[str, str], override: str | None) -> None:
    from riskml.k8s.manifests import iter_containers, iter_pod_specs

    for _, podspec in iter_pod_specs(obj):
        for _, container in iter_containers(podspec):
            ref = str(container.get("image", ""))
            repo = image_repository(ref)
            if override is not None and repo.rsplit("/", 1)[-1] == "riskml":
                container["image"] = override
            elif repo in images and ref == repo:  # untagged reference: pin it
                container["image"] = images[repo]


def validate_rayjob(obj: Mapping[str, Any]) -> bool:
    """Validate against the KubeRay CRD; False (not checked) when no CRD directory is set."""
    if get_settings().crd_dir is None:
        return False
    from riskml.k8s.validate import validate_custom_resource

    validate_custom_resource(obj)
    return True


def kube_api_client(in_cluster: bool | None = None) -> ApiClient:
    """An ApiClient from the in-cluster service account or ``~/.kube/config``."""
    from kubernetes import client, config

    if in_cluster is None:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
    elif in_cluster:
        config.load_incluster_config()
    else:
        config.load_kube_config()
    return client.ApiClient()


def run_rayjob(
    entrypoint: str,
    spec: dict[str, Any],
    options: RayTaskOptions,
    sink: LogSink,
    *,
    api_client: ApiClient | None = None,
) -> dict[str, Any]:
    """Create the RayJob, wait for it, collect the result line, delete it."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    rj = options.rayjob
    api_client = api_client or kube_api_client(rj.in_cluster)
    custom = client.CustomObjectsApi(api_client)
    core = client.CoreV1Api(api_client)
    template = load_template(rj, api_client)
    name = f"{rj.name_prefix}-{uuid.uuid4().hex[:8]}"
    obj = build_rayjob(template, entrypoint, spec, name=name, options=options)
    if rj.validate_schema:
        validate_rayjob(obj)
    custom.create_namespaced_custom_object(GROUP, VERSION, rj.namespace, PLURAL, obj)
    print(f"RayJob {rj.namespace}/{name} created", file=sys.stderr, flush=True)
    status: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + options.timeout_s
        seen: tuple[str | None, str | None] = (None, None)
        while True:
            current = custom.get_namespaced_custom_object(
                GROUP, VERSION, rj.namespace, PLURAL, name
            )
            status = dict(current.get("status") or {})
            state = (status.get("jobDeploymentStatus"), status.get("jobStatus"))
            if state != seen:
                sink(f"RayJob {name}: deployment={state[0]} job={state[1]}\n")
                seen = state
            if state[0] in TERMINAL_DEPLOYMENT_STATES:
                break
            if time.monotonic() > deadline:
                raise RayTaskError(
                    f"RayJob {name} did not finish within {options.timeout_s:.0f} s",
                    job_id=status.get("jobId"),
                    status=str(state),
                    log_tail=_submitter_log(core, rj, name)[-4000:],
                )
            time.sleep(options.poll_interval_s)
        logs = _submitter_log(core, rj, name)
        if options.stream_logs and logs:
            sink(logs if logs.endswith("\n") else logs + "\n")
        job_status = status.get("jobStatus")
        if status.get("jobDeploymentStatus") != "Complete" or job_status != "SUCCEEDED":
            reason = status.get("reason") or ""
            message = status.get("message") or ""
            raise RayTaskError(
                f"RayJob {name} ended deployment={status.get('jobDeploymentStatus')} "
                f"job={job_status} {reason} {message}".rstrip(),
                job_id=status.get("jobId"),
                status=job_status,
                log_tail="\n".join(logs.splitlines()[-30:]),
            )
        result = parse_result(logs)
        if result is None:
            raise RayTaskError(
                f"RayJob {name} succeeded but its submitter log has no RISKML_RESULT line",
                job_id=status.get("jobId"),
                status=job_status,
                log_tail="\n".join(logs.splitlines()[-30:]),
            )
        return {
            "mode": "rayjob",
            "entrypoint": entrypoint,
            "job_id": status.get("jobId") or name,
            "rayjob": f"{rj.namespace}/{name}",
            "status": job_status,
            "dashboard_url": status.get("dashboardURL"),
            "result": result,
        }
    finally:
        if not rj.keep:
            try:
                custom.delete_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    rj.namespace,
                    PLURAL,
                    name,
                    body=client.V1DeleteOptions(propagation_policy="Background"),
                )
            except ApiException as exc:  # already gone (TTL) is fine
                if exc.status != 404:
                    raise


def _submitter_log(core: Any, rj: RayJobOptions, name: str) -> str:
    """The submitter pod's log ('' when there is no pod yet). Latest pod first."""
    pods = core.list_namespaced_pod(rj.namespace, label_selector=f"job-name={name}").items
    if not pods:
        return ""
    pods.sort(
        key=lambda p: (p.metadata.creation_timestamp is not None, p.metadata.creation_timestamp),
        reverse=True,
    )
    return str(
        core.read_namespaced_pod_log(
            pods[0].metadata.name, rj.namespace, container=rj.submitter_container
        )
    )
