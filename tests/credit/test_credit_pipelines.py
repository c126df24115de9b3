"""The credit pipelines (``pd_training``, ``offer_ranking``): compiled in both flavours (the
gate -> register -> deploy path of the fraud pipelines, retries, caching, the cluster pod
settings, the deploy step rolling the credit app's own args), and one real ``kfp.local`` run of
``pd_training`` on a tiny simulated portfolio: the gate finds no champion, registers the bundle
as ``credit-pd`` and the deploy step makes it the champion (fraud's alias untouched); the gate
then keeps that champion against a challenger that must win by an impossible margin."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.definitions import (
    CREDIT_PIPELINES,
    CREDIT_URI_ARGS,
    MATERIALIZE_RETRIES,
    PIPELINES,
    TRAIN_RETRIES,
    get_pipeline,
)
from tests.support.kfp_runs import task_metrics

pytestmark = pytest.mark.kfp

#: Tasks of each credit pipeline (``condition-1`` holds the deploy task).
TASKS = {
    "pd_training": {
        "load-portfolio",
        "train-pd-model",
        "evaluate-pd",
        "gate-credit",
        "register",
        "condition-1",
    },
    "offer_ranking": {
        "load-portfolio",
        "train-offer-model",
        "evaluate-offers",
        "gate-credit",
        "register",
        "condition-1",
    },
}
TRAIN_TASK = {"pd_training": "train-pd-model", "offer_ranking": "train-offer-model"}
EVALUATE = {"pd_training": "evaluate-pd", "offer_ranking": "evaluate-offers"}
#: Never cached: they depend on the world (the source, the registry), not only their inputs.
SIDE_EFFECTS = {"load-portfolio", "gate-credit", "register"}
#: A fast PD configuration for 2 cores: the pipeline's shape, not the model, is under test.
FAST_PD = {"use_ray": False, "tune": None, "models": ["gbdt"]}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    from pipelines.cli import compile_all

    paths = compile_all(tmp_path_factory.mktemp("credit-ir"), list(CREDIT_PIPELINES))
    assert sorted(p.name for p in paths) == [
        "offer_ranking-cluster.yaml",
        "offer_ranking.yaml",
        "pd_training-cluster.yaml",
        "pd_training.yaml",
    ]
    return {p.stem: list(yaml.safe_load_all(p.read_text())) for p in paths}


def _tasks(ir: dict[str, Any]) -> dict[str, Any]:
    return dict(ir["root"]["dag"]["tasks"])


@pytest.mark.parametrize("name", CREDIT_PIPELINES)
def test_the_credit_pipelines_gate_register_and_deploy_like_fraud(
    compiled: dict[str, list[dict[str, Any]]], name: str
) -> None:
    assert name in PIPELINES
    ir = compiled[name][0]
    tasks = _tasks(ir)
    assert set(tasks) == TASKS[name]
    deps = {n: set(t.get("dependentTasks", [])) for n, t in tasks.items()}
    train = TRAIN_TASK[name]
    assert deps[train] == {"load-portfolio"}
    assert deps["gate-credit"] == {"load-portfolio", train}
    assert deps[EVALUATE[name]] == {"load-portfolio", train}
    assert deps["register"] == {"gate-credit", EVALUATE[name], train}
    cond = tasks["condition-1"]
    assert cond["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--gate-credit-Output'] == 'deploy'"
    )
    inner = ir["components"][cond["componentRef"]["name"]]["dag"]["tasks"]
    (deploy,) = inner.values()
    params = deploy["inputs"]["parameters"]
    assert params["app"]["runtimeValue"]["constant"] == "credit"
    assert params["uri_arg"]["runtimeValue"]["constant"] == CREDIT_URI_ARGS[name]
    assert deploy["cachingOptions"] == {}  # caching off
    for side in SIDE_EFFECTS:
        assert tasks[side]["cachingOptions"] == {}, side
    assert tasks[train]["cachingOptions"] == {"enableCache": True}
    policy = tasks[train]["retryPolicy"]
    assert policy["maxRetryCount"] == TRAIN_RETRIES[0] and policy["backoffDuration"] == "30s"
    assert "retryPolicy" not in tasks["register"] and "retryPolicy" not in deploy
    assert MATERIALIZE_RETRIES[0] > 0  # the fraud constants are untouched
    outputs = ir["root"]["outputDefinitions"]
    assert set(outputs["artifacts"]) == {"bundle", "report"}
    assert outputs["parameters"]["decision"]["parameterType"] == "STRING"


@pytest.mark.parametrize("name", CREDIT_PIPELINES)
def test_the_cluster_flavour_runs_tasks_as_the_platforms_pipeline_pods(
    compiled: dict[str, list[dict[str, Any]]], name: str
) -> None:
    ir, platform = compiled[f"{name}-cluster"]
    assert ir["pipelineInfo"]["name"] == f"riskml-{name.replace('_', '-')}-cluster"
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    labels = {e: cfg.get("podMetadata", {}).get("labels", {}) for e, cfg in executors.items()}
    assert all(lab.get("app.kubernetes.io/component") == "pipeline" for lab in labels.values()), (
        labels
    )
    ray_tasks = {
        e
        for e, cfg in executors.items()
        if any(s["secretName"] == "riskml-ray-auth" for s in cfg.get("secretAsEnv", []))
    }
    assert ray_tasks == {f"exec-{TRAIN_TASK[name]}"}
    for cfg in executors.values():
        maps = {m["configMapName"] for m in cfg.get("configMapAsEnv", [])}
        assert maps == {"riskml-pipeline-env"}
    # the local flavour deploys locally, the cluster flavour rolls the RayService
    local_ir = compiled[name][0]
    target = local_ir["root"]["inputDefinitions"]["parameters"]["deploy_target"]
    assert target["defaultValue"] == "local"
    cluster_target = ir["root"]["inputDefinitions"]["parameters"]["deploy_target"]
    assert cluster_target["defaultValue"] == "cluster"


def test_an_unknown_pipeline_or_flavour_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown pipeline 'credit'"):
        get_pipeline("credit")
    with pytest.raises(ValueError, match="unknown flavour 'gpu'"):
        get_pipeline("pd_training", "gpu")  # type: ignore[arg-type]


# -- one real run ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pd_run(ray_head: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One kfp.local run of pd_training on a fresh RISKML_HOME (tiny portfolio, GBDT only)."""
    from pipelines.local import run_local
    from riskml.settings import home_at

    home = tmp_path_factory.mktemp("credit-pipeline-home")
    with home_at(home):
        result = run_local(
            "pd_training",
            size="tiny",
            arguments={"train_config_json": json.dumps(FAST_PD)},
            ray_address=ray_head.gcs_address,
        )
        yield {**result, "home": home}


