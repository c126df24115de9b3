"""Helpers of the serving tests (free ports, synthetic requests, app args, a private Redis,
deploying and waiting)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.support.services import need
from tests.support.traffic import live_transactions

REPO = Path(__file__).resolve().parents[2]

#: The decision app shared by the Serve test modules (one deployment per session).
APP = "riskml-test"
PREFIX = "/riskml"
#: Generous budgets for the functional tests (a busy 2-core machine can take tens of ms per
#: hop); the fault tests switch to a tight deadline through reconfigure().
INGRESS = {
    "deadline_ms": 3000.0,
    "batch_deadline_ms": 5000.0,
    "timeouts": {"features_ms": 2000, "xgboost_ms": 2000, "sequence_ms": 2000, "decider_ms": 2000},
    "max_batch_size": 64,
}
DECIDER = {
    "thresholds": {"review": 0.3, "decline": 0.7},
    "blend_weights": {"xgboost": 0.6, "sequence": 0.4},
}
OPTIONS = {"Ingress": {"num_replicas": 2}}
KEY_PREFIX = "riskml-test"


def seed_store(server: RedisServer, reference: dict[str, Any], prefix: str = KEY_PREFIX) -> Any:
    from tests.support.serving_standins import RedisFeatureSource

    source = RedisFeatureSource(url=server.url, prefix=prefix, timeout_s=2.0)
    source.seed(reference["requests"], reference["terminal_risk"])
    return source


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def local_serve(
    env: dict[str, str], *, num_cpus: int = 2, address: str | None = None, **http: Any
) -> Iterator[SimpleNamespace]:
    """A local Ray with Serve on a free loopback port (Ray metrics on another), its replicas
    started with ``env`` (also set in this process for the run: Serve's controller reads it)
    and at riskml's local worker niceness (Ray's default 15 lets any other process on the
    machine take their CPU first: deadlines then fail for no reason); ``tests.support`` is
    importable by the replicas. Everything is shut down and the environment restored after."""
    import logging
    import os

    import ray
    from ray import serve

    from riskml.training.runtime import LOCAL_WORKER_NICENESS

    env = {"RAY_worker_niceness": LOCAL_WORKER_NICENESS, **env}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    http_port, metrics_port = free_port(), free_port()
    try:
        ray.init(
            address=address,
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            _metrics_export_port=metrics_port,
            _system_config={"metrics_report_interval_ms": 1000},
            runtime_env={
                "env_vars": {
                    "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                    "OMP_NUM_THREADS": "1",
                    **env,
                }
            },
        )
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": http_port, **http})
            yield SimpleNamespace(
                url=f"http://127.0.0.1:{http_port}", metrics_url=f"http://127.0.0.1:{metrics_port}"
            )
        finally:
            serve.shutdown()
            ray.shutdown()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def one_per_customer(txs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for tx in txs:
        seen.setdefault(tx["customer_id"], tx)
    return list(seen.values())


def assert_matches_in_process(app: SimpleNamespace, *, seed: int) -> None:
    """25 single and 15 batched decisions over HTTP equal InProcessApp's on the same args: the
    same decision, source, version, reasons and scores to 1e-6 (one transaction per customer,
    so no write-back changes another's features)."""
    import asyncio

    from serving.inprocess import InProcessApp

    txs = one_per_customer(live_transactions(200, seed=seed, prefix=f"eq{seed}"))[:40]
    single, batch = txs[:25], txs[25:]
    reference = InProcessApp({**app.args, "ingress_config": INGRESS, "decider_config": DECIDER})
    expected = asyncio.run(reference.decide(txs))  # no write-back in process
    got = [app.client.post("/v1/score", json=tx).json() for tx in single]
    r = app.client.post("/v1/score/batch", json={"transactions": batch})
    assert r.status_code == 200
    got += r.json()["decisions"]
    assert len(got) == len(expected)
    decisions = set()
    for g, e in zip(got, expected, strict=True):
        assert g["tx_id"] == e.tx_id
        assert (g["decision_source"], g["fallback_reason"]) == ("ensemble", None)
        assert (g["decision"], g["model_version"]) == (e.decision, e.model_version)
        assert g["score"] == pytest.approx(e.score, abs=1e-6)
        assert g["scores"].keys() == e.scores.keys()
        for k, v in e.scores.items():
            assert g["scores"][k] == pytest.approx(v, abs=1e-6)
        assert [x["feature"] for x in g["reasons"]] == [x.feature for x in e.reasons]
        assert {"features", "xgboost", "sequence", "decider", "total"} <= g["latency_ms"].keys()
        decisions.add(g["decision"])
    assert len(decisions) >= 2  # the sample exercises more than one threshold band


class RedisServer:
    """A private redis-server on a free loopback port (for tests that stop it)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        need(exe is not None, "redis-server not installed")
        assert exe is not None
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


def deploy(
    args: dict[str, Any],
    name: str,
    route_prefix: str,
    *,
    user_configs: dict[str, dict[str, Any]] | None = None,
    options: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Deploy the app declaratively (as ``serve run config.yaml`` would) and wait until it is
    RUNNING. Redeploying with only ``user_configs`` changed reconfigures replicas in place."""
    from serving.local import app_config, deploy_config, wait_running

    config = app_config(
        args, name=name, route_prefix=route_prefix, user_configs=user_configs, options=options
    )
    deploy_config({"applications": [config]})
    wait_running(name)


def wait_for(predicate: Any, timeout_s: float = 30.0, interval_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    return predicate()


def replica_ids(app: SimpleNamespace, probes: int = 12) -> set[str]:
    return {app.client.get("/healthz").json()["replica"] for _ in range(probes)}


def _subset(expected: Any, actual: Any) -> bool:
    """Every key given in ``expected`` has that value in ``actual`` (recursively)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and _subset(v, actual[k]) for k, v in expected.items()
        )
    return bool(expected == actual)


def user_configs(
    topology: str, ingress: dict[str, Any], decider: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Per-deployment user_configs: colocated, the decider's rides in the Ingress's."""
    if topology == "colocated":
        return {"Ingress": {**ingress, "decider": decider}}
    return {"Ingress": ingress, "Decider": decider}


@contextmanager
def decision_app(
    serve_url: str,
    args: dict[str, Any],
    *,
    name: str = APP,
    prefix: str = PREFIX,
    **extra: Any,
) -> Iterator[SimpleNamespace]:
    """Deploy ``args`` (INGRESS/DECIDER user configs, 2 Ingress replicas) and yield a client."""
    import httpx
    from ray import serve

    topology = args.get("topology", "colocated")
    deploy(
        args, name, prefix, user_configs=user_configs(topology, INGRESS, DECIDER), options=OPTIONS
    )
    url = serve_url + prefix
    client = httpx.Client(base_url=url, timeout=30.0, trust_env=False)
    try:
        yield SimpleNamespace(
            url=url, client=client, args=args, name=name, prefix=prefix, topology=topology, **extra
        )
    finally:
        client.close()
        serve.delete(name)


@contextmanager
def reconfigured(
    app: SimpleNamespace,
    ingress: dict[str, Any] | None = None,
    decider: dict[str, Any] | None = None,
) -> Iterator[None]:
    """Change the Ingress/Decider ``user_config`` (applied in place through reconfigure(), no
    replica restart) until the block ends; then restore the defaults."""

    def apply(ingress_cfg: dict[str, Any], decider_cfg: dict[str, Any]) -> None:
        configs = user_configs(app.topology, ingress_cfg, decider_cfg)
        deploy(app.args, app.name, app.prefix, user_configs=configs, options=OPTIONS)

        def active() -> bool:
            for _ in range(8):  # several probes: every Ingress replica must have it
                info = app.client.get("/v1/model").json()
                if not (
                    _subset(ingress_cfg, info["ingress_config"])
                    and _subset(decider_cfg, info["decider_config"])
                ):
                    return False
            return True

        assert wait_for(active, timeout_s=90), "the new user_config never became active"

    before = replica_ids(app)
    apply(ingress or INGRESS, decider or DECIDER)
    assert replica_ids(app) <= before  # reconfigured in place, not restarted
    try:
        yield
    finally:
        apply(INGRESS, DECIDER)
