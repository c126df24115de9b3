"""Real local runs of the pipelines: kfp.local (subprocess runner, this venv), one private Ray
head, Feast on SQLite, MLflow on a file store — tiny simulated data.

1. ``training`` on a fresh RISKML_HOME: no champion, so the gate says ``deploy`` and the deploy
   task (inside ``dsl.If``) makes the bundle the champion.
2. ``retraining`` on a later window with an unreachable gate margin: the gate says ``keep``,
   the deploy task does not run and the champion stays.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from riskml.orchestration.head import RayHead

pytestmark = [pytest.mark.kfp, pytest.mark.ray, pytest.mark.integration, pytest.mark.slow]

FAST_CONFIG = {
    "split": {"label_maturity_days": 10},
    "xgb": {"num_boost_round": 60, "early_stopping_rounds": 10},
    "sequence": {"epochs": 1, "hidden": 16, "tab_hidden": 32},
    "ray": {"num_workers": 1},
}


def _executor_output(run_dir: Path, task: str) -> dict[str, Any]:
    return json.loads((run_dir / task / "executor_output.json").read_text())


def _metrics(run_dir: Path, task: str, name: str = "metrics") -> dict[str, Any]:
    artifacts = _executor_output(run_dir, task)["artifacts"][name]["artifacts"]
    return dict(artifacts[0]["metadata"])


@pytest.fixture(scope="module")
def trained(
    ray_head: RayHead, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """One real run of the training pipeline on a fresh RISKML_HOME (shared by the tests)."""
    from pipelines.local import run_local
    from riskml.settings import get_settings

    home = tmp_path_factory.mktemp("pipeline-home")
    saved = os.environ.get("RISKML_HOME")
    os.environ["RISKML_HOME"] = str(home)
    get_settings.cache_clear()
    try:
        result = run_local(
            "training",
            size="tiny",
            arguments={
                "tune_samples": 1,
                "tune_budget_s": 120.0,
                "train_config_json": json.dumps(FAST_CONFIG),
            },
            ray_address=ray_head.gcs_address,
        )
        yield {**result, "home": home}
    finally:
        if saved is None:
            os.environ.pop("RISKML_HOME", None)
        else:
            os.environ["RISKML_HOME"] = saved
        get_settings.cache_clear()


def _use_home(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    from riskml.settings import get_settings

    monkeypatch.setenv("RISKML_HOME", str(home))
    get_settings.cache_clear()


@pytest.mark.timeout(1800)
def test_training_pipeline_runs_end_to_end(
    trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from riskml.models.bundle import load_bundle, verify_bundle
    from riskml.registry.local import champion

    home = trained["home"]
    _use_home(monkeypatch, home)
    assert trained["decision"] == "deploy"
    bundle = Path(trained["bundle"])
    assert bundle.is_relative_to(home.resolve() / "models" / "registry")
    manifest = verify_bundle(bundle)
    assert sorted(load_bundle(bundle).models) == ["sequence", "xgb"]
    assert manifest["version"] == trained["registered"]["version"]
    assert trained["registered"]["mlflow_run_id"]
    assert (home / "mlruns").is_dir()
    assert trained["dashboard_url"] is None  # it used the given Ray, started none

    run_dir = Path(trained["run_dir"])
    backtest = _metrics(run_dir, "backtest")
    assert 0.5 < backtest["blend_roc_auc"] <= 1.0
    assert 0.0 < backtest["blend_average_precision"] <= 1.0
    roc = _metrics(run_dir, "backtest", "roc")
    assert roc["confusionMatrix"]["annotationSpecs"] == [
        {"displayName": "genuine"},
        {"displayName": "fraud"},
    ]
    assert len(roc["confidenceMetrics"]) >= 2
    report = Path(trained["report"]).read_text()
    assert "<h2>blend</h2>" in report and "data:image/png;base64," in report
    gate = _metrics(run_dir, "gate")
    assert gate["deploy"] == 1.0 and gate["champion"] == -1.0
    assert gate["challenger"] == pytest.approx(backtest["blend_average_precision"], abs=1e-9)
    assert (run_dir / "deploy").is_dir()  # the dsl.If branch ran
    champion = champion()
    assert champion is not None and Path(champion["path"]) == bundle


@pytest.mark.timeout(1800)
def test_retraining_keeps_the_champion_when_the_gate_says_so(
    trained: dict[str, Any], ray_head: RayHead, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.local import run_local
    from riskml.models.bundle import verify_bundle
    from riskml.registry.local import champion

    _use_home(monkeypatch, trained["home"])
    champion = champion()
    assert champion is not None
    out = run_local(
        "retraining",
        size="tiny",
        arguments={"seed": 11, "train_config_json": json.dumps(FAST_CONFIG), "gate_margin": 1.0},
        ray_address=ray_head.gcs_address,
    )
    assert out["decision"] == "keep"
    run_dir = Path(out["run_dir"])
    assert not (run_dir / "deploy").exists()  # dsl.If skipped it
    gate = _metrics(run_dir, "gate")
    assert gate["deploy"] == 0.0 and gate["champion"] > 0
    assert champion() == champion  # unchanged
    verify_bundle(out["bundle"])  # registered all the same, with its decision
    index = json.loads((Path(out["bundle"]).parent / "index.json").read_text())
    assert [e["decision"] for e in index] == ["deploy", "keep"]
