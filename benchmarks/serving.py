"""Benchmark: the decision service under a fixed arrival rate, against the same scoring code
in-process, for a SQLite and a Redis online store.

    python -m benchmarks.serving --rps 100 --duration 30 --out out/bench/serving.json

What is served is real: :func:`serving.world.build_world` simulates ``--customers`` customers
over a month, builds Feast features as of the last day, trains an XGBoost + GRU bundle (in
process, small settings) on the point-in-time training set before it, and keeps the last day's
transactions. For each store the run materialises a fresh Feast online store (SQLite file, or a
private project on the local Redis) as of that day, deploys ``build_app({"bundle_dir": ...})``
on a local Ray Serve (one replica per deployment, free loopback port), warms it up, and replays
the day's transactions in time order, open-loop at ``rps`` (latency from each request's
scheduled send time, no retries; each decision written back to the online state as in
production). Then the same transactions go through :class:`serving.inprocess.InProcessApp` (same
components, same ladder, direct calls instead of Ray handles and HTTP) on another fresh store.
The difference of the two is what serving costs. Each response carries per-stage server-side
latencies; their medians say where the time goes. A do-nothing Serve app ("floor") measures
what any Serve app costs on this machine.
"""

import argparse
import asyncio
import contextlib
import gc
import multiprocessing
import os
import platform
import socket
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from riskml import __version__
from riskml.console import print_table, write_json
from riskml.decision.protocols import FeatureSourceUnavailable
from riskml.features.errors import FeatureStoreError

STAGES = ("features", "xgboost", "sequence", "decider", "total")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    from serving.replay import percentile

    return round(percentile(values, q), 3)


def echo_app(args: dict[str, Any] | None = None) -> Any:
    """The Serve floor: a FastAPI ingress that validates the same request and answers a constant,
    with no downstream calls (proxy + one replica hop: what any Serve app costs here)."""
    from fastapi import FastAPI
    from ray import serve

    from serving.schemas import TransactionRequest

    api = FastAPI()

    @serve.deployment(name="Echo", ray_actor_options={"num_cpus": 0})
    @serve.ingress(api)
    class Echo:
        @api.post("/v1/score")
        async def score(self, tx: TransactionRequest) -> dict[str, str]:
            # (this module has no `from __future__ import annotations`: FastAPI inside a Serve
            # ingress needs real annotation objects to see `tx` as the JSON body)
            return {"tx_id": tx.tx_id, "decision": "approve"}

    return Echo.bind()


def bench_floor(*, rps: float, warmup: int, url: str, txs: list[dict[str, Any]]) -> dict:
    from serving.local import deploy_config, wait_running
    from serving.replay import replay

    app = {
        "name": "bench-floor",
        "route_prefix": "/floor",
        "import_path": "benchmarks.serving:echo_app",
    }
    deploy_config({"applications": [app]})
    wait_running("bench-floor")
    replay(url + "/floor", txs[:warmup], rps=min(rps, 50.0), timeout_s=5)
    cpu0 = _serve_cpu_s("bench-floor")
    report = replay(url + "/floor", txs[warmup:], rps=rps, timeout_s=5)
    cpu1 = _serve_cpu_s("bench-floor")
    cpu_ms = {
        k: round((cpu1[k] - cpu0.get(k, 0.0)) * 1e3 / max(1, report.requests), 3) for k in cpu1
    }
    return {
        "rps": round(report.achieved_rps, 2),
        "requests": report.requests,
        "errors": report.errors,
        "e2e_p50_ms": _pct(report.latencies, 50),
        "e2e_p99_ms": _pct(report.latencies, 99),
        "serve_cpu_ms_per_request": {**cpu_ms, "sum": round(sum(cpu_ms.values()), 3)},
    }


