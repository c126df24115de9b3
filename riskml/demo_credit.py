"""``riskml demo --line credit``: the credit line end to end on this machine, on embedded
defaults.

1. ``pd_training`` on ``kfp.local`` (simulated portfolio -> scorecard + monotone GBDT on Ray,
   calibrated out of time -> evaluation on the held-out vintage -> gate -> register -> deploy:
   ``models:/credit-pd@champion``), then ``offer_ranking`` (the ranker on the logged offers ->
   off-policy evaluation -> gate -> register -> deploy: ``models:/credit-offers@champion``), on
   one local Ray (dashboard on) with MLflow embedded under ``RISKML_HOME``.
2. The credit Serve app (:mod:`serving.credit`) serves both champions on the same Ray; the
   held-out vintage's applications go to ``POST /v1/credit/decision`` and the held-out month's
   customers' candidate offers to ``POST /v1/credit/offers``, over HTTP.
3. The figures of the issue on the held-out data (:func:`components.credit_tasks.evaluate_task`
   on the champions) go to ``credit.json``; the pipelines' HTML reports are copied beside it.

The terminal shows one live table of the steps and everything kfp, the components, Ray and Serve
print goes to ``demo.log``: the fraud demo's live view and output plumbing, which
:func:`riskml.demo.demo` hands in as ``ui`` (this module never imports it: the dispatch goes the
other way). A short summary ends
it: PD (GBDT vs GLM Gini, ECE, Jeffreys), offers (NDCG@5 and expected value per customer against
the logging policy, with intervals), what the served app decided and how fast.
"""

from __future__ import annotations

import shutil
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from types import ModuleType
from typing import Any

import typer

from serving.local import latency_quantiles, post_all

PIPELINES = ("pd_training", "offer_ranking")
PREFIX = {"pd_training": "pd", "offer_ranking": "offers"}
SERVE_ROW, DECIDE_ROW, OFFERS_ROW, FIGURES_ROW = (
    "serve: credit app",
    "serve: decisions",
    "serve: offers",
    "figures",
)


# -- serving ------------------------------------------------------------------------------------


def credit_serving(
    args: Mapping[str, Any],
    *,
    port: int = 8000,
    address: str | None = None,
    host: str = "127.0.0.1",
    replicas: int = 1,
) -> AbstractContextManager[str]:
    """Serve the credit app with ``args`` (:class:`serving.credit.CreditAppArgs`): its URL once
    ``/healthz`` answers (:func:`serving.local.line_app`)."""
    from serving.local import line_app

    return line_app(
        "serving.credit", args, port=port, address=address, host=host, replicas=replicas
    )


def held_out_applications(data: Path, vintages: list[str], limit: int) -> list[dict[str, Any]]:
    """The held-out vintages' loans as decision requests (their outcome under ``_label``)."""
    import polars as pl

    from components.credit_tasks import _portfolio
    from serving.credit import Applicant

    loans = _portfolio(data).loans.filter(pl.col("vintage").is_in(vintages)).head(limit)
    fields = list(Applicant.model_fields)
    out = []
    for row in loans.iter_rows(named=True):
        body = {k: row[k] for k in fields if row.get(k) is not None}
        body.update(
            application_id=row["loan_id"],
            amount=float(row["amount"]),
            term_months=int(row["term_months"]),
            apr=float(row["apr"]),
            promotion=row["promotion"],
            _label=row["default_12m"],
        )
        out.append(body)
    return out


def held_out_impressions(
    data: Path, months: list[str], limit: int
) -> list[tuple[dict[str, Any], Any]]:
    """The held-out months' impressions as offer requests, each with its logged candidates."""
    import polars as pl

    from components.credit_tasks import _portfolio
    from serving.credit import Applicant

    offers = _portfolio(data).need_offers()
    month = pl.col("ts").dt.strftime("%Y-%m")
    held = offers.filter(month.is_in(months)).sort(["impression_id", "candidate"])
    ids = held.get_column("impression_id").unique(maintain_order=True).head(limit).to_list()
    fields = list(Applicant.model_fields)
    out = []
    for impression in ids:
        rows = held.filter(pl.col("impression_id") == impression)
        head = rows.row(0, named=True)
        body = {k: head[k] for k in fields if head.get(k) is not None}
        body["customer_id"] = head["customer_id"]
        body["candidates"] = [
            {
                "amount": float(r["amount"]),
                "term_months": int(r["term_months"]),
                "apr": float(r["apr"]),
                "promotion": r["promotion"],
                "origination_fee": float(r["origination_fee"]),
            }
            for r in rows.iter_rows(named=True)
        ]
        out.append((body, rows))
    return out


