"""Model selection on validation folds, never on test folds.

Ray Tune searches XGBoost's configuration (tree method, ``max_bin``, depth, learning rate,
rounds, class weighting) and the training window length (``train_days``) on *validation folds*:
prequential folds of the weeks before the first test day ``T``. The chosen configuration and
today's default are then run on the *test folds* ``[T, ...)`` by the same function
(:func:`evaluate_candidate`), so the test figures are an unbiased comparison of the two.

Windows (the backtest's rules, :func:`~riskml.evaluation.backtest.fold_windows`)::

    test folds        f = 0..folds-1:        test [T + f*step, + test_days)
    validation folds  j = 0..valid_folds-1:  test [T - (valid_folds - j)*step, + test_days)

each with its label-delay gap of ``delay_days`` (no training rows), its training window before
the gap (``train_days``, or all history) and its label cut-off at its test start: training
labels are those known then (:func:`~riskml.evaluation.backtest.labels_as_of`). With
``test_days <= step_days`` the last validation window ends at ``T`` at the latest, so no
validation window overlaps a test window (checked; the report lists both).

Nothing of the test weeks reaches the search: the frame that goes to the object store for the
trials holds only the rows before ``T`` (features are point-in-time, so a row's features are the
same whether or not later rows exist), and each validation fold trains on rows before its gap
with the labels known at its cut-off. A validation window is scored on the ground truth of its
rows, as the backtest scores its folds (a retrospective evaluation: some of those labels arrive
after ``T``; rows of the test weeks and their labels never do).

Each candidate trains XGBoost alone, in process (:func:`riskml.training.pipeline.fit_models`,
``models=("xgb",)``, the trial's CPUs as threads): split by time into train < valid < calib,
early stopping on the fold's internal valid slice, calibrated on calib, and scored calibrated on
the fold's test window, as served. The search metric is the mean validation average precision
(mode max). The default configuration (:class:`~riskml.models.xgb.XGBParams` defaults, all
history) is the first trial (Tune ``points_to_evaluate``), so the search always has the
baseline and picks another configuration only when it beats the default on validation (ties go
to the earlier trial).

``tree_method="exact"`` trains in process only (XGBoost's distributed training, which Ray
Train uses, refuses it); the report says so when it is chosen.

``model="sequence"`` selects the behavioural sequence model the same way: its length (``steps``,
the most recent transactions of the sequence feature it reads), its size (``hidden``,
``layers``, the encoder), its learning rate and the training window, each candidate trained
alone in process and scored calibrated on the same validation folds.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from riskml.evaluation.backtest import (
    DAY,
    BacktestConfig,
    BacktestError,
    Fold,
    _us,
    fold_windows,
    labels_as_of,
)
from riskml.models.sequence import SequenceParams
from riskml.models.xgb import XGBParams
from riskml.training import pipeline
from riskml.training.tune import Distribution

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from riskml.models.features import FeatureSpec

#: The candidate key that is not an XGBoost parameter: training window length in days
#: (``None``: all history).
TRAIN_DAYS = "train_days"
#: The model a selection searches.
SelectedModel = Literal["xgboost", "sequence"]
#: The search metric reported by every trial (mean calibrated AP over the validation folds).
METRIC = "mean_valid_ap"
#: Machines with at most this many CPUs run one trial at a time (with all their CPUs).
SMALL_MACHINE_CPUS = 4
#: Threads per trial on larger machines.
LARGE_MACHINE_TRIAL_CPUS = 4
#: What the report keeps of each validation fold of a trial.
TRIAL_FOLD_KEYS = (
    "fold", "test_start", "test_end", "train_start", "ap", "cp_at_k", "ap_raw", "rounds",
    "train_rows", "seconds",
)  # fmt: skip


class SelectionError(BacktestError):
    """Selection cannot run as configured (windows overlap or lie outside the data, one
    class in a window, no trial finished, ...)."""


def default_selection_space(model: SelectedModel = "xgboost") -> dict[str, Distribution]:
    """The search space. XGBoost: tree method and bins, depth, learning rate, rounds (early
    stopping on the fold's internal valid slice), class weighting and the training window.
    Sequence: its length (the most recent 4, 8 or all 16 transactions), size (hidden width,
    layers, GRU or Transformer), learning rate and the training window."""
    if model == "sequence":
        return {
            "steps": Distribution(type="choice", values=[4, 8, 16]),
            "hidden": Distribution(type="choice", values=[16, 32, 64]),
            "layers": Distribution(type="choice", values=[1, 2]),
            "encoder": Distribution(type="choice", values=["gru", "transformer"]),
            "lr": Distribution(type="loguniform", low=5e-4, high=5e-3),
            TRAIN_DAYS: Distribution(type="choice", values=[None, 28, 56]),
        }
    return {
        "tree_method": Distribution(type="choice", values=["hist", "approx", "exact"]),
        "max_bin": Distribution(type="choice", values=[256, 1024, 4096]),  # exact ignores it
        "max_depth": Distribution(type="randint", low=3, high=10),
        "eta": Distribution(type="loguniform", low=0.02, high=0.3),
        "num_boost_round": Distribution(type="choice", values=[200, 400, 800]),
        "scale_pos_weight": Distribution(type="choice", values=["auto", "sqrt", 1.0]),
        TRAIN_DAYS: Distribution(type="choice", values=[None, 28, 56, 91]),
    }


class SelectionConfig(BaseModel):
    """Windows, search budget and search space of a selection run."""

    model_config = ConfigDict(extra="forbid")

    model: SelectedModel = Field(default="xgboost", description="The model to select.")
    test_start: dt.date = Field(description="First test day T; the search sees nothing from it.")
    folds: int = Field(default=3, ge=1, description="Test folds.")
    step_days: int = Field(default=7, ge=1)
    test_days: int = Field(default=7, ge=1)
    delay_days: int = Field(default=7, ge=0)
    valid_folds: int = Field(default=3, ge=1, description="Validation folds before T.")
    k: int = Field(default=100, ge=1, description="k of card precision@k.")
    max_fpr: float = Field(default=0.01, gt=0, lt=1)
    num_samples: int = Field(default=8, ge=1, description="Trials, the default one included.")
    time_budget_s: float | None = Field(default=1800, gt=0)
    max_concurrent_trials: int | None = Field(
        default=None, ge=1, description=f"Default: 1 on <= {SMALL_MACHINE_CPUS} CPUs."
    )
    cpus_per_trial: int | None = Field(
        default=None,
        ge=1,
        description="Threads per trial (XGBoost's, or torch's). Default: all CPUs on <= "
        f"{SMALL_MACHINE_CPUS} CPUs, else {LARGE_MACHINE_TRIAL_CPUS}.",
    )
    search_space: dict[str, Distribution] | None = Field(
        default=None, description="Candidate key -> distribution; default: the full space."
    )
    base: XGBParams = Field(
        default_factory=XGBParams,
        description="XGBoost: the default configuration (trial 0) and the values of every "
        "parameter the space does not search.",
    )
    sequence_base: SequenceParams = Field(
        default_factory=SequenceParams,
        description="The same for the sequence model (model='sequence').",
    )
    seed: int = 7
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    storage_path: str | None = None

    @model_validator(mode="after")
    def _check(self) -> SelectionConfig:
        if self.test_days > self.step_days:
            raise ValueError(
                f"test_days ({self.test_days}) > step_days ({self.step_days}): the last "
                "validation window would overlap the first test window"
            )
        self.space()
        return self

    def base_params(self) -> XGBParams | SequenceParams:
        """The selected model's default parameters (trial 0's, and every unsearched one's)."""
        return self.sequence_base if self.model == "sequence" else self.base

    def space(self) -> dict[str, Distribution]:
        space = (
            self.search_space
            if self.search_space is not None
            else default_selection_space(self.model)
        )
        known = {*type(self.base_params()).model_fields, TRAIN_DAYS}
        unknown = sorted(set(space) - known)
        if unknown:
            raise ValueError(
                f"search space names unknown keys {unknown} for the {self.model} model; "
                f"known: {sorted(known)}"
            )
        return space

    def default_candidate(self) -> dict[str, Any]:
        """Trial 0: the base parameters' values for the searched keys, all history."""
        base = self.base_params().model_dump(mode="json")
        return {key: (None if key == TRAIN_DAYS else base[key]) for key in self.space()}

    def validation_windows(self) -> BacktestConfig:
        """The validation folds: ``valid_folds`` folds ending where the test folds begin."""
        start = self.test_start - self.valid_folds * self.step_days * DAY
        return self._windows(start, self.valid_folds)

    def test_windows(self) -> BacktestConfig:
        return self._windows(self.test_start, self.folds)

    def _windows(self, start: dt.date, folds: int) -> BacktestConfig:
        return BacktestConfig(
            test_start=start,
            folds=folds,
            step_days=self.step_days,
            test_days=self.test_days,
            delay_days=self.delay_days,
            k=self.k,
            max_fpr=self.max_fpr,
            models=(self.model,),
            seed=self.seed,
        )


def _plain(value: Any) -> Any:
    """Numpy scalars (Tune's samples) as Python values."""
    return value.item() if hasattr(value, "item") and not isinstance(value, str) else value


def candidate_params(
    base: XGBParams | SequenceParams, candidate: Mapping[str, Any]
) -> tuple[XGBParams | SequenceParams, int | None]:
    """A candidate (the model's parameters + ``train_days``) as validated parameters (of the
    base's class) and window."""
    values = {k: _plain(v) for k, v in candidate.items()}
    train_days = values.pop(TRAIN_DAYS, None)
    if train_days is not None and (not isinstance(train_days, int) or train_days < 1):
        raise ValueError(f"train_days must be None or a number of days >= 1, got {train_days!r}")
    params = type(base).model_validate({**base.model_dump(mode="json"), **values})
    return params, train_days


def check_no_overlap(validation: list[Fold], test: list[Fold]) -> None:
    """SelectionError unless every validation window (and so its training and labels) ends at
    or before the first test window starts."""
    first_test = min(f.test_start for f in test)
    for f in validation:
        if f.test_end > first_test or f.label_cutoff > first_test:
            raise SelectionError(
                f"validation fold {f.index} ({f.test_start.date()} .. {f.test_end.date()}) "
                f"overlaps the test folds starting {first_test.date()}"
            )


def xgb_spec(spec: FeatureSpec) -> FeatureSpec:
    """The spec without its sequence columns (XGBoost reads the tabular features only)."""
    from riskml.models.features import FeatureSpec

    return FeatureSpec(
        feature_service=spec.feature_service,
        tabular=spec.tabular,
        sequence=(),
        seq_len=spec.seq_len,
        dtypes={n: t for n, t in spec.dtypes.items() if n in set(spec.tabular)},
    )


def xgb_frame(frame: pl.DataFrame, spec: FeatureSpec) -> pl.DataFrame:
    """The model frame without the sequence list columns (smaller in the object store)."""
    drop = [c for c in frame.columns if c.startswith("seq_") and c not in spec.tabular]
    return frame.drop(drop)


# -- the one evaluation path (validation folds in trials, test folds afterwards) --------------
def _fold_split(
    frame: pl.DataFrame, fold: Fold, ts_us: Any, label_us: Any, is_fraud: Any, what: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The fold's training rows (before its gap, labels as of its cut-off) and test rows."""
    import numpy as np
    import polars as pl

    in_train = ts_us < _us(fold.train_end)
    if fold.train_start is not None:
        in_train &= ts_us >= _us(fold.train_start)
    in_test = (ts_us >= _us(fold.test_start)) & (ts_us < _us(fold.test_end))
    y_train = labels_as_of(is_fraud, label_us, fold.label_cutoff)
    train = frame.filter(pl.Series(in_train)).with_columns(
        pl.Series("is_fraud", y_train[in_train], dtype=pl.Int8)
    )
    test = frame.filter(pl.Series(in_test))
    y_test = test["is_fraud"].to_numpy()
    if test.height == 0 or np.min(y_test) == np.max(y_test):
        raise SelectionError(
            f"{what} fold {fold.index}: the window {fold.test_start.date()} .. "
            f"{fold.test_end.date()} has {test.height} rows and {int(np.sum(y_test))} frauds; "
            "both classes are needed"
        )
    if train.height == 0 or int(train["is_fraud"].sum()) == 0:
        raise SelectionError(
            f"{what} fold {fold.index}: no fraud label available by "
            f"{fold.label_cutoff.isoformat()} in the training window"
        )
    return train, test


def evaluate_candidate(
    frame: pl.DataFrame,
    windows: BacktestConfig,
    candidate: Mapping[str, Any],
    *,
    spec: FeatureSpec,
    base: XGBParams | SequenceParams | None = None,
    threads: int = 1,
    what: str = "test",
) -> dict[str, Any]:
    """Train one candidate configuration on each fold of ``windows`` (its ``train_days`` sets
    the training window) and score the fold's test window: per fold AP and CP@k of the
    calibrated XGBoost scores (as served; ``ap_raw`` before calibration) and their means.

    The same function scores the validation folds in every trial and the test folds after the
    search. Training is :func:`riskml.training.pipeline.fit_models` in process, XGBoost only,
    with the fold's labels as of its cut-off (``label_cutoff`` = the fold's, so label maturity
    counts from there; ``label_delay_aware=False``: the labels are already masked).
    """
    import numpy as np

    from riskml.metrics import average_precision, card_precision_at_k

    params, train_days = candidate_params(base or XGBParams(), candidate)
    model: pipeline.ModelName = "sequence" if isinstance(params, SequenceParams) else "xgb"
    folds = fold_windows(windows.model_copy(update={"train_days": train_days}))
    ts_us = frame["ts"].dt.epoch("us").to_numpy()
    label_us = frame["label_available_at"].dt.epoch("us").to_numpy()
    is_fraud = frame["is_fraud"].to_numpy()
    rows: list[dict[str, Any]] = []
    for fold in folds:
        t0 = time.perf_counter()
        train, test = _fold_split(frame, fold, ts_us, label_us, is_fraud, what)
        config = pipeline.TrainConfig(
            models=(model,),
            **({"sequence": params} if model == "sequence" else {"xgb": params}),
            label_delay_aware=False,
            label_cutoff=fold.label_cutoff,
            card_precision_k=windows.k,
            max_fpr=windows.max_fpr,
        )
        try:
            artifacts, _ = pipeline.fit_models(
                train, spec, config, in_process=True, threads=threads
            )
        except ValueError as exc:  # a split with one class, too few rows, ...
            window = f"{fold.train_start.date() if fold.train_start else 'start'} .. "
            raise SelectionError(
                f"{what} fold {fold.index} (training {window}{fold.train_end.date()}, labels as "
                f"of {fold.label_cutoff.date()}, rows younger than "
                f"{config.split.label_maturity_days:g} days then left out): {exc}"
            ) from exc
        scores, _ = pipeline.score_test(artifacts, test, config)
        y = test["is_fraud"].to_numpy().astype(np.int8)
        cards = test["customer_id"].to_numpy()
        days = test["ts"].dt.date().to_numpy().astype("datetime64[D]")
        p = scores[f"{model}_calibrated"]
        info = artifacts.metrics.get("training", {}).get(model, {})
        rows.append(
            {
                **fold.to_dict(),
                "train_rows": train.height,
                "train_frauds_known": int(train["is_fraud"].sum()),
                "test_rows": test.height,
                "test_frauds": int(y.sum()),
                "ap": average_precision(y, p),
                "cp_at_k": card_precision_at_k(y, p, cards, days, windows.k),
                "ap_raw": average_precision(y, scores[model]),
                # XGBoost: boosting rounds; the sequence model: epochs run
                "rounds": int(info.get("rounds", info.get("epochs_run", 0))),
                "best_iteration": int(info.get("best_iteration", info.get("best_epoch", -1))),
                "seconds": round(time.perf_counter() - t0, 2),
            }
        )
    mean = {key: float(np.mean([r[key] for r in rows])) for key in ("ap", "cp_at_k", "ap_raw")}
    return {"folds": rows, "mean": mean}


# -- pre-flight checks (before features and Ray) ----------------------------------------------
def check_windows(tx: pl.DataFrame, config: SelectionConfig) -> dict[str, list[Fold]]:
    """SelectionError when a window lies outside the data, a window has one class, a fold has
    no known fraud to train on (all history), or validation overlaps test."""
    import numpy as np

    if tx.height == 0:
        raise SelectionError("no transactions")
    valid = fold_windows(config.validation_windows())
    test = fold_windows(config.test_windows())
    check_no_overlap(valid, test)
    data_start, data_end = tx["ts"].min(), tx["ts"].max()
    assert isinstance(data_start, dt.datetime) and isinstance(data_end, dt.datetime)
    if valid[0].train_end <= data_start:
        raise SelectionError(
            f"validation fold 0 has no training data: its gap starts "
            f"{valid[0].train_end.isoformat()}, the data starts {data_start.isoformat()}; use a "
            "later --test-start or fewer --valid-folds"
        )
    if test[-1].test_start > data_end:
        raise SelectionError(
            f"test fold {test[-1].index} starts {test[-1].test_start.isoformat()} but the data "
            f"ends {data_end.isoformat()}; use fewer --folds or an earlier --test-start"
        )
    ts_us = tx["ts"].dt.epoch("us").to_numpy()
    label_us = tx["label_available_at"].dt.epoch("us").to_numpy()
    y = tx["is_fraud"].to_numpy().astype(bool)
    for what, folds in (("validation", valid), ("test", test)):
        for f in folds:
            in_test = (ts_us >= _us(f.test_start)) & (ts_us < _us(f.test_end))
            n, frauds = int(in_test.sum()), int(y[in_test].sum())
            if n == 0 or frauds in (0, n):
                raise SelectionError(
                    f"{what} fold {f.index}: the window {f.test_start.date()} .. "
                    f"{f.test_end.date()} has {n} rows and {frauds} frauds; both classes are "
                    "needed"
                )
            known = labels_as_of(y, label_us, f.label_cutoff).astype(bool)
            if not np.any(known & (ts_us < _us(f.train_end))):
                raise SelectionError(
                    f"{what} fold {f.index}: no fraud label available by "
                    f"{f.label_cutoff.isoformat()} before its gap"
                )
    return {"validation": valid, "test": test}


# -- Ray Tune ---------------------------------------------------------------------------------
def _selection_trial(config: dict[str, Any], data: dict[str, Any], setup: dict[str, Any]) -> None:
    """One trial (a Tune actor): the candidate on the validation folds, one report."""
    from ray import tune

    from riskml.models.features import FeatureSpec

    t0 = time.perf_counter()
    result = evaluate_candidate(
        data["frame"],
        BacktestConfig.model_validate(setup["windows"]),
        config,
        spec=FeatureSpec.model_validate(setup["spec"]),
        base=_base_of(setup),
        threads=setup["threads"],
        what="validation",
    )
    row: dict[str, Any] = {
        METRIC: result["mean"]["ap"],
        "mean_valid_cp_at_k": result["mean"]["cp_at_k"],
        "mean_valid_ap_raw": result["mean"]["ap_raw"],
        "valid_folds_json": json.dumps(result["folds"]),
        "trial_seconds": time.perf_counter() - t0,
    }
    for r in result["folds"]:
        row[f"valid_ap_{r['fold']}"] = r["ap"]
    tune.report(row)


def _base_of(setup: Mapping[str, Any]) -> XGBParams | SequenceParams:
    """The trial's base parameters, of the selected model's class."""
    cls = SequenceParams if setup.get("model") == "sequence" else XGBParams
    return cls.model_validate(setup["base"])


def _resources(config: SelectionConfig) -> tuple[int, int | None]:
    """(threads per trial, max concurrent trials) for this cluster."""
    import ray

    total = max(1, int(ray.cluster_resources().get("CPU", 1)))
    small = total <= SMALL_MACHINE_CPUS
    cpus = config.cpus_per_trial or (total if small else LARGE_MACHINE_TRIAL_CPUS)
    cpus = min(cpus, total)  # a trial asking for more would never be placed
    concurrent = config.max_concurrent_trials or (1 if small else max(1, total // cpus))
    return cpus, concurrent


def _trial_index(result: Any) -> int:
    """The trial's creation index (Tune trial ids end in a 5-digit counter)."""
    import re

    trial_id = str((result.metrics or {}).get("trial_id") or "")
    found = re.search(r"_(\d{5})$", trial_id) or re.search(
        r"_(\d{5})_\d+_", Path(str(result.path or "")).name
    )
    return int(found.group(1)) if found else 10**9


def _trials(grid: Any, space: dict[str, Distribution]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for res in sorted(grid, key=_trial_index):
        metrics = res.metrics or {}
        folds = json.loads(metrics["valid_folds_json"]) if "valid_folds_json" in metrics else []
        raw = metrics.get(METRIC)
        value = float(raw) if isinstance(raw, int | float) else math.nan
        ok = res.error is None and math.isfinite(value)
        error = None
        if res.error is not None:
            lines = [ln for ln in str(res.error).strip().splitlines() if ln.strip()]
            error = lines[-1][:500] if lines else type(res.error).__name__
        elif not ok:
            error = "no result (stopped by the time budget?)"
        out.append(
            {
                "trial": len(out),
                "trial_id": str(metrics.get("trial_id", "")),
                "config": {k: _plain((res.config or {}).get(k)) for k in space},
                "status": "ok" if ok else "error",
                "error": error,
                METRIC: value if ok else None,
                "mean_valid_cp_at_k": metrics.get("mean_valid_cp_at_k") if ok else None,
                "valid": [{key: r[key] for key in TRIAL_FOLD_KEYS} for r in folds],
                "seconds": round(float(metrics.get("trial_seconds", 0.0)), 2),
            }
        )
    return out


def run_search(
    frame: pl.DataFrame, spec: FeatureSpec, config: SelectionConfig
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The Tune experiment on the validation folds (``frame`` must end before T): the trials
    in creation order (trial 0 the default) and run facts (path, threads, concurrency)."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from riskml.training.runtime import TUNE_STORAGE, ensure_ray, ray_storage, storage_join

    end = frame["ts"].max()
    assert isinstance(end, dt.datetime)
    first_test = fold_windows(config.test_windows())[0].test_start
    if _us(end) >= _us(first_test):  # the search must never see the test weeks
        raise SelectionError(f"the search frame reaches {end.isoformat()}, past T")
    space = config.space()
    # the default's values may lie outside a narrower space: Tune warns, and runs them as given
    logging.getLogger("ray.tune.search.variant_generator").setLevel(logging.ERROR)
    ensure_ray(log_to_driver=False)
    threads, concurrent = _resources(config)
    storage = ray_storage(config.storage_path, TUNE_STORAGE)
    name = config.name or f"select-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    setup = {
        "windows": config.validation_windows().model_dump(mode="json"),
        "spec": spec.model_dump(mode="json"),
        "model": config.model,
        "base": config.base_params().model_dump(mode="json"),
        "threads": threads,
    }
    trainable = tune.with_resources(
        tune.with_parameters(_selection_trial, data={"frame": frame}, setup=setup),
        {"cpu": threads},
    )
    tuner = tune.Tuner(
        trainable,
        param_space={k: d.to_tune() for k, d in space.items()},
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode="max",
            # the generator limits concurrency itself (Tune ignores max_concurrent_trials with it)
            search_alg=BasicVariantGenerator(
                points_to_evaluate=[config.default_candidate()],
                max_concurrent=concurrent or 0,
                random_state=config.seed,
            ),
            num_samples=config.num_samples,
            time_budget_s=config.time_budget_s,
        ),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0),
    )
    t0 = time.perf_counter()
    grid = tuner.fit()
    facts = {
        "experiment_path": storage_join(storage, name),
        "threads_per_trial": threads,
        "max_concurrent_trials": concurrent,
        "search_seconds": round(time.perf_counter() - t0, 2),
    }
    return _trials(grid, space), facts


def choose(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The trial with the highest mean validation AP (ties: the earliest, so the default)."""
    ok = [t for t in trials if t["status"] == "ok"]
    if not ok:
        errors = "; ".join(f"trial {t['trial']}: {t['error']}" for t in trials[:3])
        raise SelectionError(f"no selection trial finished ({len(trials)} run): {errors}")
    return max(ok, key=lambda t: (t[METRIC], -t["trial"]))


def _windows_json(folds: list[Fold]) -> list[dict[str, Any]]:
    return [
        {
            "fold": f.index,
            "train_end": f.train_end.isoformat(),
            "label_cutoff": f.label_cutoff.isoformat(),
            "test_start": f.test_start.isoformat(),
            "test_end": f.test_end.isoformat(),
        }
        for f in folds
    ]


def run_selection(
    tx: pl.DataFrame,
    config: SelectionConfig,
    *,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Search on the validation folds, then run the chosen and the default configuration on
    the test folds with the same function; return the report (JSON-ready)."""
    import polars as pl

    from riskml.evaluation.backtest import feature_frame, model_spec

    def stage(text: str) -> None:
        if on_stage is not None:
            on_stage(text)

    windows = check_windows(tx, config)
    t0 = time.perf_counter()
    stage("features")
    if config.model == "sequence":  # the sequence model reads the tabular features too
        spec = model_spec()
        frame = feature_frame(tx)
    else:
        spec = xgb_spec(model_spec())
        frame = xgb_frame(feature_frame(tx), spec)
    feature_seconds = time.perf_counter() - t0
    first_test = windows["test"][0].test_start
    search_frame = frame.filter(pl.col("ts").dt.epoch("us") < _us(first_test))
    stage(f"search: {config.num_samples} trials on {config.valid_folds} validation folds")
    trials, facts = run_search(search_frame, spec, config)
    best = choose(trials)
    default = trials[0]
    default_candidate = config.default_candidate()
    if default["config"] != default_candidate:  # pragma: no cover - Tune changed its order
        raise SelectionError(f"trial 0 is not the default configuration: {default['config']}")
    threads = facts["threads_per_trial"]
    stage("test folds: chosen and default")
    test_results: dict[str, dict[str, Any]] = {}
    t1 = time.perf_counter()
    for role, candidate in (("default", default_candidate), ("chosen", best["config"])):
        if role == "chosen" and candidate == default_candidate:
            result = test_results["default"]  # the same configuration: the same figures
        else:
            result = evaluate_candidate(
                frame,
                config.test_windows(),
                candidate,
                spec=spec,
                base=config.base_params(),
                threads=threads,
                what="test",
            )
        params, train_days = candidate_params(config.base_params(), candidate)
        test_results[role] = {
            "config": dict(candidate),
            "params": params.model_dump(mode="json"),
            "train_days": train_days,
            "folds": result["folds"],
            "mean": result["mean"],
        }
    test_seconds = time.perf_counter() - t1
    chosen = test_results["chosen"]
    notes = []
    if chosen["params"].get("tree_method") == "exact":
        notes.append(
            "the chosen tree_method 'exact' trains in process only: Ray Train (riskml train "
            "without --in-process) refuses it, use 'hist' or 'approx' there"
        )
    valid_end = max(f.test_end for f in windows["validation"])
    return {
        "selection": {
            "used": "validation folds only: every trial trained and was scored on the weeks "
            "before the first test day; the test folds ran once, after the search, for the "
            "chosen and the default configuration",
            "model": config.model,
            "metric": f"{METRIC}: mean over the validation folds of the average precision of "
            f"the calibrated {config.model} scores (mode max; ties go to the earlier trial)",
            "validation_windows": _windows_json(windows["validation"]),
            "test_windows": _windows_json(windows["test"]),
            "validation_ends": valid_end.isoformat(),
            "test_starts": first_test.isoformat(),
            "overlap": False,  # check_no_overlap raised otherwise
            "search_rows": search_frame.height,
            "search_rows_last_ts": _iso(search_frame["ts"].max()),
            "validation_labels": "training: as known at each validation fold's cut-off; "
            "scoring: the ground truth of the validation windows' rows (as the backtest)",
            "train_start": "depends on each configuration's train_days (None: all history)",
        },
        "search_space": {k: d.model_dump(mode="json") for k, d in config.space().items()},
        "default_config": default_candidate,
        "chosen_config": best["config"],
        "chosen_trial": best["trial"],
        "chosen_is_default": best["config"] == default_candidate,
        "trials": trials,
        "test": test_results,
        "test_gain": {
            key: chosen["mean"][key] - test_results["default"]["mean"][key]
            for key in ("ap", "cp_at_k")
        },
        "notes": notes,
        "config": config.model_dump(mode="json"),
        "data": {
            "rows": tx.height,
            "start": _iso(tx["ts"].min()),
            "end": _iso(tx["ts"].max()),
            "frauds": int(tx["is_fraud"].sum()),
        },
        "run": {
            **facts,
            "feature_seconds": round(feature_seconds, 2),
            "test_seconds": round(test_seconds, 2),
        },
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, dt.datetime) else None


__all__ = [
    "METRIC",
    "SelectionConfig",
    "SelectionError",
    "candidate_params",
    "check_no_overlap",
    "check_windows",
    "choose",
    "default_selection_space",
    "evaluate_candidate",
    "run_search",
    "run_selection",
]
