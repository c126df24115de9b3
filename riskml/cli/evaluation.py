"""CLI verb ``riskml backtest`` — a thin wrapper over :mod:`riskml.evaluation.backtest`.

Heavy imports (polars, torch, xgboost, matplotlib) happen inside the command body.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(
            f"expected YYYY-MM-DD, got {value!r}", param_hint="--test-start"
        ) from exc


def _models(value: str) -> tuple[str, ...]:
    allowed = ("xgboost", "sequence", "ensemble", "baselines")
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise typer.BadParameter(
            f"unknown model(s) {bad or value!r}; choose from {', '.join(allowed)}",
            param_hint="--models",
        )
    return items


def backtest(
    transactions: Path = typer.Option(
        ..., "--transactions", help="riskml dataset, or external CSV/Parquet (with --mapping)."
    ),
    mapping: Path | None = typer.Option(None, "--mapping", help="Importer column mapping YAML."),
    label_delay_days: float | None = typer.Option(
        None, "--label-delay-days", min=0, help="Importer: fraud label delay when not given."
    ),
    test_start: str = typer.Option(..., "--test-start", help="First test day, YYYY-MM-DD."),
    folds: int = typer.Option(..., "--folds", min=1, help="Number of folds."),
    step_days: int = typer.Option(..., "--step-days", min=1, help="Days between fold starts."),
    test_days: int = typer.Option(..., "--test-days", min=1, help="Test window length (days)."),
    delay_days: int = typer.Option(
        ..., "--delay-days", min=0, help="Label-delay gap before each test window (days)."
    ),
    train_days: int | None = typer.Option(
        None, "--train-days", min=1, help="Training window length (days) [all history]."
    ),
    k: int = typer.Option(..., "--k", min=1, help="k of card precision@k (cards per day)."),
    exclude_known_cards: bool = typer.Option(
        False, "--exclude-known-cards", help="Drop test rows of cards with a known fraud label."
    ),
    models: str = typer.Option(
        "xgboost,sequence,ensemble,baselines", "--models", help="Comma-separated models."
    ),
    out: Path = typer.Option(..., "--out", help="REPORT.json (HTML + PNGs written next to it)."),
    sequence_epochs: int | None = typer.Option(
        None, "--sequence-epochs", min=1, help="Override the sequence model's epochs."
    ),
) -> None:
    """Prequential backtest: label-delay-aware folds through time, models vs baselines."""
    from pydantic import ValidationError

    from riskml.console import print_table, progress, write_json
    from riskml.data.schema import SchemaError
    from riskml.evaluation.backtest import (
        BacktestConfig,
        BacktestError,
        load_transactions,
        run_backtest,
    )
    from riskml.evaluation.report import write_report

    try:
        config = BacktestConfig(
            test_start=_date(test_start),
            folds=folds,
            step_days=step_days,
            test_days=test_days,
            delay_days=delay_days,
            train_days=train_days,
            k=k,
            exclude_known_cards=exclude_known_cards,
            models=_models(models),
            sequence_epochs=sequence_epochs,
        )
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from exc
    try:
        tx = load_transactions(transactions, mapping, label_delay_days)
        with progress("riskml backtest", total=config.folds) as advance:
            result = run_backtest(tx, config, on_fold=lambda _f, _i: advance())
    except (BacktestError, SchemaError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    write_json(out, result.report)
    paths = write_report(result.report, result.pooled, out)
    print_table(
        "backtest windows",
        [
            {
                "fold": f["fold"],
                "train": f"{(f['train_start'] or 'start')[:10]}..{f['train_end'][5:10]}",
                "labels<=": f["label_cutoff"][:16].replace("T", " "),
                "test": f"{f['test_start'][:10]}..{f['test_end'][5:10]}",
                "frauds": f"{f['train_frauds_known']}/{f['train_frauds_true']}",
                "test_fr": f["test_frauds"],
            }
            for f in result.report["folds"]
        ],
    )
    print_table(
        f"backtest mean ± std over {config.folds} folds",
        [
            {
                "model": name,
                "auc": f"{m['mean']['auc']:.4f} ± {m['std']['auc']:.4f}",
                "ap": f"{m['mean']['ap']:.4f} ± {m['std']['ap']:.4f}",
                f"cp@{config.k}": f"{m['mean']['cp_at_k']:.4f} ± {m['std']['cp_at_k']:.4f}",
            }
            for name, m in result.report["models"].items()
        ],
    )
    typer.echo(f"report: {out}  html: {paths['html']}")
