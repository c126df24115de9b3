"""``jobs`` and ``local`` modes for real, against a private Ray head this session starts."""

from __future__ import annotations

import os
import subprocess
import sys
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


#: A driver as Ray's job drivers and riskml's tasks connect (token mode once a token is found),
#: creating one actor.
_ACTOR_DRIVER = """
import sys, ray
from riskml.training.runtime import ensure_ray
ensure_ray(address=sys.argv[1])
@ray.remote(num_cpus=1)
class Probe:
    def answer(self):
        return 42
print("answer", ray.get(Probe.remote().answer.remote(), timeout=90))
"""


@pytest.mark.timeout(300)
def test_a_head_started_before_any_token_existed_runs_a_token_client_s_actors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a machine where no Ray had written ``~/.ray/auth_token`` yet: a head starts, then
    another process's ``ray.init()`` writes the token (it did, mid-suite, at the first local
    Ray). A client that then finds the token connects in token mode; the head must be in the
    same mode, or every actor the client creates is cancelled before it runs (what failed
    Ray Train and Tune on the suite's shared head)."""
    from riskml.orchestration.head import ray_head

    home = tmp_path / "home"  # a machine's HOME with no ~/.ray yet
    home.mkdir()
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        # as on a fresh machine (a local ray.init() earlier in this process set the mode)
        monkeypatch.delenv(key, raising=False)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["HOME"] = str(home)
    with ray_head(num_cpus=1, include_dashboard=False, env={"HOME": str(home)}) as head:
        token = home / ".ray" / "auth_token"
        if not token.exists():  # what a local ray.init() elsewhere does when there is none
            token.parent.mkdir(exist_ok=True)
            token.write_text("0" * 64)
        driver = subprocess.run(
            [sys.executable, "-c", _ACTOR_DRIVER, head.gcs_address],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert driver.returncode == 0, driver.stdout[-2000:] + driver.stderr[-4000:]
    assert "answer 42" in driver.stdout
    assert oct(token.stat().st_mode & 0o777) == "0o600"  # the head's own token, not the stand-in
