"""CLI verbs ``riskml train`` and ``riskml tune`` — thin wrappers over :mod:`riskml.training.jobs`.

Heavy imports (polars, ray, torch, xgboost) happen inside the command bodies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def _job_doc(
    task: str,
    data: Path,
    spec: Path | None,
    config: Path | None,
    out: Path | None,
    workers: int | None,
    gpu: bool,
) -> dict[str, Any]:
    from riskml.training.jobs import load_document

    doc: dict[str, Any] = {"task": task, "data": str(data)}
    cfg = load_document(config) if config else {}
    ray_cfg = dict(cfg.get("ray") or {})
    if workers is not None:
        ray_cfg["num_workers"] = workers
    if gpu:
        ray_cfg["use_gpu"] = True
    if ray_cfg:
        cfg["ray"] = ray_cfg
    doc["config"] = cfg
    if spec:
        doc["feature_spec"] = str(spec)
    if out:
        doc["output"] = str(out)
    return doc


def _run(doc: dict[str, Any], json_out: Path | None) -> dict[str, Any]:
    from pydantic import ValidationError

    from riskml.console import progress, write_json
    from riskml.training.jobs import JobSpec, run_job

    try:
        job = JobSpec.model_validate(doc)
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from exc
    with progress(f"riskml {job.task}", total=None):
        result = run_job(job)
    if json_out:
        write_json(json_out, result)
    return result


def _print_metrics(result: dict[str, Any]) -> None:
    from riskml.console import print_table

    metrics = result.get("metrics") or {}
    rows = []
    for key, values in metrics.items():
        if isinstance(values, dict) and "roc_auc" in values:
            rows.append(
                {
                    "slice/model": key,
                    "roc_auc": values["roc_auc"],
                    "avg_precision": values["average_precision"],
                    "ece": values["ece"],
                    "brier": values["brier"],
                }
            )
    if rows:
        print_table("metrics", rows)
    if "bundle" in result:
        typer.echo(f"bundle: {result['bundle']}")


def train(
    data: Path = typer.Option(..., "--data", help="Training frame: Parquet file or directory."),
    spec: Path | None = typer.Option(None, "--spec", help="FeatureSpec JSON/YAML (else inferred)."),
    config: Path | None = typer.Option(None, "--config", help="TrainConfig JSON/YAML."),
    test_data: Path | None = typer.Option(None, "--test-data", help="Later window to score."),
    out: Path | None = typer.Option(
        None, "--out", help="Bundle root (default RISKML_HOME/models)."
    ),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Ray Train workers."),
    gpu: bool = typer.Option(False, "--gpu", help="One GPU per worker."),
    mlflow: bool | None = typer.Option(None, "--mlflow/--no-mlflow", help="Track in MLflow."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the result JSON here."),
) -> None:
    """Train XGBoost + the sequence model on Ray, calibrate, blend, and write a model bundle."""
    doc = _job_doc("train", data, spec, config, out, workers, gpu)
    if test_data:
        doc["test_data"] = str(test_data)
    if mlflow is not None:
        doc["config"]["log_to_mlflow"] = mlflow
    _print_metrics(_run(doc, json_out))


def tune(
    data: Path = typer.Option(..., "--data", help="Training frame: Parquet file or directory."),
    model: str = typer.Option("xgb", "--model", help="xgb or sequence."),
    spec: Path | None = typer.Option(None, "--spec", help="FeatureSpec JSON/YAML (else inferred)."),
    config: Path | None = typer.Option(None, "--config", help="TrainConfig JSON/YAML."),
    tune_config: Path | None = typer.Option(None, "--tune-config", help="TuneSettings JSON/YAML."),
    samples: int | None = typer.Option(None, "--samples", min=1, help="Trial budget."),
    time_budget: float | None = typer.Option(None, "--time-budget", help="Seconds budget."),
    name: str | None = typer.Option(None, "--name", help="Experiment name (resumes if present)."),
    train_best: bool = typer.Option(True, "--train-best/--no-train-best"),
    out: Path | None = typer.Option(None, "--out", help="Output dir (default RISKML_HOME/models)."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Ray Train workers."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the result JSON here."),
) -> None:
    """Tune XGBoost or the sequence model with Ray Tune (ASHA); train the best into a bundle."""
    from riskml.console import print_table
    from riskml.training.jobs import load_document

    doc = _job_doc("tune", data, spec, config, out, workers, False)
    settings: dict[str, Any] = load_document(tune_config) if tune_config else {}
    settings["model"] = model
    if samples is not None:
        settings["num_samples"] = samples
    if time_budget is not None:
        settings["time_budget_s"] = time_budget
    if name is not None:
        settings["name"] = name
    doc["tune"] = settings
    doc["train_best"] = train_best
    result = _run(doc, json_out)
    tune_res = result["tune"]
    print_table(f"tuning trials ({tune_res['metric']})", tune_res["trials"])
    _print_metrics(result)
