"""Feast object definitions (entities, sources, views, on-demand views, feature services).

``feature_objects(source_dir)`` builds every object for sources written by
:func:`riskml.features.batch.build_features` under ``source_dir``. The Feast repository in
``feature_repo/`` calls it at import (as Feast repos do), and :mod:`riskml.features.store`
applies the same list programmatically, so ``feast -c feature_repo plan/apply`` and
``riskml features apply`` register identical definitions.

Views:

``customer_tx``        offline only; exact per-transaction customer features (entity
                       ``transaction``); the training side of the customer features.
``customer_history``   online; the customer's history state as arrays, fed by the push source
                       ``customer_history_push`` (write-back) and by materialisation.
``terminal_stats``     daily snapshots (entity ``terminal``), online + offline.
``device_stats``       daily snapshots (entity ``device``), online + offline.
``customer_stats``     daily snapshots (entity ``customer``), online + offline: the customer's
                       own label-aware fraud history (``cust_lbl_*``).
``tx_features``        on-demand (pandas): request-time features for training, from the request
                       (``amount``, ``ts_us``) and ``customer_tx``.
``customer_realtime``  on-demand (python): every customer + request-time feature and the
                       sequence, from the request and ``customer_history`` — the serving side.

Services: ``fraud_v2`` = customer_tx + tx_features + terminal_stats + device_stats +
customer_stats (training); ``fraud_v2_online`` = customer_realtime + terminal_stats +
device_stats + customer_stats (serving). Both yield the same feature names and dtypes
(:func:`riskml.features.definitions.feature_contract`); ``customer_stats`` is projected to the
contract's ``cust_lbl_*`` features (its recent volumes stay in the view for the label fold).
``fraud_v1`` / ``fraud_v1_online`` are kept: the same views projected to the 30-day risk of
contract v1 (no ``customer_stats``), so a model trained on v1 can still get its training set
and its online vector.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from riskml.features.definitions import (
    CUSTOMER_FEATURES,
    CUSTOMER_RISK_FEATURES,
    CUSTOMER_STATS_FIELDS,
    DEVICE_FEATURES,
    DEVICE_FEATURES_V1,
    FEATURE_SERVICE,
    FEATURE_SERVICES,
    ONLINE_FEATURE_SERVICE,
    REQUEST_FEATURES,
    SEQ_FIELDS,
    SEQ_LEN,
    SEQUENCE_FEATURE,
    TERMINAL_FEATURES,
    TERMINAL_FEATURES_V1,
)

#: Names of the Feast objects (used by store/online code).
PUSH_SOURCE = "customer_history_push"
REQUEST_SOURCE = "tx_request"
ONLINE_REQUEST_SOURCE = "tx_request_online"
HISTORY_VIEW = "customer_history"
CUSTOMER_TX_VIEW = "customer_tx"
TERMINAL_VIEW = "terminal_stats"
DEVICE_VIEW = "device_stats"
CUSTOMER_STATS_VIEW = "customer_stats"
TX_FEATURES_ODFV = "tx_features"
REALTIME_ODFV = "customer_realtime"

#: Request fields: the transaction being scored (training: amount and time; serving also the
#: device, for the new-device flag).
REQUEST_FIELDS: tuple[tuple[str, str], ...] = (
    ("amount", "float64"),
    ("ts_us", "int64"),
)
ONLINE_REQUEST_FIELDS: tuple[tuple[str, str], ...] = (
    *REQUEST_FIELDS,
    ("req_device_id", "string"),
)


def _feast_type(dtype: str) -> Any:
    from feast.types import Array, Float32, Float64, Int64, String

    return {
        "int64": Int64,
        "float64": Float64,
        "string": String,
        "int64[]": Array(Int64),
        "float64[]": Array(Float64),
        "float32[]": Array(Float32),
        "string[]": Array(String),
    }[dtype]


def _fields(spec: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> list[Any]:
    from feast import Field

    return [Field(name=name, dtype=_feast_type(dtype)) for name, dtype in spec]


HISTORY_FIELDS: tuple[tuple[str, str], ...] = (
    ("hist_tx_id", "string[]"),
    ("hist_ts", "int64[]"),
    ("hist_amount", "float64[]"),
    ("hist_terminal", "string[]"),
    ("hist_device", "string[]"),
    ("hist_category", "string[]"),
    ("hist_channel", "string[]"),
    ("hist_terminal_risk", "float64[]"),
    ("hist_event_us", "int64"),
)


def feature_objects(source_dir: Path) -> list[Any]:
    """Every Feast object of the repository, reading sources under ``source_dir``."""
    from datetime import timedelta

    from feast import (
        Entity,
        FeatureService,
        FeatureView,
        FileSource,
        PushSource,
        RequestSource,
        ValueType,
    )
    from feast.on_demand_feature_view import on_demand_feature_view

    source_dir = Path(source_dir).resolve()
    forever = timedelta(0)

    transaction = Entity(
        name="transaction",
        join_keys=["tx_id"],
        value_type=ValueType.STRING,
        description="One card/checkout transaction.",
    )
    customer = Entity(
        name="customer", join_keys=["customer_id"], value_type=ValueType.STRING,
        description="Card / customer account.",
    )  # fmt: skip
    terminal = Entity(
        name="terminal", join_keys=["terminal_id"], value_type=ValueType.STRING,
        description="Terminal / merchant.",
    )  # fmt: skip
    device = Entity(
        name="device", join_keys=["device_id"], value_type=ValueType.STRING,
        description="Device fingerprint ('unknown' never has features).",
    )  # fmt: skip

    def file_source(name: str, filename: str) -> Any:
        return FileSource(
            name=f"{name}_source",
            path=str(source_dir / filename),
            timestamp_field="event_timestamp",
        )

    customer_tx = FeatureView(
        name=CUSTOMER_TX_VIEW,
        entities=[transaction],
        ttl=forever,
        schema=_fields(CUSTOMER_FEATURES),
        source=file_source("customer_tx", "customer_tx.parquet"),
        online=False,
        description="Exact per-transaction customer features (windows strictly before ts).",
        tags={"granularity": "exact"},
    )
    history_push = PushSource(
        name=PUSH_SOURCE,
        batch_source=file_source("customer_history", "customer_history.parquet"),
        description="Write-back of a customer's updated history state.",
    )
    customer_history = FeatureView(
        name=HISTORY_VIEW,
        entities=[customer],
        ttl=forever,
        schema=_fields(HISTORY_FIELDS),
        source=history_push,
        online=True,
        description="Recent transactions of a customer (state for request-time features).",
        tags={"granularity": "exact"},
    )
    terminal_stats = FeatureView(
        name=TERMINAL_VIEW,
        entities=[terminal],
        ttl=forever,
        schema=_fields(TERMINAL_FEATURES),
        source=file_source("terminal_stats", "terminal_stats.parquet"),
        online=True,
        description="Daily 00:00 UTC snapshots: volumes and label-delayed fraud risk.",
        tags={"granularity": "snapshot-1d"},
    )
    device_stats = FeatureView(
        name=DEVICE_VIEW,
        entities=[device],
        ttl=forever,
        schema=_fields(DEVICE_FEATURES),
        source=file_source("device_stats", "device_stats.parquet"),
        online=True,
        description="Daily 00:00 UTC snapshots: volume, distinct customers, fraud risk.",
        tags={"granularity": "snapshot-1d"},
    )
    customer_stats = FeatureView(
        name=CUSTOMER_STATS_VIEW,
        entities=[customer],
        ttl=forever,
        schema=_fields(CUSTOMER_STATS_FIELDS),
        source=file_source("customer_stats", "customer_stats.parquet"),
        online=True,
        description="Daily 00:00 UTC snapshots: the customer's own label-aware fraud history.",
        tags={"granularity": "snapshot-1d"},
    )
    tx_request = RequestSource(name=REQUEST_SOURCE, schema=_fields(REQUEST_FIELDS))
    tx_request_online = RequestSource(
        name=ONLINE_REQUEST_SOURCE, schema=_fields(ONLINE_REQUEST_FIELDS)
    )

    @on_demand_feature_view(
        name=TX_FEATURES_ODFV,
        sources=[customer_tx, tx_request],
        schema=_fields(REQUEST_FEATURES),
        mode="pandas",
        description="Request-time features for training (amount ratios, hour, ...).",
    )
    def tx_features(inputs):  # Feast checks annotations: none (pandas mode)
        import pandas as pd

        from riskml.features.realtime import request_features

        out = request_features(
            inputs["amount"].to_numpy(),
            inputs["ts_us"].to_numpy(),
            inputs["cust_cnt_7d"].fillna(0).to_numpy(),
            inputs["cust_mean_7d"].fillna(0.0).to_numpy(),
            inputs["cust_cnt_30d"].fillna(0).to_numpy(),
            inputs["cust_mean_30d"].fillna(0.0).to_numpy(),
        )
        return pd.DataFrame(out, index=inputs.index)

    @on_demand_feature_view(
        name=REALTIME_ODFV,
        sources=[customer_history, tx_request_online],
        schema=_fields(
            [
                *CUSTOMER_FEATURES,
                *REQUEST_FEATURES,
                (SEQUENCE_FEATURE, "float32[]"),
            ]
        ),
        mode="python",
        description=(
            "Serving: customer windows, ratios and the last-N sequence computed at request "
            f"time from the history state (sequence flattened {SEQ_LEN}x{len(SEQ_FIELDS)})."
        ),
    )
    def customer_realtime(inputs):  # python mode: dict of lists in, dict of lists out
        from riskml.features.realtime import realtime_batch

        return realtime_batch(inputs)

    v1_terminal = terminal_stats[[n for n, _ in TERMINAL_FEATURES_V1]]
    v1_device = device_stats[[n for n, _ in DEVICE_FEATURES_V1]]
    fraud_v1 = FeatureService(
        name="fraud_v1",
        features=[customer_tx, tx_features, v1_terminal, v1_device],
        description="Fraud model feature contract v1 (training side): 30-day label-aware risk.",
        tags={"version": "1", "side": "training"},
    )
    fraud_v1_online = FeatureService(
        name=FEATURE_SERVICES["fraud_v1"],
        features=[customer_realtime, v1_terminal, v1_device],
        description="Fraud model feature contract v1 (serving side, same names and dtypes).",
        tags={"version": "1", "side": "serving"},
    )
    v2_customer = customer_stats[[n for n, _ in CUSTOMER_RISK_FEATURES]]
    fraud_v2 = FeatureService(
        name=FEATURE_SERVICE,
        features=[customer_tx, tx_features, terminal_stats, device_stats, v2_customer],
        description="Fraud model feature contract v2 (training side): label-aware terminal, "
        "device and customer risk over 1, 7 and 30 days, recent and 7 days lagged.",
        tags={"version": "2", "side": "training"},
    )
    fraud_v2_online = FeatureService(
        name=ONLINE_FEATURE_SERVICE,
        features=[customer_realtime, terminal_stats, device_stats, v2_customer],
        description="Fraud model feature contract v2 (serving side, same names and dtypes).",
        tags={"version": "2", "side": "serving"},
    )
    return [
        transaction,
        customer,
        terminal,
        device,
        customer_tx,
        history_push,
        customer_history,
        terminal_stats,
        device_stats,
        customer_stats,
        tx_request,
        tx_request_online,
        tx_features,
        customer_realtime,
        fraud_v1,
        fraud_v1_online,
        fraud_v2,
        fraud_v2_online,
    ]
