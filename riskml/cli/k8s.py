"""``riskml k8s ...``: offline checks of the Kubernetes manifests (no cluster needed).

Heavy imports (jsonschema, kubernetes_validate, ray) stay inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

k8s_app = typer.Typer(
    help="Render and validate the Kubernetes manifests offline.", no_args_is_help=True
)


@k8s_app.command("validate")
def validate(
    overlay: Annotated[
        list[str] | None,
        typer.Option("--overlay", "-o", help="Overlay(s) under k8s/overlays [all]."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the report as JSON.")] = None,
) -> None:
    """Render each overlay (kubectl kustomize) and validate it: core kinds with
    kubernetes-validate (strict), custom resources against their CRDs, skaffold.yaml against its
    schema, serveConfigV2 against serving/serve_config.yaml, then the pod-security, image, RBAC,
    token and network policies."""
    import time

    import ray

    from riskml.console import err_console, print_table, write_json
    from riskml.k8s import manifests, policy
    from riskml.k8s import validate as schema

    overlays = overlay or list(manifests.OVERLAYS)
    try:
        paths = {name: manifests.overlay_path(name) for name in overlays}
        crds = schema.load_crd_schemas()
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    serve_text = manifests.SERVE_CONFIG_PATH.read_text()
    rows: list[dict[str, object]] = []
    report: dict[str, Any] = {"k8s_version": schema.K8S_VERSION, "ray_version": ray.__version__}
    failed = False
    try:
        schema.validate_skaffold(manifests.REPO_ROOT / "skaffold.yaml")
        report["skaffold"] = []
    except ValueError as error:
        report["skaffold"] = [str(error)]
        failed = True
    for name, path in paths.items():
        start = time.perf_counter()
        try:
            docs = manifests.render_overlay(path)
        except RuntimeError as error:
            report[name] = {"render": str(error)}
            rows.append({"overlay": name, "objects": 0, "schema": "-", "policy": "-", "s": 0.0})
            failed = True
            continue
        schema_errors = schema.validate_manifests(docs, crds)
        schema_errors += schema.check_serve_config_matches(docs, serve_text)
        violations = policy.run_policies(docs, ray.__version__)
        n_violations = sum(len(v) for v in violations.values())
        failed = failed or bool(schema_errors) or n_violations > 0
        report[name] = {"objects": len(docs), "schema": schema_errors, "policy": violations}
        rows.append(
            {
                "overlay": name,
                "objects": len(docs),
                "schema": len(schema_errors),
                "policy": n_violations,
                "s": round(time.perf_counter() - start, 2),
            }
        )
        for message in schema_errors + [m for v in violations.values() for m in v]:
            err_console.print(f"[red]{name}[/red]: {message}")
    for message in report["skaffold"]:
        err_console.print(f"[red]skaffold[/red]: {message}")
    print_table(f"k8s validation (kubernetes {schema.K8S_VERSION}, ray {ray.__version__})", rows)
    if out is not None:
        write_json(out, report)
    if failed:
        raise typer.Exit(code=1)


@k8s_app.command("sync-serve-config")
def sync_serve_config(
    check: Annotated[
        bool, typer.Option("--check", help="Only report drift (exit 1), change nothing.")
    ] = False,
) -> None:
    """Copy serving/serve_config.yaml into the RayService's serveConfigV2 block."""
    from riskml.k8s import manifests

    changed = manifests.sync_serve_config(check=check)
    where = manifests.RAYSERVICE_PATH.relative_to(manifests.REPO_ROOT)
    if check:
        typer.echo(f"{where}: {'out of date' if changed else 'in sync'}")
        if changed:
            raise typer.Exit(code=1)
    else:
        typer.echo(f"{where}: {'updated' if changed else 'already in sync'}")
