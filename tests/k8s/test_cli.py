"""`riskml k8s validate` / `sync-serve-config`, the Feast ConfigMap, and import lightness."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from riskml.cli import app

from .helpers import Doc, of_kind

pytestmark = pytest.mark.k8s


def test_validate_command_passes_and_writes_json(
    kubectl: str, crd_dir: Path, schema_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["k8s", "validate", "--overlay", "prod", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "k8s validation" in result.output and "prod" in result.output
    report = json.loads(out.read_text())
    assert report["skaffold"] == [] and report["k8s_version"] == "1.32.0"
    assert report["prod"]["schema"] == []
    assert all(v == [] for v in report["prod"]["policy"].values())
    assert report["prod"]["objects"] > 30
    # the shipped overlay pins tags; without --release the missing digests are only reported
    assert len(report["prod"]["unpinned_images"]) == 3
    said = " ".join(result.output.split())
    assert "not pinned by digest" in said and "riskml k8s pin-digests" in said


def test_validate_command_rejects_unknown_overlays(crd_dir: Path) -> None:
    result = CliRunner().invoke(app, ["k8s", "validate", "--overlay", "qa"])
    assert result.exit_code != 0
    assert "unknown overlay 'qa'" in result.output


def test_sync_serve_config_check_mode() -> None:
    result = CliRunner().invoke(app, ["k8s", "sync-serve-config", "--check"])
    assert result.exit_code == 0, result.output
    assert "in sync" in result.output


def test_feature_store_configmaps_are_valid_feast_configs(rendered: dict[str, list[Doc]]) -> None:
    from feast.repo_config import RepoConfig

    for overlay, docs in rendered.items():
        maps = [d for d in of_kind(docs, "ConfigMap") if "feature_store.yaml" in d["data"]]
        # serving, training and stream-processor pods (hashed), kfp task pods (fixed name)
        assert len(maps) == 4, overlay
        for config_map in maps:
            config = RepoConfig(**yaml.safe_load(config_map["data"]["feature_store.yaml"]))
            assert config.project == "riskml"
            assert config.online_store.type == "redis"
            # the SQL registry's URL comes from a Secret, never from the ConfigMap
            assert config.registry.registry_type == "sql"
            assert config.registry.path == "${FEAST_REGISTRY_PATH}"
    with pytest.raises(ValueError, match="bogus"):
        RepoConfig(project="riskml", provider="local", online_store={"type": "redis", "bogus": 1})


def test_k8s_modules_import_nothing_heavy() -> None:
    code = (
        "import sys, riskml.cli, riskml.k8s.manifests, riskml.k8s.validate, riskml.k8s.policy;"
        "heavy = {'ray', 'jsonschema', 'kubernetes_validate', 'kubernetes', 'feast', 'kfp'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
