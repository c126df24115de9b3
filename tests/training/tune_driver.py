"""A Ray Tune driver process for the fault tests, SIGKILLed mid-run by them:

    python -m tests.training.tune_driver ARRAYS.npz JOB.json PROGRESS_DIR SECONDS_PER_ROUND

It starts its own local Ray (2 CPUs) and runs :func:`riskml.training.tune.tune_model` on the
arrays (``x_train, y_train, x_valid, y_valid``) with ``JOB.json``'s ``{"tune": TuneSettings,
"base": XGBParams}`` and :func:`progress_callback`; the experiment goes where
``RISKML_STORAGE_URI`` says.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def progress_callback(progress_dir: Path, seconds: float) -> Any:
    """An XGBoost callback for tuning trials: sleeps ``seconds`` after every round and keeps
    ``<progress_dir>/<trial id>.json`` = ``{"pid", "first", "rounds"}``: the process, the rounds
    its model had when this process started training it (0 = from scratch, more = resumed from a
    checkpoint) and the rounds it has now. Defined in a function, so Ray pickles it by value."""
    import xgboost as xgb

    class Progress(xgb.callback.TrainingCallback):
        first: int | None = None

        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            from ray import tune

            rounds = model.num_boosted_rounds()
            if self.first is None:
                self.first = rounds - 1
            path = progress_dir / f"{tune.get_context().get_trial_id()}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"pid": os.getpid(), "first": self.first, "rounds": rounds}))
            tmp.replace(path)  # atomic: a reader never sees half a file
            time.sleep(seconds)
            return False

    return Progress()


def crash_once_callback(marker_dir: Path, at_round: int) -> Any:
    """An XGBoost callback for tuning trials: the first process to train a trial past
    ``at_round`` boosting rounds dies there (``os._exit``: the trial's actor is lost, as on a
    reclaimed node), leaving ``<marker_dir>/<trial id>``; later attempts train on."""
    import xgboost as xgb

    class CrashOnce(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            from ray import tune

            marker = marker_dir / tune.get_context().get_trial_id()
            if model.num_boosted_rounds() > at_round and not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)
            return False

    return CrashOnce()


def raising_callback(message: str) -> Any:
    """An XGBoost callback that raises ``ValueError(message)`` after the first round."""
    import xgboost as xgb

    class Raise(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            raise ValueError(message)

    return Raise()


def read_progress(progress_dir: Path) -> dict[str, dict[str, int]]:
    """``{trial id: {"pid", "first", "rounds"}}`` as :func:`progress_callback` left them."""
    out = {}
    for path in progress_dir.glob("*.json"):
        try:
            out[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):  # pragma: no cover - replaced while read
            continue
    return out


def main(argv: list[str]) -> int:
    import numpy as np

    from riskml.models.xgb import XGBParams
    from riskml.training.runtime import ensure_ray
    from riskml.training.tune import TuneSettings, tune_model

    arrays, job_path, progress_dir, seconds = argv
    with np.load(arrays) as npz:
        data = {k: npz[k] for k in npz.files}
    job = json.loads(Path(job_path).read_text())
    ensure_ray(num_cpus=2, log_to_driver=False)
    outcome = tune_model(
        data,
        TuneSettings.model_validate(job["tune"]),
        base_params=XGBParams.model_validate(job["base"]),
        callbacks=[progress_callback(Path(progress_dir), float(seconds))],
    )
    print(json.dumps({"trials": len(outcome.table), "restored": outcome.restored}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
