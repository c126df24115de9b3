"""Run a Ray entrypoint in one of three modes and get its result dict back.

``run_ray_task("riskml.training.entrypoint", spec)`` (mode from ``RISKML_RAY_MODE``):

``local``   connect to ``RISKML_RAY_ADDRESS`` or start a local Ray (dashboard on) in this process,
            then call the entrypoint function in-process.
``jobs``    submit ``python -m riskml.orchestration.launch <entrypoint> --spec '<json>'`` to a
            running cluster through the Ray Jobs API (``RISKML_RAY_ADDRESS`` = its dashboard URL),
            stream the job's log, wait, and read the result from the log's last
            ``RISKML_RESULT {json}`` line. ``working_dir`` is uploaded only when given (the image
            or the cluster's environment already has riskml installed).
``rayjob``  build a KubeRay RayJob from ``k8s/base/training/rayjob.yaml`` (see
            :mod:`riskml.orchestration.rayjob`), create it, poll it to a terminal state, read the
            result line from the submitter pod's log, delete it.

Every mode returns the same shape::

    {"mode", "entrypoint", "job_id", "status", "dashboard_url", "wall_s", "result": {...}}

and raises :class:`RayTaskError` (with the job id, final status and the log's tail) when the job
fails or times out.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from riskml.orchestration.options import (
    LAUNCH_MODULE,
    MODES,
    TERMINAL_JOB_STATES,
    WORKING_DIR_EXCLUDES,
    LogSink,
    Mode,
    RayJobOptions,
    RayTaskError,
    RayTaskOptions,
    forwarded_env,
    launch_command,
)
from riskml.orchestration.protocol import (
    EntrypointError,
    dump_spec,
    normalize_result,
    parse_result,
    resolve_entrypoint,
    split_entrypoint,
)
from riskml.settings import get_settings
from riskml.training.runtime import auth_headers, enable_token_auth_if_available, ensure_ray

__all__ = [
    "LAUNCH_MODULE",
    "MODES",
    "TERMINAL_JOB_STATES",
    "WORKING_DIR_EXCLUDES",
    "LogSink",
    "Mode",
    "RayJobOptions",
    "RayTaskError",
    "RayTaskOptions",
    "auth_headers",
    "dashboard_url",
    "enable_token_auth_if_available",
    "launch_command",
    "local_ray",
    "run_ray_task",
]


def _default_sink(chunk: str) -> None:
    sys.stderr.write(chunk)
    sys.stderr.flush()


def run_ray_task(
    entrypoint_module: str,
    spec: Mapping[str, Any],
    mode: str | None = None,
    *,
    options: RayTaskOptions | None = None,
    on_log: LogSink | None = None,
) -> dict[str, Any]:
    """Run ``entrypoint_module`` (``"pkg.mod"`` or ``"pkg.mod:function"``) with ``spec``."""
    mode = mode or get_settings().ray_mode
    if mode not in MODES:
        raise ValueError(f"unknown Ray mode {mode!r}; choose from {', '.join(MODES)}")
    split_entrypoint(entrypoint_module)
    dump_spec(spec)  # fail early on a spec that cannot travel
    opts = options or RayTaskOptions()
    sink = on_log or _default_sink
    t0 = time.perf_counter()
    if mode == "local":
        out = _run_local(entrypoint_module, dict(spec), opts)
    elif mode == "jobs":
        out = _run_jobs(entrypoint_module, dict(spec), opts, sink)
    else:
        from riskml.orchestration.rayjob import run_rayjob

        out = run_rayjob(entrypoint_module, dict(spec), opts, sink)
    out["wall_s"] = round(time.perf_counter() - t0, 3)
    return out


# --- local ---------------------------------------------------------------------------------


def local_ray(
    address: str | None = None, *, include_dashboard: bool = True, num_cpus: int | None = None
) -> str | None:
    """Connect to ``address`` / ``RISKML_RAY_ADDRESS`` or start a local Ray, once per process
    (:func:`riskml.training.runtime.ensure_ray`); return the dashboard URL or None."""
    ensure_ray(address=address, include_dashboard=include_dashboard, num_cpus=num_cpus)
    return dashboard_url()


def dashboard_url() -> str | None:
    """The dashboard URL of the Ray this process is connected to (None without one)."""
    from ray._private.worker import get_dashboard_url

    try:
        url = get_dashboard_url()
    except Exception:  # not connected / no dashboard
        return None
    if not url:
        return None
    return url if "://" in url else f"http://{url}"


def _run_local(entrypoint: str, spec: dict[str, Any], opts: RayTaskOptions) -> dict[str, Any]:
    fn = resolve_entrypoint(entrypoint)
    url = local_ray(opts.address, include_dashboard=opts.include_dashboard, num_cpus=opts.num_cpus)
    if url:
        print(f"Ray dashboard: {url}", file=sys.stderr, flush=True)
    try:
        result = normalize_result(fn(spec))
    except EntrypointError:
        raise
    except Exception as exc:
        raise RayTaskError(f"entrypoint {entrypoint} failed: {exc!r}", status="FAILED") from exc
    return {
        "mode": "local",
        "entrypoint": entrypoint,
        "job_id": None,
        "status": "SUCCEEDED",
        "dashboard_url": url,
        "result": result,
    }


# --- jobs ----------------------------------------------------------------------------------


def jobs_address(address: str | None) -> str:
    addr = address or get_settings().ray_address
    if not addr:
        raise ValueError(
            "jobs mode needs the cluster's dashboard URL: set RISKML_RAY_ADDRESS "
            "(e.g. http://127.0.0.1:8265) or pass options.address"
        )
    if addr.startswith("ray://"):
        raise ValueError(
            f"jobs mode talks to the dashboard (http://host:8265), not a Ray client address: {addr}"
        )
    return addr if "://" in addr else f"http://{addr}"


def build_runtime_env(opts: RayTaskOptions) -> dict[str, Any]:
    env: dict[str, Any] = dict(opts.runtime_env)
    env_vars = {**forwarded_env(), **opts.env_vars}
    if env_vars:
        env["env_vars"] = {**env.get("env_vars", {}), **env_vars}
    if opts.working_dir is not None:
        wd = Path(opts.working_dir)
        if not wd.is_dir():
            raise ValueError(f"working_dir {wd} is not a directory")
        env["working_dir"] = str(wd.resolve())
        env["excludes"] = [*env.get("excludes", []), *WORKING_DIR_EXCLUDES]
    return env


def _submission_id(entrypoint: str) -> str:
    module, _ = split_entrypoint(entrypoint)
    stem = module.rsplit(".", 1)[-1].replace("_", "-")[:24]
    return f"riskml-{stem}-{uuid.uuid4().hex[:10]}"


def _run_jobs(
    entrypoint: str, spec: dict[str, Any], opts: RayTaskOptions, sink: LogSink
) -> dict[str, Any]:
    from ray.job_submission import JobSubmissionClient

    address = jobs_address(opts.address)
    headers = opts.headers if opts.headers is not None else auth_headers()
    client = JobSubmissionClient(address, headers=headers or None)
    job_id = client.submit_job(
        entrypoint=launch_command(entrypoint, spec, opts.python),
        submission_id=_submission_id(entrypoint),
        runtime_env=build_runtime_env(opts) or None,
        entrypoint_num_cpus=opts.entrypoint_num_cpus,
        metadata={"riskml.entrypoint": entrypoint},
    )
    print(f"Ray job {job_id} submitted to {address}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + opts.timeout_s
    if opts.stream_logs:
        try:
            asyncio.run(asyncio.wait_for(_tail(client, job_id, sink), opts.timeout_s))
        except TimeoutError:
            pass
        except Exception as exc:  # the log stream is best effort; status polling decides
            print(f"(log stream ended: {exc!r})", file=sys.stderr, flush=True)
    status = str(client.get_job_status(job_id))
    while status not in TERMINAL_JOB_STATES:
        if time.monotonic() > deadline:
            client.stop_job(job_id)
            raise RayTaskError(
                f"Ray job {job_id} did not finish within {opts.timeout_s:.0f} s (stopped)",
                job_id=job_id,
                status=status,
                log_tail=_tail_lines(client.get_job_logs(job_id)),
            )
        time.sleep(opts.poll_interval_s)
        status = str(client.get_job_status(job_id))
    logs = client.get_job_logs(job_id)
    if status != "SUCCEEDED":
        info = client.get_job_info(job_id)
        raise RayTaskError(
            f"Ray job {job_id} ended {status}: {info.message or ''}".rstrip(": "),
            job_id=job_id,
            status=status,
            log_tail=_tail_lines(logs),
        )
    result = parse_result(logs)
    if result is None:
        raise RayTaskError(
            f"Ray job {job_id} succeeded but printed no RISKML_RESULT line",
            job_id=job_id,
            status=status,
            log_tail=_tail_lines(logs),
        )
    return {
        "mode": "jobs",
        "entrypoint": entrypoint,
        "job_id": job_id,
        "status": status,
        "dashboard_url": address,
        "result": result,
    }


async def _tail(client: Any, job_id: str, sink: LogSink) -> None:
    async for chunk in client.tail_job_logs(job_id):
        sink(chunk)


def _tail_lines(text: str, n: int = 30) -> str:
    return "\n".join(text.splitlines()[-n:])
