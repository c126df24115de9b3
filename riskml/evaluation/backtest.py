"""Prequential backtest: folds stepping through time, label-delay aware.

Fold ``f`` (0-based)::

    test window   [test_start + f*step, test_start + f*step + test_days)
    gap           [test window start - delay_days, test window start)   no training rows
    train window  [gap start - train_days, gap start)   (train_days None: all history)
    label cut-off = end of the gap = test window start

Training labels are those *known* at the cut-off: ``is_fraud == 1`` counts only when
``label_available_at <= cut-off`` (one second later and the row is genuine for training).
Test labels are the ground truth. With ``exclude_known_cards`` a test row is dropped when its
card already had a fraud label available at (or before) 00:00 UTC of that row's test day.

Features are computed once, point-in-time, over the whole transaction history with
:func:`riskml.features.batch.compute_features` (every feature of a row describes the world
strictly before it; label-delayed risk only counts labels available at the snapshot), then
assembled into the ``fraud_v1`` contract the way the Feast training set is.

Models per fold (trained in-process, no Ray start-up per fold, by the one training path
:func:`riskml.training.pipeline.fit_models` that :func:`~riskml.training.pipeline.train_models`
and the pipeline's tasks use): ``xgboost`` and ``sequence`` (trained on *train*, early stopping
on *valid*, calibrated on *calib*), ``ensemble`` (their blend), and the baselines ``logreg``
(scikit-learn ``LogisticRegression()`` on standardised features) and ``xgboost_default``
(``xgboost.XGBClassifier()``), both with library defaults on the whole training window.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl

ModelChoice = Literal["xgboost", "sequence", "ensemble", "baselines"]
ALL_MODELS: tuple[str, ...] = ("xgboost", "sequence", "ensemble", "logreg", "xgboost_default")
DAY = dt.timedelta(days=1)
SEQ_PREFIX = "seq_"


class BacktestError(ValueError):
    """The backtest cannot run as configured (windows outside the data, one class, ...)."""


class BacktestConfig(BaseModel):
    """Windows and models of a prequential backtest."""

    model_config = ConfigDict(extra="forbid")

    test_start: dt.date
    folds: int = Field(default=3, ge=1)
    step_days: int = Field(default=7, ge=1)
    test_days: int = Field(default=7, ge=1)
    delay_days: int = Field(default=7, ge=0)
    train_days: int | None = Field(default=None, ge=1)
    k: int = Field(default=100, ge=1)
    exclude_known_cards: bool = False
    models: tuple[ModelChoice, ...] = ("xgboost", "sequence", "ensemble", "baselines")
    max_fpr: float = Field(default=0.01, gt=0, lt=1)
    sequence_epochs: int | None = Field(default=None, ge=1)
    seed: int = 7

    @model_validator(mode="after")
    def _check(self) -> BacktestConfig:
        if not self.models:
            raise ValueError("choose at least one model")
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"duplicate models: {self.models}")
        return self

    def model_names(self) -> list[str]:
        """Report names: ``ensemble`` needs xgboost+sequence, ``baselines`` expands to two."""
        chosen = set(self.models)
        names = []
        for name in ALL_MODELS:
            if name in ("logreg", "xgboost_default"):
                if "baselines" in chosen:
                    names.append(name)
            elif name in chosen:
                names.append(name)
        return names

    def trained_models(self) -> list[str]:
        """The models that must be fitted (``ensemble`` needs both components)."""
        chosen = set(self.models)
        out = [m for m in ("xgboost", "sequence") if m in chosen or "ensemble" in chosen]
        return out


#: CPU threads each fold's in-process training uses.
FOLD_THREADS = 2


@dataclass(frozen=True)
class Fold:
    index: int
    train_start: dt.datetime | None  # None: all history
    train_end: dt.datetime  # = gap start
    label_cutoff: dt.datetime  # = gap end = test start
    test_start: dt.datetime
    test_end: dt.datetime

    def to_dict(self) -> dict[str, str | int | None]:
        return {
            "fold": self.index,
            "train_start": self.train_start.isoformat() if self.train_start else None,
            "train_end": self.train_end.isoformat(),
            "label_cutoff": self.label_cutoff.isoformat(),
            "test_start": self.test_start.isoformat(),
            "test_end": self.test_end.isoformat(),
        }


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def fold_windows(config: BacktestConfig) -> list[Fold]:
    """The folds' windows (UTC midnights); pure date arithmetic."""
    out = []
    for f in range(config.folds):
        test_start = _midnight(config.test_start) + f * config.step_days * DAY
        gap_start = test_start - config.delay_days * DAY
        train_start = gap_start - config.train_days * DAY if config.train_days is not None else None
        out.append(
            Fold(
                index=f,
                train_start=train_start,
                train_end=gap_start,
                label_cutoff=test_start,
                test_start=test_start,
                test_end=test_start + config.test_days * DAY,
            )
        )
    return out


