"""Local Ray clusters riskml starts run their workers at normal priority (see
riskml.training.runtime.LOCAL_WORKER_NICENESS), unless the user chose otherwise."""

from __future__ import annotations

from riskml.training.runtime import LOCAL_WORKER_NICENESS, local_worker_priority


def test_local_workers_default_to_normal_priority() -> None:
    env: dict[str, str] = {}
    local_worker_priority(env)
    assert env == {"RAY_worker_niceness": LOCAL_WORKER_NICENESS} and LOCAL_WORKER_NICENESS == "0"


def test_a_niceness_the_user_set_is_kept() -> None:
    env = {"RAY_worker_niceness": "10"}
    local_worker_priority(env)
    assert env["RAY_worker_niceness"] == "10"
