"""Training the dispute outcome model on what was known at a cut-off, and its rules baseline.

**Data** (:class:`DisputeDataset`): dispute records in ``opened_at`` order with each dispute's
evidence (the simulator's ground truth, or what an extractor read from the documents), the
feature matrix (:func:`riskml.features.disputes.features.build_features`), each dispute's
requirement report (:func:`riskml.models.disputes.policy.check_requirements`) and the rules
baseline's score, plus the simulator's true win probability when there is one.

**Split at a cut-off** ``c`` (:func:`split_at`): the *labelled* disputes are the represented
ones whose outcome was known at ``c`` (``outcome in {won, lost}`` and ``resolved_at <= c``) and
that were opened at least ``maturity_days`` before ``c`` (recent cases resolved early are the
quick wins: keeping them would bias the labels upwards). In ``opened_at`` order the earliest
go to **training**, the next ``valid_share`` of those to **early stopping**, and the latest
``calibration_share`` of the labelled to **calibration**. Nothing opened after ``c``, nothing
resolved after ``c``, is used.

**Rules baseline**: the requirement report's :meth:`~riskml.models.disputes.policy.
RequirementReport.rules_score` (required items met, supporting items at half weight, compelling
evidence on a fraud claim), mapped to a probability by a calibrator fitted on the same
calibration slice, so both are compared on equal terms.

:func:`train_outcome` trains one model at one cut-off (the backtest calls it per fold;
``cutoff=None`` uses everything known, for the model that is registered).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from riskml.data.disputes.evidence import Evidence, ExtractedField
from riskml.features.disputes.compelling import CompellingRule
from riskml.features.disputes.features import DisputeFeatures, build_features
from riskml.models.calibration import CalibrationError, Calibrator, Method, fit_calibrator
from riskml.models.disputes.outcome import (
    MODEL_FEATURES,
    OutcomeModel,
    OutcomeParams,
    fit_outcome_model,
)
from riskml.models.disputes.policy import (
    RequirementReport,
    check_requirements,
    with_requirement_features,
)

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from riskml.data.disputes.simulator import DisputeSet
    from riskml.features.disputes.extract import Extractor

EvidenceSource = Literal["truth", "rules"]
#: The rules score s in [0, 1] enters its calibrator as ``BASELINE_FLOOR + BASELINE_SPAN * s``
#: (a probability strictly inside (0, 1), so Platt's logit stays finite).
BASELINE_FLOOR = 0.05
BASELINE_SPAN = 0.9


class DisputeTrainingError(ValueError):
    """Too little data at a cut-off, or inconsistent inputs."""


class DisputeTrainingConfig(BaseModel):
    """How the outcome model is trained at a cut-off."""

    model_config = ConfigDict(extra="forbid")

    params: OutcomeParams = Field(default_factory=OutcomeParams)
    rule: CompellingRule = Field(default_factory=CompellingRule)
    maturity_days: float = Field(
        90.0, ge=0, description="Labelled disputes were opened at least this long before c."
    )
    calibration_share: float = Field(0.3, gt=0, lt=1)
    valid_share: float = Field(0.2, ge=0, lt=1, description="Of the training part: early stop.")
    min_train: int = Field(40, ge=2)
    min_calibration: int = Field(20, ge=2)
    baseline_calibration: Method = "platt"


@dataclass
class DisputeDataset:
    """Dispute records (``opened_at`` order) with evidence, features, requirement reports and
    rules scores aligned row by row; ``frame`` is the model's input (``dispute_id`` and
    :data:`~riskml.models.disputes.outcome.MODEL_FEATURES`)."""

    disputes: pl.DataFrame
    evidence: list[Evidence]
    features: DisputeFeatures
    requirements: list[RequirementReport]
    rules_score: np.ndarray
    frame: pl.DataFrame
    p_true: np.ndarray | None = None
    fields: list[dict[str, ExtractedField]] | None = None
    source: str = "given"
    _matrix: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return self.disputes.height

    @property
    def ids(self) -> list[str]:
        return [str(i) for i in self.disputes.get_column("dispute_id").to_list()]

    @property
    def amounts(self) -> np.ndarray:
        return self.disputes.get_column("amount").to_numpy().astype(np.float64)

    @property
    def labels(self) -> np.ndarray:
        """1 won, 0 lost, -1 not represented or pending (eventual outcome: for evaluation)."""
        out = self.disputes.get_column("outcome").to_numpy()
        return np.where(out == "won", 1, np.where(out == "lost", 0, -1)).astype(np.int64)

    def opened(self) -> np.ndarray:
        return self.disputes.get_column("opened_at").to_numpy()

    def resolved(self) -> np.ndarray:
        return self.disputes.get_column("resolved_at").to_numpy()

    def matrix(self, rows: np.ndarray | None = None) -> np.ndarray:
        """The model's float32 input matrix (all rows, or ``rows``)."""
        if self._matrix is None:
            self._matrix = np.ascontiguousarray(
                self.frame.select(MODEL_FEATURES).to_numpy(), dtype=np.float32
            )
        return self._matrix if rows is None else self._matrix[rows]

    def families(self) -> np.ndarray:
        return self.disputes.get_column("reason_family").to_numpy()


