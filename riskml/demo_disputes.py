"""``riskml demo --line disputes``: the disputes line end to end on this machine, on embedded
defaults.

1. ``disputes_training`` on ``kfp.local``: a simulated dispute set (records, customer messages,
   evidence PDFs, the customers' history) -> the evidence extracted from the documents (the rules
   and the learned layout model, offline) -> features -> the outcome model trained on what was
   known at the held-out window's start -> calibrated on a later slice (the ``disputes-outcome``
   bundle with the rules baseline, the reason-family classifier and the policy) -> time-ordered
   backtest -> gate -> register -> deploy: ``models:/disputes-outcome@champion``, with MLflow
   embedded under ``RISKML_HOME``.
2. The disputes Serve app (:mod:`serving.disputes`) serves the champion on a local Ray; the
   held-out window's disputes go to ``POST /v1/disputes/assess`` over HTTP with their documents
   (base64 PDFs) and the card's history: evidence, decision, win probability, packet.
3. The issue's figures (:func:`components.disputes_tasks.evaluate_task`: the backtest on the
   pipeline's dispute set, extraction on a held-out corpus of unseen templates with scanned
   documents, reason-family accuracy) go to ``disputes.json``; the backtest's HTML report is
   copied beside it.

The terminal shows one live table of the steps and everything kfp, the components, Ray and Serve
print goes to ``demo.log``: the fraud demo's live view and output plumbing, which
:func:`riskml.demo.demo` hands in as ``ui`` (this module never imports it). A short summary ends
it: extraction F1 (clean / scanned), reason-family accuracy, the outcome model's AUC and ECE
against the rules baseline, the policy's expected value per dispute against "always represent"
and "always refund", and what the served app decided and how fast.
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

from serving.local import latency_quantiles

PIPELINE = "disputes_training"
SERVE_ROW, ASSESS_ROW, FIGURES_ROW = "serve: disputes app", "serve: assess", "figures"
#: Disputes of the held-out extraction corpus per demo size (its scanned pages take OCR time).
CORPUS = {"tiny": 30, "demo": 60}


# -- serving ------------------------------------------------------------------------------------


def disputes_serving(
    args: Mapping[str, Any],
    *,
    port: int = 8000,
    address: str | None = None,
    host: str = "127.0.0.1",
    replicas: int = 1,
) -> AbstractContextManager[str]:
    """Serve the disputes app with ``args`` (:class:`serving.disputes.DisputesAppArgs`): its URL
    once ``/healthz`` answers (:func:`serving.local.line_app`)."""
    from serving.local import line_app

    return line_app(
        "serving.disputes", args, port=port, address=address, host=host, replicas=replicas
    )


def held_out_ids(data: Path, reference: Mapping[str, Any], limit: int) -> list[str]:
    """The disputes opened in the bundle's held-out window (earliest first, at most ``limit``)."""
    import datetime as dt

    import polars as pl

    from components.disputes_tasks import read_set

    window = reference["held_out"]
    start, end = (dt.datetime.fromisoformat(window[k]) for k in ("start", "end"))
    disputes = read_set(data).disputes.sort("opened_at")
    held = disputes.filter((pl.col("opened_at") > start) & (pl.col("opened_at") <= end))
    return [str(i) for i in held.get_column("dispute_id").head(limit).to_list()]


