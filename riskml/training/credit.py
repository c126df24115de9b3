"""Train the PD models out of time by vintage: the WoE scorecard (GLM) and the monotone GBDT
(tuned with Ray Tune and trained with Ray Train behind ``use_ray``), calibration chosen out of
time, the champion chosen on the vintages before the held-out ones.

**Splits by vintage** (:func:`split_vintages`). A vintage is usable for a window only when it is
*complete* as of that window's label cut-off (``*_as_of``, default the data's observation end):
every loan has its label and ``label_mature_at <= cut-off``. Using single matured rows instead
would keep an immature vintage's early defaults and drop its (not yet known) good loans — a
vintage made of bads. Complete vintages, oldest first, are split into::

    train (>= min_train_vintages) | valid | calibration fit | calibration select | test

``valid`` early-stops the GBDT and scores Tune's trials; both models train on ``train`` only.
Calibrators are fitted on ``calibration fit`` and chosen on ``calibration select`` (then refitted
on both, :func:`~riskml.models.credit.calibration.select_calibrator`); the refitted map's level
is then set on the ``calibration_intercept_vintages`` newest complete vintages (calibration in
the large, :func:`~riskml.models.credit.calibration.adjust_in_the_large`: one logit shift, order
kept) because the four calibration vintages lag a drifting default level — measured on seeds
0, 1, 2, 3, 5, 7, 11, 13 of the demo portfolio, whose calibration vintages still carry the tail
of the macro shock, it lowers the held-out ECE and raises the Jeffreys pass share on average
and in the worst seed. The champion is the GBDT
when its Gini on ``calibration select`` beats the scorecard's by ``champion_margin``, else the
scorecard (simpler, explainable). ``test`` is touched only to score.

**Ray** (``use_ray``): Ray Tune runs ``tune.num_samples`` trials of :func:`~riskml.models.credit.
gbdt.fit_gbdt` (one CPU each; a trial reports once, when it ends), then Ray Train's
``XGBoostTrainer`` trains the best configuration with the same function in its worker — no
per-round reports (see ``shared/design.md``: per-round reporting made Ray 30x slower than plain
XGBoost). With ``time_plain_baseline`` the same fit also runs in process, for the Ray/plain time
ratio. Without Ray, the GBDT trains in process with ``gbdt`` as given. The Ray Train run keeps
no checkpoints: the fit takes seconds, so a worker group restarted by ``ray.max_failures``
simply trains again.

:func:`train_pd` returns both :class:`~riskml.models.credit.pd.PDModel`\\ s with their scored
vintages; the reports are built one layer up (``riskml.evaluation.credit.pd_report.
training_report``: training may not import evaluation).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from riskml.metrics import roc_auc
from riskml.models.credit import CreditFeatureSpec, as_polars, labels
from riskml.models.credit.calibration import (
    METHODS,
    CalibrationMethod,
    Criterion,
    adjust_in_the_large,
    select_calibrator,
)
from riskml.models.credit.gbdt import GBDTModel, GBDTParams, fit_gbdt
from riskml.models.credit.pd import DecisionPolicy, GradeScale, PDModel
from riskml.models.credit.scorecard import ScorecardConfig, fit_scorecard
from riskml.training.runtime import RayConfig
from riskml.training.tune import Distribution, trial_errors

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

ROLES = ("train", "valid", "calibration_fit", "calibration_select", "test")


class CreditTrainingError(ValueError):
    """The data cannot be split or trained as configured."""


class VintageSplitConfig(BaseModel):
    """How many complete vintages go to each window (newest last), and the label cut-offs."""

    model_config = ConfigDict(extra="forbid")

    test_vintages: int = Field(default=1, ge=1)
    select_vintages: int = Field(default=2, ge=1)
    calibration_vintages: int = Field(default=2, ge=1)
    valid_vintages: int = Field(default=1, ge=1)
    min_train_vintages: int = Field(default=2, ge=1)
    max_train_vintages: int | None = Field(default=None, ge=1)
    train_as_of: dt.datetime | None = Field(
        default=None, description="Label cut-off of train + valid (default: observation end)."
    )
    calibration_as_of: dt.datetime | None = Field(
        default=None, description="Label cut-off of both calibration windows."
    )
    test_as_of: dt.datetime | None = Field(default=None, description="Label cut-off of test.")


def default_tune_space() -> dict[str, Distribution]:
    return {
        "eta": Distribution(type="loguniform", low=0.02, high=0.2),
        "max_depth": Distribution(type="randint", low=2, high=5),
        "min_child_weight": Distribution(type="loguniform", low=1.0, high=50.0),
        "subsample": Distribution(type="uniform", low=0.6, high=1.0),
    }


class PDTuneConfig(BaseModel):
    """A small Ray Tune search over GBDT parameters (used with ``use_ray``)."""

    model_config = ConfigDict(extra="forbid")

    num_samples: int = Field(default=4, ge=1)
    cpus_per_trial: int = Field(default=1, ge=1)
    max_concurrent_trials: int | None = Field(default=None, ge=1)
    time_budget_s: float = Field(default=600, gt=0)
    max_failures: int = Field(
        default=1, ge=-1, description="Restarts of a trial whose actor failed (as in TuneSettings)."
    )
    search_space: dict[str, Distribution] = Field(default_factory=default_tune_space)
    seed: int = 7

    def check(self) -> None:
        unknown = sorted(set(self.search_space) - set(GBDTParams.model_fields))
        if unknown:
            raise CreditTrainingError(f"tune search space names unknown GBDT params {unknown}")


class PDTrainingConfig(BaseModel):
    """Everything :func:`train_pd` needs besides the data."""

    model_config = ConfigDict(extra="forbid")

    spec: CreditFeatureSpec = Field(default_factory=CreditFeatureSpec)
    split: VintageSplitConfig = Field(default_factory=VintageSplitConfig)
    scorecard: ScorecardConfig = Field(default_factory=ScorecardConfig)
    gbdt: GBDTParams = Field(default_factory=GBDTParams)
    calibration_methods: tuple[CalibrationMethod, ...] = METHODS
    calibration_criterion: Criterion = "log_loss"
    calibration_intercept_vintages: int = Field(
        default=1,
        ge=0,
        description="Newest complete calibration vintages the PD level is matched to "
        "(calibration in the large; 0: no intercept shift).",
    )
    grades: GradeScale = Field(default_factory=GradeScale)
    policy: DecisionPolicy = Field(default_factory=DecisionPolicy)
    champion_margin: float = Field(
        default=0.01, ge=0, description="Gini points (as a fraction) the GBDT must win by."
    )
    models: tuple[Literal["glm", "gbdt"], ...] = Field(default=("glm", "gbdt"), min_length=1)
    use_ray: bool = Field(default=False, description="Tune and train the GBDT on Ray.")
    tune: PDTuneConfig | None = Field(
        default_factory=PDTuneConfig, description="Ray Tune search (None: no tuning)."
    )
    ray: RayConfig = Field(
        default_factory=lambda: RayConfig(num_workers=1, cpus_per_worker=1, checkpoint_every=0)
    )
    time_plain_baseline: bool = Field(
        default=True, description="With Ray: also fit in process, for the time ratio."
    )
    nthread: int = Field(default=1, ge=1, description="XGBoost threads in process.")


@dataclass
class VintageSplit:
    """Vintages per window and what was left out (and why)."""

    train: list[str]
    valid: list[str]
    calibration_fit: list[str]
    calibration_select: list[str]
    test: list[str]
    excluded: dict[str, str] = field(default_factory=dict)  # vintage -> reason
    as_of: dict[str, str] = field(default_factory=dict)

    def role_of(self) -> dict[str, str]:
        return {v: role for role in ROLES for v in getattr(self, role)}

    def summary(self) -> dict[str, Any]:
        return {
            **{role: list(getattr(self, role)) for role in ROLES},
            "excluded": dict(self.excluded),
            "as_of": dict(self.as_of),
        }


@dataclass
class ModelOutcome:
    """One trained PD model with every vintage scored."""

    name: str  # "glm" | "gbdt"
    model: PDModel
    scored: pl.DataFrame  # loan_id, vintage, role, default_12m, raw_pd, pd, pd_low, pd_high, grade
    dev_raw: np.ndarray  # raw PD of the training rows (the PSI reference)
    selection: dict[str, Any]  # Gini on the select window, calibration choice
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class PDTrainingResult:
    split: VintageSplit
    models: dict[str, ModelOutcome]
    champion: str
    config: PDTrainingConfig
    timings: dict[str, float] = field(default_factory=dict)
    tune: dict[str, Any] | None = None

    @property
    def champion_model(self) -> PDModel:
        return self.models[self.champion].model


# -- splits -----------------------------------------------------------------------------------


def loans_of(data: Any) -> tuple[pl.DataFrame, dt.datetime | None]:
    """The loans frame and the observation end of a Portfolio (``.loans``,
    ``.observation_end``) or of a bare loans frame (None: taken from the labels)."""
    loans = getattr(data, "loans", data)
    end = getattr(data, "observation_end", None)
    if isinstance(end, dt.date) and not isinstance(end, dt.datetime):
        end = dt.datetime.combine(end, dt.time(), tzinfo=dt.UTC)
    return as_polars(loans), end


def split_vintages(
    loans: pl.DataFrame, config: VintageSplitConfig, observation_end: dt.datetime | None = None
) -> VintageSplit:
    """Assign complete vintages to windows (see the module doc)."""
    import polars as pl

    need = {"vintage", "default_12m", "label_mature_at"}
    missing = sorted(need - set(loans.columns))
    if missing:
        raise CreditTrainingError(f"loans lack columns {missing}")
    end = observation_end
    if end is None:
        mature = loans.filter(pl.col("default_12m").is_not_null())
        if mature.is_empty():
            raise CreditTrainingError("no loan has a mature label")
        end = mature.get_column("label_mature_at").max()  # type: ignore[assignment]
    assert isinstance(end, dt.datetime)
    cut = {
        "train": config.train_as_of or end,
        "calibration": config.calibration_as_of or end,
        "test": config.test_as_of or end,
    }
    for name, c in cut.items():
        if c.tzinfo is None:
            raise CreditTrainingError(f"{name}_as_of must be timezone-aware (UTC)")
        if c > end:
            raise CreditTrainingError(f"{name}_as_of {c} is after the observation end {end}")
    per = (
        loans.group_by("vintage")
        .agg(
            pl.len().alias("n"),
            pl.col("default_12m").null_count().alias("immature"),
            pl.col("label_mature_at").max().alias("last_mature"),
        )
        .sort("vintage")
    )

    def complete(row: dict[str, Any], cutoff: dt.datetime) -> bool:
        return row["immature"] == 0 and row["last_mature"] <= cutoff

    rows = per.to_dicts()
    excluded = {
        r["vintage"]: f"{r['immature']} of {r['n']} labels immature at {end:%Y-%m-%d}"
        for r in rows
        if not complete(r, end)
    }
    usable = [r for r in rows if complete(r, end)]
    s = config
    tail = s.test_vintages + s.select_vintages + s.calibration_vintages + s.valid_vintages
    if len(usable) < tail + s.min_train_vintages:
        raise CreditTrainingError(
            f"{len(usable)} complete vintages; the split needs {tail + s.min_train_vintages} "
            f"({s.min_train_vintages} train + {s.valid_vintages} valid + "
            f"{s.calibration_vintages} calibration + {s.select_vintages} select + "
            f"{s.test_vintages} test). Excluded: {excluded}"
        )
    # the test window is the newest complete vintages; earlier windows must be complete by
    # their own cut-off, else they move out (never into a later window)
    names = [r["vintage"] for r in usable]
    test = names[-s.test_vintages :]
    rest = usable[: -s.test_vintages]
    cal_ok = [r for r in rest if complete(r, cut["calibration"])]
    for r in rest:
        if r not in cal_ok:
            excluded[r["vintage"]] = (
                f"labels not complete by calibration_as_of {cut['calibration']}"
            )
    n_cal = s.select_vintages + s.calibration_vintages
    cal_rows = cal_ok[-n_cal:]
    if len(cal_rows) < n_cal:
        raise CreditTrainingError(f"only {len(cal_rows)} vintages complete for calibration")
    select = [r["vintage"] for r in cal_rows[-s.select_vintages :]]
    calibration = [r["vintage"] for r in cal_rows[: s.calibration_vintages]]
    first_cal = cal_rows[0]["vintage"]
    earlier = [r for r in rest if r["vintage"] < first_cal]
    train_ok = [r for r in earlier if complete(r, cut["train"])]
    for r in earlier:
        if r not in train_ok:
            excluded[r["vintage"]] = f"labels not complete by train_as_of {cut['train']}"
    valid = [r["vintage"] for r in train_ok[-s.valid_vintages :]]
    train = [r["vintage"] for r in train_ok[: -s.valid_vintages]]
    if s.max_train_vintages:
        for v in train[: -s.max_train_vintages]:
            excluded[v] = f"older than the {s.max_train_vintages} training vintages kept"
        train = train[-s.max_train_vintages :]
    if len(train) < s.min_train_vintages or len(valid) < s.valid_vintages:
        raise CreditTrainingError(
            f"{len(train)} train / {len(valid)} valid vintages complete by train_as_of "
            f"{cut['train']}; need {s.min_train_vintages} / {s.valid_vintages}"
        )
    return VintageSplit(
        train=train,
        valid=valid,
        calibration_fit=calibration,
        calibration_select=select,
        test=test,
        excluded=dict(sorted(excluded.items())),
        as_of={k: v.isoformat() for k, v in {**cut, "observation_end": end}.items()},
    )


# -- training -----------------------------------------------------------------------------------


def _window(loans: pl.DataFrame, vintages: list[str]) -> pl.DataFrame:
    import polars as pl

    return loans.filter(pl.col("vintage").is_in(vintages))


def _scored(
    model: PDModel, loans: pl.DataFrame, roles: dict[str, str], *, reasons: bool = False
) -> pl.DataFrame:
    import polars as pl

    raw = model.raw_pd(loans)
    pd, lo, hi = model.calibrator.predict(raw)
    return pl.DataFrame(
        {
            "loan_id": loans.get_column("loan_id"),
            "vintage": loans.get_column("vintage"),
            "role": [roles.get(v, "unused") for v in loans.get_column("vintage").to_list()],
            "default_12m": loans.get_column("default_12m"),
            "raw_pd": raw,
            "pd": pd,
            "pd_low": lo,
            "pd_high": hi,
            "grade": model.grades.grade(pd),
        }
    )


def _gini(y: np.ndarray, p: np.ndarray) -> float:
    return 2.0 * roc_auc(y, p) - 1.0


def train_pd(data: Any, config: PDTrainingConfig | None = None) -> PDTrainingResult:
    """Split by vintage, train the scorecard and the GBDT, calibrate out of time, pick the
    champion. ``data``: a Portfolio (``.loans``, ``.observation_end``) or a loans frame."""
    config = config or PDTrainingConfig()
    loans, end = loans_of(data)
    spec = config.spec
    spec.check_frame(loans)
    split = split_vintages(loans, config.split, end)
    roles = split.role_of()
    t0 = time.perf_counter()
    win = {role: _window(loans, getattr(split, role)) for role in ROLES}
    y = {role: labels(frame, spec) for role, frame in win.items()}
    cal_vintages = [*split.calibration_fit, *split.calibration_select]
    if config.calibration_intercept_vintages > len(cal_vintages):
        raise CreditTrainingError(
            f"calibration_intercept_vintages={config.calibration_intercept_vintages} exceeds "
            f"the {len(cal_vintages)} calibration vintages"
        )
    cal_frame = _window(loans, cal_vintages)
    cal_y = labels(cal_frame, spec)
    timings: dict[str, float] = {}
    outcomes: dict[str, ModelOutcome] = {}
    tune_summary: dict[str, Any] | None = None

    def finish(name: str, kind: str, fitted: Any, info: dict[str, Any]) -> ModelOutcome:
        raw = {role: fitted.raw_pd(win[role]) for role in ("calibration_fit", "calibration_select")}
        cal = select_calibrator(
            raw["calibration_fit"],
            y["calibration_fit"],
            raw["calibration_select"],
            y["calibration_select"],
            methods=config.calibration_methods,
            criterion=config.calibration_criterion,
        )
        if config.calibration_intercept_vintages:
            recent = cal_vintages[-config.calibration_intercept_vintages :]
            rows = cal_frame.get_column("vintage").is_in(recent).to_numpy()
            cal = adjust_in_the_large(
                cal,
                fitted.raw_pd(cal_frame.filter(rows)),
                cal_y[rows],
                label=",".join(recent),
            )
        model = PDModel(
            spec=spec,
            kind=kind,  # type: ignore[arg-type]
            model=fitted,
            calibrator=cal,
            grades=config.grades,
            policy=config.policy,
            metadata={
                "name": name,
                "split": split.summary(),
                "trained_at": dt.datetime.now(dt.UTC).isoformat(),
                "training": {k: v for k, v in info.items() if k != "tune_table"},
            },
        )
        sel_gini = _gini(y["calibration_select"], raw["calibration_select"])
        return ModelOutcome(
            name=name,
            model=model,
            scored=_scored(model, loans, roles),
            dev_raw=fitted.raw_pd(win["train"]),
            selection={"gini_select": sel_gini, "calibration": cal.selection},
            info=info,
        )

    if "glm" in config.models:
        t = time.perf_counter()
        card = fit_scorecard(win["train"], y["train"], spec, config.scorecard)
        timings["glm_fit_seconds"] = time.perf_counter() - t
        info: dict[str, Any] = {
            "used": card.used,
            "dropped": card.dropped,
            "iv": card.binning.iv(),
        }
        outcomes["glm"] = finish("glm", "scorecard", card, info)
    if "gbdt" in config.models:
        x_train, x_valid = spec.numeric_matrix(win["train"]), spec.numeric_matrix(win["valid"])
        params = config.gbdt
        if config.use_ray:
            gbdt, info, tune_summary = _gbdt_on_ray(
                x_train, y["train"], x_valid, y["valid"], spec, config
            )
            timings.update(info.pop("timings"))
        else:
            t = time.perf_counter()
            gbdt, fit_info = fit_gbdt(
                x_train,
                y["train"],
                spec,
                params,
                x_valid=x_valid,
                y_valid=y["valid"],
                nthread=config.nthread,
            )
            timings["gbdt_fit_seconds"] = time.perf_counter() - t
            info = {"params": params.model_dump(mode="json"), **fit_info}
        outcomes["gbdt"] = finish("gbdt", "gbdt", gbdt, info)

    champion = next(iter(outcomes))
    if {"glm", "gbdt"} <= set(outcomes):
        g = outcomes["gbdt"].selection["gini_select"]
        s = outcomes["glm"].selection["gini_select"]
        champion = "gbdt" if g >= s + config.champion_margin else "glm"
    timings["total_seconds"] = time.perf_counter() - t0
    return PDTrainingResult(
        split=split,
        models=outcomes,
        champion=champion,
        config=config,
        timings=timings,
        tune=tune_summary,
    )


# -- Ray ----------------------------------------------------------------------------------------


def _tune_trial(config: dict[str, Any], data: dict[str, Any], setup: dict[str, Any]) -> None:
    """One Tune trial: a plain fit, one report at the end (no per-round reporting)."""
    from ray import tune

    spec = CreditFeatureSpec.model_validate(setup["spec"])
    params = GBDTParams.model_validate({**setup["base"], **config})
    _, info = fit_gbdt(
        data["x_train"],
        data["y_train"],
        spec,
        params,
        x_valid=data["x_valid"],
        y_valid=data["y_valid"],
        nthread=setup["threads"],
    )
    tune.report(
        {
            "valid_logloss": info["valid_logloss"],
            "valid_auc": info["valid_auc"],
            "rounds": info["rounds"],
        }
    )


def tune_gbdt(
    data: dict[str, np.ndarray],
    spec: CreditFeatureSpec,
    base: GBDTParams,
    settings: PDTuneConfig,
    *,
    name: str | None = None,
) -> dict[str, Any]:
    """Ray Tune over ``settings.search_space`` (FIFO, random search, valid log loss); returns the
    best parameters and the trials table."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from riskml.training.runtime import TUNE_STORAGE, ensure_ray, ray_storage

    settings.check()
    ensure_ray()
    trainable = tune.with_resources(
        tune.with_parameters(
            _tune_trial,
            data=data,
            setup={
                "spec": spec.model_dump(mode="json"),
                "base": base.model_dump(mode="json"),
                "threads": settings.cpus_per_trial,
            },
        ),
        {"cpu": settings.cpus_per_trial},
    )
    run_name = name or f"credit-pd-tune-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    tuner = tune.Tuner(
        trainable,
        param_space={k: d.to_tune() for k, d in settings.search_space.items()},
        tune_config=tune.TuneConfig(
            metric="valid_logloss",
            mode="min",
            search_alg=BasicVariantGenerator(
                random_state=settings.seed, max_concurrent=settings.max_concurrent_trials or 0
            ),
            num_samples=settings.num_samples,
            time_budget_s=settings.time_budget_s,
        ),
        run_config=tune.RunConfig(
            name=run_name,
            storage_path=ray_storage(None, TUNE_STORAGE),
            failure_config=tune.FailureConfig(max_failures=settings.max_failures),
            verbose=0,
        ),
    )
    grid = tuner.fit()
    rows: list[dict[str, Any]] = []
    for i in range(len(grid)):
        res = grid[i]
        m = res.metrics or {}
        rows.append(
            {
                **{k: (res.config or {}).get(k) for k in settings.search_space},
                "valid_logloss": float(m.get("valid_logloss", math.nan)),
                "valid_auc": float(m.get("valid_auc", math.nan)),
                "rounds": float(m.get("rounds", math.nan)),
                "status": "error" if res.error else "ok",
            }
        )
    ok = [r for r in rows if math.isfinite(r["valid_logloss"])]
    if not ok:
        raise RuntimeError(f"no tuning trial finished: {trial_errors(grid)}")
    best = min(ok, key=lambda r: r["valid_logloss"])
    best_config = {k: best[k] for k in settings.search_space}
    return {
        "best_config": best_config,
        "best_params": {**base.model_dump(mode="json"), **best_config},
        "best_valid_logloss": best["valid_logloss"],
        "trials": sorted(
            rows, key=lambda r: (not math.isfinite(r["valid_logloss"]), r["valid_logloss"])
        ),
        "errors": int(grid.num_errors),
        "path": str(grid.experiment_path),
    }


