"""serving/serve_config.yaml is a valid Serve config and is, verbatim, the RayService's
serveConfigV2 in every overlay; drift is detected and `sync_serve_config` repairs it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from riskml.k8s.manifests import (
    RAYSERVICE_PATH,
    SERVE_CONFIG_PATH,
    load_yaml_documents,
    sync_serve_config,
)
from riskml.k8s.validate import check_serve_config_matches, validate_serve_config

from .helpers import Doc

pytestmark = pytest.mark.k8s

DEPLOYMENTS = ["Ingress"]  # topology colocated: the models live in the Ingress replicas


def _serve_config() -> dict[str, Any]:
    return yaml.safe_load(SERVE_CONFIG_PATH.read_text())


def test_rendered_serve_config_v2_is_the_serving_config(rendered: dict[str, list[Doc]]) -> None:
    text = SERVE_CONFIG_PATH.read_text()
    for docs in rendered.values():
        assert check_serve_config_matches(docs, text) == []
        (service,) = [d for d in docs if d["kind"] == "RayService"]
        assert service["spec"]["serveConfigV2"] == text
        assert yaml.safe_load(service["spec"]["serveConfigV2"]) == _serve_config()


def test_the_base_manifest_is_in_sync() -> None:
    assert sync_serve_config(check=True) is False


def test_serve_config_contract() -> None:
    schema = validate_serve_config(_serve_config())
    assert schema.http_options.host == "0.0.0.0" and schema.http_options.port == 8000
    apps = {a.name: a for a in schema.applications}
    app = apps["riskml"]
    assert app.route_prefix == "/"
    credit = apps["credit"]
    assert credit.route_prefix == "/v1/credit"
    assert credit.import_path == "serving.credit:build_credit_app"
    assert credit.args["pd_model_uri"] == "models:/credit-pd@champion"
    assert credit.args["offers_model_uri"] == "models:/credit-offers@champion"
    assert app.import_path == "serving.app:build_app"
    assert app.args["model_uri"] == "models:/fraud@champion" and app.args["online_store"] == "redis"
    deployments = {d.name: d for d in app.deployments}
    assert list(deployments) == DEPLOYMENTS
    autoscaling = deployments["Ingress"].autoscaling_config
    assert 2 <= autoscaling["min_replicas"] < autoscaling["max_replicas"]
    # backpressure: a bounded proxy queue, shed with 503 + Retry-After (docs/serving.md)
    ingress = deployments["Ingress"]
    assert ingress.max_queued_requests >= 1
    assert ingress.backpressure_config.status_code == 503
    assert ingress.backpressure_config.retry_after_s >= 1
    decider = deployments["Ingress"].user_config["decider"]
    assert decider["thresholds"] == {"review": 0.3, "decline": 0.7}
    assert sum(decider["blend_weights"].values()) == pytest.approx(1.0)
    # Every deployment keeps >= 2 replicas (prod's ">= 2 Serve replicas" holds in any env).
    for raw in _serve_config()["applications"][0]["deployments"]:
        floor = raw.get("autoscaling_config", {}).get("min_replicas", raw.get("num_replicas"))
        assert floor is not None and floor >= 2, raw["name"]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda c: c["applications"][0]["deployments"][0].update(
                autoscaling_confg=c["applications"][0]["deployments"][0].pop("autoscaling_config")
            ),
            r"unknown keys: applications\[0\]\.deployments\[0\]\.autoscaling_confg",
        ),
        (lambda c: c["http_options"].update(hosts="0.0.0.0"), r"unknown keys: http_options\.hosts"),
        (
            lambda c: c["applications"][0]["deployments"][0]["autoscaling_config"].update(
                min_replicas=20
            ),
            r"max_replicas \(12\) must be greater than or equal to min_replicas \(20\)",
        ),
        (lambda c: c["applications"][0].pop("import_path"), r"import_path"),
        (
            lambda c: c["applications"][0]["deployments"][0]["backpressure_config"].update(
                retry_after=1
            ),
            r"unknown keys: applications\[0\]\.deployments\[0\]\.backpressure_config\.retry_after",
        ),
        (
            lambda c: c["applications"][0]["deployments"][0]["backpressure_config"].update(
                status_code=500
            ),
            r"status_code",
        ),
    ],
)
def test_invalid_serve_configs_fail(edit: Any, expected: str) -> None:
    config = _serve_config()
    edit(config)
    with pytest.raises(ValueError, match=expected):
        validate_serve_config(config)


def test_drift_is_detected_and_repaired(tmp_path: Path) -> None:
    manifest = tmp_path / "rayservice.yaml"
    serve = tmp_path / "serve_config.yaml"
    shutil.copy(RAYSERVICE_PATH, manifest)
    original = SERVE_CONFIG_PATH.read_text()
    serve.write_text(original.replace("review: 0.3", "review: 0.35"))

    (service,) = load_yaml_documents(manifest)
    errors = check_serve_config_matches([service], serve.read_text())
    assert len(errors) == 1 and "differs from serving/serve_config.yaml" in errors[0]

    before = manifest.read_text()
    assert sync_serve_config(manifest, serve, check=True) is True
    assert manifest.read_text() == before  # check mode changes nothing
    assert sync_serve_config(manifest, serve) is True
    assert sync_serve_config(manifest, serve) is False  # idempotent
    (service,) = load_yaml_documents(manifest)
    assert service["spec"]["serveConfigV2"] == serve.read_text()
    assert check_serve_config_matches([service], serve.read_text()) == []
    # Only the block changed: every other line (comments included) is untouched.
    changed = [
        (a, b)
        for a, b in zip(before.splitlines(), manifest.read_text().splitlines(), strict=True)
        if a != b
    ]
    assert changed == [(f"{' ' * 18}review: 0.3", f"{' ' * 18}review: 0.35")]


def test_sync_errors(tmp_path: Path) -> None:
    manifest = tmp_path / "rayservice.yaml"
    manifest.write_text("apiVersion: ray.io/v1\nkind: RayService\nspec: {}\n")
    with pytest.raises(ValueError, match=re.escape("no `serveConfigV2: |` block")):
        sync_serve_config(manifest, SERVE_CONFIG_PATH)
    serve = tmp_path / "serve.yaml"
    serve.write_text("applications: []")  # no trailing newline
    shutil.copy(RAYSERVICE_PATH, manifest)
    with pytest.raises(ValueError, match="exactly one newline"):
        sync_serve_config(manifest, serve)
    assert check_serve_config_matches([], "x") == ["no RayService in the rendered manifests"]