def _us(value: dt.datetime) -> int:
    value = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    return (value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def labels_as_of(
    is_fraud: np.ndarray, label_available_us: np.ndarray, cutoff: dt.datetime
) -> np.ndarray:
    """Training labels known at ``cutoff``: fraud only if ``label_available_at <= cutoff``."""
    import numpy as np

    y = np.asarray(is_fraud).astype(bool)
    known = np.asarray(label_available_us, dtype=np.int64) <= _us(cutoff)
    return (y & known).astype(np.int8)


def known_card_mask(
    customer_id: np.ndarray,
    ts_us: np.ndarray,
    hist_customer_id: np.ndarray,
    hist_is_fraud: np.ndarray,
    hist_label_us: np.ndarray,
) -> np.ndarray:
    """True for rows whose card had a fraud label available at or before 00:00 UTC of the row's
    day (a card the business already knows is compromised), from the history given."""
    import numpy as np

    day_us = 86_400 * 1_000_000
    fraud = np.asarray(hist_is_fraud).astype(bool)
    cards = np.asarray(hist_customer_id)[fraud]
    labels = np.asarray(hist_label_us, dtype=np.int64)[fraud]
    first: dict[Any, int] = {}
    for card, lab in zip(cards.tolist(), labels.tolist(), strict=True):
        if card not in first or lab < first[card]:
            first[card] = lab
    never = np.iinfo(np.int64).max
    first_label = np.array(
        [first.get(c, never) for c in np.asarray(customer_id).tolist()], dtype=np.int64
    )
    day_start = (np.asarray(ts_us, dtype=np.int64) // day_us) * day_us
    return first_label <= day_start


# -- data + features ---------------------------------------------------------------------------
def load_transactions(
    path: Path, mapping: Path | None = None, label_delay_days: float | None = None
) -> pl.DataFrame:
    """A riskml dataset, or an external CSV/Parquet through the importer (``mapping``)."""
    from riskml.data.importer import ImportMapping, load_external
    from riskml.data.io import read_transactions

    path = Path(path)
    if mapping is None and label_delay_days is None:
        try:
            return read_transactions(path)
        except (FileNotFoundError, ValueError):
            if path.is_dir() and (path / "transactions").is_dir():
                raise
    spec = ImportMapping.from_yaml(mapping) if mapping is not None else ImportMapping()
    accepted, _quarantined = load_external(path, spec, label_delay_days=label_delay_days)
    if accepted.height == 0:
        raise BacktestError(f"{path}: no valid transactions after import")
    return accepted.sort("ts", maintain_order=True)


def feature_frame(tx: pl.DataFrame) -> pl.DataFrame:
    """Point-in-time ``fraud_v1`` features for every transaction, plus one ``seq_<field>`` list
    column per sequence field (the model frame :func:`model_spec` describes)."""
    import numpy as np
    import polars as pl

    from riskml.features.batch import compute_features
    from riskml.features.definitions import SEQ_FIELDS, SEQ_LEN
    from riskml.features.realtime import request_features
    from riskml.features.store import BASE_COLUMNS, finalize_features, training_sequences

    tables = compute_features(tx)
    base = tx.select(*BASE_COLUMNS).with_columns(pl.col("ts").dt.epoch("us").alias("ts_us"))
    cust = tables.customer_tx.drop("customer_id", "event_timestamp")
    seq_cols = [c for c in cust.columns if c.startswith("seq_")]
    frame = base.join(cust.drop(seq_cols), on="tx_id", how="left", maintain_order="left")
    frame = frame.with_columns(pl.int_range(pl.len()).alias("__row")).sort("ts")
    for table, key in ((tables.terminal_stats, "terminal_id"), (tables.device_stats, "device_id")):
        right = table.rename({"event_timestamp": "__feature_ts"}).sort("__feature_ts")
        frame = frame.join_asof(
            right,
            left_on="ts",
            right_on="__feature_ts",
            by=key,
            strategy="backward",
            check_sortedness=False,
        ).drop("__feature_ts")
    frame = frame.sort("__row").drop("__row")
    req = request_features(
        frame["amount"].to_numpy(),
        frame["ts_us"].to_numpy(),
        frame["cust_cnt_7d"].fill_null(0).to_numpy(),
        frame["cust_mean_7d"].fill_null(0.0).to_numpy(),
        frame["cust_cnt_30d"].fill_null(0).to_numpy(),
        frame["cust_mean_30d"].fill_null(0.0).to_numpy(),
    )
    frame = finalize_features(frame.with_columns(pl.Series(k, v) for k, v in req.items()))
    seq = training_sequences(frame, source=tables.customer_tx)
    seq = seq.reshape(frame.height, SEQ_LEN, len(SEQ_FIELDS))
    return frame.with_columns(
        pl.Series(f"{SEQ_PREFIX}{name}", np.ascontiguousarray(seq[:, :, j])).cast(
            pl.List(pl.Float32)
        )
        for j, name in enumerate(SEQ_FIELDS)
    )


def model_spec() -> Any:
    """The FeatureSpec of :func:`feature_frame` (the ``fraud_v1`` contract + sequence)."""
    from riskml.training.dataset import model_feature_spec

    return model_feature_spec()


# -- one fold ---------------------------------------------------------------------------------
def _metrics(
    y: np.ndarray, p: np.ndarray, cards: np.ndarray, days: np.ndarray, k: int, max_fpr: float
) -> dict[str, float]:
    from riskml.metrics import evaluate

    m = evaluate(y, p, card_id=cards, day=days, k=k, max_fpr=max_fpr)
    return {
        "auc": m["roc_auc"],
        "ap": m["average_precision"],
        "cp_at_k": m[f"card_precision_at_{k}"],
        f"recall_at_fpr_{max_fpr:g}": m[f"recall_at_fpr_{max_fpr:g}"],
        "ece": m["ece"],
        "brier": m["brier"],
    }


def _fit_fold(
    train: pl.DataFrame, test: pl.DataFrame, spec: Any, config: BacktestConfig
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Fit the fold's models on ``train`` (labels already as of the cut-off) with the one
    training path (:func:`riskml.training.pipeline.fit_models`, in process); score ``test``
    with the unsaved bundle, as serving would."""
    from riskml.models.features import extract_inputs
    from riskml.models.sequence import SequenceParams
    from riskml.models.xgb import XGBParams
    from riskml.training.pipeline import TrainConfig, fit_models, score_test

    names = config.model_names()
    trained = config.trained_models()
    scores: dict[str, np.ndarray] = {}
    timings: dict[str, float] = {}
    te = extract_inputs(test, spec)
    if trained:
        seq_params = SequenceParams()
        if config.sequence_epochs is not None:
            seq_params = seq_params.model_copy(update={"epochs": config.sequence_epochs})
        train_config = TrainConfig(
            models=tuple("xgb" if m == "xgboost" else "sequence" for m in trained),
            xgb=XGBParams(seed=config.seed),
            sequence=seq_params,
            label_delay_aware=False,
            card_precision_k=config.k,
            max_fpr=config.max_fpr,
        )
        t0 = time.perf_counter()
        artifacts, fit_timings = fit_models(
            train, spec, train_config, in_process=True, threads=FOLD_THREADS
        )
        fold_scores, _ = score_test(artifacts, test, train_config)
        timings["fit_seconds"] = time.perf_counter() - t0
        timings.update(fit_timings)
        if "xgboost" in names:
            scores["xgboost"] = fold_scores["xgb_calibrated"]
        if "sequence" in names:
            scores["sequence"] = fold_scores["sequence_calibrated"]
        if "ensemble" in names:
            scores["ensemble"] = fold_scores["score"]
    if "logreg" in names or "xgboost_default" in names:
        full = extract_inputs(train, spec)
        assert full.y is not None
        if full.y.min() == full.y.max():
            raise BacktestError("the training window has a single class")
        if "logreg" in names:
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            t0 = time.perf_counter()
            lr = make_pipeline(StandardScaler(), LogisticRegression())
            lr.fit(full.tabular, full.y)
            scores["logreg"] = lr.predict_proba(te.tabular)[:, 1]
            timings["logreg_seconds"] = time.perf_counter() - t0
        if "xgboost_default" in names:
            import xgboost as xgb

            t0 = time.perf_counter()
            clf = xgb.XGBClassifier(n_jobs=2)
            clf.fit(full.tabular, full.y)
            scores["xgboost_default"] = clf.predict_proba(te.tabular)[:, 1]
            timings["xgboost_default_seconds"] = time.perf_counter() - t0
    return {n: scores[n] for n in names}, timings


@dataclass
class BacktestResult:
    report: dict[str, Any]
    #: per model: pooled test ``y``, ``score``, ``day`` (datetime64[D]), ``card`` over all folds
    pooled: dict[str, dict[str, np.ndarray]]


def run_backtest(
    tx: pl.DataFrame, config: BacktestConfig, *, on_fold: Any = None
) -> BacktestResult:
    """Run every fold on schema-exact transactions ``tx``; return the report + pooled scores."""
    import numpy as np
    import polars as pl

    if tx.height == 0:
        raise BacktestError("no transactions")
    folds = fold_windows(config)
    data_start = tx["ts"].min()
    data_end = tx["ts"].max()
    assert isinstance(data_start, dt.datetime) and isinstance(data_end, dt.datetime)
    if folds[0].train_end <= data_start:
        raise BacktestError(
            f"fold 0 has no training data: its gap starts {folds[0].train_end.isoformat()}, "
            f"the data starts {data_start.isoformat()}; use a later --test-start"
        )
    if folds[-1].test_start > data_end:
        raise BacktestError(
            f"fold {folds[-1].index} tests from {folds[-1].test_start.isoformat()} but the data "
            f"ends {data_end.isoformat()}; use fewer --folds or an earlier --test-start"
        )
    t0 = time.perf_counter()
    frame = feature_frame(tx)
    feature_seconds = time.perf_counter() - t0
    spec = model_spec()
    label_us = frame["label_available_at"].dt.epoch("us").to_numpy()
    ts_us = frame["ts"].dt.epoch("us").to_numpy()
    is_fraud = frame["is_fraud"].to_numpy()
    cards_all = frame["customer_id"].to_numpy()
    names = config.model_names()
    per_model: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    pooled: dict[str, dict[str, list[np.ndarray]]] = {
        n: {"y": [], "score": [], "day": [], "card": []} for n in names
    }
    fold_info = []
    known = (
        known_card_mask(cards_all, ts_us, cards_all, is_fraud, label_us)
        if config.exclude_known_cards
        else None
    )
    for fold in folds:
        tf = time.perf_counter()
        in_train = ts_us < _us(fold.train_end)
        if fold.train_start is not None:
            in_train &= ts_us >= _us(fold.train_start)
        in_test = (ts_us >= _us(fold.test_start)) & (ts_us < _us(fold.test_end))
        excluded = 0
        if known is not None:
            excluded = int((in_test & known).sum())
            in_test &= ~known
        y_train = labels_as_of(is_fraud, label_us, fold.label_cutoff)
        train = frame.filter(pl.Series(in_train)).with_columns(
            pl.Series("is_fraud", y_train[in_train], dtype=pl.Int8)
        )
        test = frame.filter(pl.Series(in_test))
        y_test = test["is_fraud"].to_numpy().astype(np.int8)
        if test.height == 0 or y_test.min() == y_test.max():
            raise BacktestError(
                f"fold {fold.index}: the test window {fold.test_start.date()} .. "
                f"{fold.test_end.date()} has {test.height} rows and {int(y_test.sum())} frauds; "
                "both classes are needed"
            )
        if train.height == 0 or train["is_fraud"].max() == 0:
            raise BacktestError(
                f"fold {fold.index}: no fraud label available by {fold.label_cutoff.isoformat()} "
                "in the training window"
            )
        scores, timings = _fit_fold(train, test, spec, config)
        days = test["ts"].dt.date().to_numpy().astype("datetime64[D]")
        cards = test["customer_id"].to_numpy()
        info = {
            **fold.to_dict(),
            "train_rows": train.height,
            "train_frauds_known": int(train["is_fraud"].sum()),
            "train_frauds_true": int(is_fraud[in_train].sum()),
            "test_rows": test.height,
            "test_frauds": int(y_test.sum()),
            "excluded_known_card_rows": excluded,
            "seconds": round(time.perf_counter() - tf, 2),
            "timings": {k: round(v, 2) for k, v in timings.items()},
        }
        fold_info.append(info)
        for name, p in scores.items():
            m = _metrics(y_test, p, cards, days, config.k, config.max_fpr)
            per_model[name].append({**fold.to_dict(), **m})
            pooled[name]["y"].append(y_test)
            pooled[name]["score"].append(np.asarray(p, dtype=np.float64))
            pooled[name]["day"].append(days)
            pooled[name]["card"].append(cards)
        if on_fold is not None:
            on_fold(fold, info)
    report: dict[str, Any] = {"models": {}}
    for name, rows in per_model.items():
        keys = [k for k in rows[0] if isinstance(rows[0][k], float)]
        report["models"][name] = {
            "folds": rows,
            "mean": {k: float(np.mean([r[k] for r in rows])) for k in keys},
            "std": {k: float(np.std([r[k] for r in rows])) for k in keys},
        }
    report["folds"] = fold_info
    report["config"] = config.model_dump(mode="json")
    report["data"] = {
        "rows": tx.height,
        "start": data_start.isoformat(),
        "end": data_end.isoformat(),
        "frauds": int(is_fraud.sum()),
        "feature_seconds": round(feature_seconds, 2),
    }
    ranked = sorted(names, key=lambda n: report["models"][n]["mean"]["ap"], reverse=True)
    report["ranking_by_ap"] = ranked
    if "ensemble" in names and len(names) > 1:
        report["ensemble_beats_all_on_ap"] = ranked[0] == "ensemble"
    out_pooled = {n: {k: np.concatenate(v) for k, v in d.items()} for n, d in pooled.items()}
    return BacktestResult(report, out_pooled)