def _serve_cpu_s(app_name: str) -> dict[str, float]:
    """CPU seconds (user + system) used so far by this app's replicas and Serve's proxy."""
    import psutil

    out: dict[str, float] = {}
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            if f"ServeReplica:{app_name}:" in cmd:
                key = cmd.split(f"ServeReplica:{app_name}:")[1].split()[0]
            elif "ray::ProxyActor" in cmd:
                key = "proxy"
            else:
                continue
            t = proc.cpu_times()
            out[key] = out.get(key, 0.0) + t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def _inprocess(args: dict, txs: list[dict[str, Any]], rps: float) -> tuple[list[float], float]:
    """Per-decision latency of the same code in one process, paced at the same rate."""
    from serving.inprocess import InProcessApp

    app = InProcessApp(args)
    latencies = []
    cpu: list[float] = []

    async def run() -> None:
        t0 = time.perf_counter()
        for i, tx in enumerate(txs):
            delay = t0 + i / rps - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            t, c = time.perf_counter(), time.process_time()
            await app.decide([tx])
            latencies.append((time.perf_counter() - t) * 1e3)
            cpu.append((time.process_time() - c) * 1e3)
            # as in serving: best effort (a store error costs the write-back, not the decision)
            with contextlib.suppress(FeatureSourceUnavailable, FeatureStoreError):
                app.source.write_back(tx)  # state evolves as in the served run, off the clock

    asyncio.run(run())
    return latencies, sum(cpu) / max(1, len(cpu))


