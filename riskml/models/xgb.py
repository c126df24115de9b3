"""XGBoost tabular model: parameters, class-imbalance weight, training loop pieces, UBJSON IO.

Pure model code (no Ray here): :mod:`riskml.training.xgboost_train` runs :func:`fit_booster` in
each Ray Train worker on that worker's shard; the same function trains in-process when Ray is not
wanted (tests, the plain baseline in the benchmark).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # pragma: no cover
    import xgboost as xgb


class XGBParams(BaseModel):
    """Booster hyper-parameters and the training schedule."""

    model_config = ConfigDict(extra="forbid")

    num_boost_round: int = Field(default=300, ge=1)
    early_stopping_rounds: int | None = Field(default=30, ge=1)
    eta: float = Field(default=0.1, gt=0, le=1)
    max_depth: int = Field(default=6, ge=1, le=16)
    min_child_weight: float = Field(default=1.0, ge=0)
    subsample: float = Field(default=0.8, gt=0, le=1)
    colsample_bytree: float = Field(default=0.8, gt=0, le=1)
    reg_lambda: float = Field(default=1.0, ge=0)
    reg_alpha: float = Field(default=0.0, ge=0)
    gamma: float = Field(default=0.0, ge=0)
    max_bin: int = Field(
        default=4096,
        ge=2,
        description="Histogram bins per feature. Quantile bins put few cut points in a heavy "
        'tail (with 256 none fell between ~195 and ~2,142 in amount), so rules like "above 220" '
        "could not be learned; 4,096 keep the tail at a small training cost.",
    )
    tree_method: Literal["hist", "approx", "exact"] = Field(
        default="hist",
        description="'hist' (quantile histograms of max_bin bins, built once), 'approx' "
        "(max_bin quantile sketches rebuilt each iteration) or 'exact' (every split point, no "
        "binning: max_bin is ignored; slow on large data). XGBoost's distributed training "
        "(Ray Train, any number of workers) supports hist and approx only: exact trains in "
        "process.",
    )
    scale_pos_weight: float | Literal["auto", "sqrt"] | None = Field(
        default="auto",
        description="Class-imbalance weight: 'auto' = negatives/positives, 'sqrt' its root, "
        "a number, or None for no reweighting. Probabilities are calibrated afterwards.",
    )
    eval_metric: tuple[str, ...] = ("logloss", "auc", "aucpr")
    seed: int = 7

    def booster_params(
        self, *, pos_rate: float | None, nthread: int, use_gpu: bool = False
    ) -> dict[str, Any]:
        """The dict passed to ``xgboost.train``."""
        params: dict[str, Any] = {
            "objective": "binary:logistic",
            "eta": self.eta,
            "max_depth": self.max_depth,
            "min_child_weight": self.min_child_weight,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "lambda": self.reg_lambda,
            "alpha": self.reg_alpha,
            "gamma": self.gamma,
            "max_bin": self.max_bin,
            "tree_method": self.tree_method,
            "eval_metric": list(self.eval_metric),
            "seed": self.seed,
            "nthread": max(1, int(nthread)),
            "device": "cuda" if use_gpu else "cpu",
        }
        spw = imbalance_weight(self.scale_pos_weight, pos_rate)
        if spw is not None:
            params["scale_pos_weight"] = spw
        return params


def imbalance_weight(setting: float | str | None, pos_rate: float | None) -> float | None:
    """Resolve ``scale_pos_weight`` from the global positive rate (not a worker's shard)."""
    if setting is None:
        return None
    if isinstance(setting, int | float):
        return float(setting)
    if pos_rate is None or not 0.0 < pos_rate < 1.0:
        return None
    ratio = (1.0 - pos_rate) / pos_rate
    return float(np.sqrt(ratio)) if setting == "sqrt" else float(ratio)


def sparse_report_callback(
    every: int, report: Callable[[int, dict[str, float], xgb.Booster, bool], None]
) -> Any:
    """An XGBoost callback calling ``report(rounds_done, metrics, booster, final)`` sparingly.

    It fires every ``every`` boosted rounds (counting rounds of a resumed model too; ``every=0``
    never) and always once at the end with ``final=True``. Reporting each round through Ray is
    what made Ray-trained XGBoost 30x slower than plain XGBoost on a 2-core machine; every K
    rounds plus the end costs nothing measurable.
    """
    import xgboost as xgb

    class SparseReport(xgb.callback.TrainingCallback):
        def __init__(self) -> None:
            self.last: dict[str, float] = {}

        def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: Any) -> bool:
            self.last = flat_last(evals_log)
            # rounds in the model, a resumed model's included: ``epoch`` restarts from 0 when
            # training continues an ``xgb_model`` (XGBoost 3.2), which put a resumed run's
            # reports and checkpoints at the wrong round numbers
            done = model.num_boosted_rounds()
            if every > 0 and done % every == 0:
                report(done, self.last, model, False)
            return False

        def after_training(self, model: xgb.Booster) -> xgb.Booster:
            report(model.num_boosted_rounds(), self.last, model, True)
            return model

    return SparseReport()


