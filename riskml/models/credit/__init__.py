"""Credit probability-of-default models: the feature contract they share.

:class:`CreditFeatureSpec` names the loan columns a PD model reads, their kind (numeric or
categorical, with the known categories) and, where risk must be monotone, the direction in which
the probability of default moves as the feature grows (``+1`` rises, ``-1`` falls, ``0`` free).
The scorecard (:mod:`.scorecard`) bins with these directions, the GBDT (:mod:`.gbdt`) passes them
to XGBoost as ``monotone_constraints``, and :class:`~riskml.models.credit.pd.PDModel` writes the
spec into its files, so training and serving read the same columns in the same order.

Columns prefixed ``sim_`` (simulator ground truth), the label and the outcome columns are never
features; :class:`CreditFeatureSpec` refuses them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from riskml.data.credit.schema import CATEGORIES, LOAN_COLUMNS, MONOTONE_RISK, PROMOTIONS

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

LABEL = "default_12m"
#: Loan columns that are outcomes or bookkeeping, never model inputs.
NON_FEATURES: frozenset[str] = frozenset(
    {
        "loan_id",
        "customer_id",
        "application_ts",
        "vintage",
        LABEL,
        "default_mob",
        "prepaid_mob",
        "label_mature_at",
    }
)


_SCHEMA_DTYPES: dict[str, str] = {c.name: c.dtype for c in LOAN_COLUMNS}


class CreditFeatureError(ValueError):
    """A frame or a spec does not match the credit feature contract."""


class CreditFeature(BaseModel):
    """One model input: its column, kind and required direction of risk."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    kind: Literal["numeric", "categorical"] = "numeric"
    monotone: Literal[-1, 0, 1] = Field(
        default=0,
        description="+1: PD must not fall as the feature grows; -1: must not rise; 0: free.",
    )
    categories: tuple[str, ...] = Field(
        default=(), description="Known values of a categorical feature (others are unknown)."
    )
    dtype: str | None = Field(
        default=None,
        description="Source column dtype (a polars name, as the loans schema declares it); "
        "default: the schema's dtype for a loan column, else Float64 / String by kind.",
    )

    @model_validator(mode="after")
    def _check(self) -> CreditFeature:
        if self.dtype is None:
            fallback = "String" if self.kind == "categorical" else "Float64"
            object.__setattr__(self, "dtype", _SCHEMA_DTYPES.get(self.name, fallback))
        if self.kind == "categorical":
            if self.monotone != 0:
                raise ValueError(f"{self.name}: a categorical feature has no monotone direction")
            if not self.categories or len(set(self.categories)) != len(self.categories):
                raise ValueError(f"{self.name}: categories must be non-empty and distinct")
        elif self.categories:
            raise ValueError(f"{self.name}: only categorical features list categories")
        return self


#: Where risk must be monotone (adverse-action consistency): the data contract's directions
#: (:data:`riskml.data.credit.schema.MONOTONE_RISK`) plus the worst past delinquency with us.
RISK_DIRECTIONS: dict[str, int] = {**MONOTONE_RISK, "prior_max_dpd": 1}

#: The default inputs: applicant attributes, bureau and behaviour, the context and the loan's
#: terms (all known at application). Besides :data:`RISK_DIRECTIONS`, two affordability rules
#: hold by policy: more income never raises the PD, a larger monthly payment never lowers it
#: (so the PD of a larger amount at the same term is never lower: the maximum-amount rule of
#: :class:`~riskml.models.credit.pd.PDModel` relies on it).
DEFAULT_FEATURES: tuple[CreditFeature, ...] = (
    *(CreditFeature(name=n, monotone=d) for n, d in RISK_DIRECTIONS.items()),
    CreditFeature(name="income_monthly", monotone=-1),
    CreditFeature(name="monthly_payment", monotone=1),
    CreditFeature(name="employment_years"),
    CreditFeature(name="age"),
    CreditFeature(name="open_accounts"),
    CreditFeature(name="months_on_book"),
    CreditFeature(name="prior_loans"),
    CreditFeature(name="term_months"),
    CreditFeature(name="category", kind="categorical", categories=CATEGORIES),
    CreditFeature(name="promotion", kind="categorical", categories=PROMOTIONS),
)


