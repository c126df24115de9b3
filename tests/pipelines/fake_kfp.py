"""A tiny Kubeflow Pipelines API (v2beta1) on 127.0.0.1 for the ``submit`` tests: just enough
for ``kfp.Client`` to create experiments, runs and recurring runs; every request is recorded."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.support.fake_http import FakeHttpServer

TOKEN = "kfp-token"


class FakeKfp(FakeHttpServer):
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.experiments: dict[str, dict[str, Any]] = {}
        super().__init__()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                url = urlparse(self.path)
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n)) if n else None
                fake.requests.append(
                    {
                        "method": self.command,
                        "path": url.path,
                        "query": parse_qs(url.query),
                        "auth": self.headers.get("Authorization"),
                        "body": body,
                    }
                )
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._send(401, {"error": "unauthenticated", "code": 16})
                key = (self.command, url.path)
                if key == ("GET", "/apis/v2beta1/healthz"):
                    return self._send(200, {"multi_user": False})
                if key == ("GET", "/apis/v2beta1/experiments"):
                    items = list(fake.experiments.values())
                    return self._send(200, {"experiments": items, "total_size": len(items)})
                if key == ("POST", "/apis/v2beta1/experiments"):
                    exp = {**body, "experiment_id": f"exp-{len(fake.experiments) + 1}"}
                    fake.experiments[exp["experiment_id"]] = exp
                    return self._send(200, exp)
                if key == ("POST", "/apis/v2beta1/runs"):
                    return self._send(200, {**body, "run_id": "run-1", "state": "PENDING"})
                if key == ("POST", "/apis/v2beta1/recurringruns"):
                    return self._send(
                        200, {**body, "recurring_run_id": "rr-1", "status": "ENABLED"}
                    )
                self._send(404, {"error": f"no route {key}", "code": 5})

            do_GET = do_POST = do_DELETE = _handle

        return Handler
