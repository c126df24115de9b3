"""Model bundle: round trip, scoring parity, tamper/missing/extra refusal, no pickle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from riskml.models.bundle import (
    BundleIntegrityError,
    ModelArtifacts,
    bundle_from_artifacts,
    load_bundle,
    save_bundle,
    score,
    score_inputs,
)
from riskml.models.features import extract_inputs


@pytest.fixture
def saved(artifacts: ModelArtifacts, tmp_path: Path) -> Path:
    return save_bundle(artifacts, tmp_path / "models", name="fraud")


def test_round_trip_scores_identically(
    saved: Path, artifacts: ModelArtifacts, later_frame: Any
) -> None:
    bundle = load_bundle(saved)
    assert saved.parent.name == "fraud" and bundle.version == saved.name
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["feature_service"] == "synthetic_fraud"
    assert set(manifest["versions"]) >= {"riskml", "xgboost", "torch", "ray"}
    assert set(manifest["files"]) == {
        "models/xgb.ubj",
        "models/sequence.safetensors",
        "models/sequence.json",
        "feature_contract.json",
        "calibration.json",
        "blend.json",
        "metrics.json",
        "training_config.json",
    }
    contract = json.loads((saved / "feature_contract.json").read_text())
    assert contract["tabular"] == list(artifacts.spec.tabular)
    assert contract["model_dtypes"]["seq_amount"] == "float32[8]"
    loaded = score(bundle, later_frame)
    in_memory = score_inputs(
        bundle_from_artifacts(artifacts), extract_inputs(later_frame, artifacts.spec)
    )["score"]
    assert loaded.shape == (3000,)
    assert np.allclose(loaded, in_memory)
    assert np.allclose(score(bundle, later_frame.to_pandas()), loaded)
    assert loaded.min() >= 0 and loaded.max() <= 1
    parts = score_inputs(bundle, extract_inputs(later_frame, bundle.spec))
    assert {"xgb", "sequence", "xgb_calibrated", "sequence_calibrated", "score"} <= set(parts)


def test_no_pickle_in_bundle(saved: Path) -> None:
    for path in saved.rglob("*"):
        if path.is_file():
            head = path.read_bytes()[:2]
            assert head[:1] != b"\x80", f"{path} looks like a pickle"
            if path.suffix == ".json":
                json.loads(path.read_text())


def test_tampered_file_is_refused(saved: Path) -> None:
    target = saved / "models" / "xgb.ubj"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match=r"sha256 mismatch for models/xgb\.ubj"):
        load_bundle(saved)


def test_tampered_calibration_json_is_refused(saved: Path) -> None:
    path = saved / "calibration.json"
    payload = json.loads(path.read_text())
    payload["xgb"]["y"] = [min(1.0, v + 0.1) for v in payload["xgb"]["y"]]
    path.write_text(json.dumps(payload))
    with pytest.raises(BundleIntegrityError, match=r"calibration\.json"):
        load_bundle(saved)


def test_missing_and_extra_files_are_refused(saved: Path, tmp_path: Path) -> None:
    other = tmp_path / "copy"
    shutil.copytree(saved, other)
    (saved / "blend.json").unlink()
    with pytest.raises(BundleIntegrityError, match=r"missing.*blend\.json"):
        load_bundle(saved)
    (other / "models" / "extra.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(BundleIntegrityError, match=r"not in the manifest.*extra\.pkl"):
        load_bundle(other)


def test_manifest_edits_are_refused(saved: Path) -> None:
    manifest = json.loads((saved / "manifest.json").read_text())
    digest = manifest["files"]["blend.json"]
    (saved / "blend.json").write_text('{"method": "weighted", "models": ["xgb"], "weights": [1]}')
    # re-pointing the manifest at the new file changes the content digest
    import hashlib

    manifest["files"]["blend.json"] = hashlib.sha256(
        (saved / "blend.json").read_bytes()
    ).hexdigest()
    assert manifest["files"]["blend.json"] != digest
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleIntegrityError, match="content digest"):
        load_bundle(saved)
    (saved / "manifest.json").write_text("not json")
    with pytest.raises(BundleIntegrityError, match="not valid JSON"):
        load_bundle(saved)
    with pytest.raises(BundleIntegrityError, match=r"no manifest\.json"):
        load_bundle(saved.parent / "nope")


def test_save_refuses_inconsistent_artifacts(artifacts: ModelArtifacts, tmp_path: Path) -> None:
    from dataclasses import replace

    with pytest.raises(ValueError, match="no XGBoost model"):
        save_bundle(replace(artifacts, xgb_ubj=None), tmp_path)
    with pytest.raises(FileExistsError):
        save_bundle(artifacts, tmp_path, version="v1")
        save_bundle(artifacts, tmp_path, version="v1")
