"""Credit bundles: the PD model (``credit-pd``) and the offer ranker (``credit-offers``) as
registry bundles of the line ``credit``.

Both are written by :func:`riskml.models.bundle.save_line_bundle` (one manifest listing every
file's sha256, atomic, refused by the fraud loader by name) and loaded by
:func:`load_credit_bundle` after :func:`riskml.models.bundle.verify_line_bundle` (against the
digest the registry pinned, when given)::

    <root>/<name>/<version>/
        manifest.json            the bundle manifest (line credit, models, required, files{sha256})
        model/...                the model's own files, as its ``to_files`` / ``to_bytes`` writes
                                 them (PD: pd_model.json [+ gbdt.ubj] and its manifest, kept as
                                 model/model_manifest.json: a bundle holds one manifest.json)
        metrics.json             the evaluation figures of the run that trained it
        reference.json           what later checks compare against: held-out vintages (or months),
                                 the development score distribution, the data it was trained on
        training_config.json     the configuration that produced it

:func:`load_credit_bundle` rebuilds the model with the model's own loader
(:meth:`~riskml.models.credit.pd.PDModel.from_files`,
:meth:`~riskml.models.credit.ranking.OfferRanker.from_bytes`), which checks its files again.
No pickle anywhere.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from riskml.models.bundle import (
    MANIFEST,
    BundleIntegrityError,
    save_line_bundle,
    verify_line_bundle,
)

if TYPE_CHECKING:  # pragma: no cover
    from riskml.models.credit.pd import PDModel
    from riskml.models.credit.ranking import OfferRanker

LINE = "credit"
#: Registry names of the two credit models (``models:/credit-pd@champion``, ...).
PD_NAME = "credit-pd"
OFFERS_NAME = "credit-offers"
NAMES = (PD_NAME, OFFERS_NAME)
MODEL_DIR = "model"
#: Where a model's own ``manifest.json`` goes in the bundle (one manifest.json per bundle).
MODEL_MANIFEST = "model_manifest.json"
METRICS_FILE = "metrics.json"
REFERENCE_FILE = "reference.json"
CONFIG_FILE = "training_config.json"
#: The model document each bundle must hold (besides metrics, reference and config).
MODEL_DOCUMENT = {PD_NAME: "pd_model.json", OFFERS_NAME: "offer_ranker.json"}

Kind = Literal["pd", "offers"]


@dataclass
class CreditBundle:
    """A loaded, verified credit bundle."""

    path: Path
    manifest: dict[str, Any]
    model: Any  # PDModel (credit-pd) | OfferRanker (credit-offers)
    metrics: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def kind(self) -> Kind:
        return "pd" if self.name == PD_NAME else "offers"


def _model_files(model: Any) -> tuple[str, dict[str, bytes], dict[str, str]]:
    """(bundle name, the model's files by name, the manifest's model entry) of a PD model or
    an offer ranker, from the model's own writer."""
    from riskml.models.credit.pd import PDModel
    from riskml.models.credit.ranking import OfferRanker

    if isinstance(model, PDModel):
        with tempfile.TemporaryDirectory(prefix="credit-pd-") as tmp:
            model.to_files(tmp)
            files = {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}
        entry = {"kind": f"credit-pd-{model.kind}", "file": f"{MODEL_DIR}/pd_model.json"}
        if "gbdt.ubj" in files:
            entry["booster"] = f"{MODEL_DIR}/gbdt.ubj"
        return PD_NAME, files, entry
    if isinstance(model, OfferRanker):
        files = dict(model.to_bytes())
        from riskml.models.credit.ranking import META_FILE, RANKER_FILE, REWARD_FILE

        entry = {
            "kind": "credit-offer-ranker",
            "file": f"{MODEL_DIR}/{META_FILE}",
            "reward": f"{MODEL_DIR}/{REWARD_FILE}",
            "ranker": f"{MODEL_DIR}/{RANKER_FILE}",
        }
        return OFFERS_NAME, files, entry
    raise TypeError(f"not a credit model: {type(model).__name__} (a PDModel or an OfferRanker)")


