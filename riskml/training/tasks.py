"""The training pipeline's tasks on files: tune, train XGBoost, train the sequence model,
calibrate + blend into a bundle.

Each task reads a training-set directory (:mod:`riskml.training.dataset`), runs one stage of
:mod:`riskml.training.pipeline` (the same functions :func:`~riskml.training.pipeline.train_models`
composes in one process) and writes its artifact:

``xgb model``      ``model.ubj`` + ``info.json``
``sequence model`` ``weights.safetensors`` + ``architecture.json`` + ``info.json``
``bundle``         a verified model bundle (:mod:`riskml.models.bundle`)

The kfp components run them on Ray through :mod:`riskml.orchestration.entrypoints`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from riskml.console import write_json

#: Training configuration the pipelines start from (a :class:`TrainConfig` document). The label
#: maturity is TrainConfig's one default (``LABEL_MATURITY_DAYS``): labels of the last 10 days
#: before the cut-off are mostly not in yet, so those rows stay out of training.
DEFAULT_TRAIN_CONFIG: dict[str, Any] = {
    "xgb": {"num_boost_round": 200, "early_stopping_rounds": 20},
    "sequence": {"epochs": 3},
    "ray": {"num_workers": 1},
}


def train_config(config: dict[str, Any] | None) -> Any:
    from riskml.training.pipeline import TrainConfig

    return TrainConfig.model_validate(config or {})


def _split(train_dir: Path, config: Any) -> tuple[Any, Any]:
    from riskml.training.dataset import read_training_set
    from riskml.training.pipeline import split_frame

    frame, spec = read_training_set(train_dir)
    return split_frame(frame, spec, config), spec


def _read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def tune_xgb(
    train_dir: Path,
    out: Path,
    *,
    num_samples: int = 4,
    time_budget_s: float = 300,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Ray Tune over XGBoost parameters; writes the best parameters to ``out`` (JSON).

    ``num_samples=0`` skips tuning: the configured parameters are written unchanged."""
    cfg = train_config(config)
    base = cfg.xgb.model_dump(mode="json")
    if num_samples <= 0:
        write_json(Path(out), {"params": base, "tuned": False})
        return {"tuned": False, "trials": 0}
    from riskml.training.tune import TuneSettings, tune_model

    split, _ = _split(train_dir, cfg)
    tr, va = split.train, split.valid
    settings = TuneSettings(
        model="xgb",
        num_samples=num_samples,
        time_budget_s=time_budget_s,
        name=f"xgb-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
        resume=False,
        max_concurrent_trials=1,
    )
    outcome = tune_model(
        {"x_train": tr.tabular, "y_train": tr.y, "x_valid": va.tabular, "y_valid": va.y},
        settings,
        base_params=cfg.xgb,
    )
    write_json(
        Path(out),
        {"params": outcome.best_params, "tuned": True, "best_config": outcome.best_config},
    )
    return {
        "tuned": True,
        "trials": len(outcome.table),
        "best_metric": outcome.best_metric,
        "metric": settings.target_metric,
        "errors": outcome.errors,
    }


def _last_metrics(history: Any) -> dict[str, float]:
    """The last reported row of a training history (a list of metric dicts)."""
    if isinstance(history, list) and history and isinstance(history[-1], dict):
        return {
            str(k): float(v)
            for k, v in history[-1].items()
            if isinstance(v, int | float) and not isinstance(v, bool) and k != "round"
        }
    return {}


def train_xgb_model(
    train_dir: Path,
    out_dir: Path,
    *,
    params: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """XGBoost on Ray Train (:func:`riskml.training.pipeline.fit_xgb`) with ``params`` over the
    configured ones; writes ``model.ubj`` + ``info.json``."""
    from riskml.models.xgb import XGBParams
    from riskml.training.pipeline import fit_xgb

    cfg = train_config(config)
    split, spec = _split(train_dir, cfg)
    xgb_params = XGBParams.model_validate({**cfg.xgb.model_dump(mode="json"), **(params or {})})
    fitted = fit_xgb(split, spec, xgb_params, cfg.ray)
    assert fitted.xgb_ubj is not None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "model.ubj").write_bytes(fitted.xgb_ubj)
    last = _last_metrics(fitted.info.get("history"))
    info = {
        **{k: v for k, v in fitted.info.items() if k != "history"},
        "params": xgb_params.model_dump(mode="json"),
        "timings": fitted.timings,
        "last": last,
    }
    write_json(out_dir / "info.json", info)
    return {"rounds": info["rounds"], "best_iteration": info["best_iteration"], **last}


def train_sequence_model(
    train_dir: Path,
    out_dir: Path,
    *,
    params: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    use_gpu: bool = False,
) -> dict[str, Any]:
    """The behavioural sequence model on Ray Train
    (:func:`riskml.training.pipeline.fit_sequence`); writes weights, architecture and info."""
    from riskml.models.sequence import SequenceParams
    from riskml.training.pipeline import fit_sequence

    cfg = train_config(config)
    if use_gpu:
        cfg = cfg.model_copy(update={"ray": cfg.ray.model_copy(update={"use_gpu": True})})
    split, _ = _split(train_dir, cfg)
    seq_params = SequenceParams.model_validate(
        {**cfg.sequence.model_dump(mode="json"), **(params or {})}
    )
    fitted = fit_sequence(split, seq_params, cfg.ray)
    assert fitted.seq_weights is not None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "weights.safetensors").write_bytes(fitted.seq_weights)
    write_json(out_dir / "architecture.json", fitted.seq_architecture)
    info = {
        **{k: v for k, v in fitted.info.items() if k != "history"},
        "params": seq_params.model_dump(mode="json"),
        "timings": fitted.timings,
    }
    write_json(out_dir / "info.json", info)
    return {"best_epoch": info["best_epoch"], "epochs_run": info["epochs_run"]}


def calibrate_and_bundle(
    train_dir: Path,
    out_root: Path,
    *,
    xgb_dir: Path | None = None,
    seq_dir: Path | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Calibrate each trained model on the calib slice, fit the blend on valid and write a
    verified bundle (:func:`riskml.training.pipeline.assemble`)."""
    from riskml.models.bundle import save_bundle, verify_bundle
    from riskml.training.pipeline import FittedModel, assemble, sequence_fitted, xgb_fitted

    cfg = train_config(config)
    split, spec = _split(train_dir, cfg)
    fitted: list[FittedModel] = []
    if xgb_dir is not None:
        xgb_dir = Path(xgb_dir)
        fitted.append(
            xgb_fitted(
                split, (xgb_dir / "model.ubj").read_bytes(), _read_json(xgb_dir / "info.json")
            )
        )
    if seq_dir is not None:
        seq_dir = Path(seq_dir)
        fitted.append(
            sequence_fitted(
                split,
                (seq_dir / "weights.safetensors").read_bytes(),
                _read_json(seq_dir / "architecture.json"),
                _read_json(seq_dir / "info.json"),
            )
        )
    artifacts = assemble(split, spec, cfg, fitted)
    path = save_bundle(artifacts, Path(out_root), name=cfg.name)
    manifest = verify_bundle(path)
    return {
        "bundle": str(path),
        "name": cfg.name,
        "version": manifest["version"],
        "models": sorted(f.name for f in fitted),
        "valid_blend": artifacts.metrics["valid_blend"],
    }
