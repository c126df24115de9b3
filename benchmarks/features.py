"""Benchmark: feature build, point-in-time training set vs a plain pandas ``merge_asof``, and
online latency of one transaction's full ``fraud_v1`` vector on SQLite and Redis.

    python -m benchmarks.features --out out/bench/features.json

Simulates the ``benchmark`` preset (~1.7M transactions) unless ``--dataset`` is given, then:

* ``feature_seconds``: :func:`riskml.features.build_features` end to end (read, compute, write);
* ``training_set_seconds``: :func:`riskml.features.training_set` over every transaction
  (Feast ``get_historical_features`` on ``fraud_v1``: PIT joins + on-demand view + defaults);
* ``merge_asof_seconds``: the baseline, in the same run — read the same transactions and
  sources with pandas and ``merge_asof`` them by key (what a hand-written PIT join costs);
  ``pit_ratio`` = training_set / merge_asof;
* online latency (p50/p99 ms) of ``OnlineFeatures.get`` for single random transactions after
  ``materialize``, on SQLite and on the local Redis (own db index, own Feast project, removed at
  the end); also Feast's SDK path (``get_online_features`` on ``fraud_v1_online``) for reference.

Timings are best of ``--repeat`` runs (the machine is shared); every run is recorded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from riskml import __version__
from riskml.console import print_table, write_json


def _best(fn: Callable[[], Any], repeat: int) -> tuple[Any, float, dict[str, list[float]]]:
    """Best wall time of ``repeat`` runs, and every run's wall and CPU seconds (all threads)."""
    runs: dict[str, list[float]] = {"wall": [], "cpu": []}
    result = None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        runs["wall"].append(round(time.perf_counter() - t0, 3))
        runs["cpu"].append(round(time.process_time() - c0, 3))
    return result, min(runs["wall"]), runs


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def merge_asof_baseline(dataset: Path, features: Path) -> int:
    """A plain pandas point-in-time join of the same rows and sources (the reference cost)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from riskml.data.io import transaction_files

    cols = ["tx_id", "ts", "customer_id", "terminal_id", "device_id", "amount", "is_fraud"]
    left = pq.read_table(transaction_files(dataset), columns=cols).to_pandas()
    left = left.sort_values("ts", kind="stable")
    for source, key, drop in (
        ("customer_tx", "tx_id", ["customer_id"]),
        ("terminal_stats", "terminal_id", []),
        ("device_stats", "device_id", []),
        ("customer_stats", "customer_id", []),
    ):
        right = pd.read_parquet(features / f"{source}.parquet").drop(columns=drop)
        right = right.rename(columns={"event_timestamp": "_feature_ts"}).sort_values("_feature_ts")
        left = pd.merge_asof(
            left, right, left_on="ts", right_on="_feature_ts", by=key, direction="backward"
        ).drop(columns="_feature_ts")
    return len(left)


def raw_retrieval(cfg: Any, dataset: Path, since: dt.datetime) -> dict[str, Any]:
    """Time Feast ``get_historical_features(fraud_v1)`` alone for transactions since ``since``
    (also for stores whose result :func:`training_set` would reject)."""
    from riskml.features.store import entity_frame, get_store

    store = get_store(cfg)
    entities = entity_frame(dataset, since, None)
    request = entities.select(
        "tx_id", "customer_id", "terminal_id", "device_id", "event_timestamp", "amount", "ts_us"
    ).to_pandas()
    t0 = time.perf_counter()
    table = store.get_historical_features(
        entity_df=request, features=store.get_feature_service("fraud_v1")
    ).to_arrow()
    return {
        "seconds": round(time.perf_counter() - t0, 3),
        "rows_requested": entities.height,
        "rows": table.num_rows,
    }


def latency(fn: Callable[[dict[str, Any]], Any], requests: list[dict[str, Any]]) -> dict:
    for req in requests[:50]:  # warm-up: connections, caches
        fn(req)
    times = []
    for req in requests:
        t0 = time.perf_counter()
        fn(req)
        times.append(time.perf_counter() - t0)
    ms = np.asarray(times) * 1e3
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "n": len(times),
    }


def online_latency(
    cfg: Any, requests: list[dict[str, Any]], feast_requests: list[dict[str, Any]]
) -> dict[str, Any]:
    from riskml.features.online import OnlineFeatures
    from riskml.features.store import apply, materialize

    apply(cfg)
    _, mat_s, _ = _best(lambda: materialize(config=cfg), 1)
    online = OnlineFeatures(cfg)
    fast = latency(online.get, requests)
    sdk = latency(lambda r: online.get_via_feast([r]), feast_requests)
    wb = latency(lambda r: online.write_back({**r, "tx_id": r["tx_id"] + "-bench"}), requests[:300])
    return {
        "materialize_seconds": round(mat_s, 3),
        "get": fast,
        "feast_sdk_get": sdk,
        "write_back": wb,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON output file")
    parser.add_argument("--dataset", type=Path, help="existing dataset (default: simulate)")
    parser.add_argument("--preset", default="benchmark", help="simulator preset")
    parser.add_argument("--repeat", type=int, default=2, help="runs per timing (best kept)")
    parser.add_argument("--samples", type=int, default=2000, help="online requests per store")
    parser.add_argument("--redis-url", default="localhost:6379,db=7")
    parser.add_argument("--skip-redis", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    parser.add_argument(
        "--file-store-days", type=float, default=2.0,
        help="also time Feast's built-in file (dask) offline store on the last N days",
    )  # fmt: skip
    args = parser.parse_args(argv)

    import polars as pl

    from riskml.data.io import read_transactions
    from riskml.data.simulator import SimulationConfig, simulate
    from riskml.features.batch import build_features
    from riskml.features.store import StoreConfig, apply, get_store, training_set

    work = Path(tempfile.mkdtemp(prefix="riskml-bench-features-"))
    dataset = args.dataset
    if dataset is None:
        dataset = work / "dataset"
        simulate(SimulationConfig.preset(args.preset), dataset)
    features = work / "features"
    load_before = _load()
    summary, feature_s, feature_runs = _best(lambda: build_features(dataset, features), args.repeat)

    cfg = StoreConfig(home=work / "home", features_dir=features, project="bench")
    apply(cfg)
    store = get_store(cfg)
    end = dt.datetime.fromisoformat(summary.end)
    training_set(end - dt.timedelta(hours=1), None, config=cfg, store=store)  # warm registry
    frame, ts_s, ts_runs = _best(lambda: training_set(config=cfg, store=store), args.repeat)
    rows, base_s, base_runs = _best(lambda: merge_asof_baseline(dataset, features), args.repeat)
    assert rows == frame.height == summary.rows
    offline_stores: dict[str, Any] = {}
    if args.file_store_days > 0:
        since = end - dt.timedelta(days=args.file_store_days)
        for kind in ("polars", "file"):
            offline_stores[kind] = raw_retrieval(
                cfg.model_copy(update={"offline_store": kind}), dataset, since
            )

    # Online: random transactions of the last day, scored at their own time.
    last = read_transactions(dataset, end - dt.timedelta(days=1), None)
    pick = np.random.default_rng(0).choice(last.height, min(args.samples, last.height), False)
    requests = last[pick].select(
        "tx_id", "ts", "customer_id", "terminal_id", "device_id", "amount",
        "merchant_category", "channel",
    ).to_dicts()  # fmt: skip
    online: dict[str, Any] = {}
    stores: list[tuple[str, StoreConfig]] = [("sqlite", cfg)]
    if not args.skip_redis:
        project = f"bench_{uuid.uuid4().hex[:8]}"
        stores.append(
            (
                "redis",
                cfg.model_copy(
                    update={"online_store": "redis", "redis_url": args.redis_url,
                            "project": project}
                ),
            )
        )  # fmt: skip
    for name, store_cfg in stores:
        try:
            online[name] = online_latency(store_cfg, requests, requests[:300])
        finally:
            if name == "redis":
                get_store(store_cfg).teardown()

    result: dict[str, Any] = {
        "benchmark": "features",
        "riskml": __version__,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_before": load_before,
            "loadavg_after": _load(),
            "nice": os.nice(0),
        },
        "dataset": str(dataset),
        "rows": summary.rows,
        "feature_seconds": round(feature_s, 3),
        "feature_runs": feature_runs,
        "feature_compute_seconds": summary.compute_seconds,
        "feature_write_seconds": summary.write_seconds,
        "feature_phases": summary.timings,
        "training_set_seconds": round(ts_s, 3),
        "training_set_runs": ts_runs,
        "merge_asof_seconds": round(base_s, 3),
        "merge_asof_runs": base_runs,
        "pit_ratio": round(ts_s / base_s, 3),
        "pit_ratio_cpu": round(min(ts_runs["cpu"]) / min(base_runs["cpu"]), 3),
        "training_set_columns": frame.width,
        "offline_store_last_days": {"days": args.file_store_days, **offline_stores},
        "unknown_terminal_share": round(float(frame["unknown_terminal"].mean() or 0), 5),
        "online": online,
        "goals": {"feature_seconds": 10, "pit_ratio": 3, "online_p99_ms": 5},
    }
    for name in ("sqlite", "redis"):
        if name in online:
            result[f"online_{name}_p50_ms"] = online[name]["get"]["p50_ms"]
            result[f"online_{name}_p99_ms"] = online[name]["get"]["p99_ms"]
    write_json(args.out, result)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    del pl
    print_table(
        "features benchmark",
        {
            "rows": result["rows"],
            "feature_seconds": result["feature_seconds"],
            "training_set_seconds": result["training_set_seconds"],
            "merge_asof_seconds (baseline)": result["merge_asof_seconds"],
            "pit_ratio": result["pit_ratio"],
            **{
                f"{k} offline store, last {args.file_store_days:g} d": (
                    f"{v['seconds']} s ({v['rows']:,} of {v['rows_requested']:,} rows)"
                )
                for k, v in offline_stores.items()
            },
            **{
                f"{n} get p50/p99 ms": f"{v['get']['p50_ms']} / {v['get']['p99_ms']}"
                for n, v in online.items()
            },
            **{
                f"{n} feast sdk p50/p99 ms": (
                    f"{v['feast_sdk_get']['p50_ms']} / {v['feast_sdk_get']['p99_ms']}"
                )
                for n, v in online.items()
            },
            **{
                f"{n} write_back p50/p99 ms": (
                    f"{v['write_back']['p50_ms']} / {v['write_back']['p99_ms']}"
                )
                for n, v in online.items()
            },
        },
    )
    return result


if __name__ == "__main__":
    main()
