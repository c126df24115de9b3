"""Request-time customer features from a compact history state: the one online implementation.

The *history state* of a customer is its recent transactions (every transaction of the last
``LONG_WINDOW_S`` before its newest one, and always at least the last ``SEQ_LEN``), sorted by
``(ts, tx_id)``. It lives in the online store as Feast array features (view
``customer_history``) and is updated by :func:`fold_transaction` (write-back, idempotent by
``tx_id``). :func:`customer_features` and :func:`sequence_features` compute, for a request at
time ``t``, exactly the features that the offline batch (:mod:`riskml.features.batch`) computes
vectorised for a transaction at ``t``: windows ``[t - w, t)``, strictly before ``t``.

Pure numpy, no I/O; the functions take and return plain dicts/arrays.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from riskml.features.definitions import (
    CUSTOMER_FEATURES,
    CUSTOMER_WINDOWS,
    DISTINCT_WINDOW_S,
    LONG_WINDOW_S,
    MAX_AMOUNT_RATIO,
    NIGHT_END_HOUR,
    NO_PREVIOUS,
    NO_RATIO,
    REQUEST_FEATURES,
    SEQ_FIELDS,
    SEQ_LEN,
    SEQUENCE_FEATURE,
    category_code,
    channel_code,
)

US = 1_000_000
HOUR_US = 3600 * US
DAY_US = 86_400 * US

#: Fields of the history state (Feast feature names of view ``customer_history``), with the
#: transaction key each one is filled from.
STATE_FIELDS: dict[str, str] = {
    "hist_tx_id": "tx_id",
    "hist_ts": "ts_us",
    "hist_amount": "amount",
    "hist_terminal": "terminal_id",
    "hist_device": "device_id",
    "hist_category": "merchant_category",
    "hist_channel": "channel",
    "hist_terminal_risk": "terminal_risk",
}
_NUMERIC = {"hist_ts": np.int64, "hist_amount": np.float64, "hist_terminal_risk": np.float64}


class State(dict[str, np.ndarray]):
    """A customer's history state: ``STATE_FIELDS`` -> equal-length arrays sorted by time."""

    @classmethod
    def empty(cls) -> State:
        return cls(
            {k: np.array([], dtype=_NUMERIC.get(k, object)) for k in STATE_FIELDS},
        )

    @classmethod
    def from_lists(cls, values: Mapping[str, Sequence[Any] | None]) -> State:
        """Build from online-store values (lists; ``None`` for a missing customer)."""
        state = cls()
        n = None
        for key in STATE_FIELDS:
            raw = values.get(key)
            seq = [] if raw is None else list(raw)
            arr = np.asarray(seq, dtype=_NUMERIC.get(key, object))
            if n is None:
                n = len(arr)
            elif len(arr) != n:
                raise ValueError(f"corrupt history state: {key} has {len(arr)} entries, not {n}")
            state[key] = arr
        return state

    def to_lists(self) -> dict[str, list[Any]]:
        return {k: self[k].tolist() for k in STATE_FIELDS}

    def __len__(self) -> int:  # number of transactions, not of fields
        return len(self["hist_ts"]) if "hist_ts" in self else 0


#: Outcomes of folding one transaction into a history state (:func:`fold_transaction`).
APPLIED, DUPLICATE, LATE = "applied", "duplicate", "late"


def fold_transaction(state: State, tx: Mapping[str, Any]) -> tuple[State, str]:
    """Add one transaction to ``state``; returns ``(new_state, outcome)``.

    ``outcome`` is :data:`APPLIED` (the state changed), :data:`DUPLICATE` (its ``tx_id`` is
    already in the state: idempotent) or :data:`LATE` (older than the retention: it would be
    trimmed at once, so the state stays as it is). Retention keeps every transaction within
    ``LONG_WINDOW_S`` of the newest one and always the last ``SEQ_LEN``; the transaction's own
    time may be before or after the others' (out-of-order folds give the same state).
    """
    tx_id = str(tx["tx_id"])
    if tx_id in set(state["hist_tx_id"].tolist()):
        return state, DUPLICATE
    new = State()
    for key, src in STATE_FIELDS.items():
        value = tx[src]
        if key not in _NUMERIC:
            value = str(value)
        new[key] = np.append(state[key], np.asarray([value], dtype=state[key].dtype))
    order = np.lexsort((new["hist_tx_id"].astype(str), new["hist_ts"]))
    keep = retention_mask(new["hist_ts"][order])
    idx = order[keep]
    out = State({k: v[idx] for k, v in new.items()})
    if tx_id in set(out["hist_tx_id"].tolist()):
        return out, APPLIED
    return state, LATE