def _train_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train worker: the plain fit on this worker's data; one return, no reports."""
    import ray

    t_start = time.time()
    spec = CreditFeatureSpec.model_validate(config["spec"])
    params = GBDTParams.model_validate(config["params"])
    train = ray.get(config["train_ref"])
    valid = ray.get(config["valid_ref"])
    model, info = fit_gbdt(
        train["x"],
        train["y"],
        spec,
        params,
        x_valid=valid["x"],
        y_valid=valid["y"],
        nthread=config["nthread"],
    )
    return {"model": model.to_ubj(), "info": info, "worker_start": t_start}


def train_gbdt_ray(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    spec: CreditFeatureSpec,
    params: GBDTParams,
    ray_config: RayConfig,
) -> tuple[GBDTModel, dict[str, Any]]:
    """Train with Ray Train's ``XGBoostTrainer`` (``ray_config.num_workers`` must be 1: the
    booster is fitted by :func:`fit_gbdt` on the worker's whole data)."""
    import ray
    from ray.train.xgboost import XGBoostTrainer

    from riskml.training.runtime import (
        cpus_per_worker,
        ensure_ray,
        run_config,
        run_name,
        scaling_config,
    )

    if ray_config.num_workers != 1:
        raise CreditTrainingError("the credit GBDT trains on one Ray Train worker")
    ensure_ray(include_dashboard=ray_config.include_dashboard)
    t0 = time.time()
    train_ref = ray.put({"x": np.ascontiguousarray(x_train), "y": np.asarray(y_train)})
    valid_ref = ray.put({"x": np.ascontiguousarray(x_valid), "y": np.asarray(y_valid)})
    name = run_name(ray_config, "credit-pd-gbdt")
    nthread = cpus_per_worker(ray_config)
    trainer = XGBoostTrainer(
        _train_worker,  # type: ignore[arg-type]  # V2: rank 0's return value is return_value
        train_loop_config={
            "spec": spec.model_dump(mode="json"),
            "params": params.model_dump(mode="json"),
            "train_ref": train_ref,
            "valid_ref": valid_ref,
            "nthread": nthread,
        },
        scaling_config=scaling_config(ray_config),
        run_config=run_config(ray_config, name),
    )
    t_fit = time.time()
    result = trainer.fit()
    t_end = time.time()
    out = getattr(result, "return_value", None)
    if not out:
        raise RuntimeError(f"credit GBDT run {name} returned no model ({result.error})")
    model = GBDTModel.from_ubj(out["model"], spec)
    return model, {
        **out["info"],
        "run_name": name,
        "ray_put_seconds": t_fit - t0,
        "ray_fit_seconds": t_end - t_fit,
        "ray_startup_seconds": out["worker_start"] - t_fit,
        "ray_total_seconds": t_end - t0,
        "nthread": float(nthread),
    }


