"""``riskml serve start|status|stop|replay``: the decision service on a local Ray cluster.

Thin wrappers over :mod:`serving.local` and :mod:`serving.replay`; Ray, httpx and the models are
imported inside the commands so ``riskml --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

serve_app = typer.Typer(
    help="Run the Ray Serve decision service locally and replay traffic against it.",
    no_args_is_help=True,
)


def _state_path() -> Path:
    from riskml.settings import get_settings

    return get_settings().home / "serve" / "state.json"


def _load_config(path: Path) -> dict[str, Any]:
    import yaml

    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict) or not data.get("applications"):
        raise typer.BadParameter(
            f"{path}: expected a serve config with `applications`", param_hint="--config"
        )
    return data


def _refuse_rejected_credentials() -> None:
    """The replicas of a new local head read the online store this process is configured
    for: a Redis that refuses our credentials fails ``serve start`` here, in a second, before a
    Ray head and Serve start (they would fail on it too, a minute later), and so does a
    feature store configuration that cannot be read. A store that cannot be reached now is no
    reason to refuse: it may come back, and serving answers from the rules meanwhile (the app
    reports it)."""
    from riskml.features.errors import FeatureStoreError, FeatureStoreUnavailable
    from riskml.features.store import check_online_store, get_store, repo_config

    try:
        if repo_config().online_store.type == "redis":
            check_online_store(get_store())
    except FeatureStoreUnavailable:
        return
    except FeatureStoreError as exc:  # credentials refused, a configuration error
        typer.echo(f"riskml serve start: {exc}", err=True)
        raise typer.Exit(code=1) from None


@serve_app.command()
def start(
    config: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Serve config (YAML/JSON), e.g. serving/serve_config.yaml.",
        ),
    ] = None,
    bundle: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            file_okay=False,
            help="Serve this model bundle on the configured Feast online store (RISKML_HOME, "
            "RISKML_ONLINE_STORE).",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Serve this registry model version (models:/fraud@champion, models:/fraud/7) "
            "on the configured Feast online store.",
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="HTTP bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="HTTP port.")] = 8000,
    address: Annotated[
        str | None,
        typer.Option(help="Existing Ray cluster (default: RISKML_RAY_ADDRESS, else a new head)."),
    ] = None,
    num_cpus: Annotated[
        int, typer.Option(min=1, help="Logical CPUs of a new local Ray head (scheduling slots).")
    ] = 8,
) -> None:
    """Deploy the decision app on Ray Serve and wait until /healthz answers."""
    from pydantic import ValidationError

    from riskml.console import print_table
    from riskml.registry.store import RegistryError
    from riskml.settings import get_settings
    from serving import local

    if sum(x is not None for x in (config, bundle, model)) != 1:
        raise typer.BadParameter("give exactly one of --config FILE, --bundle DIR, --model URI")
    if model is not None and not model.startswith("models:/"):
        raise typer.BadParameter("a models:/<name>@<alias> or models:/<name>/<version> URI")
    state_path = _state_path()
    if local.read_state(state_path):
        raise typer.BadParameter(
            f"a service is already recorded in {state_path}; run `riskml serve stop` first"
        )
    settings = get_settings()
    if config is not None:
        serve_config = _load_config(config)
    else:
        if not (address or settings.ray_address):
            _refuse_rejected_credentials()
        from serving.demo import model_args

        chosen = model or bundle
        assert chosen is not None
        serve_config = {"applications": [local.app_config(model_args(chosen))]}
    try:
        state = local.start(
            serve_config,
            state_path,
            host=host,
            port=port,
            address=address or settings.ray_address,
            num_cpus=num_cpus,
        )
    except ValidationError as exc:
        raise typer.BadParameter(str(exc), param_hint="--config") from None
    except RegistryError as exc:  # the model URI names nothing in the registry
        raise typer.BadParameter(str(exc), param_hint="--model") from None
    except (RuntimeError, TimeoutError) as exc:  # the app did not come up: say why, no traceback
        typer.echo(f"riskml serve start: {exc}", err=True)
        raise typer.Exit(code=1) from None
    print_table("riskml serve", {k: v for k, v in state.items() if v is not None})


@serve_app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Application and deployment status of the running service."""
    from riskml.console import console, print_table
    from serving import local

    state = local.read_state(_state_path())
    if not state:
        typer.echo("no service recorded (riskml serve start)")
        raise typer.Exit(code=1)
    info = local.status(state)
    if as_json:
        console.print_json(json.dumps(info))
        return
    rows = [
        {
            "app": app,
            "app_status": a["status"],
            "deployment": dep,
            "status": d["status"],
            "replicas": ", ".join(f"{k}={v}" for k, v in d["replicas"].items()),
        }
        for app, a in info["apps"].items()
        for dep, d in a["deployments"].items()
    ]
    print_table(f"riskml serve @ {info['url']} (healthz {info['healthz']})", rows)
    if info["direct_urls"]:
        typer.echo("Ingress replicas (direct ingress): " + " ".join(info["direct_urls"]))
    if info["healthz"] != 200:
        raise typer.Exit(code=1)


