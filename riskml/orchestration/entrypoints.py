"""Ray entrypoints of the training tasks (:mod:`riskml.training.tasks`): ``run(spec) -> dict``
wrappers that :func:`riskml.orchestration.ray_task.run_ray_task` runs in any mode
(``"riskml.orchestration.entrypoints:train_xgb"`` etc.). Paths in the spec must be visible where
the entrypoint runs (same machine in ``local`` mode; shared storage for ``jobs``/``rayjob``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def tune_xgb(spec: dict[str, Any]) -> dict[str, Any]:
    from riskml.training.tasks import tune_xgb as task

    return task(
        Path(spec["train_dir"]),
        Path(spec["out"]),
        num_samples=int(spec.get("num_samples", 2)),
        time_budget_s=float(spec.get("time_budget_s", 300)),
        config=spec.get("config") or None,
    )


def train_xgb(spec: dict[str, Any]) -> dict[str, Any]:
    from riskml.training.tasks import train_xgb_model

    return train_xgb_model(
        Path(spec["train_dir"]),
        Path(spec["out_dir"]),
        params=spec.get("params") or None,
        config=spec.get("config") or None,
    )


def train_sequence(spec: dict[str, Any]) -> dict[str, Any]:
    from riskml.training.tasks import train_sequence_model

    return train_sequence_model(
        Path(spec["train_dir"]),
        Path(spec["out_dir"]),
        params=spec.get("params") or None,
        config=spec.get("config") or None,
        use_gpu=bool(spec.get("use_gpu", False)),
    )


def train_job(spec: dict[str, Any]) -> dict[str, Any]:
    """A :mod:`riskml.training.jobs` job spec (the RayJob template's training job)."""
    from riskml.training.jobs import JobSpec, run_job

    return run_job(JobSpec.model_validate(spec))
