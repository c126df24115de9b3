"""Prequential backtest: folds stepping through time, label-delay aware.

Fold ``f`` (0-based)::

    test window   [test_start + f*step, test_start + f*step + test_days)
    gap           [test window start - delay_days, test window start)   no training rows
    train window  [gap start - train_days, gap start)   (train_days None: all history)
    label cut-off = end of the gap = test window start

Training labels are those *known* at the cut-off: ``is_fraud == 1`` counts only when
``label_available_at <= cut-off`` (one second later and the row is genuine for training).
Test labels are the ground truth.

Known cards (``exclude_known_cards``, ``--exclude-known-cards``): a test row of day ``D`` is
dropped when its card is already known to be compromised at 00:00 UTC of ``D``: the card has a
fraud transaction whose label was available by then (``label_available_at <= D 00:00``) and
whose transaction falls in the window ``known_cards_window`` (``--known-cards-window``) sets:

* ``all`` — anywhere in the history before ``D``;
* ``train`` (the default) — on or after the fold's training start (``ts >= train start``; a
  fraud in the gap or on an earlier test day of the fold counts too, once its label is
  available). Without ``train_days`` the training window starts with the data, so ``train``
  is then the same as ``all``;
* ``N`` (a number of days, >= 1) — within the ``N`` days before the test day
  (``ts >= D 00:00 - N days``).

The exclusion takes the easiest hits away (a card whose fraud is known keeps being fraud): it
lowers every model's card precision@k *and* the ceiling, the more the wider the window (``all``
drops the most rows; ``train`` and ``N`` drop a subset of them). Compare a model's CP@k with the
ceiling of the same run, never across runs with different exclusions.

The CP@k ceiling (``cp_at_k_ceiling`` of each fold, and its mean): the card precision@k of a
perfect ranking of the fold's test rows after the exclusion — :func:`riskml.metrics
.card_precision_at_k` with the labels as scores, so each day the fraud cards not detected on an
earlier day fill the ``k`` checks, ``min(k, fraud cards) / k``, averaged over days as for the
models. It bounds every model's CP@k when no test day has more than ``k`` fraud cards
(``max_fraud_cards_per_day <= k``, the usual case); on a day with more, a ranking that leaves
for a later day a card that stays fraud can score slightly above it.

Features are computed once, point-in-time, over the whole transaction history with
:func:`riskml.features.batch.compute_features` (every feature of a row describes the world
strictly before it; label-delayed risk only counts labels available at the snapshot), then
assembled into the model's feature contract the way the Feast training set is.

Models per fold (trained in-process, no Ray start-up per fold, by the one training path
:func:`riskml.training.pipeline.fit_models` that :func:`~riskml.training.pipeline.train_models`
and the pipeline's tasks use): ``xgboost`` and ``sequence`` (trained on *train*, early stopping
on *valid*, calibrated on *calib*), ``ensemble`` (their blend), and the baselines ``logreg``
(scikit-learn ``LogisticRegression()`` on standardised features) and ``xgboost_default``
(``xgboost.XGBClassifier()``), both with library defaults on the whole training window.
``xgboost`` and ``sequence`` are scored calibrated (as served); ``report["calibration"]`` puts
their raw and calibrated AP, CP@k and the number of distinct values among the
:data:`TOP_DISTINCT` highest scores side by side (calibration should not change the ranking).

Ablations (``ablations``, ``--ablations``; one extra XGBoost fit per feature group per fold):
the ``xgboost`` model retrained by the same path with each group of
:func:`riskml.features.definitions.feature_groups` removed in turn (its columns dropped from
the FeatureSpec, not zeroed); ``report["ablations"]`` holds each one's AP and CP@k per fold and
the drop against the full ``xgboost`` of the same fold.

Recall per fraud scenario (``report["scenarios"]``), for every model, every ablation and the
perfect ranking, at the alert budget of CP@k: a fraud test row is *caught* when its card is one
of the ``k`` cards alerted on the row's day (cards ranked by their highest score that day, the
cards detected on an earlier test day of the fold left out — the set card precision@k counts) or
its card was detected on an earlier test day of the fold (it is already flagged). Recall is the
caught share of the scenario's fraud test rows. Fraud rows without a scenario (imported data:
null, empty, ``none`` or ``unknown``) are counted as ``unlabelled``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from riskml.features.definitions import FEATURE_SERVICE

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl

ModelChoice = Literal["xgboost", "sequence", "ensemble", "baselines"]
ALL_MODELS: tuple[str, ...] = ("xgboost", "sequence", "ensemble", "logreg", "xgboost_default")
DAY = dt.timedelta(days=1)
DAY_US = 86_400 * 1_000_000
SEQ_PREFIX = "seq_"
#: ``known_cards_window``: ``"all"``, ``"train"`` or a number of days (see the module docstring).
KnownCardsWindow = Literal["all", "train"] | Annotated[int, Field(ge=1)]
KNOWN_CARDS_WINDOWS = ("all", "train")
#: ``report["calibration"]`` counts the distinct values among this many highest test scores.
TOP_DISTINCT = 2000
#: The perfect ranking (labels as scores) in ``report["scenarios"]``.
PERFECT = "perfect"
#: Scenario of a fraud row whose data gives none (the importer's ``unlabelled``).
UNLABELLED = "unlabelled"


class BacktestError(ValueError):
    """The backtest cannot run as configured (windows outside the data, one class, ...)."""


def _maturity_default() -> float:
    from riskml.training.pipeline import LABEL_MATURITY_DAYS

    return LABEL_MATURITY_DAYS


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
    known_cards_window: KnownCardsWindow = "train"
    models: tuple[ModelChoice, ...] = ("xgboost", "sequence", "ensemble", "baselines")
    max_fpr: float = Field(default=0.01, gt=0, lt=1)
    sequence_epochs: int | None = Field(default=None, ge=1)
    seed: int = 7
    ablations: bool = False
    #: the FeatureService version whose contract the models train on (``fraud_v1`` to compare)
    feature_service: str = FEATURE_SERVICE
    #: XGBoost parameters over :class:`~riskml.models.xgb.XGBParams`' defaults
    xgb: dict[str, Any] = Field(default_factory=dict)
    #: rows younger than this at the fold's label cut-off stay out of training (their labels
    #: are mostly not in yet); the training path's one default
    label_maturity_days: float = Field(default_factory=_maturity_default, ge=0)

    @model_validator(mode="after")
    def _check(self) -> BacktestConfig:
        if not self.models:
            raise ValueError("choose at least one model")
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"duplicate models: {self.models}")
        from riskml.features.definitions import FEATURE_SERVICES
        from riskml.models.xgb import XGBParams

        if self.feature_service not in FEATURE_SERVICES:
            raise ValueError(
                f"unknown feature service {self.feature_service!r}; "
                f"known: {', '.join(FEATURE_SERVICES)}"
            )
        XGBParams.model_validate({**self.xgb, "seed": self.seed})  # fail early, with its message
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


def parse_known_cards_window(value: str | int) -> str | int:
    """``"all"``, ``"train"`` or a number of days >= 1 (``"14"`` -> ``14``); ValueError else."""
    if isinstance(value, int) and not isinstance(value, bool):
        days = value
    else:
        text = str(value).strip().lower()
        if text in KNOWN_CARDS_WINDOWS:
            return text
        try:
            days = int(text)
        except ValueError:
            days = 0
    if days < 1:
        raise ValueError(f"expected 'all', 'train' or a number of days >= 1, got {str(value)!r}")
    return days


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
    *,
    hist_ts_us: np.ndarray | None = None,
    since_us: int | None = None,
    window_days: int | None = None,
) -> np.ndarray:
    """True for rows whose card is known to be compromised at 00:00 UTC ``D`` of the row's day:
    the history has a fraud of that card with ``label_available_at <= D`` whose transaction
    time (``hist_ts_us``) is ``>= since_us`` (``train`` window: the fold's training start) and,
    with ``window_days``, ``>= D - window_days`` days. Neither given: anywhere (``all``).

    Vectorised: each fraud covers the days ``D`` with ``label <= D <= ts + window`` (``ts >=
    since`` for it to count at all); per card the running maximum of those ends, in label
    order, is joined as of each row's ``D``.
    """
    import numpy as np
    import polars as pl

    if (since_us is not None or window_days is not None) and hist_ts_us is None:
        raise ValueError("since_us and window_days need hist_ts_us")
    if window_days is not None and window_days < 1:
        raise ValueError(f"window_days must be >= 1, got {window_days}")
    customer_id = np.asarray(customer_id)
    fraud = np.asarray(hist_is_fraud).astype(bool)
    label = np.asarray(hist_label_us, dtype=np.int64)[fraud]
    cards = np.asarray(hist_customer_id)[fraud]
    never = np.iinfo(np.int64).max
    end = np.full(len(label), never, dtype=np.int64)
    keep = np.ones(len(label), dtype=bool)
    if hist_ts_us is not None:
        fraud_ts = np.asarray(hist_ts_us, dtype=np.int64)[fraud]
        if since_us is not None:
            keep &= fraud_ts >= since_us
        if window_days is not None:
            end = fraud_ts + window_days * DAY_US
    day_start = (np.asarray(ts_us, dtype=np.int64) // DAY_US) * DAY_US
    if not keep.any() or len(customer_id) == 0:
        return np.zeros(len(customer_id), dtype=bool)
    row_cards = pl.Series("card", customer_id)
    event_cards = pl.Series("card", cards[keep])
    if row_cards.dtype != event_cards.dtype:
        row_cards, event_cards = row_cards.cast(pl.String), event_cards.cast(pl.String)
    events = (
        pl.DataFrame([event_cards, pl.Series("at", label[keep]), pl.Series("end", end[keep])])
        .group_by("card", "at")
        .agg(pl.col("end").max())
        .sort("at")
        .with_columns(pl.col("end").cum_max().over("card"))
    )
    rows = pl.DataFrame(
        [pl.Series("row", np.arange(len(customer_id))), row_cards, pl.Series("at", day_start)]
    ).sort("at")
    joined = rows.join_asof(events, on="at", by="card", strategy="backward", check_sortedness=False)
    known = joined.sort("row")["end"].fill_null(-1).to_numpy() >= day_start
    return np.asarray(known, dtype=bool)


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
    """Point-in-time features (the model's feature contract) for every transaction, plus one
    ``seq_<field>`` list column per sequence field (the model frame :func:`model_spec`
    describes)."""
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
    snapshots = (
        (tables.terminal_stats, "terminal_id"),
        (tables.device_stats, "device_id"),
        (tables.customer_stats, "customer_id"),
    )
    for table, key in snapshots:
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


def model_spec(feature_service: str | None = None) -> Any:
    """The FeatureSpec of :func:`feature_frame` (a FeatureService's contract + sequence;
    default the current version: the frame holds every version's columns)."""
    from riskml.training.dataset import model_feature_spec

    return model_feature_spec(feature_service)


# -- one fold ---------------------------------------------------------------------------------
def known_cards_window_args(config: BacktestConfig, fold: Fold) -> dict[str, int | None]:
    """The :func:`known_card_mask` keywords of a fold's ``known_cards_window``."""
    window = config.known_cards_window
    if window == "all":
        return {}
    if window == "train":
        return {"since_us": _us(fold.train_start) if fold.train_start is not None else None}
    assert isinstance(window, int)
    return {"window_days": window}


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


def cp_at_k_ceiling(y: np.ndarray, cards: np.ndarray, days: np.ndarray, k: int) -> float:
    """Card precision@k of a perfect ranking (the labels as scores) of these test rows."""
    import numpy as np

    from riskml.metrics import card_precision_at_k

    return card_precision_at_k(y, np.asarray(y, dtype=np.float64), cards, days, k)


def max_fraud_cards_per_day(y: np.ndarray, cards: np.ndarray, days: np.ndarray) -> int:
    """The most distinct fraud cards any one test day has (the ceiling is exact up to ``k``)."""
    import polars as pl

    if not y.any():
        return 0
    frame = pl.DataFrame({"day": days[y == 1].astype("int64"), "card": cards[y == 1].astype(str)})
    return int(frame.group_by("day").agg(pl.col("card").n_unique())["card"].max())  # type: ignore[arg-type]


def alerted_rows(
    y: np.ndarray, score: np.ndarray, cards: np.ndarray, days: np.ndarray, k: int
) -> tuple[np.ndarray, list[float]]:
    """Rows whose card is flagged at the CP@k alert budget, and CP@k of each day.

    Mirrors :func:`riskml.metrics.card_precision_at_k` (same ranking, tie-break and carry-over):
    each day in order, cards ranked by their highest score that day, cards detected on an
    earlier day (fraud cards that made its top ``k``) left out, the top ``k`` alerted. A row is
    flagged when its card is alerted on its day or was detected on an earlier day. The mean of
    the per-day values is ``card_precision_at_k``.
    """
    import numpy as np

    s = np.asarray(score, dtype=np.float64)
    yy = np.asarray(y).astype(bool)
    card_codes, card_idx = np.unique(np.asarray(cards), return_inverse=True)
    card_idx = card_idx.reshape(-1)
    day_values, day_idx = np.unique(np.asarray(days), return_inverse=True)
    day_idx = day_idx.reshape(-1)
    detected = np.zeros(len(card_codes), dtype=bool)
    flagged = np.zeros(len(s), dtype=bool)
    per_day: list[float] = []
    for d in range(len(day_values)):
        rows = np.flatnonzero(day_idx == d)
        c = card_idx[rows]
        max_score = np.full(len(card_codes), -np.inf)
        np.maximum.at(max_score, c, s[rows])
        fraud = np.zeros(len(card_codes), dtype=bool)
        fraud[c[yy[rows]]] = True
        candidates = np.where(np.isfinite(max_score) & ~detected)[0]
        order = np.lexsort((candidates, -max_score[candidates]))
        top = candidates[order[:k]]
        alerted = np.zeros(len(card_codes), dtype=bool)
        alerted[top] = True
        flagged[rows] = alerted[c] | detected[c]
        hits = top[fraud[top]]
        per_day.append(len(hits) / k)
        detected[hits] = True
    return flagged, per_day


def fraud_scenarios(frame: pl.DataFrame) -> np.ndarray:
    """Each row's ``fraud_scenario`` (str); a fraud row without one is ``unlabelled``."""
    import numpy as np

    from riskml.data.schema import LEGIT, UNKNOWN

    n = frame.height
    if "fraud_scenario" in frame.columns:
        scen = frame["fraud_scenario"].cast(str).fill_null("").to_numpy().astype(str)
    else:
        scen = np.full(n, "", dtype=str)
    scen = np.char.strip(scen.astype(str))
    y = frame["is_fraud"].to_numpy().astype(bool)
    blank = np.isin(np.char.lower(scen), ["", LEGIT, UNKNOWN])
    out = np.where(y & blank, UNLABELLED, scen).astype(object)
    out[~y] = LEGIT
    return out


def scenario_recall(
    y: np.ndarray, flagged: np.ndarray, scenario: np.ndarray
) -> dict[str, dict[str, float | int]]:
    """``{scenario: {"frauds", "caught", "recall"}}`` over the fraud rows (sorted by name)."""
    import numpy as np

    fraud = np.asarray(y).astype(bool)
    out: dict[str, dict[str, float | int]] = {}
    for name in sorted(set(scenario[fraud].tolist())):
        rows = fraud & (scenario == name)
        n, caught = int(rows.sum()), int(flagged[rows].sum())
        out[str(name)] = {"frauds": n, "caught": caught, "recall": caught / n}
    return out


@dataclass
class FoldScores:
    """One fold's test scores: what each reported model is evaluated on, and the raw and
    calibrated scores of each trained model (``xgboost``, ``sequence``)."""

    scores: dict[str, np.ndarray]
    raw: dict[str, np.ndarray]
    calibrated: dict[str, np.ndarray]
    timings: dict[str, float]


_TRAIN_KEY = {"xgboost": "xgb", "sequence": "sequence"}


def _train_config(
    config: BacktestConfig, trained: list[str], label_cutoff: dt.datetime | None = None
) -> Any:
    from riskml.models.sequence import SequenceParams
    from riskml.models.xgb import XGBParams
    from riskml.training.pipeline import SplitConfig, TrainConfig

    seq_params = SequenceParams()
    if config.sequence_epochs is not None:
        seq_params = seq_params.model_copy(update={"epochs": config.sequence_epochs})
    return TrainConfig(
        models=tuple(_TRAIN_KEY[m] for m in trained),
        xgb=XGBParams.model_validate({**config.xgb, "seed": config.seed}),
        sequence=seq_params,
        split=SplitConfig(label_maturity_days=config.label_maturity_days),
        # labels were masked as of the fold's cut-off (labels_as_of); maturity counts from it
        label_delay_aware=False,
        label_cutoff=label_cutoff,
        card_precision_k=config.k,
        max_fpr=config.max_fpr,
    )


def _fit_trained(
    train: pl.DataFrame,
    test: pl.DataFrame,
    spec: Any,
    config: BacktestConfig,
    trained: list[str],
    label_cutoff: dt.datetime | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Fit ``trained`` (``xgboost``/``sequence``) with :func:`fit_models` on ``train`` and
    score ``test`` with the unsaved bundle: :func:`score_test`'s scores, timings."""
    from riskml.training.pipeline import fit_models, score_test

    train_config = _train_config(config, trained, label_cutoff)
    t0 = time.perf_counter()
    artifacts, fit_timings = fit_models(
        train, spec, train_config, in_process=True, threads=FOLD_THREADS
    )
    fold_scores, _ = score_test(artifacts, test, train_config)
    timings = {"fit_seconds": time.perf_counter() - t0, **fit_timings}
    return fold_scores, timings


def _fit_fold(
    train: pl.DataFrame,
    test: pl.DataFrame,
    spec: Any,
    config: BacktestConfig,
    label_cutoff: dt.datetime | None = None,
) -> FoldScores:
    """Fit the fold's models on ``train`` (labels already as of the cut-off) with the one
    training path (:func:`riskml.training.pipeline.fit_models`, in process); score ``test``
    with the unsaved bundle, as serving would."""
    from riskml.models.features import extract_inputs

    names = config.model_names()
    trained = config.trained_models()
    scores: dict[str, np.ndarray] = {}
    raw: dict[str, np.ndarray] = {}
    calibrated: dict[str, np.ndarray] = {}
    timings: dict[str, float] = {}
    if trained:
        fold_scores, timings = _fit_trained(train, test, spec, config, trained, label_cutoff)
        for m in trained:
            raw[m] = fold_scores[_TRAIN_KEY[m]]
            calibrated[m] = fold_scores[f"{_TRAIN_KEY[m]}_calibrated"]
        for m in ("xgboost", "sequence"):
            if m in names:
                scores[m] = calibrated[m]
        if "ensemble" in names:
            scores["ensemble"] = fold_scores["score"]
    if "logreg" in names or "xgboost_default" in names:
        te = extract_inputs(test, spec)
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
    return FoldScores({n: scores[n] for n in names}, raw, calibrated, timings)


def ablation_specs(spec: Any) -> dict[str, tuple[Any, tuple[str, ...]]]:
    """``{group: (FeatureSpec without the group's columns, removed columns)}`` for each group
    of :func:`~riskml.features.definitions.feature_groups` with columns in ``spec`` (XGBoost
    reads only tabular columns, so the ablated specs carry no sequence)."""
    from riskml.features.definitions import feature_groups
    from riskml.models.features import FeatureSpec

    out: dict[str, tuple[Any, tuple[str, ...]]] = {}
    for group, columns in feature_groups(spec.feature_service).items():
        removed = tuple(c for c in spec.tabular if c in set(columns))
        kept = tuple(c for c in spec.tabular if c not in set(columns))
        if not removed or not kept:
            continue
        ablated = FeatureSpec(
            feature_service=spec.feature_service,
            tabular=kept,
            sequence=(),
            seq_len=spec.seq_len,
            dtypes={n: t for n, t in spec.dtypes.items() if n in kept},
        )
        out[group] = (ablated, removed)
    return out


def ablation_name(group: str) -> str:
    """The model name of the ``xgboost`` ablation without ``group``."""
    return f"xgboost_without_{group}"


def _ablate_fold(
    train: pl.DataFrame,
    test: pl.DataFrame,
    spec: Any,
    config: BacktestConfig,
    label_cutoff: dt.datetime | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, tuple[str, ...]], dict[str, float]]:
    """Refit ``xgboost`` without each feature group: calibrated test scores per group, the
    columns removed and the seconds of each fit."""
    scores: dict[str, np.ndarray] = {}
    removed: dict[str, tuple[str, ...]] = {}
    seconds: dict[str, float] = {}
    for group, (ablated, cols) in ablation_specs(spec).items():
        t0 = time.perf_counter()
        fold_scores, _ = _fit_trained(train, test, ablated, config, ["xgboost"], label_cutoff)
        scores[group] = fold_scores["xgb_calibrated"]
        removed[group] = cols
        seconds[group] = time.perf_counter() - t0
    return scores, removed, seconds


def _distinct_top(p: np.ndarray, n: int = TOP_DISTINCT) -> int:
    import numpy as np

    return len(np.unique(np.sort(np.asarray(p, dtype=np.float64))[-n:]))


def _calibration_rows(
    fold: int, fit: FoldScores, y: np.ndarray, cards: np.ndarray, days: np.ndarray, k: int
) -> list[dict[str, Any]]:
    from riskml.metrics import average_precision, card_precision_at_k

    rows = []
    for model, raw in fit.raw.items():
        cal = fit.calibrated[model]
        rows.append(
            {
                "fold": fold,
                "model": model,
                "ap_raw": average_precision(y, raw),
                "ap_calibrated": average_precision(y, cal),
                "cp_raw": card_precision_at_k(y, raw, cards, days, k),
                "cp_calibrated": card_precision_at_k(y, cal, cards, days, k),
                f"distinct_top{TOP_DISTINCT}_raw": _distinct_top(raw),
                f"distinct_top{TOP_DISTINCT}_calibrated": _distinct_top(cal),
            }
        )
    return rows


@dataclass
class BacktestResult:
    report: dict[str, Any]
    #: per model: pooled test ``y``, ``score``, ``day`` (datetime64[D]), ``card`` over all folds
    pooled: dict[str, dict[str, np.ndarray]]


@contextmanager
def _fold_errors(fold: Fold) -> Iterator[None]:
    """A training error of the fold's data (a split with a single class, ...) as a
    :class:`BacktestError` that names the fold."""
    try:
        yield
    except BacktestError:
        raise
    except ValueError as exc:
        raise BacktestError(f"fold {fold.index}: {exc}") from exc


def _mean_std(values: list[float]) -> dict[str, float]:
    import numpy as np

    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def run_backtest(
    tx: pl.DataFrame,
    config: BacktestConfig,
    *,
    on_fold: Any = None,
    frame: pl.DataFrame | None = None,
) -> BacktestResult:
    """Run every fold on schema-exact transactions ``tx``; return the report + pooled scores.

    ``frame``: the model frame of ``tx`` (:func:`feature_frame`, same rows in the same order)
    when the caller has it already: several configurations on one dataset, or features built
    from a variant of ``tx`` (the folds' labels always come from ``frame``'s columns)."""
    import numpy as np
    import polars as pl

    from riskml.metrics import average_precision, card_precision_at_k

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
    if frame is None:
        frame = feature_frame(tx)
    elif frame.height != tx.height or not frame["tx_id"].equals(tx["tx_id"]):
        raise BacktestError("the given feature frame's rows are not those of the transactions")
    feature_seconds = time.perf_counter() - t0
    spec = model_spec(config.feature_service)
    label_us = frame["label_available_at"].dt.epoch("us").to_numpy()
    ts_us = frame["ts"].dt.epoch("us").to_numpy()
    is_fraud = frame["is_fraud"].to_numpy()
    cards_all = frame["customer_id"].to_numpy()
    scenario_all = fraud_scenarios(frame)
    names = config.model_names()
    per_model: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    pooled: dict[str, dict[str, list[np.ndarray]]] = {
        n: {"y": [], "score": [], "day": [], "card": []} for n in names
    }
    fold_info: list[dict[str, Any]] = []
    calibration: list[dict[str, Any]] = []
    ablations: list[dict[str, Any]] = []
    ablation_groups: dict[str, list[str]] = {}
    reference_ap: list[float] = []
    scenario_rows: list[dict[str, Any]] = []
    for fold in folds:
        tf = time.perf_counter()
        in_train = ts_us < _us(fold.train_end)
        if fold.train_start is not None:
            in_train &= ts_us >= _us(fold.train_start)
        in_test = (ts_us >= _us(fold.test_start)) & (ts_us < _us(fold.test_end))
        excluded = 0
        if config.exclude_known_cards:
            test_idx = np.flatnonzero(in_test)
            known = known_card_mask(
                cards_all[test_idx],
                ts_us[test_idx],
                cards_all,
                is_fraud,
                label_us,
                hist_ts_us=ts_us,
                **known_cards_window_args(config, fold),
            )
            excluded = int(known.sum())
            in_test[test_idx[known]] = False
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
        with _fold_errors(fold):
            fit = _fit_fold(train, test, spec, config, fold.label_cutoff)
        scores = dict(fit.scores)
        timings = dict(fit.timings)
        days = test["ts"].dt.date().to_numpy().astype("datetime64[D]")
        cards = test["customer_id"].to_numpy()
        scenario = scenario_all[in_test]
        ceiling = cp_at_k_ceiling(y_test, cards, days, config.k)
        info: dict[str, Any] = {
            **fold.to_dict(),
            "train_rows": train.height,
            "train_frauds_known": int(train["is_fraud"].sum()),
            "train_frauds_true": int(is_fraud[in_train].sum()),
            "test_rows": test.height,
            "test_frauds": int(y_test.sum()),
            "excluded_known_card_rows": excluded,
            "cp_at_k_ceiling": ceiling,
            "max_fraud_cards_per_day": max_fraud_cards_per_day(y_test, cards, days),
        }
        calibration += _calibration_rows(fold.index, fit, y_test, cards, days, config.k)
        for name, p in scores.items():
            m = _metrics(y_test, p, cards, days, config.k, config.max_fpr)
            per_model[name].append({**fold.to_dict(), **m})
            pooled[name]["y"].append(y_test)
            pooled[name]["score"].append(np.asarray(p, dtype=np.float64))
            pooled[name]["day"].append(days)
            pooled[name]["card"].append(cards)
        recall_scores = {**scores, PERFECT: y_test.astype(np.float64)}
        if config.ablations:
            if "xgboost" in fit.calibrated:
                reference = fit.calibrated["xgboost"]
            else:  # xgboost not among the models: fit the full reference the same way
                with _fold_errors(fold):
                    fitted, _ = _fit_trained(
                        train, test, spec, config, ["xgboost"], fold.label_cutoff
                    )
                reference = fitted["xgb_calibrated"]
            recall_scores.setdefault("xgboost", reference)  # the ablations' reference
            ref_ap = average_precision(y_test, reference)
            ref_cp = card_precision_at_k(y_test, reference, cards, days, config.k)
            reference_ap.append(ref_ap)
            with _fold_errors(fold):
                ablated, removed, seconds = _ablate_fold(
                    train, test, spec, config, fold.label_cutoff
                )
            for group, p in ablated.items():
                ablation_groups[group] = list(removed[group])
                ap = average_precision(y_test, p)
                cp = card_precision_at_k(y_test, p, cards, days, config.k)
                ablations.append(
                    {
                        "fold": fold.index,
                        "group": group,
                        "removed": list(removed[group]),
                        "features_kept": len(spec.tabular) - len(removed[group]),
                        "ap": ap,
                        "ap_drop": ref_ap - ap,
                        "cp_at_k": cp,
                        "cp_at_k_drop": ref_cp - cp,
                        "seconds": round(seconds[group], 2),
                    }
                )
                recall_scores[ablation_name(group)] = p
            timings["ablation_seconds"] = sum(seconds.values())
        for name, p in recall_scores.items():
            flagged, _ = alerted_rows(y_test, p, cards, days, config.k)
            for scen, v in scenario_recall(y_test, flagged, scenario).items():
                scenario_rows.append({"fold": fold.index, "model": name, "scenario": scen, **v})
        info["seconds"] = round(time.perf_counter() - tf, 2)
        info["timings"] = {k: round(v, 2) for k, v in timings.items()}
        fold_info.append(info)
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
    report["cp_at_k_ceiling"] = _mean_std([f["cp_at_k_ceiling"] for f in fold_info])
    report["calibration"] = calibration
    report["scenarios"] = _scenario_report(scenario_rows)
    if config.ablations:
        report["ablations"] = _ablation_report(ablations, ablation_groups, reference_ap)
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


def _scenario_report(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per fold rows, and per model the recall over all folds (caught / frauds, pooled)."""
    frauds: dict[str, int] = {}
    caught: dict[str, dict[str, int]] = {}
    totals: dict[str, dict[str, int]] = {}
    for r in rows:
        caught.setdefault(r["model"], {}).setdefault(r["scenario"], 0)
        totals.setdefault(r["model"], {}).setdefault(r["scenario"], 0)
        caught[r["model"]][r["scenario"]] += r["caught"]
        totals[r["model"]][r["scenario"]] += r["frauds"]
    if totals:
        frauds = next(iter(totals.values()))
    return {
        "definition": "share of the scenario's fraud test rows whose card is alerted at the "
        "CP@k budget on the row's day, or was detected on an earlier test day of the fold",
        "frauds": dict(sorted(frauds.items())),
        "recall": {
            model: {s: caught[model][s] / n for s, n in sorted(t.items())}
            for model, t in totals.items()
        },
        "folds": rows,
    }


def _ablation_report(
    rows: list[dict[str, Any]], groups: dict[str, list[str]], reference_ap: list[float]
) -> dict[str, Any]:
    import numpy as np

    mean = {}
    for group in groups:
        mine = [r for r in rows if r["group"] == group]
        mean[group] = {
            key: float(np.mean([r[key] for r in mine]))
            for key in ("ap", "ap_drop", "cp_at_k", "cp_at_k_drop")
        }
    return {
        "reference": "xgboost",
        "reference_ap": {"folds": reference_ap, **_mean_std(reference_ap)},
        "groups": groups,
        "folds": rows,
        "mean": mean,
    }
