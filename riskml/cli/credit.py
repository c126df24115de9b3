"""``riskml credit simulate | import | train | rank | evaluate | serve``: the credit line.

Thin wrappers over the credit tasks (:mod:`components.credit_tasks`, the same code the kfp
components run) and the credit Serve app (:mod:`serving.credit`): parse options, call one
function, print a short table, write JSON. Heavy imports happen inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

credit_app = typer.Typer(
    help="Credit portfolio: simulate/import loans, train and evaluate the PD model and the offer "
    "ranker, serve them.",
    no_args_is_help=True,
)

Data = Annotated[
    Path,
    typer.Option(
        "--data", exists=True, file_okay=False, help="Credit dataset (simulate / import output)."
    ),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config", exists=True, dir_okay=False, help="Training config overrides (JSON/YAML)."
    ),
]
Ray = Annotated[
    bool | None,
    typer.Option("--ray/--no-ray", help="Train on Ray (default: the pipelines' default, yes)."),
]
JsonOut = Annotated[Path | None, typer.Option("--json", help="Write the result JSON here.")]


def _config(path: Path | None, ray: bool | None, **extra: Any) -> dict[str, Any]:
    from riskml.training.jobs import load_document

    doc: dict[str, Any] = dict(load_document(path)) if path else {}
    if ray is not None:
        doc["use_ray"] = ray
    doc.update({k: v for k, v in extra.items() if v is not None})
    return doc


def _default_root(kind: str) -> Path:
    from riskml.settings import get_settings

    return get_settings().home / "credit" / kind


def _fail(exc: Exception, hint: str | None = None) -> typer.BadParameter:
    return typer.BadParameter(str(exc), param_hint=hint)


@credit_app.command("simulate")
def simulate(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Directory [RISKML_HOME/credit/data].")
    ] = None,
    size: Annotated[str, typer.Option(help="tiny | demo (24 vintages x 2,500 loans).")] = "demo",
    seed: Annotated[int, typer.Option(min=0, help="Random seed.")] = 7,
    months: Annotated[int | None, typer.Option(min=1, help="Override the vintages.")] = None,
    loans_per_month: Annotated[int | None, typer.Option(min=1, help="Override.")] = None,
    offers_per_month: Annotated[int | None, typer.Option(min=0, help="Override.")] = None,
) -> None:
    """Simulate a loan portfolio: loans by vintage, monthly repayments, logged offers."""
    from pydantic import ValidationError

    from components.credit_tasks import CREDIT_SIZES, simulation_config
    from riskml.console import print_table, progress
    from riskml.data.credit.simulator import simulate_portfolio

    if size not in CREDIT_SIZES:
        raise typer.BadParameter(f"choose from {', '.join(CREDIT_SIZES)}", param_hint="--size")
    overrides = {
        k: v
        for k, v in {
            "months": months,
            "loans_per_month": loans_per_month,
            "offers_per_month": offers_per_month,
        }.items()
        if v is not None
    }
    try:
        config = simulation_config(size, seed, **overrides)
    except ValidationError as exc:
        raise _fail(exc) from None
    target = out or _default_root("data")
    with progress("simulating the portfolio", total=None):
        portfolio = simulate_portfolio(config)
        path = portfolio.write(target, overwrite=True)
    summary = portfolio.summary()
    print_table(
        f"credit portfolio: {path}",
        {k: v for k, v in summary.items() if not isinstance(v, dict | list)},
    )


@credit_app.command("import")
def import_tape(
    source: Annotated[
        Path, typer.Option("--source", exists=True, help="Loan tape: CSV/Parquet file or folder.")
    ],
    as_of: Annotated[
        str, typer.Option("--as-of", help="When the tape was extracted (ISO 8601 date/time).")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Directory [RISKML_HOME/credit/tape].")
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Column mapping (YAML), as for `import`."),
    ] = None,
) -> None:
    """Import a real loan tape (the transaction importer's rules: quarantine, plausibility)."""
    import datetime as dt

    from riskml.console import print_table
    from riskml.data.credit.importer import LoanImportMapping, import_loans
    from riskml.data.importer import ImportSchemaError

    try:
        when = dt.datetime.fromisoformat(as_of)
    except ValueError as exc:
        raise _fail(exc, "--as-of") from None
    try:
        spec = LoanImportMapping.from_yaml(mapping) if mapping else LoanImportMapping()
        result = import_loans(
            source, out or _default_root("tape"), spec, as_of=when, overwrite=True
        )
    except ImportSchemaError as exc:
        raise _fail(exc, "--source") from None
    print_table(
        f"loan tape: {result.out}",
        {
            "rows_in": result.rows_in,
            "accepted": result.accepted,
            "quarantined": result.quarantined,
            "labelled": result.labelled,
            "immature": result.immature,
            "defaults": result.defaults,
        },
    )


@credit_app.command("train")
def train(
    data: Data,
    out: Annotated[
        Path | None, typer.Option("--out", help="Bundle root [RISKML_HOME/credit/bundles].")
    ] = None,
    test_vintages: Annotated[
        int, typer.Option(min=1, help="Newest complete vintages held out.")
    ] = 1,
    config: ConfigFile = None,
    ray: Ray = None,
    tune_samples: Annotated[
        int | None, typer.Option(min=0, help="Ray Tune trials (0: no tuning).")
    ] = None,
    json_out: JsonOut = None,
) -> None:
    """Train the PD models (GLM scorecard and monotone GBDT, calibrated out of time), report
    both on the held-out vintages and save the champion as a ``credit-pd`` bundle."""
    from components.credit_tasks import train_pd_task
    from riskml.console import print_table, progress, write_json

    doc = _config(config, ray)
    if tune_samples is not None:
        doc["tune"] = (
            None if tune_samples == 0 else {**doc.get("tune", {}), "num_samples": tune_samples}
        )
    try:
        with progress("training the PD models", total=None):
            result = train_pd_task(
                data, out or _default_root("bundles"), test_vintages=test_vintages, config=doc
            )
    except ValueError as exc:
        raise _fail(exc) from None
    print_table(
        f"PD models on held-out vintages (champion: {result['champion']})", result["metrics"]
    )
    typer.echo(f"bundle: {result['bundle_dir']}")
    if json_out:
        write_json(json_out, result)


@credit_app.command("rank")
def rank(
    data: Data,
    out: Annotated[
        Path | None, typer.Option("--out", help="Bundle root [RISKML_HOME/credit/bundles].")
    ] = None,
    test_months: Annotated[int, typer.Option(min=1, help="Latest months of offers held out.")] = 1,
    config: ConfigFile = None,
    ray: Ray = None,
    json_out: JsonOut = None,
) -> None:
    """Train the offer ranker on the logged offers, evaluate it off-policy on the held-out
    months against the logging policy and "largest amount", save it as ``credit-offers``."""
    from components.credit_tasks import train_offers_task
    from riskml.console import print_table, progress, write_json

    try:
        with progress("training the offer ranker", total=None):
            result = train_offers_task(
                data,
                out or _default_root("bundles"),
                test_months=test_months,
                config=_config(config, ray),
            )
    except ValueError as exc:
        raise _fail(exc) from None
    print_table("offer ranking on held-out months", result["metrics"])
    typer.echo(f"bundle: {result['bundle_dir']}")
    if json_out:
        write_json(json_out, result)


@credit_app.command("evaluate")
def evaluate(
    out: Annotated[Path, typer.Option("--out", help="Write the figures (JSON) here.")],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            exists=True,
            file_okay=False,
            help="Credit dataset [simulate one of --size into RISKML_HOME/credit/data].",
        ),
    ] = None,
    size: Annotated[str, typer.Option(help="Without --data: tiny | demo.")] = "demo",
    pd_bundle: Annotated[
        Path | None,
        typer.Option(exists=True, file_okay=False, help="A credit-pd bundle (else train one)."),
    ] = None,
    offers_bundle: Annotated[
        Path | None,
        typer.Option(exists=True, file_okay=False, help="A credit-offers bundle (else train)."),
    ] = None,
    test_vintages: Annotated[int, typer.Option(min=1)] = 1,
    test_months: Annotated[int, typer.Option(min=1)] = 1,
    seed: Annotated[int, typer.Option(help="Simulator seed (without --data).")] = 7,
    ray: Ray = None,
) -> None:
    """The credit figures on held-out data as JSON: gini_gbdt, gini_glm, ece_calibrated,
    jeffreys_pass_share, ndcg5_model, ndcg5_logging_policy, ev_per_customer_model,
    ev_per_customer_logging_policy (off-policy), their intervals, per-vintage tables, goals."""
    from components.credit_tasks import CREDIT_SIZES, evaluate_task, portfolio_task
    from riskml.console import print_table, progress, write_json

    if data is None:
        if size not in CREDIT_SIZES:
            raise typer.BadParameter(f"choose from {', '.join(CREDIT_SIZES)}", param_hint="--size")
        data = _default_root("data")
        with progress(f"simulating a {size} portfolio", total=None):
            portfolio_task(data, size=size, seed=seed)
    cfg = {} if ray is None else {"use_ray": ray}
    try:
        with progress("training and evaluating", total=None):
            figures = evaluate_task(
                data,
                pd_bundle=pd_bundle,
                offers_bundle=offers_bundle,
                bundles_out=_default_root("bundles"),
                test_vintages=test_vintages,
                test_months=test_months,
                pd_config=cfg,
                offers_config=cfg,
            )
    except ValueError as exc:
        raise _fail(exc) from None
    path = write_json(out, figures)
    print_table("credit figures (held out)", _headline(figures))
    typer.echo(f"figures: {path}")


