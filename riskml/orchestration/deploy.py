"""Roll the RayService's Serve app to a new model, safely.

:func:`rollout_rayservice` patches the app args in ``serveConfigV2`` (optimistic concurrency on
``metadata.resourceVersion``), waits until KubeRay reports the new generation serving and
healthy, and rolls back to the previous args when it does not. The release step
(:mod:`riskml.orchestration.release`) calls it after moving the registry's champion alias.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

#: group, version, plural of KubeRay's RayService.
RAYSERVICE_API = ("ray.io", "v1", "rayservices")
#: The RayService fields (KubeRay 1.x, ray.io/v1) the rollout reads to judge health;
#: tests/orchestration/test_deploy_rollout.py checks each one against the KubeRay CRD.
STATUS_FIELDS = (
    "status.observedGeneration",
    "status.conditions[].type",
    "status.conditions[].status",
    "status.conditions[].reason",
    "status.conditions[].message",
    "status.activeServiceStatus.rayClusterName",
    "status.activeServiceStatus.applicationStatuses.*.status",
    "status.activeServiceStatus.applicationStatuses.*.message",
    "status.pendingServiceStatus.rayClusterName",
    "status.pendingServiceStatus.applicationStatuses.*.status",
    "status.pendingServiceStatus.applicationStatuses.*.message",
)
#: Serve application states that fail a rollout (Ray's ApplicationStatus).
FAILED_APP_STATES = frozenset({"DEPLOY_FAILED", "UNHEALTHY"})
#: Conditions that mean KubeRay is still moving traffic between clusters.
UPGRADE_CONDITIONS = ("UpgradeInProgress", "RollbackInProgress")
#: A 409 caused only by a status write (spec and generation unchanged) is retried this often.
STATUS_CONFLICT_RETRIES = 3
#: Seconds one API request may take.
REQUEST_TIMEOUT_S = 30.0


class DeployError(ValueError):
    """The deploy cannot go ahead, or the rollout failed; the message says why.

    ``result`` is set when a rollout got as far as patching: the rollout summary (previous and
    new args, ``rolled_back``, the last status detail)."""

    result: dict[str, Any] | None = None


# -- reading the RayService ---------------------------------------------------------------------


def _serve_doc(obj: Mapping[str, Any], app: str, where: str) -> tuple[dict[str, Any], str]:
    """The parsed ``serveConfigV2`` and its text; DeployError without it or without ``app``."""
    import yaml

    text = (obj.get("spec") or {}).get("serveConfigV2")
    if not text or not isinstance(text, str):
        raise DeployError(f"RayService {where} has no serveConfigV2")
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict) or not any(
        isinstance(a, dict) and a.get("name") == app for a in doc.get("applications") or []
    ):
        raise DeployError(f"RayService {where} has no Serve application {app!r}")
    return doc, text


def serve_app_args(obj: Mapping[str, Any], app: str = "riskml") -> dict[str, Any]:
    """The ``args`` of Serve application ``app`` in a RayService's ``serveConfigV2``."""
    doc, _ = _serve_doc(obj, app, _where(obj))
    return dict(_app(doc, app).get("args") or {})


def _app(doc: Mapping[str, Any], app: str) -> dict[str, Any]:
    return next(a for a in doc["applications"] if isinstance(a, dict) and a.get("name") == app)


def _where(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '?')}/{meta.get('name', '?')}"


def _generation(obj: Mapping[str, Any]) -> int:
    return int((obj.get("metadata") or {}).get("generation") or 0)


