"""MLflow run tracking (optional per call).

The tracking URI comes from ``riskml.settings`` (``RISKML_MLFLOW_TRACKING_URI``; default a file
store under ``<RISKML_HOME>/mlruns``). MLflow 3 keeps the file store in maintenance mode and
refuses it unless ``MLFLOW_ALLOW_FILE_STORE=true``; riskml sets that opt-out for ``file:`` URIs
only (a server URI — ``http(s)://``, a database — is used as is).
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

    uri = tracking_uri or get_settings().tracking_uri
    if uri.startswith("file:") or "://" not in uri:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(uri)
    return uri


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
    mlflow.set_experiment(experiment)
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
