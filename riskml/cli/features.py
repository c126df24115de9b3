"""``riskml features build|apply|materialize|training-set`` (heavy imports inside commands)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import typer

features_app = typer.Typer(
    help="Feature store: batch features, Feast apply/materialize, training sets.",
    no_args_is_help=True,
)

_STORE_HELP = "Online store (default: RISKML_ONLINE_STORE)."


def _when(value: str | None, name: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not an ISO date/time", param_hint=name) from exc
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed


def _config(online_store: str | None, project: str | None) -> Any:
    from riskml.features.store import StoreConfig

    kwargs: dict[str, Any] = {}
    if online_store:
        if online_store not in ("sqlite", "redis"):
            raise typer.BadParameter("sqlite or redis", param_hint="--online-store")
        kwargs["online_store"] = online_store
    if project:
        kwargs["project"] = project
    return StoreConfig(**kwargs)


def _fail(exc: Exception) -> None:
    from riskml.console import err_console

    err_console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(code=1)


@features_app.command("build")
def build(
    dataset: Path = typer.Argument(..., help="Transactions dataset (directory or Parquet file)."),
    out: Path | None = typer.Option(None, help="Output directory (default RISKML_HOME/features)."),
    as_of: str | None = typer.Option(None, help="Cut-off of the online history state (ISO)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the summary here."),
) -> None:
    """Compute every feature source (customer windows, snapshots, history state) as Parquet."""
    from riskml.console import print_table, write_json
    from riskml.data.schema import SchemaError
    from riskml.features.batch import FeatureBuildError, build_features

    try:
        summary = build_features(dataset, out, as_of=_when(as_of, "--as-of"))
    except (FileNotFoundError, SchemaError, FeatureBuildError) as exc:
        _fail(exc)
        return
    info = summary.to_dict()
    timings = info.pop("timings")
    print_table("features build", {**info, **{f"t_{k}": v for k, v in timings.items()}})
    if json_out:
        write_json(json_out, summary.to_dict())


@features_app.command("apply")
def apply_cmd(
    online_store: str | None = typer.Option(None, help=_STORE_HELP),
    project: str | None = typer.Option(None, help="Feast project (default riskml)."),
) -> None:
    """Register entities, views and FeatureServices (like `feast apply`)."""
    from riskml.console import print_table
    from riskml.features.errors import FeatureStoreError
    from riskml.features.store import apply

    try:
        result = apply(_config(online_store, project))
    except FeatureStoreError as exc:
        _fail(exc)
        return
    result["feature_services"] = ", ".join(result["feature_services"])
    print_table("features apply", result)


@features_app.command("materialize")
def materialize_cmd(
    end: str | None = typer.Option(None, help="Load rows up to this time (default: now)."),
    start: str | None = typer.Option(None, help="Full materialisation from this time."),
    incremental: bool = typer.Option(False, help="Continue from the last materialised time."),
    online_store: str | None = typer.Option(None, help=_STORE_HELP),
    project: str | None = typer.Option(None, help="Feast project (default riskml)."),
) -> None:
    """Load the latest feature rows into the online store."""
    from riskml.console import print_table
    from riskml.features.errors import FeatureStoreError
    from riskml.features.store import materialize

    t0 = time.perf_counter()
    try:
        result = materialize(
            _when(end, "--end"),
            start=_when(start, "--start"),
            incremental=incremental,
            config=_config(online_store, project),
        )
    except FeatureStoreError as exc:
        _fail(exc)
        return
    result["views"] = ", ".join(result["views"])
    result["seconds"] = round(time.perf_counter() - t0, 3)
    print_table("features materialize", result)


@features_app.command("training-set")
def training_set_cmd(
    out: Path = typer.Option(..., help="Output Parquet file."),
    start: str | None = typer.Option(None, help="First transaction time (inclusive, ISO)."),
    end: str | None = typer.Option(None, help="End (exclusive, ISO)."),
    sequences: bool = typer.Option(False, help="Add the behavioural sequence column."),
    project: str | None = typer.Option(None, help="Feast project (default riskml)."),
) -> None:
    """Point-in-time training set (get_historical_features on fraud_v1) as Parquet."""
    from riskml.console import print_table
    from riskml.features.errors import FeatureStoreError
    from riskml.features.store import training_set

    t0 = time.perf_counter()
    try:
        frame = training_set(
            _when(start, "--start"),
            _when(end, "--end"),
            config=_config(None, project),
            sequences=sequences,
        )
    except FeatureStoreError as exc:
        _fail(exc)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(out)
    print_table(
        "features training-set",
        {
            "rows": frame.height,
            "columns": frame.width,
            "fraud_rate": round(
                float(frame["is_fraud"].cast(float).sum()) / max(frame.height, 1), 5
            ),
            "seconds": round(time.perf_counter() - t0, 3),
            "out": str(out),
        },
    )
