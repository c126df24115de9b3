"""Training/tuning jobs described by one JSON/YAML document (CLI, entrypoint, RayJob).

Example job spec::

    task: train                 # train | tune
    data: /data/train.parquet   # Parquet file or directory of Parquet files (training frame)
    test_data: null             # optional later window to score the bundle on
    feature_spec: spec.json     # a FeatureSpec (inline mapping or path); default: inferred
    config: {ray: {num_workers: 4, use_gpu: false}, xgb: {num_boost_round: 500}}
    tune: {model: xgb, num_samples: 16, time_budget_s: 1800}   # task: tune
    train_best: true            # task: tune — train a bundle with the best parameters
    output: /out                # bundles, result.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from riskml.training.pipeline import TrainConfig
from riskml.training.tune import TuneSettings


class JobSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: Literal["train", "tune"] = "train"
    data: Path
    test_data: Path | None = None
    feature_spec: dict[str, Any] | Path | None = None
    config: TrainConfig = Field(default_factory=TrainConfig)
    tune: TuneSettings = Field(default_factory=TuneSettings)
    train_best: bool = True
    output: Path | None = Field(default=None, description="Default: <RISKML_HOME>/models.")


def load_document(path: Path | str) -> dict[str, Any]:
    """A JSON or YAML mapping from a file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    text = path.read_text()
    if path.suffix.lower() in {".yaml", ".yml"}:
        import yaml

        doc = yaml.safe_load(text)
    else:
        doc = json.loads(text)
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return doc


def read_frame(path: Path) -> Any:
    """A polars frame from a Parquet file or a directory of Parquet files."""
    import polars as pl

    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.parquet"))
        if not files:
            raise FileNotFoundError(f"no Parquet files under {path}")
        return pl.read_parquet(files)
    if not path.is_file():
        raise FileNotFoundError(f"no training data at {path}")
    return pl.read_parquet(path)


def resolve_spec(spec: dict[str, Any] | Path | None, frame: Any) -> Any:
    from riskml.models.features import FeatureSpec

    if spec is None:
        return FeatureSpec.infer(frame)
    if isinstance(spec, Path):
        return FeatureSpec.model_validate(load_document(spec))
    return FeatureSpec.model_validate(spec)


def run_job(job: JobSpec) -> dict[str, Any]:
    """Run a job and return its JSON-able result (also written to ``<output>/result.json``)."""
    from riskml.console import write_json
    from riskml.settings import get_settings

    frame = read_frame(job.data)
    spec = resolve_spec(job.feature_spec, frame)
    out_dir = Path(job.output) if job.output else get_settings().models_dir
    result: dict[str, Any] = {"task": job.task, "feature_service": spec.feature_service}
    config = job.config
    if job.task == "tune":
        from riskml.training.pipeline import split_frame
        from riskml.training.tune import tune_model, write_outcome

        split = split_frame(frame, spec, config)
        tr, va = split.train, split.valid
        assert tr.y is not None and va.y is not None
        if job.tune.model == "xgb":
            data = {"x_train": tr.tabular, "y_train": tr.y, "x_valid": va.tabular, "y_valid": va.y}
            base: Any = config.xgb
        else:
            if tr.sequence is None or va.sequence is None:
                raise ValueError("tuning the sequence model needs sequence features in the spec")
            data = {
                "tab_train": tr.tabular,
                "seq_train": tr.sequence,
                "y_train": tr.y,
                "tab_valid": va.tabular,
                "seq_valid": va.sequence,
                "y_valid": va.y,
            }
            base = config.sequence
        outcome = tune_model(data, job.tune, base_params=base)
        write_outcome(outcome, out_dir / f"tune-{job.tune.name}.json")
        result["tune"] = {
            "best_config": outcome.best_config,
            "best_metric": outcome.best_metric,
            "metric": job.tune.target_metric,
            "restored": outcome.restored,
            "trials": outcome.table,
            "experiment_path": outcome.path,
        }
        if not job.train_best:
            write_json(out_dir / "result.json", result)
            return result
        update = {("xgb" if job.tune.model == "xgb" else "sequence"): outcome.best_params}
        config = TrainConfig.model_validate({**config.model_dump(mode="json"), **update})
    from riskml.training.pipeline import train_models

    test = read_frame(job.test_data) if job.test_data else None
    outcome_t = train_models(frame, spec, config, out_dir=out_dir, test_frame=test)
    result.update(
        {
            "bundle": str(outcome_t.bundle_path),
            "metrics": {k: v for k, v in outcome_t.metrics.items() if k != "training"},
            "timings": outcome_t.timings,
            "mlflow_run_id": outcome_t.mlflow_run_id,
        }
    )
    write_json(out_dir / "result.json", result)
    return result
