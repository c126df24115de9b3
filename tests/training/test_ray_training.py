"""Real local Ray: the training entrypoint end to end (2 workers, both models, MLflow), a worker
killed mid-run that recovers from its last checkpoint, and a resumable Ray Tune experiment."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from riskml.models.bundle import load_bundle, score
from riskml.models.features import FeatureSpec, extract_inputs

pytestmark = [pytest.mark.ray, pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    import ray

    if ray.is_initialized():  # pragma: no cover - another module left Ray running
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_entrypoint_trains_both_models_on_two_workers(
    local_ray: None, frame: Any, later_frame: Any, spec: FeatureSpec, tmp_path: Path
) -> None:
    from riskml.training.entrypoint import main

    data, test = tmp_path / "train.parquet", tmp_path / "test.parquet"
    frame.write_parquet(data)
    later_frame.write_parquet(test)
    job = {
        "task": "train",
        "data": str(data),
        "test_data": str(test),
        "feature_spec": json.loads(spec.model_dump_json()),
        "config": {
            "xgb": {"num_boost_round": 60, "early_stopping_rounds": 20},
            "sequence": {"epochs": 2, "batch_size": 128, "hidden": 16, "tab_hidden": 16},
            "ray": {"num_workers": 2, "cpus_per_worker": 1, "checkpoint_every": 20},
            "log_to_mlflow": True,
        },
        "output": str(tmp_path / "out"),
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    assert main([str(tmp_path / "job.yaml")]) == 0

    result = json.loads((tmp_path / "out" / "result.json").read_text())
    bundle = load_bundle(result["bundle"])
    assert set(bundle.models) == {"xgb", "sequence"}
    metrics = result["metrics"]
    assert metrics["valid_xgb_raw"]["roc_auc"] > 0.7
    assert metrics["test"]["roc_auc"] > 0.7
    # calibration on the later slice brings the (class-reweighted) model's ECE down
    assert metrics["valid_xgb_calibrated"]["ece"] < metrics["valid_xgb_raw"]["ece"]
    training = bundle.metrics["training"]
    assert training["xgb"]["attempts"] == 1 and training["sequence"]["epochs_run"] >= 1
    # sparse reporting: every 20 rounds plus the end, not every round
    assert len(training["xgb"]["history"]) <= 60 // 20 + 1
    p = score(bundle, later_frame)
    assert np.isfinite(p).all() and p.shape == (later_frame.height,)
    # the run is in the embedded MLflow store under RISKML_HOME, its bundle under mlartifacts
    import mlflow

    home = Path(os.environ["RISKML_HOME"]).resolve()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    run = client.get_run(result["mlflow_run_id"])
    assert run.info.artifact_uri.startswith((home / "mlartifacts").as_uri())
    listed = {f.path for f in client.list_artifacts(run.info.run_id, "bundle")}
    assert "bundle/manifest.json" in listed


def _throttle(pid_file: Path, seconds: float) -> Any:
    """An XGBoost callback that slows rounds down and records the worker's pid (by value)."""
    import xgboost as xgb

    class Throttle(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            if not getattr(self, "_wrote", False):
                pid_file.write_text(str(os.getpid()))
                self._wrote = True
            time.sleep(seconds)
            return False

    return Throttle()


def _registered_checkpoints(run_dir: Path) -> int:
    """Checkpoints Ray Train's controller has registered, read from its manager snapshot."""
    from ray.train.v2._internal.constants import CHECKPOINT_MANAGER_SNAPSHOT_FILENAME

    snapshot = run_dir / CHECKPOINT_MANAGER_SNAPSHOT_FILENAME
    try:
        return len(json.loads(snapshot.read_text()).get("checkpoint_results") or [])
    except (FileNotFoundError, json.JSONDecodeError):  # not written yet, or mid-write
        return 0


def test_killed_worker_resumes_from_last_checkpoint(
    local_ray: None, frame: Any, spec: FeatureSpec, tmp_path: Path
) -> None:
    from riskml.models.xgb import XGBParams, from_ubj, predict
    from riskml.training.runtime import RayConfig
    from riskml.training.xgboost_train import train_xgboost

    inp = extract_inputs(frame, spec)
    assert inp.y is not None
    storage, pid_file = tmp_path / "ray", tmp_path / "worker.pid"
    cfg = RayConfig(
        num_workers=1,
        cpus_per_worker=1,
        max_failures=1,
        checkpoint_every=10,
        storage_path=storage,
        run_name="kill-test",
    )
    killed: dict[str, int] = {}

    def killer() -> None:
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            # kill only once the controller has *registered* a checkpoint (its snapshot file):
            # a checkpoint directory on disk may still sit unpolled in the dying worker's queue
            if _registered_checkpoints(storage / "kill-test") >= 1 and pid_file.exists():
                pid = int(pid_file.read_text())
                os.kill(pid, signal.SIGKILL)
                killed["pid"] = pid
                return
            time.sleep(0.2)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    res = train_xgboost(
        inp.tabular[:5000],
        inp.y[:5000],
        inp.tabular[5000:],
        inp.y[5000:],
        params=XGBParams(num_boost_round=100, early_stopping_rounds=None, max_depth=3),
        ray_config=cfg,
        extra_callbacks=[_throttle(pid_file, 0.05)],
    )
    thread.join(timeout=5)
    assert killed, "the worker was never killed"
    assert int(pid_file.read_text()) != killed["pid"]  # a new worker process finished the run
    assert res.attempts == 2
    assert 10 <= res.resumed_from < 100 and res.resumed_from % 10 == 0
    assert res.rounds == 100
    rounds = [h["round"] for h in res.history]
    assert rounds == sorted(set(rounds)) and rounds[-1] == 100
    p = predict(from_ubj(res.booster_ubj), inp.tabular[5000:])
    assert p.shape == (1000,) and np.isfinite(p).all()


def test_tune_asha_with_budget_and_restore(
    local_ray: None,
    frame: Any,
    spec: FeatureSpec,
    tmp_path: Path,
    riskml_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tune state goes to RISKML_STORAGE_URI, and a job with a fresh home restores it from there
    (what a restarted pod does)."""
    from ray.tune import Tuner

    from riskml.models.xgb import XGBParams
    from riskml.settings import get_settings
    from riskml.training.tune import TuneSettings, tune_model

    inp = extract_inputs(frame, spec)
    data = {
        "x_train": inp.tabular[:4500],
        "y_train": inp.y[:4500],
        "x_valid": inp.tabular[4500:],
        "y_valid": inp.y[4500:],
    }
    settings = TuneSettings.model_validate(
        {
            "model": "xgb",
            "num_samples": 3,
            "time_budget_s": 240,
            "report_every": 10,
            "name": "tune-test",
            "search_space": {
                "eta": {"type": "loguniform", "low": 0.05, "high": 0.3},
                "max_depth": {"type": "randint", "low": 2, "high": 5},
            },
        }
    )
    base = XGBParams(num_boost_round=30, early_stopping_rounds=None)
    shared = tmp_path / "shared"
    monkeypatch.setenv("RISKML_STORAGE_URI", shared.as_uri())
    get_settings.cache_clear()
    first = tune_model(data, settings, base_params=base)
    assert not first.restored
    assert first.path == str(shared / "tune" / "tune-test") and Tuner.can_restore(first.path)
    assert not (riskml_home / "tune").exists() and not (riskml_home / "ray-storage").exists()
    assert len(first.table) == 3
    assert all(2 <= row["max_depth"] <= 5 for row in first.table)
    scores = [row["valid_aucpr"] for row in first.table]
    assert first.best_metric == max(scores) and 0 < first.best_metric <= 1
    assert first.best_params["num_boost_round"] == 30
    assert first.best_params["eta"] == first.best_config["eta"]
    monkeypatch.setenv("RISKML_HOME", str(tmp_path / "fresh-home"))  # a restarted pod
    get_settings.cache_clear()
    again = tune_model(data, settings, base_params=base)
    assert again.restored and again.path == first.path
    assert {r["trial"] for r in again.table} == {r["trial"] for r in first.table}
    with pytest.raises(ValueError, match="unknown xgb parameters"):
        TuneSettings(
            search_space={"learning_speed": {"type": "uniform", "low": 0, "high": 1}}
        ).space()
