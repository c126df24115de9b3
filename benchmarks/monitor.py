"""Benchmark: what the monitor costs per 10,000 decisions against reading the same decision log,
and proof that the decision path's latency does not change while it runs.

    python -m benchmarks.monitor --out out/bench/monitor.json

The world is the serving benchmark's (:func:`benchmarks.serving.build_world_apart`: 2,000
simulated customers over a month, Feast features, an XGBoost + GRU bundle with its reference
profile trained in process, the last day's transactions to replay), built once in a child
process. Its point-in-time training set over the ``--log-days`` days before the replay day is
scored with the bundle and written into an offline log by
:func:`riskml.monitoring.backfill.log_dataset` (decision + label events, the layout the stream's
offline-log writer writes): ≥ 50,000 decisions at the defaults.

**Cost** (a child process of its own, so the load generator below never holds these frames),
``--repeat`` rounds, each in this order: the baseline ``read_events(log, "decision")`` (the same
files read, nothing computed); the second baseline :func:`decisions_frame` (read + parse the
logged features, no statistics); :func:`run_monitor` with daily windows (the default) and with
count windows of ``--size``; then a cold daily run (``_null_quantiles.cache_clear()`` first:
the Monte-Carlo thresholds computed again). Wall and CPU seconds per 10,000 decisions, medians
over the rounds; ``thresholds_cold_s`` is the cold run minus the warm median. Peak memory: each
operation once more in a fresh process, its ``ru_maxrss`` after minus before.

**Decision path.** Structural: the import closure of the Serve app (``serving.app``, the
``import_path`` of serve_config.yaml), walked with ``ast`` over every ``import`` in the repo's
modules it reaches, function-level ones included (a superset of what the replicas import), and a
fresh process that builds the app's components (:class:`serving.inprocess.InProcessApp`, the same
ones) and decides transactions, then lists ``sys.modules``: neither may hold
``riskml.monitoring``. Measured: the bundle app on a local Ray Serve
(:func:`benchmarks.serving.bench_served`: ``colocated/direct``, 2 Ingress replicas, a fresh
SQLite store per run), open-loop at ``--rps`` for ``--duration`` s, with nothing else of ours
running ("alone"), with a monitor loop (``run_monitor`` over the log, back to back, in another
process) at niceness 0, and at niceness 10; ``--serving-repeat`` rounds, the order reversed
every other round.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from riskml import __version__
from riskml.console import print_table, write_json

REPO = Path(__file__).resolve().parents[1]
PER = 10_000
SERVE_APP = "serving.app"  # serve_config.yaml's import_path module
MONITORING = "riskml.monitoring"


def _spawn() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- the log ------------------------------------------------------------------------------------


def build_log(world: Any, log_root: Path, days: int) -> dict[str, Any]:
    """Score the point-in-time training set of the ``days`` days before the world's replay day
    with its bundle and write it into an offline log at ``log_root`` (run in a child)."""
    from riskml.features.store import StoreConfig, apply, training_set
    from riskml.models.bundle import load_bundle
    from riskml.monitoring.backfill import log_dataset
    from riskml.training.dataset import to_model_frame

    t0 = time.perf_counter()
    cfg = StoreConfig(
        home=world.root / "bench_monitor", features_dir=world.features_dir, project="bench_mon"
    )
    apply(cfg)
    start = world.replay_day - dt.timedelta(days=days)
    frame = to_model_frame(training_set(start, world.replay_day, config=cfg, sequences=True))
    counts = log_dataset(frame, load_bundle(world.bundle), log_root)
    return {**counts, "start": start.isoformat(), "seconds": round(time.perf_counter() - t0, 1)}


# -- cost ---------------------------------------------------------------------------------------


def _op(name: str, log_root: Path, bundle: Path, at: dt.datetime, size: int) -> Any:
    """One operation on the log: ``read``, ``parse``, ``monitor_daily``, ``monitor_count``."""
    from riskml.monitoring.monitor import MonitorConfig, decisions_frame, load_profile, run_monitor
    from riskml.streaming.offline_log import read_events

    if name == "read":
        return read_events(log_root, "decision")
    profile = load_profile(bundle)
    if name == "parse":
        return decisions_frame(log_root, list(profile.features))
    config = MonitorConfig() if name == "monitor_daily" else MonitorConfig(size=size)
    return run_monitor(log_root, profile, config, at=at)


def _timed(name: str, log_root: Path, bundle: Path, at: dt.datetime, size: int) -> dict:
    t, c = time.perf_counter(), time.process_time()
    out = _op(name, log_root, bundle, at, size)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    row: dict[str, Any] = {"op": name, "wall_s": round(wall, 4), "cpu_s": round(cpu, 4)}
    if name.startswith("monitor"):
        row["windows"] = len(out.windows)
    else:
        row["rows"] = out.height
    row["load"] = _loadavg()
    return row


def cost_rounds(log_root: Path, bundle: Path, at: dt.datetime, size: int, repeat: int) -> dict:
    """The timed rounds (run in a child process; see the module docstring)."""
    from riskml.monitoring.drift import _null_quantiles
    from riskml.streaming.offline_log import read_events

    decisions = read_events(log_root, "decision").height  # also warms the page cache
    _timed("monitor_daily", log_root, bundle, at, size)  # imports, first thresholds
    _timed("monitor_count", log_root, bundle, at, size)
    runs = []
    for r in range(repeat):
        for name in ("read", "parse", "monitor_daily", "monitor_count"):
            runs.append({"round": r, **_timed(name, log_root, bundle, at, size)})
        _null_quantiles.cache_clear()
        cold = _timed("monitor_daily", log_root, bundle, at, size)
        cold["thresholds_computed"] = _null_quantiles.cache_info().misses
        runs.append({"round": r, **cold, "op": "monitor_daily_cold"})
    return {"decisions": decisions, "runs": runs}


def peak_memory(name: str, log_root: Path, bundle: Path, at: dt.datetime, size: int) -> dict:
    """``ru_maxrss`` of a fresh process before and after one ``name`` (run in a child)."""
    from riskml.monitoring import drift, monitor  # noqa: F401  (imports off the measure)
    from riskml.streaming import offline_log  # noqa: F401

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _op(name, log_root, bundle, at, size)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"op": name, "rss_before_mib": round(before, 1), "peak_rss_mib": round(after, 1)}


def _median(runs: list[dict], op: str, key: str) -> float:
    return statistics.median(r[key] for r in runs if r["op"] == op)


# -- the decision path: structure ---------------------------------------------------------------


def _module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def import_closure(root: str, packages: tuple[str, ...] = ("riskml", "serving")) -> dict:
    """Every repo module ``root`` can import, following each ``import`` statement (module and
    function level, ``TYPE_CHECKING`` blocks too: a superset), with who imported it first."""
    parent: dict[str, str | None] = {root: None}
    queue = [root]
    while queue:
        mod = queue.pop()
        path = _module_file(mod)
        if path is None:
            continue
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    pkg = pkg[: len(pkg) - node.level + 1]
                    base = ".".join([*pkg, base] if base else pkg)
                names = [base, *(f"{base}.{a.name}" for a in node.names)]
            for name in names:
                parts = name.split(".")
                if parts[0] not in packages:
                    continue
                for i in range(1, len(parts) + 1):  # a.b.c imports a and a.b too
                    sub = ".".join(parts[:i])
                    if sub not in parent and _module_file(sub) is not None:
                        parent[sub] = mod
                        queue.append(sub)
    return parent


def _chain(parent: dict[str, str | None], mod: str) -> list[str]:
    out = [mod]
    while (up := parent.get(out[-1])) is not None:
        out.append(up)
    return out[::-1]


def loaded_modules(args: dict[str, Any], txs: list[dict[str, Any]]) -> dict[str, Any]:
    """In a fresh process: import the Serve app, build its components and decide ``txs``;
    which repo modules ``sys.modules`` then holds (run in a child)."""
    import importlib

    from serving.inprocess import InProcessApp
    from serving.replay import run_loop

    importlib.import_module(SERVE_APP)
    app = InProcessApp(args)

    async def decide() -> list[str]:
        return [str((await app.decide([tx]))[0].decision) for tx in txs]

    decisions = run_loop(decide())
    mods = sorted(m for m in sys.modules if m.split(".")[0] in ("riskml", "serving"))
    return {
        "decided": len(decisions),
        "repo_modules_loaded": len(mods),
        "monitoring_loaded": [m for m in mods if m.startswith(MONITORING)],
    }


# -- the decision path: latency -----------------------------------------------------------------


def monitor_loop(log_root: str, bundle: str, at: str, count_file: str) -> None:
    """``run_monitor`` back to back until killed; the passes done so far in ``count_file``."""
    from riskml.monitoring.monitor import MonitorConfig, load_profile, run_monitor

    profile = load_profile(bundle)
    when = dt.datetime.fromisoformat(at)
    passes = 0
    while True:
        run_monitor(log_root, profile, MonitorConfig(), at=when)
        passes += 1
        Path(count_file).write_text(str(passes))


class MonitorProcess:
    """A monitor loop in another process at ``nice`` (a context manager)."""

    def __init__(self, log_root: Path, bundle: Path, at: dt.datetime, nice: int, tmp: Path):
        self.count_file = tmp / f"passes-{time.monotonic_ns()}"
        self.argv = [
            sys.executable,
            "-m",
            "benchmarks.monitor",
            "--loop",
            str(log_root),
            str(bundle),
            at.isoformat(),
            str(self.count_file),
        ]
        self.nice = nice
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def __enter__(self) -> MonitorProcess:
        nice = self.nice
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            self.argv, cwd=REPO, preexec_fn=(lambda: os.nice(nice)) if nice else None
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> dict[str, Any]:
        import psutil

        if self.proc is None:
            return {}
        cpu = 0.0
        try:
            t = psutil.Process(self.proc.pid).cpu_times()
            cpu = t.user + t.system
        except psutil.NoSuchProcess:
            pass
        alive = self.proc.poll() is None
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.proc = None
        text = self.count_file.read_text() if self.count_file.exists() else "0"
        return {
            "monitor_alive_at_end": alive,
            "monitor_passes": int(text or 0),
            "monitor_cpu_s": round(cpu, 1),
            "monitor_seconds": round(time.perf_counter() - self.started, 1),
        }


def serving_phases(
    world: Any, log_root: Path, at: dt.datetime, a: argparse.Namespace, tmp: Path
) -> list[dict[str, Any]]:
    """The Serve app alone and beside a monitor loop (nice 0, nice 10), alternating."""
    import logging

    import ray
    from ray import serve

    from benchmarks.serving import Load, _free_port, bench_served
    from riskml.training.runtime import local_ray_env

    txs = world.requests()[: a.warmup + int(a.rps * a.duration)]
    port = _free_port()
    local_ray_env()  # as riskml's own local Ray (and benchmarks.serving): workers at nice 0
    ray.init(
        num_cpus=os.cpu_count() or 2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}},
    )
    out = []
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        load = Load(
            world=world,
            txs=txs,
            rps=a.rps,
            warmup=a.warmup,
            url=f"http://127.0.0.1:{port}",
            redis_url="",
            replicas=a.ingress_replicas,
        )
        phases: list[tuple[str, int | None]] = [("alone", None), ("monitor", 0), ("nice10", 10)]
        for r in range(a.serving_repeat):
            for phase, nice in phases if r % 2 == 0 else phases[::-1]:
                row: dict[str, Any] = {"op": f"serving_{phase}", "round": r}
                row["load_before"] = _loadavg()
                if nice is None:
                    res = bench_served("sqlite", "colocated/direct", load)
                else:
                    mon = MonitorProcess(log_root, world.bundle, at, nice, tmp)
                    with mon:
                        time.sleep(a.monitor_head_start)  # the loop is past its imports
                        res = bench_served("sqlite", "colocated/direct", load)
                        row.update(mon.stop())
                    row["monitor_nice"] = nice
                row["load"] = _loadavg()
                for k in ("rps", "requests", "errors", "e2e_p50_ms", "e2e_p95_ms", "e2e_p99_ms"):
                    row[k] = res[k]
                row["serve_cpu_ms_per_request"] = res["serve_cpu_ms_per_request"]["sum"]
                row["decision_sources"] = res["decision_sources"]
                # past the Ingress deadline the ladder answers from a lower rung: CPU starvation
                # shows in the decision mix too, not only in the latency
                row["fallback_share"] = round(
                    1 - res["decision_sources"].get("ensemble", 0) / max(1, res["requests"]), 4
                )
                out.append(row)
                print(
                    f"  {row['op']} round {r}: p50 {row['e2e_p50_ms']} ms, "
                    f"p99 {row['e2e_p99_ms']} ms, load {row['load'][0]}",
                    flush=True,
                )
    finally:
        serve.shutdown()
        ray.shutdown()
    return out


# -- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000, help="simulated customers")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--log-days", type=int, default=15, help="days logged (~3,700/day)")
    parser.add_argument("--repeat", type=int, default=3, help="cost rounds")
    parser.add_argument("--size", type=int, default=2000, help="count-window size")
    parser.add_argument("--rps", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per serving run")
    parser.add_argument("--warmup", type=int, default=200, help="requests before measuring")
    parser.add_argument("--ingress-replicas", type=int, default=2)
    parser.add_argument("--serving-repeat", type=int, default=2, help="rounds of 3 phases")
    parser.add_argument("--monitor-head-start", type=float, default=3.0, help="seconds")
    parser.add_argument("--skip-serving", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("out/bench/monitor.json"))
    parser.add_argument("--loop", nargs=4, help=argparse.SUPPRESS)  # the monitor loop's child
    a = parser.parse_args(argv)
    if a.loop:
        monitor_loop(*a.loop)
        return {}

    load: list[dict[str, Any]] = [{"phase": "start", "loadavg": _loadavg()}]
    results: dict[str, Any] = {}
    runs: list[dict[str, Any]] = []
    from benchmarks.serving import build_world_apart

    with tempfile.TemporaryDirectory(prefix="riskml-bench-monitor-") as name:
        tmp = Path(name)
        t0 = time.perf_counter()
        world = build_world_apart(tmp / "world", customers=a.customers, seed=a.seed)
        build_s = time.perf_counter() - t0
        log_root = tmp / "log"
        with _spawn() as pool:
            logged = pool.submit(build_log, world, log_root, a.log_days).result()
        at = world.replay_day + dt.timedelta(days=31)  # every window's labels matured
        world_info = {
            "bundle": world.bundle.name,
            "replay_day": world.replay_day.isoformat(),
            "world_build_s": round(build_s, 1),
            "log": logged,
            "monitor_at": at.isoformat(),
        }
        load.append({"phase": "world+log built", "loadavg": _loadavg()})
        print(f"world {build_s:.0f} s, log {logged}", flush=True)

        # cost
        with _spawn() as pool:
            cost = pool.submit(cost_rounds, log_root, world.bundle, at, a.size, a.repeat).result()
        runs += cost["runs"]
        load.append({"phase": "cost", "loadavg": _loadavg()})
        memory = []
        for op in ("read", "parse", "monitor_daily", "monitor_count"):
            with _spawn() as pool:
                memory.append(
                    pool.submit(peak_memory, op, log_root, world.bundle, at, a.size).result()
                )
        load.append({"phase": "memory", "loadavg": _loadavg()})

        # the decision path: structure
        closure = import_closure(SERVE_APP)
        reached = sorted(m for m in closure if m.startswith(MONITORING))
        store = world.store("sqlite")
        try:
            with _spawn() as pool:
                loaded = pool.submit(
                    loaded_modules, world.app_args(store), world.requests()[:50]
                ).result()
        finally:
            world.drop_store(store)
        structure = {
            "ast_closure_modules": len(closure),
            "ast_closure_monitoring": reached,
            "ast_chains": [_chain(closure, m) for m in reached],
            "runtime": loaded,
        }
        load.append({"phase": "structure", "loadavg": _loadavg()})

        # the decision path: latency
        serving: list[dict[str, Any]] = []
        if not a.skip_serving:
            serving = serving_phases(world, log_root, at, a, tmp)
            runs += serving
            load.append({"phase": "serving", "loadavg": _loadavg()})

    n = cost["decisions"]
    per = PER / n

    def wall(op: str) -> float:
        return _median(runs, op, "wall_s") * per

    def cpu(op: str) -> float:
        return _median(runs, op, "cpu_s") * per

    cold = _median(runs, "monitor_daily_cold", "wall_s") - _median(runs, "monitor_daily", "wall_s")
    results = {
        "decisions": n,
        "monitor_s_per_10k": round(wall("monitor_daily"), 4),
        "monitor_count_s_per_10k": round(wall("monitor_count"), 4),
        "read_s_per_10k": round(wall("read"), 4),
        "parse_s_per_10k": round(wall("parse"), 4),
        "monitor_vs_read_ratio": round(wall("monitor_daily") / wall("read"), 2),
        "monitor_vs_parse_ratio": round(wall("monitor_daily") / wall("parse"), 2),
        "monitor_count_vs_read_ratio": round(wall("monitor_count") / wall("read"), 2),
        "monitor_count_vs_parse_ratio": round(wall("monitor_count") / wall("parse"), 2),
        "monitor_cpu_s_per_10k": round(cpu("monitor_daily"), 4),
        "monitor_count_cpu_s_per_10k": round(cpu("monitor_count"), 4),
        "read_cpu_s_per_10k": round(cpu("read"), 4),
        "parse_cpu_s_per_10k": round(cpu("parse"), 4),
        "thresholds_cold_s": round(cold, 3),
        "thresholds_computed_cold": max(
            r.get("thresholds_computed", 0) for r in runs if r["op"] == "monitor_daily_cold"
        ),
        "windows_daily": next(r["windows"] for r in runs if r["op"] == "monitor_daily"),
        "windows_count": next(r["windows"] for r in runs if r["op"] == "monitor_count"),
        "peak_rss_mib": {m["op"]: m["peak_rss_mib"] for m in memory},
        "peak_rss_mib_per_10k": {
            m["op"]: round((m["peak_rss_mib"] - m["rss_before_mib"]) * per, 1) for m in memory
        },
        "serving_imports_monitoring": bool(reached or loaded["monitoring_loaded"]),
    }
    if serving:
        for phase, key in (("alone", "alone"), ("monitor", "with_monitor"), ("nice10", "nice10")):
            key = "with_monitor_nice10" if phase == "nice10" else key
            for q in ("p50", "p99"):
                results[f"serving_{q}_ms_{key}"] = round(
                    _median(runs, f"serving_{phase}", f"e2e_{q}_ms"), 3
                )
            results[f"serving_fallback_share_{key}"] = round(
                _median(runs, f"serving_{phase}", "fallback_share"), 4
            )
        results["serving_errors"] = sum(r["errors"] for r in serving)
    results.update(
        {
            "structure": structure,
            "world": world_info,
            "runs": runs,
            "load": load,
            "meta": {
                "riskml": __version__,
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "serving": f"bundle app, colocated/direct, {a.ingress_replicas} Ingress "
                f"replicas, fresh SQLite store per run, {a.rps:g} rps x {a.duration:g} s after "
                f"{a.warmup} warm-up requests",
                "monitor_loop": "run_monitor (daily windows) back to back in another process, "
                "started --monitor-head-start s before each served run",
            },
        }
    )

    table = [
        {"what": "read_events (baseline)", "s/10k": results["read_s_per_10k"]},
        {"what": "decisions_frame (baseline 2)", "s/10k": results["parse_s_per_10k"]},
        {"what": "run_monitor, daily windows", "s/10k": results["monitor_s_per_10k"]},
        {"what": f"run_monitor, {a.size} per window", "s/10k": results["monitor_count_s_per_10k"]},
    ]
    print_table(f"monitor cost over {n:,} decisions (median of {a.repeat})", table)
    print_table(
        "ratios and one-offs",
        {
            "monitor / read": results["monitor_vs_read_ratio"],
            "monitor / parse": results["monitor_vs_parse_ratio"],
            "thresholds cold (s)": results["thresholds_cold_s"],
            "serving imports monitoring": results["serving_imports_monitoring"],
        },
    )
    if serving:
        print_table(
            f"serving e2e @ {a.rps:g} rps (ms, median of {a.serving_repeat})",
            [
                {
                    "beside": label,
                    "p50": results[f"serving_p50_ms_{key}"],
                    "p99": results[f"serving_p99_ms_{key}"],
                    "fallback share": results[f"serving_fallback_share_{key}"],
                }
                for label, key in (
                    ("nothing", "alone"),
                    ("monitor loop, nice 0", "with_monitor"),
                    ("monitor loop, nice 10", "with_monitor_nice10"),
                )
            ],
        )
    write_json(a.out, results)
    return results


if __name__ == "__main__":
    main()