def _gbdt_on_ray(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    spec: CreditFeatureSpec,
    config: PDTrainingConfig,
) -> tuple[GBDTModel, dict[str, Any], dict[str, Any] | None]:
    params = config.gbdt
    timings: dict[str, float] = {}
    tuned = None
    if config.tune is not None:
        t = time.perf_counter()
        tuned = tune_gbdt(
            {"x_train": x_train, "y_train": y_train, "x_valid": x_valid, "y_valid": y_valid},
            spec,
            params,
            config.tune,
        )
        timings["gbdt_tune_seconds"] = time.perf_counter() - t
        params = GBDTParams.model_validate(tuned["best_params"])
    model, info = train_gbdt_ray(x_train, y_train, x_valid, y_valid, spec, params, config.ray)
    timings["gbdt_ray_seconds"] = info["ray_total_seconds"]
    if config.time_plain_baseline:
        t = time.perf_counter()
        fit_gbdt(
            x_train,
            y_train,
            spec,
            params,
            x_valid=x_valid,
            y_valid=y_valid,
            nthread=int(info["nthread"]),
        )
        timings["gbdt_plain_seconds"] = time.perf_counter() - t
        timings["gbdt_ray_over_plain"] = timings["gbdt_ray_seconds"] / max(
            timings["gbdt_plain_seconds"], 1e-9
        )
    info = {"params": params.model_dump(mode="json"), **info, "timings": timings}
    return model, info, tuned


__all__ = [
    "ROLES",
    "CreditTrainingError",
    "ModelOutcome",
    "PDTrainingConfig",
    "PDTrainingResult",
    "PDTuneConfig",
    "VintageSplit",
    "VintageSplitConfig",
    "default_tune_space",
    "loans_of",
    "split_vintages",
    "train_gbdt_ray",
    "train_pd",
    "tune_gbdt",
]
