"""Train → calibrate → blend → bundle: the one training path (CLI, kfp tasks, backtest).

:func:`train_models` takes a training frame (polars or pandas: ids, ``ts``, labels and the
feature columns a :class:`~riskml.models.features.FeatureSpec` names — e.g. the point-in-time
training set the feature store builds for a FeatureService) and:

1. splits it by time into *train* < *valid* < *calib* slices;
2. trains XGBoost (Ray Train, early stopping on *valid*) and the sequence model (Ray Train DDP,
   early stopping on *valid*) — each optional;
3. fits one calibrator per model on *calib* (the latest held-out slice);
4. chooses a weighted or stacked blend of the calibrated probabilities on *valid*;
5. writes a verified model bundle and, optionally, an MLflow run.

Labels honour label delay: the model is trained "as of" the end of the frame, so fraud whose
label arrived later counts as genuine (``label_as_of``; set ``label_delay_aware=False`` for an
oracle run).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from riskml.models.bundle import ModelArtifacts
from riskml.models.calibration import Calibrator
from riskml.models.calibration import Method as CalibrationMethod
from riskml.models.ensemble import Blend, BlendMethod
from riskml.models.features import FeatureSpec, ModelInputs
from riskml.models.sequence import SequenceParams
from riskml.models.xgb import XGBParams
from riskml.training.runtime import RayConfig

if TYPE_CHECKING:  # pragma: no cover
    from riskml.monitoring.profile import ReferenceProfile

ModelName = Literal["xgb", "sequence"]


#: The one label-maturity default (training CLI, kfp pipeline, backtest): rows younger than this
#: at the label cut-off are left out of training, because most of their fraud labels have not
#: arrived yet (chargebacks take ~10 days) and they would train as genuine.
LABEL_MATURITY_DAYS = 10.0


class SplitConfig(BaseModel):
    """Time split of the training window: train < valid < calib (fractions of rows by time)."""

    model_config = ConfigDict(extra="forbid")

    valid_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    calib_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    label_maturity_days: float = Field(
        default=LABEL_MATURITY_DAYS,
        ge=0,
        description="Drop rows younger than this at the label cut-off: their fraud labels may "
        "not have arrived yet, so they would train as genuine and bias calibration (the latest "
        "slice) low. 0 keeps them (the split's summary then says how many rows that is).",
    )

    @model_validator(mode="after")
    def _fits(self) -> SplitConfig:
        if self.valid_fraction + self.calib_fraction >= 0.8:
            raise ValueError("valid_fraction + calib_fraction must leave >= 20 % for training")
        return self


class TrainConfig(BaseModel):
    """Everything a training run needs besides the data (JSON/YAML in a job spec)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="fraud", pattern=r"^[A-Za-z0-9_.-]+$")
    models: tuple[ModelName, ...] = ("xgb", "sequence")
    xgb: XGBParams = Field(default_factory=XGBParams)
    sequence: SequenceParams = Field(default_factory=SequenceParams)
    split: SplitConfig = Field(default_factory=SplitConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    calibration: CalibrationMethod = "auto"
    blend: BlendMethod = "auto"
    label_delay_aware: bool = True
    label_cutoff: dt.datetime | None = Field(
        default=None,
        description="When the training labels are known (the backtest's fold cut-off); default "
        "the end of the frame. Label maturity and label-delay awareness count from here.",
    )
    log_to_mlflow: bool = False
    experiment: str = "riskml-train"
    card_precision_k: int = Field(default=100, ge=1)
    max_fpr: float = Field(default=0.01, gt=0, lt=1)

    @model_validator(mode="after")
    def _models(self) -> TrainConfig:
        if not self.models:
            raise ValueError("train at least one model")
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"duplicate models: {self.models}")
        return self


@dataclass
class TimeSplit:
    train: ModelInputs
    valid: ModelInputs
    calib: ModelInputs
    cutoffs: dict[str, Any]
    label_as_of: dt.datetime | None
    #: the rows younger than the label maturity at the cut-off, left out of training (their
    #: labels are not in yet) but the most recent features: the monitor's reference
    recent: ModelInputs | None = None


@dataclass
class TrainOutcome:
    bundle_path: Path
    metrics: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    mlflow_run_id: str | None = None


def _is_polars(frame: Any) -> bool:
    return type(frame).__module__.split(".")[0] == "polars"


def _sorted_by_ts(frame: Any) -> Any:
    if _is_polars(frame):
        return frame.sort("ts", maintain_order=True)
    return frame.sort_values("ts", kind="stable").reset_index(drop=True)