def serve_and_query(
    data: Path,
    pd_reference: Mapping[str, Any],
    offers_reference: Mapping[str, Any],
    *,
    address: str,
    port: int,
    applications: int = 200,
    impressions: int = 50,
    on_stage: Callable[[str, str, str], None] | None = None,
) -> dict[str, Any]:
    """Serve the registry's champions, send held-out applications and impressions over HTTP,
    and say what came back (decision mix, default rate by decision, the ranked offers' value
    against the logged ones, latency)."""
    import numpy as np

    from riskml.settings import get_settings
    from serving.auth import auth_headers, client_key

    def stage(name: str, state: str, detail: str = "") -> None:
        if on_stage is not None:
            on_stage(name, state, detail)

    headers = auth_headers(client_key(get_settings()))
    apps = held_out_applications(data, list(pd_reference["held_out_vintages"]), applications)
    imps = held_out_impressions(data, list(offers_reference["held_out_months"]), impressions)
    args = {
        "pd_model_uri": "models:/credit-pd@champion",
        "offers_model_uri": "models:/credit-offers@champion",
    }
    stage(SERVE_ROW, "running", "models:/credit-pd@champion, models:/credit-offers@champion")
    t0 = time.perf_counter()
    with credit_serving(args, port=port, address=address) as url:
        stage(SERVE_ROW, "done", f"{url} ({time.perf_counter() - t0:.0f} s)")
        stage(DECIDE_ROW, "running", f"{len(apps)} applications")
        labels = [a.pop("_label") for a in apps]
        decided, lat_d, err_d = post_all(url, "/decision", apps, headers)
        q = latency_quantiles(lat_d)
        stage(DECIDE_ROW, "done", f"{len(decided)} decided, p50 {q['p50']} ms, p99 {q['p99']} ms")
        stage(OFFERS_ROW, "running", f"{len(imps)} customers")
        ranked, lat_o, err_o = post_all(url, "/offers", [b for b, _ in imps], headers)
        qo = latency_quantiles(lat_o)
        stage(OFFERS_ROW, "done", f"{len(ranked)} ranked, p50 {qo['p50']} ms, p99 {qo['p99']} ms")
    approve = [d["decision"] == "approve" for d in decided]
    y = np.array([labels[i] if labels[i] is not None else np.nan for i in range(len(decided))])
    appr = np.array(approve, dtype=bool)

    def rate(mask: np.ndarray) -> float | None:
        return float(np.nanmean(y[mask])) if mask.any() else None

    top_truth, shown_truth = [], []
    for answer, (_, rows) in zip(ranked, imps, strict=False):
        best = answer["offers"][0]["candidate"]
        if "sim_ev" in rows.columns:
            top_truth.append(float(rows.get_column("sim_ev")[best]))
            shown = rows.filter(rows.get_column("shown") == 1)
            shown_truth.append(float(shown.get_column("sim_ev")[0]))
    return {
        "url": url,
        "decisions": {
            "sent": len(apps),
            "errors": err_d,
            "approve": int(appr.sum()),
            "decline": int((~appr).sum()),
            "default_rate_approved": rate(appr),
            "default_rate_declined": rate(~appr),
            "mean_pd": float(np.mean([d["pd"] for d in decided])) if decided else None,
            "latency_ms": q,
        },
        "offers": {
            "sent": len(imps),
            "errors": err_o,
            "mean_expected_value_top": float(
                np.mean([a["offers"][0]["expected_value"] for a in ranked])
            )
            if ranked
            else None,
            "true_ev_top_ranked": float(np.mean(top_truth)) if top_truth else None,
            "true_ev_logged_shown": float(np.mean(shown_truth)) if shown_truth else None,
            "latency_ms": qo,
        },
    }