def fold_transactions(
    state: State, txs: Sequence[Mapping[str, Any]], version: int | None = None
) -> tuple[State, list[str], int | None]:
    """:func:`fold_transaction` of each of ``txs`` in turn (one customer's), and the state's
    version after them (each applied transaction: ``max(its newest time, version + 1)``).

    Same results as folding one by one. Fast path, when the transactions come in time order and
    none is older than the state's newest (a stream read in order): each one is the newest when
    it folds, so each is applied (duplicates aside) and the state is the concatenation trimmed
    once by :func:`retention_mask` (trimming is monotone: what a later fold trims, the last one
    trims too) — one sort instead of one per transaction. A ``tx_id`` already in the state or
    repeated (a redelivery, a re-publish) takes the one-by-one path."""
    ts = [int(tx["ts_us"]) for tx in txs]
    ids = [str(tx["tx_id"]) for tx in txs]
    newest = int(state["hist_ts"].max()) if len(state) else None
    in_order = all(a <= b for a, b in itertools.pairwise(ts))
    # a tx_id seen before (a redelivery) may have been trimmed by a fold in between: one by one
    fresh = len(set(ids)) == len(ids) and set(ids).isdisjoint(state["hist_tx_id"].tolist())
    if not fresh or not in_order or (newest is not None and ts and ts[0] < newest):
        outcomes = []
        for tx in txs:
            state, outcome = fold_transaction(state, tx)
            if outcome == APPLIED:
                top = int(state["hist_ts"].max())
                version = max(top, (version or 0) + 1)
            outcomes.append(outcome)
        return state, outcomes, version
    for t in ts:
        version = max(t, (version or 0) + 1)
    added = txs
    outcomes = [APPLIED] * len(txs)
    if not added:
        return state, outcomes, version
    new = State()
    for key, src in STATE_FIELDS.items():
        values = [tx[src] if key in _NUMERIC else str(tx[src]) for tx in added]
        new[key] = np.concatenate([state[key], np.asarray(values, dtype=state[key].dtype)])
    order = np.lexsort((new["hist_tx_id"].astype(str), new["hist_ts"]))
    idx = order[retention_mask(new["hist_ts"][order])]
    return State({k: v[idx] for k, v in new.items()}), outcomes, version


def apply_transaction(state: State, tx: Mapping[str, Any]) -> tuple[State, bool]:
    """:func:`fold_transaction` with a flag: ``(new_state, changed)``. Idempotent by ``tx_id``:
    a transaction already in the state (or one old enough to have been trimmed already) leaves
    it unchanged."""
    new_state, outcome = fold_transaction(state, tx)
    return new_state, outcome == APPLIED


def retention_mask(sorted_ts: np.ndarray) -> np.ndarray:
    """Which entries of a time-sorted history to keep (see :func:`apply_transaction`)."""
    n = len(sorted_ts)
    if n == 0:
        return np.zeros(0, dtype=bool)
    keep = sorted_ts >= sorted_ts[-1] - LONG_WINDOW_S * US
    keep[max(0, n - SEQ_LEN) :] = True
    return keep