def bench_store(
    store: str,
    *,
    rps: float,
    warmup: int,
    redis_url: str,
    world: Any,
    txs: list[dict[str, Any]],
    url: str,
) -> dict[str, Any]:
    from serving.local import app_config, deploy_config, wait_healthy, wait_running
    from serving.replay import replay

    served_store = world.store(store, redis_url if store == "redis" else None)
    name, prefix = f"bench-{store}", f"/{store}"
    try:
        args = world.app_args(served_store)
        deploy_config({"applications": [app_config(args, name=name, route_prefix=prefix)]})
        wait_running(name)
        wait_healthy(url + prefix)
        replay(url + prefix, txs[:warmup], rps=min(rps, 50.0), timeout_s=5)
        gc.collect()
        gc.freeze()  # what this process already holds is never scanned during the replay
        cpu0 = _serve_cpu_s(name)
        report = replay(url + prefix, txs[warmup:], rps=rps, timeout_s=5, keep_responses=True)
        cpu1 = _serve_cpu_s(name)
        cpu_ms = {
            k: round((cpu1[k] - cpu0.get(k, 0.0)) * 1e3 / max(1, report.requests), 3) for k in cpu1
        }
        stages: dict[str, list[float]] = {s: [] for s in STAGES}
        gaps = []
        for r in report.responses:
            if "body" not in r:
                continue
            lat = r["body"]["latency_ms"]
            for s in STAGES:
                if s in lat:
                    stages[s].append(lat[s])
            gaps.append(r["latency_ms"] - lat["total"])
    finally:
        from ray import serve

        serve.delete(name)
        world.drop_store(served_store)
    # the in-process baseline replays the same transactions on a fresh copy of the store
    inproc_store = world.store(store, redis_url if store == "redis" else None)
    try:
        inproc, inproc_cpu_ms = _inprocess(world.app_args(inproc_store), txs, rps)
        inproc = inproc[warmup:]
    finally:
        world.drop_store(inproc_store)
    lat = report.latencies
    out = {
        "rps": round(report.achieved_rps, 2),
        "target_rps": rps,
        "requests": report.requests,
        "errors": report.errors,
        "e2e_p50_ms": _pct(lat, 50),
        "e2e_p95_ms": _pct(lat, 95),
        "e2e_p99_ms": _pct(lat, 99),
        "inprocess_p50_ms": _pct(inproc, 50),
        "inprocess_p99_ms": _pct(inproc, 99),
    }
    out["overhead_p50_ms"] = round(out["e2e_p50_ms"] - out["inprocess_p50_ms"], 3)
    out["server_stage_p50_ms"] = {s: _pct(v, 50) for s, v in stages.items() if v}
    out["server_stage_p99_ms"] = {s: _pct(v, 99) for s, v in stages.items() if v}
    out["proxy_http_p50_ms"] = _pct(gaps, 50)  # e2e minus the ladder's own total
    # CPU per decision is far less sensitive to other load on the machine than latency is
    out["serve_cpu_ms_per_request"] = {**cpu_ms, "sum": round(sum(cpu_ms.values()), 3)}
    out["inprocess_cpu_ms_per_request"] = round(inproc_cpu_ms, 3)
    out["decision_sources"] = report.sources
    out["fallback_reasons"] = report.fallback_reasons
    out["status"] = report.status
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rps", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per store")
    parser.add_argument("--warmup", type=int, default=200, help="requests before measuring")
    parser.add_argument("--stores", default="sqlite,redis")
    parser.add_argument("--redis-url", default="localhost:6379,db=6", help="Feast form")
    parser.add_argument("--customers", type=int, default=2000, help="simulated customers")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("out/bench/serving.json"))
    a = parser.parse_args(argv)
    stores = [s.strip() for s in a.stores.split(",") if s.strip()]
    if not stores or set(stores) - {"sqlite", "redis"}:
        parser.error("--stores takes sqlite and/or redis")

    import ray
    from ray import serve

    from serving.world import build_world

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="riskml-bench-serving-") as tmp:
        t0 = time.perf_counter()
        # built in a child process: this process is the load generator, and a heap holding the
        # world's training objects (~500k of them) gives it 0.1-0.6 s GC pauses, i.e. bursts
        # that measure the client, not the service
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            world = pool.submit(
                build_world,
                Path(tmp) / "world",
                customers=a.customers,
                terminals=a.customers,
                seed=a.seed,
            ).result()
        txs = world.requests()[: a.warmup + int(a.rps * a.duration)]
        results["world"] = {
            "bundle": world.bundle.name,
            "replay_day": world.replay_day.isoformat(),
            "day_transactions": world.day.height,
            "replayed": len(txs) - a.warmup,
            "build_s": round(time.perf_counter() - t0, 1),
        }
        port = _free_port()
        ray.init(
            num_cpus=os.cpu_count() or 2,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}},
        )
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            url = f"http://127.0.0.1:{port}"
            results["serve_floor"] = bench_floor(rps=a.rps, warmup=a.warmup, url=url, txs=txs)
            for store in stores:
                results[store] = bench_store(
                    store,
                    rps=a.rps,
                    warmup=a.warmup,
                    redis_url=a.redis_url,
                    world=world,
                    txs=txs,
                    url=url,
                )
        finally:
            serve.shutdown()
            ray.shutdown()
    load = os.getloadavg()
    results["meta"] = {
        "riskml": __version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_after": [round(x, 2) for x in load],
        "topology": "proxy -> Ingress -> FeatureFetcher -> (XGBoostScorer || SequenceScorer) "
        "-> Decider, 1 replica each; IngressConfig defaults (deadline 50 ms)",
        "stores": "Feast online store (SQLite file / local Redis), fresh per run, as of the "
        "replay day; bundle: XGBoost + GRU trained in process (serving.world)",
    }
    rows = []
    for store in stores:
        r = results[store]
        rows.append(
            {
                "store": store,
                "rps": r["rps"],
                "errors": r["errors"],
                "e2e p50": r["e2e_p50_ms"],
                "e2e p95": r["e2e_p95_ms"],
                "e2e p99": r["e2e_p99_ms"],
                "in-proc p50": r["inprocess_p50_ms"],
                "in-proc p99": r["inprocess_p99_ms"],
                "overhead p50": r["overhead_p50_ms"],
            }
        )
    floor = results["serve_floor"]
    rows.append(
        {
            "store": "serve floor (echo)",
            "rps": floor["rps"],
            "errors": floor["errors"],
            "e2e p50": floor["e2e_p50_ms"],
            "e2e p95": "-",
            "e2e p99": floor["e2e_p99_ms"],
            "in-proc p50": "-",
            "in-proc p99": "-",
            "overhead p50": "-",
        }
    )
    print_table(f"serving @ {a.rps:g} rps x {a.duration:g} s (ms)", rows)
    cpu_rows = [{"app": s, **results[s]["serve_cpu_ms_per_request"]} for s in stores]
    print_table("Serve CPU ms per request, by process", cpu_rows)
    print_table("serve floor CPU ms per request", floor["serve_cpu_ms_per_request"])
    stage_rows = [
        {
            "store": s,
            **results[s]["server_stage_p50_ms"],
            "proxy+http": results[s]["proxy_http_p50_ms"],
        }
        for s in stores
    ]
    print_table("where the time goes: server-side stage p50 (ms)", stage_rows)
    write_json(a.out, results)
    return results


if __name__ == "__main__":
    main()
