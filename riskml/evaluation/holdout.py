"""Holdout evaluation: score one bundle on the later test window a pipeline held back.

The pipeline's ``evaluate`` task and the gate use it; for a prequential (walk-forward) backtest of
the modelling recipe over several folds see :mod:`riskml.evaluation.backtest`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class HoldoutError(ValueError):
    """The bundle cannot be evaluated on this window; the message says why."""


def scores_on(bundle_dir: Path, test_dir: Path) -> tuple[Any, Any, dict[str, Any]]:
    """``(labels, blended score, {"bundle", "frame"})`` of a bundle on a labelled test set."""
    import numpy as np

    from riskml.models.bundle import load_bundle, score_inputs
    from riskml.models.features import extract_inputs
    from riskml.training.dataset import read_training_set

    frame, _ = read_training_set(test_dir)
    bundle = load_bundle(bundle_dir)
    inputs = extract_inputs(frame, bundle.spec)
    if inputs.y is None:
        raise HoldoutError(f"{test_dir} has no labels to backtest against")
    scores = score_inputs(bundle, inputs)
    return np.asarray(inputs.y), np.asarray(scores["score"]), {"bundle": bundle, "frame": frame}


def evaluate_holdout(
    bundle_dir: Path, test_dir: Path, *, max_fpr: float = 0.01, k: int = 100
) -> dict[str, Any]:
    """Score the bundle on the later test window: headline metrics, ROC points, confusion
    matrix at the threshold that keeps the false-positive rate at ``max_fpr``, and the
    recall per fraud scenario."""
    import numpy as np

    from riskml.evaluation.report import roc_points
    from riskml.evaluation.scoring import evaluate_bundle
    from riskml.metrics import threshold_at_fpr

    y, score, ctx = scores_on(bundle_dir, test_dir)
    metrics = evaluate_bundle(ctx["bundle"], ctx["frame"], k=k, max_fpr=max_fpr)
    threshold = float(threshold_at_fpr(y, score, max_fpr))
    pred = score >= threshold
    tn = int(((~pred) & (y == 0)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int(((~pred) & (y == 1)).sum())
    tp = int((pred & (y == 1)).sum())
    scenario = np.asarray(ctx["frame"]["fraud_scenario"].to_numpy()).astype(str)
    per_scenario = {}
    for name in sorted(set(scenario[y == 1])):
        mask = scenario == name
        per_scenario[name] = {"frauds": int(mask.sum()), "recall": float(pred[mask].mean())}
    return {
        "metrics": metrics,
        "threshold": threshold,
        "confusion": {"categories": ["genuine", "fraud"], "matrix": [[tn, fp], [fn, tp]]},
        "roc": roc_points(y, score),
        "per_scenario": per_scenario,
        "rows": len(y),
        "bundle": str(bundle_dir),
    }
