"""The ``riskml`` command line: one Typer app; each domain registers its verbs here.

The verb groups live beside this module (``riskml.cli.data``, ``.features``, ``.training``,
``.evaluation``, ``.k8s``, ``.stream``, ``.credit``, ``.disputes``): the CLI is the top layer and
imports the packages, never the other way round. They keep heavy imports (polars, ray, torch,
feast) inside their command bodies, so ``riskml --help`` stays fast.
"""

from __future__ import annotations

import typer

from riskml import __version__

app = typer.Typer(
    name="riskml",
    help="Real-time risk ML: simulate/import data, build features, train, backtest, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.command()
def version() -> None:
    """Print the riskml version."""
    typer.echo(__version__)


def _register() -> None:
    from riskml.cli import data as data_cli

    app.command("simulate")(data_cli.simulate)
    app.command("import")(data_cli.import_transactions)
    app.add_typer(data_cli.data_app, name="data")

    from riskml.cli import features as features_cli

    app.add_typer(features_cli.features_app, name="features")

    from riskml.cli import training as training_cli

    app.command("train")(training_cli.train)
    app.command("tune")(training_cli.tune)

    from riskml.cli import evaluation as evaluation_cli

    app.command("backtest")(evaluation_cli.backtest)

    from riskml.cli import selection as selection_cli

    app.command("select")(selection_cli.select)

    from riskml.cli import k8s as k8s_cli

    app.add_typer(k8s_cli.k8s_app, name="k8s")

    from riskml.cli import stream as stream_cli

    app.add_typer(stream_cli.stream_app, name="stream")

    from riskml.cli import monitor as monitor_cli

    app.add_typer(monitor_cli.monitor_app, name="monitor")

    from riskml.cli import credit as credit_cli

    app.add_typer(credit_cli.credit_app, name="credit")

    from riskml.cli import disputes as disputes_cli

    app.add_typer(disputes_cli.disputes_app, name="disputes")

    from riskml import serving_cli

    app.add_typer(serving_cli.serve_app, name="serve")

    from riskml import demo as demo_mod

    app.command("demo")(demo_mod.demo)


_register()


def main() -> None:
    """Run the CLI; an invalid environment (unknown ``RISKML_*`` variable, unreadable secret file)
    is one line on stderr and exit status 2, not a traceback."""
    from riskml.settings import SettingsError

    try:
        app()
    except SettingsError as exc:
        typer.echo(f"riskml: invalid settings: {exc}", err=True)
        raise SystemExit(2) from None