def _resource_version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def rayservice_health(obj: Mapping[str, Any], app: str, generation: int) -> tuple[str, str]:
    """Judge a RayService (KubeRay 1.x status) for Serve app ``app`` at spec ``generation``.

    Returns ``(state, detail)``: ``healthy`` when KubeRay has observed ``generation``
    (``status.observedGeneration``), no upgrade is in progress (conditions
    ``UpgradeInProgress``/``RollbackInProgress`` not True, no pending cluster), the ``Ready``
    condition is not False and the app is RUNNING on the active cluster; ``failed`` when, at that
    generation, the app is DEPLOY_FAILED/UNHEALTHY on the cluster that runs the new config (the
    pending one during a cluster upgrade, else the active one); else ``pending``."""
    status = obj.get("status") or {}
    observed = int(status.get("observedGeneration") or 0)
    if observed < generation:
        return "pending", f"KubeRay has not observed generation {generation} yet (at {observed})"
    active = status.get("activeServiceStatus") or {}
    pending = status.get("pendingServiceStatus") or {}
    upgrading = bool(pending.get("rayClusterName") or pending.get("applicationStatuses"))
    serving = pending if upgrading else active
    label = "pending" if upgrading else "active"
    app_status = ((serving.get("applicationStatuses") or {}).get(app)) or {}
    state = str(app_status.get("status") or "")
    cluster = serving.get("rayClusterName") or "?"
    if state in FAILED_APP_STATES:
        message = str(app_status.get("message") or "").strip()
        return "failed", (
            f"Serve app {app!r} is {state} on the {label} cluster {cluster}"
            + (f": {message[:500]}" if message else "")
        )
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, dict)}
    for kind in UPGRADE_CONDITIONS:
        cond = conditions.get(kind) or {}
        if cond.get("status") == "True":
            return "pending", f"{kind} ({cond.get('reason') or 'no reason'})"
    if upgrading:
        return "pending", f"pending cluster {cluster} not promoted yet (app {state or 'absent'})"
    if state != "RUNNING":
        return "pending", f"Serve app {app!r} is {state or 'absent'} on cluster {cluster}"
    ready = conditions.get("Ready")
    if ready is not None and ready.get("status") != "True":
        return "pending", f"Ready is {ready.get('status')} ({ready.get('reason') or 'no reason'})"
    return "healthy", f"Serve app {app!r} RUNNING on cluster {cluster} at generation {observed}"


# -- the rollout --------------------------------------------------------------------------------


