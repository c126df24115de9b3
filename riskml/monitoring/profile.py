"""Reference profiles: what the model saw at training, written into its bundle.

A :class:`ReferenceProfile` holds, for every tabular feature and for the final score, the
quantile bins of the reference slice (the training run's valid + calib rows: the most recent
data before deployment, scored out of the training slice) with their counts, the null rate,
the share of the feature's documented default value (what an unknown entity gets), mean and
standard deviation; plus the class balance and the decision mix the thresholds give on the
reference scores. The monitor compares each window of the decision log against it.

Bins: ``edges`` are the distinct interior quantiles (``bins - 1`` of them at most) of the non-null
values; a value ``x`` falls in bin ``i`` = the number of edges strictly below ``x`` (so bin ``i``
is ``(edges[i-1], edges[i]]``), and a null in the extra last bin. Features with few distinct
values (flags, small counts) get fewer bins: the edges are distinct, ties never split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from riskml.models.bundle import PROFILE_FILE

__all__ = ["PROFILE_FILE", "FeatureProfile", "ReferenceProfile", "build_profile"]

PROFILE_VERSION: Final = 1
#: Quantile bins per feature (at most; fewer when values tie).
DEFAULT_BINS: Final = 10
SCORE = "score"
DECISIONS: tuple[str, ...] = ("approve", "review", "decline")

_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class ProfileError(ValueError):
    """A profile cannot be built from (or does not fit) the given data; the message says why."""


class FeatureProfile(BaseModel):
    """One feature's (or the score's) reference distribution."""

    model_config = _CONFIG

    edges: tuple[float, ...] = Field(description="Distinct interior bin edges, increasing.")
    counts: tuple[int, ...] = Field(
        description="Reference rows per bin: len(edges) + 1 value bins, then the null bin."
    )
    null_rate: float = Field(ge=0, le=1)
    default_value: float | None = None
    default_rate: float | None = Field(default=None, ge=0, le=1)
    mean: float | None = None
    std: float | None = None

    @model_validator(mode="after")
    def _shape(self) -> FeatureProfile:
        if len(self.counts) != len(self.edges) + 2:
            raise ValueError(
                f"{len(self.edges)} edges need {len(self.edges) + 2} counts, got {len(self.counts)}"
            )
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("bin edges must be strictly increasing")
        if min(self.counts, default=0) < 0 or sum(self.counts) == 0:
            raise ValueError("bin counts must be >= 0 and not all 0")
        return self

    @property
    def n(self) -> int:
        return int(sum(self.counts))

    @property
    def bins(self) -> int:
        """Bins including the null bin."""
        return len(self.counts)

    def bin_counts(self, values: np.ndarray) -> np.ndarray:
        """Counts of ``values`` (NaN = null) in this profile's bins."""
        return bin_counts(np.asarray(self.edges, dtype=np.float64), values)


class ReferenceProfile(BaseModel):
    """The reference distributions of a model version (see the module docstring)."""

    model_config = _CONFIG

    version: Literal[1] = PROFILE_VERSION
    source: str = Field(description="Which rows the profile was built from.")
    rows: int = Field(ge=1)
    features: dict[str, FeatureProfile]
    score: FeatureProfile | None = None
    fraud_rate: float | None = Field(default=None, ge=0, le=1)
    frauds: int | None = Field(default=None, ge=0)
    thresholds: dict[str, float] = Field(default_factory=dict)
    decision_mix: dict[str, float] = Field(default_factory=dict)
    start: str | None = None
    end: str | None = None

    def monitored(self) -> dict[str, FeatureProfile]:
        """Every feature, and the score (as ``"score"``) when profiled."""
        out = dict(self.features)
        if self.score is not None:
            out[SCORE] = self.score
        return out


