"""The rendered MLflow Deployment's command runs: a real ``mlflow server`` started with the
container's arguments (``$(VAR)`` expanded the way the kubelet does; a SQLite file and a local
directory stand in for PostgreSQL and object storage) answers its health check, serves the
tracking API to the Service's host name, refuses any other Host header, and proxies artifact
uploads to the artifacts destination."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.services import free_port, need

from .helpers import Doc, find, of_kind

pytestmark = [pytest.mark.k8s, pytest.mark.integration]

SERVICE_HOST = "riskml-mlflow.riskml-platform.svc.cluster.local:5000"


def _expand(value: str, env: dict[str, str]) -> str:
    """The kubelet's ``$(VAR)`` expansion of container arguments."""
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), value)


def _command(docs: list[Doc], tmp: Path, port: int) -> tuple[list[str], dict[str, str]]:
    deployment = find(docs, "Deployment", "riskml-mlflow", "riskml-platform")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    settings = {
        d["metadata"]["name"]: d["data"]
        for d in of_kind(docs, "ConfigMap")
        if d["metadata"]["namespace"] == "riskml-platform"
    }
    env: dict[str, str] = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        source = item["valueFrom"]
        if "secretKeyRef" in source:  # the Secret's stand-in: a local SQLite backend store
            env[item["name"]] = f"sqlite:///{tmp / 'mlflow.db'}"
        else:
            ref = source["configMapKeyRef"]
            env[item["name"]] = settings[ref["name"]][ref["key"]]
    # object storage's stand-in: a local directory
    env["MLFLOW_ARTIFACTS_DESTINATION"] = (tmp / "artifacts").as_uri()
    env["HOME"] = str(tmp)
    args = [_expand(a, env) for a in container["args"]]
    args[args.index("--port") + 1] = str(port)
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    return [mlflow, *args], env


@pytest.fixture(scope="module")
def server(
    rendered: dict[str, list[Doc]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    import importlib.util

    need(  # mlflow-skinny has no server
        importlib.util.find_spec("flask") is not None,
        "the MLflow server (package mlflow, not mlflow-skinny) is not installed",
    )
    tmp = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    command, env = _command(rendered["prod"], tmp, port)
    log = (tmp / "server.log").open("w")
    proc = subprocess.Popen(
        command,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    import requests

    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited: {(tmp / 'server.log').read_text()[-3000:]}")
            try:
                if requests.get(f"{base}/health", timeout=5).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or busy starting (loaded CI)
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not up: {(tmp / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"base": base, "artifacts": tmp / "artifacts", "command": command}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
        log.close()


def test_server_runs_with_the_manifest_arguments(server: dict[str, Any]) -> None:
    import requests

    command = server["command"]
    assert "--serve-artifacts" in command and "--backend-store-uri" in command
    create = f"{server['base']}/api/2.0/mlflow/experiments/create"
    ok = requests.post(create, json={"name": "render-test"}, headers={"Host": SERVICE_HOST})
    assert ok.status_code == 200, ok.text
    assert ok.json()["experiment_id"]
    # DNS-rebinding guard: a Host that is not the Service's is refused
    bad = requests.post(create, json={"name": "x"}, headers={"Host": "attacker.example:5000"})
    assert bad.status_code == 403


def test_artifacts_are_proxied_to_the_destination(server: dict[str, Any]) -> None:
    import requests

    url = f"{server['base']}/api/2.0/mlflow-artifacts/artifacts/probe/hello.txt"
    put = requests.put(url, data=b"hello", headers={"Host": SERVICE_HOST})
    assert put.status_code == 200, put.text
    assert (server["artifacts"] / "probe" / "hello.txt").read_bytes() == b"hello"
    got = requests.get(url, headers={"Host": SERVICE_HOST})
    assert got.status_code == 200 and got.content == b"hello"
