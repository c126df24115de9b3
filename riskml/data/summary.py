"""Dataset summary: volumes, entities, fraud rates, label delays; JSON + a PNG chart.

``summarize(path)`` works on anything :func:`riskml.data.io.scan_transactions` reads (a dataset
root, its ``transactions/`` directory or one schema-exact Parquet file) and returns plain JSON
types. Definitions:

* ``devices`` counts distinct ``device_id`` other than ``"unknown"``.
* ``fraud_rate`` = fraud rows / rows; per scenario, ``rate`` = scenario rows / all rows and
  ``share_of_fraud`` = scenario rows / fraud rows (fraud rows only, grouped by
  ``fraud_scenario``).
* ``daily`` has one entry per UTC day from the first to the last day, empty days included
  (``rows`` 0, ``fraud_rate`` null).
* ``label_delay_days``: ``label_available_at - ts`` in days over fraud rows; median and p90 use
  linear interpolation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from riskml.data.schema import UNKNOWN, SchemaError

SUMMARY_JSON = "summary.json"
DAILY_PNG = "daily.png"


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def summarize(path: Path) -> dict[str, Any]:
    """Summary statistics of a transactions dataset as a JSON-ready dict.

    Raises ``FileNotFoundError`` when there is no dataset at ``path`` and
    :class:`~riskml.data.schema.SchemaError` when its files are not in the schema.
    """
    import polars as pl

    try:
        return _summarize(Path(path))
    except pl.exceptions.PolarsError as exc:
        raise SchemaError(f"{path}: not a riskml transactions dataset ({exc})") from exc


def _summarize(path: Path) -> dict[str, Any]:
    import polars as pl

    from riskml.data.io import scan_transactions

    lf = scan_transactions(Path(path))
    fraud = pl.col("is_fraud") == 1
    overview = lf.select(
        rows=pl.len(),
        customers=pl.col("customer_id").n_unique(),
        terminals=pl.col("terminal_id").n_unique(),
        devices=pl.col("device_id").filter(pl.col("device_id") != UNKNOWN).n_unique(),
        start=pl.col("ts").min(),
        end=pl.col("ts").max(),
        fraud_rows=fraud.sum(),
        amount_total=pl.col("amount").sum(),
        fraud_amount=pl.col("amount").filter(fraud).sum(),
    ).collect()
    o = overview.row(0, named=True)
    rows = int(o["rows"])

    scenarios = (
        lf.filter(fraud)
        .group_by("fraud_scenario")
        .agg(rows=pl.len())
        .sort(["rows", "fraud_scenario"], descending=[True, False])
        .collect()
    )
    fraud_rows = int(o["fraud_rows"] or 0)
    scenario_list = [
        {
            "scenario": r["fraud_scenario"],
            "rows": int(r["rows"]),
            "rate": r["rows"] / rows,
            "share_of_fraud": r["rows"] / fraud_rows,
        }
        for r in scenarios.iter_rows(named=True)
    ]

    daily: list[dict[str, Any]] = []
    if rows:
        per_day = (
            lf.group_by(pl.col("ts").dt.date().alias("day"))
            .agg(rows=pl.len(), fraud_rows=fraud.sum().cast(pl.Int64))
            .collect()
        )
        first, last = o["start"].date(), o["end"].date()
        calendar = pl.DataFrame({"day": pl.date_range(first, last, "1d", eager=True)})
        filled = (
            calendar.join(per_day, on="day", how="left")
            .with_columns(pl.col("rows", "fraud_rows").fill_null(0))
            .sort("day")
        )
        daily = [
            {
                "day": r["day"].isoformat(),
                "rows": int(r["rows"]),
                "fraud_rows": int(r["fraud_rows"]),
                "fraud_rate": r["fraud_rows"] / r["rows"] if r["rows"] else None,
            }
            for r in filled.iter_rows(named=True)
        ]

    us_per_day = 86_400 * 1_000_000
    delay = (
        lf.filter(fraud)
        .select(
            d=(pl.col("label_available_at") - pl.col("ts")).dt.total_microseconds() / us_per_day
        )
        .select(
            n=pl.len(),
            median=pl.col("d").quantile(0.5, "linear"),
            p90=pl.col("d").quantile(0.9, "linear"),
            mean=pl.col("d").mean(),
            min=pl.col("d").min(),
            max=pl.col("d").max(),
        )
        .collect()
        .row(0, named=True)
    )

    return {
        "path": str(path),
        "rows": rows,
        "customers": int(o["customers"]),
        "terminals": int(o["terminals"]),
        "devices": int(o["devices"]),
        "start": o["start"].isoformat() if o["start"] is not None else None,
        "end": o["end"].isoformat() if o["end"] is not None else None,
        "days": len(daily),
        "fraud_rows": fraud_rows,
        "fraud_rate": fraud_rows / rows if rows else None,
        "amount_total": _num(o["amount_total"]) or 0.0,
        "fraud_amount": _num(o["fraud_amount"]) or 0.0,
        "scenarios": scenario_list,
        "daily": daily,
        "label_delay_days": {
            "fraud_rows": int(delay["n"]),
            **{k: _num(delay[k]) for k in ("median", "p90", "mean", "min", "max")},
        },
    }


def overview_rows(summary: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a summary, for a key/value table."""
    delay = summary["label_delay_days"]
    return {
        "rows": summary["rows"],
        "customers": summary["customers"],
        "terminals": summary["terminals"],
        "devices (known)": summary["devices"],
        "first tx (UTC)": summary["start"] or "-",
        "last tx (UTC)": summary["end"] or "-",
        "days": summary["days"],
        "fraud rows": summary["fraud_rows"],
        "fraud rate": summary["fraud_rate"] if summary["fraud_rate"] is not None else "-",
        "label delay median (days)": delay["median"] if delay["median"] is not None else "-",
        "label delay p90 (days)": delay["p90"] if delay["p90"] is not None else "-",
    }


