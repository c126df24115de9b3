"""The logistic-regression scorecard: WoE bins (:mod:`.binning`), a logistic regression on the
WoE values (scikit-learn), points scaling and adverse-action reason codes; stored as JSON.

The model is ``logit(PD) = intercept + sum_j coef_j * WoE_j``. Because WoE grows as risk falls,
every kept coefficient must be negative: a feature whose coefficient comes out non-negative
(collinearity flipping it) is dropped and the regression refitted, as is one whose information
value is below ``min_iv``; both are recorded in ``dropped``. With negative coefficients and bins
that are monotone in the required direction, the PD is monotone in every constrained feature.

Points follow the usual scaling: ``score = offset + factor * ln(odds of repaying)`` with
``factor = pdo / ln 2`` and ``offset = base_score - factor * ln(base_odds)``; the score splits
into one points value per feature, ``(offset - factor * intercept) / m - factor * coef_j * WoE_j``
(``m`` kept features). A feature's *points lost* is its best bin's points minus the applicant's;
the reason codes for an adverse-action notice are the features that lost the most points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from riskml.models.credit import CreditFeatureSpec
from riskml.models.credit.binning import BinningConfig, WoEBinning, fit_binning

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

FORMAT = "riskml-credit-scorecard"
FORMAT_VERSION = 1


class ScorecardError(ValueError):
    """Scorecard input or payload is invalid."""


class PointsScaling(BaseModel):
    """Points-to-double-odds scaling."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pdo: float = Field(default=20.0, gt=0, description="Points that double the odds of repaying.")
    base_score: float = Field(default=600.0, description="Score at the base odds.")
    base_odds: float = Field(default=50.0, gt=0, description="Odds of repaying (good:bad).")

    @property
    def factor(self) -> float:
        return self.pdo / math.log(2.0)

    @property
    def offset(self) -> float:
        return self.base_score - self.factor * math.log(self.base_odds)


class ScorecardConfig(BaseModel):
    """Binning, regression and scaling settings."""

    model_config = ConfigDict(extra="forbid")

    binning: BinningConfig = Field(default_factory=BinningConfig)
    C: float = Field(default=1.0, gt=0, description="Inverse L2 strength of the regression.")
    min_iv: float = Field(
        default=0.02, ge=0, description="Features with a lower information value are dropped."
    )
    scaling: PointsScaling = Field(default_factory=PointsScaling)


