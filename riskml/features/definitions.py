"""The feature contract: names, dtypes, windows, defaults. Pure constants, no heavy imports.

Two kinds of features (see README, "Feature store"):

* **exact per transaction** — customer windows, ratios, distinct counts, night share, new-device
  flag, seconds since previous transaction, the behavioural sequence and the request-time
  features. They describe the world strictly before the transaction (``ts' < ts``), to the
  microsecond. Offline they are computed vectorised from the whole dataset; online they are
  computed at request time from the customer's *history state* (the recent transactions) by
  :func:`riskml.features.realtime.customer_features`.
* **snapshot-granular** — terminal and device volumes, label-delayed risk, device distinct
  customers, and the customer's own label-aware fraud history (``cust_lbl_*``). They are
  daily snapshots taken at 00:00 UTC, computed from transactions strictly before the snapshot
  and from labels with ``label_available_at <= snapshot``. A transaction sees the latest
  snapshot at or before its timestamp, offline (point-in-time join) and online (materialised
  rows) alike.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

#: The versioned Feast FeatureService that is the model's feature contract.
FEATURE_SERVICE = "fraud_v2"
#: The serving-side twin of :data:`FEATURE_SERVICE`: same feature names and dtypes, assembled from
#: the online history state + on-demand features instead of the offline per-transaction view.
ONLINE_FEATURE_SERVICE = "fraud_v2_online"
#: Every FeatureService version kept in the repo (a model trained on an older one can still get
#: its training set and its online vector), newest last: service -> its serving twin.
FEATURE_SERVICES: dict[str, str] = {
    "fraud_v1": "fraud_v1_online",
    FEATURE_SERVICE: ONLINE_FEATURE_SERVICE,
}
#: Default Feast project.
PROJECT = "riskml"

#: Customer windows: name -> seconds. All windows are ``[t - w, t)`` (strictly before t).
CUSTOMER_WINDOWS: dict[str, int] = {"1h": 3600, "1d": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400}
#: Terminal volume windows (snapshot-granular).
TERMINAL_WINDOWS: dict[str, int] = {"1d": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400}
#: Window for label-delayed risk and device distinct customers.
RISK_WINDOW_S = 30 * 86_400
#: Label-aware risk windows of terminals and devices: suffix -> (days, lag days). Snapshot ``k``
#: counts the transactions of days ``[k - lag - days, k - lag)`` and, among them, the frauds
#: whose label is available at the snapshot (``label_available_at <= 00:00 UTC of day k``).
#: Lag 0 sees the labels that arrived quickly (a burst at a terminal shows within days); the
#: lagged windows look at transactions old enough for most labels to have arrived, so their
#: ratio is not diluted by the recent, still unlabelled ones (a fixed 7-day chargeback delay
#: leaves the lag-0 1- and 7-day windows empty).
RISK_WINDOWS: dict[str, tuple[int, int]] = {
    "1d": (1, 0),
    "7d": (7, 0),
    "30d": (30, 0),
    "1d_lag7": (1, 7),
    "7d_lag7": (7, 7),
    "30d_lag7": (30, 7),
}
#: The risk window of ``fraud_v1`` (and of the behavioural sequence's ``terminal_risk``).
V1_RISK_WINDOWS: tuple[str, ...] = ("30d",)
#: Days a label-aware window reaches back (its days + lag): what the label ledgers keep.
RISK_HORIZON_DAYS = max(days + lag for days, lag in RISK_WINDOWS.values())
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
#: Amount ratios are capped here: a valid request of 1.0 after a history of 1e-300 amounts
#: would otherwise be 1e300, infinite as the models' float32, and XGBoost refuses the batch.
MAX_AMOUNT_RATIO = 1e6


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


def _risk_features(prefix: str, windows: tuple[str, ...]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for w in windows:
        if RISK_WINDOWS[w][1]:  # a lagged window has its own volume
            out.append((f"{prefix}cnt_{w}", "int64"))
        out += [(f"{prefix}fraud_known_{w}", "int64"), (f"{prefix}risk_{w}", "float64")]
    return out


#: Terminal snapshot features of ``fraud_v1`` (view ``terminal_stats``).
TERMINAL_FEATURES_V1: tuple[tuple[str, str], ...] = (
    *((f"term_cnt_{w}", "int64") for w in TERMINAL_WINDOWS),
    *_risk_features("term_", V1_RISK_WINDOWS),
)
#: Terminal snapshot features (view ``terminal_stats``): every label-aware window.
TERMINAL_FEATURES: tuple[tuple[str, str], ...] = (
    *((f"term_cnt_{w}", "int64") for w in TERMINAL_WINDOWS),
    *_risk_features("term_", tuple(RISK_WINDOWS)),
)

#: Device snapshot features of ``fraud_v1`` (view ``device_stats``).
DEVICE_FEATURES_V1: tuple[tuple[str, str], ...] = (
    ("dev_cnt_30d", "int64"),
    ("dev_customers_30d", "int64"),
    *_risk_features("dev_", V1_RISK_WINDOWS),
)
#: Device snapshot features (view ``device_stats``).
DEVICE_FEATURES: tuple[tuple[str, str], ...] = (
    *((f"dev_cnt_{w}", "int64") for w in TERMINAL_WINDOWS),
    ("dev_customers_30d", "int64"),
    *_risk_features("dev_", tuple(RISK_WINDOWS)),
)

#: Prefix of the customer's own label-aware fraud history (view ``customer_stats``), apart from
#: the exact per-transaction ``cust_*`` features: ``cust_cnt_1d`` is the exact window before
#: the transaction, ``cust_lbl_cnt_1d_lag7`` a daily snapshot's volume.
CUSTOMER_RISK_PREFIX = "cust_lbl_"
#: The customer's own label-aware fraud history in the contract (``fraud_v2`` on): per window
#: of :data:`RISK_WINDOWS` its known frauds and risk (and a lagged window's volume), computed
#: like the terminal's (daily snapshots, labels available at the snapshot).
CUSTOMER_RISK_FEATURES: tuple[tuple[str, str], ...] = tuple(
    _risk_features(CUSTOMER_RISK_PREFIX, tuple(RISK_WINDOWS))
)
#: Every field of view ``customer_stats``: :data:`CUSTOMER_RISK_FEATURES` and the recent
#: windows' volumes (``cust_lbl_cnt_<w>``, the denominators the label fold needs; the exact
#: ``cust_cnt_<w>`` already carry that signal, so the contract leaves them out).
CUSTOMER_STATS_FIELDS: tuple[tuple[str, str], ...] = (
    *((f"{CUSTOMER_RISK_PREFIX}cnt_{w}", "int64") for w in TERMINAL_WINDOWS),
    *CUSTOMER_RISK_FEATURES,
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


def feature_contract(service: str = FEATURE_SERVICE) -> list[tuple[str, str]]:
    """Tabular features of a FeatureService version in model order, with dtypes (``int64`` /
    ``float64``); its serving twin (``<service>_online``) has the same contract.

    The same names and order come out of :func:`riskml.features.store.training_set` and
    :meth:`riskml.features.online.OnlineFeatures.get`. The sequence is separate:
    :func:`sequence_contract`. ``fraud_v1``: 30-day label-aware risk only; ``fraud_v2``: every
    window of :data:`RISK_WINDOWS`, 1/7/30-day device volumes, and the customer's own
    label-aware fraud history (:data:`CUSTOMER_RISK_FEATURES`).
    """
    service = service.removesuffix("_online")
    customer: tuple[tuple[str, str], ...] = ()
    if service == "fraud_v1":
        terminal, device = TERMINAL_FEATURES_V1, DEVICE_FEATURES_V1
    elif service == FEATURE_SERVICE:
        terminal, device = TERMINAL_FEATURES, DEVICE_FEATURES
        customer = CUSTOMER_RISK_FEATURES
    else:
        raise ValueError(
            f"unknown feature service {service!r}; known: {', '.join(FEATURE_SERVICES)}"
        )
    return [*CUSTOMER_FEATURES, *REQUEST_FEATURES, *terminal, *device, *customer, *ENTITY_FLAGS]


def feature_names(service: str = FEATURE_SERVICE) -> list[str]:
    return [name for name, _ in feature_contract(service)]


def feature_groups(service: str = FEATURE_SERVICE) -> dict[str, tuple[str, ...]]:
    """The tabular features by signal family, in model order (ablations remove one at a time).

    Every feature of :func:`feature_contract` is in exactly one group; ``label_risk`` holds the
    label-aware terminal and device windows that ``fraud_v1`` lacks, ``customer_label_risk``
    the customer's own label-aware fraud history (``fraud_v2`` on)."""
    names = feature_names(service)
    added = tuple(w for w in RISK_WINDOWS if w not in V1_RISK_WINDOWS)
    label_risk = {n for p in ("term_", "dev_") for n, _ in _risk_features(p, added)}
    velocity = {n for n, _ in CUSTOMER_FEATURES if n.startswith("cust_") and "_distinct_" not in n}
    velocity -= {"cust_night_share_30d", "cust_new_device"}
    groups = {
        "customer_velocity": velocity,
        "customer_behaviour": {n for n, _ in CUSTOMER_FEATURES} - velocity,
        "request": {n for n, _ in REQUEST_FEATURES},
        "terminal": {n for n, _ in TERMINAL_FEATURES} - label_risk | {"unknown_terminal"},
        "device": {n for n, _ in DEVICE_FEATURES} - label_risk | {"unknown_device"},
        "label_risk": label_risk,
        "customer_label_risk": {n for n, _ in CUSTOMER_RISK_FEATURES},
    }
    return {g: tuple(n for n in names if n in members) for g, members in groups.items()}


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
