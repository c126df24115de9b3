"""The fault scenarios of issue #21 on a real decision service: a Ray Serve app over HTTP
(Serve's proxy, as on Kubernetes) serving a model bundle on the production feature source
(:class:`serving.bundle.FeastFeatureSource` over a Feast online store on a private
``redis-server``), with the Ingress ``user_config`` of ``serving/serve_config.yaml`` (deadline
50 ms, feature timeout 20 ms) and the production admission (8 at work + 8 waiting per replica).

* :func:`store_down`: the Redis stopped, requests sent while it is down: every one answered
  from the rules rung within the deadline; the fallback counter on Ray's metrics endpoint rises
  by exactly the number of requests;
* :func:`slow_model`: every request routed to a version of the bundle's booster that sleeps
  (500 ms): answered by the rules within the deadline, none hung;
* :func:`replica_kill`: one of the Ingress replicas killed under open-loop load: failures with
  and without client retries, the p99 before the kill and while Serve restores the replica,
  how long until the replicas are back to target, and whether a retried transaction was
  written back twice.

Each scenario returns its figures with its targets (:data:`TARGETS`) and ``passed`` per target.
:func:`run` starts what they need in this process (a private ``redis-server``, a Ray of its own,
Serve, the app) and runs them in turn: ``benchmarks/faults.py`` at the target sizes, and
``tests/faults/test_faults.py`` at bounded sizes in a process of its own
(``python -m tests.support.faults``: the serving tests' package Ray has no direct ingress, and
one process holds one Ray), each asserting the same figures.

Routes: ``direct`` (the default of :func:`run`) sends to the Ingress replicas' own ports, round
robin (Serve direct ingress: what riskml's local clusters serve on; Serve's proxy alone costs
5-6 ms CPU per request on 2 cores and saturates them near 100 rps, benchmarks/README.md), the
client following the replicas Serve runs and skipping one whose connection failed, as a load
balancer in front of them would; ``proxy`` through Serve's proxy, as on Kubernetes.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SERVE_CONFIG = REPO / "serving" / "serve_config.yaml"
#: Direct ingress: how often the client asks Serve which replicas run, and how long it skips a
#: replica whose connection failed.
REFRESH_S = 0.5
EJECT_S = 10.0
#: How long the model version ``slow`` sleeps before answering.
SLOW_MS = 500.0
SLOW = "slow"
#: The targets of issue #21 (serving faults).
TARGETS: dict[str, dict[str, float]] = {
    "store_down": {
        "requests": 1_000,
        "answered_share": 1.0,
        "e2e_p99_ms": 50.0,
        "feature_timeout_ms": 20.0,
        "fallback_counter_delta": 1_000,
    },
    "slow_model": {
        "requests": 1_000,
        "slow_ms": SLOW_MS,
        "answered_within_deadline_plus_ms": 10.0,
        "hung": 0,
    },
    "replica_kill": {
        "replicas": 2,
        "rps": 200,
        "duration_s": 60,
        "kill_at_s": 20,
        "retries": 2,
        "failed_with_retries": 0,
        "recovery_p99_vs_before": 2.0,
        "replicas_back_s": 40.0,
        "written_back_twice": 0,
    },
}


def production_ingress_config() -> dict[str, Any]:
    """The Ingress ``user_config`` of ``serving/serve_config.yaml`` (decider included)."""
    import yaml

    config = yaml.safe_load(SERVE_CONFIG.read_text())
    (app,) = [a for a in config["applications"] if a["name"] == "riskml"]
    (ingress,) = [d for d in app["deployments"] if d["name"] == "Ingress"]
    return dict(ingress["user_config"])


def transactions(requests: Sequence[Mapping[str, Any]], n: int, tag: str) -> list[dict[str, Any]]:
    """``n`` requests cycling over ``requests`` (a replay day), each ``tx_id`` made unique by
    ``tag`` and the cycle: every request is a transaction the service has not seen."""
    if not requests:
        raise ValueError("no requests to cycle over")
    out = []
    for i in range(n):
        cycle, row = divmod(i, len(requests))
        tx = dict(requests[row])
        tx["tx_id"] = f"{tx['tx_id']}:{tag}{cycle}"
        out.append(tx)
    return out


def pct(values: Sequence[float], q: float) -> float:
    from serving.replay import percentile

    return round(percentile(values, q), 3) if values else math.nan


# -- the app -------------------------------------------------------------------------------------
@dataclass
class FaultApp:
    """A deployed fault app: its proxy URL, args, Feast store (on ``redis``) and metrics URL."""

    name: str
    prefix: str
    url: str
    args: dict[str, Any]
    store: dict[str, Any]
    redis: Any  # tests.serving.helpers.RedisServer
    metrics_url: str
    world: Any
    champion: str
    replicas: int
    ingress: dict[str, Any]
    cap: int  # admission: max_in_flight + max_waiting of one replica
    #: ``proxy``: through Serve's proxy (as on Kubernetes); ``direct``: the Ingress replicas'
    #: own ports (Serve direct ingress, round robin: what riskml's local clusters serve on)
    route: str = "proxy"
    slow_ms: float = SLOW_MS

    def target(self) -> str | list[str]:
        """Where to send requests now (``direct``: the replicas running at this moment)."""
        if self.route == "proxy":
            return self.url
        from serving.local import ingress_urls

        urls = ingress_urls(self.name)
        if not urls:
            raise RuntimeError(f"{self.name}: no direct-ingress URL (is direct ingress on?)")
        return urls

    def deploy(self, ingress: Mapping[str, Any] | None = None) -> None:
        """Deploy (or reconfigure in place: only ``user_config`` changes) with ``ingress``."""
        from serving.local import app_config, deploy_config, wait_running

        config = app_config(
            self.args,
            name=self.name,
            route_prefix=self.prefix,
            user_configs={"Ingress": dict(ingress or self.ingress)},
            options={"Ingress": {"num_replicas": self.replicas}},
        )
        deploy_config({"applications": [config]})
        wait_running(self.name)

    def reconfigure(self, ingress: Mapping[str, Any], timeout_s: float = 90.0) -> None:
        """Apply ``ingress`` through ``reconfigure()`` and wait until every replica has it."""
        import httpx

        self.deploy(ingress)
        want = {k: v for k, v in ingress.items() if k != "decider"}

        def active() -> bool:
            for _ in range(4 * self.replicas):  # probes spread over the replicas
                r = httpx.get(f"{self.url}/v1/model", timeout=10, trust_env=False)
                got = r.json().get("ingress_config") or {}
                if any(got.get(k) != _normal(v, got.get(k)) for k, v in want.items()):
                    return False
            return True

        deadline = time.monotonic() + timeout_s
        while not active():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: the new user_config never became active")
            time.sleep(0.3)

    def replica_actors(self) -> list[str]:
        import ray

        return sorted(
            a["name"]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if f"{self.name}#Ingress#" in a["name"]
        )

    def running_replicas(self) -> int:
        from ray import serve

        app = serve.status().applications.get(self.name)
        if app is None or "Ingress" not in app.deployments:
            return 0
        states = app.deployments["Ingress"].replica_states
        return int(sum(n for s, n in states.items() if str(getattr(s, "value", s)) == "RUNNING"))

    def fallbacks(self) -> float:
        """``ray_riskml_fallbacks`` of this app on Ray's metrics endpoint (every replica)."""
        return scrape(self.metrics_url, "ray_riskml_fallbacks", application=self.name)

    def settled_fallbacks(self, expected: float | None = None, timeout_s: float = 30.0) -> float:
        """The counter once it stopped moving (and reached ``expected``, if given): replicas
        report to the metrics agent every ``metrics_report_interval_ms``."""
        deadline = time.monotonic() + timeout_s
        last = self.fallbacks()
        while time.monotonic() < deadline:
            time.sleep(1.5)
            now = self.fallbacks()
            if now == last and (expected is None or now >= expected):
                return now
            last = now
        return last


