"""The demo's replay step: held-back transactions become API requests in time order, and the
outcome table counts fraud caught and good customers stopped from the answers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from serving.demo import held_back, outcome_table
from serving.schemas import TransactionRequest


def _test_set(path: Path) -> Path:
    t0 = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    rows = [
        {
            "tx_id": f"t{i}",
            "ts": t0 + dt.timedelta(minutes=10 - i),  # written newest first
            "customer_id": f"c{i % 2}",
            "terminal_id": "m1",
            "device_id": "d1",
            "amount": 10.0 + i,
            "merchant_category": "grocery",
            "channel": "pos",
            "is_fraud": int(i in (1, 3)),
            "cust_cnt_1h": 0,
        }
        for i in range(5)
    ]
    path.mkdir(parents=True)
    pl.DataFrame(rows).write_parquet(path / "data.parquet")
    return path


def test_held_back_requests_are_valid_and_in_time_order(tmp_path: Path) -> None:
    requests, labels = held_back(_test_set(tmp_path / "test"), limit=4)
    assert [r["tx_id"] for r in requests] == ["t4", "t3", "t2", "t1"]
    assert labels == {"t4": 0, "t3": 1, "t2": 0, "t1": 1}
    for r in requests:
        TransactionRequest.model_validate(r)  # exactly the API's fields, valid
        assert "is_fraud" not in r and "cust_cnt_1h" not in r


def test_held_back_refuses_an_empty_window(tmp_path: Path) -> None:
    path = _test_set(tmp_path / "test")
    pl.read_parquet(path / "data.parquet").head(0).write_parquet(path / "data.parquet")
    with pytest.raises(ValueError, match="no held-back transactions"):
        held_back(path, limit=None)


def test_outcome_table_counts_fraud_caught_and_good_customers_stopped() -> None:
    labels = {"a": 1, "b": 1, "c": 1, "d": 0, "e": 0, "f": 0, "g": 0}
    decided = {"a": "decline", "b": "review", "c": "approve", "d": "decline", "e": "approve"}
    responses = [{"body": {"tx_id": t, "decision": d}} for t, d in decided.items()]
    responses += [{"status": "503"}, {"body": {"tx_id": "g", "decision": "approve"}}]
    out = outcome_table(responses, labels)
    assert out["decisions"] == {"approve": 3, "review": 1, "decline": 2}
    assert (out["fraud"], out["fraud_declined"], out["fraud_reviewed"]) == (3, 1, 1)
    assert out["fraud_caught_share"] == pytest.approx(2 / 3)
    assert out["good_declined_or_reviewed_share"] == pytest.approx(1 / 3)
    assert outcome_table([], labels)["fraud_caught_share"] is None
