"""Real local runs of the pipelines: kfp.local (subprocess runner, this venv), one private Ray
head, Feast on SQLite, MLflow embedded (SQLite store + its Model Registry) — tiny simulated data.

1. ``training`` on a fresh RISKML_HOME: no champion, so the gate says ``deploy`` and the deploy
   task (inside ``dsl.If``) moves the registry's ``champion`` alias to the new version.
2. ``retraining`` on a later window with an unreachable gate margin: the gate reads the champion
   from the registry and says ``keep``, the deploy task does not run and the champion stays.
3. ``monitoring`` on a decision log of a world with drift injected: the alarm holds, the check is
   recorded in MLflow with its reason, the retraining branch runs and the gate decides.
"""

from __future__ import annotations

import datetime as dt
import json
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
    from riskml.settings import home_at

    home = tmp_path_factory.mktemp("pipeline-home")
    with home_at(home):
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


#: The drift the monitoring run's world carries from its day 30 (of 42): genuine amounts up by
#: half a standard deviation of log(amount), and a card-not-present fraud pattern never seen.
DRIFT = ("amount_shift@day=30,sd=0.5", "new_pattern@day=30")


@pytest.mark.timeout(1800)
def test_monitoring_drift_alarm_triggers_retraining_and_the_gate_decides(
    trained: dict[str, Any],
    ray_head: RayHead,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Injected drift -> the monitor's alarm holds -> the retraining branch runs on the data
    window ending at the check -> the gate decides; the check is recorded with its reason."""
    from pipelines.local import run_local, task_outputs
    from riskml.evaluation.monitoring import drifted_log
    from riskml.registry.store import champion, client
    from riskml.registry.triggers import checks

    _use_home(monkeypatch, trained["home"])
    before = champion()
    assert before is not None
    log = drifted_log(tmp_path / "world", Path(trained["bundle"]), drift=DRIFT, log_days=7)
    assert log["decisions"] > 5_000 and log["labels"] > 0
    out = run_local(
        "monitoring",
        size="tiny",
        arguments={
            "log_uri": log["log"],
            "at": log["end"],
            "lookback_days": 7.0,
            "drift": ";".join(DRIFT),
            "train_config_json": json.dumps(FAST_CONFIG),
            "gate_margin": 0.0,
        },
        ray_address=ray_head.gcs_address,
    )
    run_dir = Path(out["run_dir"])
    check = task_outputs(run_dir, "monitor-decisions")
    assert check["parameters"]["Output"] == "retrain"
    reason = check["artifacts"]["metrics"]["reason"]
    # seven daily windows, the shifted amount alarming in each: held after three
    assert "tx_log_amount" in reason and "3 consecutive windows" in reason
    recorded = checks("retrain")
    assert recorded and recorded[0]["reason"] == reason
    assert "tx_log_amount" in recorded[0]["held"] and recorded[0]["model_uri"] == before.model_uri
    assert recorded[0]["metrics"]["windows"] == 7.0
    # the retraining branch ran on the window ending at the check, and the gate decided
    window = task_outputs(run_dir, "retrain-window")["parameters"]["Output"]
    assert (
        window == (dt.datetime.fromisoformat(log["end"]).date() - dt.timedelta(days=42)).isoformat()
    )
    gate = _metrics(run_dir, "gate")
    assert gate["deploy"] in (0.0, 1.0) and gate["champion_version"] == before.version
    versions = {str(v.version): v for v in client().search_model_versions("name='fraud'")}
    newest = versions[str(max(int(v) for v in versions))]
    expected = "deploy" if gate["deploy"] == 1.0 else "keep"
    assert newest.tags.get("riskml.gate_decision") == expected
    assert (champion() != before) == (expected == "deploy")
