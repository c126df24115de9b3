"""Synthetic training frames shaped like the feature store's point-in-time training set.

For tests and benchmarks only (no simulator or feature store needed): ids, ``ts``, labels with
delays, ``n_tabular`` float features ``f00..`` and sequence columns ``seq_amount``, ``seq_gap``,
``seq_hour`` (``seq_len`` steps each, oldest first; customers with a short history have leading
NaN steps). Fraud depends on both the tabular features and the recent sequence, so both models
have something to learn and the sequence model has signal the tabular one lacks.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from riskml.models.features import FeatureSpec

SEQUENCE_FEATURES: tuple[str, ...] = ("seq_amount", "seq_gap", "seq_hour")


def synthetic_spec(n_tabular: int = 8, seq_len: int = 16) -> FeatureSpec:
    return FeatureSpec(
        feature_service="synthetic_fraud",
        tabular=tuple(f"f{i:02d}" for i in range(n_tabular)),
        sequence=SEQUENCE_FEATURES,
        seq_len=seq_len,
    )


def synthetic_arrays(
    n: int,
    *,
    n_tabular: int = 8,
    seq_len: int = 16,
    fraud_rate: float = 0.03,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """``tabular (n, T) float32, sequence (n, L, 3) float32, y int8, amount float64``."""
    rng = np.random.default_rng(seed)
    tab = rng.normal(size=(n, n_tabular)).astype(np.float32)
    seq = np.empty((n, seq_len, len(SEQUENCE_FEATURES)), dtype=np.float32)
    seq[:, :, 0] = rng.lognormal(3.0, 0.8, size=(n, seq_len))  # amount
    seq[:, :, 1] = rng.exponential(12.0, size=(n, seq_len))  # hours since previous tx
    seq[:, :, 2] = rng.integers(0, 24, size=(n, seq_len))  # hour of day
    history = rng.integers(1, seq_len + 1, size=n)
    history[rng.random(n) < 0.7] = seq_len  # most customers have a full history
    pad = np.arange(seq_len)[None, :] < (seq_len - history)[:, None]
    seq[pad] = np.nan
    # a burst of quick, large transactions at night in the last steps is risky
    last = seq[:, -3:, :]
    burst = (
        np.log1p(np.nan_to_num(last[:, :, 0], nan=20.0)).mean(1)
        - np.log1p(np.nan_to_num(last[:, :, 1], nan=12.0)).mean(1)
        + 0.5 * (np.nan_to_num(last[:, :, 2], nan=12.0) < 5).mean(1)
    )
    logit = 1.1 * tab[:, 0] - 0.8 * tab[:, 1] + 0.6 * tab[:, 2] * tab[:, 3] + 1.3 * burst
    if n_tabular > 4:
        logit += 0.4 * np.abs(tab[:, 4])
    # shift so the mean probability is close to fraud_rate
    lo, hi = -30.0, 30.0
    for _ in range(50):
        mid = (lo + hi) / 2
        if (1 / (1 + np.exp(-(logit + mid)))).mean() > fraud_rate:
            hi = mid
        else:
            lo = mid
    p = 1 / (1 + np.exp(-(logit + lo)))
    y = (rng.random(n) < p).astype(np.int8)
    amount = np.round(rng.lognormal(3.2, 1.0, size=n) * (1 + 2 * y), 2)
    return {"tabular": tab, "sequence": seq, "y": y, "amount": amount}


def synthetic_frame(
    n: int = 20_000,
    *,
    n_customers: int | None = None,
    days: int = 30,
    n_tabular: int = 8,
    seq_len: int = 16,
    fraud_rate: float = 0.03,
    max_label_delay_days: float = 3.0,
    start: dt.datetime = dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
    seed: int = 0,
) -> Any:
    """A polars training frame with ``n`` rows sorted by ``ts``."""
    import polars as pl

    rng = np.random.default_rng(seed + 1)
    arrays = synthetic_arrays(
        n, n_tabular=n_tabular, seq_len=seq_len, fraud_rate=fraud_rate, seed=seed
    )
    n_customers = n_customers or max(1, n // 20)
    offsets_us = np.sort(rng.integers(0, days * 86_400_000_000, size=n))
    ts = np.datetime64(start.replace(tzinfo=None), "us") + offsets_us.astype("timedelta64[us]")
    delay_us = (rng.random(n) * max_label_delay_days * 86_400_000_000).astype("timedelta64[us]")
    y = arrays["y"]
    label_at = np.where(y == 1, ts + delay_us, ts)
    cols: dict[str, Any] = {
        "tx_id": [f"tx{i:08d}" for i in range(n)],
        "ts": pl.Series("ts", ts).dt.replace_time_zone("UTC"),
        "customer_id": [f"c{c:06d}" for c in rng.integers(0, n_customers, size=n)],
        "amount": arrays["amount"],
        "is_fraud": pl.Series("is_fraud", y, dtype=pl.Int8),
        "label_available_at": pl.Series("label_available_at", label_at).dt.replace_time_zone("UTC"),
    }
    for j in range(n_tabular):
        cols[f"f{j:02d}"] = arrays["tabular"][:, j].astype(np.float64)
    for k, name in enumerate(SEQUENCE_FEATURES):
        cols[name] = pl.Series(name, arrays["sequence"][:, :, k].astype(np.float64))
    return pl.DataFrame(cols)