@dataclass
class Scorecard:
    """A fitted scorecard (numpy only at scoring time)."""

    spec: CreditFeatureSpec
    binning: WoEBinning
    intercept: float
    coefficients: dict[str, float]  # kept features, spec order; all < 0
    scaling: PointsScaling = field(default_factory=PointsScaling)
    dropped: dict[str, str] = field(default_factory=dict)  # feature -> why

    @property
    def used(self) -> list[str]:
        return list(self.coefficients)

    def woe(self, frame: pl.DataFrame) -> np.ndarray:
        if not self.used:
            return np.zeros((len(frame), 0))
        return self.binning.transform(frame, self.used)

    def logit(self, frame: pl.DataFrame) -> np.ndarray:
        w = self.woe(frame)
        beta = np.asarray(list(self.coefficients.values()), dtype=np.float64)
        return self.intercept + w @ beta

    def raw_pd(self, frame: pl.DataFrame) -> np.ndarray:
        """The regression's probability of default (before calibration)."""
        return _sigmoid(self.logit(frame))

    def points(self, frame: pl.DataFrame) -> np.ndarray:
        """Points per kept feature (rows × ``used``); a row's sum is its score."""
        w = self.woe(frame)
        beta = np.asarray(list(self.coefficients.values()), dtype=np.float64)
        m = max(1, len(beta))
        base = (self.scaling.offset - self.scaling.factor * self.intercept) / m
        return base - self.scaling.factor * w * beta

    def score(self, frame: pl.DataFrame) -> np.ndarray:
        """Total points: ``offset - factor * logit(PD)`` (higher is safer)."""
        return self.scaling.offset - self.scaling.factor * self.logit(frame)

    def points_lost(self, frame: pl.DataFrame) -> np.ndarray:
        """Best-bin points minus the applicant's points, per kept feature (>= 0)."""
        w = self.woe(frame)
        best = np.array([max(self.binning.features[n].woe) for n in self.used])
        beta = np.asarray(list(self.coefficients.values()), dtype=np.float64)
        # points_j = const - factor * beta_j * w, beta_j < 0: the best bin has the largest WoE
        return np.maximum(0.0, self.scaling.factor * (-beta) * (best - w))

    def reasons(self, frame: pl.DataFrame, k: int = 4, min_points: float = 0.5) -> list[list[str]]:
        """Per row, up to ``k`` features that lost the most points (at least ``min_points``)."""
        lost = self.points_lost(frame)
        return top_reasons(lost, self.used, k, min_points)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "spec": self.spec.contract(),
            "binning": self.binning.to_json(),
            "intercept": self.intercept,
            "coefficients": self.coefficients,
            "scaling": self.scaling.model_dump(mode="json"),
            "dropped": self.dropped,
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> Scorecard:
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ScorecardError(f"not a {FORMAT} payload")
        if payload.get("version") != FORMAT_VERSION:
            raise ScorecardError(f"unsupported scorecard version {payload.get('version')!r}")
        try:
            spec = CreditFeatureSpec.from_contract(payload["spec"])
            given = {str(k): float(v) for k, v in payload["coefficients"].items()}
            # spec order (the order the card was fitted and sums in), whatever the JSON's order
            rank = {n: i for i, n in enumerate(spec.names)}
            coefs = {k: given[k] for k in sorted(given, key=lambda k: rank.get(k, len(rank)))}
            card = cls(
                spec=spec,
                binning=WoEBinning.from_json(payload["binning"]),
                intercept=float(payload["intercept"]),
                coefficients=coefs,
                scaling=PointsScaling.model_validate(payload.get("scaling", {})),
                dropped={str(k): str(v) for k, v in payload.get("dropped", {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ScorecardError(f"malformed scorecard payload: {exc!r}") from exc
        unknown = sorted(set(coefs) - set(card.binning.features) | set(coefs) - set(spec.names))
        if unknown:
            raise ScorecardError(f"coefficients for features without bins: {unknown}")
        values = [card.intercept, *coefs.values()]
        if not all(math.isfinite(v) for v in values) or any(v >= 0 for v in coefs.values()):
            raise ScorecardError("scorecard coefficients must be finite and negative")
        return card


def top_reasons(
    weights: np.ndarray, names: list[str], k: int, min_weight: float = 0.0
) -> list[list[str]]:
    """Per row, the names of the up to ``k`` largest weights above ``min_weight``, largest first
    (ties by name order)."""
    if weights.size == 0 or k <= 0:
        return [[] for _ in range(weights.shape[0])]
    order = np.argsort(-weights, axis=1, kind="stable")[:, :k]
    out: list[list[str]] = []
    for row, idx in zip(weights, order, strict=True):
        out.append([names[i] for i in idx if row[i] > min_weight])
    return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -700, 700))), dtype=np.float64)


def fit_scorecard(
    frame: pl.DataFrame,
    y: np.ndarray,
    spec: CreditFeatureSpec | None = None,
    config: ScorecardConfig | None = None,
) -> Scorecard:
    """Bin, select (IV, coefficient sign) and fit the scorecard on ``frame`` with labels ``y``."""
    from sklearn.linear_model import LogisticRegression

    spec = spec or CreditFeatureSpec()
    config = config or ScorecardConfig()
    y = np.asarray(y, dtype=np.int64)
    binning = fit_binning(frame, y, spec, config.binning)
    dropped: dict[str, str] = {}
    used: list[str] = []
    for name, fb in binning.features.items():
        if fb.iv < config.min_iv:
            dropped[name] = f"information value {fb.iv:.4f} < {config.min_iv}"
        elif len(set(fb.woe)) < 2:
            dropped[name] = "a single WoE value"
        else:
            used.append(name)
    w_all = binning.transform(frame, spec.names)
    index = {n: i for i, n in enumerate(spec.names)}
    while used:
        x = w_all[:, [index[n] for n in used]]
        lr = LogisticRegression(C=config.C, max_iter=2000)
        lr.fit(x, y)
        coef = lr.coef_[0]
        worst = int(np.argmax(coef))
        if coef[worst] < 0:
            return Scorecard(
                spec=spec,
                binning=binning,
                intercept=float(lr.intercept_[0]),
                coefficients={n: float(c) for n, c in zip(used, coef, strict=True)},
                scaling=config.scaling,
                dropped=dropped,
            )
        dropped[used[worst]] = (
            f"coefficient {coef[worst]:.4f} >= 0 (risk would run against its WoE)"
        )
        used.pop(worst)
    raise ScorecardError(f"no feature is usable: {dropped}")


__all__ = [
    "PointsScaling",
    "Scorecard",
    "ScorecardConfig",
    "ScorecardError",
    "fit_scorecard",
    "top_reasons",
]