class CreditFeatureSpec(BaseModel):
    """Feature names, order, kinds and monotone directions of a PD model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    features: tuple[CreditFeature, ...] = DEFAULT_FEATURES
    label: str = LABEL

    @model_validator(mode="after")
    def _check(self) -> CreditFeatureSpec:
        names = [f.name for f in self.features]
        if not names:
            raise ValueError("a CreditFeatureSpec needs at least one feature")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate feature names: {dup}")
        bad = sorted(n for n in names if n in NON_FEATURES or n.startswith("sim_"))
        if bad or self.label in names:
            raise ValueError(f"outcome, id or simulator columns cannot be features: {bad}")
        return self

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def monotone(self) -> dict[str, int]:
        return {f.name: int(f.monotone) for f in self.features}

    @property
    def dtypes(self) -> dict[str, str]:
        return {f.name: str(f.dtype) for f in self.features}

    def feature(self, name: str) -> CreditFeature:
        for f in self.features:
            if f.name == name:
                return f
        raise CreditFeatureError(f"unknown feature {name!r}")

    def contract(self) -> dict[str, Any]:
        """The JSON a model's files carry (names, order, kinds, dtypes, directions,
        categories)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_contract(cls, payload: dict[str, Any]) -> CreditFeatureSpec:
        return cls.model_validate(payload)

    def check_frame(self, frame: pl.DataFrame) -> None:
        """Raise :class:`CreditFeatureError` naming every feature column the frame lacks."""
        missing = [n for n in self.names if n not in frame.columns]
        if missing:
            raise CreditFeatureError(f"frame lacks feature columns {missing}")

    def numeric_matrix(self, frame: pl.DataFrame) -> np.ndarray:
        """Features as float64 columns in spec order: numbers as they are (null → NaN),
        categories as their index in ``categories`` (unknown or null → NaN)."""
        import polars as pl

        frame = as_polars(frame)
        self.check_frame(frame)
        cols: list[np.ndarray] = []
        for f in self.features:
            s = frame.get_column(f.name)
            if f.kind == "numeric":
                if not (s.dtype.is_numeric() or s.dtype == pl.Boolean or s.dtype == pl.Null):
                    raise CreditFeatureError(f"{f.name} must be numeric, got {s.dtype}")
                cols.append(s.cast(pl.Float64).fill_nan(None).to_numpy().astype(np.float64))
            else:
                codes = {c: float(i) for i, c in enumerate(f.categories)}
                values = s.cast(pl.Utf8).to_list()
                cols.append(np.array([codes.get(v, np.nan) for v in values], dtype=np.float64))
        if not cols:  # pragma: no cover - a spec has features
            return np.empty((frame.height, 0))
        return np.column_stack(cols)


def as_polars(frame: Any) -> pl.DataFrame:
    """A polars frame from polars or pandas input (CreditFeatureError otherwise)."""
    import polars as pl

    if isinstance(frame, pl.DataFrame):
        return frame
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover
        pd = None
    if pd is not None and isinstance(frame, pd.DataFrame):
        return pl.from_pandas(frame)
    raise CreditFeatureError(f"expected a polars or pandas DataFrame, got {type(frame).__name__}")


def labels(frame: pl.DataFrame, spec: CreditFeatureSpec | None = None) -> np.ndarray:
    """The 0/1 label column as int64; CreditFeatureError on nulls or other values."""
    name = (spec or CreditFeatureSpec()).label
    frame = as_polars(frame)
    if name not in frame.columns:
        raise CreditFeatureError(f"frame lacks the label column {name!r}")
    s = frame.get_column(name)
    if s.null_count():
        raise CreditFeatureError(
            f"{s.null_count()} rows have no {name} (immature labels): keep mature loans only"
        )
    y = s.to_numpy()
    if not np.isin(y, (0, 1)).all():
        raise CreditFeatureError(f"{name} must be 0 or 1")
    return y.astype(np.int64)


__all__ = [
    "CATEGORIES",
    "DEFAULT_FEATURES",
    "LABEL",
    "RISK_DIRECTIONS",
    "CreditFeature",
    "CreditFeatureError",
    "CreditFeatureSpec",
    "as_polars",
    "labels",
]
