"""The feature contract: names, dtypes, windows, defaults. Pure constants, no heavy imports.

Two kinds of features (see README, "Feature store"):

* **exact per transaction** — customer windows, ratios, distinct counts, night share, new-device
  flag, seconds since previous transaction, the behavioural sequence and the request-time
  features. They describe the world strictly before the transaction (``ts' < ts``), to the
  microsecond. Offline they are computed vectorised from the whole dataset; online they are
  computed at request time from the customer's *history state* (the recent transactions) by
  :func:`riskml.features.realtime.customer_features`.
* **snapshot-granular** — terminal and device volumes, label-delayed risk, device distinct
  customers. They are daily snapshots taken at 00:00 UTC, computed from transactions strictly
  before the snapshot and from labels with ``label_available_at <= snapshot``. A transaction sees
  the latest snapshot at or before its timestamp, offline (point-in-time join) and online
  (materialised rows) alike.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

#: The versioned Feast FeatureService that is the model's feature contract.
FEATURE_SERVICE = "fraud_v1"
#: The serving-side twin of :data:`FEATURE_SERVICE`: same feature names and dtypes, assembled from
#: the online history state + on-demand features instead of the offline per-transaction view.
ONLINE_FEATURE_SERVICE = "fraud_v1_online"
#: Default Feast project.
PROJECT = "riskml"

#: Customer windows: name -> seconds. All windows are ``[t - w, t)`` (strictly before t).
CUSTOMER_WINDOWS: dict[str, int] = {"1h": 3600, "1d": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400}
#: Terminal volume windows (snapshot-granular).
TERMINAL_WINDOWS: dict[str, int] = {"1d": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400}
#: Window for label-delayed risk and device distinct customers.
RISK_WINDOW_S = 30 * 86_400
#: Window for distinct terminals/devices/categories.
DISTINCT_WINDOW_S = 7 * 86_400
#: Window for the night share and the new-device flag.
LONG_WINDOW_S = 30 * 86_400
#: Night hours (UTC) for ``cust_night_share_30d`` and ``tx_is_night``: ``hour < NIGHT_END_HOUR``.
NIGHT_END_HOUR = 6
#: Snapshot period of terminal/device features (seconds): daily at 00:00 UTC.
SNAPSHOT_PERIOD_S = 86_400
#: Length of the behavioural sequence (the customer's last N transactions before this one).
SEQ_LEN = 16
#: Per-element fields of the sequence, in order. ``mask`` is 1 for a real transaction, 0 for
#: left padding (all fields 0); ``log_age`` is ``log1p(seconds between that transaction and
#: now)``; ``category``/``channel`` are stable integer codes (:func:`category_code`,
#: :func:`channel_code`); ``terminal_risk`` is that transaction's own ``term_risk_30d``.
SEQ_FIELDS: tuple[str, ...] = (
    "mask",
    "log_amount",
    "log_age",
    "hour",
    "category",
    "channel",
    "terminal_risk",
)
#: Name of the sequence feature (a float32 array of shape ``(SEQ_LEN, len(SEQ_FIELDS))``).
SEQUENCE_FEATURE = "cust_seq"
#: Hash buckets for merchant categories in the sequence (0 is padding).
CATEGORY_BUCKETS = 1024
#: Channel codes (0 padding, len+1 for anything else).
CHANNEL_CODES: tuple[str, ...] = ("pos", "contactless", "ecom", "moto", "atm")
#: Device id that means "no fingerprint": it never gets device features (unknown_device = 1).
UNKNOWN_DEVICE = "unknown"

#: Default for ``cust_secs_since_prev`` when the customer has no earlier transaction.
NO_PREVIOUS = -1.0
#: Default for amount ratios when the customer has no transaction in the window.
NO_RATIO = -1.0


def _customer_window_features() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for w in CUSTOMER_WINDOWS:
        out += [
            (f"cust_cnt_{w}", "int64"),
            (f"cust_sum_{w}", "float64"),
            (f"cust_mean_{w}", "float64"),
            (f"cust_max_{w}", "float64"),
        ]
    return out


#: Exact per-transaction customer features computed from history (offline view ``customer_tx``).
CUSTOMER_FEATURES: tuple[tuple[str, str], ...] = (
    *_customer_window_features(),
    ("cust_secs_since_prev", "float64"),
    ("cust_distinct_terminals_7d", "int64"),
    ("cust_distinct_devices_7d", "int64"),
    ("cust_distinct_categories_7d", "int64"),
    ("cust_night_share_30d", "float64"),
    ("cust_new_device", "int64"),
    ("unknown_customer", "int64"),
)

#: Request-time features (on-demand): need the request itself plus customer means.
REQUEST_FEATURES: tuple[tuple[str, str], ...] = (
    ("cust_amount_ratio_7d", "float64"),
    ("cust_amount_ratio_30d", "float64"),
    ("tx_log_amount", "float64"),
    ("tx_hour", "int64"),
    ("tx_dow", "int64"),
    ("tx_is_night", "int64"),
)

#: Terminal snapshot features (view ``terminal_stats``).
TERMINAL_FEATURES: tuple[tuple[str, str], ...] = (
    *((f"term_cnt_{w}", "int64") for w in TERMINAL_WINDOWS),
    ("term_fraud_known_30d", "int64"),
    ("term_risk_30d", "float64"),
)

#: Device snapshot features (view ``device_stats``).
DEVICE_FEATURES: tuple[tuple[str, str], ...] = (
    ("dev_cnt_30d", "int64"),
    ("dev_customers_30d", "int64"),
    ("dev_fraud_known_30d", "int64"),
    ("dev_risk_30d", "float64"),
)

#: Flags computed at join time (not stored): 1 when the entity had no row.
ENTITY_FLAGS: tuple[tuple[str, str], ...] = (
    ("unknown_terminal", "int64"),
    ("unknown_device", "int64"),
)

#: Documented defaults for unknown entities (every other numeric feature defaults to 0).
DEFAULTS: dict[str, float | int] = {
    "cust_secs_since_prev": NO_PREVIOUS,
    "cust_amount_ratio_7d": NO_RATIO,
    "cust_amount_ratio_30d": NO_RATIO,
    "unknown_customer": 1,
    "cust_new_device": 1,
    "unknown_terminal": 1,
    "unknown_device": 1,
}


@dataclass(frozen=True)
class SequenceSpec:
    """Shape of the behavioural sequence feature."""

    name: str = SEQUENCE_FEATURE
    length: int = SEQ_LEN
    fields: tuple[str, ...] = SEQ_FIELDS
    dtype: str = "float32"

    @property
    def shape(self) -> tuple[int, int]:
        return (self.length, len(self.fields))


def feature_contract() -> list[tuple[str, str]]:
    """Tabular features in model order, with dtypes (``int64`` / ``float64``).

    The same names and order come out of :func:`riskml.features.store.training_set` and
    :meth:`riskml.features.online.OnlineFeatures.get`. The sequence is separate:
    :func:`sequence_contract`.
    """
    return [
        *CUSTOMER_FEATURES,
        *REQUEST_FEATURES,
        *TERMINAL_FEATURES,
        *DEVICE_FEATURES,
        *ENTITY_FLAGS,
    ]


def feature_names() -> list[str]:
    return [name for name, _ in feature_contract()]


def sequence_contract() -> SequenceSpec:
    """The sequence feature: ``float32`` array ``(SEQ_LEN, len(SEQ_FIELDS))`` per transaction."""
    return SequenceSpec()


def default_value(name: str) -> float | int:
    """The documented default of a feature for an unknown entity."""
    return DEFAULTS.get(name, 0)


@lru_cache(maxsize=4096)
def category_code(category: str) -> int:
    """Stable code in ``1..CATEGORY_BUCKETS`` for a merchant category (crc32 bucket)."""
    return zlib.crc32(category.encode()) % CATEGORY_BUCKETS + 1


@lru_cache(maxsize=256)
def channel_code(channel: str) -> int:
    """``1..5`` for the known channels, ``6`` for anything else."""
    try:
        return CHANNEL_CODES.index(channel) + 1
    except ValueError:
        return len(CHANNEL_CODES) + 1
