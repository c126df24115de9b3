"""Local Ray clusters riskml starts run their workers at normal priority (see
riskml.training.runtime.LOCAL_WORKER_NICENESS) and Serve with direct ingress, unless the user
chose otherwise."""

from __future__ import annotations

from riskml.training.runtime import (
    LOCAL_SERVE_ENV,
    LOCAL_TRAIN_ENV,
    LOCAL_WORKER_NICENESS,
    local_ray_env,
)


def test_local_workers_default_to_normal_priority_and_direct_ingress() -> None:
    env: dict[str, str] = {}
    local_ray_env(env)
    expected = {"RAY_worker_niceness": LOCAL_WORKER_NICENESS, **LOCAL_SERVE_ENV, **LOCAL_TRAIN_ENV}
    assert env == expected
    assert LOCAL_WORKER_NICENESS == "0" and env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"


def test_what_the_user_set_is_kept() -> None:
    env = {"RAY_worker_niceness": "10", "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0"}
    local_ray_env(env)
    assert env["RAY_worker_niceness"] == "10" and env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "0"
