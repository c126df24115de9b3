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
    release: Annotated[
        bool,
        typer.Option(
            "--release",
            help="Fail while an image of a release overlay (prod) is not pinned by digest.",
        ),
    ] = False,
) -> None:
    """Render each overlay (kubectl kustomize) and validate it: core kinds with
    kubernetes-validate (strict), custom resources against their CRDs, skaffold.yaml against its
    schema, serveConfigV2 against serving/serve_config.yaml, then the pod-security, image, RBAC,
    token and network policies. Images of a release overlay (prod) not pinned by digest are
    reported; with --release they fail the run (`riskml k8s pin-digests` pins them)."""
    import time

    import ray

    from riskml.console import err_console, print_table, write_json
    from riskml.k8s import manifests, policy
    from riskml.k8s import validate as schema

    overlays = overlay or list(manifests.OVERLAYS)
    if release and not set(overlays) & set(manifests.RELEASE_OVERLAYS):
        raise typer.BadParameter(
            f"--release checks {', '.join(manifests.RELEASE_OVERLAYS)}: include it in --overlay"
        )
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
        unpinned = policy.check_image_digests(docs)
        is_release = name in manifests.RELEASE_OVERLAYS
        failed = failed or bool(schema_errors) or n_violations > 0
        failed = failed or (release and is_release and bool(unpinned))
        report[name] = {
            "objects": len(docs),
            "schema": schema_errors,
            "policy": violations,
            "unpinned_images": unpinned,
        }
        rows.append(
            {
                "overlay": name,
                "objects": len(docs),
                "schema": len(schema_errors),
                "policy": n_violations,
                "no digest": len(unpinned),
                "s": round(time.perf_counter() - start, 2),
            }
        )
        for message in schema_errors + [m for v in violations.values() for m in v]:
            err_console.print(f"[red]{name}[/red]: {message}")
        if is_release:
            level = "red" if release else "yellow"
            for message in unpinned:
                err_console.print(f"[{level}]{name}[/{level}]: {message}")
    for message in report["skaffold"]:
        err_console.print(f"[red]skaffold[/red]: {message}")
    print_table(f"k8s validation (kubernetes {schema.K8S_VERSION}, ray {ray.__version__})", rows)
    unpinned_release = [
        n for n in paths if n in manifests.RELEASE_OVERLAYS and report[n].get("unpinned_images")
    ]
    if unpinned_release and not release:
        err_console.print(
            f"{', '.join(unpinned_release)}: images not pinned by digest (fine before a release;"
            " `riskml k8s pin-digests` pins them, `--release` requires it)"
        )
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


@k8s_app.command("pin-digests")
def pin_digests(
    build_artifacts: Annotated[
        Path | None,
        typer.Option(
            "--build-artifacts",
            "-a",
            help="`skaffold build --file-output` JSON: every image it built and pushed.",
        ),
    ] = None,
    image: Annotated[
        list[str] | None,
        typer.Option(
            "--image",
            "-i",
            help="NAME=REF@sha256:<digest> for an image skaffold does not build (e.g. nats).",
        ),
    ] = None,
    overlay: Annotated[
        str, typer.Option("--overlay", "-o", help="Overlay under k8s/overlays.")
    ] = "prod",
    check: Annotated[
        bool, typer.Option("--check", help="Only report what would change (exit 1), write nothing.")
    ] = False,
) -> None:
    """Pin the overlay's `images:` by digest (newName, newTag, digest), the step before a
    release: kustomize then renders every reference as image:tag@sha256:..."""
    from riskml.console import print_table
    from riskml.k8s import digests, manifests

    pins: dict[str, str] = {}
    try:
        if build_artifacts is not None:
            pins.update(digests.read_skaffold_builds(build_artifacts))
        for item in image or []:
            name, sep, ref = item.partition("=")
            if not sep or not name or not ref:
                raise ValueError(f"--image {item!r}: expected NAME=REF@sha256:<digest>")
            pins[name] = ref
        if not pins:
            raise ValueError("nothing to pin: pass --build-artifacts and/or --image")
        path = manifests.overlay_path(overlay) / "kustomization.yaml"
        changed = digests.pin_image_digests(path, pins, check=check)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    rows = [
        {
            "image": name,
            "reference": digests.parse_pinned_reference(ref).reference,
            "changed": name in changed,
        }
        for name, ref in sorted(pins.items())
    ]
    where = (
        path.relative_to(manifests.REPO_ROOT) if path.is_relative_to(manifests.REPO_ROOT) else path
    )
    print_table(f"{where}: images pinned by digest", rows)
    if check and changed:
        raise typer.Exit(code=1)
