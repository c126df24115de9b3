"""The disputes bundle (``disputes-outcome``, line ``disputes``): everything that assesses a
dispute, as one registry bundle.

Written by :func:`riskml.models.bundle.save_line_bundle` (one manifest listing every file's
sha256, atomic, refused by the fraud loader by name) and loaded by :func:`load_disputes_bundle`
after :func:`riskml.models.bundle.verify_line_bundle` (against the digest the registry pinned,
when given)::

    <root>/disputes-outcome/<version>/
        manifest.json             the bundle manifest (line disputes, models, required, sha256s)
        model/outcome_model.json  the outcome model: feature contract, parameters, calibrator
        model/outcome.ubj         its XGBoost booster (UBJSON)
        model/model_manifest.json the outcome model's own manifest (OutcomeModel.to_files)
        reason.json               the reason-family classifier of the customer's message
                                  (TF-IDF + logistic regression as JSON arrays)
        decision.json             the policy (economics, review rules) and the compelling-
                                  evidence rule the model was trained with
        extraction.json           how documents are read (extractor, OCR mode)
        baseline.json             the rules baseline's calibrator (requirement score -> P(win))
        metrics.json              the figures of the run that trained it
        reference.json            what later checks compare against (cut-off, held-out window)
        training_config.json      the configuration that produced it

No pickle anywhere: the booster is UBJSON, every other file JSON that its own loader checks.
:meth:`DisputesBundle.assess` is :func:`riskml.models.disputes.assess_dispute` with the bundle's
model, policy and rule, so serving, the CLI and the demo decide exactly as the backtest does.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from riskml.features.disputes.compelling import CompellingRule
from riskml.models.bundle import (
    MANIFEST,
    BundleIntegrityError,
    save_line_bundle,
    verify_line_bundle,
)
from riskml.models.disputes.policy import PolicyConfig

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from riskml.data.disputes.evidence import Evidence, ExtractionResult
    from riskml.features.disputes.reason import ReasonClassifier
    from riskml.features.disputes.text import DocumentText
    from riskml.models.calibration import Calibrator
    from riskml.models.disputes import DisputeAssessment
    from riskml.models.disputes.outcome import OutcomeModel

LINE = "disputes"
#: Registry name of the disputes bundle (``models:/disputes-outcome@champion``).
NAME = "disputes-outcome"
MODEL_DIR = "model"
#: Where the outcome model's own ``manifest.json`` goes (a bundle holds one manifest.json).
MODEL_MANIFEST = "model_manifest.json"
MODEL_DOCUMENT = "outcome_model.json"
REASON_FILE = "reason.json"
DECISION_FILE = "decision.json"
EXTRACTION_FILE = "extraction.json"
BASELINE_FILE = "baseline.json"
METRICS_FILE = "metrics.json"
REFERENCE_FILE = "reference.json"
CONFIG_FILE = "training_config.json"
REQUIRED = (
    f"{MODEL_DIR}/{MODEL_DOCUMENT}",
    REASON_FILE,
    DECISION_FILE,
    EXTRACTION_FILE,
    BASELINE_FILE,
    METRICS_FILE,
    REFERENCE_FILE,
    CONFIG_FILE,
)


class ExtractionConfig(BaseModel):
    """How the bundle's users read a dispute's documents. The LLM's address, key and model are
    never in a bundle: they come from the ``RISKML_LLM_*`` settings of the process."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    extractor: Literal["layout", "rules", "llm"] = Field(
        "layout",
        description="layout (the rules and the learned layout model: offline, deterministic) | "
        "rules (the rules alone) | llm (RISKML_LLM_* settings).",
    )
    ocr: Literal["auto", "never", "always"] = Field(
        "auto", description="OCR pages without a text layer (auto), never, or every page."
    )
    dpi: int | None = Field(
        None, ge=72, le=600, description="OCR resolution (None: the scan's own, 150-400 dpi)."
    )
    lang: str = Field("eng", min_length=1, max_length=32, description="tesseract language(s).")

    def read(self, sources: list[Any]) -> list[DocumentText]:
        """:func:`riskml.features.disputes.text.extract_texts` with these settings."""
        from riskml.features.disputes.text import DocumentText, extract_text

        return [
            s
            if isinstance(s, DocumentText)
            else extract_text(s, ocr=self.ocr, dpi=self.dpi, lang=self.lang)
            for s in sources
        ]

    def extractor_instance(self) -> Any:
        """The configured :class:`~riskml.features.disputes.extract.Extractor`."""
        from riskml.features.disputes.extractors import make_extractor

        return make_extractor(self.extractor)


