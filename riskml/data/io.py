"""Parquet IO for transaction datasets.

A *dataset* is a directory::

    <root>/manifest.json                  what produced it (params, seed, counts, fraud rates)
    <root>/transactions/YYYY-MM-DD.parquet one file per UTC day, rows sorted by ts, schema-exact

``read_transactions`` accepts a dataset root, its ``transactions/`` directory, or a single Parquet
file already in the schema. External data goes through :mod:`riskml.data.importer` first.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from riskml.data.schema import COLUMN_NAMES, SchemaError, polars_schema, validate_transactions

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

MANIFEST = "manifest.json"
TX_DIR = "transactions"


def day_path(root: Path, day: dt.date) -> Path:
    return Path(root) / TX_DIR / f"{day.isoformat()}.parquet"


def write_day(root: Path, day: dt.date, df: pl.DataFrame, *, validate: bool = True) -> Path:
    """Write one day's transactions (sorted by ts) to ``<root>/transactions/<day>.parquet``."""
    if validate:
        df = validate_transactions(df)
    path = day_path(root, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.sort("ts").write_parquet(path, compression="zstd", statistics=True)
    return path


def write_manifest(root: Path, manifest: dict[str, Any]) -> Path:
    path = Path(root) / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    return path


def read_manifest(root: Path) -> dict[str, Any]:
    path = Path(root) / MANIFEST
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text()))


def transaction_files(path: Path) -> list[Path]:
    """The Parquet files of a dataset root, a ``transactions/`` dir, or a single file."""
    path = Path(path)
    if path.is_file():
        return [path]
    if (path / TX_DIR).is_dir():
        path = path / TX_DIR
    if not path.is_dir():
        raise FileNotFoundError(f"no transactions dataset at {path}")
    files = sorted(path.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no Parquet files in {path}")
    return files


def scan_transactions(
    path: Path, start: dt.datetime | None = None, end: dt.datetime | None = None
) -> pl.LazyFrame:
    """A lazy scan of a dataset, optionally restricted to ``start <= ts < end`` (UTC).

    The scan enforces the columns and their types; the row checks (value rules, nulls, ...)
    need the rows, so they run in :func:`read_transactions`, not here.
    """
    import polars as pl

    lf = pl.scan_parquet(transaction_files(path), schema=polars_schema())
    if start is not None:
        lf = lf.filter(pl.col("ts") >= _utc(start))
    if end is not None:
        lf = lf.filter(pl.col("ts") < _utc(end))
    return lf.select(COLUMN_NAMES)


def read_transactions(
    path: Path,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    *,
    validate: bool = True,
) -> pl.DataFrame:
    """Read a dataset into memory, sorted by ts (stable), and check it against the schema.

    ``validate`` (the default) runs :func:`~riskml.data.schema.validate_transactions` on what
    was read: a file that does not hold the schema's columns and types, or rows with nulls, ids /
    channels / currencies / merchant categories that break the schema's value rules, bad amounts
    or labels, or repeated ``tx_id``, raise :class:`SchemaError` naming the column and a bad
    value. Vectorised: about 0.1-0.3 s on 1.8M rows. ``validate=False`` skips the row checks
    (the columns and types are still enforced by the scan).
    """
    try:
        df = scan_transactions(path, start, end).collect().sort("ts", maintain_order=True)
    except Exception as exc:  # polars raises several types on schema drift
        if isinstance(exc, FileNotFoundError):
            raise
        raise SchemaError(f"{path}: not a riskml transactions dataset ({exc})") from exc
    if not validate:
        return df
    try:
        return validate_transactions(df)
    except SchemaError as exc:
        raise SchemaError(f"{path}: {exc}") from exc


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)