def dispute_dataset(
    disputes: pl.DataFrame,
    evidence: Mapping[str, Evidence],
    history: pl.DataFrame | None = None,
    *,
    fields: Mapping[str, Mapping[str, ExtractedField]] | None = None,
    p_true: Mapping[str, float] | None = None,
    rule: CompellingRule | None = None,
    source: str = "given",
) -> DisputeDataset:
    """A :class:`DisputeDataset` from records, evidence by dispute id, the history and
    optionally extraction confidences and true win probabilities by dispute id."""
    import polars as pl

    rule = rule or CompellingRule()
    records = disputes.sort("opened_at", "dispute_id")
    ids = [str(i) for i in records.get_column("dispute_id").to_list()]
    if missing := [i for i in ids if i not in evidence]:
        raise DisputeTrainingError(f"no evidence for {len(missing)} disputes, e.g. {missing[0]}")
    feats = build_features(records, evidence, history, rule=rule)
    has_history = history is not None and history.height > 0
    reports: list[RequirementReport] = []
    for rec in records.select("dispute_id", "reason_code", "network").iter_rows(named=True):
        i = str(rec["dispute_id"])
        reports.append(
            check_requirements(
                rec["reason_code"],
                evidence[i],
                network=rec["network"],
                compelling=feats.compelling[i].qualifies if has_history else None,
                fields=None if fields is None else fields.get(i, {}),
            )
        )
    truth = None
    if p_true is not None:
        truth = np.array([float(p_true[i]) for i in ids], dtype=np.float64)
    if "reason_family" not in records.columns:  # pragma: no cover - records carry it
        raise DisputeTrainingError("dispute records lack reason_family")
    return DisputeDataset(
        disputes=records.with_columns(pl.col("amount").cast(pl.Float64)),
        evidence=[evidence[i] for i in ids],
        features=feats,
        requirements=reports,
        rules_score=np.array([r.rules_score() for r in reports], dtype=np.float64),
        frame=with_requirement_features(feats.frame, reports),
        p_true=truth,
        fields=None if fields is None else [dict(fields.get(i, {})) for i in ids],
        source=source,
    )


def extract_case_evidence(
    dispute_set: DisputeSet, extractor: Extractor | None = None
) -> tuple[dict[str, Evidence], dict[str, dict[str, ExtractedField]], dict[str, Any]]:
    """Run ``extractor`` (default: the layout extractor, the rules and the learned layout model)
    over every case's documents: evidence and field
    confidences by dispute id, and a small report (cases, documents, seconds)."""
    import time

    from riskml.features.disputes.layout import LayoutExtractor

    extractor = extractor or LayoutExtractor()
    evidence: dict[str, Evidence] = {}
    fields: dict[str, dict[str, ExtractedField]] = {}
    t0 = time.perf_counter()
    n_docs = 0
    for i in dispute_set.disputes.get_column("dispute_id").to_list():
        docs = dispute_set.case_documents(i)
        n_docs += len(docs)
        if not docs:
            evidence[i], fields[i] = Evidence(), {}
            continue
        result = extractor.extract(docs)
        evidence[i], fields[i] = result.evidence, dict(result.fields)
    report = {
        "extractor": getattr(extractor, "name", type(extractor).__name__),
        "cases": len(evidence),
        "documents": n_docs,
        "seconds": time.perf_counter() - t0,
    }
    return evidence, fields, report


