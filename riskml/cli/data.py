"""CLI verbs for data: ``riskml simulate``, ``riskml import``, ``riskml data summary``.

Thin wrappers: parse options, call riskml.data, print a short table, write JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

data_app = typer.Typer(help="Inspect transaction datasets.", no_args_is_help=True)


# --- simulate (owner: simulator) -------------------------------------------------------------
def simulate(
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Dataset directory [RISKML_HOME/data/<preset>]."),
    ] = None,
    preset: Annotated[str, typer.Option(help="demo | benchmark.")] = "demo",
    customers: Annotated[int | None, typer.Option(min=1, help="Override n_customers.")] = None,
    terminals: Annotated[int | None, typer.Option(min=10, help="Override n_terminals.")] = None,
    days: Annotated[int | None, typer.Option(min=1, help="Override the number of days.")] = None,
    start_date: Annotated[
        str | None, typer.Option(help="First day, YYYY-MM-DD [2024-01-01].")
    ] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Random seed [RISKML_SEED].")] = None,
    drift: Annotated[
        list[str] | None,
        typer.Option(
            "--drift",
            metavar="KIND@KEY=VALUE,...",
            help="Inject drift from a day (0-based); repeatable. KIND: new_pattern, amount_shift, "
            "terminal_outage, e.g. new_pattern@day=20 | amount_shift@day=20,sd=0.2 | "
            "terminal_outage@day=20,days=3,share=0.05. Lists are +-separated.",
        ),
    ] = None,
) -> None:
    """Generate a synthetic payments dataset (one Parquet file per day + manifest).

    Deterministic by seed; replaces any dataset already at --out.

    --drift changes the world from a given day on; earlier days are as without drift.
    """
    import datetime as dt

    from pydantic import ValidationError

    from riskml.console import print_table, progress
    from riskml.data.simulator import PRESETS, SimulationConfig, parse_drift
    from riskml.data.simulator import simulate as run_simulation
    from riskml.settings import get_settings

    if preset not in PRESETS:
        raise typer.BadParameter(f"choose from {', '.join(PRESETS)}", param_hint="--preset")
    overrides: dict[str, object] = {"seed": get_settings().seed if seed is None else seed}
    if start_date is not None:
        try:
            overrides["start_date"] = dt.date.fromisoformat(start_date)
        except ValueError:
            raise typer.BadParameter("expected YYYY-MM-DD", param_hint="--start-date") from None
    for key, value in (("n_customers", customers), ("n_terminals", terminals), ("days", days)):
        if value is not None:
            overrides[key] = value
    if drift:
        try:
            overrides["drift"] = [parse_drift(spec) for spec in drift]
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--drift") from None
    try:
        config = SimulationConfig.preset(preset, **overrides)
    except ValidationError as exc:
        reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise typer.BadParameter(reasons) from None
    out = out if out is not None else get_settings().data_dir / preset

    with progress("simulating days", total=config.days) as advance:
        manifest = run_simulation(config, out, on_day=lambda _day: advance())
    print_table(
        f"simulated {out}",
        {
            "rows": manifest["rows"],
            "days": manifest["days"],
            "customers": manifest["customers"],
            "terminals": manifest["terminals"],
            "fraud rows": manifest["fraud_rows"],
            "fraud rate": manifest["fraud_rate"],
        },
    )
    print_table(
        "fraud scenarios",
        [
            {"scenario": name, "rows": s["rows"], "share of rows": s["fraud_rate"]}
            for name, s in manifest["scenarios"].items()
        ],
    )
    typer.echo(f"manifest: {out / 'manifest.json'}")


# --- import (owner: importer) ----------------------------------------------------------------
def import_transactions(
    src: Annotated[Path, typer.Argument(help="CSV/Parquet file, or a directory of them.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output dataset directory.")],
    mapping: Annotated[
        Path | None, typer.Option("--mapping", help="YAML mapping file (columns, defaults, ...).")
    ] = None,
    map_: Annotated[
        list[str] | None,
        typer.Option("--map", help="schema_column=source_column; repeatable; beats --mapping."),
    ] = None,
    label_delay_days: Annotated[
        float | None,
        typer.Option(help="Days from a fraud tx to its label when the source has none [7]."),
    ] = None,
    ts_format: Annotated[
        str | None,
        typer.Option(help="strftime/chrono format, or epoch_s|epoch_ms|epoch_us [ISO 8601]."),
    ] = None,
    timezone: Annotated[
        str | None, typer.Option(help="Time zone of naive timestamps [UTC].")
    ] = None,
    default_currency: Annotated[
        str | None, typer.Option(help="Currency when the source has none [USD].")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a dataset already at --out.")] = False,
    min_ts: Annotated[
        str | None, typer.Option(help="Earliest plausible ts, ISO date/datetime [1990-01-01].")
    ] = None,
    max_ts: Annotated[
        str | None, typer.Option(help="Latest plausible ts, ISO date/datetime [now + 1 day].")
    ] = None,
) -> None:
    """Import external CSV/Parquet transactions into the riskml schema.

    Bad rows go to OUT/quarantine.parquet with a reason. The dataset is written beside OUT,
    verified, then renamed into place: on any error (exit code 2) OUT is left as it was.
    """
    from riskml.console import err_console, print_table, progress
    from riskml.data.importer import (
        ImportMapping,
        default_ts_window,
        import_transactions,
        parse_map_options,
        parse_ts_bound,
    )
    from riskml.data.schema import SchemaError

    try:
        lo, hi = default_ts_window()
        window = (
            parse_ts_bound(min_ts, "--min-ts") if min_ts else lo,
            parse_ts_bound(max_ts, "--max-ts") if max_ts else hi,
        )
        base = ImportMapping.from_yaml(mapping) if mapping else ImportMapping()
        spec = base.with_overrides(
            columns=parse_map_options(map_ or []),
            ts_format=ts_format,
            label_delay_days=label_delay_days,
            timezone=timezone,
            defaults={"currency": default_currency} if default_currency else None,
        )
        with progress("import: writing days", None) as advance:
            result = import_transactions(
                src, out, spec, overwrite=overwrite, progress=advance, ts_window=window
            )
    except Exception as exc:  # every failure is one line and exit 2; OUT is left as it was
        known = isinstance(exc, SchemaError | OSError)
        message = " ".join(str(exc).split()) or type(exc).__name__
        if not known:
            message = f"{type(exc).__name__}: {message}"
        err_console.print(
            f"riskml import: {message}", markup=False, highlight=False, soft_wrap=True
        )
        raise typer.Exit(code=2) from exc
    print_table(
        "riskml import",
        {
            "rows in": result.rows_in,
            "accepted": result.accepted,
            "quarantined": result.quarantined,
            "days written": result.days,
            "fraud rows": result.fraud_rows,
        },
    )
    if result.reasons:
        print_table(
            "quarantine reasons", [{"reason": k, "rows": v} for k, v in result.reasons.items()]
        )
    typer.echo(f"dataset {result.out}; quarantine {result.quarantine_path}")


# --- data summary (owner: importer) ----------------------------------------------------------
@data_app.command("summary")
def summary(
    path: Annotated[Path, typer.Argument(help="Dataset root, its transactions/ dir, or a file.")],
    out_dir: Annotated[
        Path | None,
        typer.Option(help="Where summary.json and daily.png go [PATH, or its parent if a file]."),
    ] = None,
) -> None:
    """Rows, customers, terminals, fraud rates, and a PNG chart of daily volume/fraud rate."""
    from riskml.console import err_console, print_table, write_json
    from riskml.data.schema import SchemaError
    from riskml.data.summary import (
        DAILY_PNG,
        SUMMARY_JSON,
        daily_stats_rows,
        overview_rows,
        plot_daily,
        summarize,
    )

    try:
        stats = summarize(path)
    except (SchemaError, FileNotFoundError) as exc:
        err_console.print(f"[red]error:[/red] {exc}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from exc
    target = out_dir or (path if path.is_dir() else path.parent)
    json_path = write_json(target / SUMMARY_JSON, stats)
    png_path = plot_daily(stats, target / DAILY_PNG)
    print_table(f"dataset {path}", overview_rows(stats))
    if stats["scenarios"]:
        print_table("fraud by scenario", stats["scenarios"])
    if stats["daily"]:
        print_table("per day", daily_stats_rows(stats))
    typer.echo(f"wrote {json_path} and {png_path}")
