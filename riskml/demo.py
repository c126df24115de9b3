"""``riskml demo`` (``make demo``): the training pipeline end to end on this machine.

Runs the kfp ``training`` pipeline with ``kfp.local`` (each component a subprocess of this venv)
on demo-size simulated data, with one local Ray (dashboard on) for every Ray task, Feast on
SQLite and MLflow on a local file store — all under ``RISKML_HOME``. Prints where the backtest
report and the registered model bundle are, and the Ray dashboard URL.
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
) -> None:
    """Run the training pipeline locally end to end (kfp.local + local Ray + Feast on SQLite)."""
    import time

    from riskml.console import console, print_table, write_json
    from riskml.orchestration.steps import SIZES
    from riskml.settings import get_settings

    if size not in SIZES:
        raise typer.BadParameter(f"choose from {', '.join(SIZES)}", param_hint="--size")
    if pipeline not in ("training", "retraining"):
        raise typer.BadParameter("training or retraining", param_hint="--pipeline")
    try:
        from pipelines.local import run_local
    except ImportError as exc:  # pragma: no cover - a broken install
        raise typer.BadParameter(f"the pipelines package is not importable: {exc}") from None

    def announce(ray: dict[str, Any]) -> None:
        url = ray["dashboard_url"] or f"(existing Ray at {ray['address']})"
        console.print(f"[bold]Ray dashboard:[/bold] {url}")

    home = get_settings().home.resolve()
    console.print(f"[bold]riskml demo[/bold]: {pipeline} pipeline, {size} data, home {home}")
    t0 = time.perf_counter()
    result = run_local(pipeline, size=size, keep_ray=keep_ray, announce=announce)
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
