"""The serve config (serving/serve_config.yaml, the RayService's serveConfigV2) matches the
application: deployment names, import path, user_config schemas; bad app args fail clearly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from riskml.decision.config import DeciderConfig, IngressConfig
from riskml.registry.store import RegistryError
from riskml.settings import REPO_ROOT
from serving.components import import_attr
from serving.config import TOPOLOGIES, AdmissionArgs, AppArgs

#: A component spec (validated, never built here).
SOURCE = {"factory": "tests.support.serving_standins:InMemoryFeatureSource"}


def _config() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "serving" / "serve_config.yaml").read_text())


def _fraud_app() -> dict[str, Any]:
    (app,) = [a for a in _config()["applications"] if a["name"] == "riskml"]
    return dict(app)


def test_serve_config_names_the_apps_deployments_and_valid_user_configs() -> None:
    app = _fraud_app()
    assert app["import_path"] == "serving.app:build_app"
    assert callable(import_attr(app["import_path"]))
    assert AppArgs.model_fields["topology"].default == "colocated"
    assert "topology" not in app["args"]  # the shipped default: every component in the Ingress
    deployments = {d["name"]: d for d in app["deployments"]}
    assert set(deployments) == set(TOPOLOGIES["colocated"]) == {"Ingress"}
    user_config = dict(deployments["Ingress"]["user_config"])
    decider = DeciderConfig.model_validate(user_config.pop("decider"))
    ingress = IngressConfig.model_validate(user_config)
    assert ingress.deadline_ms > 0 and decider.thresholds.review <= decider.thresholds.decline
    # Serve's slots stay above the admission's, or Serve queues out of sight of the deadline
    admission = AdmissionArgs.model_validate(app["args"].get("admission", {}))
    ongoing = deployments["Ingress"]["max_ongoing_requests"]
    assert ongoing >= admission.max_in_flight + admission.max_waiting


def test_serve_config_args_name_the_registry_champion_resolved_before_deploying(
    riskml_home: Path,
) -> None:
    """The config serves the registry's champion on Redis; in an empty registry the args are
    refused before anything is deployed, naming the URI."""
    app = _fraud_app()
    assert app["args"] == {"model_uri": "models:/fraud@champion", "online_store": "redis"}
    with pytest.raises(RegistryError, match=r"models:/fraud@champion: no such model version"):
        AppArgs.model_validate(app["args"])


def test_app_args_load_neither_ray_nor_the_deployments() -> None:
    """``serving.config`` is the bottom of ``app -> deployments -> inprocess -> config``:
    validating app args (``riskml serve start`` does, before starting anything) imports no
    deployment and no Ray (a fresh interpreter, so no other test's imports count)."""
    code = (
        "import json, sys, serving.config; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('serving', 'ray', 'fastapi', 'torch'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(done.stdout) == ["serving", "serving.components", "serving.config"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({}, "need model_uri or bundle_dir, or feature_source"),
        (
            {
                "feature_source": SOURCE,
                "tabular_models": {"v1": {"factory": "serving.scorers:XGBoostFileScorer"}},
                "champion": "v2",
            },
            "champion 'v2' is not one of",
        ),
        (
            {
                "feature_source": {"factory": "no-colon"},
                "tabular_models": {"v1": {"factory": "serving.scorers:XGBoostFileScorer"}},
            },
            "String should match pattern",
        ),
        (
            {
                "feature_source": SOURCE,
                "tabular_models": {"v1": {"factory": "serving.scorers:XGBoostFileScorer"}},
                "deployment_options": {"Ingres": {"num_replicas": 2}},
            },
            "unknown deployments",
        ),
        (
            {
                "feature_source": SOURCE,
                "tabular_models": {"v1": {"factory": "serving.scorers:XGBoostFileScorer"}},
                "deployment_options": {"XGBoostScorer": {"num_replicas": 2}},
            },
            r"\['XGBoostScorer'\] that topology 'colocated' does not deploy",
        ),
        (
            {
                "topology": "sidecar",
                "feature_source": SOURCE,
                "tabular_models": {"v1": {"factory": "serving.scorers:XGBoostFileScorer"}},
            },
            "Input should be 'colocated' or 'distributed'",
        ),
    ],
)
def test_bad_app_args_fail_with_a_clear_message(args: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AppArgs.model_validate(args)


def test_every_app_in_the_serve_config_has_its_args_model_and_a_stranger_is_refused() -> None:
    from serving.config import APP_ARGS, validate_app_args

    for app in _config()["applications"]:
        assert app["import_path"] in APP_ARGS, app["name"]
        assert callable(import_attr(app["import_path"]))
    with pytest.raises(ValueError, match=r"'serving\.nope:build' is not a riskml Serve app"):
        validate_app_args("serving.nope:build", {})


def test_local_deploys_log_as_the_shipped_config_no_access_line_per_request() -> None:
    """Serve's access line per request cost ~3 % of an Ingress replica's CPU at 300 rps; the
    shipped config turns it off and every local deploy (demo, benchmarks, tests) takes the
    shipped logging config unless it names its own."""
    from ray.serve.schema import LoggingConfig, ServeDeploySchema

    from serving.local import shipped_logging_config, with_shipped_logging

    shipped = shipped_logging_config()
    assert LoggingConfig(**shipped).enable_access_log is False
    assert shipped["encoding"] == "JSON"
    app = {"name": "a", "route_prefix": "/", "import_path": "serving.app:build_app"}
    schema = ServeDeploySchema.model_validate(with_shipped_logging({"applications": [app]}))
    assert schema.logging_config is not None and schema.logging_config.enable_access_log is False
    own = {"applications": [app], "logging_config": {"enable_access_log": True}}
    assert with_shipped_logging(own) == own
