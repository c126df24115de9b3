"""A decision log from a dataset: score feature rows with a bundle and write what serving would
have logged (decision events, and the label events the dataset's labels give) into an offline
log, in its own format.

For the monitor's evaluation (:mod:`riskml.monitoring.evaluate`), its end-to-end test and a
user who wants to monitor a backtest window or a shadow model over history. The feature values
are the batch features (training's, equal to the online state by the offline-log parity test),
the decisions the thresholds' on the bundle's calibrated blend; every decision is the full
ensemble's. Label events carry the dataset's ``label_available_at`` as their time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from riskml.decision.config import Thresholds
from riskml.decision.policy import decide
from riskml.models.bundle import Bundle, score_inputs
from riskml.models.features import extract_inputs
from riskml.streaming.events import DecisionEvent, LabelEvent
from riskml.streaming.offline_log import event_row, write_rows

_TX = ("tx_id", "ts", "customer_id", "terminal_id", "amount")
_OPTIONAL = ("device_id", "currency", "merchant_category", "channel")


@dataclass(frozen=True)
class _Logged:
    """What :func:`event_row` reads of a broker message."""

    data: bytes
    stream_seq: int
    published_at: dt.datetime


def log_row(event: DecisionEvent | LabelEvent, seq: int, at: dt.datetime) -> dict[str, Any]:
    """The log row of an event published (and logged) at ``at`` as stream sequence ``seq``."""
    return event_row(event, _Logged(event.model_dump_json().encode(), seq, at), at)


def _utc(value: Any) -> dt.datetime:
    out: dt.datetime = value if isinstance(value, dt.datetime) else value.to_pydatetime()
    return out.replace(tzinfo=dt.UTC) if out.tzinfo is None else out.astimezone(dt.UTC)


def log_dataset(
    frame: Any,
    bundle: Bundle,
    log_root: str | Path,
    *,
    thresholds: Mapping[str, float] | None = None,
    labels: bool = True,
    first_seq: int = 1,
    chunk: int = 20_000,
) -> dict[str, int]:
    """Score a features frame (polars, as ``riskml features build`` writes it) with ``bundle``
    and append its decisions (and labels) to the offline log at ``log_root``; the counts."""
    import polars as pl

    th = Thresholds(**dict(thresholds or {}))
    names = list(bundle.spec.tabular)
    frame = frame.sort("ts", "tx_id")
    seq = first_seq
    counts = {"decisions": 0, "labels": 0, "files": 0}
    for lo in range(0, frame.height, chunk):
        part = frame.slice(lo, chunk)
        inputs = extract_inputs(part, bundle.spec)
        scores = score_inputs(bundle, inputs)
        final = scores["score"]
        per_model = {m: scores[f"{m}_calibrated"] for m in bundle.blend.models}
        txs = part.select(*_TX, *(c for c in _OPTIONAL if c in part.columns)).to_dicts()
        rows: list[dict[str, Any]] = []
        for i, tx in enumerate(txs):
            tx["ts"] = _utc(tx["ts"])
            event = DecisionEvent.of(
                tx,
                decision=decide(float(final[i]), th),
                decision_source="ensemble",
                model_version=bundle.version,
                feature_names=names,
                feature_values=inputs.tabular[i],
                scores={m: float(v[i]) for m, v in per_model.items()},
                score=float(final[i]),
                decided_at=tx["ts"],
            )
            rows.append(log_row(event, seq, tx["ts"]))
            seq += 1
        counts["decisions"] += len(rows)
        if labels and "is_fraud" in part.columns:
            fraud = part.filter(pl.col("is_fraud") == 1)
            cols = ("tx_id", "ts", "customer_id", "terminal_id", "label_available_at")
            for tx in fraud.select(cols).to_dicts():
                label_ts = _utc(tx["label_available_at"])
                label = LabelEvent.of(
                    tx["tx_id"],
                    "chargeback",
                    label_ts,
                    tx_ts=_utc(tx["ts"]),
                    customer_id=tx["customer_id"],
                    terminal_id=tx["terminal_id"],
                )
                rows.append(log_row(label, seq, label_ts))
                seq += 1
                counts["labels"] += 1
        counts["files"] += len(write_rows(log_root, rows))
    counts["last_seq"] = seq - 1
    return counts


def scores_of(frame: Any, bundle: Bundle) -> np.ndarray:
    """The bundle's calibrated blend on a features frame (what :func:`log_dataset` logs)."""
    return np.asarray(score_inputs(bundle, extract_inputs(frame, bundle.spec))["score"])
