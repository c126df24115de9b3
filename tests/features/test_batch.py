"""Batch features: point-in-time correctness, leakage, windows, snapshots, and agreement with the
request-time (online) functions. Pure polars/numpy, no Feast."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskml.data.io import write_day
from riskml.features.batch import FeatureBuildError, build_features, compute_features
from riskml.features.definitions import (
    CUSTOMER_FEATURES,
    CUSTOMER_RISK_FEATURES,
    REQUEST_FEATURES,
    SEQ_FIELDS,
    SEQ_LEN,
    category_code,
    channel_code,
    feature_contract,
    feature_groups,
)
from riskml.features.realtime import (
    State,
    apply_transaction,
    customer_features,
    request_features,
    sequence_features,
)
from riskml.features.store import training_sequences

from .helpers import T0, US, frame, random_frame

H = dt.timedelta(hours=1)
D = dt.timedelta(days=1)


def _row(df: pl.DataFrame, tx_id: str) -> dict:
    return df.filter(pl.col("tx_id") == tx_id).row(0, named=True)


def test_windows_are_strictly_before_with_exact_boundaries() -> None:
    tx = frame(
        [
            {"tx_id": "a", "ts": T0, "amount": 10.0},
            {"tx_id": "b", "ts": T0 + H, "amount": 20.0},  # exactly 1 h later: a is in [t-1h, t)
            {"tx_id": "c", "ts": T0 + H + dt.timedelta(microseconds=1), "amount": 5.0},
            {"tx_id": "d", "ts": T0 + 30 * D, "amount": 1.0},  # a is exactly 30 d before
            {"tx_id": "e", "ts": T0 + 30 * D, "amount": 2.0},  # tie with d
        ]
    )
    ctx = compute_features(tx).customer_tx
    a, b, c, d, e = (_row(ctx, k) for k in "abcde")
    assert a["cust_cnt_30d"] == 0 and a["unknown_customer"] == 1
    assert a["cust_secs_since_prev"] == -1.0 and a["cust_new_device"] == 1
    assert (b["cust_cnt_1h"], b["cust_sum_1h"], b["cust_max_1h"]) == (1, 10.0, 10.0)
    assert b["cust_secs_since_prev"] == 3600.0 and b["cust_new_device"] == 0
    # c: a fell out of the 1 h window by one microsecond, b is in; nothing of c itself
    assert (c["cust_cnt_1h"], c["cust_sum_1h"], c["cust_max_1h"]) == (1, 20.0, 20.0)
    assert c["cust_cnt_1d"] == 2 and c["cust_mean_1d"] == 15.0
    assert c["cust_secs_since_prev"] == pytest.approx(1e-6)
    # d and e: same microsecond, neither sees the other; a sits on the 30 d boundary (included)
    for row in (d, e):
        assert row["cust_cnt_30d"] == 3
        assert row["cust_sum_30d"] == 35.0
        assert row["cust_cnt_7d"] == 0
        assert row["cust_distinct_terminals_7d"] == 0
    seq = training_sequences(ctx.select("tx_id", pl.col("event_timestamp").alias("ts")), source=ctx)
    assert seq.shape == (5, SEQ_LEN, len(SEQ_FIELDS))
    d_idx = ctx["tx_id"].to_list().index("d")
    e_idx = ctx["tx_id"].to_list().index("e")
    np.testing.assert_array_equal(seq[d_idx], seq[e_idx])
    assert seq[d_idx][:, 0].sum() == 3  # mask: a, b, c only
    assert seq[d_idx][-1, 1] == pytest.approx(np.log1p(5.0))  # newest first element is c


def test_label_delay_is_honoured_by_terminal_and_device_risk() -> None:
    label_at = T0 + 4 * D + 12 * H  # fraud known on day 4 at noon
    tx = frame(
        [
            {"tx_id": "f", "ts": T0 + H, "terminal_id": "m1", "device_id": "dx",
             "is_fraud": 1, "label_available_at": label_at},
            {"tx_id": "g", "ts": T0 + 2 * H, "terminal_id": "m1", "customer_id": "c1",
             "device_id": "dx"},
            {"tx_id": "p", "ts": T0 + 4 * D + 13 * H, "terminal_id": "m1", "customer_id": "c2"},
            {"tx_id": "q", "ts": T0 + 5 * D + H, "terminal_id": "m1", "customer_id": "c3"},
            {"tx_id": "z", "ts": T0 + 40 * D, "terminal_id": "m9", "customer_id": "c9",
             "device_id": "d9"},
        ]
    )  # fmt: skip
    tables = compute_features(tx)
    term = tables.terminal_stats.filter(pl.col("terminal_id") == "m1")

    def snap(day: int) -> dict:
        rows = term.filter(pl.col("event_timestamp") <= T0 + day * D)
        return rows.sort("event_timestamp").row(-1, named=True)

    assert snap(1)["term_cnt_1d"] == 2 and snap(1)["term_fraud_known_30d"] == 0
    assert snap(4)["term_risk_30d"] == 0.0  # 00:00 of day 4: label not yet available
    assert snap(5)["term_fraud_known_30d"] == 1
    assert snap(5)["term_risk_30d"] == pytest.approx(1 / 3)  # f, g and p; f known
    ctx = tables.customer_tx
    assert _row(ctx, "p")["seq_terminal_risk"] == 0.0  # day 4, after the label time: still 0
    assert _row(ctx, "q")["seq_terminal_risk"] == pytest.approx(1 / 3)
    dev = tables.device_stats.filter(pl.col("device_id") == "dx").sort("event_timestamp")
    first = dev.row(0, named=True)
    assert first["event_timestamp"] == T0 + D
    assert (first["dev_customers_30d"], first["dev_cnt_30d"], first["dev_risk_30d"]) == (2, 2, 0.0)
    assert dev.filter(pl.col("event_timestamp") == T0 + 5 * D)["dev_risk_30d"].item() == 0.5
    # 38 days after day 0 the last window (30 days lagged by 7) is empty again: a zero row
    # closes the device's history
    last = dev.row(-1, named=True)
    assert last["event_timestamp"] == T0 + 38 * D and last["dev_customers_30d"] == 0
    assert last["dev_cnt_30d_lag7"] == 0 and last["dev_fraud_known_30d_lag7"] == 0
    # label-aware windows: the recent 7 days see f from snapshot 5 (its label) to 7 (its day
    # leaves the window); 1 day never (the label came on day 4); the 1 day lagged by 7 covers
    # day 0 at snapshot 8: f and g, f known
    assert (snap(5)["term_fraud_known_7d"], snap(5)["term_risk_7d"]) == (1, pytest.approx(1 / 3))
    assert snap(8)["term_fraud_known_7d"] == 0 and snap(5)["term_fraud_known_1d"] == 0
    assert (snap(7)["term_cnt_1d_lag7"], snap(7)["term_fraud_known_1d_lag7"]) == (0, 0)
    s8 = snap(8)
    assert (s8["term_cnt_1d_lag7"], s8["term_fraud_known_1d_lag7"], s8["term_risk_1d_lag7"]) == (
        2,
        1,
        0.5,
    )
    assert (snap(9)["term_cnt_7d_lag7"], snap(9)["term_fraud_known_7d_lag7"]) == (2, 1)


def test_customer_fraud_history_counts_only_labels_available_at_the_snapshot() -> None:
    """The customer's own label-aware fraud history (``cust_lbl_*``) is the terminal risk's
    computation keyed by customer: volumes of the window's days, frauds whose label is
    available at the snapshot, across terminals and devices."""
    label_at = T0 + 4 * D + 12 * H  # fraud known on day 4 at noon
    tx = frame(
        [
            {"tx_id": "f", "ts": T0 + H, "customer_id": "c1", "terminal_id": "m1",
             "is_fraud": 1, "label_available_at": label_at},
            {"tx_id": "g", "ts": T0 + 2 * H, "customer_id": "c1", "terminal_id": "m2"},
            {"tx_id": "h", "ts": T0 + D + H, "customer_id": "c1", "terminal_id": "m3",
             "device_id": "unknown", "is_fraud": 1, "label_available_at": T0 + 50 * D},
            {"tx_id": "p", "ts": T0 + 4 * D + 13 * H, "customer_id": "c1"},
            {"tx_id": "o", "ts": T0 + 2 * H, "customer_id": "c2", "terminal_id": "m1"},
            {"tx_id": "z", "ts": T0 + 40 * D, "customer_id": "c9", "terminal_id": "m9"},
        ]
    )  # fmt: skip
    tables = compute_features(tx)
    cust = tables.customer_stats.filter(pl.col("customer_id") == "c1")

    def snap(day: int) -> dict:
        rows = cust.filter(pl.col("event_timestamp") <= T0 + day * D)
        return rows.sort("event_timestamp").row(-1, named=True)

    assert (snap(1)["cust_lbl_cnt_1d"], snap(1)["cust_lbl_fraud_known_1d"]) == (2, 0)
    assert snap(4)["cust_lbl_fraud_known_30d"] == 0  # 00:00 of day 4: label not yet available
    s5 = snap(5)
    assert (s5["cust_lbl_cnt_30d"], s5["cust_lbl_fraud_known_30d"]) == (4, 1)  # f; h not yet
    assert s5["cust_lbl_risk_30d"] == pytest.approx(1 / 4)
    assert (s5["cust_lbl_fraud_known_7d"], s5["cust_lbl_fraud_known_1d"]) == (1, 0)
    s8 = snap(8)  # day 0 in the 1 day lagged by 7: f and g, f known
    assert (s8["cust_lbl_cnt_1d_lag7"], s8["cust_lbl_fraud_known_1d_lag7"]) == (2, 1)
    assert s8["cust_lbl_risk_1d_lag7"] == 0.5
    assert (snap(9)["cust_lbl_cnt_7d_lag7"], snap(9)["cust_lbl_fraud_known_7d_lag7"]) == (3, 1)
    # another customer at the same terminal shares the terminal's risk, never c1's history
    term = tables.terminal_stats.filter(pl.col("terminal_id") == "m1")
    assert term.filter(pl.col("event_timestamp") == T0 + 5 * D)["term_fraud_known_30d"].item() == 1
    other = tables.customer_stats.filter(pl.col("customer_id") == "c2")
    assert other.height > 0 and other["cust_lbl_fraud_known_30d"].max() == 0
    # the same numbers as the terminal computation on a frame keyed by customer
    as_terminal = compute_features(tx.with_columns(terminal_id=pl.col("customer_id")))
    for row in cust.iter_rows(named=True):
        t_row = as_terminal.terminal_stats.filter(
            (pl.col("terminal_id") == "c1") & (pl.col("event_timestamp") == row["event_timestamp"])
        ).row(0, named=True)
        for name, value in row.items():
            if name.startswith("cust_lbl_"):
                assert t_row[name.replace("cust_lbl_", "term_")] == value, name


def test_contract_versions_and_groups() -> None:
    """fraud_v2 adds the customer's own label-aware fraud history (15 features, a group of its
    own) to the terminal/device windows; fraud_v1 keeps its 40; no name collides."""
    v1, v2 = feature_contract("fraud_v1"), feature_contract()
    assert len(v1) == 40 and len(v2) == 83
    assert [n for n, _ in v2 if n.startswith("cust_lbl_")] == [n for n, _ in CUSTOMER_RISK_FEATURES]
    assert not any(n.startswith("cust_lbl_") for n, _ in v1)
    assert len({n for n, _ in v2}) == len(v2)
    groups = feature_groups()
    assert groups["customer_label_risk"] == tuple(n for n, _ in CUSTOMER_RISK_FEATURES)
    assert sorted(n for g in groups.values() for n in g) == sorted(n for n, _ in v2)
    assert feature_groups("fraud_v1")["customer_label_risk"] == ()


def test_unknown_device_never_gets_device_features() -> None:
    tx = frame(
        [{"ts": T0 + i * H, "device_id": "unknown", "customer_id": f"c{i}"} for i in range(3)]
    )
    tables = compute_features(tx)
    assert tables.device_stats.filter(pl.col("device_id") == "unknown").height == 0
    assert tables.terminal_stats.height > 0


def test_history_state_keeps_30_days_and_at_least_the_last_16() -> None:
    old = [{"tx_id": f"o{i:02d}", "ts": T0 + i * H, "amount": float(i)} for i in range(20)]
    recent = [{"tx_id": f"r{i}", "ts": T0 + 60 * D + i * H} for i in range(3)]
    tables = compute_features(frame(old + recent), as_of=T0 + 61 * D)
    (state,) = tables.customer_history.to_dicts()
    # the 3 recent ones and the newest 13 old ones: 16 in total, time-ordered
    assert state["hist_tx_id"] == [f"o{i:02d}" for i in range(7, 20)] + ["r0", "r1", "r2"]
    assert state["hist_event_us"] == state["hist_ts"][-1]
    cut = compute_features(frame(old + recent), as_of=T0 + 60 * D + H)  # r1, r2 not yet
    assert cut.customer_history.row(0, named=True)["hist_tx_id"][-1] == "r0"


def test_apply_transaction_is_idempotent_and_order_independent() -> None:
    txs = [
        {
            "tx_id": f"t{i}",
            "ts_us": (int(T0.timestamp()) + i * 86_400) * US,
            "amount": float(i),
            "terminal_id": "m",
            "device_id": "d",
            "merchant_category": "grocery",
            "channel": "pos",
            "terminal_risk": 0.0,
        }
        for i in range(40)
    ]
    forward = State.empty()
    for tx in txs:
        forward, changed = apply_transaction(forward, tx)
        assert changed
    again, changed = apply_transaction(forward, txs[-1])
    assert not changed and again is forward
    trimmed, changed = apply_transaction(forward, txs[0])  # long gone: stays gone
    assert not changed and trimmed["hist_tx_id"].tolist() == forward["hist_tx_id"].tolist()
    backward = State.empty()
    for tx in reversed(txs):
        backward, _ = apply_transaction(backward, tx)
    assert backward.to_lists() == forward.to_lists()
    assert len(forward) == 31  # 30 d window from the newest (days 9..39) and >= 16
    with pytest.raises(ValueError, match="corrupt"):
        State.from_lists({"hist_tx_id": ["a"], "hist_ts": []})


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_request_time_functions_equal_batch_features(seed: int) -> None:
    """The online implementation (history state + numpy) reproduces the batch features."""
    tx = random_frame(seed)
    ctx = compute_features(tx).customer_tx
    seqs = training_sequences(
        ctx.select("tx_id", pl.col("event_timestamp").alias("ts")), source=ctx
    )
    risk = dict(zip(ctx["tx_id"], ctx["seq_terminal_risk"], strict=True))
    by_id = {r["tx_id"]: (i, r) for i, r in enumerate(ctx.to_dicts())}
    states: dict[str, State] = {}
    checked = 0
    for row in tx.sort("ts", "tx_id").to_dicts():
        ts_us = (row["ts"] - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
        state = states.get(row["customer_id"], State.empty())
        online = customer_features(state, ts_us, row["device_id"])
        idx, offline = by_id[row["tx_id"]]
        for name, dtype in CUSTOMER_FEATURES:
            if dtype == "int64":
                assert online[name] == offline[name], (row["tx_id"], name)
            else:
                assert online[name] == pytest.approx(offline[name], rel=1e-9, abs=1e-9), name
        np.testing.assert_allclose(sequence_features(state, ts_us), seqs[idx], rtol=1e-6)
        states[row["customer_id"]], _ = apply_transaction(
            state,
            {**row, "ts_us": ts_us, "terminal_risk": risk[row["tx_id"]]},
        )
        checked += 1
    assert checked == tx.height


def test_request_features_values() -> None:
    ts = np.array([(int(T0.timestamp()) + 2 * 3600) * US])  # Friday 02:00 UTC
    out = request_features(np.array([30.0]), ts, [2], [10.0], [0], [0.0])
    assert out["cust_amount_ratio_7d"][0] == 3.0
    assert out["cust_amount_ratio_30d"][0] == -1.0  # no history: documented default
    assert (out["tx_hour"][0], out["tx_dow"][0], out["tx_is_night"][0]) == (2, 4, 1)
    assert {n for n, _ in REQUEST_FEATURES} == set(out)
    # valid but absurd amounts (the API takes any amount in [0, 1e9]): the ratio stays finite
    # as the models' float32 (1.0 after a 1e-300 mean was inf, and XGBoost refused the batch)
    tiny = request_features(np.array([1.0, 1e9]), np.r_[ts, ts], [1, 3], [1e-300, 5e-324], [0, 0],
                            [0.0, 0.0])  # fmt: skip
    assert tiny["cust_amount_ratio_7d"].tolist() == [1e6, 1e6]
    assert np.isfinite(tiny["cust_amount_ratio_7d"].astype(np.float32)).all()
    assert category_code("grocery") == category_code("grocery") != 0
    assert channel_code("pos") == 1 and channel_code("weird") == 6


def _perturb(tx: pl.DataFrame, t: dt.datetime, seed: int) -> pl.DataFrame:
    """Change everything a feature at or before ``t`` must not see."""
    rng = np.random.default_rng(seed)
    n = tx.height
    future = tx["ts"] > t
    hidden_label = (~future) & (tx["label_available_at"] > t)
    out = tx.with_columns(
        amount=pl.when(future).then(pl.col("amount") * 3 + 1).otherwise(pl.col("amount")),
        terminal_id=pl.when(future).then(pl.lit("m_new")).otherwise(pl.col("terminal_id")),
        device_id=pl.when(future).then(pl.lit("d0")).otherwise(pl.col("device_id")),
        is_fraud=pl.when(future | hidden_label)
        .then(1 - pl.col("is_fraud"))
        .otherwise(pl.col("is_fraud"))
        .cast(pl.Int8),
        label_available_at=pl.when(future | hidden_label)
        .then(pl.max_horizontal(pl.col("label_available_at"), pl.col("ts")) + 3 * D)
        .otherwise(pl.col("label_available_at")),
    )
    keep = ~(future & pl.Series(rng.random(n) < 0.3))  # drop some future rows
    extra = (
        out.filter(future).head(5).with_columns(tx_id=pl.col("tx_id") + "_dup", ts=pl.col("ts") + H)
    )
    return pl.concat([out.filter(keep), extra]).sort("ts", maintain_order=True)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 10_000), cut=st.floats(0.05, 0.95))
def test_no_leakage_from_the_future_or_from_unavailable_labels(seed: int, cut: float) -> None:
    tx = random_frame(seed, n=160, customers=6, terminals=4, devices=5, days=45)
    lo, hi = tx["ts"].min(), tx["ts"].max()
    assert isinstance(lo, dt.datetime) and isinstance(hi, dt.datetime)
    t = lo + (hi - lo) * cut
    base = compute_features(tx)
    pert = compute_features(_perturb(tx, t, seed))
    past = pl.col("event_timestamp") <= t
    for name in ("customer_tx", "terminal_stats", "device_stats", "customer_stats"):
        a, b = getattr(base, name).filter(past), getattr(pert, name).filter(past)
        key = a.columns[0]
        assert a.height > 0 or name != "customer_tx"
        assert a.sort(key, "event_timestamp").equals(b.sort(key, "event_timestamp")), name


def test_build_features_writes_sources_and_summary(tmp_path: Path) -> None:
    tx = random_frame(5, n=300)
    for day, part in tx.group_by(pl.col("ts").dt.date()):
        write_day(tmp_path / "ds", day[0], part)
    summary = build_features(tmp_path / "ds", tmp_path / "features")
    assert summary.rows == 300
    for name in ("customer_tx", "terminal_stats", "device_stats", "customer_stats",
                 "customer_history"):  # fmt: skip
        assert (tmp_path / "features" / f"{name}.parquet").exists()
    assert (tmp_path / "features" / "features.json").exists()
    ctx = pl.read_parquet(tmp_path / "features" / "customer_tx.parquet")
    stored = {n for n, _ in CUSTOMER_FEATURES}
    assert stored <= set(ctx.columns)
    assert len(feature_contract()) == len({n for n, _ in feature_contract()})


def test_build_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        build_features(tmp_path / "nope", tmp_path / "out")
    with pytest.raises(FeatureBuildError, match="empty"):
        compute_features(random_frame(1, n=10).head(0))
    with pytest.raises(FeatureBuildError, match="lack"):
        compute_features(random_frame(1, n=10).drop("channel"))