def split_frame(frame: Any, spec: FeatureSpec, config: TrainConfig) -> TimeSplit:
    """Extract model inputs once and cut them by time into train / valid / calib."""
    from riskml.models.features import FeatureContractError, extract_inputs

    spec.check_frame(frame, need_label=True)
    if "ts" not in frame.columns:
        raise FeatureContractError("the training frame needs a 'ts' column")
    frame = _sorted_by_ts(frame)
    ts_max = frame["ts"].max()
    ts_max = ts_max.to_pydatetime() if hasattr(ts_max, "to_pydatetime") else ts_max
    cutoff = config.label_cutoff or ts_max
    if config.label_cutoff is not None:  # compare like with like: naive means UTC
        aware = cutoff.replace(tzinfo=dt.UTC) if cutoff.tzinfo is None else cutoff
        cutoff = (
            aware if ts_max.tzinfo is not None else aware.astimezone(dt.UTC).replace(tzinfo=None)
        )
    as_of = cutoff if config.label_delay_aware and "label_available_at" in frame.columns else None
    maturity = dt.timedelta(days=config.split.label_maturity_days)
    young = frame["ts"] > cutoff - maturity
    n_young = int(young.sum())
    recent = None
    if config.split.label_maturity_days > 0:
        keep = ~young
        if n_young:
            rows = frame.filter(young) if _is_polars(frame) else frame[young]
            recent = extract_inputs(rows, spec, label_as_of=as_of)
        frame = frame.filter(keep) if _is_polars(frame) else frame[keep].reset_index(drop=True)
    elif n_young:
        import logging

        logging.getLogger(__name__).warning(
            "label_maturity_days=0: %d rows younger than %s days at the label cut-off train "
            "with the labels known then (recent frauds count as genuine)",
            n_young,
            LABEL_MATURITY_DAYS,
        )
    inputs = extract_inputs(frame, spec, label_as_of=as_of)
    n = len(inputs)
    n_valid = round(n * config.split.valid_fraction)
    n_calib = round(n * config.split.calib_fraction)
    n_train = n - n_valid - n_calib
    if min(n_train, n_valid, n_calib) < 10:
        raise ValueError(f"{n} rows are too few to split into train/valid/calib")
    parts = {
        "train": inputs.take(slice(0, n_train)),
        "valid": inputs.take(slice(n_train, n_train + n_valid)),
        "calib": inputs.take(slice(n_train + n_valid, n)),
    }
    for part_name, part in parts.items():
        assert part.y is not None
        if part.y.min() == part.y.max():
            raise ValueError(
                f"the {part_name} slice has a single class ({int(part.y.sum())} frauds in "
                f"{len(part)} rows); use more data or different split fractions"
            )
    ts = inputs.ts
    cutoffs: dict[str, Any] = {
        "label_cutoff": str(cutoff),
        "label_maturity_days": config.split.label_maturity_days,
        # rows younger than the maturity at the cut-off: dropped, or (maturity 0) trained on
        "immature_rows": n_young,
        "immature_rows_dropped": n_young if config.split.label_maturity_days > 0 else 0,
    }
    if ts is not None:
        cutoffs |= {
            "train_start": str(ts[0]),
            "valid_start": str(ts[n_train]),
            "calib_start": str(ts[n_train + n_valid]),
            "end": str(ts[-1]),
        }
    return TimeSplit(parts["train"], parts["valid"], parts["calib"], cutoffs, as_of, recent)


def _slice_metrics(inputs: ModelInputs, prob: np.ndarray, config: TrainConfig) -> dict[str, float]:
    from riskml.metrics import evaluate

    assert inputs.y is not None
    day = inputs.ts.astype("datetime64[D]") if inputs.ts is not None else None
    return evaluate(
        inputs.y,
        prob,
        amount=inputs.amount,
        card_id=inputs.customer_id if day is not None else None,
        day=day,
        k=config.card_precision_k,
        max_fpr=config.max_fpr,
    )


