"""The disputes line's figures: extraction on a held-out corpus, reason-family accuracy, and a
time-ordered backtest of the outcome model and the decision policy.

**Backtest** (:func:`backtest_outcome`): the span of ``opened_at`` after its first half is cut
into ``n_folds`` consecutive test windows. For each, the model and the rules baseline are
trained and calibrated on what was known at the window's start
(:func:`riskml.training.disputes.train_outcome`), then score the disputes opened in the window:

* **outcome** (represented disputes, their eventual ``won``/``lost``): AUC, AP, ECE (equal-width
  bins, :func:`riskml.metrics.expected_calibration_error`) and Brier of the model and of the
  rules baseline;
* **policy** (every dispute in the window): the expected value per dispute of the policy's
  actions, of "always represent" and of "always refund", valued at the *true* win probability:
  the simulator's ``p_win`` where the data has one (a counterfactual the simulator knows for
  refunded disputes too), otherwise the observed outcome of the represented disputes only. A
  human review is valued as its cost plus the better action at the true probability (an analyst
  who sees the merits, ``review_value="oracle"``) or at the model's (``"model"``: an analyst who
  adds nothing); both are reported. The policy driven by the rules baseline's probability is
  reported too.

With ``extracted`` (a dataset of the same disputes whose evidence the rules extractor read from
the documents) the trained models also score that evidence: ``outcome_auc_extracted``,
``policy_ev_per_dispute_extracted``.

**Extraction** (:func:`evaluate_extraction`): per document of a held-out corpus (templates the
rules were not written on), the rules extractor's evidence against the document's ground truth
(:func:`riskml.data.disputes.evidence.score`), clean PDFs and scanned images apart: micro
precision / recall / F1 and per field. **Reason family** (:func:`evaluate_reason_family`): the
TF-IDF classifier trained on one set's messages, its accuracy (and the keyword baseline's) on
another's.

:func:`evaluate_disputes` runs all three and returns the figures ``riskml disputes evaluate``
writes, under the keys other tools read (:data:`HEADLINE_KEYS`).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from riskml.metrics import (
    MetricInputError,
    average_precision,
    brier_score,
    expected_calibration_error,
    roc_auc,
)
from riskml.models.disputes.policy import PolicyConfig, decide, policy_values
from riskml.training.disputes import (
    DisputeDataset,
    DisputeTrainingConfig,
    DisputeTrainingError,
    dataset_from_set,
    fold_cutoffs,
    train_outcome,
)

if TYPE_CHECKING:  # pragma: no cover
    from riskml.data.disputes.simulator import DisputeConfig, DisputeSet
    from riskml.features.disputes.extract import Extractor
    from riskml.models.disputes.outcome import OutcomeModel

#: The keys of :func:`evaluate_disputes`' result that other tools read.
HEADLINE_KEYS: tuple[str, ...] = (
    "extraction_f1_clean",
    "extraction_f1_scanned",
    "reason_family_accuracy",
    "outcome_auc",
    "rules_baseline_auc",
    "outcome_ece",
    "policy_ev_per_dispute",
    "always_represent_ev_per_dispute",
    "always_refund_ev_per_dispute",
)


class DisputeEvaluationConfig(BaseModel):
    """How the disputes line is evaluated."""

    model_config = ConfigDict(extra="forbid")

    n_folds: int = Field(3, ge=1)
    first_share: float = Field(0.4, gt=0, lt=1, description="Opening span before the 1st fold.")
    training: DisputeTrainingConfig = Field(default_factory=DisputeTrainingConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    ece_bins: int = Field(10, ge=1)
    review_value: Literal["oracle", "model"] = "oracle"
    extracted_evidence: bool = Field(
        True, description="Also score the outcome model and policy on rules-extracted evidence."
    )
    max_scanned_documents: int | None = Field(
        None, ge=0, description="OCR at most this many scanned documents (None: all)."
    )


def evaluation_dispute_config(**overrides: Any) -> DisputeConfig:
    """The dispute set the outcome backtest runs on by default: 3,000 disputes on 1,500
    customers over 700 days (representments resolve in up to ~4 months, so honest cut-offs
    need a long span), no scans (the outcome model needs volume, not OCR), documents in all
    template variants (a quarter held-out ones, so the extracted-evidence figures meet the
    extractor's real errors)."""
    from riskml.data.disputes.documents import N_VARIANTS
    from riskml.data.disputes.simulator import DisputeConfig
    from riskml.data.simulator import SimulationConfig

    base: dict[str, Any] = {
        "n_disputes": 3000,
        "scanned_share": 0.0,
        "variants": tuple(range(N_VARIANTS)),
        "transactions": SimulationConfig(n_customers=1500, n_terminals=400, days=700, seed=7),
    }
    return DisputeConfig(**{**base, **overrides})


def extraction_corpus_config(**overrides: Any) -> DisputeConfig:
    """The held-out extraction corpus by default: 60 disputes rendered only in the held-out
    template variants, other seeds, about a fifth of the documents scanned."""
    from riskml.data.disputes.simulator import DisputeConfig
    from riskml.data.simulator import SimulationConfig

    base: dict[str, Any] = {
        "n_disputes": 60,
        "transactions": SimulationConfig(n_customers=200, n_terminals=120, days=240, seed=97),
    }
    return DisputeConfig.held_out(**{**base, **overrides})


# --- metrics --------------------------------------------------------------------------------------


def _outcome_metrics(y: np.ndarray, p: np.ndarray, bins: int) -> dict[str, float | None]:
    out: dict[str, float | None] = {"n": float(y.size), "win_rate": None}
    for key in ("auc", "ap", "ece", "brier"):
        out[key] = None
    if y.size == 0:
        return out
    out["win_rate"] = float(np.mean(y))
    out["ece"] = expected_calibration_error(y, p, n_bins=bins)
    out["brier"] = brier_score(y, p)
    out["mean_p"] = float(np.mean(p))
    try:
        out["auc"] = roc_auc(y, p)
        out["ap"] = average_precision(y, p)
    except MetricInputError:  # one outcome only in the window
        pass
    return out


def _uncertain(model: OutcomeModel, families: np.ndarray, config: PolicyConfig) -> list[str]:
    support = model.metadata.get("family_support") or {}
    out = []
    for fam in families:
        n = int(support.get(str(fam), 0))
        out.append(
            f"the model saw only {n} {fam} disputes in training (< {config.min_family_support})"
            if config.min_family_support and n < config.min_family_support
            else ""
        )
    return out


def policy_actions(
    dataset: DisputeDataset,
    rows: np.ndarray,
    p_win: np.ndarray,
    model: OutcomeModel,
    config: PolicyConfig,
) -> list[str]:
    """The policy's action for each row (as :func:`riskml.models.disputes.assess_dispute`
    decides: requirement report, family support)."""
    amounts = dataset.amounts[rows]
    notes = _uncertain(model, dataset.families()[rows], config)
    return [
        decide(
            float(a),
            float(p),
            dataset.requirements[int(r)],
            config=config,
            model_uncertain=note or False,
        ).action
        for a, p, r, note in zip(amounts, p_win, rows, notes, strict=True)
    ]


def _policy_figures(
    actions: list[str],
    amounts: np.ndarray,
    p_true: np.ndarray,
    p_model: np.ndarray,
    config: PolicyConfig,
) -> dict[str, Any]:
    econ = config.economics
    n = len(actions)
    acts = np.asarray(actions)
    oracle = policy_values(acts, amounts, p_true, econ, review="oracle")
    model = policy_values(acts, amounts, p_true, econ, review="model", p_model=p_model)
    rep = policy_values(np.full(n, "represent"), amounts, p_true, econ)
    ref = policy_values(np.full(n, "auto_refund"), amounts, p_true, econ)
    best = np.maximum(rep, ref)
    return {
        "n": n,
        "actions": {
            a: int(np.sum(acts == a)) for a in ("auto_refund", "represent", "human_review")
        },
        "policy_ev_sum": float(oracle.sum()),
        "policy_ev_review_as_model_sum": float(model.sum()),
        "always_represent_ev_sum": float(rep.sum()),
        "always_refund_ev_sum": float(ref.sum()),
        "perfect_ev_sum": float(best.sum()),
    }


def _per_dispute(fig: dict[str, Any]) -> dict[str, Any]:
    n = max(int(fig["n"]), 1)
    out = {k: v for k, v in fig.items() if not k.endswith("_sum")}
    for k, v in fig.items():
        if k.endswith("_sum"):
            out[k[: -len("_sum")] + "_per_dispute"] = v / n
    return out


def _sum_policy(figs: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {"n": sum(int(f["n"]) for f in figs), "actions": {}}
    for f in figs:
        for a, c in f["actions"].items():
            total["actions"][a] = total["actions"].get(a, 0) + c
        for k, v in f.items():
            if k.endswith("_sum"):
                total[k] = total.get(k, 0.0) + v
    return total


def backtest_outcome(
    dataset: DisputeDataset,
    config: DisputeEvaluationConfig | None = None,
    *,
    extracted: DisputeDataset | None = None,
) -> dict[str, Any]:
    """Per-fold and pooled outcome and policy figures (module docstring)."""
    config = config or DisputeEvaluationConfig()
    if extracted is not None and extracted.ids != dataset.ids:
        raise DisputeTrainingError("the extracted dataset must hold the same disputes in order")
    opened = dataset.disputes.get_column("opened_at").to_list()
    labels = dataset.labels
    value_source = "simulator_p_win" if dataset.p_true is not None else "observed_outcomes"
    folds: list[dict[str, Any]] = []
    pooled: dict[str, list[np.ndarray]] = {k: [] for k in ("y", "p", "b", "pe")}
    policy_figs: dict[str, list[dict[str, Any]]] = {"model": [], "rules": [], "extracted": []}
    t0 = time.perf_counter()
    for k, (start, end) in enumerate(fold_cutoffs(dataset, config.n_folds, config.first_share)):
        rows = np.array(
            [i for i, t in enumerate(opened) if start < t.astimezone(dt.UTC) <= end], np.int64
        )
        fold: dict[str, Any] = {"fold": k, "cutoff": start.isoformat(), "test_end": end.isoformat()}
        try:
            trained = train_outcome(dataset, start, config.training)
        except DisputeTrainingError as exc:
            fold["skipped"] = str(exc)
            folds.append(fold)
            continue
        fold["split"] = trained.split.as_dict()
        fold["calibrator"] = trained.model.calibrator.method if trained.model.calibrator else None
        x = dataset.matrix(rows)
        p = trained.model.predict(x) if rows.size else np.zeros(0)
        b = trained.baseline_probability(dataset.rules_score[rows]) if rows.size else np.zeros(0)
        lab = labels[rows] >= 0
        y = labels[rows][lab]
        fold["test_disputes"] = int(rows.size)
        fold["outcome"] = _outcome_metrics(y, p[lab], config.ece_bins)
        fold["rules_baseline"] = _outcome_metrics(y, b[lab], config.ece_bins)
        pooled["y"].append(y)
        pooled["p"].append(p[lab])
        pooled["b"].append(b[lab])
        if dataset.p_true is not None:
            value_rows, p_true = np.arange(rows.size), dataset.p_true[rows]
        else:
            value_rows, p_true = np.flatnonzero(lab), labels[rows][lab].astype(np.float64)
        vr = rows[value_rows]
        amounts = dataset.amounts[vr]
        acts = policy_actions(dataset, vr, p[value_rows], trained.model, config.policy)
        fig = _policy_figures(acts, amounts, p_true, p[value_rows], config.policy)
        acts_rules = policy_actions(dataset, vr, b[value_rows], trained.model, config.policy)
        fig_rules = _policy_figures(acts_rules, amounts, p_true, b[value_rows], config.policy)
        policy_figs["model"].append(fig)
        policy_figs["rules"].append(fig_rules)
        fold["policy"] = _per_dispute(fig)
        fold["rules_policy"] = _per_dispute(fig_rules)
        if extracted is not None:
            pe = trained.model.predict(extracted.matrix(rows)) if rows.size else np.zeros(0)
            fold["outcome_extracted"] = _outcome_metrics(y, pe[lab], config.ece_bins)
            pooled["pe"].append(pe[lab])
            acts_e = policy_actions(extracted, vr, pe[value_rows], trained.model, config.policy)
            fig_e = _policy_figures(acts_e, amounts, p_true, pe[value_rows], config.policy)
            policy_figs["extracted"].append(fig_e)
            fold["policy_extracted"] = _per_dispute(fig_e)
        folds.append(fold)
    done = [f for f in folds if "skipped" not in f]
    if not done:
        raise DisputeTrainingError(
            "no fold could be trained: " + "; ".join(str(f.get("skipped")) for f in folds)
        )
    y_all = np.concatenate(pooled["y"])
    out: dict[str, Any] = {
        "value_source": value_source,
        "review_value": config.review_value,
        "n_folds": len(folds),
        "folds_trained": len(done),
        "outcome": _outcome_metrics(y_all, np.concatenate(pooled["p"]), config.ece_bins),
        "rules_baseline": _outcome_metrics(y_all, np.concatenate(pooled["b"]), config.ece_bins),
        "policy": _per_dispute(_sum_policy(policy_figs["model"])),
        "rules_policy": _per_dispute(_sum_policy(policy_figs["rules"])),
        "folds": folds,
        "seconds": time.perf_counter() - t0,
    }
    if extracted is not None and pooled["pe"]:
        out["outcome_extracted"] = _outcome_metrics(
            y_all, np.concatenate(pooled["pe"]), config.ece_bins
        )
        out["policy_extracted"] = _per_dispute(_sum_policy(policy_figs["extracted"]))
    for key in ("outcome", "rules_baseline"):
        aucs = [f[key]["auc"] for f in done if f[key]["auc"] is not None]
        out[key]["auc_mean_folds"] = float(np.mean(aucs)) if aucs else None
    return out


# --- extraction and reason family -----------------------------------------------------------------


def evaluate_extraction(
    corpus: DisputeSet,
    extractor: Extractor | None = None,
    *,
    max_scanned: int | None = None,
) -> dict[str, Any]:
    """Per-document precision / recall / F1 of ``extractor`` (default: the layout extractor,
    the rules and the learned layout model) on
    ``corpus``'s documents, clean and scanned apart. Scanned documents need tesseract; without
    it their figures are None with the reason."""
    import polars as pl

    from riskml.data.disputes.evidence import Evidence, score
    from riskml.features.disputes.layout import LayoutExtractor
    from riskml.features.disputes.text import OCRUnavailable

    extractor = extractor or LayoutExtractor()
    docs = corpus.documents.sort("document")
    out: dict[str, Any] = {"extractor": getattr(extractor, "name", type(extractor).__name__)}
    for kind, scanned in (("clean", False), ("scanned", True)):
        part = docs.filter(pl.col("scanned") == scanned)
        if scanned and max_scanned is not None:
            part = part.head(max_scanned)
        t0 = time.perf_counter()
        pairs: list[tuple[Evidence, Evidence]] = []
        try:
            for row in part.iter_rows(named=True):
                result = extractor.extract([corpus.document_path(row["document"])])
                pairs.append((result.evidence, Evidence.model_validate_json(row["truth"])))
        except OCRUnavailable as exc:
            out[kind] = {"documents": part.height, "f1": None, "unavailable": str(exc)}
            continue
        seconds = time.perf_counter() - t0
        if not pairs:
            out[kind] = {"documents": 0, "f1": None}
            continue
        scores = score(pairs)
        total = scores.total
        out[kind] = {
            "documents": len(pairs),
            "precision": total.precision,
            "recall": total.recall,
            "f1": total.f1,
            "macro_f1": scores.macro_f1,
            "seconds_per_document": seconds / len(pairs),
            "fields": {
                name: c.as_dict() for name, c in scores.per_field.items() if c.tp + c.fp + c.fn
            },
        }
    return out


def evaluate_reason_family(train: DisputeSet, test: DisputeSet) -> dict[str, Any]:
    """The TF-IDF reason-family classifier trained on ``train``'s customer messages, scored on
    ``test``'s (with the keyword baseline on the same messages)."""
    from riskml.features.disputes.reason import ReasonClassifier, evaluate_reason

    d_train, d_test = train.disputes, test.disputes
    clf = ReasonClassifier().fit(
        d_train.get_column("customer_message").to_list(),
        d_train.get_column("reason_family").to_list(),
    )
    scores = evaluate_reason(
        clf,
        d_test.get_column("customer_message").to_list(),
        d_test.get_column("reason_family").to_list(),
    )
    return {"train_messages": d_train.height, **scores.as_dict()}


def _extracted_test_dataset(
    dispute_set: DisputeSet,
    truth: DisputeDataset,
    config: DisputeEvaluationConfig,
    extractor: Extractor | None,
) -> tuple[DisputeDataset, dict[str, Any]]:
    """The backtest's disputes with the evidence the extractor reads from the documents of the
    disputes in the test windows (the others, used only to train, keep their ground truth:
    the models are trained on ground truth either way)."""
    from riskml.data.disputes.evidence import ExtractedField
    from riskml.features.disputes.layout import LayoutExtractor
    from riskml.training.disputes import dispute_dataset

    extractor = extractor or LayoutExtractor()
    windows = fold_cutoffs(truth, config.n_folds, config.first_share)
    start, end = windows[0][0], windows[-1][1]
    opened = truth.disputes.get_column("opened_at").to_list()
    ids = truth.ids
    test_ids = [i for i, t in zip(ids, opened, strict=True) if start < t <= end]
    evidence = dict(zip(ids, truth.evidence, strict=True))
    fields: dict[str, dict[str, ExtractedField]] = {}
    t0 = time.perf_counter()
    n_docs = 0
    for i in test_ids:
        docs = dispute_set.case_documents(i)
        n_docs += len(docs)
        result = extractor.extract(docs) if docs else None
        if result is not None:
            evidence[i], fields[i] = result.evidence, dict(result.fields)
        else:
            from riskml.data.disputes.evidence import Evidence

            evidence[i], fields[i] = Evidence(), {}
    seconds = time.perf_counter() - t0
    p_true = None
    if truth.p_true is not None:
        p_true = dict(zip(ids, truth.p_true.tolist(), strict=True))
    dataset = dispute_dataset(
        dispute_set.disputes,
        evidence,
        dispute_set.history if dispute_set.history.height else None,
        fields=fields,
        p_true=p_true,
        rule=config.training.rule,
        source=getattr(extractor, "name", "extracted"),
    )
    run = {
        "extractor": dataset.source,
        "cases": len(test_ids),
        "documents": n_docs,
        "seconds": seconds,
    }
    return dataset, run


def evaluate_disputes(
    dispute_set: DisputeSet,
    held_out: DisputeSet | None = None,
    *,
    config: DisputeEvaluationConfig | None = None,
    extractor: Extractor | None = None,
) -> dict[str, Any]:
    """All of the disputes line's figures: the backtest on ``dispute_set`` (ground-truth
    evidence, and rules-extracted evidence when ``config.extracted_evidence`` and the set has
    documents), extraction on ``held_out``'s documents and the reason-family accuracy on its
    messages (trained on ``dispute_set``'s). Without ``held_out`` the extraction and reason
    figures are None. Returns :data:`HEADLINE_KEYS` plus the details."""
    config = config or DisputeEvaluationConfig()
    t0 = time.perf_counter()
    truth = dataset_from_set(dispute_set, evidence="truth", rule=config.training.rule)
    extracted = None
    extraction_run: dict[str, Any] | None = None
    if config.extracted_evidence and dispute_set.documents.height:
        extracted, extraction_run = _extracted_test_dataset(dispute_set, truth, config, extractor)
    backtest = backtest_outcome(truth, config, extracted=extracted)
    extraction = rules_extraction = reason = None
    if held_out is not None:
        from riskml.features.disputes.extract import RulesExtractor

        extraction = evaluate_extraction(
            held_out, extractor, max_scanned=config.max_scanned_documents
        )
        # the rules alone on the same clean documents: what the layout model adds
        rules_extraction = evaluate_extraction(held_out, RulesExtractor(), max_scanned=0)
        reason = evaluate_reason_family(dispute_set, held_out)
    outcome, baseline, policy = backtest["outcome"], backtest["rules_baseline"], backtest["policy"]
    ev_key = (
        "policy_ev_per_dispute"
        if config.review_value == "oracle"
        else "policy_ev_review_as_model_per_dispute"
    )
    result: dict[str, Any] = {
        "extraction_f1_clean": extraction["clean"]["f1"] if extraction else None,
        "extraction_f1_scanned": extraction["scanned"]["f1"] if extraction else None,
        "rules_extraction_f1_clean": rules_extraction["clean"]["f1"] if rules_extraction else None,
        "reason_family_accuracy": reason["reason_family_accuracy"] if reason else None,
        "outcome_auc": outcome["auc"],
        "outcome_ap": outcome["ap"],
        "outcome_ece": outcome["ece"],
        "rules_baseline_auc": baseline["auc"],
        "rules_baseline_ap": baseline["ap"],
        "rules_baseline_ece": baseline["ece"],
        "policy_ev_per_dispute": policy[ev_key],
        "always_represent_ev_per_dispute": policy["always_represent_ev_per_dispute"],
        "always_refund_ev_per_dispute": policy["always_refund_ev_per_dispute"],
        "rules_policy_ev_per_dispute": backtest["rules_policy"][ev_key],
        "perfect_ev_per_dispute": policy["perfect_ev_per_dispute"],
        "outcome_auc_extracted": backtest.get("outcome_extracted", {}).get("auc"),
        "policy_ev_per_dispute_extracted": backtest.get("policy_extracted", {}).get(ev_key),
        "backtest": backtest,
        "extraction": extraction,
        "extraction_rules": rules_extraction,
        "outcome_extraction_run": extraction_run,
        "reason_family": reason,
        "data": {
            "disputes": dispute_set.disputes.height,
            "represented": int((truth.labels >= 0).sum()),
            "held_out_disputes": held_out.disputes.height if held_out is not None else 0,
            "held_out_documents": held_out.documents.height if held_out is not None else 0,
        },
        "config": config.model_dump(mode="json"),
        "seconds": time.perf_counter() - t0,
    }
    return result


__all__ = [
    "HEADLINE_KEYS",
    "DisputeEvaluationConfig",
    "backtest_outcome",
    "evaluate_disputes",
    "evaluate_extraction",
    "evaluate_reason_family",
    "evaluation_dispute_config",
    "extraction_corpus_config",
    "policy_actions",
]