# -- the demo -----------------------------------------------------------------------------------


def credit_task_note(task: str, outputs: Mapping[str, Any]) -> str:
    """A credit pipeline task's key result, from what it wrote."""
    from riskml.evaluation.report import fmt

    art = outputs.get("artifacts", {})
    par = outputs.get("parameters", {})
    m = dict(art.get("metrics", {}))
    notes: dict[str, Callable[[], str]] = {
        "load-portfolio": lambda: (
            f"{fmt(art['portfolio']['loans'])} loans, {fmt(art['portfolio']['impressions'])} "
            "impressions"
        ),
        "train-pd-model": lambda: (
            f"Gini GBDT {fmt(m['gini_gbdt'], 'ratio')} vs GLM {fmt(m.get('gini_glm'), 'ratio')}"
        ),
        "evaluate-pd": lambda: (
            f"ECE {fmt(m['ece_calibrated'], 'ratio')}, Jeffreys "
            f"{fmt(m['jeffreys_pass_share'], '%')}"
        ),
        "train-offer-model": lambda: (
            f"NDCG@5 {fmt(m['ndcg5_model'], 'ratio')} vs logging "
            f"{fmt(m['ndcg5_logging_policy'], 'ratio')}"
        ),
        "evaluate-offers": lambda: (
            f"EV/customer {fmt(m['ev_per_customer_model'])} vs logging "
            f"{fmt(m['ev_per_customer_logging_policy'])}"
        ),
        "gate-credit": lambda: f"{par['Output']}",
        "register": lambda: f"{art['registered']['name']} v{art['registered']['version']}",
        "deploy-credit": lambda: (
            f"champion: {art['deployment']['name']} v{art['deployment']['version']}"
        ),
    }
    try:
        return notes[task]() if task in notes else ""
    except (KeyError, TypeError, ValueError):
        return ""


def demo_credit(
    ui: ModuleType,
    *,
    size: str = "demo",
    keep_ray: bool = False,
    out: Path | None = None,
    json_out: Path | None = None,
    serve: bool = True,
    port: int = 8000,
    applications: int = 200,
    impressions: int = 50,
) -> None:
    """Run the credit demo (see the module docstring). ``ui``: :mod:`riskml.demo` (its
    ``Board``, ``output_to``, ``_end_line``, ``_tail``, ``_duration``)."""
    from pipelines.local import pipeline_tasks, run_local, shared_ray
    from riskml.console import console, write_json
    from riskml.settings import get_settings

    home = get_settings().home.resolve()
    out_dir = Path(out or get_settings().reports_dir / "demo-credit").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "demo.log"
    rows = [f"{PREFIX[p]}: {t}" for p in PIPELINES for t in pipeline_tasks(p)]
    if serve:
        rows += [SERVE_ROW, DECIDE_ROW, OFFERS_ROW]
    board = ui.Board([*rows, FIGURES_ROW], title="credit pipelines on kfp.local, then serving")
    console.print(
        f"[bold]riskml demo --line credit[/bold]: pd_training + offer_ranking on {size} data, "
        f"home {home}",
        soft_wrap=True,
    )
    console.print(f"  kfp, Ray and Serve output goes to {log_path}", soft_wrap=True)
    width = console.width if console.is_terminal else None
    t0 = time.perf_counter()
    result: dict[str, Any] = {}
    failed_at: int | None = None
    try:
        with ui.output_to(log_path) as terminal:
            from rich.console import Console
            from rich.live import Live

            screen = Console(file=terminal, width=width)
            with shared_ray(keep=keep_ray) as ray:
                url = ray["dashboard_url"] or f"(existing Ray at {ray['address']})"
                screen.print(f"  Ray dashboard: {url}", soft_wrap=True)
                live = Live(
                    board,
                    console=screen,
                    refresh_per_second=2,
                    redirect_stdout=False,
                    redirect_stderr=False,
                )
                with ui._end_line(screen), live:
                    try:
                        result = _run(
                            board,
                            run_local,
                            size=size,
                            ray=ray,
                            serve=serve,
                            port=port,
                            sample=(applications, impressions),
                            out_dir=out_dir,
                        )
                        result["dashboard_url"] = ray["dashboard_url"]
                        result["ray_kept"] = bool(keep_ray and ray["head"] is not None)
                        board.finish()
                    except BaseException:
                        board.fail_running()
                        sys.stdout.flush()
                        failed_at = log_path.stat().st_size
                        traceback.print_exc()
                        raise
    except Exception as exc:
        console.print(f"[bold red]demo failed[/bold red] at {board.failed() or '?'}: {exc}")
        console.print(f"its last words, from {log_path}:", soft_wrap=True)
        for line in ui._tail(log_path, 12, upto=failed_at):
            console.print(f"  {line}", soft_wrap=True, markup=False, highlight=False)
        raise typer.Exit(1) from None
    result["total_s"] = round(time.perf_counter() - t0, 2)
    result["log"] = str(log_path)
    path = write_json(json_out or out_dir / "demo.json", result)
    summary(console, result, json_path=path, duration=ui._duration)