def flat_last(evals_log: Any) -> dict[str, float]:
    """``{"valid-aucpr": last value, ...}`` from XGBoost's nested evals log."""
    out: dict[str, float] = {}
    for data_name, metrics in (evals_log or {}).items():
        for metric, values in metrics.items():
            if values:
                last = values[-1]
                out[f"{data_name}-{metric}"] = float(last[0] if isinstance(last, tuple) else last)
    return out


def fit_booster(
    params: XGBParams,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray | None = None,
    y_valid: np.ndarray | None = None,
    *,
    pos_rate: float | None = None,
    nthread: int = 1,
    use_gpu: bool = False,
    feature_names: Sequence[str] | None = None,
    init_model: xgb.Booster | None = None,
    callbacks: Sequence[Any] = (),
) -> tuple[xgb.Booster, dict[str, Any]]:
    """Train one booster (resuming from ``init_model`` if given); early stopping on ``valid``.

    ``pos_rate`` is the positive rate of the *whole* training set (pass it from the driver when
    this runs on a shard). Returns the booster and ``{"best_iteration", "rounds", "seconds"}``.
    """
    import xgboost as xgb

    if pos_rate is None:
        pos_rate = float(np.mean(y_train)) if len(y_train) else None
    names = list(feature_names) if feature_names else None
    t0 = time.perf_counter()
    dtrain: xgb.DMatrix
    if params.tree_method == "hist":
        dtrain = xgb.QuantileDMatrix(
            x_train, label=y_train, feature_names=names, max_bin=params.max_bin, nthread=nthread
        )
    else:  # XGBoost builds a QuantileDMatrix for hist only; approx/exact need the raw values
        dtrain = xgb.DMatrix(x_train, label=y_train, feature_names=names, nthread=nthread)
    evals: list[tuple[Any, str]] = []
    if x_valid is not None and y_valid is not None and len(y_valid):
        dvalid = xgb.DMatrix(x_valid, label=y_valid, feature_names=names, nthread=nthread)
        evals.append((dvalid, "valid"))
    done = init_model.num_boosted_rounds() if init_model is not None else 0
    remaining = max(0, params.num_boost_round - done)
    cbs = list(callbacks)
    if params.early_stopping_rounds and evals:
        cbs.append(
            xgb.callback.EarlyStopping(
                rounds=params.early_stopping_rounds,
                metric_name=_stopping_metric(params),
                data_name="valid",
                maximize=_stopping_metric(params) in {"auc", "aucpr"},
                save_best=False,
            )
        )
    booster = xgb.train(
        params.booster_params(pos_rate=pos_rate, nthread=nthread, use_gpu=use_gpu),
        dtrain,
        num_boost_round=remaining,
        evals=evals,
        callbacks=cbs,
        xgb_model=init_model,
        verbose_eval=False,
    )
    info = {
        "rounds": booster.num_boosted_rounds(),
        "best_iteration": int(getattr(booster, "best_iteration", booster.num_boosted_rounds() - 1)),
        "seconds": time.perf_counter() - t0,
    }
    return booster, info


def _stopping_metric(params: XGBParams) -> str:
    """Early stopping watches the last eval metric (``aucpr`` by default)."""
    return params.eval_metric[-1]


def predict(booster: xgb.Booster, x: np.ndarray, *, best: bool = True) -> np.ndarray:
    """Probabilities via ``inplace_predict`` (no DMatrix copy), up to the best iteration."""
    rng = iteration_range(booster) if best else (0, 0)
    out = booster.inplace_predict(np.ascontiguousarray(x, dtype=np.float32), iteration_range=rng)
    return np.asarray(out, dtype=np.float64)


def iteration_range(booster: xgb.Booster) -> tuple[int, int]:
    """The trees up to the best iteration (early stopping), or all of them: XGBoost's
    ``iteration_range`` for :func:`predict` and for contributions of the same prediction."""
    bi = _best_iteration(booster)
    return (0, bi + 1) if bi is not None else (0, 0)


def _best_iteration(booster: xgb.Booster) -> int | None:
    attr = booster.attr("best_iteration")
    return int(attr) if attr is not None else None


def to_ubj(booster: xgb.Booster) -> bytes:
    """The booster as UBJSON bytes (XGBoost's native binary JSON format)."""
    return bytes(booster.save_raw(raw_format="ubj"))


def from_ubj(data: bytes | bytearray, *, nthread: int | None = None) -> xgb.Booster:
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(bytearray(data))
    if nthread:
        booster.set_param({"nthread": nthread})
    return booster
