"""Real local Ray: the training entrypoint end to end (2 workers, both models, MLflow), a worker
killed mid-run that recovers from its last checkpoint, and a resumable Ray Tune experiment."""

from __future__ import annotations

import contextlib
import json
import logging
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


def _tune_arrays(frame: Any, spec: FeatureSpec) -> dict[str, np.ndarray]:
    """XGBoost tuning arrays of the synthetic frame: the first 4,500 rows train, the rest
    validate."""
    inp = extract_inputs(frame, spec)
    assert inp.y is not None
    return {
        "x_train": inp.tabular[:4500],
        "y_train": inp.y[:4500],
        "x_valid": inp.tabular[4500:],
        "y_valid": inp.y[4500:],
    }


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
            # the synthetic labels arrive within 3 days: rows older than that have theirs
            "split": {"label_maturity_days": 3},
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


def test_local_ray_runs_train_without_the_preemption_watcher() -> None:
    """Local clusters riskml starts turn Ray Train's preemption watcher off (nothing drains a
    local node; its boot competed with the training threads, issue #26), unless the user set
    the variable."""
    from riskml.training.runtime import LOCAL_TRAIN_ENV, local_ray_env

    env: dict[str, str] = {}
    local_ray_env(env)
    assert env["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "0"
    assert LOCAL_TRAIN_ENV.items() <= env.items()
    env = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "1"}
    local_ray_env(env)
    assert env["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "1"


def test_lean_trainer_drops_ray_data_only_without_datasets(local_ray: None) -> None:
    """``lean_trainer`` removes Ray Train's Ray Data callback (and so its DatasetManager actor)
    from runs without datasets and keeps it for runs with them; the stock trainer has it, so a
    Ray that renames it fails here rather than silently keeping the actor."""
    import ray.data
    from ray.train import ScalingConfig
    from ray.train.xgboost import XGBoostTrainer

    from riskml.training.runtime import lean_trainer

    lean = lean_trainer(XGBoostTrainer)
    assert issubclass(lean, XGBoostTrainer) and lean_trainer(XGBoostTrainer) is lean

    def callbacks(trainer: Any) -> set[str]:
        return {type(cb).__name__ for cb in trainer._create_default_callbacks()}

    def noop(config: dict[str, Any]) -> None:
        return None

    scaling = ScalingConfig(num_workers=1)
    assert "DatasetsCallback" in callbacks(XGBoostTrainer(noop, scaling_config=scaling))
    bare = callbacks(lean(noop, scaling_config=scaling))
    assert "DatasetsCallback" not in bare and "BackendSetupCallback" in bare
    data = {"train": ray.data.from_items([{"x": 1.0}])}
    assert "DatasetsCallback" in callbacks(lean(noop, scaling_config=scaling, datasets=data))


def test_xgboost_run_starts_no_idle_actors_and_checkpoints_each_round_once(
    local_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run on a local Ray as riskml starts it (:data:`LOCAL_TRAIN_ENV`) creates neither a
    PreemptionWatcher nor a DatasetManager actor, reports/checkpoints each checkpoint round once
    (the end of training, at round 30, is not reported a second time), and splits the worker's
    time into its phases."""
    from collections import Counter

    import ray

    from riskml.models.xgb import XGBParams
    from riskml.training.runtime import LOCAL_TRAIN_ENV, RayConfig
    from riskml.training.synthetic import synthetic_arrays
    from riskml.training.xgboost_train import train_xgboost

    for key, value in LOCAL_TRAIN_ENV.items():  # Ray Train passes these on to its controller
        monkeypatch.setenv(key, value)

    def census() -> Counter[str]:
        return Counter(a["ActorClassName"] for a in ray._private.state.actors().values())

    before = census()
    d = synthetic_arrays(3000, n_tabular=6, seed=1)
    x, y = d["tabular"], d["y"]
    cfg = RayConfig(
        num_workers=1,
        cpus_per_worker=1,
        checkpoint_every=10,
        keep_checkpoints=10,
        storage_path=str(tmp_path / "ray"),
    )
    res = train_xgboost(
        x[:2500],
        y[:2500],
        x[2500:],
        y[2500:],
        params=XGBParams(num_boost_round=30, early_stopping_rounds=None, max_depth=3),
        ray_config=cfg,
    )
    new = census() - before
    assert new["RayTrainWorker"] == 1 and new["TrainController"] == 1
    assert new["DatasetManager"] == 0 and new["PreemptionWatcher"] == 0
    assert len([p for p in Path(res.run_path).glob("checkpoint_*") if p.is_dir()]) == 3
    assert [h["round"] for h in res.history] == [10.0, 20.0, 30.0]
    assert res.rounds == 30
    t = res.timings
    phases = t["worker_dmatrix_seconds"] + t["worker_boost_seconds"] + t["worker_report_seconds"]
    assert phases == pytest.approx(t["worker_train_seconds"], rel=1e-6)
    assert t["worker_report_seconds"] > 0 and t["startup_seconds"] > 0
    assert t["teardown_seconds"] > 0


def _throttle(progress: Path, seconds: float) -> Any:
    """An XGBoost callback that slows rounds down and writes ``"<worker pid> <rounds done>"``
    to ``progress`` after every round (defined here, so Ray pickles it by value)."""
    import xgboost as xgb

    class Throttle(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            tmp = progress.with_suffix(".tmp")
            tmp.write_text(f"{os.getpid()} {epoch + 1}")
            tmp.replace(progress)  # atomic: the killer never reads half a line
            time.sleep(seconds)
            return False

    return Throttle()


def _read_progress(progress: Path) -> tuple[int, int] | None:
    try:
        pid, done = progress.read_text().split()
    except (FileNotFoundError, ValueError):
        return None
    return int(pid), int(done)


def _kill_worker_at(progress: Path, round_: int, killed: dict[str, int]) -> threading.Thread:
    """A thread that SIGKILLs the training worker once it has boosted ``round_`` rounds and
    records its pid and the rounds it had done (``killed``)."""

    def killer() -> None:
        deadline = time.time() + 240
        while time.time() < deadline:
            seen = _read_progress(progress)
            if seen is not None and seen[1] >= round_:
                os.kill(seen[0], signal.SIGKILL)
                killed.update(pid=seen[0], round=seen[1])
                return
            time.sleep(0.02)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    return thread


#: The worker-kill tests: 100 throttled rounds, a checkpoint every 10, the kill mid-interval at
#: ~50 % (round 55), so resuming from the last checkpoint written (round 50) loses 5 rounds.
ROUNDS, EVERY, KILL_AT = 100, 10, 55


def _train_killed(
    frame: Any,
    spec: FeatureSpec,
    tmp_path: Path,
    max_failures: int,
    killed: dict[str, int],
    kill_at: int | None = KILL_AT,
) -> Any:
    """``train_xgboost`` on one worker (run ``kill-test``), SIGKILLed at round ``kill_at``."""
    from riskml.models.xgb import XGBParams
    from riskml.training.runtime import RayConfig
    from riskml.training.xgboost_train import train_xgboost

    inp = extract_inputs(frame, spec)
    assert inp.y is not None
    progress = tmp_path / "worker.progress"
    cfg = RayConfig(
        num_workers=1,
        cpus_per_worker=1,
        max_failures=max_failures,
        checkpoint_every=EVERY,
        storage_path=tmp_path / "ray",
        run_name="kill-test",
    )
    thread = _kill_worker_at(progress, kill_at, killed) if kill_at is not None else None
    try:
        return train_xgboost(
            inp.tabular[:5000],
            inp.y[:5000],
            inp.tabular[5000:],
            inp.y[5000:],
            params=XGBParams(num_boost_round=ROUNDS, early_stopping_rounds=None, max_depth=3),
            ray_config=cfg,
            extra_callbacks=[_throttle(progress, 0.05)],
        )
    finally:
        if thread is not None:
            thread.join(timeout=5)


def test_killed_worker_resumes_from_last_checkpoint(
    local_ray: None, frame: Any, spec: FeatureSpec, tmp_path: Path
) -> None:
    """A worker SIGKILLed at ~50 % with max_failures=2 finishes the run from the last checkpoint
    it wrote — registered by Ray's controller or not — losing at most one checkpoint interval."""
    from riskml.models.xgb import from_ubj, predict

    killed: dict[str, int] = {}
    t0 = time.monotonic()
    res = _train_killed(frame, spec, tmp_path, 2, killed)
    print(
        f"\nkill round {killed.get('round')}, resumed_from {res.resumed_from}, attempts "
        f"{res.attempts}, {time.monotonic() - t0:.1f} s"
    )
    assert killed, "the worker was never killed"
    seen = _read_progress(tmp_path / "worker.progress")
    assert seen is not None and seen[0] != killed["pid"]  # a new worker finished the run
    assert res.attempts == 2
    # resumed from the last checkpoint before the kill: at most one interval lost
    assert res.resumed_from % EVERY == 0
    assert killed["round"] - EVERY <= res.resumed_from <= killed["round"]
    assert res.rounds == ROUNDS
    # the history is continuous: every checkpoint interval once, none repeated or skipped
    assert [h["round"] for h in res.history] == [float(r) for r in range(EVERY, ROUNDS + 1, EVERY)]
    inp = extract_inputs(frame, spec)
    p = predict(from_ubj(res.booster_ubj), inp.tabular[5000:])
    assert p.shape == (1000,) and np.isfinite(p).all()


def test_killed_worker_without_retries_fails_clearly(
    local_ray: None, frame: Any, spec: FeatureSpec, tmp_path: Path
) -> None:
    """The control: the same kill with max_failures=0 ends the run with an error that names the
    run, why it was not retried and where it can resume; re-running the run name resumes."""
    from ray.train import WorkerGroupError

    from riskml.training.runtime import TrainingRunError

    killed: dict[str, int] = {}
    t0 = time.monotonic()
    with pytest.raises(TrainingRunError) as info:
        _train_killed(frame, spec, tmp_path, 0, killed)
    err = info.value
    print(f"\nkill round {killed.get('round')}, {time.monotonic() - t0:.1f} s: {err}")
    assert killed, "the worker was never killed"
    assert isinstance(err.__cause__, WorkerGroupError)  # Ray's own error stays the cause
    message = str(err)
    assert message.startswith("XGBoost training run 'kill-test' failed")
    assert "ray.max_failures=0 allows no more worker-group restarts" in message
    assert err.resume_from is not None and err.resume_from % EVERY == 0
    assert killed["round"] - EVERY <= err.resume_from <= killed["round"]
    assert f"(rounds {err.resume_from:g}) is under {tmp_path / 'ray' / 'kill-test'}" in message
    assert "ray.run_name='kill-test'" in message
    # what the message says works: the same run name resumes from that checkpoint
    res = _train_killed(frame, spec, tmp_path, 0, killed, kill_at=None)
    print(f"re-run: resumed_from {res.resumed_from}, attempts {res.attempts}")
    assert res.resumed_from == err.resume_from and res.attempts == 2 and res.rounds == ROUNDS


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

    data = _tune_arrays(frame, spec)
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


def test_tune_restarts_a_trial_whose_actor_died_and_names_a_trial_s_error(
    local_ray: None, frame: Any, spec: FeatureSpec, tmp_path: Path
) -> None:
    """A trial's actor that dies mid-training (``os._exit``: a node reclaimed, a worker killed)
    is restarted from its latest checkpoint (``max_failures`` 1, the default) and the experiment
    ends with no error; a trial that raises, with no restart left, fails the experiment with
    the trial's own exception in the message, not only a count."""
    from riskml.models.xgb import XGBParams
    from riskml.training.tune import TuneSettings, tune_model
    from tests.training.tune_driver import (
        crash_once_callback,
        progress_callback,
        raising_callback,
        read_progress,
    )

    data = _tune_arrays(frame, spec)
    base = XGBParams(num_boost_round=30, early_stopping_rounds=None)
    common = {"num_samples": 1, "report_every": 10, "storage_path": str(tmp_path / "tune")}
    markers, progress = tmp_path / "markers", tmp_path / "progress"
    markers.mkdir()
    progress.mkdir()
    settings = TuneSettings.model_validate({**common, "name": "actor-dies"})
    assert settings.max_failures == 1
    outcome = tune_model(
        data,
        settings,
        base_params=base,
        callbacks=[crash_once_callback(markers, 15), progress_callback(progress, 0.0)],
    )
    died = {p.name for p in markers.iterdir()}
    assert len(died) == 1, "the trial's first actor did not die"
    assert outcome.errors == 0 and [r["status"] for r in outcome.table] == ["ok"]
    assert np.isfinite(outcome.best_metric)
    # the second actor began from the checkpoint at round 10, not from scratch
    assert read_progress(progress)[died.pop()] | {"pid": 0} == {"pid": 0, "first": 10, "rounds": 30}

    settings = TuneSettings.model_validate({**common, "name": "raises", "max_failures": 0})
    with pytest.raises(RuntimeError, match=r"1 errors: ValueError: feature 7 is constant \(trial"):
        tune_model(
            data, settings, base_params=base, callbacks=[raising_callback("feature 7 is constant")]
        )


def test_tune_driver_killed_then_restored(
    local_ray: None,
    frame: Any,
    spec: FeatureSpec,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A tuning driver process SIGKILLed mid-run, then ``tune_model`` in another process (this
    one) restores the experiment from RISKML_STORAGE_URI (``Tuner.restore``): every trial
    finishes, and trials that had checkpointed continue from a checkpoint, not from scratch."""
    import subprocess
    import sys

    import ray
    from ray.tune import ExperimentAnalysis

    from riskml.models.xgb import XGBParams
    from riskml.settings import get_settings
    from riskml.training.tune import TuneSettings, tune_model
    from tests.training.tune_driver import progress_callback, read_progress

    data = _tune_arrays(frame, spec)
    arrays = tmp_path / "arrays.npz"
    with arrays.open("wb") as f:  # the driver process reads them
        np.savez(f, allow_pickle=False, **data)
    settings = TuneSettings.model_validate(
        {
            "model": "xgb",
            "num_samples": 3,
            "max_concurrent_trials": 2,
            "time_budget_s": 600,
            "report_every": 10,
            "name": "killed-driver",
            "search_space": {"max_depth": {"type": "randint", "low": 2, "high": 5}},
        }
    )
    base = XGBParams(num_boost_round=60, early_stopping_rounds=None)
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"tune": settings.model_dump(), "base": base.model_dump()}))
    shared = tmp_path / "shared"
    before, after = tmp_path / "progress-before", tmp_path / "progress-after"
    before.mkdir()
    after.mkdir()
    env = {**os.environ, "RISKML_STORAGE_URI": shared.as_uri()}
    env["RISKML_HOME"] = str(tmp_path / "driver-home")
    # the driver joins this test's Ray, as a RayJob's driver joins its cluster: killing it
    # kills its trial actors, the cluster lives on
    env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    root = Path(__file__).resolve().parents[2]
    args = [str(arrays), str(job), str(before), "0.1"]
    log = tmp_path / "driver.log"
    t0 = time.monotonic()
    with log.open("wb") as out:
        driver = subprocess.Popen(
            [sys.executable, "-m", "tests.training.tune_driver", *args],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, cleaned up below
        )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and driver.poll() is None:
            seen = read_progress(before)
            # a trial past its second checkpoint (rounds 10, 20) and still running
            if any(25 <= p["rounds"] < base.num_boost_round for p in seen.values()):
                break
            time.sleep(0.05)
        assert driver.poll() is None, f"the driver ended first: {log.read_text()[-3000:]}"
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
        killed_at = time.monotonic() - t0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)  # anything the driver left
    at_kill = read_progress(before)
    assert at_kill, "no trial trained before the kill"

    monkeypatch.setenv("RISKML_STORAGE_URI", shared.as_uri())
    monkeypatch.setenv("RISKML_HOME", str(tmp_path / "restored-home"))  # another pod
    get_settings.cache_clear()
    t1 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="ray.tune"):
        outcome = tune_model(
            data, settings, base_params=base, callbacks=[progress_callback(after, 0.0)]
        )
    restored_s = time.monotonic() - t1
    rerun = read_progress(after)
    print(
        f"\nkilled after {killed_at:.1f} s with trials at {at_kill}; restored in "
        f"{restored_s:.1f} s, re-run trials {rerun}"
    )
    assert outcome.restored and outcome.path == str(shared / "tune" / "killed-driver")
    # max_concurrent_trials reaches Tune (it ignores TuneConfig's with a SearchGenerator)
    assert "will be ignored" not in caplog.text
    # every trial reached a terminal state with results
    analysis = ExperimentAnalysis(outcome.path)
    statuses = {t.trial_id: t.status for t in analysis.trials}
    assert len(statuses) == settings.num_samples
    assert set(statuses.values()) == {"TERMINATED"}, statuses
    assert {r["trial"] for r in outcome.table} == set(statuses)
    assert all(r["status"] == "ok" and np.isfinite(r["valid_aucpr"]) for r in outcome.table)
    # each trial trained in the killed driver, the restored one or both
    assert set(statuses) == set(at_kill) | set(rerun)
    every = settings.report_every
    for trial, now in rerun.items():
        had = at_kill.get(trial, {}).get("rounds", 0)
        # from a checkpoint it had written (or from scratch), never ahead of it
        assert now["first"] % every == 0 and now["first"] <= had, (trial, had, now)
        if had >= 2 * every:  # a trial past its second checkpoint continued from one
            assert now["first"] >= every, (trial, had, now)
    assert any(now["first"] > 0 for now in rerun.values()), "no trial resumed"
    # no trial's results started over: one report per iteration, boosting rounds in order
    for trial, frame_ in analysis.trial_dataframes.items():
        iterations, rounds = list(frame_["training_iteration"]), list(frame_["rounds"])
        assert iterations == list(range(1, len(iterations) + 1)), (trial, iterations)
        assert rounds == sorted(rounds) and rounds[0] == every, (trial, rounds)