def _run(
    board: Any,
    run_local: Callable[..., dict[str, Any]],
    *,
    size: str,
    ray: Mapping[str, Any],
    serve: bool,
    port: int,
    sample: tuple[int, int],
    out_dir: Path,
) -> dict[str, Any]:
    """Both pipelines, then (``serve``) the app and the requests, then the figures."""
    from components.credit_tasks import evaluate_task
    from riskml.registry.store import fetch

    runs: dict[str, dict[str, Any]] = {}
    for pipeline in PIPELINES:
        prefix = PREFIX[pipeline]

        def on_task(name: str, state: str, outputs: dict[str, Any], prefix: str = prefix) -> None:
            note = credit_task_note(name, outputs) if state == "done" else None
            board.update(f"{prefix}: {name}", state, note)

        runs[pipeline] = run_local(pipeline, size=size, ray_address=ray["address"], on_task=on_task)
    data = _artifact(Path(runs["pd_training"]["run_dir"]), "portfolio")
    reports = {}
    for pipeline, run in runs.items():
        target = out_dir / f"{PREFIX[pipeline]}_report.html"
        shutil.copyfile(run["report"], target)
        reports[PREFIX[pipeline]] = str(target)
    board.update(FIGURES_ROW, "running")
    pd_bundle = fetch("models:/credit-pd@champion")
    offers_bundle = fetch("models:/credit-offers@champion")
    figures = evaluate_task(data, pd_bundle=pd_bundle, offers_bundle=offers_bundle)
    from riskml.console import write_json

    figures_path = write_json(out_dir / "credit.json", figures)
    board.update(
        FIGURES_ROW,
        "done",
        f"{figures_path.name}: Gini {figures['gini_gbdt']:.3f} vs {figures['gini_glm']:.3f}",
    )
    result: dict[str, Any] = {
        "size": size,
        "pipelines": {
            p: {k: r.get(k) for k in ("decision", "model_uri", "registered", "wall_s", "run_dir")}
            for p, r in runs.items()
        },
        "reports": reports,
        "figures_json": str(figures_path),
        "figures": {k: v for k, v in figures.items() if k not in ("pd", "offers", "per_vintage")},
    }
    if serve:
        from riskml.models.credit.bundle import load_credit_bundle

        result["serving"] = serve_and_query(
            data,
            load_credit_bundle(pd_bundle).reference,
            load_credit_bundle(offers_bundle).reference,
            address=ray["address"],
            port=port,
            applications=sample[0],
            impressions=sample[1],
            on_stage=lambda name, state, detail: board.update(name, state, detail),
        )
    return result


def _artifact(run_dir: Path, name: str) -> Path:
    found = sorted(run_dir.glob(f"*/{name}"))
    if len(found) != 1:
        raise RuntimeError(f"expected one {name!r} output under {run_dir}, found {found}")
    return found[0]


