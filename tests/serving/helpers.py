"""Helpers of the serving tests (free ports, synthetic requests, app args, a private Redis,
deploying and waiting)."""

from __future__ import annotations

import datetime as dt
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


def seed_store(server: RedisServer, reference: dict[str, Any]) -> Any:
    from serving.standins import RedisFeatureSource

    source = RedisFeatureSource(url=server.url, prefix=KEY_PREFIX, timeout_s=2.0)
    source.seed(reference["requests"], reference["terminal_risk"])
    return source


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def live_transactions(n: int, *, seed: int, prefix: str) -> list[dict[str, Any]]:
    """Requests after the reference history (same customers and terminals)."""
    from serving.standin_models import request_fields, synth_transactions

    start = dt.datetime(2024, 3, 4, tzinfo=dt.UTC)
    return [
        request_fields(tx)
        for tx in synth_transactions(n, seed=seed, prefix=prefix, start=start, span_s=3_600)
    ]


def model_args(reference: dict[str, Any], source: dict[str, Any], **extra: Any) -> dict[str, Any]:
    from serving.standin_models import component_specs

    return {"feature_source": source, **component_specs(reference["paths"]), **extra}


class RedisServer:
    """A private redis-server on a free loopback port (for tests that stop it)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip("redis-server is not installed")
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


@contextmanager
def reconfigured(
    app: SimpleNamespace,
    ingress: dict[str, Any] | None = None,
    decider: dict[str, Any] | None = None,
) -> Iterator[None]:
    """Change the Ingress/Decider ``user_config`` (applied in place through reconfigure(), no
    replica restart) until the block ends; then restore the defaults."""

    def apply(ingress_cfg: dict[str, Any], decider_cfg: dict[str, Any]) -> None:
        user_configs = {"Ingress": ingress_cfg, "Decider": decider_cfg}
        deploy(app.args, APP, PREFIX, user_configs=user_configs, options=OPTIONS)

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
