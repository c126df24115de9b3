"""Time in the history fold: a far-future transaction is refused (it used to push a customer's
retention window past every other transaction: history cut to 16 entries, 1-day and 30-day
counts capped for good), and a transaction older than the retention is ``late``, not a
``duplicate``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import numpy as np

from riskml.features.online import FUTURE, OnlineFeatures, ts_to_us
from riskml.features.realtime import APPLIED, DUPLICATE, LATE, fold_transaction
from riskml.features.store import StoreConfig

from .conftest import REPLAY_DAY

US = 1_000_000


def _busy_customer(online: OnlineFeatures, customers: list[str]) -> tuple[str, Any]:
    """A customer whose history holds more than 16 transactions."""
    states = online.histories(customers)
    customer = max(states, key=lambda c: len(states[c][0]))
    assert len(states[customer][0]) > 20
    return customer, states[customer][0]


def _tx(customer: str, tx_id: str, ts: dt.datetime) -> dict[str, Any]:
    return {"tx_id": tx_id, "ts": ts, "customer_id": customer, "terminal_id": "T0000001",
            "device_id": "d", "amount": 12.5, "merchant_category": "grocery", "channel": "pos",
            "terminal_risk": 0.0}  # fmt: skip


def test_far_future_transaction_is_refused_and_the_history_stays_whole(
    make_store: Callable[..., StoreConfig], features_dir: Any
) -> None:
    import polars as pl

    online = OnlineFeatures(make_store("sqlite"))
    customers = pl.read_parquet(features_dir / "customer_history.parquet")["customer_id"].to_list()
    customer, before = _busy_customer(online, customers[:50])
    newest = int(before["hist_ts"].max())
    now = dt.datetime.now(dt.UTC)
    far = _tx(customer, "far-future", now + dt.timedelta(days=400))
    assert online.fold_many([far]) == [FUTURE]
    after, _version = online.history(customer)
    assert after["hist_tx_id"].tolist() == before["hist_tx_id"].tolist()
    # the next ordinary transaction folds on top of the whole history
    nxt = _tx(customer, "next", dt.datetime.fromtimestamp(newest / US + 60, tz=dt.UTC))
    assert online.fold_many([nxt]) == [APPLIED]
    state, _ = online.history(customer)
    assert len(state) == len(before) + 1
    # within the allowed skew (and judged against the caller's clock) it folds
    soon = _tx(customer, "soon", dt.datetime.fromtimestamp(newest / US + 120, tz=dt.UTC))
    clock = ts_to_us(soon["ts"]) - 200 * US  # 200 s behind: inside the default 300 s
    assert online.fold_many([soon], now_us=clock) == [APPLIED]
    # what the refusal prevents: folded, the far-future one would trim the rest to 16
    trimmed, outcome = fold_transaction(
        state, {**far, "ts_us": ts_to_us(far["ts"]), "terminal_id": "T0000001"}
    )
    assert outcome == APPLIED and len(trimmed) == 16


def test_transaction_older_than_retention_is_late_not_duplicate(
    make_store: Callable[..., StoreConfig], features_dir: Any
) -> None:
    import polars as pl

    online = OnlineFeatures(make_store("sqlite"))
    customers = pl.read_parquet(features_dir / "customer_history.parquet")["customer_id"].to_list()
    customer, state = _busy_customer(online, customers[:50])
    oldest = int(state["hist_ts"].min())
    old = _tx(customer, "ancient", dt.datetime.fromtimestamp(oldest / US - 86_400 * 40, tz=dt.UTC))
    existing = _tx(customer, str(state["hist_tx_id"][-1]), REPLAY_DAY)
    assert online.fold_many([old, existing]) == [LATE, DUPLICATE]
    assert online.write_back_many([old, existing]) == [False, False]
    # out of order but inside the retention: folded
    inside = _tx(customer, "inside", dt.datetime.fromtimestamp(oldest / US + 1, tz=dt.UTC))
    assert online.fold_many([inside]) == [APPLIED]


def test_fold_outcomes_without_a_store() -> None:
    from riskml.features.realtime import State

    base = int(REPLAY_DAY.timestamp()) * US
    state = State.empty()
    rows = [
        {"tx_id": f"t{i}", "ts_us": base + i * 3600 * US, "amount": 1.0, "terminal_id": "m",
         "device_id": "d", "merchant_category": "c", "channel": "pos", "terminal_risk": 0.0}
        for i in range(40)
    ]  # fmt: skip
    outcomes = []
    for row in rows[::-1]:  # newest first: every older one still inside the 30 days
        state, outcome = fold_transaction(state, row)
        outcomes.append(outcome)
    assert set(outcomes) == {APPLIED} and len(state) == 40
    assert fold_transaction(state, rows[3])[1] == DUPLICATE
    old = {**rows[0], "tx_id": "old", "ts_us": base - 31 * 86_400 * US}
    new_state, outcome = fold_transaction(state, old)
    assert outcome == LATE and new_state is state
    assert np.all(np.diff(state["hist_ts"]) >= 0)


def test_serving_write_back_counts_tell_late_and_future_from_duplicates(
    make_store: Callable[..., StoreConfig], features_dir: Any
) -> None:
    import polars as pl

    from serving.bundle import FeastFeatureSource
    from serving.inprocess import write_back_counts

    cfg = make_store("sqlite")
    source = FeastFeatureSource({"home": cfg.home, "features_dir": cfg.features_dir,
                                 "online_store": "sqlite", "project": cfg.project})  # fmt: skip
    customers = pl.read_parquet(features_dir / "customer_history.parquet")["customer_id"].to_list()
    customer, state = _busy_customer(source.online, customers[:50])
    oldest = int(state["hist_ts"].min()) / US
    txs = [
        _tx(customer, "new", REPLAY_DAY),
        _tx(customer, str(state["hist_tx_id"][-1]), REPLAY_DAY),
        _tx(customer, "ancient", dt.datetime.fromtimestamp(oldest - 86_400 * 40, tz=dt.UTC)),
        _tx(customer, "far", dt.datetime.now(dt.UTC) + dt.timedelta(days=30)),
    ]
    assert write_back_counts(source, txs) == {
        "applied": 1, "duplicate": 1, "late": 1, "future": 1, "error": 0
    }  # fmt: skip
