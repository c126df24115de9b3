"""The dispute outcome model: P(the merchant wins a representment), XGBoost + calibration.

Trained on represented disputes whose outcome is known (``won`` = 1, ``lost`` = 0) over
:data:`MODEL_FEATURES`: the feature matrix of :mod:`riskml.features.disputes.features` plus the
requirement report's coverage (:data:`riskml.models.disputes.policy.REQUIREMENT_FEATURES`: the
domain rules as features, so the booster need not rediscover them from a few hundred cases).
Shallow trees with large leaves by default (a few hundred training disputes). The raw booster
probability is mapped through :mod:`riskml.models.calibration`'s strictly increasing
calibrator (fitted on a later time slice), so calibration never reorders disputes. It answers
for any dispute, refunded ones included: "if we represented this one, how likely would we
win?".

Files (:meth:`OutcomeModel.to_files`), no pickle::

    outcome_model.json   format, feature names (the contract), params, calibrator, metadata
    outcome.ubj          the XGBoost booster (UBJSON)
    manifest.json        sha256 of both, checked by :meth:`OutcomeModel.from_files`

Reasons (:meth:`OutcomeModel.reasons`) are the features with the largest TreeSHAP
contributions to the log-odds of winning (``pred_contribs``), signed: positive ones help the
merchant, negative ones hurt.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from riskml.features.disputes.features import FEATURE_NAMES
from riskml.models.bundle import finite_json, sha256_file
from riskml.models.calibration import Calibrator, Method, fit_calibrator
from riskml.models.disputes.policy import REQUIREMENT_FEATURES

FORMAT = "riskml.dispute-outcome"
FORMAT_VERSION = 1
MODEL_FILE = "outcome_model.json"
BOOSTER_FILE = "outcome.ubj"
MANIFEST_FILE = "manifest.json"
#: The model's feature contract: the dispute features and the requirement report's.
MODEL_FEATURES: tuple[str, ...] = (*FEATURE_NAMES, *REQUIREMENT_FEATURES)


class OutcomeModelError(ValueError):
    """Outcome-model input or files are invalid."""


class OutcomeParams(BaseModel):
    """Booster hyper-parameters (small data: shallow trees, strong regularisation) and the
    calibration method."""

    model_config = ConfigDict(extra="forbid")

    num_boost_round: int = Field(400, ge=1)
    early_stopping_rounds: int | None = Field(40, ge=1)
    eta: float = Field(0.05, gt=0, le=1)
    max_depth: int = Field(2, ge=1, le=10)
    min_child_weight: float = Field(10.0, ge=0)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    reg_lambda: float = Field(5.0, ge=0)
    reg_alpha: float = Field(0.0, ge=0)
    gamma: float = Field(0.0, ge=0)
    max_bin: int = Field(256, ge=2)
    seed: int = 7
    calibration: Method = Field(
        "platt", description="isotonic | platt | beta | auto (riskml.models.calibration)."
    )

    def booster_params(self, *, nthread: int = 1) -> dict[str, Any]:
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
            "seed": self.seed,
            "nthread": max(1, int(nthread)),
        }


@dataclass
class OutcomeModel:
    """A fitted booster, its feature contract and (once calibrated) its calibrator."""

    feature_names: list[str]
    booster: Any  # xgboost.Booster
    calibrator: Calibrator | None = None
    params: OutcomeParams = field(default_factory=OutcomeParams)
    metadata: dict[str, Any] = field(default_factory=dict)

    # -- scoring ---------------------------------------------------------------------------

    def matrix(self, features: Any) -> np.ndarray:
        """A float32 matrix in the contract's order from a polars frame holding the feature
        columns (any other columns are ignored) or a matrix of the right width."""
        if hasattr(features, "select") and hasattr(features, "columns"):
            if missing := [n for n in self.feature_names if n not in features.columns]:
                raise OutcomeModelError(f"feature columns missing: {missing[:5]}")
            x = features.select(self.feature_names).to_numpy()
        else:
            x = np.asarray(features)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise OutcomeModelError(
                f"expected {len(self.feature_names)} feature columns, got shape {x.shape}"
            )
        return np.ascontiguousarray(x, dtype=np.float32)

    def raw(self, features: Any) -> np.ndarray:
        """The booster's probability of winning (before calibration)."""
        x = self.matrix(features)
        if len(x) == 0:
            return np.zeros(0)
        out = self.booster.inplace_predict(x)
        return np.asarray(out, dtype=np.float64)

    def predict(self, features: Any) -> np.ndarray:
        """The calibrated win probability (the raw one when not calibrated yet)."""
        raw = self.raw(features)
        return raw if self.calibrator is None else np.asarray(self.calibrator(raw), np.float64)

    def contributions(self, features: Any) -> np.ndarray:
        """TreeSHAP contributions to the log-odds of winning (rows x features, bias left out)."""
        import xgboost as xgb

        x = self.matrix(features)
        dm = xgb.DMatrix(x, feature_names=self.feature_names, nthread=1)
        return np.asarray(self.booster.predict(dm, pred_contribs=True), np.float64)[:, :-1]

    def reasons(self, features: Any, k: int = 3) -> list[list[tuple[str, float]]]:
        """Per row, the ``k`` features with the largest absolute contributions, signed."""
        contribs = self.contributions(features)
        out: list[list[tuple[str, float]]] = []
        for row in contribs:
            top = np.argsort(-np.abs(row), kind="stable")[:k]
            out.append([(self.feature_names[i], float(row[i])) for i in top if row[i] != 0.0])
        return out

    # -- calibration -----------------------------------------------------------------------

    def calibrate(self, features: Any, y: np.ndarray, method: Method | None = None) -> Calibrator:
        """Fit the calibrator on a later slice (rows in time order for ``auto``); sets and
        returns it."""
        self.calibrator = fit_calibrator(
            self.raw(features), np.asarray(y), method or self.params.calibration
        )
        return self.calibrator

    # -- files -----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "feature_names": list(self.feature_names),
            "params": self.params.model_dump(mode="json"),
            "calibrator": self.calibrator.to_json() if self.calibrator is not None else None,
            "booster_file": BOOSTER_FILE,
            "metadata": self.metadata,
        }

    def to_files(self, directory: Path | str) -> Path:
        """Write ``outcome_model.json``, ``outcome.ubj`` and ``manifest.json`` into
        ``directory`` (created); return it."""
        from riskml import __version__

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        (out / BOOSTER_FILE).write_bytes(bytes(self.booster.save_raw(raw_format="ubj")))
        text = json.dumps(finite_json(self.to_json()), indent=1, sort_keys=True, allow_nan=False)
        (out / MODEL_FILE).write_text(text + "\n")
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "created_at": dt.datetime.now(dt.UTC).isoformat(),
            "riskml": __version__,
            "files": {n: sha256_file(out / n) for n in (MODEL_FILE, BOOSTER_FILE)},
        }
        (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        return out

    @classmethod
    def from_files(cls, directory: Path | str, *, nthread: int = 1) -> OutcomeModel:
        """Load and verify (sha256 per file, booster features = the contract) a model written
        by :meth:`to_files`; :class:`OutcomeModelError` on anything off."""
        import xgboost as xgb

        root = Path(directory)
        try:
            manifest = json.loads((root / MANIFEST_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise OutcomeModelError(f"{root}: no readable {MANIFEST_FILE}: {exc}") from exc
        if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
            raise OutcomeModelError(f"{root}: not a {FORMAT} v{FORMAT_VERSION} model")
        digests = manifest.get("files")
        if not isinstance(digests, dict) or set(digests) != {MODEL_FILE, BOOSTER_FILE}:
            raise OutcomeModelError(f"{root}: the manifest must list {MODEL_FILE}, {BOOSTER_FILE}")
        for name, digest in digests.items():
            path = root / name
            if not path.is_file() or sha256_file(path) != digest:
                raise OutcomeModelError(f"{root}: {name} is missing or differs from its sha256")
        try:
            payload = json.loads((root / MODEL_FILE).read_text())
        except ValueError as exc:
            raise OutcomeModelError(f"{root}: {MODEL_FILE} is not JSON: {exc}") from exc
        if payload.get("format") != FORMAT or payload.get("version") != FORMAT_VERSION:
            raise OutcomeModelError(f"{root}: {MODEL_FILE} is not a {FORMAT} model")
        names = payload.get("feature_names")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise OutcomeModelError(f"{root}: feature_names must be a non-empty list of names")
        booster = xgb.Booster()
        try:
            booster.load_model(bytearray((root / BOOSTER_FILE).read_bytes()))
        except xgb.core.XGBoostError as exc:
            raise OutcomeModelError(f"{root}: {BOOSTER_FILE} is not an XGBoost model") from exc
        if list(booster.feature_names or []) != names:
            raise OutcomeModelError(f"{root}: the booster's features differ from feature_names")
        booster.set_param({"nthread": max(1, nthread)})
        cal = payload.get("calibrator")
        return cls(
            feature_names=names,
            booster=booster,
            calibrator=Calibrator.from_json(cal) if cal is not None else None,
            params=OutcomeParams.model_validate(payload.get("params", {})),
            metadata=dict(payload.get("metadata") or {}),
        )


def fit_outcome_model(
    x_train: np.ndarray,
    y_train: np.ndarray,
    feature_names: list[str],
    params: OutcomeParams | None = None,
    *,
    x_valid: np.ndarray | None = None,
    y_valid: np.ndarray | None = None,
    nthread: int = 1,
    metadata: dict[str, Any] | None = None,
) -> tuple[OutcomeModel, dict[str, float]]:
    """Train the booster in process (early stopping on ``valid`` by log loss when given; the
    booster is kept at its best iteration). Returns the uncalibrated model and
    ``{"rounds", "best_iteration", "seconds", "train_rows", "train_win_rate"}``."""
    import xgboost as xgb

    params = params or OutcomeParams()
    x_train = np.asarray(x_train, dtype=np.float32)
    y_train = np.asarray(y_train)
    if x_train.ndim != 2 or x_train.shape[1] != len(feature_names):
        raise OutcomeModelError(
            f"x_train must have {len(feature_names)} columns, got shape {x_train.shape}"
        )
    if len(y_train) != len(x_train) or len(y_train) == 0:
        raise OutcomeModelError("training needs as many labels as rows, and at least one row")
    if not np.isin(y_train, (0, 1)).all() or y_train.min() == y_train.max():
        raise OutcomeModelError("labels must be 0/1 with both outcomes (won and lost) present")
    t0 = time.perf_counter()
    dtrain = xgb.DMatrix(x_train, label=y_train, feature_names=feature_names, nthread=nthread)
    evals: list[tuple[Any, str]] = []
    callbacks: list[Any] = []
    if x_valid is not None and y_valid is not None and len(y_valid):
        dvalid = xgb.DMatrix(
            np.asarray(x_valid, dtype=np.float32),
            label=np.asarray(y_valid),
            feature_names=feature_names,
            nthread=nthread,
        )
        evals.append((dvalid, "valid"))
        if params.early_stopping_rounds:
            callbacks.append(
                xgb.callback.EarlyStopping(
                    rounds=params.early_stopping_rounds,
                    metric_name="logloss",
                    data_name="valid",
                    save_best=True,
                )
            )
    booster = xgb.train(
        params.booster_params(nthread=nthread),
        dtrain,
        num_boost_round=params.num_boost_round,
        evals=evals,
        callbacks=callbacks,
        verbose_eval=False,
    )
    booster.set_param({"nthread": 1})
    info = {
        "rounds": float(booster.num_boosted_rounds()),
        "best_iteration": float(booster.attr("best_iteration") or booster.num_boosted_rounds() - 1),
        "seconds": time.perf_counter() - t0,
        "train_rows": float(len(y_train)),
        "train_win_rate": float(np.mean(y_train)),
    }
    model = OutcomeModel(
        feature_names=list(feature_names),
        booster=booster,
        params=params,
        metadata=dict(metadata or {}),
    )
    return model, info


__all__ = [
    "BOOSTER_FILE",
    "MODEL_FEATURES",
    "MODEL_FILE",
    "OutcomeModel",
    "OutcomeModelError",
    "OutcomeParams",
    "fit_outcome_model",
]
