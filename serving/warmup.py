"""A replica's warm-up before it takes traffic.

An Ingress replica's first decisions pay for what nothing has touched yet: the feature store's
connection and its first reads, the models' first calls (XGBoost's thread pool and predictor
caches, the behavioural model's buffers), the handles of the distributed topology. Measured in
process on the served world (Redis, colocated components): the first decision took 5.3 ms, the
next ones 1.7-2.0 ms; in a replica started under load (the fault scenarios' replacement after a
kill) its first second had a maximum of 28-84 ms against 10-20 ms afterwards.

:func:`warm_up` runs every stage of the ladder ``rounds`` times on a synthetic transaction
inside the replica's constructor (Serve routes nothing to a replica before its constructor
returns). It only reads: a synthetic customer, terminal and device the store has never seen, no
write-back, no decision log, no metrics of decisions. It never fails the replica: a store down
at start (the ladder's fallbacks answer then) or a stage that fails is logged and reported in
:class:`WarmUpReport`, and the replica starts as it would have without it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from riskml.decision.ladder import Stages
from riskml.decision.policy import ModelScores

log = logging.getLogger("ray.serve")  # the replica's log

#: The warm-up's entities: ids no real customer, terminal or device has.
WARM_UP_IDS = {
    "customer_id": "riskml-warm-up",
    "terminal_id": "riskml-warm-up",
    "device_id": "riskml-warm-up",
}


@dataclass(frozen=True)
class WarmUpReport:
    """``rounds`` run; the first and the last round's milliseconds; ``skipped``: why the
    warm-up stopped early (None when it ran every round)."""

    rounds: int
    first_ms: float | None = None
    last_ms: float | None = None
    skipped: str | None = None


def synthetic_transaction(now: dt.datetime | None = None) -> dict[str, Any]:
    """A decision-time transaction of the warm-up's entities, as the API hands it on."""
    from serving.schemas import TransactionRequest

    ts = now or dt.datetime.now(dt.UTC)
    tx = TransactionRequest(
        tx_id=f"riskml-warm-up-{int(ts.timestamp() * 1e6)}",
        ts=ts,
        amount=42.0,
        currency="USD",
        merchant_category="grocery",
        channel="pos",
        **WARM_UP_IDS,
    )
    return tx.model_dump()


async def _round(
    stages: Stages, versions: Sequence[str], contributions: str, tx: dict[str, Any]
) -> None:
    rows = await stages.fetch([tx])
    x = np.asarray([rows[0].tabular], dtype=np.float32)
    calls: list[Any] = [stages.tabular(v, x, contributions) for v in versions]
    seq = rows[0].sequence
    if stages.sequence is not None and seq is not None:
        calls.append(stages.sequence(x, np.asarray(seq, dtype=np.float32)[None]))
    results = await asyncio.gather(*calls)
    tab = results[0]
    scored = ModelScores(
        xgboost=float(tab.probs[0]),
        sequence=float(results[-1][0]) if len(results) > len(versions) else None,
        contributions=None if tab.contributions is None else list(tab.contributions[0]),
        feature_values=[float(a) for a in x[0]],
    )
    await stages.decide([scored])


async def warm_up(
    stages: Stages,
    versions: Sequence[str],
    *,
    rounds: int,
    contributions: str = "approx",
    timeout_s: float = 10.0,
) -> WarmUpReport:
    """Run every stage ``rounds`` times on :func:`synthetic_transaction` (module docstring);
    at most ``timeout_s`` in all."""
    if rounds <= 0:
        return WarmUpReport(0)
    times: list[float] = []
    deadline = time.perf_counter() + timeout_s
    tx = synthetic_transaction()
    try:
        for _ in range(rounds):
            t0 = time.perf_counter()
            await asyncio.wait_for(
                _round(stages, versions, contributions, tx), max(deadline - t0, 0.001)
            )
            times.append((time.perf_counter() - t0) * 1e3)
    except Exception as exc:  # a warm-up never fails the replica (module docstring)
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        log.warning("warm-up stopped after %d of %d rounds: %s", len(times), rounds, why)
        return WarmUpReport(
            len(times), times[0] if times else None, times[-1] if times else None, why
        )
    log.info("warm-up: %d rounds, first %.2f ms, last %.2f ms", len(times), times[0], times[-1])
    return WarmUpReport(len(times), times[0], times[-1])
