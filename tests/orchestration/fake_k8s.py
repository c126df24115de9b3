"""A tiny Kubernetes API server on 127.0.0.1 for the ``rayjob`` mode and deploy tests.

It speaks just enough of the API for what :mod:`riskml.orchestration.rayjob` and
:mod:`riskml.orchestration.deploy` call through the real kubernetes client, checks the bearer
token and JSON bodies, and plays KubeRay:

- RayJobs (``CustomObjectsApi`` create/get/delete of ``rayjobs``, ``CoreV1Api`` list pods by
  label and read a pod's log): a created RayJob's ``spec.entrypoint`` really runs (a local
  subprocess with the ``runtimeEnvYAML`` env vars), its output becomes the submitter pod's log,
  and the status moves Initializing -> Running -> Complete/Failed with jobStatus RUNNING ->
  SUCCEEDED/FAILED.
- RayServices (GET of the object and of its ``status`` subresource, JSON merge PATCH): like the
  API server, a PATCH whose body carries ``metadata.resourceVersion`` is refused with 409
  Conflict unless that is the stored version; every write bumps ``metadata.resourceVersion``,
  a spec change bumps ``metadata.generation``, ``status`` is not patchable through the main
  resource. After a spec change the status moves as KubeRay 1.x reports it, one step per GET
  of the RayService: ``observedGeneration`` lags ``lag`` GETs, then the Serve apps are
  DEPLOYING (on a pending cluster with ``UpgradeInProgress`` when ``new_cluster``) for
  ``polls`` GETs, then RUNNING (the pending cluster promoted) or DEPLOY_FAILED/UNHEALTHY -
  whatever :attr:`FakeKube.serve_outcome` says for the new ``serveConfigV2``. An in-place
  change (not ``new_cluster``) drops a pending cluster, as KubeRay does when the spec matches
  the active cluster again (a rollback).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

from tests.support.fake_http import FakeHttpServer

TOKEN = "test-token"
RAYJOBS = re.compile(r"^/apis/ray\.io/v1/namespaces/([^/]+)/rayjobs(?:/([^/]+))?$")
RAYSERVICES = re.compile(r"^/apis/ray\.io/v1/namespaces/([^/]+)/rayservices/([^/]+?)(/status)?$")
PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods$")
POD_LOG = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")


NOW = "2024-06-01T00:00:00Z"


@dataclass(frozen=True)
class ServeOutcome:
    """How the fake KubeRay plays a new ``serveConfigV2``.

    ``status``: the Serve apps' final status - RUNNING, DEPLOY_FAILED, UNHEALTHY, or DEPLOYING
    (never settles). ``lag``: GETs before ``observedGeneration`` catches up (the old status,
    RUNNING, stays until then). ``polls``: GETs the apps stay DEPLOYING after that.
    ``new_cluster``: KubeRay upgrades through a pending cluster (``UpgradeInProgress``) that is
    promoted when the apps are RUNNING."""

    status: str = "RUNNING"
    polls: int = 2
    lag: int = 1
    new_cluster: bool = False
    message: str = ""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return json.loads(json.dumps(patch))
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _condition(kind: str, ok: bool, reason: str, generation: int) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": "",
        "lastTransitionTime": NOW,
        "observedGeneration": generation,
    }


def serve_apps(svc: dict[str, Any]) -> list[str]:
    doc = yaml.safe_load((svc.get("spec") or {}).get("serveConfigV2") or "") or {}
    return [str(a["name"]) for a in doc.get("applications") or []]


def healthy_status(svc: dict[str, Any], generation: int, cluster: str) -> dict[str, Any]:
    """What KubeRay 1.x reports for a RayService whose apps all run on ``cluster``."""
    apps = {a: {"status": "RUNNING", "serveDeploymentStatuses": {}} for a in serve_apps(svc)}
    return {
        "observedGeneration": generation,
        "serviceStatus": "Running",
        "numServeEndpoints": 2,
        "lastUpdateTime": NOW,
        "conditions": [
            _condition("Ready", True, "NonZeroServeEndpoints", generation),
            _condition("UpgradeInProgress", False, "NoPendingCluster", generation),
        ],
        "activeServiceStatus": {"rayClusterName": cluster, "applicationStatuses": apps},
        "pendingServiceStatus": {},
    }


@dataclass
class _Rollout:
    outcome: ServeOutcome
    generation: int
    gets: int = 0


class FakeKube(FakeHttpServer):
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.services: dict[tuple[str, str], dict[str, Any]] = {}
        self.logs: dict[str, str] = {}
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.RLock()
        #: the outcome of a spec change, given the new serveConfigV2 (parsed)
        self.serve_outcome: Callable[[dict[str, Any]], ServeOutcome] = lambda doc: ServeOutcome()
        #: run (once each, in order) when a RayService PATCH arrives, before it is applied:
        #: e.g. another writer's change between the client's GET and its PATCH
        self.before_patch: list[Callable[[], None]] = []
        #: run (once each, in order) right after a RayService PATCH was applied: e.g. another
        #: writer's change while the client waits for health
        self.after_patch: list[Callable[[], None]] = []
        #: HTTP codes the next GETs of a RayService's status subresource answer with, in order
        self.status_errors: list[int] = []
        #: every RayService state the fake stored (for schema checks of the simulated status)
        self.history: list[dict[str, Any]] = []
        self._rollouts: dict[tuple[str, str], _Rollout] = {}
        self._rv = 100
        super().__init__()

    def api_client(self, token: str = TOKEN) -> Any:
        """A real kubernetes ``ApiClient`` pointed at this server."""
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.host
        cfg.api_key = {"authorization": token}
        cfg.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(cfg)

    # -- RayServices ---------------------------------------------------------------------------

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _store(self, key: tuple[str, str], svc: dict[str, Any]) -> None:
        self.services[key] = svc
        self.history.append(json.loads(json.dumps(svc)))

    def add_rayservice(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Store a RayService as created and reconciled: server metadata, apps RUNNING."""
        svc = json.loads(json.dumps(manifest))
        meta = svc["metadata"]
        key = (meta["namespace"], meta["name"])
        with self.lock:
            meta.update(
                uid=f"uid-{meta['name']}",
                resourceVersion=self._next_rv(),
                generation=1,
                creationTimestamp=NOW,
            )
            svc["status"] = healthy_status(svc, 1, f"{meta['name']}-raycluster-g1")
            self._store(key, svc)
        return self.rayservice(*key)

    def rayservice(self, namespace: str, name: str) -> dict[str, Any]:
        with self.lock:
            return json.loads(json.dumps(self.services[(namespace, name)]))

    def app_args(self, namespace: str, name: str, app: str = "riskml") -> dict[str, Any]:
        svc = self.rayservice(namespace, name)
        doc = yaml.safe_load(svc["spec"]["serveConfigV2"])
        return next(dict(a.get("args") or {}) for a in doc["applications"] if a["name"] == app)

    def patch_rayservice(
        self, namespace: str, name: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        """Apply a JSON merge patch as the API server does: ``(HTTP code, response body)``."""
        key = (namespace, name)
        with self.lock:
            svc = self.services.get(key)
            if svc is None:
                return 404, {"kind": "Status", "code": 404, "reason": "NotFound"}
            meta = svc["metadata"]
            want = (body.get("metadata") or {}).get("resourceVersion")
            if want is not None and str(want) != meta["resourceVersion"]:
                return 409, {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "message": f'Operation cannot be fulfilled on rayservices.ray.io "{name}": '
                    "the object has been modified; please apply your changes to the latest "
                    "version and try again",
                    "reason": "Conflict",
                    "details": {"name": name, "group": "ray.io", "kind": "rayservices"},
                    "code": 409,
                }
            body = {k: v for k, v in body.items() if k != "status"}  # status: subresource only
            patched = merge_patch(svc, body)
            for field in ("name", "namespace", "uid", "generation", "creationTimestamp"):
                patched["metadata"][field] = meta[field]
            patched["metadata"]["resourceVersion"] = meta["resourceVersion"]
            if patched == svc:  # a no-op patch writes nothing
                return 200, json.loads(json.dumps(svc))
            if patched.get("spec") != svc.get("spec"):
                generation = meta["generation"] + 1
                patched["metadata"]["generation"] = generation
                doc = yaml.safe_load(patched["spec"].get("serveConfigV2") or "") or {}
                self._rollouts[key] = _Rollout(self.serve_outcome(doc), generation)
            patched["metadata"]["resourceVersion"] = self._next_rv()
            self._store(key, patched)
            return 200, json.loads(json.dumps(patched))

    def _reconcile(self, key: tuple[str, str]) -> None:
        """One step of KubeRay after a spec change (called on each GET of the RayService)."""
        rollout = self._rollouts.get(key)
        if rollout is None:
            return
        rollout.gets += 1
        out = rollout.outcome
        if rollout.gets <= out.lag:
            return
        svc = json.loads(json.dumps(self.services[key]))
        name, gen = svc["metadata"]["name"], rollout.generation
        status = svc["status"]
        settled = out.status != "DEPLOYING" and rollout.gets - out.lag > out.polls
        state = out.status if settled else "DEPLOYING"
        apps = {
            a: {"status": state, **({"message": out.message} if out.message else {})}
            for a in serve_apps(svc)
        }
        status["observedGeneration"] = gen
        if out.new_cluster and state == "RUNNING":
            status.update(healthy_status(svc, gen, f"{name}-raycluster-g{gen}"))
        elif out.new_cluster:
            status["pendingServiceStatus"] = {
                "rayClusterName": f"{name}-raycluster-g{gen}",
                "applicationStatuses": apps,
            }
            status["conditions"] = [
                _condition("Ready", True, "NonZeroServeEndpoints", gen),
                _condition("UpgradeInProgress", True, "BothActivePendingClustersExist", gen),
            ]
        else:  # a serve-config-only change: KubeRay updates the apps in place (and drops a
            # pending cluster: the spec matches the active cluster again, e.g. after a rollback)
            status["activeServiceStatus"]["applicationStatuses"] = apps
            status["pendingServiceStatus"] = {}
            status["conditions"] = [
                _condition("Ready", True, "NonZeroServeEndpoints", gen),
                _condition("UpgradeInProgress", False, "NoPendingCluster", gen),
            ]
        if settled:
            del self._rollouts[key]
        if status != self.services[key]["status"]:
            svc["metadata"]["resourceVersion"] = self._next_rv()
            self._store(key, svc)

    def _play(self, ns: str, name: str) -> None:
        obj = self.objects[(ns, name)]
        spec = obj["spec"]
        env = {**os.environ}
        env_vars = (yaml.safe_load(spec.get("runtimeEnvYAML") or "") or {}).get("env_vars", {})
        env.update({k: str(v) for k, v in env_vars.items()})
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        with self.lock:
            obj["status"] = {"jobDeploymentStatus": "Initializing"}
        proc = subprocess.run(
            ["bash", "-c", spec["entrypoint"]], capture_output=True, text=True, env=env
        )
        with self.lock:
            self.logs[name] = proc.stdout + proc.stderr
            ok = proc.returncode == 0
            obj["status"] = {
                "jobDeploymentStatus": "Complete" if ok else "Failed",
                "jobStatus": "SUCCEEDED" if ok else "FAILED",
                "jobId": f"{name}-jobid",
                "dashboardURL": f"{name}-head-svc.{ns}.svc.cluster.local:8265",
                "message": "" if ok else f"exit code {proc.returncode}",
            }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, code: int, payload: Any, ctype: str = "application/json") -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self, body: Any = None) -> bool:
                url = urlparse(self.path)
                fake.requests.append(
                    {
                        "method": self.command,
                        "path": url.path,
                        "query": parse_qs(url.query),
                        "auth": self.headers.get("Authorization"),
                        "content_type": self.headers.get("Content-Type"),
                        "body": body,
                    }
                )
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._send(401, {"kind": "Status", "code": 401, "reason": "Unauthorized"})
                    return False
                return True

            def _body(self) -> Any:
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n)) if n else None

            def do_POST(self) -> None:
                body = self._body()
                if not self._record(body):
                    return
                m = RAYJOBS.match(urlparse(self.path).path)
                if not m or m.group(2):
                    return self._send(404, {"kind": "Status", "code": 404})
                ns, name = m.group(1), body["metadata"]["name"]
                with fake.lock:
                    if (ns, name) in fake.objects:
                        return self._send(409, {"kind": "Status", "code": 409})
                    stored = json.loads(json.dumps(body))
                    stored["metadata"].update({"uid": f"uid-{name}", "resourceVersion": "1"})
                    fake.objects[(ns, name)] = stored
                threading.Thread(target=fake._play, args=(ns, name), daemon=True).start()
                self._send(201, stored)

            def do_GET(self) -> None:
                if not self._record():
                    return
                url = urlparse(self.path)
                if m := RAYSERVICES.match(url.path):
                    key = (m.group(1), m.group(2))
                    if m.group(3) and fake.status_errors:
                        code = fake.status_errors.pop(0)
                        return self._send(code, {"kind": "Status", "code": code})
                    with fake.lock:
                        if key in fake.services:
                            fake._reconcile(key)
                        svc = fake.services.get(key)
                        payload = json.loads(json.dumps(svc)) if svc else None
                    if payload is None:
                        return self._send(404, {"kind": "Status", "code": 404})
                    return self._send(200, payload)
                if m := RAYJOBS.match(url.path):
                    with fake.lock:
                        obj = fake.objects.get((m.group(1), m.group(2) or ""))
                        payload = json.loads(json.dumps(obj)) if obj else None
                    if payload is None:
                        return self._send(404, {"kind": "Status", "code": 404})
                    return self._send(200, payload)
                if m := PODS.match(url.path):
                    selector = parse_qs(url.query).get("labelSelector", [""])[0]
                    job = selector.removeprefix("job-name=")
                    items = []
                    with fake.lock:
                        if job in fake.logs:
                            items.append(
                                {
                                    "metadata": {
                                        "name": f"{job}-x7k2p",
                                        "namespace": m.group(1),
                                        "labels": {"job-name": job},
                                        "creationTimestamp": "2024-06-01T00:00:00Z",
                                    }
                                }
                            )
                    return self._send(
                        200,
                        {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items},
                    )
                if m := POD_LOG.match(url.path):
                    job = m.group(2).rsplit("-", 1)[0]
                    with fake.lock:
                        text = fake.logs.get(job)
                    if text is None:
                        return self._send(404, {"kind": "Status", "code": 404})
                    return self._send(200, text.encode(), "text/plain")
                self._send(404, {"kind": "Status", "code": 404})

            def do_PATCH(self) -> None:
                body = self._body()
                if not self._record(body):
                    return
                m = RAYSERVICES.match(urlparse(self.path).path)
                if not m or m.group(3):  # the status subresource is KubeRay's to write
                    return self._send(404, {"kind": "Status", "code": 404})
                if self.headers.get("Content-Type") != "application/merge-patch+json":
                    return self._send(415, {"kind": "Status", "code": 415})
                while fake.before_patch:
                    fake.before_patch.pop(0)()
                code, payload = fake.patch_rayservice(m.group(1), m.group(2), body)
                while code == 200 and fake.after_patch:
                    fake.after_patch.pop(0)()
                self._send(code, payload)

            def do_DELETE(self) -> None:
                body = self._body()
                if not self._record(body):
                    return
                m = RAYJOBS.match(urlparse(self.path).path)
                with fake.lock:
                    obj = fake.objects.pop((m.group(1), m.group(2)), None) if m else None
                if obj is None:
                    return self._send(404, {"kind": "Status", "code": 404})
                self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

        return Handler
