"""Real local runs of the pipelines: kfp.local (subprocess runner, this venv), one private Ray
head, Feast on SQLite, MLflow embedded (SQLite store + its Model Registry) — tiny simulated data.

1. ``training`` on a fresh RISKML_HOME: no champion, so the gate says ``deploy`` and the deploy
   task (inside ``dsl.If``) moves the registry's ``champion`` alias to the new version.
2. ``retraining`` on a later window with an unreachable gate margin: the gate reads the champion
   from the registry and says ``keep``, the deploy task does not run and the champion stays.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from riskml.orchestration.head import RayHead
from tests.support.kfp_runs import FAST_CONFIG
from tests.support.kfp_runs import task_metrics as _metrics

pytestmark = [pytest.mark.kfp, pytest.mark.ray, pytest.mark.integration, pytest.mark.slow]


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
    from riskml.models.bundle import bundle_digest, load_bundle, verify_bundle
    from riskml.registry.store import champion, get

    home = trained["home"]
    _use_home(monkeypatch, home)
    assert trained["decision"] == "deploy"
    registered = trained["registered"]
    assert registered["model_uri"] == f"models:/fraud/{registered['version']}"
    bundle = Path(trained["bundle"])  # the verified copy fetched from the registry
    assert bundle.is_relative_to(home.resolve() / "model-cache")
    manifest = verify_bundle(bundle, digest=registered["digest"])
    assert bundle_digest(bundle) == registered["digest"]
    assert sorted(load_bundle(bundle).models) == ["sequence", "xgb"]
    assert manifest["version"] == registered["bundle_version"]
    assert registered["run_id"]
    challenger = get("fraud", "challenger")
    assert challenger is not None and challenger.version == registered["version"]
    assert (home / "mlflow.db").is_file()  # the embedded MLflow store under RISKML_HOME
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
    assert "<h2>Models compared</h2>" in report and "blend (served)" in report
    assert "data:image/png;base64," in report
    gate = _metrics(run_dir, "gate")
    assert gate["deploy"] == 1.0 and gate["champion"] == -1.0
    assert gate["challenger"] == pytest.approx(backtest["blend_average_precision"], abs=1e-9)
    assert gate["champion_version"] == ""  # compared against no champion
    assert (run_dir / "deploy").is_dir()  # the dsl.If branch ran
    current = champion()
    assert current is not None and current.version == registered["version"]


@pytest.mark.timeout(1800)
def test_retraining_keeps_the_champion_when_the_gate_says_so(
    trained: dict[str, Any], ray_head: RayHead, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.local import run_local
    from riskml.registry.store import champion, client

    _use_home(monkeypatch, trained["home"])
    before = champion()
    assert before is not None
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
    assert gate["champion_version"] == before.version  # read from the registry
    assert champion() == before  # unchanged
    # registered all the same, as a new version tagged with its gate decision
    versions = client().search_model_versions("name='fraud'")
    decisions = {str(v.version): v.tags.get("riskml.gate_decision") for v in versions}
    assert decisions == {before.version: "deploy", out["registered"]["version"]: "keep"}
