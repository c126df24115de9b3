"""The model bundle: one versioned directory holding everything scoring needs, verified on load.

Layout (all JSON, UBJSON or safetensors; no pickle)::

    <root>/<name>/<version>/
        manifest.json            format, name, version, created_at, versions, models, files{sha256}
        feature_contract.json    FeatureService name, feature names, order, dtypes
        models/xgb.ubj           XGBoost booster (UBJSON)
        models/sequence.safetensors  torch weights (+ normalisation buffers)
        models/sequence.json     sequence model architecture
        calibration.json         per-model calibrators (isotonic breakpoints / Platt or beta
                                 coefficients; strictly increasing)
        blend.json               ensemble weights or stacking coefficients
        metrics.json             validation / test metrics
        training_config.json     the configuration that produced it

:func:`load_bundle` refuses a bundle whose files differ from the manifest in any way (missing,
extra, or changed bytes), whose manifest names a model file it does not verify, or whose model
bytes do not parse as UBJSON / safetensors, with :class:`BundleIntegrityError`. :func:`score` is
the one in-process scoring function; serving calls it (or :func:`score_inputs`) so training and
serving agree.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import platform
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from riskml import __version__
from riskml.models.calibration import Calibrator
from riskml.models.ensemble import Blend
from riskml.models.features import FeatureSpec, ModelInputs, extract_inputs

FORMAT = "riskml-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
XGB_FILE = "models/xgb.ubj"
SEQ_WEIGHTS = "models/sequence.safetensors"
SEQ_ARCH = "models/sequence.json"
#: The reference profile the monitor compares the decision log with (riskml.monitoring.profile).
PROFILE_FILE = "reference_profile.json"
#: The product line a bundle without a ``line`` field belongs to (every bundle before there were
#: other lines); its loader is :func:`load_bundle`.
FRAUD_LINE = "fraud"
#: Files every fraud bundle has (:func:`load_bundle` reads them by these names).
REQUIRED_FILES = (
    "feature_contract.json",
    "calibration.json",
    "blend.json",
    "metrics.json",
    "training_config.json",
)


class BundleIntegrityError(ValueError):
    """A bundle is missing files, has extra files, or a file's sha256 differs from the manifest."""


@dataclass
class ModelArtifacts:
    """What training hands to :func:`save_bundle` (bytes and JSON-able objects only)."""

    spec: FeatureSpec
    calibrators: dict[str, Calibrator]
    blend: Blend
    xgb_ubj: bytes | None = None
    seq_weights: bytes | None = None
    seq_architecture: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    #: the reference profile (riskml.monitoring.profile.ReferenceProfile as JSON), if built
    profile: dict[str, Any] | None = None


