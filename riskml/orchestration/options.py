"""Options, errors and the launch command shared by every mode of
:func:`riskml.orchestration.ray_task.run_ray_task` (and by :mod:`riskml.orchestration.rayjob`,
which imports them from here, not from ``ray_task``: the two modules do not import each other).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from riskml.orchestration.protocol import dump_spec, split_entrypoint
from riskml.settings import REPO_ROOT

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


#: Settings a job on a remote Ray cluster gets from the task that submits it: where the shared
#: state lives. Not the home (the cluster's own scratch), not the Ray address, never a secret
#: (the cluster's pods read theirs from their own Secrets).
FORWARDED_SETTINGS = (
    "RISKML_STORAGE_URI",
    "RISKML_MLFLOW_TRACKING_URI",
    "RISKML_MLFLOW_REGISTRY_URI",
    "RISKML_SEED",
)


def forwarded_env() -> dict[str, str]:
    """The :data:`FORWARDED_SETTINGS` set in this process's environment."""
    return {k: os.environ[k] for k in FORWARDED_SETTINGS if os.environ.get(k)}
