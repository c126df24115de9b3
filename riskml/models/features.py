"""The model's feature contract and the one conversion from a frame to model inputs.

:class:`FeatureSpec` says which columns a model reads, in which order: tabular features (one float
column each) and sequence features (one fixed-length list/array column per per-step feature, the
customer's last ``seq_len`` transactions, oldest first). The feature store produces it from its
FeatureService; training, the bundle and serving only ever read columns through it — no column
name is hard-coded in model code.

Frames may be polars or pandas. Sequence columns may be polars ``List``/``Array`` columns, or
pandas object columns holding arrays/lists. Missing values become NaN; XGBoost treats NaN as
missing, the sequence model masks NaN steps.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Columns every training frame carries besides the features (ids, time, label, money).
ID_COLUMNS: tuple[str, ...] = ("tx_id", "ts", "customer_id", "amount")
LABEL = "is_fraud"
LABEL_TIME = "label_available_at"
RESERVED: frozenset[str] = frozenset((*ID_COLUMNS, LABEL, LABEL_TIME))


class FeatureContractError(ValueError):
    """A frame or a feature spec does not match the feature contract."""


class FeatureSpec(BaseModel):
    """Feature names, order and shapes a model is trained on (the FeatureService contract)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    feature_service: str = Field(
        default="fraud_model", min_length=1, description="Feast FeatureService name."
    )
    tabular: tuple[str, ...] = Field(description="Tabular feature columns, in model order.")
    sequence: tuple[str, ...] = Field(
        default=(), description="Per-step sequence feature columns (each a list column)."
    )
    seq_len: int = Field(default=16, ge=1, le=1024, description="Steps per sequence column.")
    dtypes: dict[str, str] = Field(
        default_factory=dict,
        description="Source dtype of each feature as the feature store declares it (informative).",
    )

    @model_validator(mode="after")
    def _check(self) -> FeatureSpec:
        names = [*self.tabular, *self.sequence]
        if not self.tabular and not self.sequence:
            raise ValueError("a FeatureSpec needs at least one tabular or sequence feature")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate feature names: {dup}")
        reserved = sorted(set(names) & RESERVED)
        if reserved:
            raise ValueError(f"feature names clash with id/label columns: {reserved}")
        unknown = sorted(set(self.dtypes) - set(names))
        if unknown:
            raise ValueError(f"dtypes given for unknown features: {unknown}")
        return self

    @property
    def has_sequence(self) -> bool:
        return bool(self.sequence)

    def model_dtypes(self) -> dict[str, str]:
        """The dtype each feature has as a model input."""
        out = {n: "float32" for n in self.tabular}
        out.update({n: f"float32[{self.seq_len}]" for n in self.sequence})
        return out

    def contract(self) -> dict[str, Any]:
        """The JSON written into a model bundle (names, order, dtypes)."""
        return {
            "feature_service": self.feature_service,
            "tabular": list(self.tabular),
            "sequence": list(self.sequence),
            "seq_len": self.seq_len,
            "model_dtypes": self.model_dtypes(),
            "source_dtypes": dict(self.dtypes),
        }

    @classmethod
    def from_contract(cls, payload: dict[str, Any]) -> FeatureSpec:
        return cls(
            feature_service=payload["feature_service"],
            tabular=tuple(payload["tabular"]),
            sequence=tuple(payload["sequence"]),
            seq_len=payload["seq_len"],
            dtypes=payload.get("source_dtypes", {}),
        )

    @classmethod
    def infer(cls, frame: Any, *, feature_service: str = "fraud_model") -> FeatureSpec:
        """Guess a spec from a frame: numeric columns are tabular, list columns are sequences.

        Meant for ad-hoc training files; the feature store's FeatureService is the real source.
        """
        cols = _columns(frame)
        tabular: list[str] = []
        sequence: list[str] = []
        lengths: set[int] = set()
        for name in cols:
            if name in RESERVED:
                continue
            kind, length = _column_kind(frame, name)
            if kind == "numeric":
                tabular.append(name)
            elif kind == "list" and length is not None:
                sequence.append(name)
                lengths.add(length)
        if len(lengths) > 1:
            raise FeatureContractError(f"sequence columns have different lengths: {lengths}")
        return cls(
            feature_service=feature_service,
            tabular=tuple(tabular),
            sequence=tuple(sequence),
            seq_len=lengths.pop() if lengths else 16,
        )

    # -- frame -> arrays -----------------------------------------------------------------
    def check_frame(self, frame: Any, *, need_label: bool = False) -> None:
        """Raise :class:`FeatureContractError` naming every feature column the frame lacks."""
        cols = set(_columns(frame))
        missing = [n for n in (*self.tabular, *self.sequence) if n not in cols]
        if need_label:
            missing += [n for n in (LABEL,) if n not in cols]
        if missing:
            raise FeatureContractError(
                f"frame lacks columns required by feature service "
                f"{self.feature_service!r}: {missing}"
            )

    def tabular_matrix(self, frame: Any) -> np.ndarray:
        """``(n, len(tabular))`` float32, columns in spec order."""
        self.check_frame(frame)
        n = _height(frame)
        if not self.tabular:
            return np.zeros((n, 0), dtype=np.float32)
        out = np.empty((n, len(self.tabular)), dtype=np.float32)
        for j, name in enumerate(self.tabular):
            try:
                out[:, j] = _numeric(frame, name)
            except (TypeError, ValueError) as exc:
                raise FeatureContractError(f"feature {name!r} is not numeric: {exc}") from exc
        return out

    def sequence_tensor(self, frame: Any) -> np.ndarray:
        """``(n, seq_len, len(sequence))`` float32; NaN where a step is missing."""
        self.check_frame(frame)
        n = _height(frame)
        out = np.empty((n, self.seq_len, len(self.sequence)), dtype=np.float32)
        for j, name in enumerate(self.sequence):
            out[:, :, j] = _list_matrix(frame, name, self.seq_len)
        return out


