"""The entrypoint contract, the launcher (a real subprocess), option and input checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from riskml.orchestration.protocol import (
    RESULT_MARKER,
    EntrypointError,
    dump_spec,
    format_result_line,
    normalize_result,
    parse_result,
    resolve_entrypoint,
    split_entrypoint,
)
from riskml.orchestration.ray_task import (
    RayTaskOptions,
    build_runtime_env,
    jobs_address,
    launch_command,
    run_ray_task,
)


def test_split_entrypoint_defaults_to_run() -> None:
    assert split_entrypoint("riskml.training.entrypoint") == ("riskml.training.entrypoint", "run")
    assert split_entrypoint("a.b:main") == ("a.b", "main")


@pytest.mark.parametrize("bad", ["", "a b", "a;rm -rf /", "1abc", "a.b:", "a:b:c", "a..b"])
def test_bad_entrypoint_names_are_rejected(bad: str) -> None:
    with pytest.raises(EntrypointError, match="bad entrypoint"):
        split_entrypoint(bad)


def test_resolve_entrypoint_errors_name_the_problem() -> None:
    with pytest.raises(EntrypointError, match="not found"):
        resolve_entrypoint("riskml.no_such_module")
    with pytest.raises(EntrypointError, match="has no function 'nope'"):
        resolve_entrypoint("riskml.orchestration.protocol:nope")


def test_spec_must_be_a_json_object() -> None:
    with pytest.raises(EntrypointError, match="mapping"):
        dump_spec([1, 2])  # type: ignore[arg-type]
    with pytest.raises(EntrypointError, match="JSON-serialisable"):
        dump_spec({"x": object()})
    with pytest.raises(EntrypointError, match="JSON-serialisable"):
        dump_spec({"x": float("nan")})


def test_result_roundtrip_and_last_marker_wins() -> None:
    line = format_result_line({"auc": 0.9, "path": "/tmp/m", "nested": {"k": [1, 2]}})
    assert line.startswith(RESULT_MARKER)
    log = "\n".join(
        [
            "noise",
            format_result_line({"old": 1}),
            "INFO worker.py -- mentions RISKML_RESULT but no json {",
            "(pid=12) " + line,  # Ray prefixes driver lines sometimes
            "trailing",
        ]
    )
    assert parse_result(log) == {"auc": 0.9, "path": "/tmp/m", "nested": {"k": [1, 2]}}
    assert parse_result("no marker here") is None
    with pytest.raises(EntrypointError, match="must return a dict"):
        normalize_result([1])


def test_launch_command_quotes_the_spec_for_the_shell() -> None:
    spec = {"name": "it's; $(whoami) `x`", "n": 1}
    cmd = launch_command("riskml.orchestration.protocol:normalize_result", spec)
    out = subprocess.run(
        ["bash", "-c", cmd.replace("python", sys.executable, 1)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert parse_result(out.stdout) == spec


def _launch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "riskml.orchestration.launch", *args],
        capture_output=True,
        text=True,
    )


def test_launcher_exit_codes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"a": [1, 2]}))
    ok = _launch("riskml.orchestration.protocol:normalize_result", "--spec-file", str(spec_file))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().splitlines()[-1] == RESULT_MARKER + '{"a":[1,2]}'

    usage = _launch("riskml.orchestration.protocol:normalize_result", "--spec", "[1]")
    assert usage.returncode == 2 and "JSON object" in usage.stderr

    missing = _launch("riskml.nope", "--spec", "{}")
    assert missing.returncode == 2 and "not found" in missing.stderr

    # the entrypoint raises -> exit 1, traceback on stderr, no result line
    failed = _launch("riskml.orchestration.protocol:load_spec", "--spec", "{}")
    assert failed.returncode == 1
    assert RESULT_MARKER not in failed.stdout and "Traceback" in failed.stderr


def test_run_ray_task_rejects_bad_input_before_touching_ray() -> None:
    with pytest.raises(ValueError, match="unknown Ray mode 'cloud'"):
        run_ray_task("riskml.orchestration.probe", {}, mode="cloud")
    with pytest.raises(EntrypointError):
        run_ray_task("not a module", {}, mode="local")
    with pytest.raises(EntrypointError, match="JSON"):
        run_ray_task("riskml.orchestration.probe", {"x": {1, 2}}, mode="jobs")


def test_jobs_address_needs_a_dashboard_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from riskml.settings import get_settings

    monkeypatch.delenv("RISKML_RAY_ADDRESS", raising=False)
    get_settings.cache_clear()
    with pytest.raises(ValueError, match="RISKML_RAY_ADDRESS"):
        jobs_address(None)
    with pytest.raises(ValueError, match="not a Ray client address"):
        jobs_address("ray://head:10001")
    assert jobs_address("10.0.0.1:8265") == "http://10.0.0.1:8265"
    monkeypatch.setenv("RISKML_RAY_ADDRESS", "https://ray.example:443")
    get_settings.cache_clear()
    assert jobs_address(None) == "https://ray.example:443"


def test_runtime_env_uploads_working_dir_only_when_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert build_runtime_env(RayTaskOptions()) == {}
    # where shared state lives travels with the job; the home and secrets do not
    monkeypatch.setenv("RISKML_STORAGE_URI", "s3://bucket/ray")
    monkeypatch.setenv("RISKML_REDIS_PASSWORD", "secret")
    assert build_runtime_env(RayTaskOptions()) == {
        "env_vars": {"RISKML_STORAGE_URI": "s3://bucket/ray"}
    }
    monkeypatch.delenv("RISKML_STORAGE_URI")
    env = build_runtime_env(RayTaskOptions(working_dir=tmp_path, env_vars={"A": "1"}))
    assert env["working_dir"] == str(tmp_path.resolve())
    assert ".venv" in env["excludes"] and env["env_vars"] == {"A": "1"}
    with pytest.raises(ValueError, match="not a directory"):
        build_runtime_env(RayTaskOptions(working_dir=tmp_path / "missing"))
    with pytest.raises(ValueError):
        RayTaskOptions(unknown=1)  # type: ignore[call-arg]


def test_image_tag_matches_installed_ray_and_overlays() -> None:
    import ray
    import yaml

    from riskml.orchestration.images import IMAGE, IMAGE_TAG, RAY_VERSION, image_repository
    from riskml.settings import REPO_ROOT

    assert ray.__version__ == RAY_VERSION
    assert f"riskml:{IMAGE_TAG}" == IMAGE
    for overlay in ("staging", "prod"):
        kust = yaml.safe_load(
            (REPO_ROOT / "k8s" / "overlays" / overlay / "kustomization.yaml").read_text()
        )
        tags = {i["name"]: i.get("newTag") for i in kust.get("images", [])}
        assert tags.get("riskml") == IMAGE_TAG, overlay
    assert image_repository("reg:5000/team/riskml:1.2@sha256:ab") == "reg:5000/team/riskml"
    assert image_repository("riskml") == "riskml"


def test_finite_metrics_drops_what_kfp_metadata_cannot_hold() -> None:
    from riskml.metrics import finite_metrics

    got = finite_metrics(
        {"auc": 0.9, "n": 3, "thr": float("inf"), "share": float("nan"), "ok": True, "s": "x"},
        "blend_",
    )
    assert got == {"blend_auc": 0.9, "blend_n": 3.0}


def test_roc_points_are_finite_and_thinned() -> None:
    import math

    import numpy as np

    from riskml.evaluation.report import roc_points

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    score = rng.random(5000)
    roc = roc_points(y, score, max_points=50)
    assert 2 <= len(roc["fpr"]) <= 50
    assert all(math.isfinite(t) for t in roc["thresholds"])
    assert roc["fpr"][0] == 0.0 and roc["tpr"][-1] == 1.0
