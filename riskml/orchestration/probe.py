"""A tiny built-in Ray entrypoint: checks that a cluster runs riskml code end to end.

``run_ray_task("riskml.orchestration.probe", {"tasks": 4})`` runs ``tasks`` Ray remote tasks
(each squares its index in a worker process) and returns the Ray version, the cluster's CPUs,
the squares, the worker PIDs, and the spec's ``echo`` value unchanged. ``{"fail": "message"}``
makes it raise (to check error propagation).
"""

from __future__ import annotations

import os
from typing import Any


def _square(i: int) -> tuple[int, int]:
    return i * i, os.getpid()


def run(spec: dict[str, Any]) -> dict[str, Any]:
    import ray

    if spec.get("fail"):
        raise RuntimeError(f"probe asked to fail: {spec['fail']}")
    tasks = int(spec.get("tasks", 2))
    if not 0 <= tasks <= 1000:
        raise ValueError(f"tasks must be in 0..1000, got {tasks}")
    from riskml.training.runtime import ensure_ray

    ensure_ray(log_to_driver=False)
    remote = ray.remote(num_cpus=0.1)(_square)
    out = ray.get([remote.remote(i) for i in range(tasks)])
    return {
        "ray_version": ray.__version__,
        "cluster_cpus": float(ray.cluster_resources().get("CPU", 0.0)),
        "squares": [value for value, _ in out],
        "worker_pids": sorted({pid for _, pid in out}),
        "driver_pid": os.getpid(),
        "echo": spec.get("echo"),
    }
