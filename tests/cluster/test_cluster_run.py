"""A cluster-shaped run: the services a cluster provides, and processes that start empty.

The "cluster" here is: a database on the local PostgreSQL behind an ``mlflow server`` with proxied
artifacts (the model registry), a second database holding Feast's SQL registry, a Redis with
``requirepass`` (the online store), and a Ray head standing for the remote Ray cluster, reached
through the Jobs API (``RISKML_RAY_MODE=jobs``). The training pipeline runs through ``kfp.local``
with every task in a fresh empty ``RISKML_HOME`` that is deleted when the task ends; data moves
between tasks only as kfp artifacts. Then the Serve app starts in a process with its own empty
home and only a RayService pod's environment, loads ``models:/fraud@champion`` from the registry
and scores over HTTP with features from the AUTH'd Redis. A second run's gate reads that
champion from the registry. Negative cases: a wrong Redis password fails the service's start
with a clear error; tampered artifacts and concurrent deploys are tests/registry's (they run
against the same kind of server).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from riskml.orchestration.head import RayHead, free_port
from riskml.settings import REPO_ROOT, get_settings
from tests.support.kfp_runs import FAST_CONFIG, task_metrics
from tests.support.services import AuthRedis, MlflowServer, postgres_database

pytestmark = [pytest.mark.kfp, pytest.mark.ray, pytest.mark.integration, pytest.mark.slow]

FEAST_YAML = REPO_ROOT / "feature_repo" / "feature_store.redis.yaml"


@dataclass
class Cluster:
    env: dict[str, str]  # what every pod of the cluster gets (settings, Secrets)
    ray_env: dict[str, str]  # what pipeline pods get besides: how to reach the Ray cluster
    root: Path
    mlflow: MlflowServer
    redis: AuthRedis

    def pod_env(self, home: Path, **extra: str) -> dict[str, str]:
        """A serving pod's process environment: none of this test run's RISKML_*, the
        cluster's services, an empty home (a Serve replica runs inside its Ray cluster)."""
        home.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in os.environ.items() if not k.upper().startswith("RISKML_")}
        return {**base, **self.env, "RISKML_HOME": str(home), **extra}


