"""Score a frame with a bundle and compute the headline metrics (used by the backtest)."""

from __future__ import annotations

from typing import Any

from riskml.models.bundle import Bundle, score_inputs
from riskml.models.features import extract_inputs


def evaluate_bundle(
    bundle: Bundle, frame: Any, *, k: int = 100, max_fpr: float = 0.01
) -> dict[str, dict[str, float]]:
    """Metrics of the blend and of each calibrated model on a labelled frame (ground truth)."""
    from riskml.metrics import evaluate

    inputs = extract_inputs(frame, bundle.spec)
    if inputs.y is None:
        raise ValueError("the frame has no is_fraud column to evaluate against")
    scores = score_inputs(bundle, inputs)
    day = inputs.ts.astype("datetime64[D]") if inputs.ts is not None else None
    out: dict[str, dict[str, float]] = {}
    for key in ["score", *(f"{m}_calibrated" for m in bundle.models)]:
        out["blend" if key == "score" else key] = evaluate(
            inputs.y,
            scores[key],
            amount=inputs.amount,
            card_id=inputs.customer_id if day is not None else None,
            day=day,
            k=k,
            max_fpr=max_fpr,
        )
    return out
