"""``riskml demo`` / ``python -m pipelines`` argument checks (no pipeline run here; the real
runs are in test_local_run.py)."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from riskml.cli import app


def test_demo_is_registered_and_rejects_bad_sizes() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["demo", "--help"])
    assert result.exit_code == 0 and "--keep-ray" in result.output
    bad = runner.invoke(app, ["demo", "--size", "huge"])
    assert bad.exit_code == 2 and "tiny, demo" in bad.output
    bad = runner.invoke(app, ["demo", "--pipeline", "scoring"])
    assert bad.exit_code == 2


def test_importing_the_cli_stays_light() -> None:
    code = (
        "import sys, riskml.cli, riskml.demo, riskml.orchestration.ray_task, "
        "riskml.orchestration.rayjob, riskml.orchestration.deploy, riskml.registry.gate, "
        "riskml.registry.local, riskml.training.tasks, riskml.training.dataset, "
        "riskml.evaluation.holdout, riskml.data.sources\n"
        "heavy = {'polars', 'ray', 'torch', 'feast', 'kfp', 'kubernetes', 'xgboost', 'pandas'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_run_local_cli_rejects_bad_input() -> None:
    for args, hint in (
        (["--pipeline", "nope"], "--pipeline"),
        (["--size", "huge"], "--size"),
        (["--param", "novalue"], "--param"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "pipelines", "run-local", *args],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 2, args
        assert hint in out.stderr, (args, out.stderr)