@dataclass
class Bundle:
    """A loaded, verified bundle."""

    path: Path
    manifest: dict[str, Any]
    spec: FeatureSpec
    calibrators: dict[str, Calibrator]
    blend: Blend
    metrics: dict[str, Any]
    booster: Any = None  # xgboost.Booster
    seq_model: Any = None  # torch.nn.Module (eval mode)

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def models(self) -> list[str]:
        return list(self.blend.models)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    out = {"riskml": __version__, "python": platform.python_version()}
    for dist in ("xgboost", "torch", "ray", "numpy", "scikit-learn", "safetensors"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:  # pragma: no cover - optional in some images
            out[dist] = "absent"
    return out


def finite_json(value: Any) -> Any:
    """Strict JSON: NaN/inf become null (metrics can be undefined, e.g. no fraud in a slice)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(finite_json(payload), indent=2, sort_keys=True, allow_nan=False)
    path.write_text(text + "\n")


def save_bundle(
    artifacts: ModelArtifacts,
    root: Path | str,
    *,
    name: str = "fraud",
    version: str | None = None,
) -> Path:
    """Write a bundle under ``<root>/<name>/<version>/`` atomically and return its path.

    The default version is ``<UTC timestamp>-<first 8 hex of the content digest>``.
    """
    if not artifacts.blend.models:
        raise ValueError("the blend names no models")
    for m in artifacts.blend.models:
        if m not in artifacts.calibrators:
            raise ValueError(f"model {m!r} is blended but has no calibrator")
    if "xgb" in artifacts.blend.models and artifacts.xgb_ubj is None:
        raise ValueError("blend uses 'xgb' but no XGBoost model was given")
    if "sequence" in artifacts.blend.models and (
        artifacts.seq_weights is None or artifacts.seq_architecture is None
    ):
        raise ValueError("blend uses 'sequence' but no sequence weights/architecture were given")

    def fill(tmp: Path) -> dict[str, Any]:
        models: dict[str, Any] = {}
        if artifacts.xgb_ubj is not None:
            (tmp / XGB_FILE).parent.mkdir(parents=True, exist_ok=True)
            (tmp / XGB_FILE).write_bytes(artifacts.xgb_ubj)
            models["xgb"] = {"kind": "xgboost", "file": XGB_FILE}
        if artifacts.seq_weights is not None and artifacts.seq_architecture is not None:
            (tmp / SEQ_WEIGHTS).parent.mkdir(parents=True, exist_ok=True)
            (tmp / SEQ_WEIGHTS).write_bytes(artifacts.seq_weights)
            _write_json(tmp / SEQ_ARCH, artifacts.seq_architecture)
            models["sequence"] = {
                "kind": "torch-sequence",
                "weights": SEQ_WEIGHTS,
                "architecture": SEQ_ARCH,
            }
        _write_json(tmp / "feature_contract.json", artifacts.spec.contract())
        _write_json(
            tmp / "calibration.json", {k: c.to_json() for k, c in artifacts.calibrators.items()}
        )
        _write_json(tmp / "blend.json", artifacts.blend.to_json())
        _write_json(tmp / "metrics.json", artifacts.metrics)
        _write_json(tmp / "training_config.json", artifacts.config)
        if artifacts.profile is not None:
            _write_json(tmp / PROFILE_FILE, artifacts.profile)
        return {
            "feature_service": artifacts.spec.feature_service,
            "models": models,
            "blend": artifacts.blend.models,
        }

    return _write_bundle(root, name, version, fill)


def save_line_bundle(
    root: Path | str,
    name: str,
    *,
    line: str,
    files: Mapping[str, bytes | Mapping[str, Any] | list[Any]],
    models: Mapping[str, Mapping[str, str]] | None = None,
    required: Sequence[str] = (),
    version: str | None = None,
) -> Path:
    """Write a bundle of another product line (credit, disputes) under
    ``<root>/<name>/<version>/``, atomically, with the same manifest, digests and checks as a
    fraud bundle: ``files`` maps relative paths to bytes or JSON-able values; ``models`` names
    each model's files (``{"pd": {"kind": "xgboost", "file": "models/pd.ubj"}}``); ``required``
    are the files the line's loader needs (checked by :func:`verify_bundle`)."""
    if line == FRAUD_LINE:
        raise ValueError("fraud bundles are written by save_bundle")
    if missing := sorted(set(required) - set(files)):
        raise ValueError(f"required files not given: {missing}")

    def fill(tmp: Path) -> dict[str, Any]:
        for rel, content in files.items():
            target = tmp / rel
            if isinstance(content, bytes | bytearray):
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(bytes(content))
            else:
                _write_json(target, content)
        return {"line": line, "models": dict(models or {}), "required": sorted(required)}

    return _write_bundle(root, name, version, fill)


def _write_bundle(
    root: Path | str,
    name: str,
    version: str | None,
    fill: Callable[[Path], dict[str, Any]],
) -> Path:
    """Fill a temporary directory beside the target, write the manifest over every file it
    holds (sha256 each), and rename it into place: a bundle is whole or absent."""
    root = Path(root)
    (root / name).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".bundle-", dir=root / name))
    try:
        fields = fill(tmp)
        files = {
            p.relative_to(tmp).as_posix(): sha256_file(p)
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
        now = dt.datetime.now(dt.UTC)
        version = version or f"{now:%Y%m%dT%H%M%SZ}-{digest[:8]}"
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": name,
            "version": version,
            "created_at": now.isoformat(),
            **fields,
            "versions": _versions(),
            "content_sha256": digest,
            "files": files,
        }
        _write_json(tmp / MANIFEST, manifest)
        final = root / name / version
        if final.exists():
            raise FileExistsError(f"bundle {final} already exists")
        tmp.replace(final)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def bundle_digest(path: Path | str) -> str:
    """The bundle's digest: sha256 of its manifest, which lists every file's sha256 by path, so it
    covers the files, their paths and every manifest field (what a registry or serve config pins;
    the manifest's own ``content_sha256`` only certifies the file list)."""
    return sha256_file(Path(path) / MANIFEST)