@serve_app.command()
def stop() -> None:
    """Shut Serve down; stop the Ray head if `serve start` launched it."""
    from riskml.console import print_table
    from serving import local

    state_path = _state_path()
    state = local.read_state(state_path)
    if not state:
        typer.echo("no service recorded; nothing to stop")
        return
    print_table("riskml serve stop", local.stop(state, state_path))


@serve_app.command()
def replay(
    transactions: Annotated[
        Path,
        typer.Option(exists=True, help="Transactions dataset (Parquet dir/file) or JSON lines."),
    ],
    rps: Annotated[float, typer.Option(min=0.1, max=100_000, help="Fixed arrival rate.")],
    url: Annotated[
        str | None,
        typer.Option(
            help="Service URL, loopback only (default: the started service's Ingress replicas "
            "directly where Serve direct ingress is on, else its proxy)."
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Replay at most N transactions.")] = None,
    duration: Annotated[
        float | None, typer.Option(min=0.1, help="Replay for this many seconds (rps x duration).")
    ] = None,
    retries: Annotated[int, typer.Option(min=0, max=10, help="Retries on 5xx/errors.")] = 1,
    timeout: Annotated[float, typer.Option(min=0.01, help="Per-request timeout (s).")] = 2.0,
    max_in_flight: Annotated[int, typer.Option(min=1, help="Bound on open requests.")] = 256,
    out: Annotated[Path | None, typer.Option(help="Write the report as JSON.")] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            help="Bearer key for the decision API (default: the first of RISKML_API_KEYS)."
        ),
    ] = None,
) -> None:
    """Replay transactions at a fixed rate; print the decision mix and latency percentiles."""
    from riskml.console import print_table, write_json
    from serving import local
    from serving.replay import load_requests
    from serving.replay import replay as run_replay

    targets = [url] if url is not None else local.replay_targets(local.read_state(_state_path()))
    n = limit
    if duration is not None:
        n = min(n or 10**12, max(1, int(rps * duration)))
    try:
        requests = load_requests(str(transactions), limit=n)
        report = run_replay(
            targets,
            requests,
            rps,
            retries=retries,
            timeout_s=timeout,
            max_in_flight=max_in_flight,
            api_key=api_key,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    summary = report.summary()
    print_table(
        "replay",
        {
            "requests": report.requests,
            "ok": report.ok,
            "errors": report.errors,
            "retries": report.retries,
            "achieved_rps": report.achieved_rps,
            **{f"latency_{k}_ms": v for k, v in report.latency_ms.items()},
        },
    )
    mix = [
        {"kind": kind, "value": k, "count": v, "share": v / max(1, report.ok)}
        for kind, counts in (
            ("decision", report.decisions),
            ("source", report.sources),
            ("fallback", report.fallback_reasons),
        )
        for k, v in sorted(counts.items())
    ]
    print_table("decision mix", mix)
    if out is not None:
        write_json(out, summary)
