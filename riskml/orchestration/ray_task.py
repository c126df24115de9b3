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
import contextlib
import os
import shlex
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from riskml.orchestration.protocol import (
    EntrypointError,
    dump_spec,
    normalize_result,
    parse_result,
    resolve_entrypoint,
    split_entrypoint,
)
from riskml.settings import REPO_ROOT, get_settings

Mode = Literal["local", "jobs", "rayjob"]
MODES: tuple[str, ...] = ("local", "jobs", "rayjob")
TERMINAL_JOB_STATES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
LAUNCH_MODULE = "riskml.orchestration.launch"
#: Never uploaded with a working_dir.
WORKING_DIR_EXCLUDES = [".git", ".venv", ".riskml", "out", "**/__pycache__", "*.egg-info"]


class RayTaskError(RuntimeError):
    """A Ray job failed, was stopped, timed out, or printed no result line."""

    def __init__(
        self,
        message: str,
        *,
        job_id: str | None = None,
        status: str | None = None,
        log_tail: str = "",
    ) -> None:
        detail = f"\n--- last log lines ---\n{log_tail}" if log_tail else ""
        super().__init__(f"{message}{detail}")
        self.job_id = job_id
        self.status = status
        self.log_tail = log_tail


class RayJobOptions(BaseModel):
    """KubeRay RayJob settings (``rayjob`` mode)."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(default="riskml-training", min_length=1)
    template: Path | Literal["cluster"] = Field(
        default=REPO_ROOT / "k8s" / "base" / "training" / "rayjob.yaml",
        description="RayJob template: a YAML file, or 'cluster' to read the applied (suspended, "
        "overlay-rendered) template object from the namespace.",
    )
    template_name: str = Field(default="riskml-train", description="Template object name.")
    image: str | None = Field(
        default=None,
        description="Image for every container (untagged 'riskml' in the file template). "
        "Default: keep the template's images.",
    )
    gpu_workers: int | None = Field(
        default=None, ge=0, description="Replicas of the 'gpu' worker group (None: as templated)."
    )
    name_prefix: str = Field(default="riskml-train", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    keep: bool = Field(default=False, description="Do not delete the RayJob when done.")
    validate_schema: bool = Field(
        default=True, description="Validate the built RayJob against the KubeRay CRD first."
    )
    submitter_container: str = "ray-job-submitter"
    in_cluster: bool | None = Field(
        default=None,
        description="kube config: in-cluster (True), ~/.kube/config (False), auto (None).",
    )


class RayTaskOptions(BaseModel):
    """How :func:`run_ray_task` runs; every field has a working default."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(
        default=None,
        description="local: Ray address; jobs: dashboard URL. Default: RISKML_RAY_ADDRESS.",
    )
    include_dashboard: bool = Field(default=True, description="local: start Ray's dashboard.")
    num_cpus: int | None = Field(default=None, ge=1, description="local: CPUs of a new Ray.")
    working_dir: Path | None = Field(
        default=None, description="jobs: upload this directory as the job's working_dir."
    )
    runtime_env: dict[str, Any] = Field(default_factory=dict, description="jobs: extra env.")
    env_vars: dict[str, str] = Field(default_factory=dict, description="jobs/rayjob: env vars.")
    python: str = Field(default="python", description="Interpreter on the cluster.")
    entrypoint_num_cpus: float | None = Field(default=None, ge=0)
    timeout_s: float = Field(default=6 * 3600, gt=0)
    poll_interval_s: float = Field(default=1.0, gt=0)
    stream_logs: bool = Field(default=True, description="Print the job's log as it arrives.")
    headers: dict[str, str] | None = Field(
        default=None,
        description="jobs: HTTP headers for the dashboard. Default: a Ray auth token as "
        "'Authorization: Bearer' when one is found (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, "
        "~/.ray/auth_token) unless RAY_AUTH_MODE=disabled.",
    )
    rayjob: RayJobOptions = Field(default_factory=RayJobOptions)


LogSink = Callable[[str], None]


def _default_sink(chunk: str) -> None:
    sys.stderr.write(chunk)
    sys.stderr.flush()


def launch_command(entrypoint: str, spec: Mapping[str, Any], python: str = "python") -> str:
    """The shell command a Ray job / RayJob runs for ``entrypoint`` with ``spec``."""
    split_entrypoint(entrypoint)
    return " ".join(
        [
            shlex.quote(python),
            "-m",
            LAUNCH_MODULE,
            shlex.quote(entrypoint),
            "--spec",
            shlex.quote(dump_spec(spec)),
        ]
    )


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
    """Connect to ``address`` / ``RISKML_RAY_ADDRESS`` or start a local Ray, once per process.

    Returns the dashboard URL (``http://host:port``) or None when there is no dashboard.
    """
    import ray

    if not ray.is_initialized():
        addr = address or get_settings().ray_address
        kwargs: dict[str, Any] = {"log_to_driver": True}
        if addr:
            enable_token_auth_if_available()
            kwargs["address"] = addr
        else:
            kwargs["include_dashboard"] = include_dashboard
            if num_cpus is not None:
                kwargs["num_cpus"] = num_cpus
        ray.init(**kwargs)
    return dashboard_url()


def enable_token_auth_if_available() -> bool:
    """Turn on Ray token auth in this process (and its children) when a token is available.

    ``ray.init(address=...)`` with an explicit address never does this by itself (Ray 2.60), so
    connecting to a token-protected cluster (the default for clusters Ray starts) would fail.
    Sets ``RAY_AUTH_MODE=token`` only when the variable is unset and a token is found.
    """
    if os.environ.get("RAY_AUTH_MODE"):
        return os.environ["RAY_AUTH_MODE"].lower() == "token"
    if not auth_headers():
        return False
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # pragma: no cover - older/newer Ray: the variable is enough
        os.environ["RAY_AUTH_MODE"] = "token"
        return True
    return bool(maybe_enable_token_auth_if_token_available(warn_if_disabled=False))


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
    if opts.env_vars:
        env["env_vars"] = {**env.get("env_vars", {}), **opts.env_vars}
    if opts.working_dir is not None:
        wd = Path(opts.working_dir)
        if not wd.is_dir():
            raise ValueError(f"working_dir {wd} is not a directory")
        env["working_dir"] = str(wd.resolve())
        env["excludes"] = [*env.get("excludes", []), *WORKING_DIR_EXCLUDES]
    return env


def auth_headers() -> dict[str, str]:
    """Ray token auth (on by default for clusters Ray >= 2.5x starts) for the Jobs API client."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return {}
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
        with contextlib.suppress(OSError):
            token = path.read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


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
