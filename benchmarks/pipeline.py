"""Pipeline overhead: each kfp task's wall time vs the same riskml step called directly.

``python -m benchmarks.pipeline --size tiny --out out/bench/pipeline.json``

One run, one private local Ray head shared by both sides:

1. **direct** — every core function the training pipeline's tasks call, in
   order, in this process (imports paid once, Ray joined once), under ``<home>/direct``;
2. **kfp** — the training pipeline through ``kfp.local`` (``SubprocessRunner``, this venv;
   tasks run one at a time), under ``<home>/kfp``; per-task wall times come from kfp.local's
   own "Executing task" / "finished" log records.

Same data (same seed), same parameters. Per-task overhead = kfp wall - direct wall: a fresh
Python process per task, its imports, the kfp executor, artifact bookkeeping and re-joining Ray.
Writes JSON (per task and totals) and prints a short table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Fast but real training settings (the pipeline defaults, fewer rounds/epochs).
BENCH_CONFIG: dict[str, Any] = {
    "split": {"label_maturity_days": 10},
    "xgb": {"num_boost_round": 100, "early_stopping_rounds": 20},
    "sequence": {"epochs": 2},
    "ray": {"num_workers": 1},
}


def _use_home(home: Path) -> None:
    from riskml.settings import get_settings

    os.environ["RISKML_HOME"] = str(home)
    get_settings.cache_clear()


def run_direct(home: Path, size: str, seed: int, tune_samples: int) -> dict[str, float]:
    from riskml.data.sources import load_data
    from riskml.evaluation.holdout import evaluate_holdout
    from riskml.evaluation.report import holdout_html
    from riskml.features.batch import build_feature_sources
    from riskml.features.store import apply_and_materialize
    from riskml.metrics import finite_metrics
    from riskml.orchestration.release import release
    from riskml.registry.gate import gate
    from riskml.registry.store import register
    from riskml.training.dataset import make_training_sets
    from riskml.training.tasks import (
        calibrate_and_bundle,
        train_sequence_model,
        train_xgb_model,
        tune_xgb,
    )

    _use_home(home)
    w = home / "work"
    times: dict[str, float] = {}

    def step(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        times[name] = time.perf_counter() - t0
        return out

    step("load-data", load_data, w / "data", size=size, seed=seed)
    step("build-features", build_feature_sources, w / "data", w / "features")
    step("feast-materialize", apply_and_materialize, w / "features")
    step(
        "training-sets",
        make_training_sets,
        w / "features",
        w / "data",
        w / "train",
        w / "test",
        test_days=7,
    )
    step(
        "tune-xgb",
        tune_xgb,
        w / "train",
        w / "params.json",
        num_samples=tune_samples,
        config=BENCH_CONFIG,
    )
    params = json.loads((w / "params.json").read_text())["params"]
    step(
        "train-xgb",
        train_xgb_model,
        w / "train",
        w / "xgb",
        params=params,
        config=BENCH_CONFIG,
    )
    step("train-sequence", train_sequence_model, w / "train", w / "seq", config=BENCH_CONFIG)
    bundle = step(
        "calibrate-ensemble",
        calibrate_and_bundle,
        w / "train",
        w / "bundle",
        xgb_dir=w / "xgb",
        seq_dir=w / "seq",
        config=BENCH_CONFIG,
    )
    path = Path(bundle["bundle"])
    result = step("backtest", evaluate_holdout, path, w / "test")
    (w / "report.html").write_text(holdout_html(result))
    decision = step("gate", gate, path, w / "test")
    record = step(
        "register",
        register,
        path,
        metrics=finite_metrics(result["metrics"]["blend"], "blend_"),
        decision=decision["decision"],
    )
    step("deploy", release, record, expected=decision["champion_version"], target="local")
    return times


class _TaskClock(logging.Filter):
    """Per-task wall times from kfp.local's own log records ("Executing task 'x'" ... "Task 'x'
    finished with status ..."). A filter on the root logger: kfp.local swaps the root
    logger's handlers while it runs, but not its filters."""

    START = re.compile(r"Executing task '([^']+)'")
    END = re.compile(r"Task '([^']+)' finished with status (\w+)")
    ANSI = re.compile(r"\x1b\[[0-9;]*m")

    def __init__(self) -> None:
        super().__init__()
        self.started: dict[str, float] = {}
        self.times: dict[str, float] = {}
        self.status: dict[str, str] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        msg = self.ANSI.sub("", str(record.getMessage()))
        if m := self.START.search(msg):
            self.started[m.group(1)] = record.created
        elif (m := self.END.search(msg)) and m.group(1) in self.started:
            self.times[m.group(1)] = record.created - self.started[m.group(1)]
            self.status[m.group(1)] = m.group(2)
        return True


