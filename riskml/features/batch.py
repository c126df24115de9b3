"""Batch feature computation: vectorised, point-in-time correct by construction.

``compute_features(transactions)`` returns five tables (all polars):

``customer_tx``       one row per transaction (Feast entity ``transaction``, join key ``tx_id``,
                      ``event_timestamp = ts``): the exact per-transaction customer features,
                      computed over windows ``[ts - w, ts)`` — strictly before the transaction —
                      plus the inputs of the behavioural sequence.
``terminal_stats``    daily snapshots at 00:00 UTC per terminal (rows only where a value
                      changes): volumes over 1/7/30 d and label-delayed fraud risk, counting a
                      fraud only once ``label_available_at <= snapshot``.
``device_stats``      the same for devices: volume, distinct customers (ring signal), risk.
``customer_stats``    the same for customers: the customer's own label-aware fraud history
                      (``cust_lbl_*``: volumes, known frauds and risk per window).
``customer_history``  each customer's history state as of ``as_of`` (the online seed for the
                      request-time features, see :mod:`riskml.features.realtime`).

Windows are computed with sorted searches and prefix sums over ``(customer, ts)``-sorted arrays
(numpy), distinct counts with polars rolling windows; snapshot features with per-day prefix sums
on a dense entity × day grid. Nothing ever looks at a row at or after the time it describes.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from riskml.features.definitions import (
    CUSTOMER_RISK_PREFIX,
    CUSTOMER_WINDOWS,
    DISTINCT_WINDOW_S,
    LONG_WINDOW_S,
    NIGHT_END_HOUR,
    NO_PREVIOUS,
    RISK_WINDOW_S,
    RISK_WINDOWS,
    SEQ_LEN,
    TERMINAL_WINDOWS,
    UNKNOWN_DEVICE,
    category_code,
    channel_code,
)

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl

US = 1_000_000
DAY_US = 86_400 * US

#: File names of the computed sources under the features directory.
SOURCES = {
    "customer_tx": "customer_tx.parquet",
    "terminal_stats": "terminal_stats.parquet",
    "device_stats": "device_stats.parquet",
    "customer_stats": "customer_stats.parquet",
    "customer_history": "customer_history.parquet",
}
SUMMARY = "features.json"
#: :class:`BuildSummary` fields left out of ``features.json``: where and how fast this build ran,
#: not what it built, so the same dataset gives a byte-identical file (the returned summary
#: keeps them).
RUN_FIELDS = ("out_dir", "compute_seconds", "write_seconds", "timings")


class FeatureBuildError(ValueError):
    """The input cannot be turned into features (empty, wrong schema...)."""


@dataclass
class FeatureTables:
    customer_tx: pl.DataFrame
    terminal_stats: pl.DataFrame
    device_stats: pl.DataFrame
    customer_stats: pl.DataFrame
    customer_history: pl.DataFrame
    as_of: dt.datetime
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class BuildSummary:
    dataset: str
    out_dir: str
    rows: int
    customers: int
    terminal_rows: int
    device_rows: int
    customer_stats_rows: int
    history_rows: int
    start: str
    end: str
    as_of: str
    compute_seconds: float
    write_seconds: float
    timings: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_features_dir() -> Path:
    from riskml.settings import get_settings

    return get_settings().home / "features"


def build_features(
    dataset: Path,
    out: Path | None = None,
    *,
    as_of: dt.datetime | None = None,
) -> BuildSummary:
    """Read a transactions dataset, compute every feature source, write Parquet under ``out``.

    ``out`` defaults to ``<RISKML_HOME>/features``. ``as_of`` is the cut-off of the customer
    history state (default: just after the last transaction). Returns a summary (also written
    as ``features.json``, without the run's timings and output path: :data:`RUN_FIELDS`).
    """
    from riskml.data.io import read_transactions

    out = Path(out) if out is not None else default_features_dir()
    t0 = time.perf_counter()
    tx = read_transactions(Path(dataset))
    read_s = time.perf_counter() - t0
    tables = compute_features(tx, as_of=as_of)
    tables.timings = {"read": read_s, **tables.timings}
    compute_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    write_tables(tables, out)
    write_s = time.perf_counter() - t1
    ts = tx["ts"]
    summary = BuildSummary(
        dataset=str(Path(dataset).resolve()),
        out_dir=str(out.resolve()),
        rows=tx.height,
        customers=tables.customer_history.height,
        terminal_rows=tables.terminal_stats.height,
        device_rows=tables.device_stats.height,
        customer_stats_rows=tables.customer_stats.height,
        history_rows=tables.customer_history.height,
        start=str(ts.min()),
        end=str(ts.max()),
        as_of=tables.as_of.isoformat(),
        compute_seconds=round(compute_s, 3),
        write_seconds=round(write_s, 3),
        timings={k: round(v, 3) for k, v in tables.timings.items()},
    )
    record = {k: v for k, v in summary.to_dict().items() if k not in RUN_FIELDS}
    (out / SUMMARY).write_text(json.dumps(record, indent=2) + "\n")
    return summary


def build_feature_sources(dataset: Path, out: Path) -> dict[str, Any]:
    """:func:`build_features` for a pipeline task: the summary fields it logs."""
    summary = build_features(Path(dataset), Path(out)).to_dict()
    return {k: summary[k] for k in ("rows", "customers", "start", "end", "as_of", "out_dir")}


def write_tables(tables: FeatureTables, out: Path) -> dict[str, Path]:
    """Write every source of :data:`SOURCES` (atomically per file) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, filename in SOURCES.items():
        frame: pl.DataFrame = getattr(tables, name)
        path = out / filename
        tmp = path.with_suffix(".tmp.parquet")
        frame.write_parquet(tmp, compression="lz4", statistics=True)
        tmp.replace(path)
        paths[name] = path
    return paths


# ---------------------------------------------------------------------------------------------
def _codes(series: pl.Series) -> np.ndarray:
    """Integer codes for a string column: equal strings, equal codes (values not dense)."""
    import numpy as np
    import polars as pl

    return series.cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)


