"""Every pipeline compiles; the IR has the expected tasks, retries, caching, condition and GPU
settings, and the cluster flavour's per-task environment, Secrets, pod identity and resources
(parsed from the compiled YAML, not from the Python objects)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.definitions import ENV_KEYS
from tests.pipelines.ir import ir_names

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
#: Never cached: their result depends on the world, not only on their inputs (load-data: the
#: same source URI may hold new data).
SIDE_EFFECTS = {"load-data", "feast-materialize", "gate", "register"}
RETRIED = {"feast-materialize": 3, "tune-xgb": 2, "train-xgb": 2, "train-sequence": 2}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    from pipelines.cli import compile_all

    out = tmp_path_factory.mktemp("ir")
    paths = compile_all(out)
    assert sorted(p.name for p in paths) == ir_names()
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


@pytest.mark.parametrize("name", ["training", "training-cluster", "retraining-cluster"])
def test_retries_and_caching(compiled: dict[str, list[dict[str, Any]]], name: str) -> None:
    tasks = _tasks(compiled[name][0])
    for task_name, task in tasks.items():
        policy = task.get("retryPolicy")
        retried = RETRIED.get(task_name) if name.startswith("training") else None
        if retried:
            assert policy["maxRetryCount"] == retried, task_name
            assert policy["backoffFactor"] == 2.0
        elif name.startswith("training"):
            assert policy is None, task_name
        if task_name == "condition-1":
            continue
        cached = task["cachingOptions"].get("enableCache", False)
        assert cached is (task_name not in SIDE_EFFECTS), task_name
    assert tasks["load-data"]["cachingOptions"].get("enableCache", False) is False


def test_retraining_skips_tuning(compiled: dict[str, list[dict[str, Any]]]) -> None:
    ir = compiled["retraining"][0]
    tasks = _tasks(ir)
    assert tasks["tune-xgb"]["inputs"]["parameters"]["num_samples"]["runtimeValue"]["constant"] == 0
    params = ir["root"]["inputDefinitions"]["parameters"]
    assert params["gate_margin"]["defaultValue"] == 0.002
    assert "tune_samples" not in params


def test_monitoring_retrains_only_when_a_drift_alarm_holds(
    compiled: dict[str, list[dict[str, Any]]],
) -> None:
    for name in ("monitoring", "monitoring-cluster"):
        ir = compiled[name][0]
        tasks = _tasks(ir)
        assert set(tasks) == {"monitor-decisions", "condition-1"}
        # the check reads the log and the registry now and records itself: never cached
        assert tasks["monitor-decisions"]["cachingOptions"].get("enableCache", False) is False
        cond = tasks["condition-1"]
        assert cond["triggerPolicy"]["condition"] == (
            "inputs.parameter_values['pipelinechannel--monitor-decisions-Output'] == 'retrain'"
        )
        inner = ir["components"]["comp-condition-1"]["dag"]["tasks"]
        # the retraining path (no tuning) on the data window the check dates
        assert set(inner) == (TRAINING_TASKS - {"condition-1"}) | {"retrain-window", "condition-2"}
        assert (
            inner["tune-xgb"]["inputs"]["parameters"]["num_samples"]["runtimeValue"]["constant"]
            == 0
        )
        start = inner["load-data"]["inputs"]["parameters"]["start_date"]
        assert start["taskOutputParameter"]["producerTask"] == "retrain-window"
        deploy = ir["components"]["comp-condition-2"]["dag"]["tasks"]
        assert set(deploy) == {"deploy"}
        params = ir["root"]["inputDefinitions"]["parameters"]
        assert "defaultValue" not in params["log_uri"]  # required
        assert params["model_uri"]["defaultValue"] == "models:/fraud@champion"
        assert params["hold_windows"]["defaultValue"] == 3


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
        seq = k8s["exec-train-sequence"]
        assert seq["podMetadata"]["labels"]["riskml.io/accelerator"] == "nvidia-gpu"
        assert not any("nodeSelector" in k8s[e] for e in k8s if e != "exec-train-sequence")
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


def _compile(out: Path, pipeline: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pipelines", "compile", "--out", str(out), "--pipeline", pipeline]
    return subprocess.run(cmd, capture_output=True, text=True)


def test_cli_compile_and_bad_input(tmp_path: Path) -> None:
    ok = _compile(tmp_path, "retraining")
    assert ok.returncode == 0, ok.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "retraining-cluster.yaml",
        "retraining.yaml",
    ]
    bad = _compile(tmp_path, "nope")
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


# --- the cluster flavour's pod environment --------------------------------------------------------

FEAST_SECRETS = {
    ("riskml-online-redis", "password", "RISKML_REDIS_PASSWORD"),
    ("riskml-feast-registry", "url", "FEAST_REGISTRY_PATH"),
}
RAY_SECRETS = {("riskml-ray-auth", "auth_token", "RAY_AUTH_TOKEN")}
#: What each task reads from Secrets, and nothing else (least privilege).
TASK_SECRETS = {
    "load-data": set(),
    "build-features": set(),
    "feast-materialize": FEAST_SECRETS,
    "training-sets": FEAST_SECRETS,
    "tune-xgb": RAY_SECRETS,
    "train-xgb": RAY_SECRETS,
    "train-sequence": RAY_SECRETS,
    "calibrate-ensemble": set(),
    "backtest": set(),
    "gate": set(),
    "register": set(),
    "deploy": set(),
}
#: The non-secret environment every task gets from the ConfigMap riskml-pipeline-env: at least
#: the registry, the Feast config, the online store and the shared storage.
TASK_ENV = set(ENV_KEYS)
assert {
    "RISKML_MLFLOW_TRACKING_URI",
    "RISKML_FEAST_CONFIG",
    "RISKML_REDIS_URL",
    "RISKML_STORAGE_URI",
} <= TASK_ENV


def _image_user() -> tuple[int, int]:
    from riskml.settings import REPO_ROOT

    users = re.findall(r"^USER (\d+):(\d+)$", (REPO_ROOT / "Dockerfile").read_text(), re.MULTILINE)
    uid, gid = users[-1]
    return int(uid), int(gid)


@pytest.mark.parametrize("name", ["training-cluster", "retraining-cluster"])
def test_cluster_tasks_get_the_environment_and_secrets_they_need(
    compiled: dict[str, list[dict[str, Any]]], name: str
) -> None:
    ir, platform = compiled[name]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    executors = ir["deploymentSpec"]["executors"]
    assert set(k8s) == set(executors) == {f"exec-{task}" for task in TASK_SECRETS}
    uid, gid = _image_user()
    for task, secrets in TASK_SECRETS.items():
        config = k8s[f"exec-{task}"]
        # the label the NetworkPolicies select, and Pod Security "restricted" identity
        labels = config["podMetadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == "pipeline", task
        assert config["securityContext"] == {
            "runAsUser": str(uid),
            "runAsGroup": str(gid),
            "runAsNonRoot": True,
        }, task
        # the environment's settings, by name from the ConfigMap; RISKML_RAY_ADDRESS may be absent
        required = [c for c in config["configMapAsEnv"] if not c["optional"]]
        optional = [c for c in config["configMapAsEnv"] if c["optional"]]
        assert {c["configMapName"] for c in config["configMapAsEnv"]} == {"riskml-pipeline-env"}
        assert {(p["configMapKey"], p["envVar"]) for c in required for p in c["keyToEnv"]} == {
            (v, v) for v in TASK_ENV
        }, task
        assert [p["envVar"] for c in optional for p in c["keyToEnv"]] == ["RISKML_RAY_ADDRESS"]
        # RISKML_FEAST_CONFIG names a file in the mounted ConfigMap
        (volume,) = config["configMapAsVolume"]
        assert volume["configMapName"] == "riskml-pipeline-feature-store"
        assert volume["mountPath"] == "/etc/riskml/feast"
        got = {
            (s["secretName"], p["secretKey"], p["envVar"])
            for s in config.get("secretAsEnv", [])
            for p in s["keyToEnv"]
        }
        assert got == secrets, task
        assert not any(s.get("optional") for s in config.get("secretAsEnv", [])), task
        # requests and limits on every task container
        resources = executors[f"exec-{task}"]["container"]["resources"]
        for field in ("CpuRequest", "CpuLimit", "MemoryRequest", "MemoryLimit"):
            assert resources[f"resource{field}"], (task, field)
    # no secret values in the compiled pipeline: only names and keys
    text = yaml.safe_dump(compiled[name])
    assert "password=" not in text and "postgresql" not in text


def test_cluster_env_names_match_the_manifests_configmap() -> None:
    """The keys the tasks map are the keys k8s/base/training's generator writes."""
    from riskml.settings import REPO_ROOT

    kustomization = yaml.safe_load(
        (REPO_ROOT / "k8s" / "base" / "training" / "kustomization.yaml").read_text()
    )
    (generator,) = [
        g for g in kustomization["configMapGenerator"] if g["name"] == "riskml-pipeline-env"
    ]
    keys = {literal.split("=", 1)[0] for literal in generator["literals"]}
    assert keys == TASK_ENV
    assert generator["options"]["disableNameSuffixHash"] is True