class DecisionConfig(BaseModel):
    """``decision.json``: the policy and the compelling-evidence rule."""

    model_config = ConfigDict(extra="forbid")

    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    rule: CompellingRule = Field(default_factory=CompellingRule)


@dataclass
class DisputesBundle:
    """A loaded, verified disputes bundle."""

    path: Path
    manifest: dict[str, Any]
    model: OutcomeModel
    reason: ReasonClassifier
    decision: DecisionConfig
    extraction: ExtractionConfig
    baseline: Calibrator
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
    def policy(self) -> PolicyConfig:
        return self.decision.policy

    @property
    def rule(self) -> CompellingRule:
        return self.decision.rule

    def extract(self, documents: list[Any]) -> ExtractionResult:
        """The evidence in one case's documents (paths, PDF bytes or read
        :class:`~riskml.features.disputes.text.DocumentText`), read as :attr:`extraction`
        says."""
        from riskml.features.disputes.extractors import extract_documents

        texts = self.extraction.read(list(documents))
        return extract_documents(texts, self.extraction.extractor_instance())

    def reason_family(self, message: str) -> str | None:
        """The reason family the customer's message reads as (None for an empty message)."""
        if not message or not message.strip():
            return None
        return self.reason.predict([message])[0]

    def assess(
        self,
        dispute: Mapping[str, Any],
        evidence: ExtractionResult | Evidence,
        *,
        history: pl.DataFrame | None = None,
        prior_disputes: pl.DataFrame | None = None,
        policy: PolicyConfig | None = None,
        packet: bool = True,
        generated_at: Any = None,
    ) -> DisputeAssessment:
        """:func:`riskml.models.disputes.assess_dispute` with this bundle's model, policy
        (``policy`` overrides it) and compelling-evidence rule."""
        from riskml.models.disputes import assess_dispute

        return assess_dispute(
            dispute,
            evidence,
            self.model,
            history=history,
            prior_disputes=prior_disputes,
            policy=policy or self.policy,
            rule=self.rule,
            packet=packet,
            generated_at=generated_at,
        )