def save_credit_bundle(
    root: Path | str,
    model: PDModel | OfferRanker,
    *,
    metrics: Mapping[str, Any] | None = None,
    reference: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    version: str | None = None,
) -> Path:
    """Write ``model`` as a credit bundle under ``<root>/<credit-pd | credit-offers>/<version>/``
    (atomic, sha256 of every file in the manifest) and return its path."""
    name, model_files, entry = _model_files(model)
    files: dict[str, bytes | Mapping[str, Any] | list[Any]] = {}
    for file_name, data in model_files.items():
        target = MODEL_MANIFEST if file_name == MANIFEST else file_name
        files[f"{MODEL_DIR}/{target}"] = data
    files[METRICS_FILE] = dict(metrics or {})
    files[REFERENCE_FILE] = dict(reference or {})
    files[CONFIG_FILE] = dict(config or {})
    required = [f"{MODEL_DIR}/{MODEL_DOCUMENT[name]}", METRICS_FILE, REFERENCE_FILE, CONFIG_FILE]
    return save_line_bundle(
        root,
        name,
        line=LINE,
        files=files,
        models={"pd" if name == PD_NAME else "offers": entry},
        required=required,
        version=version,
    )


def load_credit_bundle(
    path: Path | str, digest: str | None = None, *, nthread: int = 1
) -> CreditBundle:
    """Verify (every file against the manifest; the manifest against ``digest`` when given) and
    load a credit bundle; :class:`~riskml.models.bundle.BundleIntegrityError` when it is not
    whole, not a credit bundle, or its model does not load."""
    import json

    path = Path(path)
    manifest = verify_line_bundle(path, LINE, digest=digest)
    name = str(manifest.get("name"))
    if name not in NAMES:
        raise BundleIntegrityError(f"{path}: a credit bundle named {name!r}, not one of {NAMES}")
    try:
        docs = {
            key: json.loads((path / file).read_text())
            for key, file in (
                ("metrics", METRICS_FILE),
                ("reference", REFERENCE_FILE),
                ("config", CONFIG_FILE),
            )
        }
    except (OSError, ValueError) as exc:
        raise BundleIntegrityError(f"{path}: malformed bundle content ({exc})") from exc
    model_dir = path / MODEL_DIR
    try:
        model = _load_model(name, model_dir, nthread=nthread)
    except BundleIntegrityError:
        raise
    except Exception as exc:  # the model's own loader refuses what it cannot read
        raise BundleIntegrityError(f"{path}: the {name} model does not load ({exc})") from exc
    return CreditBundle(path=path, manifest=manifest, model=model, **docs)


def _load_model(name: str, model_dir: Path, *, nthread: int) -> Any:
    files = {p.name: p for p in sorted(model_dir.iterdir()) if p.is_file()}
    if name == PD_NAME:
        from riskml.models.credit.pd import PDModel

        # the PD model's loader reads its own manifest.json beside its files
        with tempfile.TemporaryDirectory(prefix="credit-pd-") as tmp:
            for file_name, src in files.items():
                target = MANIFEST if file_name == MODEL_MANIFEST else file_name
                shutil.copyfile(src, Path(tmp) / target)
            return PDModel.from_files(tmp)
    from riskml.models.credit.ranking import OfferRanker

    return OfferRanker.from_bytes({n: p.read_bytes() for n, p in files.items()}, nthread=nthread)


def bundle_name(path: Path | str) -> str:
    """The registry name a verified credit bundle registers under (``credit-pd`` |
    ``credit-offers``)."""
    manifest = verify_line_bundle(path, LINE)
    name = str(manifest.get("name"))
    if name not in NAMES:
        raise BundleIntegrityError(f"{path}: a credit bundle named {name!r}, not one of {NAMES}")
    return name


__all__ = [
    "LINE",
    "NAMES",
    "OFFERS_NAME",
    "PD_NAME",
    "CreditBundle",
    "bundle_name",
    "load_credit_bundle",
    "save_credit_bundle",
]