def cents_split(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer cents of each value and whether the value is exactly a whole number of cents."""
    values = np.asarray(values, dtype=np.float64)
    cents = np.round(values * 100)
    exact = (cents / 100 == values) & (np.abs(cents) < 2**53)
    return np.where(exact, cents, 0).astype(np.int64), exact


def amount_sum(values: np.ndarray) -> float:
    """Sum of amounts, bit-identical to the batch window sums (see ``batch._WindowSums``)."""
    cents, exact = cents_split(values)
    total = int(cents.sum()) / 100
    if exact.all():
        return total
    return total + float(np.asarray(values, dtype=np.float64)[~exact].sum())


def _hour(ts_us: np.ndarray | int) -> np.ndarray | int:
    return (np.asarray(ts_us) // HOUR_US) % 24


#: The look-backs :func:`customer_features` cuts the state at, in µs: the windows, then the
#: distinct-values window, then the long window (one ``searchsorted`` for all of them).
_LOOKBACKS_US = np.asarray(
    [s * US for s in CUSTOMER_WINDOWS.values()] + [DISTINCT_WINDOW_S * US, LONG_WINDOW_S * US],
    dtype=np.int64,
)


def customer_features(state: State, ts_us: int, device_id: str) -> dict[str, float | int]:
    """Customer features of a transaction at ``ts_us`` (µs since epoch) on ``device_id``.

    The state is sorted by time, so every window ``[t - w, t)`` is a slice ``[lo, hi)``; all
    the slices' bounds come from one ``searchsorted``, and every window's amount sum from one
    split of the amounts into cents (what :func:`amount_sum` does per window: the same
    integer sums, so the same floats).
    """
    ts = state["hist_ts"]
    hi = int(np.searchsorted(ts, ts_us, "left"))  # entries strictly before t
    bounds = np.searchsorted(ts[:hi], ts_us - _LOOKBACKS_US, "left").tolist()
    out: dict[str, float | int] = {}
    amount = state["hist_amount"][:hi]
    cents, exact = cents_split(amount)
    all_exact = bool(exact.all())
    cum = np.concatenate(([0], np.cumsum(cents))).tolist() if all_exact else None
    for (name, _seconds), lo in zip(CUSTOMER_WINDOWS.items(), bounds, strict=False):
        cnt = hi - lo
        if not cnt:
            total = 0.0
        elif cum is not None:
            total = (cum[hi] - cum[lo]) / 100
        else:
            total = amount_sum(amount[lo:hi])
        out[f"cust_cnt_{name}"] = cnt
        out[f"cust_sum_{name}"] = total
        out[f"cust_mean_{name}"] = total / cnt if cnt else 0.0
        out[f"cust_max_{name}"] = float(amount[lo:hi].max()) if cnt else 0.0
    out["cust_secs_since_prev"] = (ts_us - int(ts[hi - 1])) / US if hi else NO_PREVIOUS
    lo = bounds[-2]
    out["cust_distinct_terminals_7d"] = len(set(state["hist_terminal"][lo:hi].tolist()))
    out["cust_distinct_devices_7d"] = len(set(state["hist_device"][lo:hi].tolist()))
    out["cust_distinct_categories_7d"] = len(set(state["hist_category"][lo:hi].tolist()))
    lo = bounds[-1]
    n_long = hi - lo
    night = int(np.count_nonzero(np.asarray(_hour(ts[lo:hi])) < NIGHT_END_HOUR))
    out["cust_night_share_30d"] = night / n_long if n_long else 0.0
    out["cust_new_device"] = int(device_id not in set(state["hist_device"][lo:hi].tolist()))
    out["unknown_customer"] = int(hi == 0)
    return out


def request_features(
    amount: np.ndarray,
    ts_us: np.ndarray,
    cnt_7d: np.ndarray,
    mean_7d: np.ndarray,
    cnt_30d: np.ndarray,
    mean_30d: np.ndarray,
) -> dict[str, np.ndarray]:
    """Request-time features, vectorised (used by the on-demand views offline and online)."""
    amount = np.asarray(amount, dtype=np.float64)
    ts_us = np.asarray(ts_us, dtype=np.int64)

    def ratio(cnt: np.ndarray, mean: np.ndarray) -> np.ndarray:
        cnt = np.asarray(cnt, dtype=np.int64)
        mean = np.asarray(mean, dtype=np.float64)
        ok = (cnt > 0) & (mean > 0)
        with np.errstate(over="ignore"):
            value = np.minimum(amount / np.where(ok, mean, 1.0), MAX_AMOUNT_RATIO)
        return np.where(ok, value, NO_RATIO)

    hour = (ts_us // HOUR_US) % 24
    return {
        "cust_amount_ratio_7d": ratio(cnt_7d, mean_7d),
        "cust_amount_ratio_30d": ratio(cnt_30d, mean_30d),
        "tx_log_amount": np.log1p(amount),
        "tx_hour": hour.astype(np.int64),
        "tx_dow": ((ts_us // DAY_US + 3) % 7).astype(np.int64),  # Monday = 0
        "tx_is_night": (hour < NIGHT_END_HOUR).astype(np.int64),
    }


def sequence_rows(
    ts_us: np.ndarray,
    amount: np.ndarray,
    category_codes: np.ndarray | Sequence[int],
    channel_codes: np.ndarray | Sequence[int],
    terminal_risk: np.ndarray,
    now_us: np.ndarray | int,
) -> np.ndarray:
    """Sequence elements (``SEQ_FIELDS`` order, float32) for past transactions seen at ``now_us``
    (one time for all, or one per element).

    Vectorised over elements; shared by the offline builder and :func:`sequence_features`. The
    columns are filled into one float64 array and rounded to float32 once."""
    ts_us = np.asarray(ts_us, dtype=np.int64)
    rows = np.empty((len(ts_us), len(SEQ_FIELDS)), dtype=np.float64)
    rows[:, 0] = 1.0
    rows[:, 1] = np.log1p(np.asarray(amount, dtype=np.float64))
    rows[:, 2] = np.log1p((np.asarray(now_us, dtype=np.int64) - ts_us) / US)
    rows[:, 3] = _hour(ts_us)
    rows[:, 4] = category_codes
    rows[:, 5] = channel_codes
    rows[:, 6] = terminal_risk
    return rows.astype(np.float32)


def sequence_features(state: State, ts_us: int) -> np.ndarray:
    """The last ``SEQ_LEN`` transactions strictly before ``ts_us``, oldest first, left-padded."""
    out = np.zeros((SEQ_LEN, len(SEQ_FIELDS)), dtype=np.float32)
    ts = state["hist_ts"]
    hi = int(np.searchsorted(ts, ts_us, "left"))
    lo = max(0, hi - SEQ_LEN)
    if hi == lo:
        return out
    out[SEQ_LEN - (hi - lo) :] = sequence_rows(
        ts[lo:hi],
        state["hist_amount"][lo:hi],
        [category_code(c) for c in state["hist_category"][lo:hi].tolist()],
        [channel_code(c) for c in state["hist_channel"][lo:hi].tolist()],
        state["hist_terminal_risk"][lo:hi],
        ts_us,
    )
    return out


# -- the on-demand view ``customer_realtime`` (Feast python mode) --------------------------


def _at(values: Sequence[Any] | None, i: int) -> Any:
    return None if values is None else values[i]


def realtime_batch(inputs: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """Body of the on-demand view ``customer_realtime`` (Feast python mode, batched lists)."""
    return realtime_with_states(inputs)[0]


def realtime_with_states(
    inputs: Mapping[str, Sequence[Any]], *, sequence_arrays: bool = False
) -> tuple[dict[str, list[Any]], list[State]]:
    """:func:`realtime_batch`, and the history state of every row it computed from.
    ``sequence_arrays``: each row's sequence as its ``(SEQ_LEN, len(SEQ_FIELDS))`` float32 array
    (serving's reads) instead of the flat list Feast's on-demand view returns."""
    ts_list = [int(v) for v in inputs["ts_us"]]
    n = len(ts_list)
    out: dict[str, list[Any]] = {name: [] for name, _ in CUSTOMER_FEATURES}
    seqs: list[Any] = []
    states: list[State] = []
    for i in range(n):
        state = State.from_lists({k: _at(inputs.get(k), i) for k in STATE_FIELDS})
        states.append(state)
        feats = customer_features(state, ts_list[i], str(inputs["req_device_id"][i]))
        for name, _ in CUSTOMER_FEATURES:
            out[name].append(feats[name])
        seq = sequence_features(state, ts_list[i])
        seqs.append(seq if sequence_arrays else seq.ravel().tolist())
    req = request_features(
        np.asarray(inputs["amount"], dtype=np.float64),
        np.asarray(ts_list, dtype=np.int64),
        np.asarray(out["cust_cnt_7d"], dtype=np.int64),
        np.asarray(out["cust_mean_7d"], dtype=np.float64),
        np.asarray(out["cust_cnt_30d"], dtype=np.int64),
        np.asarray(out["cust_mean_30d"], dtype=np.float64),
    )
    for name, _ in REQUEST_FEATURES:
        out[name] = req[name].tolist()
    out[SEQUENCE_FEATURE] = seqs
    return out, states
