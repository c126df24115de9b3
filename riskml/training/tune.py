"""Ray Tune for both models: search spaces from config, ASHA early termination, a time and trial
budget, resumable experiments (``Tuner.restore``), and a results table.

Each trial trains one model in its own Tune actor (``cpus_per_trial`` threads, optionally a GPU):
on a cluster trials spread over nodes; on a laptop they queue. Trials report every
``report_every`` boosting rounds (XGBoost) or every epoch (sequence model) with a checkpoint, so
ASHA can stop weak trials early and a restored experiment resumes unfinished trials where they
stopped. Training data goes to the object store once (``tune.with_parameters``).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from riskml.models.sequence import SequenceParams
from riskml.models.xgb import XGBParams
from riskml.training.runtime import TUNE_STORAGE, ensure_ray, ray_storage, storage_join

TuneModel = Literal["xgb", "sequence"]


class Distribution(BaseModel):
    """One hyper-parameter's search distribution (``randint`` bounds are inclusive)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["uniform", "loguniform", "randint", "choice"]
    low: float | None = None
    high: float | None = None
    values: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> Distribution:
        if self.type == "choice":
            if not self.values:
                raise ValueError("a 'choice' distribution needs non-empty 'values'")
        else:
            if self.low is None or self.high is None or not self.low < self.high:
                raise ValueError(f"a {self.type!r} distribution needs low < high")
            if self.type == "loguniform" and self.low <= 0:
                raise ValueError("a 'loguniform' distribution needs low > 0")
        return self

    def to_tune(self) -> Any:
        from ray import tune

        if self.type == "choice":
            return tune.choice(list(self.values or []))
        assert self.low is not None and self.high is not None
        if self.type == "uniform":
            return tune.uniform(self.low, self.high)
        if self.type == "loguniform":
            return tune.loguniform(self.low, self.high)
        return tune.randint(int(self.low), int(self.high) + 1)


def default_search_space(model: TuneModel) -> dict[str, Distribution]:
    if model == "xgb":
        return {
            "eta": Distribution(type="loguniform", low=0.02, high=0.3),
            "max_depth": Distribution(type="randint", low=3, high=9),
            "min_child_weight": Distribution(type="loguniform", low=0.5, high=20),
            "subsample": Distribution(type="uniform", low=0.6, high=1.0),
            "colsample_bytree": Distribution(type="uniform", low=0.5, high=1.0),
        }
    return {
        "lr": Distribution(type="loguniform", low=5e-4, high=5e-3),
        "hidden": Distribution(type="choice", values=[16, 32, 64]),
        "dropout": Distribution(type="uniform", low=0.0, high=0.3),
    }


