"""CLI verb ``riskml backtest`` — a thin wrapper over :mod:`riskml.evaluation.backtest`.

Heavy imports (polars, torch, xgboost, matplotlib) happen inside the command body.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import typer


def parse_test_start(value: str) -> dt.date:
    """``--test-start`` (YYYY-MM-DD) as a date; a clear usage error otherwise."""
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


def _known_cards_window(value: str | None) -> str | int | None:
    if value is None:
        return None
    from riskml.evaluation.backtest import parse_known_cards_window

    try:
        return parse_known_cards_window(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--known-cards-window") from exc


KNOWN_CARDS_HELP = (
    "With --exclude-known-cards: which earlier frauds make a card known (each needs its label "
    "available by 00:00 UTC of the test row's day). 'all': a fraud anywhere in the history; "
    "'train': a fraud on or after the fold's training start (the same as 'all' without "
    "--train-days); N: a fraud in the N days before the test day. Wider windows drop more "
    "rows and lower the CP@k ceiling. Default: train."
)


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
        None, "--train-days", min=1, help="Training window length (days); default: all history."
    ),
    k: int = typer.Option(..., "--k", min=1, help="k of card precision@k (cards per day)."),
    exclude_known_cards: bool = typer.Option(
        False,
        "--exclude-known-cards",
        help="Drop test rows of cards with a fraud label known at 00:00 UTC of their day "
        "(see --known-cards-window).",
    ),
    known_cards_window: str | None = typer.Option(
        None, "--known-cards-window", metavar="all|train|DAYS", help=KNOWN_CARDS_HELP
    ),
    feature_service: str | None = typer.Option(
        None,
        "--feature-service",
        help="FeatureService version the models train on (fraud_v2, or fraud_v1 to compare) "
        "[the current one].",
    ),
    ablations: bool = typer.Option(
        False,
        "--ablations",
        help="Also retrain xgboost without each feature group (one extra fit per group per "
        "fold) and report the AP drop.",
    ),
    models: str = typer.Option(
        "xgboost,sequence,ensemble,baselines", "--models", help="Comma-separated models."
    ),
    out: Path = typer.Option(..., "--out", help="REPORT.json (HTML + PNGs written next to it)."),
    sequence_epochs: int | None = typer.Option(
        None, "--sequence-epochs", min=1, help="Override the sequence model's epochs."
    ),
) -> None:
    """Prequential backtest: label-delay-aware folds through time, models vs baselines, the
    CP@k ceiling, raw vs calibrated scores, recall per fraud scenario (and ablations)."""
    from pydantic import ValidationError

    from riskml.console import progress, write_json
    from riskml.data.schema import SchemaError
    from riskml.evaluation.backtest import (
        BacktestConfig,
        BacktestError,
        load_transactions,
        run_backtest,
    )
    from riskml.evaluation.report import write_report

    window = _known_cards_window(known_cards_window)
    if window is not None and not exclude_known_cards:
        typer.echo(
            "warning: --known-cards-window has no effect without --exclude-known-cards", err=True
        )
    try:
        config = BacktestConfig(
            test_start=parse_test_start(test_start),
            folds=folds,
            step_days=step_days,
            test_days=test_days,
            delay_days=delay_days,
            train_days=train_days,
            k=k,
            exclude_known_cards=exclude_known_cards,
            known_cards_window=window if window is not None else "train",
            models=_models(models),
            sequence_epochs=sequence_epochs,
            ablations=ablations,
            **({"feature_service": feature_service} if feature_service else {}),
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
    _print_summary(result.report, config.k, config.folds)
    typer.echo(f"report: {out}  html: {paths['html']}")


def _print_summary(report: dict[str, Any], k: int, n_folds: int) -> None:
    from riskml.console import print_table

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
                "excluded": f["excluded_known_card_rows"],
                f"cp@{k} ceiling": f"{f['cp_at_k_ceiling']:.4f}",
            }
            for f in report["folds"]
        ],
    )
    ceiling = report["cp_at_k_ceiling"]
    print_table(
        f"backtest mean ± std over {n_folds} folds",
        [
            *(
                {
                    "model": name,
                    "auc": f"{m['mean']['auc']:.4f} ± {m['std']['auc']:.4f}",
                    "ap": f"{m['mean']['ap']:.4f} ± {m['std']['ap']:.4f}",
                    f"cp@{k}": f"{m['mean']['cp_at_k']:.4f} ± {m['std']['cp_at_k']:.4f}",
                }
                for name, m in report["models"].items()
            ),
            {
                "model": "perfect (ceiling)",
                "auc": "-",
                "ap": "-",
                f"cp@{k}": f"{ceiling['mean']:.4f} ± {ceiling['std']:.4f}",
            },
        ],
    )
    if report.get("calibration"):
        print_table(
            "raw vs calibrated",
            [
                {
                    "fold": r["fold"],
                    "model": r["model"],
                    "ap raw/cal": f"{r['ap_raw']:.4f} / {r['ap_calibrated']:.4f}",
                    f"cp@{k} raw/cal": f"{r['cp_raw']:.4f} / {r['cp_calibrated']:.4f}",
                    "distinct top raw/cal": " / ".join(
                        str(v) for key, v in r.items() if key.startswith("distinct_top")
                    ),
                }
                for r in report["calibration"]
            ],
        )
    if report.get("ablations"):
        ab = report["ablations"]
        print_table(
            f"ablations: xgboost without each feature group (full AP "
            f"{ab['reference_ap']['mean']:.4f})",
            [
                {
                    "group": group,
                    "columns": len(ab["groups"][group]),
                    "mean ap": f"{m['ap']:.4f}",
                    "ap drop": f"{m['ap_drop']:+.4f}",
                    f"cp@{k} drop": f"{m['cp_at_k_drop']:+.4f}",
                }
                for group, m in ab["mean"].items()
            ],
        )
    recall = {  # the ablations' recall is in the JSON and HTML reports
        m: r
        for m, r in report.get("scenarios", {}).get("recall", {}).items()
        if not m.startswith("xgboost_without_")
    }
    if recall:
        frauds = report["scenarios"]["frauds"]
        print_table(
            f"recall per fraud scenario at the cp@{k} alert budget",
            [
                {
                    "scenario": scen,
                    "frauds": n,
                    **{m: f"{recall[m].get(scen, float('nan')):.3f}" for m in recall},
                }
                for scen, n in frauds.items()
            ],
        )
