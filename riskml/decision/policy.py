"""The calibrated blend, the threshold policy and reason codes (what the Decider runs)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from riskml.decision.config import DeciderConfig, Decision, Thresholds
from riskml.decision.rules import Reason

Calibrator = Callable[[float], float]


def decide(score: float, thresholds: Thresholds) -> Decision:
    if score >= thresholds.decline:
        return "decline"
    if score >= thresholds.review:
        return "review"
    return "approve"


def blend(
    calibrated: Mapping[str, float | None], weights: Mapping[str, float]
) -> tuple[float, list[str]]:
    """Weighted mean of the calibrated probabilities of the models that answered (weights
    renormalised over them). Returns the score and the models used. Raises ``ValueError`` when
    no model with a positive weight answered."""
    answered = {
        m: float(p) for m, p in calibrated.items() if p is not None and weights.get(m, 0.0) > 0
    }
    total = sum(weights[m] for m in answered)
    if not answered or total <= 0:
        raise ValueError("no model with a positive blend weight answered")
    score = sum(weights[m] * p for m, p in answered.items()) / total
    return min(1.0, max(0.0, score)), list(answered)


def top_reasons(
    contributions: Sequence[float] | None,
    names: Sequence[str],
    values: Sequence[float] | None,
    k: int,
) -> list[Reason]:
    """The ``k`` features pushing the score up the most (positive contributions, bias excluded).

    ``contributions`` has one entry per feature plus a trailing bias term (XGBoost's
    ``pred_contribs`` layout); ties keep feature order."""
    if not contributions or k <= 0:
        return []
    if len(contributions) != len(names) + 1:
        raise ValueError(
            f"{len(contributions)} contributions for {len(names)} features (+1 bias expected)"
        )
    ranked = sorted(
        (i for i in range(len(names)) if contributions[i] > 0),
        key=lambda i: (-contributions[i], i),
    )[:k]
    return [
        Reason(
            f"feature:{names[i]}",
            names[i],
            None if values is None else float(values[i]),
            float(contributions[i]),
        )
        for i in ranked
    ]


def identity(p: float) -> float:
    return p


def platt(a: float, b: float) -> Calibrator:
    """``sigmoid(a * logit(p) + b)`` (p clipped away from 0 and 1)."""

    def calibrate(p: float) -> float:
        q = min(max(p, 1e-7), 1 - 1e-7)
        z = a * math.log(q / (1 - q)) + b
        return 1.0 / (1.0 + math.exp(-z))

    return calibrate


@dataclass
class ModelScores:
    """What the Decider gets for one transaction."""

    xgboost: float
    sequence: float | None = None
    contributions: list[float] | None = None
    feature_values: list[float] | None = None


@dataclass
class Verdict:
    """What the Decider returns for one transaction."""

    score: float
    decision: Decision
    models_used: list[str]
    reasons: list[Reason] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)


class FittedBlend(Protocol):
    """A blend fitted at training time (e.g. a bundle's stacked logistic blend)."""

    models: Sequence[str]

    def __call__(self, calibrated: Mapping[str, float]) -> float: ...


class DecisionPolicy:
    """Calibrate, blend, threshold and explain. Stateless apart from its configuration.

    With a ``fitted`` blend (the model bundle's), the score of a transaction all of whose blend
    models answered is that blend's output, exactly as training/backtest computed it, unless
    ``config.use_fitted_blend`` is off; otherwise (a model missing or late, or the flag off) the
    score is the ``blend_weights`` mean of the models that answered."""

    def __init__(
        self,
        config: DeciderConfig,
        feature_names: Sequence[str],
        calibrators: Mapping[str, Calibrator] | None = None,
        fitted: FittedBlend | None = None,
    ) -> None:
        self.config = config
        self.feature_names = list(feature_names)
        self.calibrators: dict[str, Calibrator] = dict(calibrators or {})
        self.fitted = fitted

    def reconfigure(self, config: DeciderConfig | Mapping[str, Any]) -> None:
        self.config = (
            config if isinstance(config, DeciderConfig) else DeciderConfig.model_validate(config)
        )

    def verdict(self, item: ModelScores) -> Verdict:
        raw = {"xgboost": item.xgboost, "sequence": item.sequence}
        bad = {m: p for m, p in raw.items() if p is not None and not 0.0 <= p <= 1.0}
        if bad:  # NaN/inf or out-of-range model output: let the ladder fall back
            raise ValueError(f"model scores outside [0, 1]: {bad}")
        calibrated = {
            m: (None if p is None else self.calibrators.get(m, identity)(float(p)))
            for m, p in raw.items()
        }
        fitted = self.fitted if self.config.use_fitted_blend else None
        if fitted is not None and all(calibrated.get(m) is not None for m in fitted.models):
            answered = {m: float(calibrated[m]) for m in fitted.models}  # type: ignore[arg-type]
            score, used = min(1.0, max(0.0, float(fitted(answered)))), list(fitted.models)
        else:
            score, used = blend(calibrated, self.config.blend_weights)
        scores = {f"{m}_raw": float(p) for m, p in raw.items() if p is not None}
        scores.update({f"{m}_calibrated": float(p) for m, p in calibrated.items() if p is not None})
        reasons = top_reasons(
            item.contributions, self.feature_names, item.feature_values, self.config.reason_codes
        )
        return Verdict(score, decide(score, self.config.thresholds), used, reasons, scores)

    def verdicts(self, items: Sequence[ModelScores]) -> list[Verdict]:
        return [self.verdict(i) for i in items]
