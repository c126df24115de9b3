"""Checkpoints a killed run resumes from, without Ray: the boosting-round count a resumed XGBoost
run reports, complete vs half-uploaded checkpoints, the tie rule, and the error a run that
failed for good raises. The kills themselves are in test_ray_training.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs
import pytest

from riskml.training.runtime import (
    CKPT_STATE,
    RayConfig,
    TrainingRunError,
    _most_advanced_checkpoint,
    saved_progress,
    training_failed,
    write_checkpoint,
)


def test_sparse_reports_count_the_rounds_of_a_resumed_model() -> None:
    """XGBoost restarts ``epoch`` at 0 when it continues a model: the reports must not."""
    import xgboost as xgb

    from riskml.models.xgb import sparse_report_callback

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = (x[:, 0] + rng.normal(size=300) > 0).astype(np.float32)
    dtrain = xgb.DMatrix(x, label=y)
    reports: list[tuple[int, bool]] = []

    def report(done: int, metrics: dict[str, float], booster: Any, final: bool) -> None:
        reports.append((done, final))

    first = xgb.train({"max_depth": 2}, dtrain, 15, callbacks=[sparse_report_callback(10, report)])
    assert reports == [(10, False), (15, True)]
    reports.clear()
    xgb.train(
        {"max_depth": 2},
        dtrain,
        15,
        xgb_model=first,
        callbacks=[sparse_report_callback(10, report)],
    )
    assert reports == [(20, False), (30, False), (30, True)]


def _checkpoint(run: Path, name: str, rounds: int) -> Path:
    directory = run / name
    directory.mkdir(parents=True)
    write_checkpoint(directory, {"model.ubj": b"m" * rounds}, {"rounds": rounds})
    return directory


def test_the_most_advanced_complete_checkpoint_is_found(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _checkpoint(run, "checkpoint_a", 10)
    _checkpoint(run, "checkpoint_b", 20)
    # cut off mid-upload: the model file is shorter than its digest says
    partial = _checkpoint(run, "checkpoint_c", 30)
    (partial / "model.ubj").write_bytes(b"m" * 7)
    # no state file yet (Ray copies file by file), and not a checkpoint at all
    (run / "checkpoint_d").mkdir()
    (run / "checkpoint_d" / "model.ubj").write_bytes(b"m" * 40)
    _checkpoint(run, "other_e", 50)
    state = json.loads((run / "checkpoint_b" / CKPT_STATE).read_text())
    assert state["rounds"] == 20 and set(state["files"]) == {"model.ubj"}

    assert saved_progress(str(run), "rounds") == 20
    assert saved_progress(str(run), "epoch") is None  # no checkpoint has that key
    assert saved_progress(str(tmp_path / "missing"), "rounds") is None
    assert saved_progress(run.as_uri(), "rounds") == 20  # a URI works too


def test_the_registered_checkpoint_wins_a_tie_and_loses_to_a_later_one(tmp_path: Path) -> None:
    class Registered:  # what ray.train.get_checkpoint() returns: a path on a filesystem
        filesystem = pyarrow.fs.LocalFileSystem()

        def __init__(self, path: Path) -> None:
            self.path = str(path)

    run = tmp_path / "run"
    registered = _checkpoint(run, "checkpoint_b", 20)
    fs = pyarrow.fs.LocalFileSystem()
    twin = _checkpoint(run, "checkpoint_a", 20)
    found = _most_advanced_checkpoint(fs, str(run), "rounds", Registered(registered))
    assert found == (20.0, str(registered))
    later = _checkpoint(run, "checkpoint_c", 30)  # reported, never registered
    found = _most_advanced_checkpoint(fs, str(run), "rounds", Registered(twin))
    assert found == (30.0, str(later))
    assert _most_advanced_checkpoint(None, None, "rounds", None) is None


def test_a_run_that_failed_for_good_says_why_and_where_to_resume(tmp_path: Path) -> None:
    from ray.train import ControllerError, WorkerGroupError

    cfg = RayConfig(storage_path=tmp_path / "ray", max_failures=1)
    run = tmp_path / "ray" / "xgb-run"
    _checkpoint(run, "checkpoint_a", 40)
    cause = WorkerGroupError("A worker health check failed.", {0: RuntimeError("died")})
    err = training_failed("XGBoost", "xgb-run", cfg, "rounds", cause)
    assert isinstance(err, TrainingRunError) and err.resume_from == 40
    assert err.run_name == "xgb-run" and err.run_path == str(run)
    message = str(err)
    assert message.startswith("XGBoost training run 'xgb-run' failed: a worker failed and ")
    assert "ray.max_failures=1 allows no more worker-group restarts" in message
    assert f"its last complete checkpoint (rounds 40) is under {run}" in message
    assert "ray.run_name='xgb-run'" in message and "A worker health check failed." in message

    err = training_failed("Sequence-model", "new", cfg, "epoch", ControllerError(OSError("x")))
    assert err.resume_from is None
    assert "Ray Train's controller failed" in str(err)
    assert f"it saved no checkpoint under {tmp_path / 'ray' / 'new'}" in str(err)
    with pytest.raises(TrainingRunError):
        raise err
