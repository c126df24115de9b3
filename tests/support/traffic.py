"""Synthetic card traffic for the serving and decision tests (numpy only: no torch, no Ray).

Transactions over a few hundred customers and terminals, fraud as bursts of e-commerce spend on
risky terminals and large amounts; :func:`live_transactions` are requests after the reference
models' training history (:mod:`tests.support.standin_models`), for the same customers.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

CHANNELS = ("pos", "contactless", "ecom", "moto", "atm")
CATEGORIES = ("grocery", "fuel", "travel", "electronics", "restaurants")


def synth_transactions(
    n: int,
    *,
    seed: int = 0,
    customers: int = 200,
    terminals: int = 100,
    start: dt.datetime | None = None,
    span_s: float = 3 * 86_400,
    prefix: str = "tx",
) -> list[dict[str, Any]]:
    """``n`` transactions sorted by time (dicts with the request fields and ``is_fraud``).

    Fraud: bursts of e-commerce spend on a few risky terminals, and large amounts."""
    rng = np.random.default_rng(seed)
    start = start or dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    ts = np.sort(rng.uniform(0, span_s, n))
    risky = {f"t{t}" for t in range(0, terminals, 10)}
    out = []
    for i in range(n):
        cust = f"c{int(rng.integers(customers))}"
        term = f"t{int(rng.integers(terminals))}"
        channel = str(rng.choice(CHANNELS, p=[0.45, 0.25, 0.2, 0.05, 0.05]))
        amount = float(np.round(rng.lognormal(3.5, 1.0), 2))
        fraud = 0
        if term in risky and channel in ("ecom", "moto") and rng.random() < 0.6:
            fraud, amount = 1, float(np.round(amount * rng.uniform(3, 8), 2))
        elif rng.random() < 0.01:
            fraud, amount = 1, float(np.round(rng.uniform(2_000, 9_000), 2))
        out.append(
            {
                "tx_id": f"{prefix}-{seed}-{i:07d}",
                "ts": (start + dt.timedelta(seconds=float(ts[i]))).isoformat(),
                "customer_id": cust,
                "terminal_id": term,
                "device_id": f"d{cust[1:]}",
                "amount": amount,
                "currency": "USD",
                "merchant_category": str(rng.choice(CATEGORIES)),
                "channel": channel,
                "is_fraud": fraud,
            }
        )
    return out


def terminal_risks(terminals: int = 100) -> dict[str, float]:
    return {f"t{t}": (0.3 if t % 10 == 0 else 0.01) for t in range(terminals)}


def request_fields(tx: dict[str, Any]) -> dict[str, Any]:
    """The API request for a synthetic transaction (drops the label)."""
    return {k: v for k, v in tx.items() if k != "is_fraud"}


def live_transactions(n: int, *, seed: int, prefix: str) -> list[dict[str, Any]]:
    """Requests after the reference history (same customers and terminals)."""
    start = dt.datetime(2024, 3, 4, tzinfo=dt.UTC)
    return [
        request_fields(tx)
        for tx in synth_transactions(n, seed=seed, prefix=prefix, start=start, span_s=3_600)
    ]
