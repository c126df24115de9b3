"""A tiny Kubernetes API server on 127.0.0.1 for the ``rayjob`` mode tests.

It speaks just enough of the API for what :mod:`riskml.orchestration.rayjob` calls through the
real kubernetes client (``CustomObjectsApi`` create/get/delete of ``rayjobs``, ``CoreV1Api``
list pods by label and read a pod's log), checks the bearer token and JSON bodies, and plays
KubeRay: a created RayJob's ``spec.entrypoint`` really runs (a local subprocess with the
``runtimeEnvYAML`` env vars), its output becomes the submitter pod's log, and the status moves
Initializing -> Running -> Complete/Failed with jobStatus RUNNING -> SUCCEEDED/FAILED.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

TOKEN = "test-token"
RAYJOBS = re.compile(r"^/apis/ray\.io/v1/namespaces/([^/]+)/rayjobs(?:/([^/]+))?$")
RAYSERVICES = re.compile(r"^/apis/ray\.io/v1/namespaces/([^/]+)/rayservices/([^/]+)$")
PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods$")
POD_LOG = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.services: dict[tuple[str, str], dict[str, Any]] = {}
        self.logs: dict[str, str] = {}
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeKube:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

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
                    with fake.lock:
                        svc = fake.services.get((m.group(1), m.group(2)))
                    if svc is None:
                        return self._send(404, {"kind": "Status", "code": 404})
                    return self._send(200, svc)
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
                if not m:
                    return self._send(404, {"kind": "Status", "code": 404})
                if self.headers.get("Content-Type") != "application/merge-patch+json":
                    return self._send(415, {"kind": "Status", "code": 415})
                with fake.lock:
                    svc = fake.services.get((m.group(1), m.group(2)))
                    if svc is None:
                        return self._send(404, {"kind": "Status", "code": 404})
                    svc["spec"].update(body.get("spec", {}))  # merge patch, one level deep
                    svc["metadata"]["generation"] = svc["metadata"].get("generation", 1) + 1
                    payload = json.loads(json.dumps(svc))
                self._send(200, payload)

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