def run_kfp(home: Path, size: str, seed: int, tune_samples: int) -> tuple[dict[str, float], float]:
    """The training pipeline through kfp.local; ``(per-task seconds, pipeline wall seconds)``."""
    from pipelines.definitions import get_pipeline
    from pipelines.local import init_local

    _use_home(home)
    init_local(home / "kfp-root")
    clock = _TaskClock()
    root = logging.getLogger()
    root.addFilter(clock)
    try:
        t0 = time.perf_counter()
        get_pipeline("training")(
            size=size,
            seed=seed,
            test_days=7,
            tune_samples=tune_samples,
            train_config_json=json.dumps(BENCH_CONFIG),
        )
        wall = time.perf_counter() - t0
    finally:
        root.removeFilter(clock)
    failed = {k: v for k, v in clock.status.items() if v != "SUCCESS"}
    if failed or not clock.times:
        raise RuntimeError(f"kfp tasks failed or not timed: {failed or clock.status}")
    return clock.times, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline", description=__doc__)
    parser.add_argument("--size", default="tiny", choices=["tiny", "demo"])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--tune-samples", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("out/bench/pipeline.json"))
    parser.add_argument("--home", type=Path, default=None, help="work dir [a temp dir]")
    args = parser.parse_args(argv)

    from pipelines.local import shared_ray
    from riskml.console import print_table, write_json

    home = (args.home or Path(tempfile.mkdtemp(prefix="riskml-bench-pipeline-"))).resolve()
    t0 = time.perf_counter()
    with shared_ray() as ray_info:
        direct = run_direct(home / "direct", args.size, args.seed, args.tune_samples)
        kfp_times, kfp_wall = run_kfp(home / "kfp", args.size, args.seed, args.tune_samples)
    rows: list[dict[str, Any]] = [
        {
            "task": name,
            "direct_s": round(direct[name], 2),
            "kfp_s": round(kfp_times[name], 2),
            "overhead_s": round(kfp_times[name] - direct[name], 2),
        }
        for name in direct
        if name in kfp_times
    ]
    overheads = sorted(r["overhead_s"] for r in rows)
    summary = {
        "tasks": len(rows),
        "direct_total_s": round(sum(direct.values()), 2),
        "kfp_total_s": round(sum(kfp_times.values()), 2),
        "overhead_total_s": round(sum(kfp_times.values()) - sum(direct.values()), 2),
        "kfp_pipeline_wall_s": round(kfp_wall, 2),
        "overhead_median_s": overheads[len(overheads) // 2],
        "overhead_max_s": overheads[-1],
        "wall_s": round(time.perf_counter() - t0, 2),
    }
    payload = {
        "benchmark": "pipeline",
        "size": args.size,
        "seed": args.seed,
        "tune_samples": args.tune_samples,
        "config": BENCH_CONFIG,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "ray_dashboard": ray_info["dashboard_url"],
        "load_avg_1m": os.getloadavg()[0],
        "tasks": rows,
        "summary": summary,
    }
    write_json(args.out, payload)
    print_table(f"pipeline tasks: kfp.local vs direct ({args.size})", rows)
    print_table("summary", summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
