"""The kfp contract at its targets (compiled offline, no backend, no kfp.local run):

- every task that should retry has a retry policy in the IR with at least one retry and a
  non-zero, growing backoff that fits in its maximum duration; every task whose step runs on
  Ray is one of them (in both pipelines: retraining's ``xgboost-params`` had none); the tasks
  that act on the world once (register, deploy) never retry;
- compiling twice (in this process and in fresh ones with other hash seeds) gives byte-identical
  IR;
- a component run twice on the same inputs gives byte-identical output files (the data and
  feature tasks, and the point-in-time training sets).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.definitions import MATERIALIZE_RETRIES, TRAIN_RETRIES
from tests.pipelines.ir import ir_names

pytestmark = pytest.mark.kfp

#: Tasks that retry, in both pipelines and both flavours, with their (count, first backoff):
#: the materialisation (the online store and the registry may be briefly unreachable) and every
#: Ray step (a Ray cluster, Jobs API or RayJob that fails transiently). Each rewrites only its
#: own outputs, so a retry is safe.
RETRIED: dict[str, tuple[int, str]] = {
    "feast-materialize": MATERIALIZE_RETRIES,
    "tune-xgb": TRAIN_RETRIES,  # retraining: "xgboost-params" (no tuning, still a Ray step)
    "train-xgb": TRAIN_RETRIES,
    "train-sequence": TRAIN_RETRIES,
}
#: Tasks that act on the world once: a retry could register or deploy twice.
NEVER_RETRIED = {"register", "deploy"}
RAY_SECRET = "riskml-ray-auth"


@pytest.fixture(scope="module")
def ir_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    from pipelines.cli import compile_all

    paths = compile_all(tmp_path_factory.mktemp("ir"))
    return {p.name: p.read_bytes() for p in paths}


def _docs(ir_files: dict[str, bytes], name: str) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(ir_files[f"{name}.yaml"]))


def _tasks(ir: dict[str, Any]) -> dict[str, tuple[dict[str, Any], str]]:
    """Every task of the pipeline (the root DAG and nested ones: the deploy condition) with
    its executor label."""
    dags = [ir["root"]["dag"], *(c["dag"] for c in ir["components"].values() if "dag" in c)]
    out = {}
    for dag in dags:
        for name, task in dag["tasks"].items():
            comp = ir["components"][task["componentRef"]["name"]]
            out[name] = (task, comp.get("executorLabel", ""))
    return out


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)s", duration)
    assert match, f"unexpected duration {duration!r}"
    return float(match.group(1))


def _ray_tasks(ir_files: dict[str, bytes], pipeline: str) -> set[str]:
    """Tasks whose step runs on Ray: those the cluster flavour gives the Ray token."""
    ir, platform = _docs(ir_files, f"{pipeline}-cluster")
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    ray_execs = {
        name
        for name, cfg in executors.items()
        if any(s["secretName"] == RAY_SECRET for s in cfg.get("secretAsEnv", []))
    }
    return {task for task, (_, label) in _tasks(ir).items() if label in ray_execs}


@pytest.mark.parametrize(
    "name", ["training", "training-cluster", "retraining", "retraining-cluster"]
)
def test_tasks_that_should_retry_back_off(ir_files: dict[str, bytes], name: str) -> None:
    tasks = _tasks(_docs(ir_files, name)[0])
    pipeline = name.removesuffix("-cluster")
    ray = _ray_tasks(ir_files, pipeline)
    assert {"tune-xgb", "train-xgb", "train-sequence"} <= ray
    assert ray <= set(RETRIED), f"{name}: Ray steps without a retry: {ray - set(RETRIED)}"
    for task_name, (count, first) in RETRIED.items():
        policy = tasks[task_name][0].get("retryPolicy")
        assert policy, f"{name}: {task_name} has no retry policy"
        assert policy["maxRetryCount"] == count >= 1, (name, task_name)
        backoff = _seconds(policy["backoffDuration"])
        assert backoff == _seconds(first) > 0, (name, task_name, policy)
        factor = float(policy["backoffFactor"])
        assert factor >= 1.0, (name, task_name, policy)
        waits = sum(backoff * factor**i for i in range(count))
        assert _seconds(policy["backoffMaxDuration"]) >= waits, (name, task_name, policy)
    for task_name in NEVER_RETRIED:
        policy = tasks[task_name][0].get("retryPolicy") or {}
        assert policy.get("maxRetryCount", 0) == 0, (name, task_name, policy)


def _compile_in_subprocess(out: Path, seed: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    cmd = [sys.executable, "-m", "pipelines", "compile", "--out", str(out)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_compiling_twice_gives_byte_identical_ir(
    ir_files: dict[str, bytes], tmp_path: Path
) -> None:
    from pipelines.cli import compile_all

    assert sorted(ir_files) == ir_names()
    again = compile_all(tmp_path / "again")
    assert {p.name: p.read_bytes() for p in again} == ir_files
    # fresh interpreters with other hash seeds (set/dict iteration of str keys): the same bytes
    procs = {seed: _compile_in_subprocess(tmp_path / f"seed{seed}", seed) for seed in ("0", "1")}
    for seed, proc in procs.items():
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        out = tmp_path / f"seed{seed}"
        assert {p.name: p.read_bytes() for p in out.iterdir()} == ir_files, seed


# -- components: same inputs, same bytes ---------------------------------------------------


def _artifact(kind: Any, path: Path) -> Any:
    return kind(uri=str(path), metadata={})


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_data_and_feature_tasks_give_byte_identical_outputs(tmp_path: Path) -> None:
    """``load-data`` (simulated, the pipelines' ``tiny`` size) and ``build-features``, each run
    twice into two output locations: every output file has the same bytes. (features.json held
    the build's timings and output path: the second run's file differed.)"""
    from kfp.dsl import Dataset

    from components.data import load_data
    from components.features import build_features

    datasets = []
    for run in ("a", "b"):
        out = _artifact(Dataset, tmp_path / run / "dataset")
        load_data.python_func(dataset=out, size="tiny", seed=7, source_uri="", start_date="")
        datasets.append(tmp_path / run / "dataset")
    first, second = (_files(d) for d in datasets)
    assert first == second and "manifest.json" in first and len(first) > 40

    features = []
    for run in ("a", "b"):
        out = _artifact(Dataset, tmp_path / run / "features")
        build_features.python_func(dataset=_artifact(Dataset, datasets[0]), features=out)
        assert out.metadata["rows"] > 10_000
        features.append(tmp_path / run / "features")
    first, second = (_files(d) for d in features)
    assert sorted(first) == [
        "customer_history.parquet",
        "customer_stats.parquet",
        "customer_tx.parquet",
        "device_stats.parquet",
        "features.json",
        "terminal_stats.parquet",
    ]
    assert [k for k in first if first[k] != second[k]] == []


def test_training_set_task_gives_byte_identical_outputs(tmp_path: Path) -> None:
    """``training-sets`` run twice on the same features, dataset and store: the train and test
    sets (Parquet + feature spec) have the same bytes. (``feast-materialize`` records when it
    materialised: its output is about the world, never cached, and not compared.)"""
    from kfp.dsl import Artifact, Dataset

    from components.features import build_features, feast_materialize, training_sets
    from riskml.data.simulator import SimulationConfig, simulate
    from riskml.training.dataset import DATA_FILE, SPEC_FILE

    simulate(SimulationConfig(n_customers=60, n_terminals=40, days=10, seed=5), tmp_path / "ds")
    dataset = _artifact(Dataset, tmp_path / "ds")
    features = _artifact(Dataset, tmp_path / "features")
    build_features.python_func(dataset=dataset, features=features)
    store = _artifact(Artifact, tmp_path / "store.json")
    feast_materialize.python_func(features=features, store=store)
    outputs = []
    for run in ("a", "b"):
        train, test = (_artifact(Dataset, tmp_path / run / part) for part in ("train", "test"))
        training_sets.python_func(
            features=features,
            dataset=dataset,
            store=store,
            train_set=train,
            test_set=test,
            test_days=3,
        )
        assert train.metadata["train_rows"] > 0 and test.metadata["test_rows"] > 0
        outputs.append(_files(tmp_path / run))
    assert sorted(outputs[0]) == sorted(
        f"{part}/{name}" for part in ("train", "test") for name in (DATA_FILE, SPEC_FILE)
    )
    assert outputs[0] == outputs[1]
