"""Evaluation: backtest on the later window; gate the challenger against the champion."""

from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components.base import component


@component
def backtest(
    bundle: Input[Model],
    test_set: Input[Dataset],
    metrics: Output[Metrics],
    roc: Output[ClassificationMetrics],
    report: Output[HTML],
    max_fpr: float = 0.01,
) -> None:
    """Score the bundle on the backtest window: metrics, ROC curve, confusion matrix at the
    ``max_fpr`` threshold, and the HTML report (model comparison, curves, calibration, CP@k
    per day, recall per fraud scenario)."""
    import json
    from pathlib import Path

    from riskml.evaluation.holdout import evaluate_holdout
    from riskml.evaluation.report import holdout_html, holdout_scores
    from riskml.metrics import finite_metrics
    from riskml.models.bundle import find_bundle

    bundle_dir, test_dir = find_bundle(Path(bundle.path)), Path(test_set.path)
    result = evaluate_holdout(bundle_dir, test_dir, max_fpr=max_fpr)
    for model_name, values in result["metrics"].items():
        for key, value in finite_metrics(values, f"{model_name}_").items():
            metrics.log_metric(key, value)
    roc.log_roc_curve(result["roc"]["fpr"], result["roc"]["tpr"], result["roc"]["thresholds"])
    roc.log_confusion_matrix(result["confusion"]["categories"], result["confusion"]["matrix"])
    scores = holdout_scores(bundle_dir, test_dir)
    Path(report.path).write_text(holdout_html(result, scores=scores, max_fpr=max_fpr))
    print(json.dumps({"blend": result["metrics"]["blend"], "threshold": result["threshold"]}))


@component
def gate(
    bundle: Input[Model],
    test_set: Input[Dataset],
    metrics: Output[Metrics],
    margin: float = 0.0,
    metric: str = "average_precision",
) -> str:
    """``deploy`` if the challenger beats the current champion (both scored on the same
    backtest window) by more than ``margin`` on ``metric`` — or if there is no champion; else
    ``keep``. The decision is the single ``str`` output: kfp 2.17's local runner resolves a
    ``dsl.If`` on a task's ``Output`` but not on a named NamedTuple field."""
    import json
    from pathlib import Path

    from riskml.metrics import finite_metrics
    from riskml.models.bundle import find_bundle
    from riskml.registry.gate import gate as run_gate

    out = run_gate(
        find_bundle(Path(bundle.path)), Path(test_set.path), margin=margin, metric=metric
    )
    values = {
        "challenger": out["challenger"],
        "champion": -1.0 if out["champion"] is None else out["champion"],
        "deploy": 1.0 if out["decision"] == "deploy" else 0.0,
    }
    for key, value in finite_metrics(values).items():
        metrics.log_metric(key, value)
    metrics.metadata["reason"] = out["reason"]
    # the registry version compared against: deploy promotes only if it is still the champion
    metrics.metadata["champion_version"] = out["champion_version"] or ""
    print(json.dumps(out))
    return str(out["decision"])