def summary(
    console: Any,
    result: Mapping[str, Any],
    *,
    json_path: Path,
    duration: Callable[[float], str] = lambda s: f"{s:.1f} s",
) -> None:
    """The closing lines: PD, offers, gates, serving, files."""
    from riskml.evaluation.report import fmt

    f = result.get("figures") or {}
    diff = f.get("gini_gbdt_minus_glm") or {}
    goals = f.get("goals") or {}

    def mark(key: str) -> str:
        met = goals.get(f"{key}_met")
        return "" if met is None else (" [green]✓[/green]" if met else " [yellow]✗[/yellow]")

    console.print(
        f"[bold]PD[/bold] on held-out vintage(s) {', '.join(f.get('held_out_vintages') or [])}: "
        f"Gini GBDT {fmt(f.get('gini_gbdt'), 'ratio')} vs GLM {fmt(f.get('gini_glm'), 'ratio')}"
        + (
            f" ({diff['difference']:+.3f}, 95% [{diff['low']:+.3f}, {diff['high']:+.3f}])"
            if diff
            else ""
        )
        + mark("gini_gbdt_minus_glm")
        + f"; ECE {fmt(f.get('ece_calibrated'), 'ratio')}{mark('ece_calibrated')}"
        + f"; grades in their Jeffreys interval {fmt(f.get('jeffreys_pass_share'), '%')}"
        + mark("jeffreys_pass_share")
        + f"; champion {f.get('champion')} ({f.get('calibration_method')})",
        soft_wrap=True,
    )

    def ci(key: str) -> str:
        low_high = f.get(f"{key}_ci")
        return f" [{fmt(low_high[0])}, {fmt(low_high[1])}]" if low_high else ""

    console.print(
        f"[bold]offers[/bold] on held-out month(s) {', '.join(f.get('held_out_months') or [])}: "
        f"NDCG@5 ranker {fmt(f.get('ndcg5_model'), 'ratio')} vs logging policy "
        f"{fmt(f.get('ndcg5_logging_policy'), 'ratio')} vs largest amount "
        f"{fmt(f.get('ndcg5_largest_amount'), 'ratio')}; EV per customer (off-policy, DR) "
        f"{fmt(f.get('ev_per_customer_model'))}{ci('ev_per_customer_model')} vs logged "
        f"{fmt(f.get('ev_per_customer_logging_policy'))}{ci('ev_per_customer_logging_policy')}",
        soft_wrap=True,
    )
    for name, run in (result.get("pipelines") or {}).items():
        reg = run.get("registered") or {}
        console.print(
            f"[bold]{name}[/bold]: gate {run.get('decision')}, registered {reg.get('name')} "
            f"v{reg.get('version')} ({duration(run.get('wall_s') or 0)})",
            soft_wrap=True,
        )
    served = result.get("serving")
    if served:
        d, o = served["decisions"], served["offers"]
        console.print(
            f"[bold]served[/bold] {served['url']}: {d['sent']} applications -> approve "
            f"{d['approve']}, decline {d['decline']} (defaults among approved "
            f"{fmt(d['default_rate_approved'], '%')}, declined "
            f"{fmt(d['default_rate_declined'], '%')}), p50 {fmt(d['latency_ms']['p50'], 'ms')}, "
            f"p99 {fmt(d['latency_ms']['p99'], 'ms')}; {o['sent']} customers' offers ranked, "
            f"top offer's true EV {fmt(o['true_ev_top_ranked'])} vs the logged shown offer's "
            f"{fmt(o['true_ev_logged_shown'])}, p50 {fmt(o['latency_ms']['p50'], 'ms')}, p99 "
            f"{fmt(o['latency_ms']['p99'], 'ms')}",
            soft_wrap=True,
        )
    console.print(f"took {duration(result.get('total_s', 0))}", soft_wrap=True)
    console.print(f"figures:     {result.get('figures_json')}", soft_wrap=True, highlight=False)
    for name, path in (result.get("reports") or {}).items():
        console.print(f"{name} report: {path}", soft_wrap=True, highlight=False)
    console.print(f"result JSON: {json_path}", soft_wrap=True, highlight=False)
    console.print(f"log:         {result.get('log')}", soft_wrap=True, highlight=False)