def _normal(expected: Any, got: Any) -> Any:
    """``expected`` as the API echoes it (numbers as floats where the API has a float)."""
    if isinstance(expected, int) and isinstance(got, float):
        return float(expected)
    if isinstance(expected, dict) and isinstance(got, dict):
        return {k: _normal(v, got.get(k)) for k, v in expected.items()} | {
            k: v for k, v in got.items() if k not in expected
        }
    return expected


def fault_app_args(world: Any, store: Mapping[str, Any], slow_ms: float = SLOW_MS) -> dict:
    """The bundle app on ``store``, plus the model version ``slow``: the bundle's own booster
    sleeping ``slow_ms`` before it answers (reached through the experiment split)."""
    from serving.bundle import bundle_app_args

    args = bundle_app_args(world.app_args(dict(store)))
    champion = args["champion"]
    bundle = args["tabular_models"][champion]["kwargs"]["bundle_dir"]
    args["tabular_models"][SLOW] = {
        "factory": "tests.support.faulty_components:SlowBundleXGBoost",
        "kwargs": {"bundle_dir": bundle, "version": SLOW, "delay_ms": slow_ms},
    }
    return args


@contextmanager
def fault_app(
    world: Any,
    redis: Any,
    serve_url: str,
    metrics_url: str,
    *,
    name: str = "riskml-faults",
    prefix: str = "/faults",
    replicas: int = 2,
    slow_ms: float = SLOW_MS,
    route: str = "proxy",
) -> Iterator[FaultApp]:
    """Deploy the bundle app (``replicas`` Ingress replicas, production user_config) on a fresh
    Feast store materialised into ``redis`` (a :class:`tests.serving.helpers.RedisServer`)."""
    from ray import serve

    from serving.config import AdmissionArgs
    from serving.local import wait_healthy

    store = world.store("redis", f"127.0.0.1:{redis.port},db=0")
    args = fault_app_args(world, store, slow_ms)
    admission = AdmissionArgs.model_validate(args.get("admission") or {})
    app = FaultApp(
        name=name,
        prefix=prefix,
        url=serve_url + prefix,
        args=args,
        store=store,
        redis=redis,
        metrics_url=metrics_url,
        world=world,
        champion=args["champion"],
        replicas=replicas,
        ingress=production_ingress_config(),
        cap=admission.max_in_flight + admission.max_waiting,
        route=route,
        slow_ms=slow_ms,
    )
    try:
        app.deploy()
        wait_healthy(app.url)
        if route == "direct":
            for url in app.target():
                wait_healthy(url)
        yield app
    finally:
        serve.delete(name)
        if redis_up(redis):
            world.drop_store(store)