class _Rayservice:
    """GET/PATCH/status of one RayService through the kubernetes client; errors -> DeployError."""

    def __init__(self, api: Any, namespace: str, name: str) -> None:
        self.api, self.namespace, self.name = api, namespace, name
        self.where = f"{namespace}/{name}"

    def _call(self, what: str, fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            out = fn(
                *RAYSERVICE_API[:2],
                self.namespace,
                RAYSERVICE_API[2],
                self.name,
                *args,
                _request_timeout=REQUEST_TIMEOUT_S,
            )
        except ApiException as exc:
            raise _ApiError(
                f"{what} RayService {self.where}: {exc.status} {exc.reason}", exc.status
            ) from exc
        except HTTPError as exc:  # no answer (connection, timeout): status unknown
            raise _ApiError(f"{what} RayService {self.where}: {exc}", None) from exc
        return dict(out)

    def get(self) -> dict[str, Any]:
        return self._call("GET", self.api.get_namespaced_custom_object)

    def status(self) -> dict[str, Any]:
        return self._call("GET status of", self.api.get_namespaced_custom_object_status)

    def patch_serve_config(self, base: Mapping[str, Any], text: str) -> dict[str, Any]:
        """Merge-patch ``spec.serveConfigV2`` to ``text``, preconditioned on ``base``'s
        ``metadata.resourceVersion``: the API server answers 409 if the object changed since.

        A 409 is retried (with the fresh resourceVersion, at most
        :data:`STATUS_CONFLICT_RETRIES` times) only when the object's spec and generation are
        still ``base``'s - a KubeRay status write; any spec change is a DeployError."""
        current: Mapping[str, Any] = base
        for _ in range(STATUS_CONFLICT_RETRIES + 1):
            body = {
                "metadata": {"resourceVersion": _resource_version(current)},
                "spec": {"serveConfigV2": text},
            }
            try:
                return self._call("PATCH", self.api.patch_namespaced_custom_object, body)
            except _ApiError as exc:
                if exc.status is None:  # no answer: find out whether the patch landed
                    fresh = self.get()
                    if (fresh.get("spec") or {}).get("serveConfigV2") == text:
                        return fresh
                    raise
                if exc.status != 409:
                    raise
            fresh = self.get()
            if _generation(fresh) != _generation(base) or fresh.get("spec") != base.get("spec"):
                raise DeployError(
                    f"RayService {self.where} changed concurrently (resourceVersion "
                    f"{_resource_version(base)} -> {_resource_version(fresh)}, generation "
                    f"{_generation(base)} -> {_generation(fresh)}): not patched; another deploy "
                    "or edit is in flight - check the RayService and run the deploy again"
                )
            current = fresh
        raise DeployError(
            f"RayService {self.where}: PATCH kept conflicting with status writes "
            f"({STATUS_CONFLICT_RETRIES + 1} attempts); spec unchanged - run the deploy again"
        )


class _ApiError(DeployError):
    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


def _wait_healthy(
    svc: _Rayservice,
    app: str,
    generation: int,
    expect: str,
    *,
    timeout_s: float,
    poll_s: float,
) -> tuple[str, str, dict[str, Any]]:
    """Poll the status subresource until :func:`rayservice_health` says healthy or failed, or
    ``timeout_s`` passes (-> ``timeout``); ``superseded`` when ``spec.serveConfigV2`` is no
    longer ``expect`` (someone else changed it meanwhile). Transient errors (429, 5xx, no
    answer) are waited out; others (403, 404) fail the wait: the rollout cannot be confirmed."""
    clock = time.monotonic
    deadline = clock() + timeout_s
    detail, obj = "no status read yet", {}
    while True:
        try:
            obj = svc.status()
        except _ApiError as exc:
            if exc.status is not None and exc.status != 429 and exc.status < 500:
                return "failed", f"cannot read the status: {exc}", obj
            detail = f"status read failed: {exc}"
        else:
            if (obj.get("spec") or {}).get("serveConfigV2") != expect:
                return (
                    "superseded",
                    (
                        f"spec.serveConfigV2 was changed by someone else (generation "
                        f"{_generation(obj)}, resourceVersion {_resource_version(obj)})"
                    ),
                    obj,
                )
            state, detail = rayservice_health(obj, app, generation)
            if state != "pending":
                return state, detail, obj
        left = deadline - clock()
        if left <= 0:
            return "timeout", f"not healthy after {timeout_s:g}s: {detail}", obj
        time.sleep(min(poll_s, left))


def _summary(args: Mapping[str, Any], keys: Iterable[str]) -> str:
    shown = {k: args[k] for k in keys if k in args}
    return ", ".join(f"{k}={v}" for k, v in shown.items()) or "{}"


def rollout_rayservice(
    app_args: Mapping[str, Any],
    *,
    name: str = "riskml-scoring",
    namespace: str = "riskml-serving",
    app: str = "riskml",
    api_client: Any = None,
    timeout_s: float = 600.0,
    poll_s: float = 5.0,
    remove: Iterable[str] = ("bundle_dir",),
) -> dict[str, Any]:
    """Roll Serve app ``app`` of RayService ``namespace/name`` to new args, safely.

    1. GET the RayService; set ``app_args`` in the app's ``args`` (dropping the keys in
       ``remove``) and merge-patch ``spec.serveConfigV2`` with ``metadata.resourceVersion`` in
       the body: if anyone changed the spec since the GET the API server refuses (409) and this
       raises DeployError (a conflict caused only by a status write is retried).
    2. Poll the status subresource every ``poll_s`` until KubeRay reports the patched generation
       healthy (:func:`rayservice_health`), for at most ``timeout_s``.
    3. On DEPLOY_FAILED/UNHEALTHY or timeout: restore the previous ``serveConfigV2`` verbatim
       (again preconditioned on the current resourceVersion, and only if the spec still holds
       this rollout's config), wait for health again (at most ``timeout_s``), and raise
       DeployError saying what failed and whether the rollback is healthy.

    Needs ``get``/``patch`` on ``rayservices`` and ``get`` on ``rayservices/status`` (the Role
    riskml-rayservice-deployer). Returns ``rayservice`` (ns/name), ``app``,
    ``previous_args``, ``args``, ``resource_version`` and ``generation`` (of the patch),
    ``waited_s``, ``status`` (the app status) and ``detail``."""
    import yaml
    from kubernetes import client

    from riskml.orchestration.rayjob import kube_api_client

    api = client.CustomObjectsApi(api_client or kube_api_client())
    svc = _Rayservice(api, namespace, name)
    base = svc.get()
    doc, original_text = _serve_doc(base, app, svc.where)
    previous = dict(_app(doc, app).get("args") or {})
    dropped = set(remove)
    new_args = {k: v for k, v in previous.items() if k not in dropped}
    new_args.update(dict(app_args))
    _app(doc, app)["args"] = new_args
    try:
        new_text = yaml.safe_dump(doc, sort_keys=False)
    except yaml.YAMLError as exc:
        raise DeployError(f"Serve app args are not YAML-serialisable: {exc}") from exc
    changed = sorted(set(app_args) | (dropped & set(previous)))
    result: dict[str, Any] = {
        "rayservice": svc.where,
        "app": app,
        "previous_args": previous,
        "args": new_args,
    }

    started = time.monotonic()
    # unchanged args: no patch, only confirm that the current generation is healthy
    patched = base if new_args == previous else svc.patch_serve_config(base, new_text)
    generation = _generation(patched)
    result.update(resource_version=_resource_version(patched), generation=generation)
    expect = original_text if patched is base else new_text
    state, detail, last = _wait_healthy(
        svc, app, generation, expect, timeout_s=timeout_s, poll_s=poll_s
    )
    result["waited_s"] = round(time.monotonic() - started, 3)
    app_status = ((last.get("status") or {}).get("activeServiceStatus") or {}).get(
        "applicationStatuses"
    ) or {}
    result["status"] = str((app_status.get(app) or {}).get("status") or "")
    result["detail"] = detail
    if state == "healthy":
        return result

    what = (
        f"rollout of RayService {svc.where} app {app!r} to {_summary(new_args, changed)} "
        f"{'timed out' if state == 'timeout' else 'failed'}: {detail}"
    )
    if state == "superseded":
        result["rolled_back"] = False
        err = DeployError(
            f"rollout of RayService {svc.where} app {app!r}: the RayService changed "
            f"concurrently while waiting for health - {detail}; not rolled back (the other "
            "change is kept): check the RayService and run the deploy again"
        )
        err.result = result
        raise err
    if patched is base:
        err = DeployError(f"{what}; the serve config was unchanged, nothing to roll back")
        result["rolled_back"] = False
        err.result = result
        raise err
    rolled_back, rb_detail = _rollback(
        svc,
        app,
        new_text,
        original_text,
        timeout_s=timeout_s,
        poll_s=poll_s,
    )
    result.update(rolled_back=rolled_back, rollback_detail=rb_detail)
    restored = _summary(previous, changed)
    if rolled_back:
        message = f"{what}; rolled back to the previous args ({restored}): {rb_detail}"
    else:
        message = f"{what}; rollback to the previous args ({restored}) failed too: {rb_detail}"
    err = DeployError(message)
    err.result = result
    raise err


def _rollback(
    svc: _Rayservice,
    app: str,
    ours: str,
    original: str,
    *,
    timeout_s: float,
    poll_s: float,
) -> tuple[bool, str]:
    """Restore ``original`` serveConfigV2 if the spec still holds ``ours``; wait for health."""
    try:
        current = svc.get()
        if (current.get("spec") or {}).get("serveConfigV2") != ours:
            return False, (
                "not rolled back: the RayService's serveConfigV2 was changed by someone else "
                "during the rollout"
            )
        patched = svc.patch_serve_config(current, original)
    except DeployError as exc:
        return False, f"not rolled back: {exc}"
    state, detail, _ = _wait_healthy(
        svc,
        app,
        _generation(patched),
        original,
        timeout_s=timeout_s,
        poll_s=poll_s,
    )
    if state == "healthy":
        return True, detail
    if state == "superseded":
        return False, f"restored the previous serveConfigV2, then {detail}"
    return False, f"restored the previous serveConfigV2 but it is not healthy: {detail}"
