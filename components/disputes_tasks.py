"""The disputes line's tasks: what the kfp components of :mod:`components.disputes`, the
``riskml disputes`` commands and the disputes demo run, so each runs the same code.

Glue of the core packages only (:mod:`riskml.data.disputes`, :mod:`riskml.features.disputes`,
:mod:`riskml.training.disputes`, :mod:`riskml.evaluation.disputes`,
:mod:`riskml.models.disputes.bundle`, :mod:`riskml.registry`): no kfp import (as
:mod:`components.credit_tasks`), heavy imports inside the functions.

What passes between the tasks (each a directory, a kfp artifact in the pipeline):

* a **dispute set** (:class:`~riskml.data.disputes.simulator.DisputeSet`: simulated or imported);
* **evidence** (``evidence.parquet``: per dispute the extracted :class:`Evidence` and each
  field's confidence and provenance, as JSON; ``summary.json``);
* **features** (``features.parquet``: ``dispute_id``, the outcome model's input columns, the rules
  baseline's score, the simulator's true win probability where known);
* the **outcome model** before calibration (:meth:`OutcomeModel.to_files` + ``split.json``: the
  cut-off, the held-out window and the dispute ids of each training slice);
* the **bundle** (:mod:`riskml.models.disputes.bundle`).

The held-out window: the last ``test_share`` of the span of opening times. The model is trained
and calibrated on what was known at its start (:func:`riskml.training.disputes.train_outcome`),
reported, and gated against the registry's champion on the disputes opened in it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from riskml.models.disputes.bundle import DecisionConfig, ExtractionConfig
from riskml.models.disputes.policy import PolicyConfig
from riskml.training.disputes import DisputeTrainingConfig

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from riskml.data.disputes.evidence import Evidence, ExtractedField
    from riskml.data.disputes.simulator import DisputeConfig
    from riskml.models.disputes.bundle import DisputesBundle
    from riskml.training.disputes import DisputeDataset

#: Dispute set sizes of the pipeline and the commands (overrides of
#: :class:`~riskml.data.disputes.simulator.DisputeConfig`; no scanned documents: the outcome
#: model needs volume, not OCR, and the extraction corpus has its own scans). ``tiny`` leaves
#: about 240 represented disputes with known outcomes before the held-out window (fewer leave
#: the booster without a split); ``demo`` is
#: :func:`riskml.evaluation.disputes.evaluation_dispute_config` (1,500 disputes over 400 days).
DISPUTE_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "n_disputes": 800,
        "scanned_share": 0.0,
        "transactions": {"n_customers": 700, "n_terminals": 250, "days": 400, "seed": 7},
    },
    "demo": {},
}
EVIDENCE_FILE = "evidence.parquet"
FEATURES_FILE = "features.parquet"
SUMMARY_FILE = "summary.json"
SPLIT_FILE = "split.json"
#: The gate's metrics (higher is better) on the held-out window.
GATE_METRICS = ("auc", "ap", "policy_ev_per_dispute")
#: The flat figures a training / backtest run logs (besides the fold tables).
BACKTEST_HEADLINE = (
    "outcome_auc",
    "outcome_ap",
    "outcome_ece",
    "rules_baseline_auc",
    "rules_baseline_ap",
    "rules_baseline_ece",
    "policy_ev_per_dispute",
    "always_represent_ev_per_dispute",
    "always_refund_ev_per_dispute",
    "rules_policy_ev_per_dispute",
)


class DisputesRunConfig(BaseModel):
    """What a disputes training run is told (``train_config_json``): the outcome model's
    training, the policy, the held-out window and the backtest's folds."""

    model_config = ConfigDict(extra="forbid")

    training: DisputeTrainingConfig = Field(default_factory=DisputeTrainingConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    extraction: ExtractionConfig = Field(default_factory=ExtractionConfig)
    test_share: float = Field(
        0.25, gt=0, lt=1, description="Last share of the opening span held out (gate, report)."
    )
    n_folds: int = Field(3, ge=1, description="Backtest folds.")
    first_share: float = Field(0.5, gt=0, lt=1, description="Opening span before fold 1.")

    @classmethod
    def parse(cls, doc: Mapping[str, Any] | str | None) -> DisputesRunConfig:
        """From a mapping, JSON text or nothing (the defaults)."""
        if isinstance(doc, str):
            doc = json.loads(doc) if doc.strip() else None
        return cls.model_validate(dict(doc or {}))


# -- the dispute set ----------------------------------------------------------------------------


def dispute_config(size: str = "tiny", seed: int = 11, **overrides: Any) -> DisputeConfig:
    """The :class:`~riskml.data.disputes.simulator.DisputeConfig` of a named size."""
    from riskml.data.disputes.simulator import DisputeConfig

    if size not in DISPUTE_SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {', '.join(DISPUTE_SIZES)}")
    if size == "demo":
        from riskml.evaluation.disputes import evaluation_dispute_config

        return evaluation_dispute_config(seed=seed, **overrides)
    return DisputeConfig.model_validate({**DISPUTE_SIZES[size], "seed": seed, **overrides})


def dispute_set_task(
    out: Path,
    *,
    size: str = "tiny",
    seed: int = 11,
    source_uri: str = "",
    documents_uri: str = "",
    mapping: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Simulate a dispute set of ``size`` into ``out`` — or import the dispute records at
    ``source_uri`` with their documents under ``documents_uri``
    (:func:`riskml.data.disputes.importer.import_disputes`). Returns its summary."""
    if source_uri:
        from riskml.data.disputes.importer import DisputeImportMapping, import_disputes

        result = import_disputes(
            Path(source_uri),
            Path(out),
            DisputeImportMapping.model_validate(dict(mapping or {})),
            documents_dir=Path(documents_uri) if documents_uri else None,
            overwrite=True,
        )
        keep = ("rows_in", "accepted", "quarantined", "documents")
        return {
            "source": "import",
            "source_uri": source_uri,
            **result.model_dump(include=set(keep)),
        }
    from riskml.data.disputes.simulator import simulate_disputes

    dispute_set = simulate_disputes(dispute_config(size, seed), Path(out))
    m = dispute_set.manifest
    return {
        "source": "simulate",
        "size": size,
        "seed": seed,
        "disputes": int(m["disputes"]),
        "documents": int(m["documents"]),
        "scanned_documents": int(m["scanned_documents"]),
        **{f"outcome_{k}": int(v) for k, v in m["outcomes"].items()},
    }


def read_set(path: Path) -> Any:
    from riskml.data.disputes.simulator import DisputeSet

    return DisputeSet.read(Path(path))


# -- evidence -----------------------------------------------------------------------------------


def extract_task(
    set_dir: Path, out: Path, *, extraction: ExtractionConfig | None = None
) -> dict[str, Any]:
    """Read every dispute's documents (:class:`ExtractionConfig`: rules by default) and write
    ``evidence.parquet`` under ``out``. With the simulator's ground truth, the per-case
    precision / recall / F1 against it are in the summary (``extraction_f1``)."""
    import time

    import polars as pl

    from riskml.data.disputes.evidence import Evidence, score
    from riskml.training.disputes import extract_case_evidence

    extraction = extraction or ExtractionConfig()
    dispute_set = read_set(set_dir)
    t0 = time.perf_counter()
    reader = _ConfiguredExtractor(extraction)
    evidence, fields, report = extract_case_evidence(dispute_set, reader)
    seconds = time.perf_counter() - t0
    rows = [
        {
            "dispute_id": i,
            "evidence": evidence[i].model_dump_json(exclude_none=True),
            "fields": json.dumps(
                {k: f.model_dump(mode="json") for k, f in fields.get(i, {}).items()}
            ),
        }
        for i in evidence
    ]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    schema = {"dispute_id": pl.String, "evidence": pl.String, "fields": pl.String}
    pl.DataFrame(rows, schema=schema).write_parquet(out / EVIDENCE_FILE)
    summary: dict[str, Any] = {
        "extractor": extraction.extractor,
        "cases": report["cases"],
        "documents": report["documents"],
        "seconds": round(seconds, 3),
        "documents_per_second": round(report["documents"] / seconds, 2) if seconds else None,
        "fields_found": sum(len(e.present()) for e in evidence.values()),
    }
    truth = dispute_set.truth
    if truth.height and "evidence" in truth.columns:
        pairs = [
            (evidence[str(r["dispute_id"])], Evidence.model_validate_json(r["evidence"]))
            for r in truth.select("dispute_id", "evidence").iter_rows(named=True)
            if str(r["dispute_id"]) in evidence
        ]
        total = score(pairs).total
        summary.update(
            extraction_precision=total.precision,
            extraction_recall=total.recall,
            extraction_f1=total.f1,
        )
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


class _ConfiguredExtractor:
    """An :class:`~riskml.features.disputes.extract.Extractor` reading documents as an
    :class:`ExtractionConfig` says (OCR mode, resolution) before its extractor runs."""

    def __init__(self, config: ExtractionConfig) -> None:
        self.config = config
        self.inner = config.extractor_instance()
        self.name = str(self.inner.name)

    def extract(self, documents: Any) -> Any:
        return self.inner.extract(self.config.read(list(documents)))


def read_evidence(
    evidence_dir: Path,
) -> tuple[dict[str, Evidence], dict[str, dict[str, ExtractedField]]]:
    """The evidence and field confidences by dispute id that :func:`extract_task` wrote."""
    import polars as pl

    from riskml.data.disputes.evidence import Evidence, ExtractedField

    frame = pl.read_parquet(Path(evidence_dir) / EVIDENCE_FILE)
    evidence: dict[str, Evidence] = {}
    fields: dict[str, dict[str, ExtractedField]] = {}
    for row in frame.iter_rows(named=True):
        i = str(row["dispute_id"])
        evidence[i] = Evidence.model_validate_json(row["evidence"])
        fields[i] = {
            k: ExtractedField.model_validate(v) for k, v in json.loads(row["fields"]).items()
        }
    return evidence, fields


# -- features and the dataset -------------------------------------------------------------------


def load_dataset(
    set_dir: Path,
    evidence_dir: Path,
    features_dir: Path | None = None,
    *,
    config: DisputesRunConfig | None = None,
) -> DisputeDataset:
    """The :class:`~riskml.training.disputes.DisputeDataset` of a dispute set with the evidence
    :func:`extract_task` read (:func:`riskml.training.disputes.dispute_dataset`). With
    ``features_dir`` its feature frame must equal the one :func:`features_task` recorded
    (the model trains on the features the pipeline shows)."""
    from riskml.training.disputes import dispute_dataset

    config = config or DisputesRunConfig()
    dispute_set = read_set(set_dir)
    evidence, fields = read_evidence(evidence_dir)
    truth = dispute_set.truth
    p_true = (
        {str(k): float(v) for k, v in truth.select("dispute_id", "p_win").iter_rows()}
        if truth.height and "p_win" in truth.columns
        else None
    )
    dataset = dispute_dataset(
        dispute_set.disputes,
        evidence,
        dispute_set.history if dispute_set.history.height else None,
        fields=fields,
        p_true=p_true,
        rule=config.training.rule,
        source=f"extracted:{config.extraction.extractor}",
    )
    if features_dir is not None:
        _check_features(dataset, Path(features_dir))
    return dataset


def _feature_frame(dataset: DisputeDataset) -> Any:
    import polars as pl

    from riskml.models.disputes.outcome import MODEL_FEATURES

    out = dataset.frame.select("dispute_id", *MODEL_FEATURES).with_columns(
        pl.Series("rules_score", dataset.rules_score, dtype=pl.Float64),
        pl.Series(
            "p_true",
            dataset.p_true if dataset.p_true is not None else [None] * len(dataset),
            dtype=pl.Float64,
        ),
    )
    return out


def _check_features(dataset: DisputeDataset, features_dir: Path) -> None:
    import polars as pl
    from polars.testing import assert_frame_equal

    recorded = pl.read_parquet(features_dir / FEATURES_FILE)
    try:
        assert_frame_equal(_feature_frame(dataset), recorded, check_exact=True)
    except AssertionError as exc:
        raise ValueError(
            f"the features at {features_dir} are not those of this dispute set and evidence "
            f"({str(exc).splitlines()[0]})"
        ) from None


def features_task(
    set_dir: Path, evidence_dir: Path, out: Path, *, config: DisputesRunConfig | None = None
) -> dict[str, Any]:
    """The outcome model's features of every dispute (evidence, dispute, transaction, customer,
    compelling evidence, requirement report) as ``features.parquet`` under ``out``."""
    import numpy as np

    dataset = load_dataset(set_dir, evidence_dir, config=config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _feature_frame(dataset).write_parquet(out / FEATURES_FILE)
    labels = dataset.labels
    compelling = dataset.frame.get_column("ce_qualifies").to_numpy()
    summary = {
        "disputes": len(dataset),
        "features": len(dataset.frame.columns) - 1,
        "represented_with_outcome": int((labels >= 0).sum()),
        "won": int((labels == 1).sum()),
        "compelling_evidence": int(np.nansum(compelling)),
        "requirements_complete": int(sum(r.complete for r in dataset.requirements)),
        "mean_rules_score": float(np.mean(dataset.rules_score)) if len(dataset) else None,
    }
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# -- training, calibration, the bundle ----------------------------------------------------------


def holdout_window(dataset: DisputeDataset, test_share: float) -> tuple[dt.datetime, dt.datetime]:
    """(cut-off, end): the last ``test_share`` of the span of opening times."""
    from riskml.training.disputes import fold_cutoffs

    ((start, end),) = fold_cutoffs(dataset, 1, first_share=1.0 - test_share)
    return start, end


def holdout_rows(dataset: DisputeDataset, cutoff: dt.datetime, end: dt.datetime) -> np.ndarray:
    """Rows of the disputes opened in ``(cutoff, end]`` (as the backtest's test windows)."""
    import numpy as np

    opened = dataset.disputes.get_column("opened_at").to_list()
    return np.array(
        [i for i, t in enumerate(opened) if cutoff < t.astimezone(dt.UTC) <= end], np.int64
    )


def train_task(
    set_dir: Path,
    evidence_dir: Path,
    features_dir: Path,
    out: Path,
    *,
    config: DisputesRunConfig | None = None,
) -> dict[str, Any]:
    """Train the outcome model on what was known at the start of the held-out window
    (:func:`riskml.training.disputes.train_outcome`: booster on the earliest labelled disputes,
    early stopping on the next) and write it *before* calibration with ``split.json``: the
    calibrate task fits the calibrator on the split's later slice (the call ``train_outcome``
    makes, so the result is the same), as a step of its own."""
    from riskml.training.disputes import train_outcome

    config = config or DisputesRunConfig()
    dataset = load_dataset(set_dir, evidence_dir, features_dir, config=config)
    cutoff, end = holdout_window(dataset, config.test_share)
    result = train_outcome(dataset, cutoff, config.training)
    result.model.calibrator = None
    out = Path(out)
    result.model.to_files(out)
    ids = dataset.ids
    split = {
        "cutoff": cutoff.isoformat(),
        "test_end": end.isoformat(),
        **result.split.as_dict(),
        "train_ids": [ids[i] for i in result.split.train],
        "valid_ids": [ids[i] for i in result.split.valid],
        "calibration_ids": [ids[i] for i in result.split.calibration],
    }
    (out / SPLIT_FILE).write_text(json.dumps(split, indent=1) + "\n")
    info = {k: v for k, v in result.info.items() if isinstance(v, int | float)}
    info.pop("calibration_auc", None)
    info.pop("calibration_ece", None)
    return {"split": result.split.as_dict(), "info": info, "model_dir": str(out)}


def _rows(dataset: DisputeDataset, ids: list[str]) -> np.ndarray:
    import numpy as np

    index = {d: i for i, d in enumerate(dataset.ids)}
    if missing := [d for d in ids if d not in index]:
        raise ValueError(
            f"{len(missing)} disputes of the split are not in the data, e.g. {missing[0]}"
        )
    return np.array([index[d] for d in ids], dtype=np.int64)


def calibrate_task(
    set_dir: Path,
    evidence_dir: Path,
    features_dir: Path,
    model_dir: Path,
    out_root: Path,
    *,
    config: DisputesRunConfig | None = None,
) -> dict[str, Any]:
    """Calibrate the trained outcome model on its split's calibration slice
    (:meth:`OutcomeModel.calibrate`) and the rules baseline beside it
    (:func:`riskml.training.disputes.fit_baseline`), train the reason-family classifier on the
    messages opened before the cut-off, and write the ``disputes-outcome`` bundle under
    ``out_root`` with its held-out report. Returns ``bundle_dir``, ``name``, ``version``,
    ``metrics``."""
    import numpy as np
    import polars as pl

    from riskml.features.disputes.reason import ReasonClassifier, evaluate_reason
    from riskml.metrics import expected_calibration_error
    from riskml.models.disputes.bundle import load_disputes_bundle, save_disputes_bundle
    from riskml.models.disputes.outcome import OutcomeModel
    from riskml.training.disputes import fit_baseline

    config = config or DisputesRunConfig()
    dataset = load_dataset(set_dir, evidence_dir, features_dir, config=config)
    model = OutcomeModel.from_files(model_dir)
    split = json.loads((Path(model_dir) / SPLIT_FILE).read_text())
    cal = _rows(dataset, split["calibration_ids"])
    y = dataset.labels[cal]
    x = dataset.matrix(cal)
    raw = model.raw(x)
    model.calibrate(x, y)
    baseline = fit_baseline(dataset.rules_score[cal], y, config.training.baseline_calibration)
    calibration = {
        "calibration_rows": int(cal.size),
        "calibration_method": model.calibrator.method if model.calibrator else None,
        "calibration_ece_raw": expected_calibration_error(y, raw, n_bins=10),
        "calibration_ece": expected_calibration_error(y, model.predict(x), n_bins=10),
    }
    cutoff = dt.datetime.fromisoformat(split["cutoff"])
    end = dt.datetime.fromisoformat(split["test_end"])
    opened = dataset.disputes.get_column("opened_at")
    before = dataset.disputes.filter(opened <= pl.lit(cutoff))
    after = dataset.disputes.filter((opened > pl.lit(cutoff)) & (opened <= pl.lit(end)))
    reason = ReasonClassifier().fit(
        before.get_column("customer_message").to_list(),
        before.get_column("reason_family").to_list(),
    )
    reason_scores = (
        evaluate_reason(
            reason,
            after.get_column("customer_message").to_list(),
            after.get_column("reason_family").to_list(),
        ).as_dict()
        if after.height
        else {}
    )
    train_rows = _rows(dataset, split["train_ids"])
    p_train = model.predict(dataset.matrix(train_rows))
    reference = {
        "cutoff": split["cutoff"],
        "held_out": {"start": split["cutoff"], "end": split["test_end"]},
        "held_out_disputes": int(after.height),
        "split": {k: v for k, v in split.items() if not k.endswith("_ids")},
        "family_support": model.metadata.get("family_support"),
        "train_p_win_deciles": np.quantile(p_train, np.linspace(0, 1, 11)).tolist(),
        "data": str(set_dir),
    }
    metrics: dict[str, Any] = {
        **calibration,
        "training": model.metadata.get("training"),
        "reason_family_accuracy": reason_scores.get("reason_family_accuracy"),
        "reason_keyword_baseline_accuracy": reason_scores.get("keyword_baseline_accuracy"),
    }
    path = save_disputes_bundle(
        out_root,
        model,
        reason=reason,
        baseline=baseline,
        decision=DecisionConfig(policy=config.policy, rule=config.training.rule),
        extraction=config.extraction,
        metrics=metrics,
        reference=reference,
        config=config.model_dump(mode="json"),
    )
    held_out = holdout_report(load_disputes_bundle(path), dataset)
    flat = {
        **{k: v for k, v in calibration.items() if isinstance(v, int | float)},
        "reason_family_accuracy": reason_scores.get("reason_family_accuracy"),
        **{f"holdout_{k}": v for k, v in held_out.items() if isinstance(v, int | float)},
    }
    return {
        "bundle_dir": str(path),
        "name": path.parent.name,
        "version": path.name,
        "metrics": {k: v for k, v in flat.items() if v is not None},
        "holdout": held_out,
    }


def holdout_report(bundle: DisputesBundle, dataset: DisputeDataset) -> dict[str, Any]:
    """The bundle on the disputes of its held-out window in ``dataset``: AUC, AP, ECE and Brier
    of the model and of the rules baseline on the represented ones (their eventual outcome),
    and the expected value per dispute of the bundle's policy, "always represent" and "always
    refund" on every one (valued at the simulator's true win probability where the data has it,
    else at the observed outcome of the represented ones)."""
    import numpy as np

    from riskml.evaluation.disputes import (
        _outcome_metrics,
        _per_dispute,
        _policy_figures,
        policy_actions,
    )
    from riskml.training.disputes import BASELINE_FLOOR, BASELINE_SPAN

    held = bundle.reference["held_out"]
    rows = holdout_rows(
        dataset, dt.datetime.fromisoformat(held["start"]), dt.datetime.fromisoformat(held["end"])
    )
    out: dict[str, Any] = {"disputes": int(rows.size)}
    if rows.size == 0:
        return out
    p = bundle.model.predict(dataset.matrix(rows))
    b = np.asarray(bundle.baseline(BASELINE_FLOOR + BASELINE_SPAN * dataset.rules_score[rows]))
    labels = dataset.labels[rows]
    lab = labels >= 0
    model = _outcome_metrics(labels[lab], p[lab], 10)
    base = _outcome_metrics(labels[lab], b[lab], 10)
    out.update({k: model.get(k) for k in ("n", "win_rate", "auc", "ap", "ece", "brier")})
    out.update({f"rules_baseline_{k}": base.get(k) for k in ("auc", "ap", "ece", "brier")})
    if dataset.p_true is not None:
        value_rows, p_true = rows, dataset.p_true[rows]
        p_value = p
    else:
        value_rows, p_true = rows[lab], labels[lab].astype(np.float64)
        p_value = p[lab]
    if value_rows.size:
        actions = policy_actions(dataset, value_rows, p_value, bundle.model, bundle.policy)
        figures = _per_dispute(
            _policy_figures(actions, dataset.amounts[value_rows], p_true, p_value, bundle.policy)
        )
        out.update(
            {
                k: figures[k]
                for k in (
                    "policy_ev_per_dispute",
                    "always_represent_ev_per_dispute",
                    "always_refund_ev_per_dispute",
                    "perfect_ev_per_dispute",
                )
            }
        )
        out["actions"] = figures["actions"]
        out["value_source"] = "simulator_p_win" if dataset.p_true is not None else "observed"
    return out


# -- backtest, gate ----------------------------------------------------------------------------


def backtest_task(
    set_dir: Path,
    evidence_dir: Path,
    features_dir: Path,
    bundle_dir: Path,
    *,
    config: DisputesRunConfig | None = None,
) -> dict[str, Any]:
    """The time-ordered backtest (:func:`riskml.evaluation.disputes.backtest_outcome`: a model
    per fold trained on what was known at the fold's start, against the rules baseline; the
    policy against "always represent" and "always refund") and the bundle's held-out report.
    Returns ``metrics`` (flat), ``backtest``, ``holdout`` and ``html``."""
    from riskml.evaluation.disputes import DisputeEvaluationConfig, backtest_outcome
    from riskml.models.disputes.bundle import load_disputes_bundle

    config = config or DisputesRunConfig()
    dataset = load_dataset(set_dir, evidence_dir, features_dir, config=config)
    bundle = load_disputes_bundle(bundle_dir)
    evaluation = DisputeEvaluationConfig(
        n_folds=config.n_folds,
        first_share=config.first_share,
        training=config.training,
        policy=bundle.policy,
        extracted_evidence=False,
    )
    backtest = backtest_outcome(dataset, evaluation)
    held_out = holdout_report(bundle, dataset)
    metrics = backtest_metrics(backtest)
    metrics.update({f"bundle_{k}": v for k, v in held_out.items() if isinstance(v, int | float)})
    return {
        "metrics": {k: v for k, v in metrics.items() if v is not None},
        "backtest": backtest,
        "holdout": held_out,
        "html": backtest_html(bundle, backtest, held_out),
    }


def backtest_metrics(backtest: Mapping[str, Any]) -> dict[str, Any]:
    """The flat headline figures (:data:`BACKTEST_HEADLINE`) of a backtest."""
    outcome, base = backtest["outcome"], backtest["rules_baseline"]
    policy, rules = backtest["policy"], backtest["rules_policy"]
    return {
        "outcome_auc": outcome.get("auc"),
        "outcome_ap": outcome.get("ap"),
        "outcome_ece": outcome.get("ece"),
        "rules_baseline_auc": base.get("auc"),
        "rules_baseline_ap": base.get("ap"),
        "rules_baseline_ece": base.get("ece"),
        "policy_ev_per_dispute": policy.get("policy_ev_per_dispute"),
        "always_represent_ev_per_dispute": policy.get("always_represent_ev_per_dispute"),
        "always_refund_ev_per_dispute": policy.get("always_refund_ev_per_dispute"),
        "rules_policy_ev_per_dispute": rules.get("policy_ev_per_dispute"),
        "folds_trained": backtest.get("folds_trained"),
    }


def backtest_html(
    bundle: DisputesBundle, backtest: Mapping[str, Any], held_out: Mapping[str, Any]
) -> str:
    """A short HTML report: the bundle on its held-out window, the backtest per fold."""
    from riskml.evaluation.report import _kv_table, _page, _table, fmt

    head = {
        "bundle": fmt(f"{bundle.name} {bundle.version}"),
        "held-out window": fmt(
            f"{bundle.reference['held_out']['start'][:10]} – "
            f"{bundle.reference['held_out']['end'][:10]}"
        ),
        "calibration": fmt(bundle.metrics.get("calibration_method")),
        "AUC (model / rules)": f"{fmt(held_out.get('auc'), 'ratio')} / "
        f"{fmt(held_out.get('rules_baseline_auc'), 'ratio')}",
        "ECE (model / rules)": f"{fmt(held_out.get('ece'), 'ratio')} / "
        f"{fmt(held_out.get('rules_baseline_ece'), 'ratio')}",
        "EV per dispute: policy": fmt(held_out.get("policy_ev_per_dispute")),
        "EV per dispute: always represent": fmt(held_out.get("always_represent_ev_per_dispute")),
        "EV per dispute: always refund": fmt(held_out.get("always_refund_ev_per_dispute")),
        "reason family accuracy": fmt(bundle.metrics.get("reason_family_accuracy"), "%"),
    }
    rows = []
    for fold in backtest.get("folds", []):
        if "skipped" in fold:
            rows.append([fmt(fold["fold"]), fmt(fold["cutoff"][:10]), "skipped", *["–"] * 6])
            continue
        o, r, pol = fold["outcome"], fold["rules_baseline"], fold["policy"]
        rows.append(
            [
                fmt(fold["fold"]),
                fmt(fold["cutoff"][:10]),
                fmt(fold["test_disputes"]),
                fmt(o.get("auc"), "ratio"),
                fmt(r.get("auc"), "ratio"),
                fmt(o.get("ece"), "ratio"),
                fmt(pol.get("policy_ev_per_dispute")),
                fmt(pol.get("always_represent_ev_per_dispute")),
                fmt(pol.get("always_refund_ev_per_dispute")),
            ]
        )
    pooled = backtest_metrics(backtest)
    body = [
        _kv_table(head),
        "<h2>Time-ordered backtest (a model per fold, trained on what was known then)</h2>",
        _table(
            [
                "fold",
                "cut-off",
                "disputes",
                "AUC model",
                "AUC rules",
                "ECE model",
                "EV policy",
                "EV represent",
                "EV refund",
            ],
            rows,
        ),
        _kv_table(
            {
                "pooled AUC (model / rules)": f"{fmt(pooled['outcome_auc'], 'ratio')} / "
                f"{fmt(pooled['rules_baseline_auc'], 'ratio')}",
                "pooled ECE": fmt(pooled["outcome_ece"], "ratio"),
                "EV per dispute (policy / represent / refund)": (
                    f"{fmt(pooled['policy_ev_per_dispute'])} / "
                    f"{fmt(pooled['always_represent_ev_per_dispute'])} / "
                    f"{fmt(pooled['always_refund_ev_per_dispute'])}"
                ),
            }
        ),
    ]
    return _page("riskml disputes: outcome model and policy", "time-ordered backtest", body)


def gate_value(bundle_dir: Path, dataset: DisputeDataset, *, metric: str, reference: Any) -> float:
    """``metric`` of the bundle at ``bundle_dir`` on the challenger's held-out window
    (``reference``: the challenger's bundle reference) of ``dataset``."""
    from riskml.models.disputes.bundle import load_disputes_bundle

    bundle = load_disputes_bundle(bundle_dir)
    bundle.reference = {**bundle.reference, "held_out": reference["held_out"]}
    value = holdout_report(bundle, dataset).get(metric)
    if not isinstance(value, int | float):
        raise ValueError(f"{bundle.name}: no numeric {metric!r} on the held-out disputes")
    return float(value)


def gate_task(
    bundle_dir: Path,
    set_dir: Path,
    evidence_dir: Path,
    *,
    margin: float = 0.0,
    metric: str = "auc",
    config: DisputesRunConfig | None = None,
) -> dict[str, Any]:
    """The gate (:func:`riskml.registry.gate.compare_with_champion`) of a disputes bundle: it
    and the registry's ``disputes-outcome`` champion scored on the challenger's held-out window
    of this data (``metric``: one of :data:`GATE_METRICS`, higher is better)."""
    from riskml.models.disputes.bundle import NAME, load_disputes_bundle
    from riskml.registry.gate import compare_with_champion

    metric = metric or "auc"
    if metric not in GATE_METRICS:
        raise ValueError(f"unknown gate metric {metric!r}; choose from {', '.join(GATE_METRICS)}")
    challenger = load_disputes_bundle(bundle_dir)
    dataset = load_dataset(set_dir, evidence_dir, config=config)

    def value(path: Path) -> float:
        return gate_value(path, dataset, metric=metric, reference=challenger.reference)

    out = compare_with_champion(NAME, value(Path(bundle_dir)), value, metric=metric, margin=margin)
    return {**out, "name": NAME}


# -- the figures ---------------------------------------------------------------------------


def evaluate_task(
    dispute_set: Path,
    held_out: Path | None = None,
    *,
    n_folds: int = 3,
    max_scanned: int | None = None,
    extracted_evidence: bool = True,
) -> dict[str, Any]:
    """The disputes figures (:func:`riskml.evaluation.disputes.evaluate_disputes`) on the set at
    ``dispute_set`` and the held-out extraction corpus at ``held_out``: the keys of
    :data:`riskml.evaluation.disputes.HEADLINE_KEYS` and the details."""
    from riskml.evaluation.disputes import DisputeEvaluationConfig, evaluate_disputes

    config = DisputeEvaluationConfig(
        n_folds=n_folds, max_scanned_documents=max_scanned, extracted_evidence=extracted_evidence
    )
    out = evaluate_disputes(
        read_set(dispute_set),
        read_set(held_out) if held_out is not None else None,
        config=config,
    )
    out["paths"] = {"data": str(dispute_set), "held_out": str(held_out) if held_out else None}
    return out


def train_chain(
    set_dir: Path,
    work: Path,
    out_root: Path,
    *,
    evidence_dir: Path | None = None,
    config: DisputesRunConfig | None = None,
    backtest: bool = True,
) -> dict[str, Any]:
    """The pipeline's tasks in one process (what ``riskml disputes train`` runs): extract
    (unless ``evidence_dir`` holds it) -> features -> train -> calibrate (the bundle under
    ``out_root``) -> backtest; intermediate artifacts under ``work``. Returns ``bundle_dir``,
    ``name``, ``version``, ``extraction``, ``features``, ``training``, ``metrics`` (the calibrate
    task's held-out figures, and the backtest's when run), ``backtest``, ``html``."""
    config = config or DisputesRunConfig()
    work = Path(work)
    out: dict[str, Any] = {}
    if evidence_dir is None:
        evidence_dir = work / "evidence"
        out["extraction"] = extract_task(set_dir, evidence_dir, extraction=config.extraction)
    features_dir = work / "features"
    out["features"] = features_task(set_dir, evidence_dir, features_dir, config=config)
    model_dir = work / "model"
    if model_dir.exists():
        import shutil

        shutil.rmtree(model_dir)
    out["training"] = train_task(set_dir, evidence_dir, features_dir, model_dir, config=config)
    calibrated = calibrate_task(
        set_dir, evidence_dir, features_dir, model_dir, out_root, config=config
    )
    out.update({k: calibrated[k] for k in ("bundle_dir", "name", "version", "holdout")})
    metrics = dict(calibrated["metrics"])
    if backtest:
        run = backtest_task(
            set_dir, evidence_dir, features_dir, Path(calibrated["bundle_dir"]), config=config
        )
        metrics.update(run["metrics"])
        out["backtest"], out["html"] = run["backtest"], run["html"]
    out["metrics"] = metrics
    return out
