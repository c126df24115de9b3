"""The GBDT challenger: XGBoost with monotone constraints, native categorical splits, reason codes
from SHAP contributions; stored as UBJSON bytes.

The feature matrix comes from :meth:`CreditFeatureSpec.numeric_matrix` (categories as their
index in the spec, declared to XGBoost as categorical; unknown or missing → missing). Every
feature with a required direction gets ``monotone_constraints`` ``+1`` / ``-1``, so the raw PD
cannot move against it anywhere in the input space. The booster keeps its feature names and
types inside the UBJSON, and :meth:`GBDTModel.from_ubj` checks them against the spec.

:func:`fit_gbdt` is the plain in-process training function: Ray Tune trials and the Ray Train
worker of :mod:`riskml.training.credit` call it too, so there is one training path and the plain
call is the baseline of the Ray timing.

Reason codes are the features with the largest positive contributions to the log-odds of
default (``pred_contribs=True``: exact TreeSHAP values), largest first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from riskml.models.credit import CreditFeatureSpec
from riskml.models.credit.scorecard import top_reasons

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl
    import xgboost as xgb


class GBDTError(ValueError):
    """GBDT input or artifact is invalid."""


class GBDTParams(BaseModel):
    """Booster hyper-parameters and schedule (no class reweighting: the PD must stay a
    probability before calibration)."""

    model_config = ConfigDict(extra="forbid")

    num_boost_round: int = Field(default=600, ge=1)
    early_stopping_rounds: int | None = Field(default=40, ge=1)
    eta: float = Field(default=0.05, gt=0, le=1)
    max_depth: int = Field(default=4, ge=1, le=12)
    min_child_weight: float = Field(default=5.0, ge=0)
    subsample: float = Field(default=0.8, gt=0, le=1)
    colsample_bytree: float = Field(default=0.8, gt=0, le=1)
    reg_lambda: float = Field(default=1.0, ge=0)
    reg_alpha: float = Field(default=0.0, ge=0)
    gamma: float = Field(default=0.0, ge=0)
    max_bin: int = Field(default=256, ge=2)
    max_cat_to_onehot: int = Field(
        default=1, ge=1, description="1: partition-based categorical splits (XGBoost's default)."
    )
    seed: int = 7

    def booster_params(self, spec: CreditFeatureSpec, *, nthread: int = 1) -> dict[str, Any]:
        """The dict passed to ``xgboost.train``: constraints in spec order."""
        constraints = ",".join(str(spec.monotone[n]) for n in spec.names)
        return {
            "objective": "binary:logistic",
            "eval_metric": ["logloss", "auc"],
            "tree_method": "hist",
            "eta": self.eta,
            "max_depth": self.max_depth,
            "min_child_weight": self.min_child_weight,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "lambda": self.reg_lambda,
            "alpha": self.reg_alpha,
            "gamma": self.gamma,
            "max_bin": self.max_bin,
            "max_cat_to_onehot": self.max_cat_to_onehot,
            "monotone_constraints": f"({constraints})",
            "seed": self.seed,
            "nthread": max(1, int(nthread)),
        }


def feature_types(spec: CreditFeatureSpec) -> list[str]:
    return ["c" if f.kind == "categorical" else "q" for f in spec.features]


def dmatrix(spec: CreditFeatureSpec, x: np.ndarray, y: np.ndarray | None = None) -> xgb.DMatrix:
    import xgboost as xgb

    return xgb.DMatrix(
        np.ascontiguousarray(x, dtype=np.float32),
        label=y,
        feature_names=spec.names,
        feature_types=feature_types(spec),
        enable_categorical=True,
        nthread=1,
    )


@dataclass
class GBDTModel:
    """A fitted booster with its feature contract."""

    spec: CreditFeatureSpec
    booster: Any  # xgboost.Booster

    def matrix(self, frame: pl.DataFrame) -> np.ndarray:
        return self.spec.numeric_matrix(frame)

    def raw_pd_matrix(self, x: np.ndarray) -> np.ndarray:
        out = self.booster.inplace_predict(np.ascontiguousarray(x, dtype=np.float32))
        return np.asarray(out, dtype=np.float64)

    def raw_pd(self, frame: pl.DataFrame) -> np.ndarray:
        """The booster's probability of default (before calibration)."""
        return self.raw_pd_matrix(self.matrix(frame))

    def contributions(self, frame: pl.DataFrame) -> np.ndarray:
        """SHAP contributions to the log-odds per feature (rows × features, bias left out)."""
        contribs = self.booster.predict(dmatrix(self.spec, self.matrix(frame)), pred_contribs=True)
        return np.asarray(contribs, dtype=np.float64)[:, :-1]

    def reasons(
        self, frame: pl.DataFrame, k: int = 4, min_contribution: float = 0.0
    ) -> list[list[str]]:
        """Per row, up to ``k`` features that raised the log-odds of default the most."""
        return top_reasons(self.contributions(frame), self.spec.names, k, min_contribution)

    def to_ubj(self) -> bytes:
        return bytes(self.booster.save_raw(raw_format="ubj"))

    @classmethod
    def from_ubj(cls, data: bytes | bytearray, spec: CreditFeatureSpec) -> GBDTModel:
        import xgboost as xgb

        booster = xgb.Booster()
        try:
            booster.load_model(bytearray(data))
        except xgb.core.XGBoostError as exc:
            raise GBDTError(f"not an XGBoost model: {exc}") from exc
        if list(booster.feature_names or []) != spec.names:
            raise GBDTError(
                f"booster features {booster.feature_names} differ from the spec {spec.names}"
            )
        if list(booster.feature_types or []) != feature_types(spec):
            raise GBDTError("booster feature types differ from the spec's kinds")
        booster.set_param({"nthread": 1})
        return cls(spec=spec, booster=booster)


