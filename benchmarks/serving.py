"""Benchmark: the decision service under a fixed arrival rate, against the same scoring code
in-process, for a SQLite and a Redis online store.

    python -m benchmarks.serving --rps 100 --duration 30 --out out/bench/serving.json

What is served is real: :func:`tests.support.world.build_world` (run from a checkout: the benchmarks
import the tests' scaffolding) simulates ``--customers`` customers over a month, builds Feast
features as of the last day, trains an XGBoost + GRU bundle (in process, small settings) on the
point-in-time training set before it, and keeps the last day's transactions. For each store the run
materialises a fresh Feast online store (SQLite file, or a private project on the local Redis) as of
that day, deploys ``build_app({"bundle_dir": ...})`` on a local Ray Serve (one replica per
deployment, free loopback port), warms it up, and replays the day's transactions in time order,
open-loop at ``rps`` (latency from each request's scheduled send time, no retries; each decision
written back to the online state as in production). Then the same transactions go through
:class:`serving.inprocess.InProcessApp` (same components, same ladder, direct calls instead of Ray
handles and HTTP) on another fresh store. The difference of the two is what serving costs. Each
response carries per-stage server-side latencies; their medians say where the time goes. A
do-nothing Serve app ("floor") measures what any Serve app costs on this machine.

``--runs`` lists ``topology/route`` pairs served one after the other in the same run (default:
``colocated/direct,colocated/proxy,distributed/proxy``): ``colocated`` builds every component
in the Ingress replicas, ``distributed`` deploys one deployment per component; ``direct``
replays against the Ingress replicas' own ports (Serve direct ingress, round robin), ``proxy``
through Serve's proxy. Ray is started as riskml starts its local clusters
(:func:`riskml.training.runtime.local_ray_env`). ``--haproxy`` starts it as the RayService runs
(:data:`riskml.training.runtime.CLUSTER_SERVE_ENV`: Serve's HAProxy mode), so route ``proxy``
measures the route the manifests ship. ``--curve 100,200,300,400`` adds a capacity curve: the
first run at each rate on every store (p50/p99, errors, the ensemble's share of decisions).
"""

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import os
import platform
import socket
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from riskml import __version__
from riskml.console import print_table, write_json
from riskml.decision.protocols import FeatureSourceUnavailable
from riskml.features.errors import FeatureStoreError
from riskml.training.runtime import local_ray_env

STAGES = ("features", "xgboost", "sequence", "decider", "total")


@dataclass(frozen=True)
class Load:
    """What every served run of one benchmark shares: the world, its transactions, the rate,
    the warm-up, the Serve proxy URL, the Redis for the ``redis`` store, Ingress replicas."""

    world: Any
    txs: list[dict[str, Any]]
    rps: float
    warmup: int
    url: str
    redis_url: str
    replicas: int = 1

    def fresh_store(self, store: str) -> dict[str, Any]:
        return self.world.store(store, self.redis_url if store == "redis" else None)


def build_world_apart(path: Path, *, customers: int, seed: int) -> Any:
    """:func:`tests.support.world.build_world` (as many terminals as customers) in a child
    process: the caller is the load generator, and a heap holding the world's training objects
    (~500k of them) gives it 0.1-0.6 s GC pauses, i.e. bursts that measure the client, not the
    service."""
    from tests.support.world import build_world

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(
            build_world, path, customers=customers, terminals=customers, seed=seed
        ).result()


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

    return Echo.bind()  # type: ignore[attr-defined]


def bench_floor(load: Load, routes: tuple[str, ...] = ("direct", "proxy")) -> dict:
    """The echo app through each route (the replica's own port, then the proxy)."""
    from serving.local import deploy_config, wait_running

    app = {
        "name": "bench-floor",
        "route_prefix": "/floor",
        "import_path": "benchmarks.serving:echo_app",
    }
    deploy_config({"applications": [app]})
    wait_running("bench-floor")
    out = {}
    for route in routes:
        target = _target("bench-floor", load.url + "/floor", route)
        report, cpu_ms = _measured_replay(
            "bench-floor", target, load.txs, rps=load.rps, warmup=load.warmup
        )
        out[route] = {
            "rps": round(report.achieved_rps, 2),
            "requests": report.requests,
            "errors": report.errors,
            "e2e_p50_ms": _pct(report.latencies, 50),
            "e2e_p99_ms": _pct(report.latencies, 99),
            "serve_cpu_ms_per_request": {**cpu_ms, "sum": round(sum(cpu_ms.values()), 3)},
        }
    return out


