"""Small synthetic inputs of the evaluation reports: a scored test window, the holdout result
(the shape of ``evaluate_holdout``'s) and a replay (the shape of ``serve_and_replay``'s)."""

from __future__ import annotations

from typing import Any

import numpy as np

from riskml.evaluation.report import roc_points

SCENARIOS = ("card_testing", "account_takeover", "compromised_terminal")


def synthetic(n: int = 4000, seed: int = 3) -> dict[str, Any]:
    """A labelled test window (7 days, 300 cards, ~3% fraud) scored by a blend and two models."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.03).astype(np.int8)
    day = (np.datetime64("2024-02-05") + rng.integers(0, 7, n)).astype("datetime64[D]")
    card = rng.integers(0, 300, n)
    amount = np.round(rng.lognormal(3.5, 1.0, n), 2)
    logit = {
        "xgb_calibrated": -4.0 + 3.0 * y + rng.normal(0, 1.2, n),
        "sequence_calibrated": -4.0 + 2.2 * y + rng.normal(0, 1.4, n),
    }
    calibrated = {name: 1 / (1 + np.exp(-z)) for name, z in logit.items()}
    blend = 0.6 * calibrated["xgb_calibrated"] + 0.4 * calibrated["sequence_calibrated"]
    models = {"blend": blend, **calibrated}
    scenario = np.where(y == 1, rng.choice(SCENARIOS, n), "")
    return {
        "y": y,
        "day": day,
        "card": card,
        "scenario": scenario,
        "models": models,
        "amount": amount,
    }


def holdout_result(s: dict[str, Any], k: int = 20, max_fpr: float = 0.01) -> dict[str, Any]:
    """The shape of ``riskml.evaluation.holdout.evaluate_holdout``'s result."""
    from riskml.metrics import evaluate, threshold_at_fpr

    y, blend = s["y"], s["models"]["blend"]
    metrics = {
        name: evaluate(
            y, p, amount=s["amount"], card_id=s["card"], day=s["day"], k=k, max_fpr=max_fpr
        )
        for name, p in s["models"].items()
    }
    threshold = float(threshold_at_fpr(y, blend, max_fpr))
    pred = blend >= threshold
    per_scenario = {
        name: {
            "frauds": int((s["scenario"] == name).sum()),
            "recall": float(pred[s["scenario"] == name].mean()),
        }
        for name in SCENARIOS
    }
    matrix = [
        [int((~pred & (y == 0)).sum()), int((pred & (y == 0)).sum())],
        [int((~pred & (y == 1)).sum()), int((pred & (y == 1)).sum())],
    ]
    return {
        "metrics": metrics,
        "threshold": threshold,
        "confusion": {"categories": ["genuine", "fraud"], "matrix": matrix},
        "roc": roc_points(y, blend),
        "per_scenario": per_scenario,
        "rows": len(y),
        "bundle": "/registry/fraud/20240212T000000Z",
    }


def replay_result(seed: int = 5) -> dict[str, Any]:
    """The shape of ``serving.demo.serve_and_replay``'s result."""
    rng = np.random.default_rng(seed)
    samples = np.round(rng.gamma(4.0, 3.5, 1000), 2)
    return {
        "replayed": 1000,
        "replay_from": "2024-02-05T00:01:00+00:00",
        "replay_to": "2024-02-05T09:12:00+00:00",
        "rps_target": 25.0,
        "rps_achieved": 24.9,
        "errors": 0,
        "latency_ms": {
            "p50": float(np.percentile(samples, 50)),
            "p95": float(np.percentile(samples, 95)),
            "p99": float(np.percentile(samples, 99)),
            "max": float(samples.max()),
        },
        "latency_samples_ms": samples.tolist(),
        "server_stage_p50_ms": {"features": 3.1, "xgboost": 1.2, "sequence": 4.4},
        "decision_sources": {"model": 998, "rules": 2},
        "decisions": {"approve": 962, "review": 25, "decline": 13},
        "fraud": 19,
        "fraud_declined": 9,
        "fraud_reviewed": 6,
        "good_declined_or_reviewed_share": 0.0234,
    }
