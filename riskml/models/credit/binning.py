"""Monotone optimal binning with weight of evidence (optbinning), stored as JSON.

:func:`fit_binning` runs optbinning's ``BinningProcess`` over the spec's features: a feature whose
risk must be monotone (spec direction ``+1`` / ``-1``) is binned with ``monotonic_trend``
``"ascending"`` / ``"descending"`` event rate; the others with ``"auto"``; categorical features
with optbinning's categorical binning. Every bin must hold at least ``min_bin_events`` defaults and
as many non-defaults, so every bin's weight of evidence is finite and estimated (optbinning gives a
bin without events WoE 0, which would break monotonicity at the low-risk end).

The fitted bins become plain numbers — numeric split points (a value ``x`` falls in bin ``i``
when ``splits[i-1] <= x < splits[i]``, optbinning's rule) or category groups — with one WoE per
bin, a WoE for missing values and one for unknown categories (both 0: neutral, optbinning's
default). :meth:`WoEBinning.transform` needs only numpy, so a scorecard loaded from JSON scores
without optbinning and gives the same WoE as optbinning's own ``transform``.

WoE follows optbinning's sign: ``ln(share of non-defaults / share of defaults)`` — higher WoE is
lower risk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from riskml.models.credit import CreditFeature, CreditFeatureError, CreditFeatureSpec, as_polars

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

FORMAT = "riskml-credit-woe-binning"
FORMAT_VERSION = 1


class BinningError(ValueError):
    """Binning input or payload is invalid."""


class BinningConfig(BaseModel):
    """optbinning settings shared by every feature."""

    model_config = ConfigDict(extra="forbid")

    max_n_bins: int = Field(default=8, ge=2, le=50)
    min_bin_size: float = Field(default=0.04, gt=0, lt=0.5, description="Share of rows per bin.")
    max_n_prebins: int = Field(default=20, ge=2)
    min_prebin_size: float = Field(default=0.02, gt=0, lt=0.5)
    min_bin_events: int = Field(
        default=5, ge=1, description="Defaults and non-defaults every bin must hold."
    )
    free_trend: str = Field(
        default="auto",
        description="optbinning monotonic_trend for features without a required direction.",
    )


@dataclass
class FeatureBinning:
    """One feature's bins and their weight of evidence."""

    name: str
    kind: str  # "numeric" | "categorical"
    woe: list[float]  # one per regular bin
    splits: list[float] = field(default_factory=list)  # numeric: len(woe) - 1 cut points
    groups: list[list[str]] = field(default_factory=list)  # categorical: one group per bin
    missing_woe: float = 0.0
    unknown_woe: float = 0.0
    n_event: list[int] = field(default_factory=list)  # per regular bin
    n_nonevent: list[int] = field(default_factory=list)
    iv: float = 0.0
    monotone: int = 0
    adjusted: bool = False  # True when the WoE order was repaired to the required direction

    def bin_index(self, values: np.ndarray) -> np.ndarray:
        """Regular bin of each value; ``len(woe)`` for missing, ``len(woe) + 1`` for unknown."""
        k = len(self.woe)
        if self.kind == "numeric":
            x = np.asarray(values, dtype=np.float64)
            out = np.searchsorted(np.asarray(self.splits, dtype=np.float64), x, side="right")
            return np.where(np.isnan(x), k, out).astype(np.int64)
        lookup = {c: i for i, g in enumerate(self.groups) for c in g}
        vals = np.asarray(values, dtype=object)
        return np.array(
            [k if v is None else lookup.get(str(v), k + 1) for v in vals], dtype=np.int64
        )

    def woe_table(self) -> np.ndarray:
        """WoE by bin index (regular bins, missing, unknown)."""
        return np.asarray([*self.woe, self.missing_woe, self.unknown_woe], dtype=np.float64)

    def transform(self, values: np.ndarray) -> np.ndarray:
        return self.woe_table()[self.bin_index(values)]

    def labels(self) -> list[str]:
        """Human-readable bin labels (for reports and reason texts)."""
        if self.kind == "categorical":
            return [",".join(g) for g in self.groups]
        edges = [-math.inf, *self.splits, math.inf]
        return [f"[{edges[i]:g}, {edges[i + 1]:g})" for i in range(len(self.woe))]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "woe": self.woe,
            "missing_woe": self.missing_woe,
            "unknown_woe": self.unknown_woe,
            "n_event": self.n_event,
            "n_nonevent": self.n_nonevent,
            "iv": self.iv,
            "monotone": self.monotone,
            "adjusted": self.adjusted,
        }
        if self.kind == "numeric":
            out["splits"] = self.splits
        else:
            out["groups"] = self.groups
        return out

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> FeatureBinning:
        try:
            kind = payload["kind"]
            woe = [_finite(v, "woe") for v in payload["woe"]]
            fb = cls(
                name=str(payload["name"]),
                kind=kind,
                woe=woe,
                splits=[_finite(v, "splits") for v in payload.get("splits", [])],
                groups=[[str(c) for c in g] for g in payload.get("groups", [])],
                missing_woe=_finite(payload.get("missing_woe", 0.0), "missing_woe"),
                unknown_woe=_finite(payload.get("unknown_woe", 0.0), "unknown_woe"),
                n_event=[int(v) for v in payload.get("n_event", [])],
                n_nonevent=[int(v) for v in payload.get("n_nonevent", [])],
                iv=_finite(payload.get("iv", 0.0), "iv"),
                monotone=int(payload.get("monotone", 0)),
                adjusted=bool(payload.get("adjusted", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BinningError(f"malformed binning payload: {exc!r}") from exc
        if kind not in ("numeric", "categorical") or not woe:
            raise BinningError(f"{fb.name}: kind must be numeric/categorical with >= 1 bin")
        if kind == "numeric":
            if len(fb.splits) != len(woe) - 1 or np.any(np.diff(fb.splits) <= 0):
                raise BinningError(f"{fb.name}: need len(woe) - 1 strictly increasing splits")
        elif len(fb.groups) != len(woe):
            raise BinningError(f"{fb.name}: need one category group per WoE value")
        return fb


@dataclass
class WoEBinning:
    """The fitted bins of every feature, in spec order."""

    features: dict[str, FeatureBinning]

    def columns(self, frame: pl.DataFrame, names: list[str] | None = None) -> dict[str, Any]:
        """Raw columns for binning: floats (NaN for null) or strings (None for null)."""
        import polars as pl

        frame = as_polars(frame)
        out: dict[str, Any] = {}
        for name in names or list(self.features):
            if name not in frame.columns:
                raise CreditFeatureError(f"frame lacks feature column {name!r}")
            s = frame.get_column(name)
            if self.features[name].kind == "numeric":
                out[name] = s.cast(pl.Float64).fill_nan(None).to_numpy().astype(np.float64)
            else:
                out[name] = np.asarray(s.cast(pl.Utf8).to_list(), dtype=object)
        return out

    def bin_indices(self, frame: pl.DataFrame, names: list[str]) -> np.ndarray:
        cols = self.columns(frame, names)
        return np.column_stack([self.features[n].bin_index(cols[n]) for n in names])

    def transform(self, frame: pl.DataFrame, names: list[str] | None = None) -> np.ndarray:
        """WoE matrix (rows × ``names``, default every feature)."""
        names = names or list(self.features)
        cols = self.columns(frame, names)
        return np.column_stack([self.features[n].transform(cols[n]) for n in names])

    def iv(self) -> dict[str, float]:
        return {n: fb.iv for n, fb in self.features.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "features": [fb.to_json() for fb in self.features.values()],
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> WoEBinning:
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise BinningError(f"not a {FORMAT} payload")
        if payload.get("version") != FORMAT_VERSION:
            raise BinningError(f"unsupported binning version {payload.get('version')!r}")
        feats = [FeatureBinning.from_json(p) for p in payload.get("features", [])]
        return cls({fb.name: fb for fb in feats})


def _finite(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise BinningError(f"{what} must be a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise BinningError(f"{what} must be finite, got {value!r}")
    return out


def _trend(feature: CreditFeature, config: BinningConfig) -> str:
    if feature.monotone > 0:
        return "ascending"  # default rate rises with the feature
    if feature.monotone < 0:
        return "descending"
    return config.free_trend


def _woe(n_event: np.ndarray, n_nonevent: np.ndarray, t_event: int, t_nonevent: int) -> np.ndarray:
    """optbinning's WoE (``transform_event_rate_to_woe``); 0 for a bin lacking a class."""
    out = np.zeros(len(n_event))
    ok = (n_event > 0) & (n_nonevent > 0)
    rate = n_event[ok] / (n_event[ok] + n_nonevent[ok])
    out[ok] = np.log((1.0 / rate - 1) * t_event / t_nonevent)
    return out


def _repair(woe: np.ndarray, monotone: int) -> tuple[np.ndarray, bool]:
    """Force the required order (rising PD = falling WoE) by running max/min; a safety net —
    optbinning's monotone trend normally already gives it."""
    if monotone == 0 or len(woe) < 2:
        return woe, False
    fixed = np.minimum.accumulate(woe) if monotone > 0 else np.maximum.accumulate(woe)
    return fixed, bool(np.any(fixed != woe))


def fit_binning(
    frame: pl.DataFrame,
    y: np.ndarray,
    spec: CreditFeatureSpec,
    config: BinningConfig | None = None,
) -> WoEBinning:
    """Fit monotone optimal bins and their WoE for every feature of ``spec``."""
    import pandas as pd
    from optbinning import BinningProcess

    config = config or BinningConfig()
    y = np.asarray(y, dtype=np.int64)
    if y.ndim != 1 or len(y) != as_polars(frame).height:
        raise BinningError(f"{len(y)} labels for {as_polars(frame).height} rows")
    t_event = int(y.sum())
    t_nonevent = len(y) - t_event
    if min(t_event, t_nonevent) < 2 * config.min_bin_events:
        raise BinningError(
            f"binning needs at least {2 * config.min_bin_events} defaults and non-defaults, "
            f"got {t_event} and {t_nonevent}"
        )
    stub = WoEBinning({f.name: FeatureBinning(f.name, f.kind, woe=[0.0]) for f in spec.features})
    cols = stub.columns(frame, spec.names)
    df = pd.DataFrame({n: cols[n] for n in spec.names})
    categorical = [f.name for f in spec.features if f.kind == "categorical"]
    params = {
        f.name: {
            "monotonic_trend": None if f.kind == "categorical" else _trend(f, config),
            "min_bin_n_event": config.min_bin_events,
            "min_bin_n_nonevent": config.min_bin_events,
        }
        for f in spec.features
    }
    bp = BinningProcess(
        spec.names,
        categorical_variables=categorical or None,
        max_n_bins=config.max_n_bins,
        min_bin_size=config.min_bin_size,
        max_n_prebins=config.max_n_prebins,
        min_prebin_size=config.min_prebin_size,
        binning_fit_params=params,
        n_jobs=1,
    )
    bp.fit(df, y)
    out: dict[str, FeatureBinning] = {}
    for f in spec.features:
        ob = bp.get_binned_variable(f.name)
        table = ob.binning_table.build()
        n_bins = len(ob.splits) + 1 if f.kind == "numeric" else len(ob.splits)
        n_event = table["Event"].to_numpy()[:n_bins].astype(np.int64)
        n_nonevent = table["Non-event"].to_numpy()[:n_bins].astype(np.int64)
        woe, adjusted = _repair(_woe(n_event, n_nonevent, t_event, t_nonevent), f.monotone)
        iv = float(ob.binning_table.iv)
        out[f.name] = FeatureBinning(
            name=f.name,
            kind=f.kind,
            woe=[float(v) for v in woe],
            splits=[float(s) for s in ob.splits] if f.kind == "numeric" else [],
            groups=[[str(c) for c in g] for g in ob.splits] if f.kind == "categorical" else [],
            n_event=[int(v) for v in n_event],
            n_nonevent=[int(v) for v in n_nonevent],
            iv=iv if math.isfinite(iv) else 0.0,
            monotone=f.monotone,
            adjusted=adjusted,
        )
    return WoEBinning(out)


__all__ = ["BinningConfig", "BinningError", "FeatureBinning", "WoEBinning", "fit_binning"]
