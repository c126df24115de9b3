"""Train the offer ranker on logged impressions, split by time.

**Split** (:func:`split_offers`): impressions are grouped by the UTC month of ``ts``; the latest
``test_months`` months are the test window (touched only to score), the ``valid_months`` months
before it early-stop both boosters, and every earlier month trains. An impression is never split
(all its candidates share its ``ts``). Nothing from the valid or test months reaches the reward
model, the cross-fitted labels or the grade cut points.

**Training** (:func:`train_offer_ranker`): :meth:`~riskml.models.credit.ranking.OfferRanker.fit`
in process (the plain path, used by tests), or with ``use_ray`` the same call as one Ray task
(``ray.cpus_per_worker`` CPUs, default: what the cluster's largest node has) that returns the
ranker's files (UBJSON + JSON) — the ranker's data are a few thousand impressions, and a
LambdaMART group cannot be split across data-parallel workers without care, so one task is the
right unit. ``time_plain_baseline`` also fits in process, for the Ray/plain time ratio.

The off-policy evaluation of the result is one layer up
(:func:`riskml.evaluation.credit.ope.evaluate_offer_ranking`: training may not import evaluation).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from riskml.data.credit.economics import Economics
from riskml.models.credit.ranking import OfferRanker, RankerParams
from riskml.training.runtime import RayConfig

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

MONTH = "%Y-%m"


class OfferTrainingError(ValueError):
    """The offers log cannot be split or trained as configured."""


class OfferTrainingConfig(BaseModel):
    """Split, model and runtime of :func:`train_offer_ranker`."""

    model_config = ConfigDict(extra="forbid")

    test_months: int = Field(default=1, ge=1, description="Latest months held out (scored only).")
    valid_months: int = Field(
        default=1, ge=0, description="Months before the test window for early stopping (0: none)."
    )
    min_train_months: int = Field(default=2, ge=1)
    ranker: RankerParams = Field(default_factory=RankerParams)
    economics: Economics = Field(default_factory=Economics)
    nthread: int = Field(default=1, ge=1, description="XGBoost threads (plain path).")
    use_ray: bool = Field(default=False, description="Fit as one Ray task.")
    ray: RayConfig = Field(default_factory=RayConfig)
    time_plain_baseline: bool = Field(
        default=False, description="With use_ray: also fit in process and record both times."
    )


@dataclass
class OfferSplit:
    """The months of each window and their candidate rows (contract ``offers`` layout)."""

    train_months: list[str]
    valid_months: list[str]
    test_months: list[str]
    train: pl.DataFrame
    valid: pl.DataFrame | None
    test: pl.DataFrame

    def summary(self) -> dict[str, Any]:
        def n_imp(frame: pl.DataFrame | None) -> int:
            return 0 if frame is None else int(frame.get_column("impression_id").n_unique())

        return {
            "train_months": self.train_months,
            "valid_months": self.valid_months,
            "test_months": self.test_months,
            "train_impressions": n_imp(self.train),
            "valid_impressions": n_imp(self.valid),
            "test_impressions": n_imp(self.test),
        }


@dataclass
class OfferTrainingResult:
    """The trained ranker, its split and how long training took."""

    ranker: OfferRanker
    split: OfferSplit
    config: OfferTrainingConfig
    timings: dict[str, float] = field(default_factory=dict)
    mode: str = "plain"


def offers_of(data: Any) -> pl.DataFrame:
    """The offers frame of a simulator ``Portfolio`` (``.offers``) or the frame itself."""
    import polars as pl

    frame = getattr(data, "offers", data)
    if not isinstance(frame, pl.DataFrame):
        raise OfferTrainingError(f"expected an offers DataFrame or a Portfolio, got {type(data)}")
    return frame


def split_offers(
    offers: pl.DataFrame, *, test_months: int = 1, valid_months: int = 1, min_train_months: int = 2
) -> OfferSplit:
    """Time-ordered split by the UTC month of ``ts`` (see the module doc)."""
    import polars as pl

    if "ts" not in offers.columns or "impression_id" not in offers.columns:
        raise OfferTrainingError("offers need ts and impression_id columns")
    if offers.is_empty():
        raise OfferTrainingError("no offers to split")
    month = pl.col("ts").dt.convert_time_zone("UTC").dt.strftime(MONTH)
    tagged = offers.with_columns(month.alias("__month"))
    months = sorted(tagged.get_column("__month").unique().to_list())
    need = test_months + valid_months + min_train_months
    if len(months) < need:
        raise OfferTrainingError(
            f"{len(months)} months of offers ({months[0]}..{months[-1]}); the split needs "
            f"{need}: {min_train_months} train + {valid_months} valid + {test_months} test"
        )
    test_m = months[len(months) - test_months :]
    valid_m = months[len(months) - test_months - valid_months : len(months) - test_months]
    train_m = months[: len(months) - test_months - valid_months]

    def part(ms: list[str]) -> pl.DataFrame:
        return tagged.filter(pl.col("__month").is_in(ms)).drop("__month")

    return OfferSplit(
        train_months=train_m,
        valid_months=valid_m,
        test_months=test_m,
        train=part(train_m),
        valid=part(valid_m) if valid_m else None,
        test=part(test_m),
    )


def fit_ranker(
    train: pl.DataFrame, valid: pl.DataFrame | None, config: OfferTrainingConfig, *, nthread: int
) -> OfferRanker:
    """The one training call (plain path, and what the Ray task runs)."""
    return OfferRanker.fit(
        train, config.ranker, economics=config.economics, valid=valid, nthread=nthread
    )


def _ray_fit(train: Any, valid: Any, config_json: str, nthread: int) -> dict[str, bytes]:
    """Runs inside the Ray task: Arrow tables in, the ranker's files out (no pickled models)."""
    import polars as pl

    config = OfferTrainingConfig.model_validate_json(config_json)
    train_df = pl.from_arrow(train)
    valid_df = pl.from_arrow(valid) if valid is not None else None
    assert isinstance(train_df, pl.DataFrame)
    assert valid_df is None or isinstance(valid_df, pl.DataFrame)
    return fit_ranker(train_df, valid_df, config, nthread=nthread).to_bytes()