def calibrate_and_blend(
    split: TimeSplit,
    raw_valid: dict[str, np.ndarray],
    raw_calib: dict[str, np.ndarray],
    config: TrainConfig,
) -> tuple[dict[str, Calibrator], Blend, dict[str, Any]]:
    """Calibrate each model on the calib slice and fit the blend on the valid slice, from the
    models' raw probabilities there; returns the calibrators, the blend and the slice metrics
    (raw and calibrated per model, and the blend's). ``calibration_<model>`` records the
    calibrator (method, ``auto``'s held-out selection scores) and, on *valid*, the distinct
    values among the top 2,000 raw vs calibrated scores and AP raw vs calibrated — calibration
    is strictly increasing, so both pairs should agree."""
    from riskml.models.calibration import fit_calibrator, ranking_check
    from riskml.models.ensemble import fit_blend

    va, ca = split.valid, split.calib
    assert va.y is not None and ca.y is not None
    calibrators = {m: fit_calibrator(raw_calib[m], ca.y, config.calibration) for m in raw_valid}
    cal_valid = {m: calibrators[m](raw_valid[m]) for m in raw_valid}
    blend = fit_blend(cal_valid, va.y, config.blend)
    metrics: dict[str, Any] = {"split": split.cutoffs, "label_as_of": str(split.label_as_of)}
    for m in raw_valid:
        metrics[f"valid_{m}_raw"] = _slice_metrics(va, raw_valid[m], config)
        metrics[f"valid_{m}_calibrated"] = _slice_metrics(va, cal_valid[m], config)
        metrics[f"calib_{m}_raw"] = _slice_metrics(ca, raw_calib[m], config)
        metrics[f"calibration_{m}"] = {
            **calibrators[m].summary(),
            "valid": ranking_check(raw_valid[m], cal_valid[m], va.y),
        }
    metrics["valid_blend"] = _slice_metrics(va, blend(cal_valid), config)
    metrics["blend"] = blend.to_json()
    return calibrators, blend, metrics


# -- the stages of one training run ---------------------------------------------------------
# train_models composes them in one process; the pipeline's training tasks
# (riskml.training.tasks) run the same stages with files in between.


@dataclass
class FittedModel:
    """One trained model: its artifact bytes, training info and raw valid/calib scores."""

    name: ModelName
    raw_valid: np.ndarray
    raw_calib: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    xgb_ubj: bytes | None = None
    seq_weights: bytes | None = None
    seq_architecture: dict[str, Any] | None = None


def xgb_fitted(split: TimeSplit, ubj: bytes, info: dict[str, Any] | None = None) -> FittedModel:
    """A trained XGBoost model (UBJSON) with its raw scores on the valid and calib slices."""
    from riskml.models.xgb import from_ubj, predict

    booster = from_ubj(ubj)
    return FittedModel(
        "xgb",
        predict(booster, split.valid.tabular),
        predict(booster, split.calib.tabular),
        info=dict(info or {}),
        xgb_ubj=ubj,
    )


def sequence_fitted(
    split: TimeSplit,
    weights: bytes,
    architecture: dict[str, Any],
    info: dict[str, Any] | None = None,
) -> FittedModel:
    """A trained sequence model with its raw scores on the valid and calib slices."""
    from riskml.models.sequence import load_model, predict_proba

    va, ca = split.valid, split.calib
    if va.sequence is None or ca.sequence is None:
        raise ValueError("the training set has no sequence features")
    module = load_model(architecture, weights)
    return FittedModel(
        "sequence",
        predict_proba(module, va.tabular, va.sequence),
        predict_proba(module, ca.tabular, ca.sequence),
        info=dict(info or {}),
        seq_weights=weights,
        seq_architecture=architecture,
    )


def fit_xgb(
    split: TimeSplit,
    spec: FeatureSpec,
    params: XGBParams,
    ray_config: RayConfig,
    *,
    in_process: bool = False,
    threads: int = 1,
) -> FittedModel:
    """XGBoost on the train slice, early stopping on valid: Ray Train, or in this process."""
    tr, va = split.train, split.valid
    assert tr.y is not None and va.y is not None
    if in_process:
        from riskml.models.xgb import fit_booster, to_ubj

        booster, info = fit_booster(
            params, tr.tabular, tr.y, va.tabular, va.y, feature_names=spec.tabular, nthread=threads
        )
        fitted = xgb_fitted(
            split,
            to_ubj(booster),
            {
                "rounds": info["rounds"],
                "best_iteration": info["best_iteration"],
                "attempts": 1,
                "in_process": True,
            },
        )
        fitted.timings = {"xgb_fit_seconds": float(info["seconds"])}
        return fitted
    from riskml.training.xgboost_train import train_xgboost

    res = train_xgboost(
        tr.tabular,
        tr.y,
        va.tabular,
        va.y,
        params=params,
        ray_config=ray_config,
        feature_names=spec.tabular,
    )
    fitted = xgb_fitted(
        split,
        res.booster_ubj,
        {
            "rounds": res.rounds,
            "best_iteration": res.best_iteration,
            "attempts": res.attempts,
            "resumed_from": res.resumed_from,
            "run_path": res.run_path,
            "history": res.history,
        },
    )
    fitted.timings = {f"xgb_{k}": v for k, v in res.timings.items()}
    return fitted


