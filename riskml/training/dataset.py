"""Point-in-time training sets from the feature store, as directories the pipeline passes on.

A training-set directory holds ``data.parquet`` (ids, ``ts``, labels, the ``fraud_v1`` features,
the sequence as one list column per field ``seq_<field>``) and ``feature_spec.json`` (the model's
:class:`~riskml.models.features.FeatureSpec`). The kfp ``training-sets`` task writes two of them
(train, and the later test window); the training tasks and the holdout evaluation read them.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

DATA_FILE = "data.parquet"
SPEC_FILE = "feature_spec.json"
SEQ_PREFIX = "seq_"


class TrainingSetError(ValueError):
    """A training set cannot be built or read; the message says why."""


def model_feature_spec(service: str | None = None) -> Any:
    """The model's FeatureSpec for a FeatureService version (default the current one): its
    feature contract plus the behavioural sequence, one ``seq_<field>`` column per field."""
    from riskml.features.definitions import FEATURE_SERVICE, SEQ_FIELDS, SEQ_LEN, feature_contract
    from riskml.models.features import FeatureSpec

    service = service or FEATURE_SERVICE
    contract = feature_contract(service)
    return FeatureSpec(
        feature_service=service,
        tabular=tuple(name for name, _ in contract),
        sequence=tuple(f"{SEQ_PREFIX}{f}" for f in SEQ_FIELDS),
        seq_len=SEQ_LEN,
        dtypes=dict(contract),
    )


def to_model_frame(frame: Any) -> Any:
    """The store's flattened ``cust_seq`` -> one ``seq_<field>`` list column per field."""
    import numpy as np
    import polars as pl

    from riskml.features.definitions import SEQ_FIELDS, SEQ_LEN, SEQUENCE_FEATURE

    if SEQUENCE_FEATURE not in frame.columns:
        raise TrainingSetError(f"training set has no {SEQUENCE_FEATURE!r} column")
    flat = np.asarray(frame[SEQUENCE_FEATURE].to_numpy(), dtype=np.float32)
    seq = flat.reshape(frame.height, SEQ_LEN, len(SEQ_FIELDS))
    cols = [
        pl.Series(f"{SEQ_PREFIX}{name}", np.ascontiguousarray(seq[:, :, j])).cast(
            pl.List(pl.Float32)
        )
        for j, name in enumerate(SEQ_FIELDS)
    ]
    return frame.drop(SEQUENCE_FEATURE).with_columns(cols)


def make_training_sets(
    features_dir: Path, dataset: Path, train_out: Path, test_out: Path, *, test_days: int = 7
) -> dict[str, Any]:
    """Point-in-time training and test sets from the feature store (FeatureService
    ``fraud_v1``): training = everything before the last ``test_days`` days, test = those days."""
    from riskml.console import write_json
    from riskml.data.io import scan_transactions
    from riskml.features import store

    if test_days < 1:
        raise TrainingSetError("test_days must be >= 1")
    config = store.store_config(features_dir)
    ts_max = scan_transactions(Path(dataset)).select("ts").max().collect().item()
    if ts_max is None:
        raise TrainingSetError(f"dataset {dataset} is empty")
    cutoff = dt.datetime.combine(ts_max.date(), dt.time(), dt.UTC) - dt.timedelta(
        days=test_days - 1
    )
    spec = model_feature_spec()
    out: dict[str, Any] = {"cutoff": cutoff.isoformat(), "feature_service": spec.feature_service}
    fs = store.get_store(config)
    for name, target, start, end in (
        ("train", train_out, None, cutoff),
        ("test", test_out, cutoff, None),
    ):
        frame = to_model_frame(
            store.training_set(
                start, end, dataset=Path(dataset), config=config, sequences=True, store=fs
            )
        )
        target = Path(target)
        target.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(target / DATA_FILE, compression="zstd")
        write_json(target / SPEC_FILE, spec.model_dump(mode="json"))
        out[f"{name}_rows"] = frame.height
        out[f"{name}_frauds"] = int(frame["is_fraud"].sum())
    return out


def read_training_set(path: Path) -> tuple[Any, Any]:
    """``(polars frame, FeatureSpec)`` of a training-set directory."""
    import polars as pl

    from riskml.models.features import FeatureSpec

    path = Path(path)
    if not (path / DATA_FILE).is_file() or not (path / SPEC_FILE).is_file():
        raise TrainingSetError(f"{path} is not a training set ({DATA_FILE} + {SPEC_FILE})")
    spec = FeatureSpec.model_validate(json.loads((path / SPEC_FILE).read_text()))
    return pl.read_parquet(path / DATA_FILE), spec