def dataset_from_set(
    dispute_set: DisputeSet,
    *,
    evidence: EvidenceSource | Mapping[str, Evidence] = "truth",
    extractor: Extractor | None = None,
    rule: CompellingRule | None = None,
) -> DisputeDataset:
    """A :class:`DisputeDataset` from a simulated (or imported) dispute set, with the ground
    truth evidence (``"truth"``: the simulator's), the evidence the default extractor (the
    rules and the layout model; or ``extractor``) reads from the documents (``"rules"``: the
    name predates the layout model), or given evidence by dispute id.
    The simulator's ``p_win`` comes along when the set has one."""
    truth = dispute_set.truth
    fields = None
    source: str
    if isinstance(evidence, str):
        if evidence == "truth":
            if truth.height == 0 or "evidence" not in truth.columns:
                raise DisputeTrainingError("the dispute set has no ground-truth evidence")
            ev = {
                str(r["dispute_id"]): Evidence.model_validate_json(r["evidence"])
                for r in truth.select("dispute_id", "evidence").iter_rows(named=True)
            }
        elif evidence == "rules":
            ev, fields, _ = extract_case_evidence(dispute_set, extractor)
        else:
            raise DisputeTrainingError(f"unknown evidence source {evidence!r}: truth | rules")
        source = evidence
    else:
        ev, source = dict(evidence), "given"
    p_true = None
    if truth.height and "p_win" in truth.columns:
        p_true = {str(k): float(v) for k, v in truth.select("dispute_id", "p_win").iter_rows()}
    return dispute_dataset(
        dispute_set.disputes,
        ev,
        dispute_set.history if dispute_set.history.height else None,
        fields=fields,
        p_true=p_true,
        rule=rule,
        source=source,
    )


# --- split and training ------------------------------------------------------------------------


@dataclass
class OutcomeSplit:
    """Row indices (into the dataset) of one cut-off's training, early-stopping and
    calibration slices."""

    cutoff: dt.datetime
    train: np.ndarray
    valid: np.ndarray
    calibration: np.ndarray
    labelled: int
    skipped_immature: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff.isoformat(),
            "train_rows": int(self.train.size),
            "valid_rows": int(self.valid.size),
            "calibration_rows": int(self.calibration.size),
            "labelled_rows": self.labelled,
            "skipped_immature": self.skipped_immature,
        }


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def latest_known(dataset: DisputeDataset) -> dt.datetime:
    """The latest time the data knows of (last opening or resolution)."""
    d = dataset.disputes
    times = [d.get_column("opened_at").max(), d.get_column("resolved_at").max()]
    known = [t for t in times if isinstance(t, dt.datetime)]
    if not known:
        raise DisputeTrainingError("no disputes")
    return _utc(max(known))


def split_at(
    dataset: DisputeDataset, cutoff: dt.datetime | None, config: DisputeTrainingConfig
) -> OutcomeSplit:
    """The slices of ``dataset`` known at ``cutoff`` (module docstring)."""
    import polars as pl

    c = _utc(cutoff) if cutoff is not None else latest_known(dataset)
    d = dataset.disputes.with_row_index("_row")
    known = d.filter(
        pl.col("outcome").is_in(["won", "lost"])
        & pl.col("resolved_at").is_not_null()
        & (pl.col("resolved_at") <= c)
    )
    mature = known.filter(pl.col("opened_at") <= c - dt.timedelta(days=config.maturity_days))
    rows = mature.sort("opened_at", "dispute_id").get_column("_row").to_numpy().astype(np.int64)
    n = rows.size
    n_cal = round(n * config.calibration_share)
    n_fit = n - n_cal
    n_valid = round(n_fit * config.valid_share)
    train, valid, cal = rows[: n_fit - n_valid], rows[n_fit - n_valid : n_fit], rows[n_fit:]
    return OutcomeSplit(c, train, valid, cal, labelled=n, skipped_immature=known.height - n)


