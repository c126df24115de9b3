"""CLI verb ``riskml select`` — a thin wrapper over :mod:`riskml.evaluation.selection`.

Heavy imports (polars, ray, xgboost) happen inside the command body.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from riskml.cli.evaluation import parse_test_start

SPACE_HELP = (
    "YAML/JSON with 'search_space' (key -> {type: choice|randint|uniform|loguniform, values | "
    "low, high}; keys: the model's parameters and train_days) and/or 'base' (the model's "
    "parameters of the default trial and of every parameter not searched). Default: xgboost: "
    "tree_method, max_bin, max_depth, eta, num_boost_round, scale_pos_weight and train_days; "
    "sequence: steps (its length), hidden, layers, encoder, lr and train_days."
)


def _space_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise typer.BadParameter(f"{path}: {exc}", param_hint="--space") from exc
    if not isinstance(data, dict) or set(data) - {"search_space", "base"}:
        raise typer.BadParameter(
            f"{path}: expected a mapping with 'search_space' and/or 'base'", param_hint="--space"
        )
    return data


def select(
    transactions: Path = typer.Option(
        ..., "--transactions", help="riskml dataset, or external CSV/Parquet (with --mapping)."
    ),
    mapping: Path | None = typer.Option(None, "--mapping", help="Importer column mapping YAML."),
    label_delay_days: float | None = typer.Option(
        None, "--label-delay-days", min=0, help="Importer: fraud label delay when not given."
    ),
    test_start: str = typer.Option(
        ..., "--test-start", help="First test day T, YYYY-MM-DD; the search sees nothing from T."
    ),
    model: str = typer.Option(
        "xgboost", "--model", help="The model to select: xgboost or sequence."
    ),
    folds: int = typer.Option(3, "--folds", min=1, help="Test folds (from T)."),
    step_days: int = typer.Option(7, "--step-days", min=1, help="Days between fold starts."),
    test_days: int = typer.Option(
        7, "--test-days", min=1, help="Window length (days), <= --step-days."
    ),
    delay_days: int = typer.Option(
        7, "--delay-days", min=0, help="Label-delay gap before each window (days)."
    ),
    valid_folds: int = typer.Option(
        3, "--valid-folds", min=1, help="Validation folds: the weeks before T."
    ),
    num_samples: int = typer.Option(
        8, "--num-samples", min=1, help="Trials (the default configuration is trial 0)."
    ),
    time_budget_s: float = typer.Option(
        1800, "--time-budget-s", min=1, help="Wall-clock budget of the search (seconds)."
    ),
    k: int = typer.Option(100, "--k", min=1, help="k of card precision@k (cards per day)."),
    space: Path | None = typer.Option(None, "--space", help=SPACE_HELP),
    cpus_per_trial: int | None = typer.Option(
        None, "--cpus-per-trial", min=1, help="Threads per trial [all CPUs on <= 4]."
    ),
    out: Path = typer.Option(..., "--out", help="REPORT.json."),
    seed: int = typer.Option(7, "--seed", help="Search and XGBoost seed."),
) -> None:
    """Model selection on validation folds, never on test folds: Ray Tune searches XGBoost's
    tree method, max_bin, depth, learning rate, rounds, class weighting and the training window
    (or, with --model sequence, the sequence model's length, size, learning rate and training
    window) on the weeks before --test-start; the chosen and the default configuration then run
    on the test folds by the same code."""
    from pydantic import ValidationError

    from riskml.console import write_json
    from riskml.data.schema import SchemaError
    from riskml.evaluation.backtest import BacktestError, load_transactions
    from riskml.evaluation.selection import SelectionConfig, run_selection

    extra = _space_file(space)
    base = extra.get("base") or {}
    bases = (
        {"sequence_base": {"seed": seed, **base}}
        if model == "sequence"
        else {"base": {"seed": seed, **base}}
    )
    try:
        config = SelectionConfig(
            model=model,  # validated: a bad value exits 2
            test_start=parse_test_start(test_start),
            folds=folds,
            step_days=step_days,
            test_days=test_days,
            delay_days=delay_days,
            valid_folds=valid_folds,
            k=k,
            num_samples=num_samples,
            time_budget_s=time_budget_s,
            cpus_per_trial=cpus_per_trial,
            search_space=extra.get("search_space"),
            **bases,
            seed=seed,
        )
    except ValidationError as exc:
        typer.echo(f"error: {_errors(exc)}", err=True)
        raise typer.Exit(2) from exc
    try:
        tx = load_transactions(transactions, mapping, label_delay_days)
        report = run_selection(tx, config, on_stage=lambda s: typer.echo(f"riskml select: {s}"))
    except (BacktestError, SchemaError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    write_json(out, report)
    print_summary(report)
    typer.echo(f"report: {out}")


def _errors(exc: Any) -> str:
    """A pydantic ValidationError as one line per problem, without the noise."""
    out = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        out.append(f"{where}: {msg}" if where else msg)
    return "; ".join(out)


#: Short column names of the trials table.
SHORT = {
    "tree_method": "method",
    "max_bin": "bins",
    "max_depth": "depth",
    "num_boost_round": "rounds",
    "scale_pos_weight": "spw",
    "train_days": "days",
    "encoder": "enc",
}


def _value(key: str, value: Any, config: dict[str, Any]) -> str:
    if key == "max_bin" and config.get("tree_method") == "exact":
        return "-"  # exact does not bin
    if key == "train_days" and value is None:
        return "all"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def print_summary(report: dict[str, Any]) -> None:
    from riskml.console import print_table

    sel = report["selection"]
    print_table(
        "windows (selection used the validation folds only)",
        [
            *(
                {
                    "folds": f"validation {w['fold']}",
                    "train <": w["train_end"][:10],
                    "labels <=": w["label_cutoff"][:10],
                    "window": f"{w['test_start'][:10]} .. {w['test_end'][:10]}",
                }
                for w in sel["validation_windows"]
            ),
            *(
                {
                    "folds": f"test {w['fold']}",
                    "train <": w["train_end"][:10],
                    "labels <=": w["label_cutoff"][:10],
                    "window": f"{w['test_start'][:10]} .. {w['test_end'][:10]}",
                }
                for w in sel["test_windows"]
            ),
        ],
    )
    keys = list(report["search_space"])
    chosen = report["chosen_trial"]
    n_valid = len(sel["validation_windows"])
    print_table(
        f"trials: mean validation AP over {n_valid} folds (trial 0: the default; *: chosen)",
        [
            {
                "trial": f"{t['trial']}{'*' if t['trial'] == chosen else ''}",
                **{
                    SHORT.get(key, key): _value(key, t["config"].get(key), t["config"])
                    for key in keys
                },
                "valid AP": "error" if t["mean_valid_ap"] is None else f"{t['mean_valid_ap']:.4f}",
            }
            for t in report["trials"]
        ],
    )
    for t in report["trials"]:
        if t["status"] != "ok":
            typer.echo(f"trial {t['trial']}: {t['error']}")
    k = report["config"]["k"]
    test = report["test"]
    rows = [
        {
            "fold": d["fold"],
            "window": f"{d['test_start'][5:10]}..{d['test_end'][5:10]}",
            "AP dflt": f"{d['ap']:.4f}",
            "AP chosen": f"{c['ap']:.4f}",
            f"CP@{k} dflt": f"{d['cp_at_k']:.4f}",
            f"CP@{k} chosen": f"{c['cp_at_k']:.4f}",
        }
        for d, c in zip(test["default"]["folds"], test["chosen"]["folds"], strict=True)
    ]
    dm, cm = test["default"]["mean"], test["chosen"]["mean"]
    rows.append(
        {
            "fold": "mean",
            "window": "",
            "AP dflt": f"{dm['ap']:.4f}",
            "AP chosen": f"{cm['ap']:.4f}",
            f"CP@{k} dflt": f"{dm['cp_at_k']:.4f}",
            f"CP@{k} chosen": f"{cm['cp_at_k']:.4f}",
        }
    )
    same = ": the default won" if report["chosen_is_default"] else ""
    print_table(f"test folds: default vs chosen (trial {chosen}{same})", rows)
    for note in report.get("notes", []):
        typer.echo(f"note: {note}")
