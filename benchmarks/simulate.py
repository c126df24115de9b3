"""Benchmark: the simulator's ``benchmark`` preset (~1.7M rows) against the pure Parquet write cost.

    python -m benchmarks.simulate --out out/bench/simulate.json

Runs the preset into a temporary directory (wall and CPU seconds, per-phase split), then, in the
same process, writes the same number of rows of random columns in the same schema as plain polars
frames, zstd: once as one file and once split into one file per day. Those two are the IO floor:
the gap between them and the simulator is what generating the data costs.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from riskml import __version__
from riskml.console import print_table, write_json
from riskml.data.schema import CHANNELS, polars_schema
from riskml.data.simulator import CATEGORIES, PRESETS, SimulationConfig, simulate


def _timed(fn: Any) -> tuple[Any, float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - w0, time.process_time() - c0


def random_frame(rows: int, days: int, seed: int = 0) -> pl.DataFrame:
    """``rows`` rows of random values in the transaction schema (ids, categories, timestamps)."""
    rng = np.random.default_rng(seed)
    start = 1_704_067_200_000_000  # 2024-01-01 UTC, in us
    ts = np.sort(start + rng.integers(0, days * 86_400_000_000, rows))

    def ids(prefix: str, width: int, high: int) -> pl.Expr:
        values = pl.Series(rng.integers(0, high, rows))
        return pl.concat_str(pl.lit(prefix), pl.lit(values).cast(pl.String).str.zfill(width))

    def pick(names: tuple[str, ...]) -> pl.Series:
        return pl.Series(list(names)).gather(rng.integers(0, len(names), rows))

    fraud = (rng.random(rows) < 0.01).astype(np.int8)
    df = pl.select(
        tx_id=pl.concat_str(pl.lit("X"), pl.int_range(rows).cast(pl.String).str.zfill(12)),
        ts=pl.lit(pl.Series(ts)).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        customer_id=ids("C", 6, 5_000),
        terminal_id=ids("T", 7, 10_000),
        device_id=ids("D", 8, 12_000),
        amount=pl.lit(pl.Series(np.round(rng.lognormal(3.5, 0.8, rows), 2))),
        currency=pl.lit("USD"),
        merchant_category=pick(CATEGORIES),
        channel=pick(CHANNELS),
        is_fraud=pl.lit(pl.Series(fraud)),
        fraud_scenario=pl.lit(pl.Series(np.where(fraud == 1, "high_amount", "none"))),
        label_available_at=pl.lit(pl.Series(ts))
        .cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC"),
    )
    assert df.schema == polars_schema()
    return df


def run(preset: str = "benchmark", seed: int = 7) -> dict[str, Any]:
    config = SimulationConfig.preset(preset, seed=seed)
    with tempfile.TemporaryDirectory(prefix="riskml-bench-") as tmp:
        phases: dict[str, float] = {}
        manifest, sim_wall, sim_cpu = _timed(
            lambda: simulate(config, Path(tmp) / "sim", timings=phases)
        )
        sim_bytes = sum(p.stat().st_size for p in (Path(tmp) / "sim").rglob("*.parquet"))
        rows = int(manifest["rows"])

        frame = random_frame(rows, config.days)
        one = Path(tmp) / "floor.parquet"
        _, one_wall, one_cpu = _timed(
            lambda: frame.write_parquet(one, compression="zstd", statistics=True)
        )
        one_bytes = one.stat().st_size
        per_day_dir = Path(tmp) / "floor"
        per_day_dir.mkdir()

        def write_per_day() -> None:
            day = pl.col("ts").dt.date()
            for (d,), part in frame.group_by(day, maintain_order=True):
                part.write_parquet(
                    per_day_dir / f"{d}.parquet", compression="zstd", statistics=True
                )

        _, day_wall, day_cpu = _timed(write_per_day)

    return {
        "benchmark": "simulate",
        "preset": preset,
        "params": {k: config.model_dump()[k] for k in ("n_customers", "n_terminals", "days")},
        "seed": seed,
        "rows": rows,
        "fraud_rate": manifest["fraud_rate"],
        "seconds": sim_wall,
        "cpu_seconds": sim_cpu,
        "rows_per_second": rows / sim_wall,
        "phases_seconds": {k: v for k, v in phases.items() if k != "total"},
        "parquet_bytes": sim_bytes,
        "baseline": {
            "what": "same rows, random columns in the same schema, polars write_parquet zstd",
            "one_file_seconds": one_wall,
            "one_file_cpu_seconds": one_cpu,
            "one_file_bytes": one_bytes,
            "per_day_files_seconds": day_wall,
            "per_day_files_cpu_seconds": day_cpu,
        },
        "simulator_vs_one_file_write": sim_wall / one_wall,
        "machine": {
            "cpus": os.cpu_count(),
            "polars_threads": pl.thread_pool_size(),
            "python": platform.python_version(),
            "polars": pl.__version__,
            "numpy": np.__version__,
            "riskml": __version__,
        },
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.simulate", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="JSON result file.")
    parser.add_argument("--preset", choices=PRESETS, default="benchmark")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    result = run(args.preset, args.seed)
    write_json(args.out, result)
    base = result["baseline"]
    print_table(
        f"simulate --preset {args.preset}: {result['rows']:,} rows",
        [
            {
                "what": "simulator (generate + write per day)",
                "wall s": result["seconds"],
                "cpu s": result["cpu_seconds"],
                "rows/s": result["rows_per_second"],
            },
            {
                "what": "IO floor: one Parquet file",
                "wall s": base["one_file_seconds"],
                "cpu s": base["one_file_cpu_seconds"],
                "rows/s": result["rows"] / base["one_file_seconds"],
            },
            {
                "what": "IO floor: one file per day",
                "wall s": base["per_day_files_seconds"],
                "cpu s": base["per_day_files_cpu_seconds"],
                "rows/s": result["rows"] / base["per_day_files_seconds"],
            },
        ],
    )
    print_table("simulator phases (wall s)", result["phases_seconds"])
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