def _measured_replay(
    app: str,
    target: str | list[str],
    txs: list[dict[str, Any]],
    *,
    rps: float,
    warmup: int,
    keep_responses: bool = False,
) -> tuple[Any, dict[str, float]]:
    """Warm up on the first ``warmup`` transactions, replay the rest at ``rps``; the report and
    the Serve CPU ms per request of ``app``'s processes (and the proxy) during the replay."""
    from serving.deployments import settle_heap
    from serving.replay import replay

    replay(target, txs[:warmup], rps=min(rps, 50.0), timeout_s=5)
    settle_heap()  # what this process already holds is never scanned during the replay
    cpu0 = _serve_cpu_s(app)
    report = replay(target, txs[warmup:], rps=rps, timeout_s=5, keep_responses=keep_responses)
    cpu1 = _serve_cpu_s(app)
    per_request = {
        k: round((cpu1[k] - cpu0.get(k, 0.0)) * 1e3 / max(1, report.requests), 3) for k in cpu1
    }
    return report, per_request


def _serve_cpu_s(app_name: str) -> dict[str, float]:
    """CPU seconds (user + system) used so far by this app's replicas and Serve's proxy (in
    HAProxy mode: the haproxy processes and the actor that manages them, which reads HAProxy's
    per-request metrics lines)."""
    import psutil

    out: dict[str, float] = {}
    for proc in psutil.process_iter(["cmdline", "name"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            if f"ServeReplica:{app_name}:" in cmd:
                key = cmd.split(f"ServeReplica:{app_name}:")[1].split()[0]
            elif "ray::ProxyActor" in cmd or "ray::HAProxyManager" in cmd:
                key = "proxy"
            elif proc.info["name"] == "haproxy":
                key = "haproxy"
            else:
                continue
            t = proc.cpu_times()
            out[key] = out.get(key, 0.0) + t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


@dataclass
class InProcess:
    """The in-process baseline: per-decision latency, mean CPU ms, per-stage latencies."""

    latencies: list[float]
    cpu_ms: float
    stages: dict[str, list[float]]


def _inprocess(args: dict, txs: list[dict[str, Any]], rps: float, warmup: int) -> InProcess:
    """Per-decision latency of the same code in one process, paced at the same rate (the first
    ``warmup`` decisions are not counted)."""
    from serving.inprocess import InProcessApp
    from serving.replay import run_loop

    app = InProcessApp(args)
    latencies = []
    cpu: list[float] = []
    stages: dict[str, list[float]] = {s: [] for s in STAGES}

    async def run() -> None:
        t0 = time.perf_counter()
        for i, tx in enumerate(txs):
            delay = t0 + i / rps - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            t, c = time.perf_counter(), time.process_time()
            (decision,) = await app.decide([tx])
            latencies.append((time.perf_counter() - t) * 1e3)
            cpu.append((time.process_time() - c) * 1e3)
            if i >= warmup:
                for stage, ms in decision.latency_ms.items():
                    if stage in stages:
                        stages[stage].append(ms)
            # as in serving: best effort (a store error costs the write-back, not the decision)
            with contextlib.suppress(FeatureSourceUnavailable, FeatureStoreError):
                app.source.write_back(tx)  # state evolves as in the served run, off the clock

    run_loop(run())  # the replay client's loop
    measured = cpu[warmup:]
    return InProcess(latencies[warmup:], sum(measured) / max(1, len(measured)), stages)


def _target(app: str, proxy_url: str, route: str, replicas: int = 1) -> str | list[str]:
    """What a run replays against: the proxy's URL, or the Ingress replicas' own (the replay
    client spreads requests over them round robin, as a load balancer in front would)."""
    from serving.local import ingress_urls

    if route == "proxy":
        return proxy_url
    urls = ingress_urls(app)
    if len(urls) != replicas:
        raise RuntimeError(f"expected {replicas} direct-ingress URL(s) for {app}, got {urls}")
    return urls


def bench_served(store: str, run: str, load: Load) -> dict[str, Any]:
    """Deploy the bundle app in ``run``'s topology on a fresh store, replay through ``run``'s
    route (``direct``: the Ingress replica's own port; ``proxy``: Serve's proxy), summarise."""
    from serving.local import app_config, deploy_config, wait_healthy, wait_running

    topology, route = run.split("/")
    world = load.world
    served_store = load.fresh_store(store)
    name, prefix = f"bench-{store}-{topology}", f"/{store}-{topology}"
    try:
        args = world.app_args(served_store, topology=topology)
        options = {"Ingress": {"num_replicas": load.replicas}}
        config = app_config(args, name=name, route_prefix=prefix, options=options)
        deploy_config({"applications": [config]})
        wait_running(name)
        target = _target(name, load.url + prefix, route, load.replicas)
        for t in [target] if isinstance(target, str) else target:
            wait_healthy(t)
        report, cpu_ms = _measured_replay(
            name, target, load.txs, rps=load.rps, warmup=load.warmup, keep_responses=True
        )
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
    lat = report.latencies
    return {
        "topology": topology,
        "route": route,
        "rps": round(report.achieved_rps, 2),
        "target_rps": load.rps,
        "requests": report.requests,
        "errors": report.errors,
        "e2e_p50_ms": _pct(lat, 50),
        "e2e_p95_ms": _pct(lat, 95),
        "e2e_p99_ms": _pct(lat, 99),
        "server_stage_p50_ms": {s: _pct(v, 50) for s, v in stages.items() if v},
        "server_stage_p99_ms": {s: _pct(v, 99) for s, v in stages.items() if v},
        "http_p50_ms": _pct(gaps, 50),  # e2e minus the ladder's own total: HTTP (+ proxy)
        # CPU per decision is far less sensitive to other load on the machine than latency is
        "serve_cpu_ms_per_request": {**cpu_ms, "sum": round(sum(cpu_ms.values()), 3)},
        "decision_sources": report.sources,
        "ensemble_share": round(report.sources.get("ensemble", 0) / max(1, report.requests), 4),
        "fallback_reasons": report.fallback_reasons,
        "status": report.status,
    }


def bench_store(store: str, runs: list[str], load: Load) -> dict[str, Any]:
    """The served app for each ``topology/route`` run, then the in-process baseline, each on
    a fresh store. The first run's figures are the store's headline (``e2e_*``); every run is
    under ``runs``."""
    served = {r: bench_served(store, r, load) for r in runs}
    # the in-process baseline replays the same transactions on a fresh copy of the store
    inproc_store = load.fresh_store(store)
    try:
        inproc = _inprocess(load.world.app_args(inproc_store), load.txs, load.rps, load.warmup)
    finally:
        load.world.drop_store(inproc_store)
    baseline = {
        "inprocess_p50_ms": _pct(inproc.latencies, 50),
        "inprocess_p99_ms": _pct(inproc.latencies, 99),
    }
    for r in served.values():
        r.update(baseline)
        r["overhead_p50_ms"] = round(r["e2e_p50_ms"] - r["inprocess_p50_ms"], 3)
    out = dict(served[runs[0]])
    out["inprocess_cpu_ms_per_request"] = round(inproc.cpu_ms, 3)
    # in process the two model stages run one after the other (sequence, then XGBoost)
    out["inprocess_stage_p50_ms"] = {s: _pct(v, 50) for s, v in inproc.stages.items() if v}
    out["runs"] = served
    return out


def bench_curve(stores: list[str], run: str, rates: list[float], load: Load) -> list[dict]:
    """The capacity curve: ``run`` served at each rate in turn (fresh store each), the same
    transactions from the start; e2e p50/p99, errors, the ensemble's share, CPU per request."""
    import dataclasses

    points = []
    for rate in rates:
        for store in stores:
            r = bench_served(store, run, dataclasses.replace(load, rps=rate))
            points.append(
                {
                    "target_rps": rate,
                    "store": store,
                    "run": run,
                    "rps": r["rps"],
                    "requests": r["requests"],
                    "errors": r["errors"],
                    "e2e_p50_ms": r["e2e_p50_ms"],
                    "e2e_p99_ms": r["e2e_p99_ms"],
                    "ensemble_share": r["ensemble_share"],
                    "fallback_reasons": r["fallback_reasons"],
                    "serve_cpu_ms_per_request": r["serve_cpu_ms_per_request"]["sum"],
                }
            )
    return points


def _rates(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rps", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per store")
    parser.add_argument(
        "--ingress-replicas",
        type=int,
        default=2,
        help="Ingress replicas (serve_config.yaml runs at least 2); other deployments: 1",
    )
    parser.add_argument("--warmup", type=int, default=200, help="requests before measuring")
    parser.add_argument("--stores", default="sqlite,redis")
    parser.add_argument(
        "--runs",
        default="colocated/direct,colocated/proxy,distributed/proxy",
        help="topology/route pairs served per store (topology colocated|distributed, route "
        "direct|proxy), in order; the first is each store's headline",
    )
    parser.add_argument(
        "--haproxy",
        action="store_true",
        help="Serve's HAProxy mode (RAY_SERVE_ENABLE_HA_PROXY=1), as the RayService ships it "
        "(riskml.training.runtime.CLUSTER_SERVE_ENV): route 'proxy' is then HAProxy; route "
        "'direct' is not available in this mode",
    )
    parser.add_argument("--redis-url", default="localhost:6379,db=6", help="Feast form")
    parser.add_argument(
        "--curve",
        type=_rates,
        default=[],
        help="rates (comma-separated) of a capacity curve after the main runs: the first "
        "--runs entry at each rate, on every store (e.g. 100,200,300,400)",
    )
    parser.add_argument(
        "--customers",
        type=int,
        default=None,
        help="simulated customers (default: enough for one day of transactions to cover the "
        "warm-up and the longest replay, ~1.9 transactions a customer a day)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("out/bench/serving.json"))
    a = parser.parse_args(argv)
    stores = [s.strip() for s in a.stores.split(",") if s.strip()]
    if not stores or set(stores) - {"sqlite", "redis"}:
        parser.error("--stores takes sqlite and/or redis")
    runs = [r.strip() for r in a.runs.split(",") if r.strip()]
    valid = {f"{t}/{r}" for t in ("colocated", "distributed") for r in ("direct", "proxy")}
    if not runs or set(runs) - valid:
        parser.error(f"--runs takes {sorted(valid)}")
    if a.haproxy and any(r.endswith("/direct") for r in runs):
        parser.error("--haproxy measures the shipped route: use --runs */proxy")

    import ray
    from ray import serve

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="riskml-bench-serving-") as tmp:
        t0 = time.perf_counter()
        needed = a.warmup + int(max([a.rps, *a.curve]) * a.duration)
        customers = a.customers or max(2000, int(needed / 1.7))
        world = build_world_apart(Path(tmp) / "world", customers=customers, seed=a.seed)
        txs = world.requests()[:needed]
        if len(txs) < needed:
            print(f"note: the replay day has {len(txs)} transactions, {needed} wanted")
        results["world"] = {
            "customers": customers,
            "bundle": world.bundle.name,
            "replay_day": world.replay_day.isoformat(),
            "day_transactions": world.day.height,
            "replayed": len(txs) - a.warmup,
            "build_s": round(time.perf_counter() - t0, 1),
        }
        port = _free_port()
        serve_env = {"OMP_NUM_THREADS": "1"}
        if a.haproxy:
            from riskml.training.runtime import CLUSTER_SERVE_ENV

            os.environ.update(CLUSTER_SERVE_ENV)
            serve_env.update(CLUSTER_SERVE_ENV)
        local_ray_env()  # as riskml's own local Ray: workers at nice 0, Serve direct ingress
        ray.init(
            num_cpus=os.cpu_count() or 2,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            runtime_env={"env_vars": serve_env},
        )
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            shared = Load(
                world=world,
                txs=txs,
                rps=a.rps,
                warmup=a.warmup,
                url=f"http://127.0.0.1:{port}",
                redis_url=a.redis_url,
                replicas=a.ingress_replicas,
            )
            results["serve_floor"] = bench_floor(
                shared, ("proxy",) if a.haproxy else ("direct", "proxy")
            )
            for store in stores:
                results[store] = bench_store(store, runs, shared)
            if a.curve:
                results["curve"] = bench_curve(stores, runs[0], a.curve, shared)
        finally:
            serve.shutdown()
            ray.shutdown()
    load = os.getloadavg()
    results["meta"] = {
        "riskml": __version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_after": [round(x, 2) for x in load],
        "topologies": {
            "colocated": "proxy -> Ingress (features, XGBoost || GRU, policy in-process)",
            "distributed": "proxy -> Ingress -> FeatureFetcher -> (XGBoostScorer || "
            "SequenceScorer) -> Decider",
        },
        "replicas": f"Ingress {a.ingress_replicas}, others 1; IngressConfig defaults "
        "(deadline 50 ms)",
        "ray_worker_niceness": os.environ.get("RAY_worker_niceness"),  # noqa: SIM112
        "proxy": "HAProxy (RAY_SERVE_ENABLE_HA_PROXY=1)" if a.haproxy else "Serve's Python proxy",
        "stores": "Feast online store (SQLite file / local Redis), fresh per run, as of the "
        "replay day; bundle: XGBoost + GRU trained in process (tests.support.world)",
    }
    rows = []
    for store, run in [(s, r) for s in stores for r in runs]:
        r = results[store]["runs"][run]
        rows.append(
            {
                "store": f"{store} {run}",
                "rps": r["rps"],
                "errors": r["errors"],
                "e2e p50": r["e2e_p50_ms"],
                "e2e p95": r["e2e_p95_ms"],
                "e2e p99": r["e2e_p99_ms"],
                "in-proc p50": r["inprocess_p50_ms"],
                "in-proc p99": r["inprocess_p99_ms"],
                "overhead p50": r["overhead_p50_ms"],
                "ensemble": r["ensemble_share"],
                "in-proc cpu": results[store]["inprocess_cpu_ms_per_request"],
            }
        )
    for route, floor in results["serve_floor"].items():
        rows.append(
            {
                "store": f"floor (echo) {route}",
                "rps": floor["rps"],
                "errors": floor["errors"],
                "e2e p50": floor["e2e_p50_ms"],
                "e2e p95": "-",
                "e2e p99": floor["e2e_p99_ms"],
                "in-proc p50": "-",
                "in-proc p99": "-",
                "overhead p50": "-",
                "ensemble": "-",
                "in-proc cpu": "-",
            }
        )
    print_table(f"serving @ {a.rps:g} rps x {a.duration:g} s (ms)", rows)
    cpu_rows = [
        {"app": f"{s} {r}", **results[s]["runs"][r]["serve_cpu_ms_per_request"]}
        for s in stores
        for r in runs
    ]
    print_table("Serve CPU ms per request, by process", cpu_rows)
    floor_cpu = [
        {"route": route, **f["serve_cpu_ms_per_request"]}
        for route, f in results["serve_floor"].items()
    ]
    print_table("serve floor CPU ms per request", floor_cpu)
    stage_rows = [
        {
            "store": f"{s} {r}",
            **results[s]["runs"][r]["server_stage_p50_ms"],
            "http (+proxy)": results[s]["runs"][r]["http_p50_ms"],
        }
        for s in stores
        for r in runs
    ]
    stage_rows += [
        {"store": f"{s} in-process", **results[s]["inprocess_stage_p50_ms"], "http (+proxy)": "-"}
        for s in stores
    ]
    print_table("where the time goes: server-side stage p50 (ms)", stage_rows)
    if results.get("curve"):
        print_table(f"capacity curve ({runs[0]}, {a.duration:g} s each)", results["curve"])
    write_json(a.out, results)
    return results


if __name__ == "__main__":
    main()
