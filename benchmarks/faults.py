"""Benchmark: the decision service under the faults of issue #21, at the target sizes, each
figure next to its target and a baseline from the same run.

    python -m benchmarks.faults --out out/bench/faults.json

What is served is real (:mod:`tests.support.faults`, run from a checkout): a world of
``--customers`` simulated customers (:func:`tests.support.world.build_world`: Feast features as
of a replay day, an XGBoost + GRU bundle trained on the point-in-time training set before it),
materialised into a private ``redis-server`` that this run starts and stops; the bundle app on a
local Ray Serve (``--replicas`` Ingress replicas, the Ingress ``user_config`` of
``serving/serve_config.yaml``: deadline 50 ms, feature timeout 20 ms; admission 8 + 8 per
replica), replayed open-loop through Serve's proxy (as on Kubernetes), each decision written back
to the online store. The scenarios, one after the other on the same app:

Each of ``--routes`` runs on a Ray of its own (direct ingress is a setting of the whole Serve
instance): ``direct`` (default) and/or ``proxy``; see :mod:`tests.support.faults`.

1. ``store_down``: ``--requests`` requests at ``--rate`` with the Redis stopped (baseline: 200
   requests on the healthy store just before); every request answered, e2e p99, the fallback
   counter ``ray_riskml_fallbacks`` on Ray's metrics endpoint;
2. ``slow_model``: ``--requests`` requests at ``--rate``, all routed to a version of the
   bundle's booster that sleeps ``--slow-ms`` (baseline: 200 on the champion); every answer
   within the deadline + 10 ms, none hung;
3. ``replica_kill``: ``--rps`` for ``--duration`` s, one Ingress replica killed (``ray.kill``,
   Serve replaces it) at ``--kill-at`` s; once with ``--retries`` client retries (idempotent by
   ``tx_id``: the write-back folds a transaction once) and once without (the control), each
   with the p99 before the kill as its baseline.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from riskml import __version__
from riskml.console import print_table, write_json


def _rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One table row per figure with a target: figure, target, pass/fail."""
    from tests.support.faults import TARGETS

    rows = []

    def add(scenario: str, figure: str, value: Any, target: str, ok: bool | None) -> None:
        verdict = "-" if ok is None else ("pass" if ok else "FAIL")
        rows.append(
            {"scenario": scenario, "figure": figure, "value": value, "target": target, "": verdict}
        )

    s = results.get("store_down")
    if s:
        t, p = TARGETS["store_down"], s["passed"]
        add("store down", "requests", s["requests"], f">= {t['requests']:,.0f}", p["requests"])
        add("store down", "answered", s["answered_share"], "1.0", p["answered_share"])
        add("store down", "e2e p99 ms", s["e2e_p99_ms"], f"<= {t['e2e_p99_ms']:g}", p["e2e_p99_ms"])
        add(
            "store down",
            "feature timeout ms",
            s["feature_timeout_ms"],
            f"<= {t['feature_timeout_ms']:g}",
            p["feature_timeout_ms"],
        )
        add(
            "store down",
            "fallback counter delta",
            s["fallback_counter_delta"],
            f"== {s['requests']}",
            p["fallback_counter_delta"],
        )
        add("store down", "healthy e2e p99 ms (baseline)", s["healthy_e2e_p99_ms"], "-", None)
    s = results.get("slow_model")
    if s:
        p = s["passed"]
        limit = f"{s['requests']} of {s['requests']}"
        add("slow model", "requests", s["requests"], ">= 1,000", p["requests"])
        add("slow model", "answered", s["answered"], str(s["requests"]), p["answered"])
        add(
            "slow model",
            "server <= deadline+10 ms",
            s["server_within_deadline_plus_10"],
            limit,
            p["server_all_within_deadline_plus_10"],
        )
        add(
            "slow model",
            "e2e <= deadline+10 ms",
            s["e2e_within_deadline_plus_10"],
            limit,
            p["e2e_all_within_deadline_plus_10"],
        )
        add("slow model", "e2e max ms", s["e2e_max_ms"], f"< {s['slow_ms']:g}", None)
        add("slow model", "hung", s["hung"], "0", p["hung"])
        add("slow model", "rules/xgboost_timeout", str(s["decided_by"]), "all", p["fallback"])
        add("slow model", "champion e2e p99 ms (baseline)", s["champion_e2e_p99_ms"], "-", None)
    for key, label in (("replica_kill_retries", "kill, retries"), ("replica_kill_control", "")):
        s = results.get(key)
        if not s:
            continue
        label = label or "kill, no retries"
        t, p = TARGETS["replica_kill"], s["passed"]
        add(label, "rps (target)", f"{s['rps']} ({s['target_rps']:g})", f"{t['rps']:g}", None)
        if "failed" in p:
            add(label, "failed", s["failed"], "0", p["failed"])
            add(
                label,
                "p99 recovery / before",
                f"{s['p99_recovery_ms']} / {s['p99_before_ms']}",
                f"<= {t['recovery_p99_vs_before']:g}x",
                p["recovery_p99_vs_before"],
            )
        else:
            add(
                label,
                "failed (at the kill)",
                f"{s['failed']} ({s['failed_at_kill']})",
                f"<= {s['killed_replica_cap']} (cap)",
                p["failed_within_cap"],
            )
            add(
                label,
                "p99 recovery / before",
                f"{s['p99_recovery_ms']} / {s['p99_before_ms']}",
                "-",
                None,
            )
        add(label, "written back twice", s["written_back_twice"], "0", p["written_back_twice"])
        add(label, "answered, not written back", s["answered_not_written_back"], "-", None)
        add(
            label,
            "replicas back s",
            s["replicas_back_s"],
            f"<= {t['replicas_back_s']:g}",
            p["replicas_back_s"],
        )
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="store_down, slow_model")
    parser.add_argument("--rate", type=float, default=200.0, help="rps of store_down, slow_model")
    parser.add_argument("--slow-ms", type=float, default=500.0)
    parser.add_argument("--rps", type=float, default=200.0, help="replica_kill")
    parser.add_argument("--duration", type=float, default=60.0, help="replica_kill seconds")
    parser.add_argument("--kill-at", type=float, default=20.0, help="replica_kill seconds")
    parser.add_argument("--retries", type=int, default=2)
    parser.add_argument("--replicas", type=int, default=2, help="Ingress replicas")
    parser.add_argument(
        "--scenarios", default="store_down,slow_model,replica_kill", help="comma-separated"
    )
    parser.add_argument(
        "--routes",
        default="direct",
        help="comma-separated, each on a Ray of its own: direct (the Ingress replicas' own "
        "ports: Serve direct ingress, what riskml's local clusters serve on; the client follows "
        "the replicas and skips one whose connection failed) and/or proxy (Serve's proxy, as "
        "on Kubernetes)",
    )
    parser.add_argument("--customers", type=int, default=1000, help="simulated customers")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("out/bench/faults.json"))
    a = parser.parse_args(argv)
    scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    if not scenarios or set(scenarios) - {"store_down", "slow_model", "replica_kill"}:
        parser.error("--scenarios takes store_down, slow_model, replica_kill")
    routes = [r.strip() for r in a.routes.split(",") if r.strip()]
    if not routes or set(routes) - {"direct", "proxy"}:
        parser.error("--routes takes direct and/or proxy")

    from benchmarks.serving import build_world_apart
    from tests.support import faults

    sizes = faults.Sizes(
        requests=a.requests,
        rate=a.rate,
        slow_rate=a.rate,
        rps=a.rps,
        duration_s=a.duration,
        kill_at_s=a.kill_at,
        retries=a.retries,
        replicas=a.replicas,
        slow_ms=a.slow_ms,
    )
    results: dict[str, Any] = {}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="riskml-bench-faults-") as tmp:
        world = build_world_apart(Path(tmp) / "world", customers=a.customers, seed=a.seed)
        results["world"] = {
            "bundle": world.bundle.name,
            "replay_day": world.replay_day.isoformat(),
            "day_transactions": world.day.height,
            "build_s": round(time.perf_counter() - t_start, 1),
        }
        results["routes"] = {}
        for route in routes:
            redis_dir = Path(tmp) / f"redis-{route}"
            redis_dir.mkdir()
            results["routes"][route] = faults.run(
                world, sizes, scenarios=scenarios, route=route, workdir=redis_dir
            )
    load = os.getloadavg()
    results["meta"] = {
        "riskml": __version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_after": [round(x, 2) for x in load],
        "total_s": round(time.perf_counter() - t_start, 1),
        "args": vars(a) | {"out": str(a.out)},
        "targets": faults.TARGETS,
        "note": "2 cores shared with the replay client, Ray, Redis and whatever else runs on the "
        "machine (loadavg_after)",
    }
    for route, figures in results["routes"].items():
        print_table(f"serving faults (issue #21) vs targets, route {route}", _rows(figures))
    write_json(a.out, results)
    return results


if __name__ == "__main__":
    main()