def serve_and_assess(
    data: Path,
    reference: Mapping[str, Any],
    *,
    address: str,
    port: int,
    disputes: int = 100,
    on_stage: Callable[[str, str, str], None] | None = None,
) -> dict[str, Any]:
    """Serve the registry's champion, send the held-out window's disputes over HTTP (documents
    as base64 PDFs, the card's history), and say what came back: the decision mix, the true win
    probability (the simulator's) of the disputes each action took, latency."""
    import httpx
    import numpy as np
    import polars as pl

    from components.disputes_tasks import read_set
    from riskml.settings import get_settings
    from serving.auth import auth_headers, client_key
    from serving.disputes import case_request

    def stage(name: str, state: str, detail: str = "") -> None:
        if on_stage is not None:
            on_stage(name, state, detail)

    headers = auth_headers(client_key(get_settings()))
    dispute_set = read_set(data)
    ids = held_out_ids(data, reference, disputes)
    bodies = [case_request(dispute_set, i) for i in ids]
    truth = dict(dispute_set.truth.select("dispute_id", "p_win").iter_rows())
    args = {"model_uri": "models:/disputes-outcome@champion", "documents_root": str(data)}
    stage(SERVE_ROW, "running", "models:/disputes-outcome@champion")
    t0 = time.perf_counter()
    answers: list[dict[str, Any]] = []
    latencies: list[float] = []
    errors = 0
    with disputes_serving(args, port=port, address=address) as url:
        stage(SERVE_ROW, "done", f"{url} ({time.perf_counter() - t0:.0f} s)")
        stage(ASSESS_ROW, "running", f"{len(bodies)} disputes")
        with httpx.Client(base_url=url, trust_env=False, timeout=60) as client:
            for body in bodies:
                t1 = time.perf_counter()
                r = client.post("/assess", json=body, headers=headers)
                latencies.append((time.perf_counter() - t1) * 1e3)
                if r.status_code == 200:
                    answers.append(r.json())
                else:
                    errors += 1
        q = latency_quantiles(latencies)
        stage(ASSESS_ROW, "done", f"{len(answers)} assessed, p50 {q['p50']} ms, p99 {q['p99']} ms")
    actions = pl.DataFrame(
        {
            "action": [a["decision"] for a in answers],
            "p_win": [a["win_probability"] for a in answers],
            "p_true": [float(truth.get(a["dispute_id"], np.nan)) for a in answers],
            "fields": [len(a["evidence"]["fields"]) for a in answers],
        },
        schema={"action": pl.String, "p_win": pl.Float64, "p_true": pl.Float64, "fields": pl.Int64},
    )
    mix = {
        str(r["action"]): {
            "n": int(r["n"]),
            "mean_p_win": round(float(r["mean_p_win"]), 4),
            "mean_true_p_win": round(float(r["mean_true"]), 4),
        }
        for r in actions.group_by("action")
        .agg(
            pl.len().alias("n"),
            pl.col("p_win").mean().alias("mean_p_win"),
            pl.col("p_true").mean().alias("mean_true"),
        )
        .sort("action")
        .iter_rows(named=True)
    }
    return {
        "url": url,
        "sent": len(bodies),
        "errors": errors,
        "actions": mix,
        "packets": sum(a["packet"] is not None for a in answers),
        "mean_evidence_fields": float(np.mean([a["fields"] for a in actions.iter_rows(named=True)]))
        if answers
        else None,
        "compelling_evidence": sum(a["compelling_evidence"]["qualifies"] for a in answers),
        "latency_ms": latency_quantiles(latencies),
    }


# -- the demo -----------------------------------------------------------------------------------


def disputes_task_note(task: str, outputs: Mapping[str, Any]) -> str:
    """A disputes pipeline task's key result, from what it wrote."""
    from riskml.evaluation.report import fmt

    art = outputs.get("artifacts", {})
    par = outputs.get("parameters", {})
    m = dict(art.get("metrics", {}))
    notes: dict[str, Callable[[], str]] = {
        "load-disputes": lambda: (
            f"{fmt(art['disputes']['disputes'])} disputes, "
            f"{fmt(art['disputes']['documents'])} documents"
        ),
        "extract-evidence": lambda: (
            f"F1 {fmt(m['extraction_f1'], 'ratio')}, {fmt(m['documents_per_second'])} documents/s"
        ),
        "dispute-features": lambda: (
            f"{fmt(m['represented_with_outcome'])} with outcomes, "
            f"{fmt(m['compelling_evidence'])} compelling"
        ),
        "train-outcome-model": lambda: f"{fmt(m['train_rows'])} training disputes",
        "calibrate-outcome": lambda: (
            f"ECE {fmt(m['calibration_ece_raw'], 'ratio')} -> {fmt(m['calibration_ece'], 'ratio')}"
        ),
        "backtest-disputes": lambda: (
            f"AUC {fmt(m['outcome_auc'], 'ratio')} vs rules {fmt(m['rules_baseline_auc'], 'ratio')}"
        ),
        "gate-disputes": lambda: f"{par['Output']}",
        "register": lambda: f"{art['registered']['name']} v{art['registered']['version']}",
        "deploy-disputes": lambda: (
            f"champion: {art['deployment']['name']} v{art['deployment']['version']}"
        ),
    }
    try:
        return notes[task]() if task in notes else ""
    except (KeyError, TypeError, ValueError):
        return ""


