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
import logging
import os
import re
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from riskml.settings import get_settings, home_at


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


@contextmanager
def fresh_task_homes(scratch: Path) -> Iterator[Path]:
    """While active, every kfp.local task runs in a new, empty ``RISKML_HOME`` under ``scratch``
    that is deleted when the task ends — as every pod of a cluster run starts empty. A task that
    relies on anything but its kfp inputs and the cluster's services then fails here, not on
    the cluster. Yields the file that lists the homes made (one line per task).

    kfp.local's ``SubprocessRunner(use_venv=False)`` starts each task with this interpreter
    (``sys.executable``): for the duration it is a small wrapper that makes the home, runs the
    real interpreter in it and removes it."""
    import shlex
    import stat

    scratch = Path(scratch).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    homes_log = scratch / "task-homes.log"
    wrapper = scratch / "task-python"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"home=$(mktemp -d {shlex.quote(str(scratch))}/home.XXXXXX)\n"
        f'echo "$home" >> {shlex.quote(str(homes_log))}\n'
        f'RISKML_HOME="$home" {shlex.quote(sys.executable)} "$@"\n'
        "rc=$?\n"
        'rm -rf "$home"\n'
        "exit $rc\n"
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    real = sys.executable
    sys.executable = str(wrapper)
    try:
        yield homes_log
    finally:
        sys.executable = real


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
    on_task: TaskCallback | None = None,
    task_homes: Path | None = None,
) -> dict[str, Any]:
    """Run ``pipeline`` end to end locally; return where its results are. ``announce`` is
    called with the Ray info (address, dashboard URL) before the first task starts; ``on_task``
    with each task's progress (see :class:`TaskEvents`). ``task_homes``: run every task in a
    fresh, empty home under that folder, deleted when the task ends (:func:`fresh_task_homes`).

    Returns ``{"pipeline", "wall_s", "run_dir", "bundle", "model_uri", "registered", "report",
    "decision", "dashboard_url", "ray_address", "ray_kept"}`` (``bundle``: a verified copy of the
    registered version, fetched from the registry; None for a pipeline without outputs, e.g.
    ``monitoring``, whose tasks' outputs are read from ``run_dir`` with :func:`task_outputs`).
    """
    from pipelines.definitions import get_pipeline
    from riskml.data.sources import SIZES

    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    fn = get_pipeline(pipeline, "local")
    # the component subprocesses inherit an absolute RISKML_HOME
    with home_at(get_settings().home), shared_ray(ray_address, keep=keep_ray) as ray_info:
        if announce is not None:
            announce(ray_info)
        root = init_local(pipeline_root)
        before = set(root.iterdir())
        events = TaskEvents(on_task, lambda: _new_run(root, before)) if on_task else None
        if events is not None:
            logging.getLogger().addFilter(events)
        t0 = time.perf_counter()
        isolate = fresh_task_homes(task_homes) if task_homes else nullcontext()
        try:
            with isolate:
                task = fn(size=size, **(arguments or {}))
        except BaseException:
            if events is not None:
                events.failed()
            raise
        finally:
            if events is not None:
                logging.getLogger().removeFilter(events)
        wall = time.perf_counter() - t0
    run_dir = _new_run(root, before)
    result: dict[str, Any] = {
        "pipeline": pipeline,
        "wall_s": round(wall, 2),
        "run_dir": str(run_dir or root),
        "bundle": None,
        "model_uri": None,
        "registered": None,
        "report": None,
        "decision": None,
        "dashboard_url": ray_info["dashboard_url"],
        "ray_address": ray_info["address"],
        "ray_kept": bool(keep_ray and ray_info["head"] is not None),
    }
    outputs = (getattr(task, "outputs", None) or {}) if task is not None else {}
    if "bundle" not in outputs:  # monitoring: what ran is in run_dir (task_outputs)
        return result
    registered = json.loads(Path(outputs["bundle"].path).read_text())
    from riskml.registry.store import ModelRef, fetch

    ref = ModelRef.from_record(registered)
    return {
        **result,
        "bundle": str(fetch(ref)),  # a verified copy from the registry
        "model_uri": ref.model_uri,
        "registered": registered,
        "report": outputs["report"].path,
        "decision": outputs["decision"],
    }


