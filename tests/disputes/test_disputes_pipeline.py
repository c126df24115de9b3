"""The disputes pipeline (``disputes_training``): compiled in both flavours (extract -> features
-> train -> calibrate -> backtest -> gate -> register -> [If deploy] deploy, the fraud pipelines'
retries, caching and cluster pod settings, the deploy step rolling the disputes app's own arg),
and one real ``kfp.local`` run on a tiny simulated dispute set: the gate finds no champion,
registers the bundle as ``disputes-outcome`` and the deploy step makes it the champion (no other
model's alias moves); the gate then keeps that champion against a challenger that must win by an
impossible margin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.definitions import (
    DISPUTES_APP,
    DISPUTES_URI_ARG,
    PIPELINES,
    TRAIN_RETRIES,
    get_pipeline,
)
from tests.support.kfp_runs import task_metrics

pytestmark = pytest.mark.kfp

NAME = "disputes_training"
#: The pipeline's tasks (``condition-1`` holds the deploy task) and what each depends on.
DEPENDS = {
    "load-disputes": set(),
    "extract-evidence": {"load-disputes"},
    "dispute-features": {"load-disputes", "extract-evidence"},
    "train-outcome-model": {"load-disputes", "extract-evidence", "dispute-features"},
    "calibrate-outcome": {
        "load-disputes",
        "extract-evidence",
        "dispute-features",
        "train-outcome-model",
    },
    "backtest-disputes": {
        "load-disputes",
        "extract-evidence",
        "dispute-features",
        "calibrate-outcome",
    },
    "gate-disputes": {"load-disputes", "extract-evidence", "calibrate-outcome"},
    "register": {"calibrate-outcome", "backtest-disputes", "gate-disputes"},
    "condition-1": {"gate-disputes", "register"},
}
#: Never cached: they depend on the world (the source, the registry), not only their inputs.
SIDE_EFFECTS = {"load-disputes", "gate-disputes", "register"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    from pipelines.cli import compile_all

    paths = compile_all(tmp_path_factory.mktemp("disputes-ir"), [NAME])
    assert sorted(p.name for p in paths) == [f"{NAME}-cluster.yaml", f"{NAME}.yaml"]
    return {p.stem: list(yaml.safe_load_all(p.read_text())) for p in paths}


def test_the_disputes_pipeline_extracts_trains_calibrates_gates_and_deploys(
    compiled: dict[str, list[dict[str, Any]]],
) -> None:
    assert NAME in PIPELINES
    ir = compiled[NAME][0]
    assert ir["pipelineInfo"]["name"] == "riskml-disputes-training"
    tasks = dict(ir["root"]["dag"]["tasks"])
    assert {n: set(t.get("dependentTasks", [])) for n, t in tasks.items()} == DEPENDS
    cond = tasks["condition-1"]
    assert cond["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--gate-disputes-Output'] == 'deploy'"
    )
    (deploy,) = ir["components"][cond["componentRef"]["name"]]["dag"]["tasks"].values()
    params = deploy["inputs"]["parameters"]
    assert params["app"]["runtimeValue"]["constant"] == DISPUTES_APP == "disputes"
    assert params["uri_arg"]["runtimeValue"]["constant"] == DISPUTES_URI_ARG == "model_uri"
    assert deploy["cachingOptions"] == {}  # caching off
    for side in SIDE_EFFECTS:
        assert tasks[side]["cachingOptions"] == {}, side
    for pure in ("extract-evidence", "dispute-features", "train-outcome-model"):
        assert tasks[pure]["cachingOptions"] == {"enableCache": True}, pure
    policy = tasks["train-outcome-model"]["retryPolicy"]
    assert policy["maxRetryCount"] == TRAIN_RETRIES[0] and policy["backoffDuration"] == "30s"
    assert "retryPolicy" not in tasks["register"] and "retryPolicy" not in deploy
    # one run configuration reaches every task that reads it
    readers = {n for n, t in tasks.items() if "train_config_json" in t["inputs"]["parameters"]}
    assert readers == {
        "extract-evidence",
        "dispute-features",
        "train-outcome-model",
        "calibrate-outcome",
        "backtest-disputes",
        "gate-disputes",
    }
    outputs = ir["root"]["outputDefinitions"]
    assert set(outputs["artifacts"]) == {"bundle", "report"}
    assert outputs["parameters"]["decision"]["parameterType"] == "STRING"
    defaults = ir["root"]["inputDefinitions"]["parameters"]
    assert defaults["gate_metric"]["defaultValue"] == "auc"
    assert defaults["deploy_target"]["defaultValue"] == "local"


def test_the_cluster_flavour_runs_tasks_as_the_platforms_pipeline_pods(
    compiled: dict[str, list[dict[str, Any]]],
) -> None:
    ir, platform = compiled[f"{NAME}-cluster"]
    assert ir["pipelineInfo"]["name"] == "riskml-disputes-training-cluster"
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == {f"exec-{t}" for t in DEPENDS if t != "condition-1"} | {
        "exec-deploy-disputes"
    }
    for name, cfg in executors.items():
        labels = cfg.get("podMetadata", {}).get("labels", {})
        assert labels.get("app.kubernetes.io/component") == "pipeline", name
        assert cfg["securityContext"]["runAsNonRoot"] is True, name
        assert {m["configMapName"] for m in cfg.get("configMapAsEnv", [])} == {
            "riskml-pipeline-env"
        }
        # no Feast, no Ray: no task of this pipeline gets their Secrets
        assert not cfg.get("secretAsEnv"), name
    target = ir["root"]["inputDefinitions"]["parameters"]["deploy_target"]
    assert target["defaultValue"] == "cluster"


def test_an_unknown_flavour_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown flavour 'gpu'"):
        get_pipeline(NAME, "gpu")  # type: ignore[arg-type]


# -- one real run ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def disputes_run(
    ray_head: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """One kfp.local run of disputes_training on a fresh RISKML_HOME (the tiny dispute set)."""
    from pipelines.local import run_local
    from riskml.settings import home_at

    home = tmp_path_factory.mktemp("disputes-pipeline-home")
    with home_at(home):
        result = run_local(NAME, size="tiny", ray_address=ray_head.gcs_address)
        yield {**result, "home": home}


def _use_home(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    from riskml.settings import get_settings

    monkeypatch.setenv("RISKML_HOME", str(home))
    get_settings.cache_clear()


@pytest.mark.integration
@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_disputes_training_runs_end_to_end_and_deploys_the_champion(
    disputes_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from riskml.models.bundle import bundle_digest
    from riskml.models.disputes.bundle import NAME as BUNDLE
    from riskml.models.disputes.bundle import load_disputes_bundle
    from riskml.registry.store import champion, fetch

    _use_home(monkeypatch, disputes_run["home"])
    assert disputes_run["decision"] == "deploy"
    registered = disputes_run["registered"]
    assert registered["name"] == BUNDLE == "disputes-outcome"
    bundle = Path(disputes_run["bundle"])  # the verified copy fetched from the registry
    assert bundle_digest(bundle) == registered["digest"]
    loaded = load_disputes_bundle(bundle, digest=registered["digest"])
    assert loaded.model.calibrator is not None and loaded.reference["held_out_disputes"] > 0

    run_dir = Path(disputes_run["run_dir"])
    extraction = task_metrics(run_dir, "extract-evidence")
    assert extraction["cases"] == 800 and extraction["extraction_f1"] > 0.95
    features = task_metrics(run_dir, "dispute-features")
    assert features["disputes"] == 800 and features["represented_with_outcome"] > 200
    training = task_metrics(run_dir, "train-outcome-model")
    assert training["train_rows"] >= 40 and training["calibration_rows"] >= 20
    calibration = task_metrics(run_dir, "calibrate-outcome")
    assert calibration["calibration_ece"] <= calibration["calibration_ece_raw"] + 1e-9
    backtest = task_metrics(run_dir, "backtest-disputes")
    assert 0.5 < backtest["outcome_auc"] <= 1.0 and backtest["folds_trained"] >= 1
    # the bundle re-scored on its held-out window gives the calibrate task's figures
    assert backtest["bundle_auc"] == pytest.approx(calibration["holdout_auc"], abs=1e-12)
    assert backtest["policy_ev_per_dispute"] >= backtest["always_refund_ev_per_dispute"]
    gate = task_metrics(run_dir, "gate-disputes")
    assert gate["deploy"] == 1.0 and gate["champion"] == -1.0
    assert gate["challenger"] == pytest.approx(backtest["bundle_auc"], abs=1e-12)
    assert (run_dir / "deploy-disputes").is_dir()  # the dsl.If branch ran
    report = Path(disputes_run["report"]).read_text()
    assert "Time-ordered backtest" in report and "EV per dispute" in report

    current = champion(BUNDLE)
    assert current is not None and current.version == registered["version"]
    for other in ("fraud", "credit-pd"):
        assert champion(other) is None  # the disputes deploy moved only its own alias
    assert fetch(f"models:/{BUNDLE}@champion") == bundle


@pytest.mark.integration
@pytest.mark.ray
@pytest.mark.slow
def test_the_gate_keeps_the_champion_it_cannot_beat(
    disputes_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate of the same bundle against the champion the run deployed: it must win by more
    than an AUC point of 1, so ``keep``, compared against the registry's version."""
    from components.disputes_tasks import gate_task
    from riskml.registry.store import champion

    _use_home(monkeypatch, disputes_run["home"])
    run_dir = Path(disputes_run["run_dir"])
    disputes = next(run_dir.glob("load-disputes/disputes"))
    evidence = next(run_dir.glob("extract-evidence/evidence"))
    out = gate_task(Path(disputes_run["bundle"]), disputes, evidence, margin=1.0)
    current = champion("disputes-outcome")
    assert current is not None
    assert out["decision"] == "keep" and out["metric"] == "auc"
    assert out["champion_version"] == current.version
    assert out["champion"] == pytest.approx(out["challenger"])
    assert "+1 needed" in out["reason"]
    with pytest.raises(ValueError, match="unknown gate metric 'gini'"):
        gate_task(Path(disputes_run["bundle"]), disputes, evidence, metric="gini")
