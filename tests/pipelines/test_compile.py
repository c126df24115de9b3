"""Every pipeline compiles; the IR has the expected tasks, retries, caching, condition and GPU
settings (parsed from the compiled YAML, not from the Python objects)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.kfp

TRAINING_TASKS = {
    "load-data",
    "build-features",
    "feast-materialize",
    "training-sets",
    "tune-xgb",
    "train-xgb",
    "train-sequence",
    "calibrate-ensemble",
    "backtest",
    "gate",
    "register",
    "condition-1",
}
SIDE_EFFECTS = {"feast-materialize", "gate", "register"}
RETRIED = {"feast-materialize": 3, "tune-xgb": 2, "train-xgb": 2, "train-sequence": 2}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    from pipelines.cli import compile_all

    out = tmp_path_factory.mktemp("ir")
    paths = compile_all(out)
    assert sorted(p.name for p in paths) == [
        "retraining-cluster.yaml",
        "retraining.yaml",
        "training-cluster.yaml",
        "training.yaml",
    ]
    return {p.stem: list(yaml.safe_load_all(p.read_text())) for p in paths}


def _tasks(ir: dict[str, Any]) -> dict[str, Any]:
    return dict(ir["root"]["dag"]["tasks"])


def test_training_has_the_whole_path(compiled: dict[str, list[dict[str, Any]]]) -> None:
    ir = compiled["training"][0]
    tasks = _tasks(ir)
    assert set(tasks) == TRAINING_TASKS
    deps = {name: set(t.get("dependentTasks", [])) for name, t in tasks.items()}
    assert deps["training-sets"] == {"load-data", "build-features", "feast-materialize"}
    assert deps["calibrate-ensemble"] == {"train-xgb", "train-sequence", "training-sets"}
    assert deps["train-xgb"] == {"training-sets", "tune-xgb"}
    assert "tune-xgb" not in deps["train-sequence"]  # the two models train in parallel
    outputs = ir["root"]["outputDefinitions"]
    assert set(outputs["artifacts"]) == {"bundle", "report"}
    assert outputs["parameters"]["decision"]["parameterType"] == "STRING"


def test_deploy_runs_only_when_the_gate_says_so(compiled: dict[str, list[dict[str, Any]]]) -> None:
    for name in ("training", "retraining"):
        ir = compiled[name][0]
        cond = _tasks(ir)["condition-1"]
        assert cond["triggerPolicy"]["condition"] == (
            "inputs.parameter_values['pipelinechannel--gate-Output'] == 'deploy'"
        )
        inner = ir["components"]["comp-condition-1"]["dag"]["tasks"]
        assert set(inner) == {"deploy"}
        assert inner["deploy"]["cachingOptions"].get("enableCache", False) is False


def test_retries_and_caching(compiled: dict[str, list[dict[str, Any]]]) -> None:
    tasks = _tasks(compiled["training"][0])
    for name, task in tasks.items():
        policy = task.get("retryPolicy")
        if name in RETRIED:
            assert policy["maxRetryCount"] == RETRIED[name], name
            assert policy["backoffFactor"] == 2.0
        else:
            assert policy is None, name
        if name == "condition-1":
            continue
        cached = task["cachingOptions"].get("enableCache", False)
        assert cached is (name not in SIDE_EFFECTS), name


def test_retraining_skips_tuning(compiled: dict[str, list[dict[str, Any]]]) -> None:
    ir = compiled["retraining"][0]
    tasks = _tasks(ir)
    assert tasks["tune-xgb"]["inputs"]["parameters"]["num_samples"]["runtimeValue"]["constant"] == 0
    params = ir["root"]["inputDefinitions"]["parameters"]
    assert params["gate_margin"]["defaultValue"] == 0.002
    assert "tune_samples" not in params


def test_one_pinned_image_and_no_runtime_pip(compiled: dict[str, list[dict[str, Any]]]) -> None:
    from components.base import BASE_IMAGE, GPU_BASE_IMAGE

    for name in ("training", "retraining"):
        for flavour_name in (name, f"{name}-cluster"):
            executors = compiled[flavour_name][0]["deploymentSpec"]["executors"]
            for exec_name, spec in executors.items():
                container = spec["container"]
                gpu = flavour_name.endswith("cluster") and exec_name == "exec-train-sequence"
                assert container["image"] == (GPU_BASE_IMAGE if gpu else BASE_IMAGE), exec_name
                command = " ".join(container["command"])
                assert "pip install" not in command, exec_name


def test_cluster_flavour_puts_the_sequence_model_on_a_gpu(
    compiled: dict[str, list[dict[str, Any]]],
) -> None:
    for name in ("training", "retraining"):
        ir, platform = compiled[f"{name}-cluster"]
        res = ir["deploymentSpec"]["executors"]["exec-train-sequence"]["container"]["resources"]
        assert res["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert res["accelerator"]["resourceCount"] == "1"
        k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        assert set(k8s) == {"exec-train-sequence"}
        seq = k8s["exec-train-sequence"]
        assert seq["nodeSelector"]["labels"] == {"karpenter.sh/nodepool": "riskml-gpu"}
        assert seq["tolerations"] == [
            {"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}
        ]
        use_gpu = _tasks(ir)["train-sequence"]["inputs"]["parameters"]["use_gpu"]
        assert use_gpu["runtimeValue"]["constant"] is True
        # the local flavour has no accelerator and no platform spec
        local = compiled[name]
        assert len(local) == 1
        local_res = local[0]["deploymentSpec"]["executors"]["exec-train-sequence"]["container"]
        assert "resources" not in local_res


def test_gpu_node_pool_matches_the_k8s_manifests() -> None:
    """The node selector / taint the cluster flavour uses exist on the Karpenter GPU pool."""
    from pipelines.definitions import GPU_NODE_SELECTOR, GPU_TOLERATION
    from riskml.settings import REPO_ROOT

    pool = yaml.safe_load((REPO_ROOT / "k8s/nodepools/gpu/nodepool.yaml").read_text())
    assert pool["metadata"]["name"] == GPU_NODE_SELECTOR[1]
    taints = pool["spec"]["template"]["spec"].get("taints", [])
    assert {"key": GPU_TOLERATION["key"], "effect": GPU_TOLERATION["effect"]} in [
        {"key": t["key"], "effect": t["effect"]} for t in taints
    ]


def test_cli_compile_and_bad_input(tmp_path: Path) -> None:
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines",
            "compile",
            "--out",
            str(tmp_path),
            "--pipeline",
            "retraining",
        ],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "retraining-cluster.yaml",
        "retraining.yaml",
    ]
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines",
            "compile",
            "--out",
            str(tmp_path),
            "--pipeline",
            "nope",
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "unknown pipeline 'nope'" in bad.stderr


def test_unknown_flavour_and_cron() -> None:
    from pipelines.cli import validate_cron
    from pipelines.definitions import get_pipeline

    with pytest.raises(ValueError, match="unknown flavour"):
        get_pipeline("training", "gpu")  # type: ignore[arg-type]
    assert validate_cron("0 3 * * *") == "0 0 3 * * *"
    assert validate_cron("0 0 3 * * 1") == "0 0 3 * * 1"
    with pytest.raises(ValueError, match="5 or 6 fields"):
        validate_cron("daily")