@dataclass
class OutcomeTrainingResult:
    """One cut-off's calibrated model, rules-baseline calibrator and what they were fit on."""

    model: OutcomeModel
    baseline: Calibrator
    split: OutcomeSplit
    info: dict[str, Any] = field(default_factory=dict)

    def baseline_probability(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(self.baseline(BASELINE_FLOOR + BASELINE_SPAN * np.asarray(scores)))


def fit_baseline(scores: np.ndarray, y: np.ndarray, method: Method = "platt") -> Calibrator:
    """The rules baseline's calibrator (Platt by default; strict isotonic when Platt cannot
    fit, e.g. the score does not rank the slice)."""
    raw = BASELINE_FLOOR + BASELINE_SPAN * np.asarray(scores, dtype=np.float64)
    try:
        return fit_calibrator(raw, y, method)
    except CalibrationError:
        return fit_calibrator(raw, y, "isotonic")


def train_outcome(
    dataset: DisputeDataset,
    cutoff: dt.datetime | None = None,
    config: DisputeTrainingConfig | None = None,
) -> OutcomeTrainingResult:
    """Train and calibrate the outcome model (and the rules baseline) on what was known at
    ``cutoff`` (None: everything). Raises :class:`DisputeTrainingError` when the slices are
    too small or hold one outcome only."""
    from riskml.metrics import MetricInputError, expected_calibration_error, roc_auc

    config = config or DisputeTrainingConfig()
    split = split_at(dataset, cutoff, config)
    y = dataset.labels
    fit_rows = np.concatenate([split.train, split.valid])
    if split.train.size < config.min_train or split.calibration.size < config.min_calibration:
        raise DisputeTrainingError(
            f"at {split.cutoff:%Y-%m-%d}: {split.train.size} training and "
            f"{split.calibration.size} calibration disputes with known outcomes (need "
            f"{config.min_train} and {config.min_calibration})"
        )
    for name, rows in (("training", split.train), ("calibration", split.calibration)):
        if np.unique(y[rows]).size < 2:
            raise DisputeTrainingError(
                f"at {split.cutoff:%Y-%m-%d}: the {name} slice holds one outcome only"
            )
    families = dataset.families()
    support = {
        str(f): int(n)
        for f, n in zip(*np.unique(families[fit_rows], return_counts=True), strict=True)
    }
    metadata = {
        "cutoff": split.cutoff.isoformat(),
        "evidence_source": dataset.source,
        "family_support": support,
        "split": split.as_dict(),
        "rule": config.rule.model_dump(mode="json"),
    }
    x = dataset.matrix()
    valid = split.valid if split.valid.size and np.unique(y[split.valid]).size == 2 else None
    model, info = fit_outcome_model(
        x[split.train],
        y[split.train],
        list(MODEL_FEATURES),
        config.params,
        x_valid=None if valid is None else x[valid],
        y_valid=None if valid is None else y[valid],
        metadata=metadata,
    )
    cal_y = y[split.calibration]
    model.calibrate(x[split.calibration], cal_y)
    baseline = fit_baseline(
        dataset.rules_score[split.calibration], cal_y, config.baseline_calibration
    )
    p_cal = model.predict(x[split.calibration])
    details: dict[str, Any] = dict(info)
    try:
        details["calibration_auc"] = roc_auc(cal_y, p_cal)
        details["calibration_ece"] = expected_calibration_error(cal_y, p_cal)
    except MetricInputError:  # pragma: no cover - both classes are checked above
        pass
    details["calibrator"] = model.calibrator.summary() if model.calibrator else None
    model.metadata["training"] = {k: v for k, v in details.items() if k != "calibrator"}
    return OutcomeTrainingResult(model=model, baseline=baseline, split=split, info=details)


def fold_cutoffs(
    dataset: DisputeDataset, n_folds: int, first_share: float = 0.5
) -> list[tuple[dt.datetime, dt.datetime]]:
    """``n_folds`` consecutive (cut-off, end of test window) pairs: the span of ``opened_at``
    after its first ``first_share`` is cut into equal test windows."""
    if n_folds < 1 or not 0 < first_share < 1:
        raise DisputeTrainingError("n_folds >= 1 and 0 < first_share < 1 are needed")
    opened = dataset.disputes.get_column("opened_at")
    start, end = opened.min(), opened.max()
    if not isinstance(start, dt.datetime) or not isinstance(end, dt.datetime) or start == end:
        raise DisputeTrainingError("the disputes need a span of opening times to backtest")
    first = start + (end - start) * first_share
    step = (end - first) / n_folds
    return [(_utc(first + step * k), _utc(first + step * (k + 1))) for k in range(n_folds)]


__all__ = [
    "DisputeDataset",
    "DisputeTrainingConfig",
    "DisputeTrainingError",
    "OutcomeSplit",
    "OutcomeTrainingResult",
    "dataset_from_set",
    "dispute_dataset",
    "extract_case_evidence",
    "fit_baseline",
    "fold_cutoffs",
    "split_at",
    "train_outcome",
]
