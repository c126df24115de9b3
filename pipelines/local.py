"""Run a pipeline on this machine with ``kfp.local`` and one shared local Ray.

``kfp.local.SubprocessRunner(use_venv=False)`` runs each component in a subprocess of this
virtualenv (riskml is installed here; the components ask for no pip installs). One private Ray
head (dashboard on, free ports, see :mod:`riskml.orchestration.head`) serves every Ray task:
its address goes to the components through ``RISKML_RAY_ADDRESS`` (and ``RAY_AUTH_MODE=token``
when Ray's token auth is on), so each training task joins it in about a second instead of
starting its own Ray. ``RISKML_RAY_ADDRESS`` already set: that Ray is used and nothing starts.

kfp 2.17's local runner: retries, caching options and Kubernetes settings are compile-time
only (ignored locally); ``dsl.If`` works on a task's single ``Output`` parameter; pipeline
outputs come back as artifacts with local paths under ``pipeline_root``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from riskml.settings import get_settings


@contextmanager
def shared_ray(
    address: str | None = None, *, num_cpus: int | None = None, keep: bool = False
) -> Iterator[dict[str, Any]]:
    """Yield ``{"address", "dashboard_url", "head"}`` of the Ray the components will use.

    Starts a private head unless ``address`` / ``RISKML_RAY_ADDRESS`` names one; sets the
    environment the component subprocesses inherit; stops the head on exit unless ``keep``.
    """
    from riskml.orchestration.head import start_head
    from riskml.training.runtime import enable_token_auth_if_available

    address = address or get_settings().ray_address
    head = None
    saved = {k: os.environ.get(k) for k in ("RISKML_RAY_ADDRESS", "RAY_AUTH_MODE")}
    info: dict[str, Any]
    if address:
        info = {"address": address, "dashboard_url": None, "head": None}
    else:
        head = start_head(num_cpus=num_cpus or max(2, os.cpu_count() or 2), timeout_s=240)
        info = {"address": head.gcs_address, "dashboard_url": head.dashboard_url, "head": head}
    os.environ["RISKML_RAY_ADDRESS"] = str(info["address"])
    enable_token_auth_if_available()
    get_settings.cache_clear()
    try:
        yield info
    finally:
        # A driver of this process connected to the head would abort the whole process 60 s
        # after the head is gone (hiding any exception on its way out): disconnect first.
        ray_mod = sys.modules.get("ray")
        if head is not None and ray_mod is not None and ray_mod.is_initialized():
            ray_mod.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()
        if head is not None and not keep:
            head.stop()


def init_local(pipeline_root: Path | None = None) -> Path:
    """``kfp.local.init`` with the subprocess runner in this venv; returns the pipeline root."""
    from kfp import local

    # Known, harmless local-runner notices: our image name has no "python" in it, and display
    # names / retries / caching are cluster settings.
    warnings.filterwarnings("ignore", message="You may be attemping to run a task that uses")
    warnings.filterwarnings("ignore", message=r"Task '.*': settings \[.*\] have no effect")
    root = Path(pipeline_root or get_settings().home / "kfp").resolve()
    root.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root),
        raise_on_error=True,
    )
    return root


def run_local(
    pipeline: str = "training",
    *,
    size: str = "tiny",
    arguments: dict[str, Any] | None = None,
    pipeline_root: Path | None = None,
    ray_address: str | None = None,
    keep_ray: bool = False,
    announce: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run ``pipeline`` end to end locally; return where its results are. ``announce`` is
    called with the Ray info (address, dashboard URL) before the first task starts.

    Returns ``{"pipeline", "wall_s", "run_dir", "bundle", "registered", "report", "decision",
    "dashboard_url", "ray_address", "ray_kept"}``.
    """
    from pipelines.definitions import get_pipeline
    from riskml.data.sources import SIZES

    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    fn = get_pipeline(pipeline, "local")
    saved_home = os.environ.get("RISKML_HOME")
    # the component subprocesses inherit an absolute RISKML_HOME
    os.environ["RISKML_HOME"] = str(get_settings().home.resolve())
    get_settings.cache_clear()
    try:
        with shared_ray(ray_address, keep=keep_ray) as ray_info:
            if announce is not None:
                announce(ray_info)
            root = init_local(pipeline_root)
            before = set(root.iterdir())
            t0 = time.perf_counter()
            task = fn(size=size, **(arguments or {}))
            wall = time.perf_counter() - t0
    finally:
        if saved_home is None:
            os.environ.pop("RISKML_HOME", None)
        else:
            os.environ["RISKML_HOME"] = saved_home
        get_settings.cache_clear()
    runs = sorted(set(root.iterdir()) - before)
    registered = json.loads(Path(task.outputs["bundle"].path).read_text())
    return {
        "pipeline": pipeline,
        "wall_s": round(wall, 2),
        "run_dir": str(runs[-1]) if runs else str(root),
        "bundle": registered["path"],
        "registered": registered,
        "report": task.outputs["report"].path,
        "decision": task.outputs["decision"],
        "dashboard_url": ray_info["dashboard_url"],
        "ray_address": ray_info["address"],
        "ray_kept": bool(keep_ray and ray_info["head"] is not None),
    }
