"""Benchmark: the credit line's Ray training against plain training, and its Serve endpoints.

    python -m benchmarks.credit [--size demo] [--requests 500] [--repeat 2] [--out FILE]

One process, one simulated portfolio (``--size``: ``demo`` = 24 vintages x 1,500 loans and
23 x 420 impressions x 8 candidates), one private Ray head for everything:

* **PD GBDT** (:func:`riskml.training.credit.train_pd`, GBDT only, no tuning): Ray Train's
  ``XGBoostTrainer`` (one worker running the same fit) against the same fit in this process,
  same data, parameters and threads; ``ray_over_plain`` is their ratio, ``ray_startup_seconds``
  the fixed cost before the worker's fit starts. Best of ``--repeat`` runs each.
* **Offer ranker** (:func:`riskml.training.credit_offers.train_offer_ranker`): one Ray task
  against the same fit in process.
* **Endpoints**: the credit Serve app (one replica) on the same Ray serving the bundles just
  trained; ``--requests`` applications of the held-out vintage to ``POST /v1/credit/decision``
  and a fifth as many customers' candidate offers to ``POST /v1/credit/offers``, one client,
  one request at a time, over HTTP: p50 / p99 / mean. Baseline in the same run: the same
  requests through the in-process service (:class:`serving.credit.CreditService`), so the
  difference is what HTTP and Serve add.

Writes ``benchmarks/results/<UTC date>/credit.json`` (or ``--out``) and prints a short table. The
load average before and after is recorded: the machine may be shared.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import load_average, percentiles
from riskml import __version__
from riskml.console import print_table, write_json

RESULTS = Path(__file__).resolve().parent / "results"


def train_pd_ray_vs_plain(portfolio: Any, repeat: int) -> dict[str, Any]:
    """The PD GBDT on Ray Train and in process, ``repeat`` times; the best of each."""
    from riskml.training.credit import PDTrainingConfig, train_pd

    config = PDTrainingConfig(models=("gbdt",), use_ray=True, tune=None, time_plain_baseline=True)
    runs: list[dict[str, float]] = []
    result = None
    for _ in range(repeat):
        result = train_pd(portfolio, config)
        info = result.models["gbdt"].info
        t = result.timings
        runs.append(
            {
                "ray_seconds": float(t["gbdt_ray_seconds"]),
                "plain_seconds": float(t["gbdt_plain_seconds"]),
                "ray_fit_seconds": float(info.get("ray_fit_seconds") or 0.0),
                "ray_startup_seconds": float(info.get("ray_startup_seconds") or 0.0),
            }
        )
    ray_best = min(r["ray_seconds"] for r in runs)
    plain_best = min(r["plain_seconds"] for r in runs)
    assert result is not None
    return {
        "rows_train": len(result.models["gbdt"].dev_raw),
        "ray_seconds": ray_best,
        "plain_seconds": plain_best,
        "ray_over_plain": ray_best / max(plain_best, 1e-9),
        "ray_startup_seconds": min(r["ray_startup_seconds"] for r in runs),
        "runs": runs,
        "result": result,
    }


def train_offers_ray_vs_plain(portfolio: Any, repeat: int) -> dict[str, Any]:
    """The offer ranker as one Ray task and in process, ``repeat`` times; the best of each."""
    from riskml.training.credit_offers import OfferTrainingConfig, train_offer_ranker

    config = OfferTrainingConfig(use_ray=True, time_plain_baseline=True)
    runs, result = [], None
    for _ in range(repeat):
        result = train_offer_ranker(portfolio, config)
        runs.append(
            {
                "ray_seconds": result.timings["ray_task_s"],
                "plain_seconds": result.timings["plain_s"],
            }
        )
    ray_best = min(r["ray_seconds"] for r in runs)
    plain_best = min(r["plain_seconds"] for r in runs)
    assert result is not None
    return {
        "impressions_train": result.split.summary()["train_impressions"],
        "ray_seconds": ray_best,
        "plain_seconds": plain_best,
        "ray_over_plain": ray_best / max(plain_best, 1e-9),
        "runs": runs,
        "result": result,
    }


def endpoints(
    data: Path, pd_bundle: Path, offers_bundle: Path, *, address: str, requests: int, port: int
) -> dict[str, Any]:
    """p50/p99 of both endpoints over HTTP, and of the same requests in process."""
    import httpx

    from riskml.demo_credit import credit_serving, held_out_applications, held_out_impressions
    from riskml.models.credit.bundle import load_credit_bundle
    from serving.credit import CreditApplication, CreditService, OffersRequest

    pd_ref = load_credit_bundle(pd_bundle).reference
    off_ref = load_credit_bundle(offers_bundle).reference
    apps = held_out_applications(data, list(pd_ref["held_out_vintages"]), requests)
    for a in apps:
        a.pop("_label")
    imps = [
        b
        for b, _ in held_out_impressions(
            data, list(off_ref["held_out_months"]), max(1, requests // 5)
        )
    ]
    service = CreditService.from_sources(
        {"bundle_dir": str(pd_bundle)}, {"bundle_dir": str(offers_bundle)}
    )
    in_process: dict[str, list[float]] = {"decision": [], "offers": []}
    for body in apps:
        t0 = time.perf_counter()
        service.decide([CreditApplication.model_validate(body)])
        in_process["decision"].append((time.perf_counter() - t0) * 1e3)
    for body in imps:
        t0 = time.perf_counter()
        service.rank(OffersRequest.model_validate(body))
        in_process["offers"].append((time.perf_counter() - t0) * 1e3)
    http: dict[str, list[float]] = {"decision": [], "offers": []}
    errors = {"decision": 0, "offers": 0}
    args = {"pd_bundle_dir": str(pd_bundle), "offers_bundle_dir": str(offers_bundle)}
    with (
        credit_serving(args, port=port, address=address) as url,
        httpx.Client(base_url=url, trust_env=False, timeout=30) as client,
    ):
        for path, bodies in (("decision", apps[:20]), ("offers", imps[:5])):  # warm-up
            for body in bodies:
                client.post(f"/{path}", json=body)
        for path, bodies in (("decision", apps), ("offers", imps)):
            for body in bodies:
                t0 = time.perf_counter()
                r = client.post(f"/{path}", json=body)
                http[path].append((time.perf_counter() - t0) * 1e3)
                errors[path] += r.status_code != 200
    return {
        "url_path": "/v1/credit/{decision,offers}",
        "candidates_per_offer_request": len(imps[0]["candidates"]) if imps else 0,
        "http_ms": {k: percentiles(v) for k, v in http.items() if v},
        "in_process_ms": {k: percentiles(v) for k, v in in_process.items() if v},
        "errors": errors,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from components.credit_tasks import simulation_config
    from riskml.data.credit.simulator import simulate_portfolio
    from riskml.models.credit.bundle import save_credit_bundle
    from riskml.orchestration.head import start_head
    from riskml.settings import get_settings

    cpus = args.cpus or os.cpu_count() or 1
    out: dict[str, Any] = {
        "benchmark": "credit",
        "riskml": __version__,
        "python": platform.python_version(),
        "cpus": cpus,
        "size": args.size,
        "load_average_start": load_average(),
    }
    t0 = time.perf_counter()
    portfolio = simulate_portfolio(simulation_config(args.size, args.seed))
    out["loans"], out["candidates"] = portfolio.loans.height, portfolio.offers.height
    out["simulate_seconds"] = time.perf_counter() - t0
    work = Path(tempfile.mkdtemp(prefix="bench-credit-"))
    data = portfolio.write(work / "portfolio")
    head = start_head(num_cpus=cpus, include_dashboard=False, timeout_s=300)
    saved = os.environ.get("RISKML_RAY_ADDRESS")
    os.environ["RISKML_RAY_ADDRESS"] = head.gcs_address
    get_settings.cache_clear()
    try:
        pd = train_pd_ray_vs_plain(portfolio, args.repeat)
        offers = train_offers_ray_vs_plain(portfolio, args.repeat)
        pd_result = pd.pop("result")
        pd_bundle = save_credit_bundle(
            work / "bundles",
            pd_result.champion_model,
            reference={"held_out_vintages": pd_result.split.test},
        )
        offers_result = offers.pop("result")
        offers_bundle = save_credit_bundle(
            work / "bundles",
            offers_result.ranker,
            reference={"held_out_months": offers_result.split.test_months},
        )
        out["pd_gbdt"], out["offer_ranker"] = pd, offers
        if not args.skip_serving:
            out["endpoints"] = endpoints(
                data,
                pd_bundle,
                offers_bundle,
                address=head.gcs_address,
                requests=args.requests,
                port=args.port,
            )
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        if saved is None:
            os.environ.pop("RISKML_RAY_ADDRESS", None)
        else:
            os.environ["RISKML_RAY_ADDRESS"] = saved
        get_settings.cache_clear()
        head.stop()
    out["load_average_end"] = load_average()
    out["total_seconds"] = time.perf_counter() - t0
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="demo", choices=("tiny", "demo"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--cpus", type=int, default=None)
    parser.add_argument("--port", type=int, default=18_080)
    parser.add_argument("--skip-serving", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    result = run(args)
    day = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    path = write_json(args.out or RESULTS / day / "credit.json", result)
    rows: dict[str, Any] = {
        "PD GBDT: Ray / plain": round(result["pd_gbdt"]["ray_over_plain"], 2),
        "PD GBDT: Ray s, plain s": f"{result['pd_gbdt']['ray_seconds']:.2f}, "
        f"{result['pd_gbdt']['plain_seconds']:.2f}",
        "ranker: Ray / plain": round(result["offer_ranker"]["ray_over_plain"], 2),
    }
    for name, q in (result.get("endpoints") or {}).get("http_ms", {}).items():
        base = result["endpoints"]["in_process_ms"].get(name, {})
        rows[f"/{name} p50 / p99 ms (in process)"] = (
            f"{q['p50']:.1f} / {q['p99']:.1f} ({base.get('p50', 0):.1f} / {base.get('p99', 0):.1f})"
        )
    print_table(f"credit benchmark ({result['size']}, {result['cpus']} cpus)", rows)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