def fit_ranker_on_ray(
    train: pl.DataFrame, valid: pl.DataFrame | None, config: OfferTrainingConfig
) -> tuple[OfferRanker, dict[str, float]]:
    """:func:`fit_ranker` as one Ray task; returns the ranker and its timings."""
    import ray

    from riskml.training.runtime import cpus_per_worker, ensure_ray

    t0 = time.perf_counter()
    ensure_ray(include_dashboard=config.ray.include_dashboard)
    cpus = cpus_per_worker(config.ray)
    task = ray.remote(num_cpus=cpus, max_retries=max(0, config.ray.max_failures))(_ray_fit)
    t1 = time.perf_counter()
    ref = task.remote(
        train.to_arrow(),
        valid.to_arrow() if valid is not None else None,
        config.model_dump_json(),
        cpus,
    )
    files = ray.get(ref)
    t2 = time.perf_counter()
    ranker = OfferRanker.from_bytes(files, nthread=cpus)
    return ranker, {"ray_connect_s": t1 - t0, "ray_task_s": t2 - t1, "ray_cpus": float(cpus)}


def train_offer_ranker(data: Any, config: OfferTrainingConfig | None = None) -> OfferTrainingResult:
    """Split ``data`` (an offers frame or a ``Portfolio``) by month and train the ranker on the
    training months (early stopping on the valid months)."""
    config = config or OfferTrainingConfig()
    split = split_offers(
        offers_of(data),
        test_months=config.test_months,
        valid_months=config.valid_months,
        min_train_months=config.min_train_months,
    )
    timings: dict[str, float] = {}
    if config.use_ray:
        ranker, ray_times = fit_ranker_on_ray(split.train, split.valid, config)
        timings.update(ray_times)
        timings["ray_total_s"] = ray_times["ray_connect_s"] + ray_times["ray_task_s"]
        if config.time_plain_baseline:
            t0 = time.perf_counter()
            fit_ranker(split.train, split.valid, config, nthread=int(ray_times["ray_cpus"]))
            timings["plain_s"] = time.perf_counter() - t0
            timings["ray_over_plain"] = timings["ray_task_s"] / max(timings["plain_s"], 1e-9)
        mode = "ray"
    else:
        t0 = time.perf_counter()
        ranker = fit_ranker(split.train, split.valid, config, nthread=config.nthread)
        timings["plain_s"] = time.perf_counter() - t0
        mode = "plain"
    return OfferTrainingResult(
        ranker=ranker, split=split, config=config, timings=timings, mode=mode
    )
