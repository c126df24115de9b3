"""MLflow run tracking (optional per call).

The tracking URI comes from ``riskml.settings`` (``RISKML_MLFLOW_TRACKING_URI``; default the
embedded SQLite store ``<RISKML_HOME>/mlflow.db``, artifacts under ``<RISKML_HOME>/mlartifacts``).
On a cluster it is the MLflow server (``http://mlflow.riskml-platform:5000``, PostgreSQL behind it,
artifacts proxied by the server), so no run, model or artifact lives in a pod. A ``file:`` store
(MLflow 3 keeps it in maintenance mode) still works: riskml sets ``MLFLOW_ALLOW_FILE_STORE`` for it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from riskml.settings import get_settings


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Finite numeric leaves of a nested metrics dict, keys joined with '.' (lists skipped)."""
    flat: dict[str, Any] = {}
    _flatten("", metrics, flat)
    out = {}
    for k, v in flat.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if math.isfinite(float(v)):
            out[k.replace("@", "_at_")] = float(v)
    return out


def configure_mlflow(tracking_uri: str | None = None) -> str:
    import mlflow

    settings = get_settings()
    uri = tracking_uri or settings.tracking_uri
    if uri.startswith("file:") or "://" not in uri:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    return uri


def ensure_experiment(name: str) -> str:
    """The experiment's id, created on first use. Against the embedded SQLite store its artifacts
    go under ``settings.mlflow_artifacts_uri`` (a tracking server chooses its own root)."""
    import mlflow

    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    uri = mlflow.get_tracking_uri()
    location = get_settings().mlflow_artifacts_uri if uri.startswith("sqlite:") else None
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except mlflow.exceptions.MlflowException:  # created meanwhile by a concurrent task
        again = client.get_experiment_by_name(name)
        if again is None:
            raise
        return str(again.experiment_id)


def log_training_run(
    experiment: str,
    *,
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    bundle_path: Path | None = None,
    timings: Mapping[str, float] | None = None,
    tracking_uri: str | None = None,
) -> str:
    """Log params, numeric metrics and the bundle directory as artifacts; return the run id."""
    import mlflow

    configure_mlflow(tracking_uri)
    mlflow.set_experiment(experiment_id=ensure_experiment(experiment))
    flat_params: dict[str, Any] = {}
    _flatten("", params, flat_params)
    with mlflow.start_run() as run:
        mlflow.log_params({k: str(v)[:500] for k, v in flat_params.items()})
        # MLflow metric names: alphanumerics, _ - . / and spaces
        mlflow.log_metrics(numeric_metrics({k: v for k, v in metrics.items() if k != "training"}))
        if timings:
            mlflow.log_metrics({f"timing.{k}": float(v) for k, v in timings.items()})
        if bundle_path is not None:
            mlflow.set_tag("bundle_path", str(bundle_path))
            mlflow.log_artifacts(str(bundle_path), artifact_path="bundle")
        return str(run.info.run_id)
