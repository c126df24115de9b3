"""``riskml demo`` (``make demo``): the training pipeline end to end on this machine, then the
trained bundle served and fed the held-back transactions.

Runs the kfp ``training`` pipeline with ``kfp.local`` (each component a subprocess of this venv)
on demo-size simulated data, with one local Ray (dashboard on) for every Ray task, Feast on
SQLite and MLflow on a local file store — all under ``RISKML_HOME``. Then serves the pipeline's
bundle on Ray Serve (same Ray) and replays the held-back days over HTTP at a fixed rate
(:mod:`serving.demo`). Prints where the backtest report and the model bundle are, the Ray
dashboard URL, the decision mix, fraud caught and latency percentiles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def demo(
    size: Annotated[str, typer.Option(help="tiny | demo (2,000 customers x 60 days).")] = "demo",
    pipeline: Annotated[str, typer.Option(help="training | retraining")] = "training",
    keep_ray: Annotated[
        bool, typer.Option(help="Leave the local Ray (and its dashboard) running afterwards.")
    ] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Result JSON [RISKML_HOME/reports/demo.json].")
    ] = None,
    serve: Annotated[
        bool, typer.Option(help="Serve the bundle and replay the held-back transactions.")
    ] = True,
    replay_rps: Annotated[float, typer.Option(min=1, help="Replay rate (requests/s).")] = 25.0,
    replay_limit: Annotated[
        int, typer.Option(min=1, help="Held-back transactions replayed (earliest first).")
    ] = 1000,
    port: Annotated[int, typer.Option(min=1, max=65535, help="HTTP port of the app.")] = 8000,
) -> None:
    """Run the training pipeline locally end to end (kfp.local + local Ray + Feast on SQLite)."""
    import time

    from riskml.console import console, print_table, write_json
    from riskml.data.sources import SIZES
    from riskml.settings import get_settings

    if size not in SIZES:
        raise typer.BadParameter(f"choose from {', '.join(SIZES)}", param_hint="--size")
    if pipeline not in ("training", "retraining"):
        raise typer.BadParameter("training or retraining", param_hint="--pipeline")
    try:
        from pipelines.local import run_local, shared_ray
    except ImportError as exc:  # pragma: no cover - a broken install
        raise typer.BadParameter(f"the pipelines package is not importable: {exc}") from None

    def announce(ray: dict[str, Any]) -> None:
        url = ray["dashboard_url"] or f"(existing Ray at {ray['address']})"
        console.print(f"[bold]Ray dashboard:[/bold] {url}")

    home = get_settings().home.resolve()
    console.print(f"[bold]riskml demo[/bold]: {pipeline} pipeline, {size} data, home {home}")
    t0 = time.perf_counter()
    with shared_ray(keep=keep_ray) as ray:
        announce(ray)
        result = run_local(pipeline, size=size, ray_address=ray["address"])
        result["dashboard_url"] = ray["dashboard_url"]
        result["ray_kept"] = bool(keep_ray and ray["head"] is not None)
        if serve:
            from serving.demo import serve_and_replay

            run_dir = Path(result["run_dir"])
            console.print(
                f"[bold]serving[/bold] {result['bundle']}: replaying {replay_limit} held-back "
                f"transactions at {replay_rps:g}/s over HTTP"
            )
            result["serving"] = serve_and_replay(
                Path(result["bundle"]),
                _artifact(run_dir, "dataset"),
                _artifact(run_dir, "test_set"),
                ray_address=ray["address"],
                rps=replay_rps,
                limit=replay_limit,
                port=port,
            )
    result["total_s"] = round(time.perf_counter() - t0, 2)
    path = write_json(json_out or get_settings().reports_dir / "demo.json", result)
    registered = result["registered"]
    print_table(
        "riskml demo",
        {
            "pipeline": pipeline,
            "size": size,
            "gate decision": result["decision"],
            "model bundle": result["bundle"],
            "bundle version": registered.get("version"),
            "MLflow run": registered.get("mlflow_run_id") or "-",
            "backtest report": result["report"],
            "Ray dashboard": (result["dashboard_url"] or "-")
            + ("" if result["ray_kept"] else " (stopped)"),
            "pipeline wall s": result["wall_s"],
            "total s": result["total_s"],
            "result JSON": str(path),
        },
    )
    served = result.get("serving")
    if served:
        lat = served["latency_ms"]
        print_table(
            "served bundle, held-back transactions replayed over HTTP",
            {
                "replayed": f"{served['replayed']} at {served['rps_achieved']}/s "
                f"({served['replay_from'][:16]} .. {served['replay_to'][:16]})",
                "errors": served["errors"],
                "decisions": ", ".join(f"{k} {v}" for k, v in served["decisions"].items()),
                "decision sources": ", ".join(
                    f"{k} {v}" for k, v in served["decision_sources"].items()
                ),
                "fraud caught": f"{served['fraud_declined']} declined + "
                f"{served['fraud_reviewed']} reviewed of {served['fraud']}",
                "good customers stopped": _share(served["good_declined_or_reviewed_share"]),
                "latency ms p50/p95/p99": f"{lat['p50']} / {lat['p95']} / {lat['p99']}",
            },
        )


def _share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _artifact(run_dir: Path, name: str) -> Path:
    """A task output of a kfp.local run (``<run_dir>/<task>/<output name>``)."""
    found = sorted(run_dir.glob(f"*/{name}"))
    if len(found) != 1:
        raise RuntimeError(f"expected one {name!r} output under {run_dir}, found {found}")
    return found[0]