def bin_counts(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Counts per bin (``len(edges) + 1`` value bins, then nulls) of ``values``."""
    x = np.asarray(values, dtype=np.float64).ravel()
    null = np.isnan(x)
    idx = np.searchsorted(edges, x[~null], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(np.int64)
    return np.r_[counts, int(null.sum())]


def profile_values(
    values: np.ndarray, *, bins: int = DEFAULT_BINS, default: float | None = None
) -> FeatureProfile:
    """The profile of one column (NaN = null)."""
    if bins < 2:
        raise ProfileError(f"bins must be >= 2, got {bins}")
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ProfileError("no values to profile")
    if np.isinf(x).any():
        raise ProfileError("values contain infinities")
    present = x[~np.isnan(x)]
    mean: float | None
    std: float | None
    if present.size:
        qs = np.quantile(present, np.linspace(0.0, 1.0, bins + 1)[1:-1], method="inverted_cdf")
        edges = np.unique(qs)
        # a last edge at the maximum leaves an empty top bin: drop it
        edges = edges[edges < present.max()]
        mean, std = float(present.mean()), float(present.std())
    else:
        edges = np.empty(0)
        mean = std = None
    counts = bin_counts(edges, x)
    default_rate = None
    if default is not None and present.size:
        default_rate = float(np.mean(x == default))
    return FeatureProfile(
        edges=tuple(float(e) for e in edges),
        counts=tuple(int(c) for c in counts),
        null_rate=float(np.isnan(x).mean()),
        default_value=None if default is None else float(default),
        default_rate=default_rate,
        mean=mean,
        std=std,
    )


def decision_mix(scores: np.ndarray, thresholds: Mapping[str, float]) -> dict[str, float]:
    """Shares of approve / review / decline that ``thresholds`` give on ``scores``."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return {}
    decline = s >= thresholds["decline"]
    review = (s >= thresholds["review"]) & ~decline
    return {
        "approve": float(np.mean(~decline & ~review)),
        "review": float(np.mean(review)),
        "decline": float(np.mean(decline)),
    }


def build_profile(
    tabular: np.ndarray,
    names: Sequence[str],
    *,
    scores: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    thresholds: Mapping[str, float] | None = None,
    defaults: Mapping[str, float] | None = None,
    bins: int = DEFAULT_BINS,
    source: str = "reference",
    start: Any = None,
    end: Any = None,
) -> ReferenceProfile:
    """The reference profile of a (rows x features) matrix, with the scores' distribution,
    the class balance and the decision mix when given."""
    x = np.asarray(tabular, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ProfileError(
            f"tabular must be (rows, {len(names)}) for {len(names)} names, got {x.shape}"
        )
    if x.shape[0] == 0:
        raise ProfileError("no rows to profile")
    defaults = defaults or {}
    features = {
        str(name): profile_values(x[:, j], bins=bins, default=defaults.get(name))
        for j, name in enumerate(names)
    }
    score = None
    mix: dict[str, float] = {}
    if scores is not None:
        s = np.asarray(scores, dtype=np.float64)
        if s.shape != (x.shape[0],):
            raise ProfileError(f"{s.shape[0]} scores for {x.shape[0]} rows")
        # the score is a probability: 20 quantile bins resolve its tail better than 10
        score = profile_values(s, bins=max(bins, 20))
        if thresholds:
            mix = decision_mix(s, thresholds)
    fraud_rate = frauds = None
    if labels is not None:
        y = np.asarray(labels)
        if y.shape != (x.shape[0],):
            raise ProfileError(f"{y.shape[0]} labels for {x.shape[0]} rows")
        frauds = int(y.sum())
        fraud_rate = float(frauds / y.size)
    return ReferenceProfile(
        source=source,
        rows=int(x.shape[0]),
        features=features,
        score=score,
        fraud_rate=fraud_rate,
        frauds=frauds,
        thresholds=dict(thresholds or {}),
        decision_mix=mix,
        start=None if start is None else str(start),
        end=None if end is None else str(end),
    )