def fit_gbdt(
    x_train: np.ndarray,
    y_train: np.ndarray,
    spec: CreditFeatureSpec,
    params: GBDTParams | None = None,
    *,
    x_valid: np.ndarray | None = None,
    y_valid: np.ndarray | None = None,
    nthread: int = 1,
) -> tuple[GBDTModel, dict[str, float]]:
    """Train one booster in process (early stopping on the validation vintages when given).

    Returns the model (trimmed to the best iteration) and ``{"rounds", "best_iteration",
    "seconds", "valid_logloss", "valid_auc"}`` (the last two NaN without validation data).
    """
    import xgboost as xgb

    params = params or GBDTParams()
    y_train = np.asarray(y_train)
    if x_train.ndim != 2 or x_train.shape[1] != len(spec.names):
        raise GBDTError(f"x_train must have {len(spec.names)} columns, got {x_train.shape}")
    if len(y_train) != len(x_train) or len(y_train) == 0 or y_train.min() == y_train.max():
        raise GBDTError("training needs as many labels as rows and both classes")
    t0 = time.perf_counter()
    dtrain = dmatrix(spec, x_train, y_train)
    evals: list[tuple[Any, str]] = []
    callbacks: list[Any] = []
    if x_valid is not None and y_valid is not None and len(y_valid):
        evals.append((dmatrix(spec, x_valid, np.asarray(y_valid)), "valid"))
        if params.early_stopping_rounds:
            callbacks.append(
                xgb.callback.EarlyStopping(
                    rounds=params.early_stopping_rounds,
                    metric_name="logloss",
                    data_name="valid",
                    save_best=True,
                )
            )
    log: dict[str, Any] = {}
    booster = xgb.train(
        params.booster_params(spec, nthread=nthread),
        dtrain,
        num_boost_round=params.num_boost_round,
        evals=evals,
        evals_result=log,
        callbacks=callbacks,
        verbose_eval=False,
    )
    seconds = time.perf_counter() - t0
    valid = log.get("valid", {})
    best = int(booster.attr("best_iteration") or booster.num_boosted_rounds() - 1)
    info = {
        "rounds": float(booster.num_boosted_rounds()),
        "best_iteration": float(best),
        "seconds": seconds,
        "valid_logloss": float(valid["logloss"][best]) if "logloss" in valid else float("nan"),
        "valid_auc": float(valid["auc"][best]) if "auc" in valid else float("nan"),
    }
    booster.set_param({"nthread": 1})
    return GBDTModel(spec=spec, booster=booster), info


__all__ = ["GBDTError", "GBDTModel", "GBDTParams", "dmatrix", "feature_types", "fit_gbdt"]
