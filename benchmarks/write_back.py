"""Benchmark: the serving write-back alone, reading the customer's history again ("read", the
baseline) vs starting from the history its fetch read ("fetched", what serving does), side by
side in one run, on SQLite and on the local Redis.

    python -m benchmarks.write_back --out out/bench/write_back.json

Builds the serving benchmark's world (``tests.support.world``, run from a checkout: simulated
customers, Feast features as of the replay day), gives each mode a fresh online store of its own
(same contents), and feeds both the day's first ``--transactions`` in batches of ``--batch`` the
way an Ingress replica does: fetch the batch's features (``OnlineFeatures.fetch_many``, not
timed), then write it back (``write_back_many``, timed; the transaction's terminal risk from the
fetch in both modes, its ``history_base`` in "fetched" mode only). The two modes alternate batch
by batch (which goes first alternates too), so both see the same machine minutes. Reported per
mode: CPU ms per transaction (this thread's CPU time: the Redis server's own work is not in it)
and wall ms per batch (p50/p99), and the history reads the write-backs made. At the end the two
stores must hold the same history for every customer written back (checked: the benchmark fails
otherwise).
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

from riskml import __version__
from riskml.console import print_table, write_json

MODES = ("read", "fetched")


def _stats(cpu_s: list[float], wall_s: list[float], n_tx: int, reads: int) -> dict[str, Any]:
    wall_ms = np.asarray(wall_s) * 1e3
    return {
        "cpu_ms_per_tx": round(sum(cpu_s) * 1e3 / n_tx, 4),
        "batch_wall_p50_ms": round(float(np.percentile(wall_ms, 50)), 4),
        "batch_wall_p99_ms": round(float(np.percentile(wall_ms, 99)), 4),
        "history_reads": reads,
    }


def _count_history_reads(online: Any, reads: dict[str, int], mode: str) -> None:
    """Count the full history reads (``OnlineFeatures._histories``) in ``reads[mode]``."""
    histories = online._histories

    def counted(customers: list[str], conn: Any = None) -> Any:
        reads[mode] += 1
        return histories(customers, conn)

    online._histories = counted


def bench_store(
    world: Any, store: str, txs: list[dict[str, Any]], batch: int, redis_url: str
) -> dict[str, Any]:
    from riskml.features.online import OnlineFeatures
    from riskml.features.store import StoreConfig

    configs = {m: world.store(store, redis_url if store == "redis" else None) for m in MODES}
    try:
        online = {
            m: OnlineFeatures(StoreConfig.model_validate(c).resolved()) for m, c in configs.items()
        }
        reads = dict.fromkeys(MODES, 0)
        for mode in MODES:
            _count_history_reads(online[mode], reads, mode)
        cpu: dict[str, list[float]] = {m: [] for m in MODES}
        wall: dict[str, list[float]] = {m: [] for m in MODES}
        applied = dict.fromkeys(MODES, 0)
        for i, at in enumerate(range(0, len(txs), batch)):
            chunk = txs[at : at + batch]
            for mode in MODES if i % 2 == 0 else MODES[::-1]:
                got = online[mode].fetch_many(chunk)
                items = [
                    {
                        **tx,
                        "terminal_risk": float(vec["term_risk_30d"]),
                        **({"history_base": base} if mode == "fetched" else {}),
                    }
                    for tx, (vec, _flags, base) in zip(chunk, got, strict=True)
                ]
                c0, w0 = time.thread_time(), time.perf_counter()
                done = online[mode].write_back_many(items)
                wall[mode].append(time.perf_counter() - w0)
                cpu[mode].append(time.thread_time() - c0)
                applied[mode] += sum(done)
        out: dict[str, Any] = {m: _stats(cpu[m], wall[m], len(txs), reads[m]) for m in MODES}
        customers = sorted({str(tx["customer_id"]) for tx in txs})
        a, b = (online[m]._histories(customers) for m in MODES)
        differ = [c for c in customers if a[c][0].to_lists() != b[c][0].to_lists()]
        if differ or applied["read"] != applied["fetched"]:
            raise SystemExit(
                f"{store}: the modes disagree: {len(differ)} customers' histories differ "
                f"(first {differ[:1]}), applied {applied}"
            )
        out["applied"] = applied["read"]
        out["cpu_ratio_fetched_vs_read"] = round(
            out["fetched"]["cpu_ms_per_tx"] / out["read"]["cpu_ms_per_tx"], 3
        )
        return out
    finally:
        for c in configs.values():
            world.drop_store(c)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=4, help="write-back batch (serving: 4)")
    parser.add_argument("--stores", default="sqlite,redis")
    parser.add_argument("--redis-url", default="localhost:6379,db=6", help="Feast form")
    parser.add_argument("--customers", type=int, default=2000, help="simulated customers")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("out/bench/write_back.json"))
    a = parser.parse_args(argv)
    stores = [s.strip() for s in a.stores.split(",") if s.strip()]
    if not stores or set(stores) - {"sqlite", "redis"}:
        parser.error("--stores takes sqlite and/or redis")
    if a.batch < 1 or a.transactions < 2 * a.batch:
        parser.error("--batch must be >= 1 and --transactions at least two batches")

    from tests.support.world import build_world

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="riskml-bench-write-back-") as tmp:
        t0 = time.perf_counter()
        world = build_world(
            Path(tmp) / "world", customers=a.customers, terminals=a.customers, seed=a.seed
        )
        txs = world.requests()[: a.transactions]
        results["world"] = {
            "replay_day": world.replay_day.isoformat(),
            "transactions": len(txs),
            "customers": len({t["customer_id"] for t in txs}),
            "batch": a.batch,
            "build_s": round(time.perf_counter() - t0, 1),
        }
        for store in stores:
            results[store] = bench_store(world, store, txs, a.batch, a.redis_url)
    results["meta"] = {
        "riskml": __version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "modes": {
            "read": "write_back_many reads the customers' histories (baseline)",
            "fetched": "write_back_many starts from the fetch's history_base (version checked)",
        },
    }
    rows = [
        {
            "store": store,
            "mode": mode,
            "CPU ms/tx": results[store][mode]["cpu_ms_per_tx"],
            "batch p50 ms": results[store][mode]["batch_wall_p50_ms"],
            "batch p99 ms": results[store][mode]["batch_wall_p99_ms"],
            "history reads": results[store][mode]["history_reads"],
        }
        for store in stores
        for mode in MODES
    ]
    print_table(f"write-back, batches of {a.batch} ({len(txs)} transactions)", rows)
    write_json(a.out, results)
    return results


if __name__ == "__main__":
    main()
