"""Every monitoring decision, recorded in MLflow (experiment ``riskml-monitoring``).

One run per monitor check: tags ``riskml.monitor.decision`` (``retrain`` | ``ok``),
``riskml.monitor.reason``, ``riskml.monitor.model_uri`` and the features whose alarm held;
metrics of the last window (alarms, held, decisions, estimated AP, fallback share); the report
JSON as an artifact. The retraining run the trigger launches and its gate decision are the
pipeline's own tasks (the gate's decision is also a tag on the registered version). On a cluster
the runs live in the MLflow server, so the record survives every pod.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any, Final

EXPERIMENT: Final = "riskml-monitoring"
DECISION_TAG: Final = "riskml.monitor.decision"
REASON_TAG: Final = "riskml.monitor.reason"
MODEL_TAG: Final = "riskml.monitor.model_uri"
HELD_TAG: Final = "riskml.monitor.held"
RETRAIN: Final = "retrain"
OK: Final = "ok"


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def record_check(report: dict[str, Any], *, model_uri: str, decision: str) -> str:
    """Record one monitor check (``report``: :meth:`MonitorReport.to_json`); the run id."""
    import mlflow

    from riskml.training.tracking import configure_mlflow, ensure_experiment

    if decision not in (RETRAIN, OK):
        raise ValueError(f"decision must be {RETRAIN!r} or {OK!r}, got {decision!r}")
    configure_mlflow()
    windows = report.get("windows") or []
    last = windows[-1] if windows else {}
    held = list(last.get("held") or [])
    metrics = {
        "windows": float(len(windows)),
        "alarms_last_window": float(len(last.get("alarms") or [])),
        "held_last_window": float(len(held)),
        "decisions_last_window": float(last.get("decisions") or 0),
        "estimated_ap": _finite((last.get("estimated") or {}).get("average_precision")),
        "fallback_share": _finite((last.get("health") or {}).get("fallback_share")),
    }
    with mlflow.start_run(experiment_id=ensure_experiment(EXPERIMENT)) as run:
        mlflow.set_tags(
            {
                DECISION_TAG: decision,
                REASON_TAG: (report.get("reason") or "no alarm held")[:5000],
                MODEL_TAG: model_uri,
                HELD_TAG: ",".join(held)[:5000],
            }
        )
        mlflow.log_metrics({k: v for k, v in metrics.items() if v is not None})
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "monitor_report.json"
            path.write_text(json.dumps(report, allow_nan=False, default=str))
            mlflow.log_artifact(str(path))
        return str(run.info.run_id)


def checks(decision: str | None = None, max_results: int = 100) -> list[dict[str, Any]]:
    """The recorded checks, newest first (``decision``: only those)."""
    from riskml.registry.store import client

    mlc = client()
    exp = mlc.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        return []
    query = f"tags.`{DECISION_TAG}` = '{decision}'" if decision else ""
    runs = mlc.search_runs(
        [exp.experiment_id],
        filter_string=query,
        max_results=max_results,
        order_by=["attributes.start_time DESC"],
    )
    return [
        {
            "run_id": r.info.run_id,
            "decision": r.data.tags.get(DECISION_TAG),
            "reason": r.data.tags.get(REASON_TAG),
            "model_uri": r.data.tags.get(MODEL_TAG),
            "held": [h for h in (r.data.tags.get(HELD_TAG) or "").split(",") if h],
            "metrics": dict(r.data.metrics),
        }
        for r in runs
    ]