def fit_sequence(
    split: TimeSplit,
    params: SequenceParams,
    ray_config: RayConfig,
    *,
    in_process: bool = False,
    threads: int = 1,
) -> FittedModel:
    """The behavioural sequence model, early stopping on valid: Ray Train, or in this process."""
    from riskml.training.sequence_train import train_sequence, train_sequence_local

    tr, va = split.train, split.valid
    if tr.sequence is None or va.sequence is None:
        raise ValueError("the training set has no sequence features")
    assert tr.y is not None and va.y is not None
    seq_args = (tr.tabular, tr.sequence, tr.y, va.tabular, va.sequence, va.y)
    if in_process:
        sres = train_sequence_local(*seq_args, params=params, threads=threads)
    else:
        sres = train_sequence(*seq_args, params=params, ray_config=ray_config)
    fitted = sequence_fitted(
        split,
        sres.weights,
        sres.architecture,
        {
            "best_epoch": sres.best_epoch,
            "epochs_run": sres.epochs_run,
            "attempts": sres.attempts,
            "resumed_from": sres.resumed_from,
            "run_path": sres.run_path,
            "history": sres.history,
        },
    )
    fitted.timings = {f"sequence_{k}": v for k, v in sres.timings.items()}
    return fitted


def assemble(
    split: TimeSplit, spec: FeatureSpec, config: TrainConfig, fitted: list[FittedModel]
) -> ModelArtifacts:
    """Calibrate and blend the fitted models into the bundle's artifacts (not yet saved)."""
    from riskml.models.bundle import ModelArtifacts

    if not fitted:
        raise ValueError("no trained model to calibrate and bundle")
    raw_valid: dict[str, np.ndarray] = {f.name: f.raw_valid for f in fitted}
    raw_calib: dict[str, np.ndarray] = {f.name: f.raw_calib for f in fitted}
    calibrators, blend, metrics = calibrate_and_blend(split, raw_valid, raw_calib, config)
    metrics["training"] = {f.name: f.info for f in fitted}
    by_name = {f.name: f for f in fitted}
    xgb, seq = by_name.get("xgb"), by_name.get("sequence")
    artifacts = ModelArtifacts(
        spec=spec,
        calibrators=calibrators,
        blend=blend,
        xgb_ubj=xgb.xgb_ubj if xgb else None,
        seq_weights=seq.seq_weights if seq else None,
        seq_architecture=seq.seq_architecture if seq else None,
        metrics=metrics,
        config=config.model_dump(mode="json"),
    )
    artifacts.profile = reference_profile(split, artifacts).model_dump(mode="json")
    return artifacts


#: Days of the most recent rows before the cut-off the monitor's reference profile holds.
REFERENCE_DAYS = 14


def _concat(parts: list[ModelInputs]) -> ModelInputs:
    def cat(name: str) -> np.ndarray | None:
        arrays = [getattr(p, name) for p in parts]
        return None if any(a is None for a in arrays) else np.concatenate(arrays)

    tabular = cat("tabular")
    assert tabular is not None
    return ModelInputs(
        tabular=tabular,
        sequence=cat("sequence"),
        y=cat("y"),
        amount=cat("amount"),
        customer_id=cat("customer_id"),
        ts=cat("ts"),
    )


def reference_profile(
    split: TimeSplit, artifacts: ModelArtifacts, *, days: int = REFERENCE_DAYS
) -> ReferenceProfile:
    """The monitor's reference (:mod:`riskml.monitoring.profile`): the features and the served
    score (this bundle's calibrated blend) of the last ``days`` of rows before the cut-off —
    the calib slice and the rows too young for their labels, left out of training but the
    traffic the model meets first (an older reference makes the first weeks drift) — with the
    class balance of the matured valid + calib slices and the default thresholds' decision
    mix."""
    from riskml.decision.config import Thresholds
    from riskml.features.definitions import default_value
    from riskml.models.bundle import bundle_from_artifacts, score_inputs
    from riskml.monitoring.profile import build_profile

    parts = [split.valid, split.calib] + ([split.recent] if split.recent is not None else [])
    rows = _concat(parts)
    if rows.ts is not None and len(rows):
        since = rows.ts.max() - np.timedelta64(days, "D")
        rows = rows.take(np.flatnonzero(rows.ts >= since))
    scores = score_inputs(bundle_from_artifacts(artifacts), rows)["score"]
    matured = np.concatenate([y for y in (split.valid.y, split.calib.y) if y is not None])
    ts = rows.ts
    profile = build_profile(
        rows.tabular,
        artifacts.spec.tabular,
        scores=scores,
        thresholds=Thresholds().model_dump(),
        defaults={name: float(default_value(name)) for name in artifacts.spec.tabular},
        source=f"the last {days} days before the cut-off (calib slice + rows awaiting labels)",
        start=None if ts is None or not len(ts) else ts.min(),
        end=None if ts is None or not len(ts) else ts.max(),
    )
    return profile.model_copy(
        update={"frauds": int(matured.sum()), "fraud_rate": float(matured.mean())}
    )