def _customer_order(c: np.ndarray, ts: np.ndarray, tx_id: pl.Series) -> np.ndarray:
    """Row order by (customer, ts, tx_id) — the same order as the online history state."""
    import numpy as np
    import polars as pl

    order = np.lexsort((ts, c))
    cs, tss = c[order], ts[order]
    if np.any((cs[1:] == cs[:-1]) & (tss[1:] == tss[:-1])):  # ties: break by tx_id
        frame = pl.DataFrame({"c": c, "ts": ts, "tx_id": tx_id, "i": np.arange(len(c))})
        order = frame.sort(["c", "ts", "tx_id"])["i"].to_numpy()
    return order


def _segments(cs: np.ndarray, tss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per sorted row: start of its customer segment, and first row with the same (c, ts)."""
    import numpy as np

    n = len(cs)
    ar = np.arange(n)
    new_c = np.r_[True, cs[1:] != cs[:-1]]
    seg = np.maximum.accumulate(np.where(new_c, ar, 0))
    new_t = new_c | np.r_[True, tss[1:] != tss[:-1]]
    hi = np.maximum.accumulate(np.where(new_t, ar, 0))
    return seg, hi


def _window_lo(tss: np.ndarray, seg: np.ndarray, hi: np.ndarray, width_us: int) -> np.ndarray:
    """First row (>= seg) with ts >= ts_i - width, per row; ts sorted within each segment."""
    import numpy as np

    # The rows of a segment are sorted by ts; search inside it via offset keys per segment.
    n = len(tss)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    base = int(tss.min())
    span = int(tss.max()) - base + width_us + 1
    seg_ids = np.cumsum(np.r_[True, seg[1:] != seg[:-1]]) - 1
    per_chunk = max(1, (2**62) // span)  # segments per chunk without int64 overflow
    lo = np.empty(n, dtype=np.int64)
    n_seg = int(seg_ids[-1]) + 1
    for first in range(0, n_seg, per_chunk):
        a, b = np.searchsorted(seg_ids, [first, first + per_chunk], "left")
        key = (seg_ids[a:b] - first) * span + (tss[a:b] - base)
        target = key - width_us
        floor = (seg_ids[a:b] - first) * span
        lo[a:b] = np.searchsorted(key, np.maximum(target, floor), "left") + a
    lo = np.maximum(lo, seg)
    return np.minimum(lo, hi)


class _WindowSums:
    """Sums of ``values[lo:hi]`` that depend on nothing but the window's own values.

    Amounts that are whole cents (almost all money) are summed exactly as integer cents and
    divided by 100 once — the result is the correctly rounded decimal sum, bit-identical to
    :func:`riskml.features.realtime.amount_sum` online. Other values add a long-double prefix
    sum (agrees online to ~1e-15 relative).
    """

    def __init__(self, values: np.ndarray) -> None:
        import numpy as np

        from riskml.features.realtime import cents_split

        cents, exact = cents_split(values)
        self.cents = np.concatenate([[0], np.cumsum(cents, dtype=np.int64)])
        self.inexact = np.concatenate([[0], np.cumsum(~exact, dtype=np.int64)])
        rest = np.where(exact, 0.0, values)
        self.rest = np.concatenate([[0.0], np.cumsum(rest, dtype=np.longdouble)])

    def __call__(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        import numpy as np

        exact_part = (self.cents[hi] - self.cents[lo]) / 100
        mixed = (self.inexact[hi] - self.inexact[lo]) > 0
        rest = (self.rest[hi] - self.rest[lo]).astype(np.float64)
        return np.where(mixed, exact_part + rest, exact_part)


def _range_max(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    import numpy as np

    padded = np.append(values, 0.0)
    idx = np.empty(2 * len(lo), dtype=np.int64)
    idx[0::2] = lo
    idx[1::2] = hi
    out = np.maximum.reduceat(padded, idx)[0::2] if len(lo) else np.zeros(0)
    return np.where(hi > lo, out, 0.0)


def compute_features(tx: pl.DataFrame, *, as_of: dt.datetime | None = None) -> FeatureTables:
    """Compute all feature tables from schema-exact transactions (see module docstring)."""
    import numpy as np
    import polars as pl

    from riskml.data.schema import COLUMN_NAMES

    missing = [c for c in COLUMN_NAMES if c not in tx.columns]
    if missing:
        raise FeatureBuildError(f"transactions lack columns: {', '.join(missing)}")
    if tx.height == 0:
        raise FeatureBuildError("no transactions: cannot build features from an empty dataset")
    timings: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        timings[name] = now - t
        t = now

    ts_all = tx["ts"].dt.epoch("us").to_numpy().astype(np.int64)
    c_all, cust_names = _codes_with_names(tx["customer_id"])
    order = _customer_order(c_all, ts_all, tx["tx_id"])  # sorted by (customer, ts, tx_id)
    cs = c_all[order]
    tss = ts_all[order]
    n = len(tss)
    seg, hi = _segments(cs, tss)
    amount = tx["amount"].to_numpy().astype(np.float64)[order]
    window_sum = _WindowSums(amount)
    lap("sort")

    feats: dict[str, Any] = {}
    for name, seconds in CUSTOMER_WINDOWS.items():
        lo = _window_lo(tss, seg, hi, seconds * US)
        cnt = hi - lo
        total = np.where(cnt > 0, window_sum(lo, hi), 0.0)
        feats[f"cust_cnt_{name}"] = cnt
        feats[f"cust_sum_{name}"] = total
        feats[f"cust_mean_{name}"] = np.where(cnt > 0, total / np.maximum(cnt, 1), 0.0)
        feats[f"cust_max_{name}"] = _range_max(amount, lo, hi)
    has_prev = hi > seg
    prev_ts = tss[np.maximum(hi - 1, 0)]
    feats["cust_secs_since_prev"] = np.where(has_prev, (tss - prev_ts) / US, NO_PREVIOUS)
    lap("windows")

    term_all, term_names = _codes_with_names(tx["terminal_id"])
    dev_all, dev_names = _codes_with_names(tx["device_id"])
    device_c = dev_all[order]
    rolled = (
        pl.DataFrame(
            {
                "c": cs,
                "ts": pl.Series(tss).cast(pl.Datetime("us", "UTC")),
                "t": term_all[order],
                "d": device_c,
                "m": _codes(tx["merchant_category"])[order],
            },
        )
        .rolling("ts", period=f"{DISTINCT_WINDOW_S}s", closed="left", group_by="c")
        .agg(
            pl.col("t").n_unique().alias("nt"),
            pl.col("d").n_unique().alias("nd"),
            pl.col("m").n_unique().alias("nm"),
            pl.len().alias("k"),
        )
    )
    if not np.array_equal(rolled["c"].to_numpy(), cs):  # polars keeps the sorted input order
        raise AssertionError("rolling window output order changed")
    empty = rolled["k"].to_numpy() == 0
    for out_name, col in (
        ("cust_distinct_terminals_7d", "nt"),
        ("cust_distinct_devices_7d", "nd"),
        ("cust_distinct_categories_7d", "nm"),
    ):
        feats[out_name] = np.where(empty, 0, rolled[col].to_numpy()).astype(np.int64)
    lap("distinct")

    lo_long = _window_lo(tss, seg, hi, LONG_WINDOW_S * US)
    night = ((tss // (3600 * US)) % 24) < NIGHT_END_HOUR
    ncs = np.concatenate([[0], np.cumsum(night, dtype=np.int64)])
    n_long = hi - lo_long
    night_cnt = ncs[hi] - ncs[lo_long]
    feats["cust_night_share_30d"] = np.where(n_long > 0, night_cnt / np.maximum(n_long, 1), 0.0)
    # new device: no earlier transaction (ts' < ts) of this customer on this device in 30 d.
    pair = cs * (int(device_c.max()) + 1) + device_c
    o2 = np.lexsort((tss, pair))
    p2, t2 = pair[o2], tss[o2]
    run_start = np.maximum.accumulate(
        np.where(np.r_[True, (p2[1:] != p2[:-1]) | (t2[1:] != t2[:-1])], np.arange(n), 0)
    )
    prev = np.maximum(run_start - 1, 0)
    seen = (run_start > 0) & (p2[prev] == p2) & (t2[prev] >= t2 - LONG_WINDOW_S * US)
    new_device = np.empty(n, dtype=np.int64)
    new_device[o2] = (~seen).astype(np.int64)
    feats["cust_new_device"] = new_device
    feats["unknown_customer"] = (~has_prev).astype(np.int64)
    lap("night_newdevice")

    # -- terminal / device / customer daily snapshots (original row order from here on) --------
    day0 = int(ts_all.min() // DAY_US)
    last_day = int(ts_all.max() // DAY_US)
    n_snap = last_day - day0 + 2  # snapshots day0 .. last_day + 1 (00:00 UTC each)
    tx_day = ts_all // DAY_US - day0
    label_us = tx["label_available_at"].dt.epoch("us").to_numpy().astype(np.int64)
    label_day = -(-label_us // DAY_US) - day0  # first snapshot at/after the label time
    fraud = tx["is_fraud"].to_numpy().astype(bool)
    term_grid = _snapshot_grid(
        term_all, len(term_names), tx_day, label_day, fraud, n_snap, prefix="term_"
    )
    known_dev = (tx["device_id"] != UNKNOWN_DEVICE).to_numpy()
    dev_grid = _snapshot_grid(
        dev_all[known_dev],
        len(dev_names),
        tx_day[known_dev],
        label_day[known_dev],
        fraud[known_dev],
        n_snap,
        prefix="dev_",
        customers=c_all[known_dev],
    )
    cust_grid = _snapshot_grid(
        c_all, len(cust_names), tx_day, label_day, fraud, n_snap, prefix=CUSTOMER_RISK_PREFIX
    )
    lap("snapshots")

    term_risk = term_grid["term_risk_30d"][term_all, tx_day]
    terminal_stats = _emit_on_change(term_grid, term_names, "terminal_id", day0)
    device_stats = _emit_on_change(dev_grid, dev_names, "device_id", day0)
    device_stats = device_stats.filter(pl.col("device_id") != UNKNOWN_DEVICE)
    customer_stats = _emit_on_change(cust_grid, cust_names, "customer_id", day0)
    lap("emit")

    # rows stay in (customer, ts, tx_id) order: the features are already in that order
    customer_tx = tx.select("tx_id", "customer_id", pl.col("ts").alias("event_timestamp"))[
        order
    ].with_columns(
        *(pl.Series(k, v) for k, v in feats.items()),
        pl.Series("seq_amount", amount),
        pl.Series("seq_category", _map_codes(tx["merchant_category"], category_code)[order]),
        pl.Series("seq_channel", _map_codes(tx["channel"], channel_code)[order]),
        pl.Series("seq_terminal_risk", term_risk[order]),
    )
    lap("customer_tx")

    cutoff = _utc(as_of) if as_of is not None else None
    cut_us = to_us(cutoff) if cutoff else int(ts_all.max()) + 1
    history = _history_state(tx, order, cs, tss, term_risk[order], cut_us)
    lap("history")
    as_of_dt = dt.datetime.fromtimestamp(cut_us / US, tz=dt.UTC)
    return FeatureTables(
        customer_tx=customer_tx,
        terminal_stats=terminal_stats,
        device_stats=device_stats,
        customer_stats=customer_stats,
        customer_history=history,
        as_of=as_of_dt,
        timings=timings,
    )


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def to_us(value: dt.datetime) -> int:
    """Exact microseconds since the epoch of a (naive = UTC) datetime."""
    return (_utc(value) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def _codes_with_names(series: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """Codes (``_codes``) and the code -> name Series (null where a code is unused)."""
    import numpy as np
    import polars as pl

    codes = _codes(series)
    size = int(codes.max()) + 1 if len(codes) else 0
    uniq = pl.DataFrame({"code": codes, "name": series}).unique("code")
    names = (
        pl.DataFrame({"code": np.arange(size, dtype=np.int64)})
        .join(uniq, on="code", how="left")
        .sort("code")["name"]
    )
    return codes, names


def _map_codes(series: pl.Series, fn: Any) -> np.ndarray:
    import numpy as np

    uniq = series.unique()
    mapping = {v: fn(v) for v in uniq.to_list()}
    return series.replace_strict(mapping, return_dtype=_pl_int64()).to_numpy().astype(np.int64)


def _pl_int64() -> Any:
    import polars as pl

    return pl.Int64


def _snapshot_grid(
    ent: np.ndarray,
    n_ent: int,
    tx_day: np.ndarray,
    label_day: np.ndarray,
    fraud: np.ndarray,
    n_snap: int,
    *,
    prefix: str,
    customers: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Dense entity × snapshot-day features named ``<prefix>...``. Snapshot k (00:00 UTC of
    day0 + k) sees transactions of days k-w .. k-1 and frauds whose label is available at or
    before it; ``customers`` (per transaction) adds the distinct customers over 30 days."""
    import numpy as np

    windows = {w: s // 86_400 for w, s in TERMINAL_WINDOWS.items()}
    width = n_snap + 1
    daily = _accumulate(ent, tx_day + 1, np.ones(len(ent), dtype=np.int64), n_ent, width)
    cum = np.cumsum(daily, axis=1)[:, :n_snap]  # cum[:, k] = tx on days < k
    out: dict[str, np.ndarray] = {}
    cols = np.arange(n_snap)

    def volume(days: int, lag: int = 0) -> np.ndarray:
        """Transactions of days [k - lag - days, k - lag) per snapshot k."""
        hi = np.maximum(cols - lag, 0)
        return cum[:, hi] - cum[:, np.maximum(hi - days, 0)]

    for name, days in windows.items():
        out[f"{prefix}cnt_{name}"] = volume(days)
    if customers is not None:
        out[f"{prefix}customers_30d"] = _distinct_customers(ent, customers, tx_day, n_ent, n_snap)
    # label-aware fraud of window (days, lag): a fraud of day d counts at snapshots
    # max(d + lag + 1, label_day) .. d + lag + days
    fent, fday, flabel = ent[fraud], tx_day[fraud], label_day[fraud]
    for name, (days, lag) in RISK_WINDOWS.items():
        vol = out[f"{prefix}cnt_{name}"] if not lag else volume(days, lag)
        if lag:
            out[f"{prefix}cnt_{name}"] = vol
        start = np.maximum(fday + lag + 1, flabel)
        known = _interval_counts(fent, start, fday + lag + days + 1, n_ent, n_snap)
        out[f"{prefix}fraud_known_{name}"] = known
        out[f"{prefix}risk_{name}"] = np.where(vol > 0, known / np.maximum(vol, 1), 0.0)
    return out


def _distinct_customers(
    ent: np.ndarray, cust: np.ndarray, tx_day: np.ndarray, n_ent: int, n_snap: int
) -> np.ndarray:
    """Distinct customers per entity over the 30 days before each snapshot."""
    import numpy as np
    import polars as pl

    days = RISK_WINDOW_S // 86_400
    n_c = int(cust.max()) + 1 if len(cust) else 1
    span = int(tx_day.max()) + 1 if len(tx_day) else 1
    key = np.sort(pl.Series((ent * n_c + cust) * span + tx_day).unique().to_numpy())
    e, rest = np.divmod(key, n_c * span)
    c, d = np.divmod(rest, span)
    same = np.r_[False, (e[1:] == e[:-1]) & (c[1:] == c[:-1])]
    prev_d = np.r_[0, d[:-1]]
    start = np.where(same, np.maximum(d + 1, prev_d + days + 1), d + 1)
    return _interval_counts(e, start, d + days + 1, n_ent, n_snap)


def _accumulate(
    row: np.ndarray, col: np.ndarray, weight: np.ndarray, n_rows: int, n_cols: int
) -> np.ndarray:
    """Dense ``n_rows × n_cols`` matrix of summed weights (a fast ``np.add.at``)."""
    import numpy as np

    flat = np.bincount(row * n_cols + col, weights=weight, minlength=n_rows * n_cols)
    return flat.astype(np.int64).reshape(n_rows, n_cols)


def _interval_counts(
    ent: np.ndarray, start: np.ndarray, end: np.ndarray, n_ent: int, n_snap: int
) -> np.ndarray:
    """Per entity and snapshot, how many ``[start, end)`` intervals cover it."""
    import numpy as np

    end = np.minimum(end, n_snap)
    ok = start < end
    rows = np.concatenate([ent[ok], ent[ok]])
    cols = np.concatenate([start[ok], end[ok]])
    weights = np.concatenate([np.ones(ok.sum()), -np.ones(ok.sum())])
    diff = _accumulate(rows, cols, weights, n_ent, n_snap + 1)
    return np.cumsum(diff, axis=1)[:, :n_snap]


def _emit_on_change(
    grid: dict[str, np.ndarray], names: pl.Series, key: str, day0: int
) -> pl.DataFrame:
    """Rows (entity, snapshot) where any feature differs from the entity's previous snapshot."""
    import numpy as np
    import polars as pl

    cols = list(grid)
    first = grid[cols[0]]
    changed = np.zeros(first.shape, dtype=bool)
    for col in cols:
        g = grid[col]
        prev = np.concatenate([np.zeros((g.shape[0], 1), dtype=g.dtype), g[:, :-1]], axis=1)
        changed |= g != prev
    # snapshot-major order (time-sorted output without a sort); unused codes never change
    snap_idx, ent_idx = np.nonzero(changed.T)
    ts = (snap_idx + day0).astype(np.int64) * DAY_US
    data: dict[str, Any] = {
        key: names.gather(ent_idx).alias(key),
        "event_timestamp": pl.Series(ts).cast(pl.Datetime("us", "UTC")),
    }
    for col in cols:
        data[col] = grid[col][ent_idx, snap_idx]
    return pl.DataFrame(data)


def _history_state(
    tx: pl.DataFrame,
    order: np.ndarray,
    cs: np.ndarray,
    tss: np.ndarray,
    term_risk: np.ndarray,
    cut_us: int,
) -> pl.DataFrame:
    """Each customer's history state from its transactions with ``ts < cut_us`` (inputs sorted
    by customer, ts, tx_id; ``order`` maps them to rows of ``tx``)."""
    import numpy as np
    import polars as pl

    idx = np.flatnonzero(tss < cut_us)
    c = cs[idx]
    t = tss[idx]
    n = len(idx)
    if n == 0:
        keep = np.zeros(0, dtype=bool)
    else:
        last = np.r_[c[1:] != c[:-1], True]
        seg_end = np.minimum.accumulate(np.where(last, np.arange(n), n)[::-1])[::-1]
        keep = (t >= t[seg_end] - LONG_WINDOW_S * US) | (seg_end - np.arange(n) < SEQ_LEN)
    rows = idx[keep]
    src = order[rows]
    by_src = np.argsort(src)  # gather in storage order (cache friendly), re-sort per customer
    sub = tx.select(
        "customer_id",
        "ts",
        "tx_id",
        "amount",
        "terminal_id",
        "device_id",
        "merchant_category",
        "channel",
    )[src[by_src]].with_columns(
        pl.Series("rank", by_src),
        pl.Series("hist_ts", tss[rows][by_src]),
        pl.Series("hist_terminal_risk", term_risk[rows][by_src]),
    )
    rank = pl.col("rank")
    return (
        sub.group_by("customer_id")
        .agg(
            pl.col("ts").max().alias("event_timestamp"),
            pl.col("hist_ts").max().alias("hist_event_us"),
            pl.col("tx_id").sort_by(rank).alias("hist_tx_id"),
            pl.col("hist_ts").sort_by(rank),
            pl.col("amount").sort_by(rank).alias("hist_amount"),
            pl.col("terminal_id").sort_by(rank).alias("hist_terminal"),
            pl.col("device_id").sort_by(rank).alias("hist_device"),
            pl.col("merchant_category").sort_by(rank).alias("hist_category"),
            pl.col("channel").sort_by(rank).alias("hist_channel"),
            pl.col("hist_terminal_risk").sort_by(rank),
        )
        .sort("customer_id")
    )