def save_disputes_bundle(
    root: Path | str,
    model: OutcomeModel,
    *,
    reason: ReasonClassifier,
    baseline: Calibrator,
    decision: DecisionConfig | None = None,
    extraction: ExtractionConfig | None = None,
    metrics: Mapping[str, Any] | None = None,
    reference: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    version: str | None = None,
) -> Path:
    """Write a calibrated outcome model with its reason classifier, rules-baseline calibrator,
    policy, rule and extraction settings as a ``disputes-outcome`` bundle under
    ``<root>/disputes-outcome/<version>/`` (atomic, sha256 of every file in the manifest)."""
    from riskml.models.bundle import finite_json

    if model.calibrator is None:
        raise ValueError("the outcome model is not calibrated: calibrate it before bundling")
    files: dict[str, bytes | Mapping[str, Any] | list[Any]] = {}
    with tempfile.TemporaryDirectory(prefix="disputes-outcome-") as tmp:
        model.to_files(tmp)
        for p in sorted(Path(tmp).iterdir()):
            target = MODEL_MANIFEST if p.name == MANIFEST else p.name
            files[f"{MODEL_DIR}/{target}"] = p.read_bytes()
    files[REASON_FILE] = reason.to_dict()
    files[DECISION_FILE] = (decision or DecisionConfig()).model_dump(mode="json")
    files[EXTRACTION_FILE] = (extraction or ExtractionConfig()).model_dump(mode="json")
    files[BASELINE_FILE] = baseline.to_json()
    files[METRICS_FILE] = finite_json(dict(metrics or {}))
    files[REFERENCE_FILE] = finite_json(dict(reference or {}))
    files[CONFIG_FILE] = finite_json(dict(config or {}))
    from riskml.models.disputes.outcome import BOOSTER_FILE

    entry = {
        "kind": "disputes-outcome-xgboost",
        "file": f"{MODEL_DIR}/{MODEL_DOCUMENT}",
        "booster": f"{MODEL_DIR}/{BOOSTER_FILE}",
        "reason": REASON_FILE,
    }
    return save_line_bundle(
        root,
        NAME,
        line=LINE,
        files=files,
        models={"outcome": entry},
        required=REQUIRED,
        version=version,
    )


def load_disputes_bundle(
    path: Path | str, digest: str | None = None, *, nthread: int = 1
) -> DisputesBundle:
    """Verify (every file against the manifest; the manifest against ``digest`` when given) and
    load a disputes bundle; :class:`~riskml.models.bundle.BundleIntegrityError` when it is not
    whole, not a disputes bundle, or a part does not load."""
    from riskml.features.disputes.reason import ReasonClassifier
    from riskml.models.calibration import Calibrator

    path = Path(path)
    manifest = verify_line_bundle(path, LINE, digest=digest)
    if (name := str(manifest.get("name"))) != NAME:
        raise BundleIntegrityError(f"{path}: a disputes bundle named {name!r}, not {NAME!r}")
    try:
        docs = {
            key: json.loads((path / file).read_text())
            for key, file in (
                ("metrics", METRICS_FILE),
                ("reference", REFERENCE_FILE),
                ("config", CONFIG_FILE),
            )
        }
        reason = ReasonClassifier.from_dict(json.loads((path / REASON_FILE).read_text()))
        decision = DecisionConfig.model_validate_json((path / DECISION_FILE).read_text())
        extraction = ExtractionConfig.model_validate_json((path / EXTRACTION_FILE).read_text())
        baseline = Calibrator.from_json(json.loads((path / BASELINE_FILE).read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleIntegrityError(f"{path}: malformed bundle content ({exc})") from exc
    try:
        model = _load_model(path / MODEL_DIR, nthread=nthread)
    except Exception as exc:  # the model's own loader refuses what it cannot read
        raise BundleIntegrityError(f"{path}: the outcome model does not load ({exc})") from exc
    if model.calibrator is None:
        raise BundleIntegrityError(f"{path}: the outcome model is not calibrated")
    return DisputesBundle(
        path=path,
        manifest=manifest,
        model=model,
        reason=reason,
        decision=decision,
        extraction=extraction,
        baseline=baseline,
        **docs,
    )


def _load_model(model_dir: Path, *, nthread: int) -> OutcomeModel:
    """:meth:`OutcomeModel.from_files` (which reads its own manifest.json beside its files)."""
    from riskml.models.disputes.outcome import OutcomeModel

    with tempfile.TemporaryDirectory(prefix="disputes-outcome-") as tmp:
        for src in sorted(model_dir.iterdir()):
            if src.is_file():
                target = MANIFEST if src.name == MODEL_MANIFEST else src.name
                shutil.copyfile(src, Path(tmp) / target)
        return OutcomeModel.from_files(tmp, nthread=nthread)


__all__ = [
    "LINE",
    "NAME",
    "DecisionConfig",
    "DisputesBundle",
    "ExtractionConfig",
    "load_disputes_bundle",
    "save_disputes_bundle",
]