def daily_stats_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """min / median / max of daily volume and fraud rate (short, whatever the day count)."""
    import statistics

    days = summary["daily"]
    vols = [d["rows"] for d in days]
    rates = [d["fraud_rate"] for d in days if d["fraud_rate"] is not None]
    if not vols:
        return []

    def stats(values: list[float]) -> tuple[Any, Any, Any]:
        if not values:
            return "-", "-", "-"
        return min(values), statistics.median(values), max(values)

    out = []
    for name, values in (("rows / day", vols), ("fraud rate / day", rates)):
        lo, med, hi = stats(values)
        out.append({"daily": name, "min": lo, "median": med, "max": hi})
    return out


def plot_daily(summary: dict[str, Any], png_path: Path) -> Path:
    """PNG chart: daily volume (bars, left axis) and fraud rate (line, right axis)."""
    import datetime as dt

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
    from matplotlib.figure import Figure

    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    days = date2num([dt.date.fromisoformat(d["day"]) for d in summary["daily"]])
    volume = [d["rows"] for d in summary["daily"]]
    rate = [
        100 * d["fraud_rate"] if d["fraud_rate"] is not None else float("nan")
        for d in summary["daily"]
    ]

    fig = Figure(figsize=(10, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.bar(days, volume, color="#9ecae1", label="transactions / day", width=0.8)
    ax.set_ylabel("transactions / day")
    ax.set_ylim(0, max([*volume, 1]) * 1.25)  # headroom for the legend
    ax2 = ax.twinx()
    ax2.plot(days, rate, color="#d62728", marker="o", markersize=3, label="fraud rate (%)")
    ax2.set_ylabel("fraud rate (%)")
    ax2.set_ylim(bottom=0)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    rate_txt = f"{100 * summary['fraud_rate']:.2f}%" if summary["fraud_rate"] is not None else "-"
    ax.set_title(f"{summary['rows']:,} transactions, fraud rate {rate_txt}", loc="left")
    handles = ax.get_legend_handles_labels()
    handles2 = ax2.get_legend_handles_labels()
    ax.legend(handles[0] + handles2[0], handles[1] + handles2[1], loc="upper left")
    if not len(days):
        ax.text(0.5, 0.5, "no transactions", ha="center", va="center", transform=ax.transAxes)
    fig.savefig(png_path, format="png")
    return png_path