def verify_bundle(path: Path | str, *, digest: str | None = None) -> dict[str, Any]:
    """Check every file against the manifest, and the manifest against ``digest`` when given
    (:func:`bundle_digest`); return the manifest or raise :class:`BundleIntegrityError`."""
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise BundleIntegrityError(f"{path}: no {MANIFEST}")
    if digest is not None and (actual := sha256_file(mpath)) != digest:
        raise BundleIntegrityError(
            f"{path}: manifest digest {actual[:12]}… is not the pinned {digest[:12]}… "
            "(the bundle was changed after it was registered)"
        )
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleIntegrityError(f"{mpath}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleIntegrityError(f"{mpath}: not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleIntegrityError(
            f"{mpath}: format_version {manifest.get('format_version')} is not {FORMAT_VERSION}"
        )
    expected: dict[str, str] = manifest.get("files") or {}
    present = {
        p.relative_to(path).as_posix()
        for p in path.rglob("*")
        if (p.is_file() or p.is_symlink()) and p.relative_to(path).as_posix() != MANIFEST
    }
    if (path / MANIFEST).is_symlink():
        present.add(MANIFEST)
    missing = sorted(set(expected) - present)
    extra = sorted(present - set(expected))
    if missing:
        raise BundleIntegrityError(f"{path}: files missing from bundle: {missing}")
    if extra:
        raise BundleIntegrityError(f"{path}: files not in the manifest: {extra}")
    for rel, digest in expected.items():
        p = path / rel
        if p.is_symlink():
            raise BundleIntegrityError(f"{path}: {rel} is a symlink")
        actual = sha256_file(p)
        if actual != digest:
            raise BundleIntegrityError(
                f"{path}: sha256 mismatch for {rel} (manifest {digest[:12]}…, file {actual[:12]}…)"
            )
    content = hashlib.sha256(json.dumps(expected, sort_keys=True).encode()).hexdigest()
    if manifest.get("content_sha256") != content:
        raise BundleIntegrityError(f"{path}: content digest does not match the file list")
    line = manifest.get("line", FRAUD_LINE)
    required = REQUIRED_FILES if line == FRAUD_LINE else manifest.get("required", [])
    if not isinstance(required, list | tuple) or not all(isinstance(f, str) for f in required):
        raise BundleIntegrityError(f"{mpath}: 'required' is not a list of paths")
    if absent := [f for f in required if f not in expected]:
        raise BundleIntegrityError(f"{path}: the manifest does not list {absent}")
    # every file a model entry names is one of the verified files (no path outside them)
    models = manifest.get("models", {})
    if not isinstance(models, dict) or not all(isinstance(e, dict) for e in models.values()):
        raise BundleIntegrityError(f"{mpath}: 'models' is not a mapping of model entries")
    named = [v for entry in models.values() for k, v in entry.items() if k != "kind"]
    unverified = sorted({str(v) for v in named if not isinstance(v, str) or v not in expected})
    if unverified:
        raise BundleIntegrityError(
            f"{path}: the manifest's models name files it does not verify: {unverified}"
        )
    return dict(manifest)


def verify_line_bundle(path: Path | str, line: str, *, digest: str | None = None) -> dict[str, Any]:
    """:func:`verify_bundle`, and the bundle is one of ``line``'s (a credit bundle handed to
    the fraud loader is refused by name, not by a missing file)."""
    manifest = verify_bundle(path, digest=digest)
    if (actual := manifest.get("line", FRAUD_LINE)) != line:
        raise BundleIntegrityError(f"{path}: a {actual} bundle, not a {line} bundle")
    return manifest


def load_bundle(
    path: Path | str, *, nthread: int | None = None, digest: str | None = None
) -> Bundle:
    """Verify (against ``digest`` too, when given) and load a bundle (XGBoost booster and torch
    module included)."""
    path = Path(path)
    manifest = verify_line_bundle(path, FRAUD_LINE, digest=digest)
    try:
        spec = FeatureSpec.from_contract(json.loads((path / "feature_contract.json").read_text()))
        cal_payload = json.loads((path / "calibration.json").read_text())
        calibrators = {k: Calibrator.from_json(v) for k, v in cal_payload.items()}
        blend = Blend.from_json(json.loads((path / "blend.json").read_text()))
        metrics = json.loads((path / "metrics.json").read_text())
    except (KeyError, ValueError, TypeError) as exc:
        raise BundleIntegrityError(f"{path}: malformed bundle content ({exc})") from exc
    models = manifest.get("models", {})
    for m in blend.models:
        if m not in models or m not in calibrators:
            raise BundleIntegrityError(f"{path}: blend uses {m!r} but it is not in the bundle")
    bundle = Bundle(path, manifest, spec, calibrators, blend, metrics)
    # UBJSON and safetensors only (never pickle); bytes that do not parse refuse the bundle
    if "xgb" in models:
        from riskml.models.xgb import from_ubj

        try:
            bundle.booster = from_ubj((path / models["xgb"]["file"]).read_bytes(), nthread=nthread)
        except Exception as exc:
            raise BundleIntegrityError(f"{path}: the XGBoost model does not load ({exc})") from exc
    if "sequence" in models:
        from riskml.models.sequence import load_model

        try:
            arch = json.loads((path / models["sequence"]["architecture"]).read_text())
            weights = (path / models["sequence"]["weights"]).read_bytes()
            bundle.seq_model = load_model(arch, weights)
        except Exception as exc:
            raise BundleIntegrityError(f"{path}: the sequence model does not load ({exc})") from exc
    return bundle


def bundle_from_artifacts(artifacts: ModelArtifacts) -> Bundle:
    """An in-memory (unsaved) bundle, scored by the same functions as a loaded one."""
    bundle = Bundle(
        path=Path(),
        manifest={"version": "unsaved", "models": {}},
        spec=artifacts.spec,
        calibrators=artifacts.calibrators,
        blend=artifacts.blend,
        metrics=artifacts.metrics,
    )
    if artifacts.xgb_ubj is not None:
        from riskml.models.xgb import from_ubj

        bundle.booster = from_ubj(artifacts.xgb_ubj)
    if artifacts.seq_weights is not None and artifacts.seq_architecture is not None:
        from riskml.models.sequence import load_model

        bundle.seq_model = load_model(artifacts.seq_architecture, artifacts.seq_weights)
    return bundle


def raw_scores(bundle: Bundle, inputs: ModelInputs) -> dict[str, np.ndarray]:
    """Each blended model's uncalibrated probability."""
    out: dict[str, np.ndarray] = {}
    if "xgb" in bundle.blend.models:
        from riskml.models.xgb import predict

        out["xgb"] = predict(bundle.booster, inputs.tabular)
    if "sequence" in bundle.blend.models:
        from riskml.models.sequence import predict_proba

        if inputs.sequence is None:
            raise ValueError("the bundle's sequence model needs sequence features")
        out["sequence"] = predict_proba(bundle.seq_model, inputs.tabular, inputs.sequence)
    return out


def score_inputs(bundle: Bundle, inputs: ModelInputs) -> dict[str, np.ndarray]:
    """Raw, calibrated and blended probabilities: ``{"xgb", "xgb_calibrated", ..., "score"}``."""
    raw = raw_scores(bundle, inputs)
    calibrated = {m: bundle.calibrators[m](p) for m, p in raw.items()}
    out = dict(raw)
    out.update({f"{m}_calibrated": p for m, p in calibrated.items()})
    out["score"] = bundle.blend(calibrated)
    return out


def score(bundle: Bundle, frame: Any) -> np.ndarray:
    """Calibrated ensemble fraud probability for every row of a polars/pandas frame."""
    inputs = extract_inputs(frame, bundle.spec)
    return score_inputs(bundle, inputs)["score"]


def find_bundle(root: Path | str) -> Path:
    """The bundle directory under an artifact directory (``<root>/<name>/<version>``) or root."""
    root = Path(root)
    if (root / MANIFEST).is_file():
        return root
    found = sorted(p.parent for p in root.glob(f"*/*/{MANIFEST}"))
    if len(found) != 1:
        raise BundleIntegrityError(f"expected one bundle under {root}, found {len(found)}")
    return found[0]