@dataclass
class ModelInputs:
    """Arrays a model trains or scores on, extracted once from a frame."""

    tabular: np.ndarray  # (n, T) float32
    sequence: np.ndarray | None  # (n, L, F) float32 or None
    y: np.ndarray | None  # (n,) int8 labels as of ``label_as_of`` (or None when unlabeled)
    amount: np.ndarray | None
    customer_id: np.ndarray | None
    ts: np.ndarray | None  # datetime64[us]

    def __len__(self) -> int:
        return int(self.tabular.shape[0])

    def take(self, idx: np.ndarray | slice) -> ModelInputs:
        def t(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[idx]

        return ModelInputs(
            tabular=self.tabular[idx],
            sequence=t(self.sequence),
            y=t(self.y),
            amount=t(self.amount),
            customer_id=t(self.customer_id),
            ts=t(self.ts),
        )


def extract_inputs(
    frame: Any, spec: FeatureSpec, *, label_as_of: dt.datetime | None = None
) -> ModelInputs:
    """Turn a frame into :class:`ModelInputs` through ``spec``.

    Labels honour label delay: with ``label_as_of`` a row counts as fraud only when
    ``is_fraud == 1`` and ``label_available_at <= label_as_of`` (see README, "Labels arrive
    late"). Without it the ground-truth ``is_fraud`` is used (evaluation).
    """
    cols = set(_columns(frame))
    y = None
    if LABEL in cols:
        y = _numeric(frame, LABEL).astype(np.int8)
        if not np.isin(y, (0, 1)).all():
            raise FeatureContractError(f"{LABEL} must be 0 or 1")
        if label_as_of is not None:
            if LABEL_TIME not in cols:
                raise FeatureContractError(f"label_as_of needs a {LABEL_TIME} column")
            known = _datetimes(frame, LABEL_TIME) <= np.datetime64(_naive_utc(label_as_of), "us")
            y = (y.astype(bool) & known).astype(np.int8)
    return ModelInputs(
        tabular=spec.tabular_matrix(frame),
        sequence=spec.sequence_tensor(frame) if spec.has_sequence else None,
        y=y,
        amount=_numeric(frame, "amount").astype(np.float64) if "amount" in cols else None,
        customer_id=_strings(frame, "customer_id") if "customer_id" in cols else None,
        ts=_datetimes(frame, "ts") if "ts" in cols else None,
    )


# -- frame helpers (polars or pandas, imported lazily) ------------------------------------
def _is_polars(frame: Any) -> bool:
    return type(frame).__module__.split(".")[0] == "polars"


def _columns(frame: Any) -> list[str]:
    if _is_polars(frame) or hasattr(frame, "columns"):
        return [str(c) for c in frame.columns]
    raise FeatureContractError(f"expected a polars or pandas DataFrame, got {type(frame)!r}")


def _height(frame: Any) -> int:
    return int(frame.height) if _is_polars(frame) else len(frame)


def _numeric(frame: Any, name: str) -> np.ndarray:
    col = frame[name]
    if _is_polars(frame):
        import polars as pl

        if not (col.dtype.is_numeric() or col.dtype == pl.Boolean):
            raise TypeError(f"dtype {col.dtype}")
        return col.cast(pl.Float64).to_numpy()
    arr = np.asarray(col.to_numpy(dtype="float64", na_value=np.nan))
    return arr


def _strings(frame: Any, name: str) -> np.ndarray:
    col = frame[name]
    if _is_polars(frame):
        return np.asarray(col.cast(str).to_numpy(), dtype=object)
    return np.asarray(col.astype(str).to_numpy(), dtype=object)


def _naive_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _datetimes(frame: Any, name: str) -> np.ndarray:
    """UTC instants as naive ``datetime64[us]``."""
    col = frame[name]
    if _is_polars(frame):
        import polars as pl

        if isinstance(col.dtype, pl.Datetime) and col.dtype.time_zone is not None:
            col = col.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        return col.cast(pl.Datetime("us")).to_numpy().astype("datetime64[us]")
    import pandas as pd

    series = pd.to_datetime(col, utc=True).dt.tz_convert("UTC").dt.tz_localize(None)
    return series.to_numpy().astype("datetime64[us]")


def _column_kind(frame: Any, name: str) -> tuple[str, int | None]:
    col = frame[name]
    if _is_polars(frame):
        import polars as pl

        if isinstance(col.dtype, pl.Array):
            return "list", int(col.dtype.size)
        if isinstance(col.dtype, pl.List):
            lengths = col.list.len().unique().drop_nulls()
            return "list", int(lengths[0]) if len(lengths) == 1 else None
        return ("numeric", None) if col.dtype.is_numeric() else ("other", None)
    import pandas as pd

    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        return "numeric", None
    if col.dtype == object and len(col) and isinstance(col.iloc[0], list | tuple | np.ndarray):
        lengths = {len(v) for v in col.iloc[: min(len(col), 1000)]}
        return "list", lengths.pop() if len(lengths) == 1 else None
    return "other", None


def _list_matrix(frame: Any, name: str, length: int) -> np.ndarray:
    col = frame[name]
    if _is_polars(frame):
        import polars as pl

        if isinstance(col.dtype, pl.List):
            lengths = col.list.len()
            bad = int(((lengths != length) & lengths.is_not_null()).sum())
            if bad:
                raise FeatureContractError(
                    f"sequence column {name!r}: {bad} rows do not have {length} steps"
                )
            col = col.list.to_array(length)
        elif not isinstance(col.dtype, pl.Array):
            raise FeatureContractError(f"sequence column {name!r} is {col.dtype}, not a list")
        elif col.dtype.size != length:
            raise FeatureContractError(
                f"sequence column {name!r} has {col.dtype.size} steps, expected {length}"
            )
        arr = col.cast(pl.Array(pl.Float64, length)).to_numpy()
        return np.asarray(arr, dtype=np.float64).reshape(-1, length)
    values = col.to_numpy()
    try:
        arr = np.stack([np.asarray(v, dtype=np.float64) for v in values])
    except ValueError as exc:
        raise FeatureContractError(f"sequence column {name!r}: ragged rows ({exc})") from exc
    if arr.ndim != 2 or arr.shape[1] != length:
        raise FeatureContractError(
            f"sequence column {name!r} has shape {arr.shape}, expected (n, {length})"
        )
    return arr
