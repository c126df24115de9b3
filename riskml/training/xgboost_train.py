"""XGBoost on Ray Train (``XGBoostTrainer``, data-parallel over workers).

Each worker reads its own shard from the object store, builds a ``QuantileDMatrix`` with
``nthread`` = its CPUs, and trains one booster jointly with the others (XGBoost's collective
allreduce, set up by Ray Train). Early stopping watches the validation slice (a later time slice,
sharded the same way; the metric is allreduced so every worker stops at the same round).
Metrics and a UBJSON checkpoint go to Ray every ``checkpoint_every`` rounds and at the end (once:
not again when the last round was a checkpoint round) — never per round. After a worker failure
Ray restarts the group (up to ``max_failures``) and every worker resumes boosting from the last
checkpoint.

``XGBTrainResult.timings`` splits the run: ``startup_seconds`` (``fit()`` to the worker's train
function), then the worker's ``worker_data_seconds`` (shards from the object store),
``worker_resume_seconds`` (checkpoint lookup), ``worker_dmatrix_seconds``,
``worker_boost_seconds``, ``worker_report_seconds`` (Ray reports and checkpoints from the
boosting loop), ``worker_model_seconds`` (the returned model's bytes), and ``teardown_seconds``.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from riskml.models.xgb import XGBParams, fit_booster, from_ubj, sparse_report_callback, to_ubj
from riskml.training.runtime import (
    CKPT_STATE,
    RayConfig,
    cpus_per_worker,
    ensure_ray,
    latest_checkpoint,
    lean_trainer,
    put_shards,
    run_config,
    run_name,
    scaling_config,
    training_failed,
    write_checkpoint,
)

CKPT_MODEL = "model.ubj"


@dataclass
class XGBTrainResult:
    booster_ubj: bytes
    rounds: int
    best_iteration: int
    history: list[dict[str, float]]
    resumed_from: int  # boosted rounds restored from a checkpoint (0 = fresh start)
    attempts: int  # worker-group starts (1 = no failure)
    run_path: str
    timings: dict[str, float] = field(default_factory=dict)

    def booster(self, nthread: int | None = None) -> Any:
        return from_ubj(self.booster_ubj, nthread=nthread)


class PhaseClock:
    """Splits a :func:`~riskml.models.xgb.fit_booster` call into building the DMatrix (up to
    XGBoost's ``before_training``), boosting, and the Ray reports and checkpoints made from the
    boosting loop (``reports``, which the caller adds up), so that Ray's share of a run shows
    (issue #26). The benchmark gives the in-process baseline the same clock.

    Call :meth:`begin` just before ``fit_booster`` and pass :meth:`callback` to it.
    """

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.boost_start: float | None = None
        self.reports = 0.0

    def begin(self) -> None:
        self.start, self.boost_start, self.reports = time.perf_counter(), None, 0.0

    def callback(self) -> Any:
        import xgboost as xgb

        clock = self

        class _Start(xgb.callback.TrainingCallback):
            def before_training(self, model: Any) -> Any:
                clock.boost_start = time.perf_counter()
                return model

        return _Start()

    def split(self, total: float) -> dict[str, float]:
        """``{"dmatrix_seconds", "boost_seconds", "report_seconds"}`` of a fit that took
        ``total`` seconds (``fit_booster``'s own figure) since :meth:`begin`."""
        dmatrix = (self.boost_start or self.start) - self.start
        return {
            "dmatrix_seconds": dmatrix,
            "boost_seconds": max(0.0, total - dmatrix - self.reports),
            "report_seconds": self.reports,
        }


def _xgb_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Runs inside every Ray Train worker."""
    import ray
    import ray.train

    t_start = time.time()
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    params = XGBParams.model_validate(config["params"])
    train = ray.get(config["train_refs"][rank])
    valid = ray.get(config["valid_refs"][rank]) if config["valid_refs"] else None
    t_data = time.time()

    init_model = None
    state: dict[str, Any] = {"history": [], "attempts": 0, "resumed_from": 0}
    # the most advanced complete checkpoint, registered by Ray's controller or not
    checkpoint = latest_checkpoint("rounds")
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            init_model = from_ubj(Path(d, CKPT_MODEL).read_bytes())
            state = json.loads(Path(d, CKPT_STATE).read_text())
        state["resumed_from"] = init_model.num_boosted_rounds()
    state["attempts"] = int(state.get("attempts", 0)) + 1
    history: list[dict[str, float]] = state["history"]
    t_resume = time.time()
    clock = PhaseClock()
    reported: list[int] = []  # rounds this attempt has reported (and checkpointed)

    def report(done: int, metrics: dict[str, float], booster: Any, final: bool) -> None:
        if final and reported and reported[-1] == done:
            # the end of a run whose last round was a checkpoint round (100 rounds, every 50):
            # that model is already checkpointed and reported. A second report right behind
            # it also blocks: Ray Train's result queue holds one report until the controller
            # polls (every 2 s), so it cost the worker 0-2 s of waiting (issue #26)
            return
        reported.append(done)
        t0 = time.perf_counter()
        row = {"round": float(done), **metrics}
        if not history or history[-1]["round"] != done:
            history.append(row)
        payload = {**row, "resumed_from": float(state["resumed_from"]), "final": float(final)}
        with tempfile.TemporaryDirectory() as d:
            ckpt = None
            if rank == 0:
                write_checkpoint(
                    d,
                    {CKPT_MODEL: to_ubj(booster)},
                    {**state, "rounds": done, "history": history},
                )
                ckpt = ray.train.Checkpoint.from_directory(d)
            ray.train.report(payload, checkpoint=ckpt)
        clock.reports += time.perf_counter() - t0

    callbacks = [clock.callback(), sparse_report_callback(config["checkpoint_every"], report)]
    callbacks += list(config.get("extra_callbacks") or [])
    clock.begin()
    booster, info = fit_booster(
        params,
        train["x"],
        train["y"],
        valid["x"] if valid else None,
        valid["y"] if valid else None,
        pos_rate=config["pos_rate"],
        nthread=config["nthread"],
        use_gpu=config["use_gpu"],
        feature_names=config["feature_names"],
        init_model=init_model,
        callbacks=callbacks,
    )
    t_model = time.perf_counter()
    model = to_ubj(booster) if rank == 0 else b""
    return {
        "model": model,
        "rounds": info["rounds"],
        "best_iteration": info["best_iteration"],
        "history": history,
        "resumed_from": state["resumed_from"],
        "attempts": state["attempts"],
        "worker_start": t_start,
        "worker_data_seconds": t_data - t_start,
        "worker_resume_seconds": t_resume - t_data,
        "worker_train_seconds": info["seconds"],
        **{f"worker_{k}": v for k, v in clock.split(info["seconds"]).items()},
        "worker_model_seconds": time.perf_counter() - t_model,
        "worker_end": time.time(),
    }


#: The tree methods XGBoost's distributed training supports (the ``exact`` updater,
#: ``grow_colmaker``, fails under a collective communicator: "Updater `grow_colmaker` or `exact`
#: tree method doesn't support distributed training", XGBoost 3.2; ``xgboost.spark`` refuses it
#: up front too).
DISTRIBUTED_TREE_METHODS = ("hist", "approx")


def check_distributed_tree_method(params: XGBParams, num_workers: int) -> None:
    """ValueError, before Ray starts, for a tree method Ray Train cannot run.

    Ray Train's ``XGBoostTrainer`` wraps every worker in XGBoost's collective communicator, so
    XGBoost counts even a single worker as distributed: ``exact`` fails with any number of
    workers (measured: 1 worker, XGBoost 3.2, Ray 2.60). Train it in process instead.
    """
    if params.tree_method not in DISTRIBUTED_TREE_METHODS:
        raise ValueError(
            f"tree_method={params.tree_method!r} does not support XGBoost's distributed "
            f"training, which Ray Train uses ({num_workers} worker"
            f"{'s' if num_workers != 1 else ''} requested; XGBoost refuses it even on one): use "
            f"tree_method 'hist' or 'approx' with Ray Train, or train in process "
            f"(fit_models(..., in_process=True), as the backtest and riskml select do)"
        )


def train_xgboost(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray | None = None,
    y_valid: np.ndarray | None = None,
    *,
    params: XGBParams | None = None,
    ray_config: RayConfig | None = None,
    feature_names: Sequence[str] | None = None,
    extra_callbacks: Sequence[Any] = (),
) -> XGBTrainResult:
    """Train a booster with ``XGBoostTrainer`` on ``ray_config.num_workers`` workers.

    ``x_*`` are float32 matrices in feature-spec order, ``y_*`` 0/1 labels. The class-imbalance
    weight is computed here from the whole training set. ``extra_callbacks`` are extra XGBoost
    callbacks run in every worker (they must be picklable).
    """
    from ray.train import TrainingFailedError
    from ray.train.xgboost import XGBoostTrainer

    params = params or XGBParams()
    cfg = ray_config or RayConfig()
    check_distributed_tree_method(params, cfg.num_workers)
    if len(y_train) == 0 or y_train.min() == y_train.max():
        raise ValueError("training labels need both classes")
    if x_train.shape[0] != len(y_train):
        raise ValueError(f"{x_train.shape[0]} training rows vs {len(y_train)} labels")
    ensure_ray(include_dashboard=cfg.include_dashboard)
    t0 = time.time()
    train_refs = put_shards({"x": x_train, "y": y_train}, cfg.num_workers)
    valid_refs = (
        put_shards({"x": x_valid, "y": y_valid}, cfg.num_workers)
        if x_valid is not None and y_valid is not None and len(y_valid)
        else []
    )
    name = run_name(cfg, "xgb")
    nthread = cpus_per_worker(cfg)
    trainer = lean_trainer(XGBoostTrainer)(
        _xgb_worker,  # V2 returns rank 0's value as return_value
        train_loop_config={
            "params": params.model_dump(mode="json"),
            "train_refs": train_refs,
            "valid_refs": valid_refs,
            "pos_rate": float(np.mean(y_train)),
            "nthread": nthread,
            "use_gpu": cfg.use_gpu,
            "feature_names": list(feature_names) if feature_names else None,
            "checkpoint_every": cfg.checkpoint_every,
            "extra_callbacks": list(extra_callbacks),
        },
        scaling_config=scaling_config(cfg),
        run_config=run_config(cfg, name),
    )
    t_fit = time.time()
    try:
        result = trainer.fit()
    except TrainingFailedError as exc:
        raise training_failed("XGBoost", name, cfg, "rounds", exc) from exc
    t_end = time.time()
    out = getattr(result, "return_value", None)
    if not out:
        raise RuntimeError(f"XGBoost training run {name} returned no model ({result.error})")
    return XGBTrainResult(
        booster_ubj=out["model"],
        rounds=int(out["rounds"]),
        best_iteration=int(out["best_iteration"]),
        history=out["history"],
        resumed_from=int(out["resumed_from"]),
        attempts=int(out["attempts"]),
        run_path=str(result.path),
        timings={
            "put_seconds": t_fit - t0,
            "fit_seconds": t_end - t_fit,
            # start-up: from fit() to the (last) worker's train function starting
            "startup_seconds": out["worker_start"] - t_fit,
            **{k: float(v) for k, v in out.items() if k.endswith("_seconds")},
            "teardown_seconds": t_end - out["worker_end"],
            "nthread": float(nthread),
        },
    )
