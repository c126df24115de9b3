"""Benchmark: CPU per in-process decision, this tree against a baseline git revision, in
alternating processes on the same world (issue #26).

    python -m benchmarks.decision_cpu --baseline 88446d4 --store redis --out out/bench/cpu.json

One world (:func:`tests.support.world.build_world`: simulated transactions, features, an
XGBoost + GRU bundle trained in process) is built once; then, ``--rounds`` times, a child
process of the baseline's code (``git archive`` of the revision) and one of this tree's each
materialise a fresh online store from it and decide the replay day's transactions one at a time
through :class:`serving.inprocess.InProcessApp` (the ladder, the models and the policy as a
replica runs them, without Ray or HTTP): one pass to warm up, then ``--passes`` measured ones.
Reported per side: CPU µs per decision (``time.process_time``, per round and the median of the
rounds) and each stage's p50 wall time from the decisions' own ``latency_ms``. Alternating
processes, the same transactions and the same store kind make the two sides comparable on a
noisy machine; the figure is the median of the rounds' paired ratios (current / baseline of the
two back-to-back processes of a round), not an absolute time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

from benchmarks.common import load_average
from riskml.console import print_table, write_json

REPO_ROOT = Path(__file__).resolve().parents[1]


def _child(world_dir: Path, store: str, redis_url: str, passes: int) -> dict[str, Any]:
    """In a child process (this file run as a script: the tree under test comes first on
    ``PYTHONPATH``, this tree's or the baseline's, whichever the side): decide the
    world's replay day ``passes`` times after one warm-up pass; CPU per decision, stage p50s."""
    import asyncio
    import datetime as dt

    import numpy as np
    import polars as pl

    from serving.inprocess import InProcessApp
    from tests.support.world import World

    meta = json.loads((world_dir / "world.json").read_text())
    world = World(
        world_dir,
        Path(meta["features_dir"]),
        Path(meta["bundle"]),
        dt.datetime.fromisoformat(meta["replay_day"]),
        pl.read_parquet(world_dir / "day.parquet"),
    )
    kv = world.store(store, redis_url if store == "redis" else None)
    try:
        app = InProcessApp(world.app_args(kv))
        txs = world.requests()
        stages: dict[str, list[float]] = {}
        sources: dict[str, int] = {}

        async def one_pass(keep: bool) -> float:
            cpu = 0.0
            for tx in txs:
                c = time.process_time()
                (decision,) = await app.decide([tx])
                cpu += time.process_time() - c
                if keep:
                    for stage, ms in decision.latency_ms.items():
                        stages.setdefault(stage, []).append(ms)
                    sources[decision.decision_source] = sources.get(decision.decision_source, 0) + 1
            return cpu

        loop = asyncio.new_event_loop()
        loop.run_until_complete(one_pass(False))
        cpu = sum(loop.run_until_complete(one_pass(True)) for _ in range(passes))
        loop.close()
        app.close()
    finally:
        world.drop_store(kv)
    n = passes * len(txs)
    import riskml

    return {
        "riskml": riskml.__file__,
        "decisions": n,
        "cpu_us_per_decision": round(cpu / n * 1e6, 1),
        "stage_p50_ms": {s: round(float(np.percentile(v, 50)), 4) for s, v in stages.items()},
        "decision_sources": sources,
    }


def _baseline_tree(rev: str, where: Path) -> Path:
    """The baseline revision's files (``git archive``), where a child can import them."""
    blob = subprocess.run(
        ["git", "archive", "--format=tar", rev], cwd=REPO_ROOT, check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(where, filter="data")
    return where


#: This file run as the child (``-c``: the side's tree, the working directory, is first on
#: ``sys.path``; run as a script, this file's directory would be, and its ``serving.py``, a
#: benchmark, would shadow the ``serving`` package).
_RUN_CHILD = (
    "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def _run_side(code: Path, args: argparse.Namespace, world_dir: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run(
        [sys.executable, "-c", _RUN_CHILD, str(Path(__file__).resolve()), "--child",
         str(world_dir), "--store", args.store, "--redis-url", args.redis_url, "--passes",
         str(args.passes)],
        cwd=code, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"the {code} child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    if not Path(result["riskml"]).is_relative_to(code):
        raise RuntimeError(f"the child imported {result['riskml']}, not the code under {code}")
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="git revision to compare against (required)")
    parser.add_argument("--store", choices=("redis", "sqlite"), default="redis")
    parser.add_argument("--redis-url", default="localhost:6379,db=6", help="Feast form")
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=4, help="alternations of the two sides")
    parser.add_argument("--passes", type=int, default=2, help="measured passes per process")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        result = _child(args.child, args.store, args.redis_url, args.passes)
        print(json.dumps(result))
        return result
    if not args.baseline:
        parser.error("--baseline is required")

    from tests.support.world import build_world

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        world_dir = Path(tmp) / "world"
        world = build_world(world_dir, customers=args.customers, terminals=args.customers)
        world.day.write_parquet(world_dir / "day.parquet")
        (world_dir / "world.json").write_text(
            json.dumps(
                {
                    "features_dir": str(world.features_dir),
                    "bundle": str(world.bundle),
                    "replay_day": world.replay_day.isoformat(),
                }
            )
        )
        build_s = time.perf_counter() - t0
        baseline = _baseline_tree(args.baseline, Path(tmp) / "baseline")
        sides: dict[str, list[dict[str, Any]]] = {"baseline": [], "current": []}
        for r in range(args.rounds):
            order = ("baseline", "current") if r % 2 == 0 else ("current", "baseline")
            for side in order:
                code = baseline if side == "baseline" else REPO_ROOT
                sides[side].append(_run_side(code, args, world_dir))
                print(side, sides[side][-1]["cpu_us_per_decision"], "µs", flush=True)
    summary = {
        side: {
            "cpu_us_per_decision": statistics.median(r["cpu_us_per_decision"] for r in runs),
            "per_round": [r["cpu_us_per_decision"] for r in runs],
            "stage_p50_ms": runs[-1]["stage_p50_ms"],
            "decision_sources": runs[-1]["decision_sources"],
        }
        for side, runs in sides.items()
    }
    paired = [
        round(c["cpu_us_per_decision"] / b["cpu_us_per_decision"], 3)
        for b, c in zip(sides["baseline"], sides["current"], strict=True)
    ]
    out: dict[str, Any] = {
        "baseline_rev": args.baseline,
        "store": args.store,
        "customers": args.customers,
        "decisions_per_process": sides["current"][0]["decisions"],
        "world_build_seconds": round(build_s, 1),
        **summary,
        "ratio": round(
            summary["current"]["cpu_us_per_decision"] / summary["baseline"]["cpu_us_per_decision"],
            3,
        ),
        # each round's two processes ran back to back: their ratio is robust to the machine's
        # drift over the run (which moves both sides of a round alike)
        "paired_ratios": paired,
        "median_paired_ratio": round(statistics.median(paired), 3),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "load_average": load_average(),
    }
    print_table(
        f"CPU per in-process decision ({args.store}), median of {args.rounds} rounds",
        [
            {
                "side": s,
                "cpu_us": summary[s]["cpu_us_per_decision"],
                "rounds": " ".join(f"{v:.0f}" for v in summary[s]["per_round"]),
            }
            for s in ("baseline", "current")
        ],
    )
    if args.out:
        write_json(args.out, out)
    return out


if __name__ == "__main__":
    main()