class TuneSettings(BaseModel):
    """Budget, scheduler and search space of a tuning experiment."""

    model_config = ConfigDict(extra="forbid")

    model: TuneModel = "xgb"
    search_space: dict[str, Distribution] | None = Field(
        default=None, description="Parameter -> distribution; default: a per-model space."
    )
    num_samples: int = Field(default=8, ge=1, description="Trial budget.")
    time_budget_s: float | None = Field(default=900, gt=0, description="Wall-clock budget.")
    max_concurrent_trials: int | None = Field(default=None, ge=1)
    cpus_per_trial: int = Field(default=1, ge=1)
    gpus_per_trial: float = Field(default=0, ge=0)
    scheduler: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(default=1, ge=1, description="ASHA: reports before any stop.")
    reduction_factor: float = Field(default=3, gt=1)
    report_every: int = Field(default=10, ge=1, description="XGBoost rounds per Tune report.")
    metric: str | None = Field(
        default=None, description="Default: valid_aucpr (xgb) / valid_ap (sequence)."
    )
    mode: Literal["max", "min"] = "max"
    name: str = Field(default="tune", pattern=r"^[A-Za-z0-9_.-]+$")
    storage_path: str | None = Field(
        default=None,
        description="Tune storage: a local path or a URI (file://, s3://, gs://); the "
        "experiment lives at <storage_path>/<name>. Default: <RISKML_STORAGE_URI>/tune.",
    )
    resume: bool = Field(default=True, description="Restore the experiment if it exists.")
    max_failures: int = Field(
        default=1,
        ge=-1,
        description="Restarts of a trial whose actor failed (from its latest checkpoint) "
        "before it counts as an error; -1: no limit. A node lost under a trial (a spot GPU "
        "reclaimed, an actor that never registered on a loaded machine) costs one restart.",
    )
    seed: int | None = 7

    @field_validator("storage_path", mode="before")
    @classmethod
    def _path_as_str(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @property
    def target_metric(self) -> str:
        return self.metric or ("valid_aucpr" if self.model == "xgb" else "valid_ap")

    def space(self) -> dict[str, Distribution]:
        space = self.search_space or default_search_space(self.model)
        fields = XGBParams.model_fields if self.model == "xgb" else SequenceParams.model_fields
        unknown = sorted(set(space) - set(fields))
        if unknown:
            raise ValueError(
                f"search space names unknown {self.model} parameters {unknown}; "
                f"known: {sorted(fields)}"
            )
        return space


@dataclass
class TuneOutcome:
    best_config: dict[str, Any]
    best_params: dict[str, Any]  # base params with the best config applied
    best_metric: float
    table: list[dict[str, Any]]
    path: str
    restored: bool
    errors: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _xgb_trial(config: dict[str, Any], data: dict[str, Any], setup: dict[str, Any]) -> None:
    """One XGBoost trial (runs in a Tune actor)."""
    from ray import tune

    from riskml.models.xgb import fit_booster, from_ubj, sparse_report_callback

    params = XGBParams.model_validate({**setup["base"], **config})
    init_model = None
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            init_model = from_ubj(Path(d, "model.ubj").read_bytes())

    def report(done: int, metrics: dict[str, float], booster: Any, final: bool) -> None:
        row = {k.replace("-", "_"): v for k, v in metrics.items()}
        row["rounds"] = float(done)
        with tempfile.TemporaryDirectory() as d:
            booster.save_model(str(Path(d, "model.ubj")))
            tune.report(row, checkpoint=tune.Checkpoint.from_directory(d))

    fit_booster(
        params,
        data["x_train"],
        data["y_train"],
        data["x_valid"],
        data["y_valid"],
        nthread=setup["threads"],
        use_gpu=setup["use_gpu"],
        init_model=init_model,
        callbacks=[
            sparse_report_callback(setup["report_every"], report),
            *setup.get("callbacks", ()),
        ],
    )


def _sequence_trial(config: dict[str, Any], data: dict[str, Any], setup: dict[str, Any]) -> None:
    """One sequence-model trial (runs in a Tune actor), one report per epoch."""
    import torch
    from ray import tune

    from riskml.training.sequence_train import prepare_sequence_job, run_sequence_loop

    params = SequenceParams.model_validate({**setup["base"], **config})
    arch, init = prepare_sequence_job(data["tab_train"], data["seq_train"], data["y_train"], params)
    device = torch.device("cuda" if setup["use_gpu"] and torch.cuda.is_available() else "cpu")

    def report(metrics: dict[str, float], ckpt_dir: str | None) -> None:
        ckpt = tune.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None
        tune.report(metrics, checkpoint=ckpt)

    loop_cfg = {
        "params": params.model_dump(mode="json"),
        "architecture": arch.model_dump(mode="json"),
        "init_weights": init,
        "train": {"tab": data["tab_train"], "seq": data["seq_train"], "y": data["y_train"]},
        "valid": {"tab": data["tab_valid"], "seq": data["seq_valid"], "y": data["y_valid"]},
        "pos_rate": float(np.mean(data["y_train"])),
        "steps_per_epoch": max(1, math.ceil(len(data["y_train"]) / params.batch_size)),
        "threads": setup["threads"],
        "device": device,
    }
    ckpt = tune.get_checkpoint()
    if ckpt is None:
        run_sequence_loop(loop_cfg, report=report, checkpoint=None)
    else:
        with ckpt.as_directory() as d:
            run_sequence_loop(loop_cfg, report=report, checkpoint=d)


def trial_errors(grid: Any, *, limit: int = 3) -> str:
    """The errors of a Tune ``ResultGrid``'s failed trials, for a message a user can act on:
    how many, and the first ``limit`` of them (type and first line, with the trial's path)."""
    failed = [res for res in grid if res.error is not None]
    if not failed:
        return "0 errors"
    lines = []
    for res in failed[:limit]:
        # a trial's own exception arrives wrapped (RayTaskError(ValueError)): name its cause
        error = getattr(res.error, "cause", None) or res.error
        first = (str(error).strip().splitlines() or [""])[0][:300]
        lines.append(f"{type(error).__name__}: {first} (trial at {res.path})")
    more = f"; {len(failed) - limit} more" if len(failed) > limit else ""
    return f"{len(failed)} errors: " + "; ".join(lines) + more


def _results_table(
    grid: Any, space: dict[str, Distribution], metric: str, mode: str
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for res in grid:
        cfg = res.config or {}
        hist = res.metrics_dataframe
        best = float("nan")
        if hist is not None and metric in hist:
            series = hist[metric].dropna()
            if len(series):
                best = float(series.max() if mode == "max" else series.min())
        row: dict[str, Any] = {"trial": str((res.metrics or {}).get("trial_id", ""))}
        row.update({k: cfg.get(k) for k in space})
        row[metric] = best
        row["iterations"] = int((res.metrics or {}).get("training_iteration", 0))
        row["status"] = "error" if res.error else "ok"
        rows.append(row)
    sign = -1.0 if mode == "max" else 1.0

    def key(r: dict[str, Any]) -> tuple[bool, float]:
        v = r[metric]
        return (math.isnan(v), 0.0 if math.isnan(v) else sign * v)

    rows.sort(key=key)
    return rows


def tune_model(
    data: dict[str, np.ndarray],
    settings: TuneSettings,
    *,
    base_params: XGBParams | SequenceParams | None = None,
    callbacks: Sequence[Any] = (),
) -> TuneOutcome:
    """Run (or resume) a tuning experiment.

    ``data`` holds ``x_train, y_train, x_valid, y_valid`` (XGBoost) or ``tab_train, seq_train,
    y_train, tab_valid, seq_valid, y_valid`` (sequence model). The experiment lives at
    ``<storage>/<name>`` (``settings.storage_path``, else ``<RISKML_STORAGE_URI>/tune``: a
    local path or a URI, see :func:`~riskml.training.runtime.ray_storage`); with ``resume`` an
    existing one is restored from there (``Tuner.restore``: unfinished trials continue from
    their latest checkpoint, errored ones too) and continued. ``callbacks`` are extra XGBoost
    callbacks every XGBoost trial runs (picklable), as in
    :func:`~riskml.training.xgboost_train.train_xgboost`.
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    needed = (
        ("x_train", "y_train", "x_valid", "y_valid")
        if settings.model == "xgb"
        else ("tab_train", "seq_train", "y_train", "tab_valid", "seq_valid", "y_valid")
    )
    missing = [k for k in needed if k not in data]
    if missing:
        raise ValueError(f"tuning {settings.model} needs arrays {missing}")
    if callbacks and settings.model != "xgb":
        raise ValueError("callbacks are XGBoost callbacks: only model 'xgb' takes them")
    if base_params is None:
        base_params = XGBParams() if settings.model == "xgb" else SequenceParams()
    space = settings.space()
    metric = settings.target_metric
    ensure_ray()
    storage = ray_storage(settings.storage_path, TUNE_STORAGE)
    path = storage_join(storage, settings.name)
    if settings.model == "xgb":
        assert isinstance(base_params, XGBParams)
        max_t = math.ceil(base_params.num_boost_round / settings.report_every) + 1
        fn: Any = _xgb_trial
    else:
        assert isinstance(base_params, SequenceParams)
        max_t = base_params.epochs
        fn = _sequence_trial
    setup = {
        "base": base_params.model_dump(mode="json"),
        "callbacks": list(callbacks),
        "threads": settings.cpus_per_trial,
        "use_gpu": settings.gpus_per_trial > 0,
        "report_every": settings.report_every,
    }
    trainable = tune.with_resources(
        tune.with_parameters(fn, data=data, setup=setup),
        {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial},
    )
    restored = bool(settings.resume and tune.Tuner.can_restore(path))
    if restored:
        tuner = tune.Tuner.restore(
            path, trainable=trainable, resume_unfinished=True, resume_errored=True
        )
    else:
        scheduler = (
            ASHAScheduler(
                time_attr="training_iteration",
                max_t=max(max_t, settings.grace_period),
                grace_period=settings.grace_period,
                reduction_factor=settings.reduction_factor,
            )
            if settings.scheduler == "asha"
            else FIFOScheduler()
        )
        from ray.tune.search.basic_variant import BasicVariantGenerator

        # the generator limits concurrency itself: Tune ignores TuneConfig's
        # max_concurrent_trials with a SearchGenerator such as this one (it logs a warning)
        search = BasicVariantGenerator(
            random_state=settings.seed, max_concurrent=settings.max_concurrent_trials or 0
        )
        tuner = tune.Tuner(
            trainable,
            param_space={k: d.to_tune() for k, d in space.items()},
            tune_config=tune.TuneConfig(
                metric=metric,
                mode=settings.mode,
                scheduler=scheduler,
                search_alg=search,
                num_samples=settings.num_samples,
                time_budget_s=settings.time_budget_s,
            ),
            run_config=tune.RunConfig(
                name=settings.name,
                storage_path=storage,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                failure_config=tune.FailureConfig(max_failures=settings.max_failures),
                verbose=0,
            ),
        )
    grid = tuner.fit()
    table = _results_table(grid, space, metric, settings.mode)
    ok = [r for r in table if not math.isnan(r[metric])]
    if not ok:
        raise RuntimeError(f"no tuning trial reported {metric!r}: {trial_errors(grid)}")
    best_row = ok[0]
    best_config = {k: best_row[k] for k in space}
    best_params = {**base_params.model_dump(mode="json"), **best_config}
    return TuneOutcome(
        best_config=best_config,
        best_params=best_params,
        best_metric=float(best_row[metric]),
        table=table,
        path=path,
        restored=restored,
        errors=int(grid.num_errors),
    )


def write_outcome(outcome: TuneOutcome, path: Path) -> Path:
    from riskml.console import write_json

    return write_json(
        path,
        {
            "best_config": outcome.best_config,
            "best_params": outcome.best_params,
            "best_metric": outcome.best_metric,
            "restored": outcome.restored,
            "errors": outcome.errors,
            "experiment_path": outcome.path,
            "trials": outcome.table,
        },
    )


__all__ = [
    "Distribution",
    "TuneOutcome",
    "TuneSettings",
    "default_search_space",
    "trial_errors",
    "tune_model",
    "write_outcome",
]