# -- metrics ---------------------------------------------------------------------------------------
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(metrics_url: str, metric: str, **labels: str) -> float:
    """Sum of ``metric`` (a counter: with or without ``_total``) over the samples of Ray's
    Prometheus endpoint whose labels include ``labels``."""
    import httpx

    text = httpx.get(f"{metrics_url}/metrics", timeout=10, trust_env=False).text
    total = 0.0
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m is None or m["name"] not in (metric, f"{metric}_total"):
            continue
        got = dict(_LABEL.findall(m["labels"] or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m["value"])
    return total


# -- the feature store ---------------------------------------------------------------------------
def redis_up(server: Any) -> bool:
    return server.proc is not None and server.proc.poll() is None


def stop_redis(server: Any) -> None:
    """Stop the store's redis-server, saving its data first (``SHUTDOWN SAVE``), so that
    :meth:`RedisServer.start` brings the same online store back."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5)
    with contextlib.suppress(redis.exceptions.ConnectionError):  # it hangs up as it exits
        client.shutdown(save=True)
    server.proc.wait(timeout=30)


def _decided_by_models(app: FaultApp, tx: Mapping[str, Any]) -> bool:
    import httpx

    try:
        r = httpx.post(f"{app.url}/v1/score", json=dict(tx), timeout=10, trust_env=False)
    except httpx.HTTPError:
        return False
    return r.status_code == 200 and r.json()["decision_source"] in ("ensemble", "xgboost_only")


def _wait(predicate: Any, timeout_s: float, interval_s: float = 0.25) -> float | None:
    """Seconds until ``predicate()`` held, or None after ``timeout_s``."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        if predicate():
            return time.perf_counter() - t0
        time.sleep(interval_s)
    return None


def _replay(app: FaultApp, txs: Sequence[Mapping[str, Any]], rps: float, **kw: Any) -> Any:
    from serving.replay import replay

    return replay(app.target(), txs, rps=rps, timeout_s=kw.pop("timeout_s", 10.0), **kw)


def server_clock(
    bodies: Sequence[Mapping[str, Any]],
) -> tuple[list[float], list[float], list[float]]:
    """Per answer, on the server's clock: ``latency_ms.total``, how long of it the replica's
    event loop was behind (``loop_lag``, serving.looplag: the replica's saturation or the
    machine's), and the total less that lag (what the ladder itself took)."""
    total = [float(b["latency_ms"]["total"]) for b in bodies]
    lag = [float(b["latency_ms"].get("loop_lag", 0.0)) for b in bodies]
    return total, lag, [t - x for t, x in zip(total, lag, strict=True)]


def _mix(bodies: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for b in bodies:
        key = f"{b['decision_source']}/{b['fallback_reason']}"
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


# -- 1. the feature store down -------------------------------------------------------------------
def store_down(
    app: FaultApp, requests: Sequence[Mapping[str, Any]], *, n: int, rps: float, warmup: int = 200
) -> dict[str, Any]:
    """Replay ``warmup`` requests on the healthy store (the baseline), stop the Redis, replay
    ``n`` more while it is down, bring it back; figures vs :data:`TARGETS` ``store_down``."""
    healthy_txs = transactions(requests, warmup, "up")
    down_txs = transactions(requests, n, "down")
    healthy = _replay(app, healthy_txs, rps, keep_responses=True)
    before = app.settled_fallbacks()
    stop_redis(app.redis)
    try:
        report = _replay(app, down_txs, rps, keep_responses=True)
        after = app.settled_fallbacks(expected=before + report.ok)
    finally:
        app.redis.start()
    recovered_s = _wait(lambda: _decided_by_models(app, down_txs[0]), 60.0)
    bodies = [r["body"] for r in report.responses if "body" in r]
    server_total, loop_lag, ladder_total = server_clock(bodies)
    features_ms = float(app.ingress["timeouts"]["features_ms"])
    deadline_ms = float(app.ingress["deadline_ms"])
    target = TARGETS["store_down"]
    figures = {
        "requests": report.requests,
        "rps": round(report.achieved_rps, 1),
        "answered": report.ok,
        "answered_share": round(report.ok / max(1, report.requests), 4),
        "status": report.status,
        "e2e_p50_ms": pct(report.latencies, 50),
        "e2e_p99_ms": pct(report.latencies, 99),
        "e2e_max_ms": pct(report.latencies, 100),
        "server_total_p99_ms": pct(server_total, 99),
        "server_total_max_ms": pct(server_total, 100),
        "loop_lag_max_ms": pct(loop_lag, 100),
        "ladder_total_max_ms": pct(ladder_total, 100),
        "healthy_e2e_p50_ms": pct(healthy.latencies, 50),
        "healthy_e2e_p99_ms": pct(healthy.latencies, 99),
        "healthy_errors": healthy.errors,
        "deadline_ms": deadline_ms,
        "feature_timeout_ms": features_ms,
        "fallback_counter_delta": after - before,
        "decided_by": _mix(bodies),
        "store_back_to_models_s": None if recovered_s is None else round(recovered_s, 2),
    }
    figures["passed"] = {
        "answered_share": figures["answered_share"] >= target["answered_share"],
        "e2e_p99_ms": figures["e2e_p99_ms"] <= target["e2e_p99_ms"],
        "feature_timeout_ms": features_ms <= target["feature_timeout_ms"],
        "fallback_counter_delta": figures["fallback_counter_delta"] == report.requests,
        "requests": report.requests >= target["requests"],
    }
    return figures


# -- 2. a model past the deadline ----------------------------------------------------------------
def slow_model(
    app: FaultApp, requests: Sequence[Mapping[str, Any]], *, n: int, rps: float
) -> dict[str, Any]:
    """Route every request to the version ``slow`` (experiment split: all of it), replay ``n``
    requests; figures vs :data:`TARGETS` ``slow_model``."""
    txs = transactions(requests, n, "slow")
    baseline = _replay(app, transactions(requests, 200, "fast"), rps, keep_responses=True)
    slow_cfg = {**app.ingress, "experiment": {"enabled": True, "arms": {SLOW: 1.0}}}
    app.reconfigure(slow_cfg)
    try:
        before = app.settled_fallbacks()
        report = _replay(app, txs, rps, keep_responses=True)
        after = app.settled_fallbacks(expected=before + report.ok)
    finally:
        app.reconfigure(app.ingress)
    bodies = [r["body"] for r in report.responses if "body" in r]
    deadline_ms = float(app.ingress["deadline_ms"])
    limit = deadline_ms + TARGETS["slow_model"]["answered_within_deadline_plus_ms"]
    server_total, loop_lag, ladder_total = server_clock(bodies)
    # hung: held for the slow model, or never answered (the client gave up after timeout_s);
    # a 503 (shed by the admission: nothing decided) is an answer, counted as not answered
    hung = report.status.get("timeout", 0) + sum(ms >= app.slow_ms for ms in report.latencies)
    figures = {
        "requests": report.requests,
        "rps": round(report.achieved_rps, 1),
        "answered": report.ok,
        "status": report.status,
        "slow_ms": app.slow_ms,
        "deadline_ms": deadline_ms,
        "server_total_p99_ms": pct(server_total, 99),
        "server_total_max_ms": pct(server_total, 100),
        "server_within_deadline_plus_10": sum(ms <= limit for ms in server_total),
        "loop_lag_p99_ms": pct(loop_lag, 99),
        "loop_lag_max_ms": pct(loop_lag, 100),
        # total less the loop's lag: what the ladder itself took
        "ladder_within_deadline_plus_10": sum(ms <= limit for ms in ladder_total),
        "ladder_total_max_ms": pct(ladder_total, 100),
        "e2e_p50_ms": pct(report.latencies, 50),
        "e2e_p99_ms": pct(report.latencies, 99),
        "e2e_max_ms": pct(report.latencies, 100),
        "e2e_within_deadline_plus_10": sum(ms <= limit for ms in report.latencies),
        "hung": hung,
        "versions": sorted({b["model_version"] for b in bodies}),
        "decided_by": _mix(bodies),
        "fallback_counter_delta": after - before,
        "champion_e2e_p50_ms": pct(baseline.latencies, 50),
        "champion_e2e_p99_ms": pct(baseline.latencies, 99),
    }
    figures["passed"] = {
        "server_all_within_deadline_plus_10": figures["server_within_deadline_plus_10"]
        == report.requests,
        "e2e_all_within_deadline_plus_10": figures["e2e_within_deadline_plus_10"]
        == report.requests,
        "answered": report.ok == report.requests,
        "hung": hung == 0,
        # never the slow model's answer: a rung below the models (rules, or the default)
        "fallback": all(b["decision_source"] in ("rules", "default") for b in bodies),
        "requests": report.requests >= TARGETS["slow_model"]["requests"],
    }
    return figures


# -- 3. a replica killed under load --------------------------------------------------------------
def replica_kill(
    app: FaultApp,
    requests: Sequence[Mapping[str, Any]],
    *,
    rps: float,
    duration_s: float,
    kill_at_s: float,
    retries: int,
    tag: str,
    back_timeout_s: float = 120.0,
    skip_s: float = 1.0,
) -> dict[str, Any]:
    """Replay ``rps`` for ``duration_s`` (``app.route``) with ``retries`` client retries
    (idempotent by ``tx_id``); kill one Ingress replica (``ray.kill``, no restart: Serve must
    replace it) ``kill_at_s`` in; figures vs :data:`TARGETS` ``replica_kill``. The first
    ``skip_s`` seconds are the client's own warm-up, left out of the p99 before the kill."""
    import ray

    from serving.replay import replay

    target = app.replicas
    assert _wait(lambda: app.running_replicas() == target, back_timeout_s) is not None
    actors = app.replica_actors()
    if len(actors) != target:
        raise RuntimeError(f"expected {target} Ingress replicas, found {actors}")
    txs = transactions(requests, int(rps * duration_s), tag)
    victim = actors[0]
    marks: dict[str, float] = {}
    started = threading.Event()

    def killer() -> None:
        started.wait()
        time.sleep(kill_at_s)
        marks["kill"] = time.perf_counter()
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)

        def back() -> bool:
            names = app.replica_actors()
            running = app.running_replicas()
            if running < target and "noticed" not in marks:
                marks["noticed"] = time.perf_counter()  # Serve saw the replica gone
            return victim not in names and len(names) == target and running == target

        waited = _wait(back, back_timeout_s, interval_s=0.5)
        if waited is not None:
            marks["back"] = time.perf_counter()

    def sent(i: int) -> None:
        if i == 0:  # replay's clock (each request's "t") starts at its first send
            marks["t0"] = time.perf_counter()
            started.set()

    thread = threading.Thread(target=killer, name="replica-killer", daemon=True)
    thread.start()
    targets: Any = app.target()
    follow: threading.Thread | None = None
    done = threading.Event()
    if app.route == "direct":
        # the client follows the replicas Serve runs (a load balancer's target discovery)
        now = [targets]

        def refresh() -> None:
            while not done.wait(REFRESH_S):
                with contextlib.suppress(Exception):
                    now[0] = app.target()

        follow = threading.Thread(target=refresh, name="targets", daemon=True)
        follow.start()
        targets = lambda: now[0]  # noqa: E731
    try:
        report = replay(
            targets,
            txs,
            rps=rps,
            timeout_s=10.0,
            retries=retries,
            keep_responses=True,
            on_sent=sent,
            eject_s=EJECT_S,
        )
    finally:
        started.set()
        done.set()
        thread.join(timeout=back_timeout_s + kill_at_s + 5)
        if follow is not None:
            follow.join()
    t0 = marks["t0"]
    kill_t = marks["kill"] - t0 if "kill" in marks else math.nan
    back_t = marks["back"] - t0 if "back" in marks else math.inf
    responses = report.responses
    ok = [r for r in responses if "body" in r]

    def window(lo: float, hi: float) -> list[float]:
        return [r["latency_ms"] for r in ok if lo <= r["t"] < hi]

    before = window(skip_s, kill_t)
    recovery = window(kill_t, back_t)
    after = window(back_t, math.inf)
    p99_before, p99_recovery = pct(before, 99), pct(recovery, 99)
    failed = [r for r in responses if "body" not in r]
    twice = written_back(app, txs, {str(r["body"]["tx_id"]): r["t"] for r in ok})
    figures = {
        "retries_allowed": retries,
        "requests": report.requests,
        "target_rps": rps,
        "rps": round(report.achieved_rps, 1),
        "duration_s": round(report.duration_s, 1),
        "kill_at_s": round(kill_t, 2),
        "failed": report.errors,
        # in flight at the killed replica (sent within a second before it died), and the rest
        "failed_at_kill": sum(kill_t - 1.0 <= r["t"] < kill_t + 1.0 for r in failed),
        "failed_at_s": [round(r["t"], 2) for r in failed][:50],
        "status": report.status,
        "retried": report.retries,
        "requests_retried": sum(r.get("attempts", 1) > 1 for r in responses),
        "killed_replica_cap": app.cap,
        "p99_before_ms": p99_before,
        "p99_recovery_ms": p99_recovery,
        "p99_after_ms": pct(after, 99),
        "p50_before_ms": pct(before, 50),
        "p50_recovery_ms": pct(recovery, 50),
        "recovery_p99_vs_before": round(p99_recovery / p99_before, 2) if p99_before else None,
        "recovery_window_requests": len(recovery),
        "replicas_back_s": None if math.isinf(back_t) else round(back_t - kill_t, 2),
        "serve_noticed_s": round(marks["noticed"] - t0 - kill_t, 2) if "noticed" in marks else None,
        "timeline": timeline(responses),
        "replicas": target,
        "route": app.route,
        "decided_by": _mix([r["body"] for r in ok]),
        "send_lag_p99_ms": report.send_lag_ms.get("p99"),
    }
    figures.update(twice)
    limits = TARGETS["replica_kill"]
    back_s = figures["replicas_back_s"]
    passed = {
        "replicas_back_s": back_s is not None and back_s <= limits["replicas_back_s"],
        "written_back_twice": figures["written_back_twice"] == limits["written_back_twice"],
    }
    if retries:
        passed["failed"] = report.errors == limits["failed_with_retries"]
        passed["recovery_p99_vs_before"] = (
            figures["recovery_p99_vs_before"] is not None
            and figures["recovery_p99_vs_before"] <= limits["recovery_p99_vs_before"]
        )
    else:
        passed["failed_within_cap"] = report.errors <= app.cap
    figures["passed"] = passed
    return figures


def timeline(responses: Sequence[Mapping[str, Any]], step_s: float = 1.0) -> list[dict]:
    """Per ``step_s`` of scheduled send time: requests, failures, latency p50 / p99 / max."""
    buckets: dict[int, list[Mapping[str, Any]]] = {}
    for r in responses:
        buckets.setdefault(int(r["t"] // step_s), []).append(r)
    out = []
    for k in sorted(buckets):
        ms = [r["latency_ms"] for r in buckets[k] if "body" in r]
        out.append(
            {
                "t": round(k * step_s, 1),
                "n": len(buckets[k]),
                "failed": sum("body" not in r for r in buckets[k]),
                "p50": pct(ms, 50),
                "p99": pct(ms, 99),
                "max": pct(ms, 100),
            }
        )
    return out


def written_back(
    app: FaultApp, txs: Sequence[Mapping[str, Any]], answered: Mapping[str, float]
) -> dict[str, Any]:
    """How the replayed transactions stand in the online store once the write-backs have
    flushed: folded twice (a retry written back again: must never happen), and answered but
    not folded (a write-back the killed replica still held in its batch when it died)."""
    from serving.bundle import FeastFeatureSource

    time.sleep(1.0)  # the Ingress batches write-backs for write_back_interval_ms
    online = FeastFeatureSource(app.store).online
    ids = {str(t["tx_id"]) for t in txs}
    customers = sorted({str(t["customer_id"]) for t in txs})
    seen: dict[str, int] = {}
    for start in range(0, len(customers), 200):
        for state, _ in online.histories(customers[start : start + 200]).values():
            if state is None:
                continue
            for tx_id in state["hist_tx_id"].tolist():
                if tx_id in ids:
                    seen[tx_id] = seen.get(tx_id, 0) + 1
    lost = sorted(set(answered) - set(seen), key=lambda tx_id: answered[tx_id])
    return {
        "written_back_twice": sum(n > 1 for n in seen.values()),
        "written_back": len(seen),
        "answered_not_written_back": len(lost),
        # when each was sent (s into the run)
        "answered_not_written_back_at_s": [round(answered[tx_id], 2) for tx_id in lost][:20],
    }


# -- running them ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sizes:
    """How big each scenario is (the targets: :data:`TARGETS`)."""

    requests: int = 1_000  # store_down, slow_model
    rate: float = 200.0  # store_down's rps
    slow_rate: float = 200.0  # slow_model's rps
    rps: float = 200.0  # replica_kill
    duration_s: float = 60.0
    kill_at_s: float = 20.0
    retries: int = 2
    replicas: int = 2
    slow_ms: float = SLOW_MS


SCENARIOS = ("store_down", "slow_model", "replica_kill")


def run(
    world: Any,
    sizes: Sizes = Sizes(),
    *,
    scenarios: Sequence[str] = SCENARIOS,
    route: str = "direct",
    workdir: Path,
) -> dict[str, Any]:
    """Start a private ``redis-server`` (under ``workdir``), a Ray of its own with Serve (direct
    ingress on for ``route`` direct) and the fault app on ``world``'s bundle, run
    ``scenarios`` in order; their figures by name (the kill twice: ``replica_kill_retries``
    with ``sizes.retries`` client retries, ``replica_kill_control`` without)."""
    import os

    from riskml.training.runtime import LOCAL_SERVE_ENV, SERVE_REPLICA_ENV
    from tests.serving.helpers import RedisServer, local_serve

    unknown = set(scenarios) - set(SCENARIOS)
    if unknown or route not in ("direct", "proxy"):
        raise ValueError(f"unknown scenarios {sorted(unknown)} or route {route!r}")
    serve_env = dict(LOCAL_SERVE_ENV if route == "direct" else SERVE_REPLICA_ENV)
    serve_env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] = "1" if route == "direct" else "0"
    requests = world.requests()
    results: dict[str, Any] = {}
    redis = RedisServer(Path(workdir))
    redis.start()
    try:
        # a Ray of its own (address "local"), whatever else runs on this machine; the slow
        # model version lives in tests.support
        with (
            local_serve(serve_env, num_cpus=os.cpu_count() or 2, address="local") as instance,
            fault_app(
                world,
                redis,
                instance.url,
                instance.metrics_url,
                replicas=sizes.replicas,
                slow_ms=sizes.slow_ms,
                route=route,
            ) as app,
        ):
            results["app"] = {
                "route": route,
                "replicas": app.replicas,
                "admission_cap_per_replica": app.cap,
                "ingress_user_config": app.ingress,
                "bundle": world.bundle.name,
            }
            if "store_down" in scenarios:
                results["store_down"] = store_down(app, requests, n=sizes.requests, rps=sizes.rate)
            if "slow_model" in scenarios:
                results["slow_model"] = slow_model(
                    app, requests, n=sizes.requests, rps=sizes.slow_rate
                )
            if "replica_kill" in scenarios:
                for key, retries in (("retries", sizes.retries), ("control", 0)):
                    results[f"replica_kill_{key}"] = replica_kill(
                        app,
                        requests,
                        rps=sizes.rps,
                        duration_s=sizes.duration_s,
                        kill_at_s=sizes.kill_at_s,
                        retries=retries,
                        tag=f"kill{key}",
                    )
    finally:
        redis.stop()
    return results


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.support.faults``: :func:`run` on a world already built (its files and
    its replay day's frame as Parquet), figures to ``--out`` as JSON."""
    import argparse
    import datetime as dt
    import json
    import tempfile

    import polars as pl

    from tests.support.world import World

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--world-root", type=Path, required=True)
    p.add_argument("--features-dir", type=Path, required=True)
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--replay-day", required=True, help="ISO datetime")
    p.add_argument("--day", type=Path, required=True, help="the replay day's frame (Parquet)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--route", choices=("direct", "proxy"), default="direct")
    p.add_argument("--out", type=Path, required=True)
    for name, default in Sizes().__dict__.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    a = p.parse_args(argv)
    world = World(
        a.world_root,
        a.features_dir,
        a.bundle,
        dt.datetime.fromisoformat(a.replay_day),
        pl.read_parquet(a.day),
    )
    sizes = Sizes(**{k: getattr(a, k) for k in Sizes().__dict__})
    scenarios = [x.strip() for x in a.scenarios.split(",") if x.strip()]
    with tempfile.TemporaryDirectory(prefix="riskml-faults-") as tmp:
        results = run(world, sizes, scenarios=scenarios, route=a.route, workdir=Path(tmp))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
