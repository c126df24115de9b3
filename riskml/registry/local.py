"""A file-system model registry: ``<root>/<name>/<version>/`` bundles, ``index.json`` (every
registered version) and ``champion.json`` (the deployed one). ``root`` defaults to
``<RISKML_HOME>/models/registry``.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

from riskml.console import write_json
from riskml.settings import get_settings


def _read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def registry_root(root: Path | None = None) -> Path:
    return Path(root) if root else get_settings().models_dir / "registry"


def champion(name: str = "fraud", root: Path | None = None) -> dict[str, Any] | None:
    """The deployed bundle's record (``champion.json``), or None before the first deploy."""
    path = registry_root(root) / name / "champion.json"
    return dict(_read_json(path)) if path.is_file() else None


def register(
    bundle_dir: Path,
    *,
    metrics: dict[str, Any] | None = None,
    decision: str | None = None,
    root: Path | None = None,
    log_mlflow: bool = True,
    experiment: str = "riskml-pipeline",
) -> dict[str, Any]:
    """Copy the verified bundle into the registry, append it to ``index.json``, log to MLflow."""
    from riskml.models.bundle import verify_bundle

    manifest = verify_bundle(bundle_dir)
    name, version = str(manifest["name"]), str(manifest["version"])
    target = registry_root(root) / name / version
    if not target.exists():
        tmp = target.with_name(f".{version}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(bundle_dir, tmp)
        tmp.replace(target)
    verify_bundle(target)
    run_id = None
    if log_mlflow:
        from riskml.training.tracking import log_training_run

        run_id = log_training_run(
            experiment,
            params={"bundle": version, "decision": decision or ""},
            metrics=metrics or {},
            bundle_path=target,
        )
    index_path = target.parent / "index.json"
    index = _read_json(index_path) if index_path.is_file() else []
    index = [e for e in index if e.get("version") != version]
    index.append(
        {
            "version": version,
            "path": str(target.resolve()),
            "registered_at": dt.datetime.now(dt.UTC).isoformat(),
            "decision": decision,
            "mlflow_run_id": run_id,
        }
    )
    write_json(index_path, index)
    return {
        "name": name,
        "version": version,
        "path": str(target.resolve()),
        "mlflow_run_id": run_id,
    }


def set_champion(record: dict[str, Any], root: Path | None = None) -> Path:
    """Record ``record`` (``name``, ``version``, ``path``, ...) as the deployed champion."""
    return write_json(registry_root(root) / str(record["name"]) / "champion.json", record)