def trained_models(config: TrainConfig, spec: FeatureSpec) -> list[ModelName]:
    """The configured models this spec can train (the sequence model needs sequences)."""
    models: list[ModelName] = [m for m in config.models if m != "sequence" or spec.has_sequence]
    if not models:
        raise ValueError("only the sequence model was requested but the spec has no sequences")
    return models


def score_test(
    artifacts: ModelArtifacts, test_frame: Any, config: TrainConfig
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Score a later window with the unsaved bundle (the same function serving uses): the
    scores (``score`` and ``<model>_calibrated``) and their metrics (``test``,
    ``test_<model>_calibrated``)."""
    from riskml.models.bundle import bundle_from_artifacts, score_inputs
    from riskml.models.features import extract_inputs

    inputs = extract_inputs(test_frame, artifacts.spec)
    scores = score_inputs(bundle_from_artifacts(artifacts), inputs)
    metrics: dict[str, Any] = {}
    if inputs.y is not None:
        metrics["test"] = _slice_metrics(inputs, scores["score"], config)
        for key in scores:
            if key.endswith("_calibrated"):
                metrics[f"test_{key}"] = _slice_metrics(inputs, scores[key], config)
    return scores, metrics


def fit_models(
    frame: Any,
    spec: FeatureSpec,
    config: TrainConfig,
    *,
    in_process: bool = False,
    threads: int = 1,
) -> tuple[ModelArtifacts, dict[str, float]]:
    """Split by time, train the configured models, calibrate and blend: the artifacts of a
    bundle (unsaved) and the stage timings."""
    models = trained_models(config, spec)
    t0 = time.perf_counter()
    split = split_frame(frame, spec, config)
    timings: dict[str, float] = {"prepare_seconds": time.perf_counter() - t0}
    fitted: list[FittedModel] = []
    if "xgb" in models:
        fitted.append(
            fit_xgb(split, spec, config.xgb, config.ray, in_process=in_process, threads=threads)
        )
    if "sequence" in models:
        fitted.append(
            fit_sequence(split, config.sequence, config.ray, in_process=in_process, threads=threads)
        )
    for f in fitted:
        timings.update(f.timings)
    return assemble(split, spec, config, fitted), timings


def train_models(
    frame: Any,
    spec: FeatureSpec,
    config: TrainConfig | None = None,
    *,
    out_dir: Path | str | None = None,
    test_frame: Any = None,
    in_process: bool = False,
) -> TrainOutcome:
    """Train, calibrate and blend the configured models; write a bundle; return its path+metrics.

    ``in_process`` trains both models in this process without Ray (the same XGBoost and torch
    loops, one CPU thread each: notebooks, tests, small serving fixtures); ``config.ray`` is
    then ignored.

    ``out_dir`` defaults to ``<RISKML_HOME>/models``. With ``test_frame`` the bundle is also
    scored on it (ground-truth labels) and ``metrics["test"]`` is filled.
    """
    from riskml.models.bundle import save_bundle
    from riskml.settings import get_settings

    config = config or TrainConfig()
    t0 = time.perf_counter()
    artifacts, timings = fit_models(frame, spec, config, in_process=in_process)
    if test_frame is not None:
        artifacts.metrics.update(score_test(artifacts, test_frame, config)[1])
    root = Path(out_dir) if out_dir is not None else get_settings().models_dir
    bundle_path = save_bundle(artifacts, root, name=config.name)
    timings["total_seconds"] = time.perf_counter() - t0
    run_id = None
    if config.log_to_mlflow:
        from riskml.training.tracking import log_training_run

        run_id = log_training_run(
            config.experiment,
            params=config.model_dump(mode="json"),
            metrics=artifacts.metrics,
            bundle_path=bundle_path,
            timings=timings,
        )
    return TrainOutcome(bundle_path, artifacts.metrics, timings, run_id)
