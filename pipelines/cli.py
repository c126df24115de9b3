"""``python -m pipelines compile | run-local | submit``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="pipelines",
    help="riskml kfp pipelines: compile to IR YAML, run locally (kfp.local), submit to a cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

PIPELINE_HELP = (
    "training | retraining | monitoring | pd_training | offer_ranking | disputes_training"
)


def _parse_params(values: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--param")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def compile_all(out: Path, pipelines: list[str] | None = None) -> list[Path]:
    """Compile every pipeline in both flavours to ``out/<name>[-cluster].yaml``."""
    from kfp import compiler

    from pipelines.definitions import FLAVOURS, PIPELINES, get_pipeline

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in pipelines or PIPELINES:
        for flavour in FLAVOURS:
            path = out / (f"{name}.yaml" if flavour == "local" else f"{name}-{flavour}.yaml")
            compiler.Compiler().compile(get_pipeline(name, flavour), str(path))  # type: ignore[arg-type]
            written.append(path)
    return written


@app.command("compile")
def compile_cmd(
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("out/pipelines"),
    pipeline: Annotated[list[str] | None, typer.Option(help=PIPELINE_HELP)] = None,
) -> None:
    """Compile the pipelines (local and cluster flavours) to kfp IR YAML."""
    from riskml.console import print_table

    try:
        paths = compile_all(out, pipeline)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--pipeline") from None
    print_table("compiled", [{"file": str(p), "bytes": p.stat().st_size} for p in paths])


@app.command("run-local")
def run_local_cmd(
    pipeline: Annotated[str, typer.Option(help=PIPELINE_HELP)] = "training",
    size: Annotated[str, typer.Option(help="tiny | demo")] = "tiny",
    param: Annotated[
        list[str] | None, typer.Option(help="Pipeline parameter KEY=VALUE (JSON values).")
    ] = None,
    keep_ray: Annotated[bool, typer.Option(help="Leave the local Ray head running.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result here.")] = None,
) -> None:
    """Run a pipeline end to end with kfp.local (subprocess runner, this venv) on a local Ray."""
    from pipelines.definitions import PIPELINES
    from pipelines.local import run_local
    from riskml.console import print_table, write_json
    from riskml.data.sources import SIZES

    if pipeline not in PIPELINES:
        raise typer.BadParameter(f"choose from {', '.join(PIPELINES)}", param_hint="--pipeline")
    if size not in SIZES:
        raise typer.BadParameter(f"choose from {', '.join(SIZES)}", param_hint="--size")
    result = run_local(pipeline, size=size, arguments=_parse_params(param), keep_ray=keep_ray)
    print_table(
        f"{pipeline} pipeline ({size})", {k: v for k, v in result.items() if k != "registered"}
    )
    if json_out is not None:
        write_json(json_out, result)


@app.command("submit")
def submit_cmd(
    host: Annotated[str, typer.Option(help="Kubeflow Pipelines API endpoint URL.")],
    pipeline: Annotated[str, typer.Option(help=PIPELINE_HELP)] = "training",
    flavour: Annotated[str, typer.Option(help="cluster | local")] = "cluster",
    experiment: Annotated[str, typer.Option(help="kfp experiment.")] = "riskml",
    recurring: Annotated[
        str | None, typer.Option(help="Cron expression (6 fields, kfp style): a recurring run.")
    ] = None,
    namespace: Annotated[str | None, typer.Option(help="Profile namespace (multi-user).")] = None,
    service_account: Annotated[str | None, typer.Option()] = "riskml-pipeline-runner",
    param: Annotated[list[str] | None, typer.Option(help="Pipeline parameter KEY=VALUE.")] = None,
    token: Annotated[str | None, typer.Option(envvar="KFP_TOKEN", help="Bearer token.")] = None,
) -> None:
    """Submit a run (or a recurring run with --recurring) through kfp.Client."""
    from riskml.console import print_table

    try:
        out = submit(
            host,
            pipeline,
            flavour=flavour,
            experiment=experiment,
            recurring=recurring,
            namespace=namespace,
            service_account=service_account,
            arguments=_parse_params(param),
            token=token,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    print_table("submitted", out)


def validate_cron(expr: str) -> str:
    """kfp recurring runs take 6-field cron (seconds first); 5 fields get ``0`` seconds."""
    fields = expr.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ValueError(f"cron expression {expr!r}: expected 5 or 6 fields")
    return " ".join(fields)


def submit(
    host: str,
    pipeline: str = "training",
    *,
    flavour: str = "cluster",
    experiment: str = "riskml",
    recurring: str | None = None,
    namespace: str | None = None,
    service_account: str | None = "riskml-pipeline-runner",
    arguments: dict[str, Any] | None = None,
    token: str | None = None,
    client: Any = None,
) -> dict[str, Any]:
    """Create a run (or recurring run) of ``pipeline`` on the kfp API at ``host``."""
    import tempfile

    import kfp

    from pipelines.definitions import get_pipeline

    fn: Any = get_pipeline(pipeline, flavour)  # type: ignore[arg-type]
    cron = validate_cron(recurring) if recurring else None
    client = client or kfp.Client(
        host=host, namespace=namespace or "kubeflow", existing_token=token
    )
    if cron is None:
        run = client.create_run_from_pipeline_func(
            fn,
            arguments=arguments or {},
            experiment_name=experiment,
            namespace=namespace,
            service_account=service_account,
        )
        return {"run_id": run.run_id, "pipeline": fn.name, "host": host}
    exp = client.create_experiment(experiment, namespace=namespace)
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / f"{pipeline}.yaml"
        from kfp import compiler

        compiler.Compiler().compile(fn, str(package))
        job = client.create_recurring_run(
            experiment_id=exp.experiment_id,
            job_name=f"{fn.name}-recurring",
            cron_expression=cron,
            params=arguments or {},
            pipeline_package_path=str(package),
            service_account=service_account,
            max_concurrency=1,
            no_catchup=True,
        )
    return {"recurring_run_id": job.recurring_run_id, "cron": cron, "pipeline": fn.name}
