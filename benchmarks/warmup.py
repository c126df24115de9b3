"""Benchmark: a replica's first decisions, cold (no warm-up, the baseline) vs after
``serving.warmup.warm_up`` (what an Ingress replica does before it takes traffic), side by side.

    python -m benchmarks.warmup --out out/bench/warmup.json

Builds the serving benchmark's world (``tests.support.world``: simulated customers, a bundle,
Feast features on the local Redis), then starts ``--pairs`` pairs of fresh processes, one cold
and one warmed (alternating which goes first), each building the colocated components in
process (``serving.inprocess.LocalComponents``) and deciding the replay day's first
``--decisions`` transactions one by one through the ladder. A fresh process is the only honest
"cold": whatever one run touched stays warm for the next. Reported per mode: the first
decision's milliseconds, the mean of the first five, and the median of the rest (the steady
state), over the pairs; and the warm-up's own rounds and milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from riskml import __version__
from riskml.console import print_table, write_json


def _child(world_file: Path, rounds: int, decisions: int, redis_url: str) -> dict[str, Any]:
    import datetime as dt

    import polars as pl

    from riskml.decision.config import IngressConfig
    from riskml.decision.ladder import Ladder
    from serving.inprocess import LocalComponents
    from serving.schemas import TransactionRequest
    from serving.warmup import warm_up
    from tests.support.world import World

    saved = json.loads(world_file.read_text())
    world = World(
        root=Path(saved["root"]),
        features_dir=Path(saved["features_dir"]),
        bundle=Path(saved["bundle"]),
        replay_day=dt.datetime.fromisoformat(saved["replay_day"]),
        day=pl.read_parquet(saved["day"]),
    )
    store = world.store("redis", redis_url)
    requests = world.requests()[:decisions]

    async def run() -> tuple[Any, list[float]]:
        components = LocalComponents(world.app_args(store), offload=True)
        try:
            report = await warm_up(components.stages(), components.versions, rounds=rounds)
            ladder = Ladder(
                components.stages(),
                IngressConfig(),
                versions=components.versions,
                champion=components.champion,
                feature_names=components.feature_names,
            )
            ms = []
            for r in requests:
                tx = TransactionRequest.model_validate(r).model_dump()
                t0 = time.perf_counter()
                await ladder.decide([tx], arrived=t0, budget_ms=50)
                ms.append((time.perf_counter() - t0) * 1e3)
            return report, ms
        finally:
            components.close()

    try:
        report, ms = asyncio.run(run())
    finally:
        world.drop_store(store)
    return {"warm_up": report.__dict__, "decision_ms": ms}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--decisions", type=int, default=80)
    p.add_argument("--rounds", type=int, default=20, help="warm-up rounds of the warmed mode")
    p.add_argument(
        "--redis-url", default=os.environ.get("RISKML_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child is not None:
        print(json.dumps(_child(a.child, a.rounds, a.decisions, a.redis_url)))
        return {}

    from tests.support.world import build_world

    runs: dict[str, list[dict[str, Any]]] = {"cold": [], "warmed": []}
    with tempfile.TemporaryDirectory(prefix="riskml-warmup-") as tmp:
        world = build_world(Path(tmp) / "world")
        # the child processes rebuild the world from its paths and the day's parquet
        world.day.write_parquet(Path(tmp) / "day.parquet")
        world_file = Path(tmp) / "world.json"
        world_file.write_text(
            json.dumps(
                {
                    "root": str(world.root),
                    "features_dir": str(world.features_dir),
                    "bundle": str(world.bundle),
                    "replay_day": world.replay_day.isoformat(),
                    "day": str(Path(tmp) / "day.parquet"),
                }
            )
        )
        for i in range(a.pairs):
            order = ("cold", "warmed") if i % 2 == 0 else ("warmed", "cold")
            for mode in order:
                rounds = a.rounds if mode == "warmed" else 0
                cmd = [sys.executable, "-m", "benchmarks.warmup", "--child", str(world_file)]
                cmd += ["--rounds", str(rounds), "--decisions", str(a.decisions)]
                cmd += ["--redis-url", a.redis_url]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                runs[mode].append(json.loads(out.strip().splitlines()[-1]))

    def summary(mode: str) -> dict[str, Any]:
        firsts = [r["decision_ms"][0] for r in runs[mode]]
        first5 = [statistics.mean(r["decision_ms"][:5]) for r in runs[mode]]
        steady = [statistics.median(r["decision_ms"][20:]) for r in runs[mode]]
        return {
            "first_ms_per_run": [round(x, 3) for x in firsts],
            "first_ms_median": round(statistics.median(firsts), 3),
            "first5_mean_ms_median": round(statistics.median(first5), 3),
            "steady_median_ms": round(statistics.median(steady), 3),
            "warm_up_first_ms": [r["warm_up"]["first_ms"] for r in runs[mode]],
            "warm_up_last_ms": [r["warm_up"]["last_ms"] for r in runs[mode]],
        }

    result: dict[str, Any] = {
        "benchmark": "warmup",
        "riskml": __version__,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "settings": {"pairs": a.pairs, "decisions": a.decisions, "rounds": a.rounds},
        "cold": summary("cold"),
        "warmed": summary("warmed"),
    }
    print_table(
        "first decisions of a fresh replica (in process, Redis)",
        [
            {
                "mode": m,
                "first ms (median)": result[m]["first_ms_median"],
                "mean of first 5": result[m]["first5_mean_ms_median"],
                "steady median": result[m]["steady_median_ms"],
            }
            for m in ("cold", "warmed")
        ],
    )
    if a.out:
        write_json(a.out, result)
    return result


if __name__ == "__main__":
    main()
