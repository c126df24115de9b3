"""``jobs`` and ``local`` modes for real, against a private Ray head this session starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from riskml.orchestration.head import RayHead
from riskml.orchestration.ray_task import RayTaskError, RayTaskOptions, run_ray_task

pytestmark = [pytest.mark.ray, pytest.mark.integration, pytest.mark.slow]


def _opts(head: RayHead, **kw: object) -> RayTaskOptions:
    return RayTaskOptions(address=head.dashboard_url, timeout_s=240, poll_interval_s=0.5, **kw)


def test_jobs_mode_runs_the_probe_and_returns_its_result(ray_head: RayHead) -> None:
    chunks: list[str] = []
    out = run_ray_task(
        "riskml.orchestration.probe",
        {"tasks": 3, "echo": {"k": [1, "two"]}},
        mode="jobs",
        options=_opts(ray_head, env_vars={"RISKML_SEED": "11"}),
        on_log=chunks.append,
    )
    assert out["mode"] == "jobs" and out["status"] == "SUCCEEDED"
    assert out["job_id"].startswith("riskml-probe-")
    assert out["dashboard_url"] == ray_head.dashboard_url
    result = out["result"]
    assert result["squares"] == [0, 1, 4]
    assert result["echo"] == {"k": [1, "two"]}
    assert result["cluster_cpus"] == 1.0
    assert result["driver_pid"] != os.getpid()  # ran in the job's driver, not here
    assert "RISKML_RESULT" in "".join(chunks)  # the log was streamed


def test_jobs_mode_failure_raises_with_status_and_log(ray_head: RayHead) -> None:
    with pytest.raises(RayTaskError, match="ended FAILED") as info:
        run_ray_task(
            "riskml.orchestration.probe",
            {"fail": "boom-42"},
            mode="jobs",
            options=_opts(ray_head, stream_logs=False),
        )
    assert info.value.status == "FAILED"
    assert "boom-42" in info.value.log_tail


def test_jobs_mode_uploads_a_working_dir_when_given(ray_head: RayHead, tmp_path: Path) -> None:
    pkg = tmp_path / "code"
    pkg.mkdir()
    (pkg / "my_entry.py").write_text(
        "import os\n"
        "def main(spec):\n"
        "    return {'doubled': spec['x'] * 2, 'cwd_has_me': os.path.exists('my_entry.py'),\n"
        "            'env': os.environ.get('PROBE_FLAG')}\n"
    )
    out = run_ray_task(
        "my_entry:main",
        {"x": 21},
        mode="jobs",
        options=_opts(ray_head, working_dir=pkg, env_vars={"PROBE_FLAG": "on"}, stream_logs=False),
    )
    assert out["result"] == {"doubled": 42, "cwd_has_me": True, "env": "on"}


def test_local_mode_connects_to_the_address_and_runs_in_process(ray_head: RayHead) -> None:
    import ray

    auth_mode = os.environ.get("RAY_AUTH_MODE")
    try:
        out = run_ray_task(
            "riskml.orchestration.probe",
            {"tasks": 2},
            mode="local",
            options=RayTaskOptions(address=ray_head.gcs_address),
        )
        assert out["mode"] == "local" and out["job_id"] is None
        assert out["result"]["driver_pid"] == os.getpid()  # in-process
        assert out["result"]["squares"] == [0, 1]
        assert out["dashboard_url"] is not None
        assert out["dashboard_url"].rsplit(":", 1)[1] == ray_head.dashboard_url.rsplit(":", 1)[1]
        with pytest.raises(RayTaskError, match="probe asked to fail"):
            run_ray_task(
                "riskml.orchestration.probe",
                {"fail": "x"},
                mode="local",
                options=RayTaskOptions(address=ray_head.gcs_address),
            )
    finally:
        ray.shutdown()
        if auth_mode is None:  # local_ray turned token auth on for this process
            os.environ.pop("RAY_AUTH_MODE", None)