def _headline(figures: dict[str, Any]) -> dict[str, Any]:
    """The table ``evaluate`` prints."""
    from components.credit_tasks import EVALUATE_KEYS

    rows: dict[str, Any] = {k: figures.get(k) for k in EVALUATE_KEYS}
    diff = figures.get("gini_gbdt_minus_glm") or {}
    if diff:
        rows["gini_gbdt_minus_glm"] = (
            f"{diff['difference']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}]"
        )
    for key in ("ev_per_customer_model_ci", "ev_per_customer_logging_policy_ci"):
        ci = figures.get(key)
        if ci:
            rows[key] = f"[{ci[0]:.2f}, {ci[1]:.2f}]"
    goals = figures.get("goals") or {}
    rows.update({k: v for k, v in goals.items() if k.endswith("_met")})
    return rows


@credit_app.command("serve")
def serve_credit(
    pd_model: Annotated[
        str | None, typer.Option(help="Registry PD model [models:/credit-pd@champion].")
    ] = None,
    pd_bundle: Annotated[
        Path | None, typer.Option(exists=True, file_okay=False, help="A local credit-pd bundle.")
    ] = None,
    offers_model: Annotated[
        str | None, typer.Option(help="Registry ranker [models:/credit-offers@champion].")
    ] = None,
    offers_bundle: Annotated[
        Path | None,
        typer.Option(exists=True, file_okay=False, help="A local credit-offers bundle."),
    ] = None,
    no_offers: Annotated[bool, typer.Option("--no-offers", help="Serve decisions only.")] = False,
    port: Annotated[int, typer.Option(min=1, max=65535, help="HTTP port.")] = 8000,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster [RISKML_RAY_ADDRESS, else a new local one].")
    ] = None,
) -> None:
    """Serve the credit app (``/v1/credit/decision``, ``/v1/credit/offers``) on a local Ray
    Serve in the foreground until Ctrl-C."""
    import time

    from pydantic import ValidationError

    from riskml.demo_credit import credit_serving
    from riskml.registry.store import RegistryError

    if pd_model and pd_bundle:
        raise typer.BadParameter("give --pd-model or --pd-bundle, not both")
    args: dict[str, Any] = (
        {"pd_bundle_dir": str(pd_bundle.resolve())}
        if pd_bundle
        else {"pd_model_uri": pd_model or "models:/credit-pd@champion"}
    )
    if offers_bundle:
        args["offers_bundle_dir"] = str(offers_bundle.resolve())
    elif not no_offers:
        args["offers_model_uri"] = offers_model or "models:/credit-offers@champion"
    try:
        with credit_serving(args, port=port, address=address) as url:
            typer.echo(f"credit app: {url}/decision, {url}/offers (Ctrl-C stops it)")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        typer.echo("stopped")
    except (ValidationError, RegistryError) as exc:
        raise _fail(exc) from None
    except (RuntimeError, TimeoutError) as exc:
        typer.echo(f"riskml credit serve: {exc}", err=True)
        raise typer.Exit(code=1) from None
