"""FeatureSpec: validation, inference, polars/pandas parity, label delay, clear errors."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from riskml.models.features import FeatureContractError, FeatureSpec, extract_inputs


def test_spec_rejects_bad_definitions() -> None:
    with pytest.raises(ValidationError, match="duplicate"):
        FeatureSpec(tabular=("a", "a"))
    with pytest.raises(ValidationError, match="clash"):
        FeatureSpec(tabular=("amount",))
    with pytest.raises(ValidationError, match="at least one"):
        FeatureSpec(tabular=())
    with pytest.raises(ValidationError, match="extra"):
        FeatureSpec.model_validate({"tabular": ["a"], "colour": "red"})
    with pytest.raises(ValidationError, match="unknown features"):
        FeatureSpec(tabular=("a",), dtypes={"b": "float"})


def test_infer_and_contract_round_trip(frame: Any, spec: FeatureSpec) -> None:
    inferred = FeatureSpec.infer(frame, feature_service=spec.feature_service)
    assert inferred == spec
    assert FeatureSpec.from_contract(spec.contract()) == spec
    assert spec.contract()["model_dtypes"]["seq_gap"] == "float32[8]"


def test_polars_and_pandas_give_identical_inputs(frame: Any, spec: FeatureSpec) -> None:
    a = extract_inputs(frame, spec)
    b = extract_inputs(frame.to_pandas(), spec)
    assert a.tabular.dtype == np.float32 and a.tabular.shape == (6000, 6)
    assert a.sequence is not None and a.sequence.shape == (6000, 8, 3)
    assert np.array_equal(a.tabular, b.tabular)
    assert b.sequence is not None and np.array_equal(a.sequence, b.sequence, equal_nan=True)
    assert np.isnan(a.sequence).any()  # short histories are padded with NaN
    assert a.y is not None and b.y is not None and np.array_equal(a.y, b.y)
    assert a.ts is not None and b.ts is not None and np.array_equal(a.ts, b.ts)


def test_list_columns_work_like_array_columns(frame: Any, spec: FeatureSpec) -> None:
    as_list = frame.with_columns(pl.col(n).arr.to_list() for n in spec.sequence)
    assert isinstance(as_list.schema["seq_gap"], pl.List)
    assert np.array_equal(
        spec.sequence_tensor(as_list), spec.sequence_tensor(frame), equal_nan=True
    )
    ragged = as_list.with_columns(
        pl.when(pl.int_range(pl.len()) == 5)
        .then(pl.col("seq_gap").list.head(3))
        .otherwise(pl.col("seq_gap"))
        .alias("seq_gap")
    )
    with pytest.raises(FeatureContractError, match="1 rows do not have 8 steps"):
        spec.sequence_tensor(ragged)


def test_missing_and_mistyped_columns_are_named(frame: Any, spec: FeatureSpec) -> None:
    with pytest.raises(FeatureContractError, match=r"\['f02', 'seq_hour'\]"):
        spec.tabular_matrix(frame.drop("f02", "seq_hour"))
    with pytest.raises(FeatureContractError, match="'f01' is not numeric"):
        spec.tabular_matrix(frame.with_columns(pl.col("f01").cast(pl.String)))
    wrong_len = FeatureSpec(tabular=spec.tabular, sequence=spec.sequence, seq_len=16)
    with pytest.raises(FeatureContractError, match="expected 16"):
        wrong_len.sequence_tensor(frame)


def test_label_as_of_hides_labels_that_arrive_later(frame: Any, spec: FeatureSpec) -> None:
    truth = extract_inputs(frame, spec)
    cutoff = dt.datetime(2025, 1, 10, tzinfo=dt.UTC)
    delayed = extract_inputs(frame, spec, label_as_of=cutoff)
    assert truth.y is not None and delayed.y is not None
    known = frame["label_available_at"].to_numpy() <= np.datetime64("2025-01-10T00:00:00")
    assert np.array_equal(delayed.y, (truth.y.astype(bool) & known).astype(np.int8))
    assert delayed.y.sum() < truth.y.sum()  # some frauds were not yet reported
    with pytest.raises(FeatureContractError, match="label_available_at"):
        extract_inputs(frame.drop("label_available_at"), spec, label_as_of=cutoff)