def demo_disputes(
    ui: ModuleType,
    *,
    size: str = "demo",
    keep_ray: bool = False,
    out: Path | None = None,
    json_out: Path | None = None,
    serve: bool = True,
    port: int = 8000,
    disputes: int = 100,
) -> None:
    """Run the disputes demo (see the module docstring). ``ui``: :mod:`riskml.demo` (its
    ``Board``, ``output_to``, ``_end_line``, ``_tail``, ``_duration``)."""
    from pipelines.local import pipeline_tasks, run_local, shared_ray
    from riskml.console import console, write_json
    from riskml.settings import get_settings

    home = get_settings().home.resolve()
    out_dir = Path(out or get_settings().reports_dir / "demo-disputes").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "demo.log"
    rows = list(pipeline_tasks(PIPELINE))
    if serve:
        rows += [SERVE_ROW, ASSESS_ROW]
    board = ui.Board([*rows, FIGURES_ROW], title="disputes pipeline on kfp.local, then serving")
    console.print(
        f"[bold]riskml demo --line disputes[/bold]: {PIPELINE} on {size} data, home {home}",
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
                            disputes=disputes,
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
    disputes: int,
    out_dir: Path,
) -> dict[str, Any]:
    """The pipeline, then (``serve``) the app and the requests, then the figures."""
    from components.disputes_tasks import evaluate_task
    from riskml.console import write_json
    from riskml.data.disputes.simulator import simulate_disputes
    from riskml.evaluation.disputes import extraction_corpus_config
    from riskml.models.disputes.bundle import load_disputes_bundle

    def on_task(name: str, state: str, outputs: dict[str, Any]) -> None:
        note = disputes_task_note(name, outputs) if state == "done" else None
        board.update(name, state, note)

    run = run_local(PIPELINE, size=size, ray_address=ray["address"], on_task=on_task)
    data = _artifact(Path(run["run_dir"]), "disputes")
    report = out_dir / "backtest_report.html"
    shutil.copyfile(run["report"], report)
    bundle = load_disputes_bundle(run["bundle"])
    result: dict[str, Any] = {
        "size": size,
        "pipeline": {
            k: run.get(k) for k in ("decision", "model_uri", "registered", "wall_s", "run_dir")
        },
        "report": str(report),
        "bundle_holdout": {
            k: v for k, v in (bundle.metrics or {}).items() if isinstance(v, int | float | str)
        },
    }
    if serve:
        result["serving"] = serve_and_assess(
            data,
            bundle.reference,
            address=ray["address"],
            port=port,
            disputes=disputes,
            on_stage=lambda name, state, detail: board.update(name, state, detail),
        )
    board.update(FIGURES_ROW, "running", "held-out corpus, backtest")
    corpus = out_dir / "held_out_corpus"
    simulate_disputes(extraction_corpus_config(n_disputes=CORPUS.get(size, 60)), corpus)
    figures = evaluate_task(data, corpus)
    figures_path = write_json(out_dir / "disputes.json", figures)
    board.update(
        FIGURES_ROW,
        "done",
        f"{figures_path.name}: AUC {figures['outcome_auc']:.3f} vs rules "
        f"{figures['rules_baseline_auc']:.3f}",
    )
    result["figures_json"] = str(figures_path)
    result["figures"] = {
        k: v for k, v in figures.items() if not isinstance(v, dict | list) or k == "data"
    }
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
    """The closing lines: extraction, outcome model, policy, gate, serving, files."""
    from riskml.evaluation.report import fmt

    f = result.get("figures") or {}
    console.print(
        f"[bold]extraction[/bold] on held-out templates: F1 clean "
        f"{fmt(f.get('extraction_f1_clean'), 'ratio')} (the rules alone "
        f"{fmt(f.get('rules_extraction_f1_clean'), 'ratio')}), scanned "
        f"{fmt(f.get('extraction_f1_scanned'), 'ratio')}; reason family from the message "
        f"{fmt(f.get('reason_family_accuracy'), '%')}",
        soft_wrap=True,
    )
    console.print(
        f"[bold]outcome model[/bold] (time-ordered backtest): AUC "
        f"{fmt(f.get('outcome_auc'), 'ratio')} vs rules {fmt(f.get('rules_baseline_auc'), 'ratio')}"
        f", AP {fmt(f.get('outcome_ap'), 'ratio')} vs {fmt(f.get('rules_baseline_ap'), 'ratio')}"
        f", ECE {fmt(f.get('outcome_ece'), 'ratio')} vs "
        f"{fmt(f.get('rules_baseline_ece'), 'ratio')}",
        soft_wrap=True,
    )
    console.print(
        f"[bold]policy[/bold]: expected value per dispute {fmt(f.get('policy_ev_per_dispute'))}"
        f" vs always represent {fmt(f.get('always_represent_ev_per_dispute'))} vs always "
        f"refund {fmt(f.get('always_refund_ev_per_dispute'))}",
        soft_wrap=True,
    )
    run = result.get("pipeline") or {}
    reg = run.get("registered") or {}
    console.print(
        f"[bold]{PIPELINE}[/bold]: gate {run.get('decision')}, registered {reg.get('name')} "
        f"v{reg.get('version')} ({duration(run.get('wall_s') or 0)})",
        soft_wrap=True,
    )
    served = result.get("serving")
    if served:
        mix = ", ".join(
            f"{a} {v['n']} (true p_win {fmt(v['mean_true_p_win'], 'ratio')})"
            for a, v in served["actions"].items()
        )
        console.print(
            f"[bold]served[/bold] {served['url']}: {served['sent']} held-out disputes -> {mix}; "
            f"{served['packets']} packets, {served['compelling_evidence']} with compelling "
            f"evidence; p50 {fmt(served['latency_ms']['p50'], 'ms')}, p99 "
            f"{fmt(served['latency_ms']['p99'], 'ms')}",
            soft_wrap=True,
        )
    console.print(f"took {duration(result.get('total_s', 0))}", soft_wrap=True)
    console.print(f"figures:     {result.get('figures_json')}", soft_wrap=True, highlight=False)
    console.print(f"report:      {result.get('report')}", soft_wrap=True, highlight=False)
    console.print(f"result JSON: {json_path}", soft_wrap=True, highlight=False)
    console.print(f"log:         {result.get('log')}", soft_wrap=True, highlight=False)