def _use_home(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    from riskml.settings import get_settings

    monkeypatch.setenv("RISKML_HOME", str(home))
    get_settings.cache_clear()


@pytest.mark.integration
@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_pd_training_runs_end_to_end_and_deploys_the_champion(
    pd_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from riskml.models.bundle import bundle_digest
    from riskml.models.credit.bundle import PD_NAME, load_credit_bundle
    from riskml.registry.store import champion, fetch

    _use_home(monkeypatch, pd_run["home"])
    assert pd_run["decision"] == "deploy"
    registered = pd_run["registered"]
    assert registered["name"] == PD_NAME
    assert registered["model_uri"] == f"models:/{PD_NAME}/{registered['version']}"
    bundle = Path(pd_run["bundle"])  # the verified copy fetched from the registry
    assert bundle_digest(bundle) == registered["digest"]
    loaded = load_credit_bundle(bundle, digest=registered["digest"])
    assert loaded.kind == "pd" and loaded.model.kind == "gbdt"
    assert loaded.reference["held_out_vintages"]

    run_dir = Path(pd_run["run_dir"])
    training = task_metrics(run_dir, "train-pd-model")
    assert 0.2 < training["gini_gbdt"] <= 1.0 and 0 <= training["ece_calibrated"] < 0.2
    evaluation = task_metrics(run_dir, "evaluate-pd")
    # the saved bundle, re-scored on its held-out vintages, gives the training run's figures
    assert evaluation["bundle_gini"] == pytest.approx(training["gini_gbdt"], abs=1e-9)
    assert 0 <= evaluation["bundle_jeffreys_pass_share"] <= 1
    gate = task_metrics(run_dir, "gate-credit")
    assert gate["deploy"] == 1.0 and gate["champion"] == -1.0
    assert gate["challenger"] == pytest.approx(evaluation["bundle_gini"], abs=1e-9)
    assert gate["champion_version"] == ""
    assert (run_dir / "deploy-credit").is_dir()  # the dsl.If branch ran
    report = Path(pd_run["report"]).read_text()
    assert "Grades: observed vs predicted" in report and "GLM scorecard vs monotone GBDT" in report

    current = champion(PD_NAME)
    assert current is not None and current.version == registered["version"]
    assert champion("fraud") is None  # the credit deploy moved only its own model's alias
    assert fetch(f"models:/{PD_NAME}@champion") == bundle


@pytest.mark.integration
@pytest.mark.ray
@pytest.mark.slow
def test_the_gate_keeps_the_champion_it_cannot_beat(
    pd_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate of the same bundle against the champion the run deployed: it must win by more
    than a Gini point of 1, so ``keep``, compared against the registry's version."""
    from components.credit_tasks import gate_task
    from riskml.registry.store import champion

    _use_home(monkeypatch, pd_run["home"])
    portfolio = next(Path(pd_run["run_dir"]).glob("load-portfolio/portfolio"))
    out = gate_task(Path(pd_run["bundle"]), portfolio, margin=1.0)
    current = champion("credit-pd")
    assert current is not None
    assert out["decision"] == "keep" and out["metric"] == "gini"
    assert out["champion_version"] == current.version
    assert out["champion"] == pytest.approx(out["challenger"])
    assert "+1 needed" in out["reason"]