@pytest.fixture(scope="module")
def cluster(
    ray_head: RayHead,
    auth_redis: AuthRedis,
    mlflow_server: MlflowServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    with postgres_database("riskml_cluster_feast") as feast_db:
        ray_env = {
            "RISKML_RAY_MODE": "jobs",
            "RISKML_RAY_ADDRESS": ray_head.dashboard_url,
            "RISKML_STORAGE_URI": (root / "object-store" / "ray").as_uri(),
        }
        env = {
            "RISKML_MLFLOW_TRACKING_URI": mlflow_server.url,
            "RISKML_FEAST_CONFIG": str(FEAST_YAML),
            "FEAST_REGISTRY_PATH": feast_db,
            # a Redis database of this test's own (the session's other tests use db 0)
            "REDIS_ADDRESS": f"{auth_redis.address},db=5",
            "RISKML_REDIS_PASSWORD": auth_redis.password,
        }
        yield Cluster(env, ray_env, root, mlflow_server, auth_redis)


def _set_env(mp: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key in [k for k in os.environ if k.upper().startswith("RISKML_")]:
        mp.delenv(key)
    for key, value in env.items():
        mp.setenv(key, value)
    get_settings.cache_clear()


def _run_pipeline(
    cluster: Cluster, ray_head: RayHead, pipeline: str, name: str, **arguments: Any
) -> dict[str, Any]:
    """``pipeline`` through kfp.local, every task in its own empty home under ``pods/<name>``;
    the submitting process's own home is ``submitter-<name>``."""
    from pipelines.local import run_local

    home = cluster.root / f"submitter-{name}"
    pods = cluster.root / "pods" / name
    with pytest.MonkeyPatch.context() as mp:
        _set_env(mp, {**cluster.env, **cluster.ray_env, "RISKML_HOME": str(home)})
        try:
            out = run_local(
                pipeline,
                size="tiny",
                arguments={"train_config_json": json.dumps(FAST_CONFIG), **arguments},
                ray_address=ray_head.dashboard_url,
                task_homes=pods,
            )
        finally:
            get_settings.cache_clear()
    return {**out, "home": home, "pods": pods}


@pytest.fixture(scope="module")
def first_run(cluster: Cluster, ray_head: RayHead) -> dict[str, Any]:
    return _run_pipeline(
        cluster, ray_head, "training", "first", tune_samples=1, tune_budget_s=120.0
    )


def _registry(cluster: Cluster, monkeypatch: pytest.MonkeyPatch, home: Path) -> Any:
    from riskml.registry import store

    _set_env(monkeypatch, {**cluster.env, "RISKML_HOME": str(home)})
    return store


@pytest.mark.timeout(1800)
def test_training_run_where_every_task_starts_empty(
    cluster: Cluster, first_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert first_run["decision"] == "deploy"
    # every task ran in a home of its own, and every home is gone
    from pipelines.local import pipeline_tasks

    homes = (first_run["pods"] / "task-homes.log").read_text().split()
    assert len(homes) == len(set(homes)) == len(pipeline_tasks("training"))
    assert not any(Path(h).exists() for h in homes)
    # the submitter kept nothing but the pipeline root (the KFP backend's artifact store) and
    # the verified copy run_local fetched from the registry
    assert sorted(p.name for p in first_run["home"].iterdir()) == ["kfp", "model-cache"]

    store = _registry(cluster, monkeypatch, tmp_path / "reader")
    champion = store.champion("fraud")
    registered = first_run["registered"]
    assert champion is not None and champion.version == registered["version"]
    assert champion.source.startswith("mlflow-artifacts:/")  # proxied by the server
    assert champion.digest == registered["digest"]
    gate = task_metrics(Path(first_run["run_dir"]), "gate")
    assert gate["deploy"] == 1.0 and gate["champion_version"] == ""

    # the pipeline filled the cluster's online store (Redis with AUTH): materialised rows
    keys = cluster.redis.client(db=5).dbsize()
    assert keys > 1000


@pytest.mark.timeout(900)
def test_serve_from_an_empty_home_scores_from_the_champion_over_http(
    cluster: Cluster, first_run: dict[str, Any], tmp_path: Path
) -> None:
    import httpx

    from serving.demo import held_back

    home = tmp_path / "serve-pod"
    env = cluster.pod_env(home)
    port = free_port()
    cli = [sys.executable, "-m", "riskml", "serve"]
    started = subprocess.run(
        [*cli, "start", "--model", "models:/fraud@champion", "--port", str(port),
         "--num-cpus", "4"],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
    try:
        test_set = Path(first_run["run_dir"]) / "training-sets" / "test_set"
        requests, _ = held_back(test_set, 40)
        answers = [
            httpx.post(f"http://127.0.0.1:{port}/v1/score", json=r, timeout=30) for r in requests
        ]
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers][:3]
        decisions = [a.json() for a in answers]
        bundle_version = first_run["registered"]["bundle_version"]
        assert {d["model_version"] for d in decisions} == {bundle_version}
        # features came from the AUTH'd Redis: no decision fell to rules or the default
        sources = [d["decision_source"] for d in decisions]
        assert set(sources) <= {"ensemble", "xgboost_only"}, sources
        assert sum(d["flags"].get("unknown_customer", 1) == 0 for d in decisions) >= 30
    finally:
        stopped = subprocess.run(
            [*cli, "stop"], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
        )
        assert stopped.returncode == 0, stopped.stderr[-2000:]
    # the replica's home held only its downloaded, verified bundle and the service record
    assert sorted(p.name for p in home.iterdir()) == ["model-cache", "serve"]


@pytest.mark.timeout(600)
def test_a_wrong_redis_password_fails_the_service_start_clearly(
    cluster: Cluster, first_run: dict[str, Any], tmp_path: Path
) -> None:
    env = cluster.pod_env(tmp_path / "bad-pod", RISKML_REDIS_PASSWORD="not-the-password")
    started = subprocess.run(
        [sys.executable, "-m", "riskml", "serve", "start", "--model", "models:/fraud@champion",
         "--port", str(free_port()), "--num-cpus", "4"],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert started.returncode != 0
    out = started.stdout + started.stderr
    assert f"authentication failed for Redis at {cluster.redis.address}" in out, out[-3000:]


@pytest.mark.timeout(1800)
def test_second_run_gate_compares_against_the_registry_champion(
    cluster: Cluster,
    ray_head: RayHead,
    first_run: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    champion_before = first_run["registered"]["version"]
    second = _run_pipeline(cluster, ray_head, "retraining", "second", seed=11, gate_margin=1.0)
    assert second["decision"] == "keep"  # nothing beats AP + 1.0
    gate = task_metrics(Path(second["run_dir"]), "gate")
    assert gate["champion_version"] == champion_before and gate["champion"] > 0
    assert not (Path(second["run_dir"]) / "deploy").exists()
    store = _registry(cluster, monkeypatch, tmp_path / "reader")
    assert store.champion("fraud").version == champion_before  # type: ignore[union-attr]
    assert store.get("fraud", "challenger").version == second["registered"]["version"]  # type: ignore[union-attr]