#: ``on_task(task, state, outputs)``: state ``running`` | ``done`` | ``failed``; ``outputs`` are
#: :func:`task_outputs` of a ``done`` task (empty otherwise).
TaskCallback = Callable[[str, str, dict[str, Any]], None]


class TaskEvents(logging.Filter):
    """kfp.local's own task log records as ``on_task`` calls.

    A filter on the root logger: kfp.local swaps the root logger's handlers while it runs, but
    not its filters. A task kfp.local retries is ``failed`` and then ``running`` again. An
    exception in ``on_task`` is printed (to stderr) and never stops the run."""

    START = re.compile(r"Executing task '([^']+)'")
    END = re.compile(r"Task '([^']+)' finished with status (\w+)")
    ANSI = re.compile(r"\x1b\[[0-9;]*m")

    def __init__(self, on_task: TaskCallback, run_dir: Callable[[], Path | None]) -> None:
        super().__init__()
        self.on_task = on_task
        self.run_dir = run_dir
        self.running: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = self.ANSI.sub("", str(record.getMessage()))
            if m := self.START.search(msg):
                self.running = m.group(1)
                self.on_task(m.group(1), "running", {})
            elif m := self.END.search(msg):
                self.running = None
                ok = m.group(2) == "SUCCESS"
                run_dir = self.run_dir() if ok else None
                outputs = task_outputs(run_dir, m.group(1)) if run_dir else {}
                self.on_task(m.group(1), "done" if ok else "failed", outputs)
        except Exception:  # a progress display never breaks the pipeline
            traceback.print_exc()
        return True

    def failed(self) -> None:
        """The run raised: the task that was running failed (kfp.local raises before it logs)."""
        if self.running is not None:
            with_name, self.running = self.running, None
            try:
                self.on_task(with_name, "failed", {})
            except Exception:
                traceback.print_exc()


def task_outputs(run_dir: Path, task: str) -> dict[str, Any]:
    """What a finished task of a kfp.local run wrote: ``{"parameters": {name: value},
    "artifacts": {name: metadata}}`` (from ``<run_dir>/<task>/executor_output.json``)."""
    path = Path(run_dir) / task / "executor_output.json"
    if not path.is_file():
        return {"parameters": {}, "artifacts": {}}
    data = json.loads(path.read_text())
    artifacts = {
        name: dict(value["artifacts"][0].get("metadata") or {}) if value.get("artifacts") else {}
        for name, value in (data.get("artifacts") or {}).items()
    }
    return {"parameters": dict(data.get("parameterValues") or {}), "artifacts": artifacts}


def pipeline_tasks(pipeline: str = "training") -> list[str]:
    """The local pipeline's tasks in an order kfp.local may run them (among independent tasks
    its order varies from run to run); the tasks inside a ``dsl.If`` stand where the condition
    does (they run only when it holds)."""
    from kfp.local import graph_utils

    from pipelines.definitions import get_pipeline

    fn: Any = get_pipeline(pipeline, "local")  # a kfp GraphComponent
    spec = fn.pipeline_spec
    components = spec.components

    def walk(dag: Any) -> list[str]:
        out: list[str] = []
        # kfp.local pops its topologically sorted stack from the right
        for name in reversed(graph_utils.topological_sort_tasks(dag.tasks)):
            ref = dag.tasks[name].component_ref.name
            inner = components.get(ref, None)
            if inner is not None and inner.WhichOneof("implementation") == "dag":
                out += walk(inner.dag)
            else:
                out.append(name)
        return out

    return walk(spec.root.dag)


def _new_run(root: Path, before: set[Path]) -> Path | None:
    """The run folder kfp.local made under ``root`` (the newest one not in ``before``)."""
    runs = sorted(set(root.iterdir()) - before)
    return runs[-1] if runs else None
